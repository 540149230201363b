//! `_history` at instance, type and system level: newest first, `_since`, `_count`, next links.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::reach::ensure_within_reach;
use crate::auth::access::{Access, Reach};
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::bundle::{Link, history};
use crate::fhir::dates::date_range_in;
use crate::fhir::search::CURSOR_PARAMETER;
use crate::fhir::{FHIR_JSON, ResourceType};
use crate::store::history::{HistoryQuery, HistoryScope};

#[utoipa::path(
    get, path = "/fhir/{type}/{id}/_history", tag = "FHIR resources",
    summary = "Every version of one resource, newest first",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("id" = String, Path, description = "Logical id, e.g. demo-patient-01"), ("_since" = Option<String>, Query, description = "Only versions at or after this instant"), ("_count" = Option<i64>, Query, description = "Page size")),
    responses(
        (status = 200, description = "A history Bundle", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn instance_history(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (resource_type, id) = super::crud::instance(&path.0, &path.1)?;
    let reach = principal.reach(resource_type.as_str(), Interaction::HistoryInstance)?;
    let current = crate::store::resources::read_current(&state.pool, &resource_type, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{resource_type}/{id} does not exist")))?;
    if reach != Reach::Whole(Access::Full) {
        // A deleted resource's history is outside every limited reach: there is no
        // current content to place it in a compartment or match a restriction.
        let content = current.content.as_ref().ok_or_else(|| {
            ApiError::Forbidden("The access token's scopes do not reach deleted resources".into())
        })?;
        ensure_within_reach(&state, &reach, &resource_type, content).await?;
    }
    // Older versions may have been about someone else: a patient token sees only those
    // in its patient's compartment.
    let patient = match &reach {
        Reach::Whole(access) => compartment(access.clone()),
        // Every slice from a patient/ scope names the token's one patient.
        Reach::Slices(slices) => slices
            .iter()
            .all(|slice| slice.patient.is_some())
            .then(|| slices.first().and_then(|slice| slice.patient.clone()))
            .flatten(),
    };
    let scope = HistoryScope::Instance(resource_type.to_string(), id.to_string());
    respond(
        &request,
        scope,
        patient,
        &format!("{resource_type}/{id}/_history"),
        &state,
    )
    .await
}

#[utoipa::path(
    get, path = "/fhir/{type}/_history", tag = "FHIR resources",
    summary = "Every version of every resource of a type, newest first",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("_since" = Option<String>, Query, description = "Only versions at or after this instant"), ("_count" = Option<i64>, Query, description = "Page size")),
    responses(
        (status = 200, description = "A history Bundle", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn type_history(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let resource_type = ResourceType::parse(&path)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::HistoryType)?;
    let scope = HistoryScope::Type(resource_type.to_string());
    respond(
        &request,
        scope,
        compartment(access),
        &format!("{resource_type}/_history"),
        &state,
    )
    .await
}

#[utoipa::path(
    get, path = "/fhir/_history", tag = "FHIR server",
    summary = "Every version of every resource, newest first",
    params(("_since" = Option<String>, Query, description = "Only versions at or after this instant"), ("_count" = Option<i64>, Query, description = "Page size")),
    responses(
        (status = 200, description = "A history Bundle", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn system_history(
    request: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let access = principal.authorize(None, Interaction::HistorySystem)?;
    respond(
        &request,
        HistoryScope::System,
        compartment(access),
        "_history",
        &state,
    )
    .await
}

/// Type and system history span every patient: a patient token sees the versions in its
/// patient's compartment.
fn compartment(access: Access) -> Option<String> {
    match access {
        Access::Full => None,
        Access::Patient(patient) => Some(patient),
    }
}

async fn respond(
    request: &HttpRequest,
    scope: HistoryScope,
    compartment: Option<String>,
    path: &str,
    state: &AppState,
) -> ApiResult<HttpResponse> {
    let parameters: Vec<(String, String)> = serde_urlencoded::from_str(request.query_string())
        .map_err(|e| ApiError::bad_request(format!("The query could not be parsed: {e}")))?;
    let mut query = HistoryQuery {
        scope,
        since: None,
        before_seq: None,
        count: state.page_limits.default,
        compartment,
    };
    let mut applied = Vec::new();
    for (name, value) in &parameters {
        match name.as_str() {
            "_since" => {
                let (start, _) =
                    date_range_in(value, state.writes.index.zone).ok_or_else(|| {
                        ApiError::bad_parameter(
                            "_since",
                            format!("'{value}' is not a valid instant for _since"),
                        )
                    })?;
                query.since = Some(start);
                applied.push((name.clone(), value.clone()));
            }
            "_count" => {
                query.count = value
                    .parse::<i64>()
                    .ok()
                    .filter(|count| *count >= 0)
                    .ok_or_else(|| {
                        ApiError::bad_parameter(
                            "_count",
                            format!("_count must be a non-negative integer, not '{value}'"),
                        )
                    })?
                    .min(state.page_limits.max);
                applied.push((name.clone(), value.clone()));
            }
            CURSOR_PARAMETER => {
                query.before_seq = Some(value.parse().map_err(|_| {
                    ApiError::bad_parameter(
                        CURSOR_PARAMETER,
                        "The paging cursor is not valid; start again from the first page",
                    )
                })?);
            }
            _ => {}
        }
    }
    let page = crate::store::history::history(&state.pool, &query).await?;
    let url = |cursor: Option<i64>| {
        let mut pairs = applied.clone();
        if let Some(cursor) = cursor {
            pairs.push((CURSOR_PARAMETER.to_string(), cursor.to_string()));
        }
        format!(
            "{}/{path}?{}",
            state.base_url,
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    let mut links = vec![Link {
        relation: "self",
        url: url(query.before_seq),
    }];
    if let Some(cursor) = page.next_cursor {
        links.push(Link {
            relation: "next",
            url: url(Some(cursor)),
        });
    }
    let bundle = history(&state.base_url, page.versions, page.total, &links);
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(bundle))
}
