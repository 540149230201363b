//! The audit trail as auditors see it: AuditEvent search and read (scope
//! `AuditEvent.rs`). Clients never write AuditEvents: every other method is 405.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};

use super::AppState;
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::FHIR_JSON;
use crate::fhir::bundle::searchset;
use crate::store::audit::{self, AuditFilter};

const AUDIT_EVENT: &str = "AuditEvent";

#[utoipa::path(
    get, path = "/fhir/AuditEvent", tag = "Audit",
    summary = "Search the audit trail (date, agent, patient, outcome, subtype, action)",
    responses((status = 200, description = "A searchset Bundle of AuditEvents", content_type = "application/fhir+json"))
)]
pub async fn search(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<Vec<(String, String)>>,
) -> ApiResult<HttpResponse> {
    principal.authorize(Some(AUDIT_EVENT), Interaction::Search)?;
    let mut filter = AuditFilter {
        limit: state.page_limits.max,
        ..AuditFilter::default()
    };
    for (name, value) in query.into_inner() {
        apply(&mut filter, &name, &value)?;
    }
    let events = audit::search(&state.pool, &filter).await?;
    let total = i64::try_from(events.len()).unwrap_or(i64::MAX);
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(searchset(
        &state.base_url,
        events,
        Some(total),
        &[],
    )))
}

#[utoipa::path(
    get, path = "/fhir/AuditEvent/{id}", tag = "Audit",
    summary = "Read one AuditEvent",
    params(("id" = String, Path, description = "AuditEvent id")),
    responses((status = 200, description = "The AuditEvent", content_type = "application/fhir+json"))
)]
pub async fn read(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    principal.authorize(Some(AUDIT_EVENT), Interaction::Read)?;
    let id = crate::fhir::ResourceId::parse(&id)?.to_string();
    let filter = AuditFilter {
        id: Some(id.clone()),
        limit: 1,
        ..AuditFilter::default()
    };
    let event = audit::search(&state.pool, &filter)
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound(format!("AuditEvent/{id} is not known")))?;
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(event))
}

fn apply(filter: &mut AuditFilter, name: &str, value: &str) -> ApiResult<()> {
    let value = value.to_string();
    match name {
        "agent" => filter.agent = Some(value),
        "patient" => filter.patient = Some(value.trim_start_matches("Patient/").to_string()),
        "outcome" => filter.outcome = Some(value),
        "subtype" => filter.subtype = Some(code_of(&value)),
        "action" => filter.action = Some(value),
        "request-id" => filter.request_id = Some(value),
        "date" => apply_date(filter, &value)?,
        "_count" => {
            filter.limit = value.parse().map_err(|_| bad(name, &value))?;
        }
        _ => {
            return Err(ApiError::BadRequest(
                format!("AuditEvent search does not support the parameter {name}"),
                None,
            ));
        }
    }
    Ok(())
}

/// `system|code` or `code`: the code.
fn code_of(value: &str) -> String {
    value.rsplit('|').next().unwrap_or(value).to_string()
}

/// `date=geX`, `gtX`, `leX`, `ltX`: bounds on `recorded` (a date means its start, UTC).
fn apply_date(filter: &mut AuditFilter, value: &str) -> ApiResult<()> {
    let (prefix, text) = value.split_at(value.len().min(2));
    let instant = parse_instant(text).ok_or_else(|| bad("date", value))?;
    match prefix {
        "ge" | "gt" => filter.since = Some(instant),
        "le" | "lt" => filter.before = Some(instant),
        _ => return Err(bad("date", value)),
    }
    Ok(())
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

fn bad(name: &str, value: &str) -> ApiError {
    ApiError::BadRequest(
        format!("{name}={value} is not a valid AuditEvent search value"),
        None,
    )
}
