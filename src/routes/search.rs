//! Type-level search, by GET with a query string or POST with a form body.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::http::{preferences, read_body, require_content_type};
use crate::auth::jwt::Access;
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::bundle::{Link, searchset};
use crate::fhir::outcome::Issue;
use crate::fhir::search::{self, CURSOR_PARAMETER, TotalMode};
use crate::fhir::search::{Filter, ReferenceMatch};
use crate::fhir::{FHIR_JSON, ResourceType};
use crate::store::search::SearchQuery;

#[utoipa::path(
    get, path = "/fhir/{type}", tag = "FHIR search",
    summary = "Search (parameters per type: see /fhir/metadata)",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"),
        ("_id" = Option<String>, Query, description = "Logical ids, comma for OR"),
        ("_lastUpdated" = Option<String>, Query, description = "e.g. ge2026-11-01"),
        ("patient" = Option<String>, Query, description = "Observation/MedicationAdministration: Patient/demo-patient-01"),
        ("subject" = Option<String>, Query, description = "Observation/MedicationAdministration: Patient/demo-patient-01"),
        ("code" = Option<String>, Query, description = "Observation: http://loinc.org|8867-4"),
        ("identifier" = Option<String>, Query, description = "Patient: system|value"),
        ("_count" = Option<i64>, Query, description = "Page size"),
        ("_total" = Option<String>, Query, description = "none | estimate | accurate"),
        ("Prefer" = Option<String>, Header, description = "handling=strict: unknown parameters are a 400")),
    responses(
        (status = 200, description = "A searchset Bundle; unsupported parameters are reported in an outcome entry", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn search_get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let parameters = parse_form(request.query_string())?;
    run(&request, &path, parameters, &state, &principal).await
}

#[utoipa::path(
    post, path = "/fhir/{type}/_search", tag = "FHIR search",
    summary = "Search with a form body (same result as GET)",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "e.g. subject=Patient/demo-patient-01&_count=10"),
    responses(
        (status = 200, description = "A searchset Bundle", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn search_post(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    require_content_type(&request, &["application/x-www-form-urlencoded"])?;
    let body = read_body(&request, payload, state.max_body_bytes).await?;
    let form = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("The form body is not UTF-8"))?;
    let mut parameters = parse_form(request.query_string())?;
    parameters.extend(parse_form(form)?);
    run(&request, &path, parameters, &state, &principal).await
}

fn parse_form(text: &str) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("The query could not be parsed: {e}")))
}

async fn run(
    request: &HttpRequest,
    resource_type: &str,
    parameters: Vec<(String, String)>,
    state: &AppState,
    principal: &Principal,
) -> ApiResult<HttpResponse> {
    let resource_type = ResourceType::parse(resource_type)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Search)?;
    let strict = preferences(request.headers()).strict;
    let parsed = search::parse(
        resource_type.as_str(),
        &parameters,
        state.page_limits,
        strict,
        &state.base_url,
    )?;
    let mut filters = parsed.filters.clone();
    if let Access::Patient(patient) = access {
        filters.push(compartment_filter(&resource_type, patient));
    }
    let query = SearchQuery {
        resource_type: resource_type.to_string(),
        filters,
        count: parsed.count,
        after_seq: parsed.after_seq,
        with_total: parsed.total == TotalMode::Accurate,
    };
    let page = crate::store::search::search(&state.pool, &query).await?;
    let page_url = |cursor: Option<i64>| {
        let mut pairs = parsed.applied.clone();
        if let Some(cursor) = cursor {
            pairs.push((CURSOR_PARAMETER.to_string(), cursor.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{}/{resource_type}?{query}", state.base_url)
    };
    let mut links = vec![Link {
        relation: "self",
        url: page_url(parsed.after_seq),
    }];
    if let Some(cursor) = page.next_cursor {
        links.push(Link {
            relation: "next",
            url: page_url(Some(cursor)),
        });
    }
    let mut bundle = searchset(&state.base_url, page.resources, page.total, &links);
    if !parsed.ignored.is_empty() {
        let outcome = crate::fhir::outcome::operation_outcome(&[Issue::warning(
            "not-supported",
            format!(
                "Ignored unsupported search parameters: {}",
                parsed.ignored.join(", ")
            ),
        )]);
        if let Some(entries) = bundle["entry"].as_array_mut() {
            entries.push(serde_json::json!({"resource": outcome, "search": {"mode": "outcome"}}));
        }
    }
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(bundle))
}

/// The filter that keeps a patient-scoped search inside that patient's compartment.
fn compartment_filter(resource_type: &ResourceType, patient: String) -> Filter {
    match resource_type.as_str() {
        "Patient" => Filter::Ids(vec![patient]),
        _ => Filter::Reference {
            param: "patient".into(),
            values: vec![ReferenceMatch {
                target_type: Some("Patient".into()),
                id: patient,
            }],
        },
    }
}
