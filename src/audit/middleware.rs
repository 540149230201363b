//! Records the AuditEvent of every request (refusals included) once its handler has
//! answered, and only then releases the answer: a read whose audit cannot be recorded is
//! not returned (503 instead).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, ResponseError, web};

use super::event::AuditRecord;
use super::writer::AuditWriter;
use super::{AuditAgent, classify, in_flight, is_unaudited};
use crate::auth::access::patient_id_of_reference;
use crate::auth::jwt::Principal;
use crate::telemetry::current_request_id;

pub async fn record_audit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if is_unaudited(req.path()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let writer = req.app_data::<web::Data<AuditWriter>>().cloned();
    let (response, recorded_with_write) = in_flight::serve(next.call(req)).await;
    let response = response?;
    let Some(writer) = writer else {
        return Ok(response.map_into_left_body());
    };
    if recorded_with_write && response.status().is_success() {
        return Ok(response.map_into_left_body());
    }
    let record = audit_record(response.request(), response.status().as_u16());
    let is_write = record.interaction.action.is_write();
    match writer.record(record).await {
        Ok(()) => Ok(response.map_into_left_body()),
        Err(error) if is_write => {
            tracing::error!(error = %error, "the audit of a committed write was not recorded");
            Ok(response.map_into_left_body())
        }
        Err(error) => {
            tracing::warn!(error = %error, "audit not recorded; the answer is withheld");
            // The writers answer a failure as a 503 already (an outage's own text, or a
            // generic one), so it is the refusal as it stands.
            let refusal = error.error_response();
            let (request, _) = response.into_parts();
            Ok(ServiceResponse::new(request, refusal).map_into_right_body())
        }
    }
}

/// The AuditEvent of `request` answered with `status`, from what the request says: its
/// route, token, peer, the resource its path names and the patient it is about.
pub(super) fn audit_record(request: &HttpRequest, status: u16) -> AuditRecord {
    let pattern = request
        .match_pattern()
        .unwrap_or_else(|| request.path().to_string());
    let principal = request.extensions().get::<Principal>().cloned();
    let resource_type = resource_type(request);
    let id = request.match_info().get("id").map(str::to_string);
    let target = resource_type.as_ref().map(|t| match &id {
        Some(id) => format!("{t}/{id}"),
        None => t.clone(),
    });
    let patient = principal
        .as_ref()
        .and_then(|p| p.patient.clone())
        .or_else(|| {
            (resource_type.as_deref() == Some("Patient"))
                .then(|| id.clone())
                .flatten()
        })
        .or_else(|| patient_in_query(request.query_string()));
    AuditRecord {
        interaction: classify(request.method(), &pattern),
        agent: principal.map(|p| p.subject).or_else(|| {
            request
                .extensions()
                .get::<AuditAgent>()
                .map(|agent| agent.0.clone())
        }),
        address: request.peer_addr().map(|a| a.ip().to_string()),
        targets: target.into_iter().collect(),
        patients: patient.into_iter().collect(),
        query: Some(request.query_string().to_string()),
        request_id: current_request_id(),
        status,
    }
}

/// The resource type a FHIR path names: its first segment after `/fhir/`, when that is a
/// type name (capitalized), not `_history` or `$export`.
fn resource_type(request: &HttpRequest) -> Option<String> {
    let segment = request.path().strip_prefix("/fhir/")?.split('/').next()?;
    segment
        .starts_with(|c: char| c.is_ascii_uppercase())
        .then(|| segment.to_string())
}

/// The patient a search names by `patient=` or `subject=` (`Patient/x`, or a bare id for
/// `patient`), so that an auditor asking about a patient finds the searches about them.
fn patient_in_query(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find_map(|(name, value)| {
        let first = value.split(',').next()?.trim();
        let referenced = patient_id_of_reference(first);
        match name.as_str() {
            "patient" | "patient:Patient" => referenced
                .or_else(|| (!first.is_empty() && !first.contains('/')).then(|| first.into())),
            "subject" | "subject:Patient" => referenced,
            _ => None,
        }
    })
}
