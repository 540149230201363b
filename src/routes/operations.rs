//! FHIR operations of the clinic: `[type]/$validate` (the infusion safety rules included)
//! and `Patient/{id}/$treatment-status`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::AppState;
use super::crud::{ensure_in_compartment, instance, read_live};
use super::http::{RESOURCE_CONTENT_TYPES, parse_json, read_body, require_content_type};
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::clinic::record::PatientRecord;
use crate::clinic::{safety, treatment};
use crate::error::{ApiError, ApiResult};
use crate::fhir::dates::date_range_in;
use crate::fhir::outcome::{Issue, operation_outcome};
use crate::fhir::resource::resource_type_of;
use crate::fhir::validation::{ValidationOptions, validate_resource};
use crate::fhir::{FHIR_JSON, ResourceType};
use crate::store;

/// The live Patient `id`, if the caller may read it; 404 or 410 otherwise, 403 outside a
/// patient-scoped token's compartment.
pub(super) async fn readable_patient(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> ApiResult<(Value, Access)> {
    let (resource_type, id) = instance("Patient", id)?;
    let access = principal.authorize(Some("Patient"), Interaction::Read)?;
    let patient = read_live(state, &resource_type, &id).await?;
    ensure_in_compartment(&access, &resource_type, &patient)?;
    Ok((patient, access))
}

/// The patient's record as the clinic rules read it.
pub(super) async fn patient_record(state: &AppState, patient_id: &str) -> ApiResult<PatientRecord> {
    let resources = store::clinic::patient_resources(&state.pool, patient_id).await?;
    Ok(PatientRecord::from_resources(&resources, state.clinic()))
}

/// The value of a parameter that may be given at most once.
pub(super) fn single_parameter<'a>(
    parameters: &'a [(String, String)],
    name: &str,
) -> ApiResult<Option<&'a str>> {
    let mut given = parameters.iter().filter(|(key, _)| key == name);
    let value = given.next().map(|(_, value)| value.as_str());
    if given.next().is_some() {
        return Err(ApiError::bad_parameter(
            name,
            format!("The parameter '{name}' may be given only once"),
        ));
    }
    Ok(value)
}

/// The instant range `[start, end)` a date parameter covers (a whole day for a date, in
/// `zone`), if it is given; 400 if it is repeated or not a FHIR date.
pub(super) fn date_parameter(
    parameters: &[(String, String)],
    name: &str,
    zone: chrono_tz::Tz,
) -> ApiResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let Some(text) = single_parameter(parameters, name)? else {
        return Ok(None);
    };
    date_range_in(text, zone).map(Some).ok_or_else(|| {
        ApiError::bad_parameter(
            name,
            format!(
                "The parameter '{name}' must be a FHIR date or dateTime such as 2026-06-30; got '{text}'"
            ),
        )
    })
}

pub(super) fn parameters_response(parameters: &Value) -> HttpResponse {
    HttpResponse::Ok().content_type(FHIR_JSON).json(parameters)
}

/// The resource to validate: the body itself, or the `resource` part of a Parameters body.
fn resource_to_validate(body: Value, resource_type: &ResourceType) -> ApiResult<Value> {
    if resource_type_of(&body) == Some("Parameters") && resource_type.as_str() != "Parameters" {
        return body["parameter"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "resource")
            .map(|p| p["resource"].clone())
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    "resource",
                    "The Parameters body has no 'resource' parameter",
                )
            });
    }
    Ok(body)
}

#[utoipa::path(
    post, path = "/fhir/{type}/$validate", tag = "FHIR operations",
    summary = "Validate a resource without storing it; for ketamine MedicationAdministrations, also the infusion safety rules",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration")),
    request_body(content = crate::openapi::AnyResource, content_type = "application/fhir+json", description = "The resource, or Parameters with a 'resource' part"),
    responses(
        (status = 200, description = "OperationOutcome: every issue found (errors mean the write would be refused)", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn validate(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let resource_type = ResourceType::parse(&path)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Create)?;
    require_content_type(&request, RESOURCE_CONTENT_TYPES)?;
    let body = read_body(&request, payload, state.max_body_bytes).await?;
    let resource = resource_to_validate(parse_json(&body, state.json_limits)?, &resource_type)?;
    let report = validate_resource(
        resource_type.as_str(),
        &resource,
        ValidationOptions::default(),
    );
    let mut issues = report.issues.clone();
    if !report.structural_errors() && resource_type.as_str() == "MedicationAdministration" {
        ensure_in_compartment(&access, &resource_type, &resource)?;
        issues.extend(safety_issues(&state, &resource).await?);
    }
    Ok(HttpResponse::build(StatusCode::OK)
        .content_type(FHIR_JSON)
        .json(operation_outcome(&issues)))
}

/// The safety rules' findings about an administration, as `$validate` reports them.
async fn safety_issues(state: &AppState, administration: &Value) -> ApiResult<Vec<Issue>> {
    let Some((_, assessment)) =
        store::clinic::assess_infusion(&state.pool, state.clinic(), administration).await?
    else {
        return Ok(Vec::new());
    };
    let mut issues: Vec<Issue> = assessment
        .failures
        .iter()
        .map(|f| safety::issue(f, "error"))
        .collect();
    issues.extend(
        assessment
            .notices
            .iter()
            .map(|f| safety::issue(f, "warning")),
    );
    if assessment.failures.is_empty() {
        let figure = |label: &str, value: Option<f64>, unit: &str| {
            value.map(|v| format!("{label} {} {unit}", (v * 100.0).round() / 100.0))
        };
        let figures: Vec<String> = [
            figure("dose", assessment.mg_per_kg, "mg/kg"),
            figure("rate", assessment.rate_mg_per_kg_per_hour, "mg/kg/h"),
        ]
        .into_iter()
        .flatten()
        .collect();
        issues.push(Issue::information(format!(
            "Infusion safety: all rules pass ({})",
            figures.join(", ")
        )));
    }
    Ok(issues)
}

#[utoipa::path(
    get, path = "/fhir/Patient/{id}/$treatment-status", tag = "FHIR operations",
    summary = "Where the patient is in treatment: current series, next infusion or re-treatment window, discharge readiness",
    params(("id" = String, Path, description = "Patient id, e.g. demo-patient-01")),
    responses(
        (status = 200, description = "Parameters: phase, series-count, current-series, next-infusion-window or retreatment-window, retreatment-due, discharge", body = crate::openapi::Parameters, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn treatment_status(
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    readable_patient(&state, &principal, &path).await?;
    let record = patient_record(&state, &path).await?;
    let status = treatment::treatment_status(&record, state.clinic(), Utc::now());
    Ok(parameters_response(&treatment::to_parameters(&status)))
}
