//! `Patient/{id}/$everything` by GET or by POST with a Parameters body: the patient's
//! compartment and what it refers to, in keyset pages.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::http::{
    RESOURCE_CONTENT_TYPES, parse_json, preferences, read_body, require_content_type,
};
use super::operations::readable_patient;
use super::search::{decode_cursor, encode_cursor, parse_form};
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::error::ApiResult;
use crate::fhir::FHIR_JSON;
use crate::fhir::bundle::{Link, SearchMode, search_entry, searchset_of};
use crate::fhir::compartment::patient_compartment_types;
use crate::fhir::everything::{self, EverythingRequest, referenced_types};
use crate::fhir::outcome::{Issue, operation_outcome};
use crate::fhir::parameters::name_value_pairs;
use crate::fhir::search::CURSOR_PARAMETER;
use crate::store::everything::{EverythingPage, EverythingQuery};
use crate::store::search::Cursor;

#[utoipa::path(
    get, path = "/fhir/Patient/{id}/$everything", tag = "FHIR operations",
    summary = "The patient's record: the Patient, every resource in its compartment, and the practitioners, organizations and medications they refer to",
    description = "A searchset Bundle in pages of `_count` entries (creation order, keyset paging: follow the `next` link). \
                   Compartment resources are `match` entries, referenced ones `include` entries (each once). \
                   Types the token may not read are left out and named in an `outcome` entry.",
    params(("id" = String, Path, description = "Patient id, e.g. demo-patient-01"),
        ("start" = Option<String>, Query, description = "Care from this date: resources with a care date (effective, onset, authored, period) before it are left out"),
        ("end" = Option<String>, Query, description = "Care up to the end of this date"),
        ("_since" = Option<String>, Query, description = "Only resources last updated at or after this instant, e.g. 2026-11-01T00:00:00Z"),
        ("_type" = Option<String>, Query, description = "Comma-separated types to return, e.g. Observation,MedicationAdministration"),
        ("_count" = Option<i64>, Query, description = "Page size")),
    responses(
        (status = 200, description = "A searchset Bundle", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn everything_get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let parameters = parse_form(request.query_string())?;
    run(&request, &path, parameters, &state, &principal).await
}

#[utoipa::path(
    post, path = "/fhir/Patient/{id}/$everything", tag = "FHIR operations",
    summary = "$everything with its parameters in a Parameters body (same result as GET)",
    params(("id" = String, Path, description = "Patient id, e.g. demo-patient-01")),
    request_body(content = crate::openapi::AnyResource, content_type = "application/fhir+json", description = "Parameters: start and end (valueDate), _since (valueInstant), _type (valueCode), _count (valueInteger); or no body"),
    responses(
        (status = 200, description = "A searchset Bundle", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn everything_post(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let mut parameters = parse_form(request.query_string())?;
    let body = read_body(&request, payload, state.max_body_bytes).await?;
    if !body.is_empty() {
        require_content_type(&request, RESOURCE_CONTENT_TYPES)?;
        parameters.extend(name_value_pairs(
            &parse_json(&body, state.json_limits)?,
            "The body of POST $everything must be a Parameters resource",
        )?);
    }
    run(&request, &path, parameters, &state, &principal).await
}

async fn run(
    request: &HttpRequest,
    patient: &str,
    parameters: Vec<(String, String)>,
    state: &AppState,
    principal: &Principal,
) -> ApiResult<HttpResponse> {
    readable_patient(state, principal, patient).await?;
    let parsed = everything::parse(
        &parameters,
        state.page_limits,
        state.writes.index.zone,
        preferences(request.headers()).strict,
    )?;
    let after = parsed
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(|cursor| cursor.seq);
    let (query, left_out) = query_for(principal, patient, &parsed, after);
    let page = crate::store::everything::page(&state.pool, &query).await?;
    let mut issues = Vec::new();
    if !parsed.ignored.is_empty() {
        issues.push(Issue::warning(
            "not-supported",
            format!(
                "Ignored parameters that $everything does not have: {}",
                parsed.ignored.join(", ")
            ),
        ));
    }
    if !left_out.is_empty() {
        issues.push(Issue::warning(
            "suppressed",
            format!(
                "Left out the types the access token may not read: {}",
                left_out.join(", ")
            ),
        ));
    }
    let bundle = bundle(state, patient, &parsed, after, page, &issues);
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(bundle))
}

/// Whether the caller may read this type's resources in `patient`'s record: with full
/// access, or with access confined to that same patient.
fn may_read(principal: &Principal, resource_type: &str, patient: &str) -> bool {
    match principal.authorize(Some(resource_type), Interaction::Read) {
        Ok(Access::Full) => true,
        Ok(Access::Patient(own)) => own == patient,
        Err(_) => false,
    }
}

/// The store query for this request, and the requested types left out because the caller
/// may not read them. Resources of those types are neither returned nor followed.
fn query_for(
    principal: &Principal,
    patient: &str,
    request: &EverythingRequest,
    after: Option<i64>,
) -> (EverythingQuery, Vec<String>) {
    let mut left_out = Vec::new();
    let mut readable = |resource_type: &str| {
        let may = may_read(principal, resource_type, patient);
        if !may && request.returns(resource_type) {
            left_out.push(resource_type.to_string());
        }
        may
    };
    let readable_compartment: Vec<String> = patient_compartment_types()
        .filter(|t| readable(t))
        .map(str::to_string)
        .collect();
    let referenced: Vec<String> = referenced_types()
        .into_iter()
        .filter(|t| readable(t) && request.returns(t))
        .map(str::to_string)
        .collect();
    let returned = readable_compartment
        .iter()
        .filter(|t| request.returns(t))
        .cloned()
        .collect();
    let query = EverythingQuery {
        patient: patient.to_string(),
        readable: readable_compartment,
        returned,
        referenced,
        care: request.care,
        since: request.since,
        count: request.count,
        after,
    };
    (query, left_out)
}

fn bundle(
    state: &AppState,
    patient: &str,
    request: &EverythingRequest,
    after: Option<i64>,
    page: EverythingPage,
    issues: &[Issue],
) -> serde_json::Value {
    let page_url = |seq: Option<i64>| {
        let mut pairs = request.applied.clone();
        if let Some(seq) = seq {
            let cursor = Cursor {
                values: Vec::new(),
                seq,
                backwards: false,
            };
            pairs.push((CURSOR_PARAMETER.to_string(), encode_cursor(&cursor)));
        }
        format!(
            "{}/Patient/{patient}/$everything?{}",
            state.base_url,
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    let mut links = vec![Link {
        relation: "self",
        url: page_url(after),
    }];
    if let Some(next) = page.next {
        links.push(Link {
            relation: "next",
            url: page_url(Some(next)),
        });
    }
    let total = (after.is_none() && page.next.is_none()).then_some(page.entries.len() as i64);
    let mut entries: Vec<serde_json::Value> = page
        .entries
        .into_iter()
        .map(|entry| {
            let mode = if entry.included {
                SearchMode::Include
            } else {
                SearchMode::Match
            };
            search_entry(&state.base_url, entry.content, mode)
        })
        .collect();
    if !issues.is_empty() {
        entries.push(search_entry(
            &state.base_url,
            operation_outcome(issues),
            SearchMode::Outcome,
        ));
    }
    searchset_of(entries, total, &links)
}
