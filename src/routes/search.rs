//! Type-level search, by GET with a query string or POST with a form body: parse, run,
//! add includes, shape entries (`_summary`, `_elements`) and link the pages.

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::AppState;
use super::http::{preferences, read_body, require_content_type};
use super::reach::{compartment_filter, reach_filters, visible_included};
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::bundle::{Link, SearchMode, search_entry, searchset};
use crate::fhir::outcome::{Issue, operation_outcome};
use crate::fhir::search::{
    self, CURSOR_PARAMETER, Include, ParsedSearch, RESULT_PARAMETERS, SearchContext, Summary,
    TotalMode,
};
use crate::fhir::{FHIR_JSON, ResourceType, summary};
use crate::store::search::{Cursor, SearchQuery, Total};

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

pub fn parse_form(text: &str) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("The query could not be parsed: {e}")))
}

pub(super) fn encode_cursor(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).expect("cursor serialises"))
}

pub(super) fn decode_cursor(text: &str) -> ApiResult<Cursor> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::bad_parameter(
                CURSOR_PARAMETER,
                "The paging cursor is not valid; start again from the first page",
            )
        })
}

/// Parses a search for `resource_type` the way every search endpoint does.
pub fn parse_search(
    resource_type: &ResourceType,
    parameters: &[(String, String)],
    state: &AppState,
    strict: bool,
) -> ApiResult<ParsedSearch> {
    let context = SearchContext {
        limits: state.page_limits,
        strict,
        base_url: state.base_url.clone(),
        zone: state.writes.index.zone,
    };
    search::parse(resource_type.as_str(), parameters, &context)
}

async fn run(
    request: &HttpRequest,
    resource_type: &str,
    parameters: Vec<(String, String)>,
    state: &AppState,
    principal: &Principal,
) -> ApiResult<HttpResponse> {
    let strict = preferences(request.headers()).strict;
    let bundle = search_bundle(resource_type, parameters, state, principal, strict).await?;
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(bundle))
}

/// One page of a search as a searchset Bundle, with its includes and paging links.
pub(super) async fn search_bundle(
    resource_type: &str,
    parameters: Vec<(String, String)>,
    state: &AppState,
    principal: &Principal,
    strict: bool,
) -> ApiResult<Value> {
    let resource_type = ResourceType::parse(resource_type)?;
    let reach = principal.reach(resource_type.as_str(), Interaction::Search)?;
    let parsed = parse_search(&resource_type, &parameters, state, strict)?;
    let mut filters = parsed.filters.clone();
    filters.extend(reach_filters(&resource_type, &reach, state)?);
    let cursor = parsed.cursor.as_deref().map(decode_cursor).transpose()?;
    let total = match (parsed.total, parsed.summary, &cursor) {
        (_, Summary::Count, _) => Total::Accurate,
        (Some(TotalMode::None), _, _) => Total::None,
        (Some(TotalMode::Estimate), _, _) => Total::Estimate,
        (Some(TotalMode::Accurate), _, _) => Total::Accurate,
        // By default the first page reports what the configuration says; later pages
        // don't pay for a count again.
        (None, _, None) => state.default_total,
        (None, _, Some(_)) => Total::None,
    };
    let count = if parsed.summary == Summary::Count {
        0
    } else {
        parsed.count
    };
    let query = SearchQuery {
        resource_type: resource_type.to_string(),
        filters,
        sort: parsed.sort.clone(),
        count,
        cursor: cursor.clone(),
        total,
    };
    let page = crate::store::search::search(&state.pool, &query).await?;

    let mut issues = Vec::new();
    if !parsed.ignored.is_empty() {
        issues.push(Issue::warning(
            "not-supported",
            format!(
                "Ignored unsupported search parameters: {}",
                parsed.ignored.join(", ")
            ),
        ));
    }
    let found = includes(state, &page.rows, &parsed, &mut issues).await?;
    let found_count = found.len();
    let included = visible_included(state, principal, found).await?;
    if included.len() < found_count {
        issues.push(Issue::warning(
            "suppressed",
            "Some included resources were left out: the access token's scopes do not reach them",
        ));
    }

    let page_url = |cursor: Option<&Cursor>| {
        let mut pairs = parsed.applied.clone();
        if let Some(cursor) = cursor {
            pairs.push((CURSOR_PARAMETER.to_string(), encode_cursor(cursor)));
        }
        format!(
            "{}/{resource_type}?{}",
            state.base_url,
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    let mut links = vec![Link {
        relation: "self",
        url: page_url(cursor.as_ref()),
    }];
    if let Some(next) = &page.next {
        links.push(Link {
            relation: "next",
            url: page_url(Some(next)),
        });
    }
    if let Some(previous) = &page.previous {
        links.push(Link {
            relation: "previous",
            url: page_url(Some(previous)),
        });
    }
    let shape = |resource: Value| summary::apply(resource, parsed.summary, &parsed.elements);
    let matches = page
        .rows
        .into_iter()
        .map(|(_, content)| shape(content))
        .collect();
    let mut bundle = searchset(&state.base_url, matches, page.total, &links);
    let entries = bundle["entry"]
        .as_array_mut()
        .expect("searchset has entries");
    for (_, resource) in included {
        entries.push(search_entry(
            &state.base_url,
            shape(resource),
            SearchMode::Include,
        ));
    }
    if !issues.is_empty() {
        entries.push(search_entry(
            &state.base_url,
            operation_outcome(&issues),
            SearchMode::Outcome,
        ));
    }
    Ok(bundle)
}

/// Resources `_include` and `_revinclude` add to a page (`:iterate` follows them on from
/// what they added). Past `max_includes` the rest are left out, and an issue says how many.
async fn includes(
    state: &AppState,
    matches: &[(i64, Value)],
    parsed: &ParsedSearch,
    issues: &mut Vec<Issue>,
) -> ApiResult<Vec<(i64, Value)>> {
    const MAX_ITERATIONS: usize = 4;
    let mut seen: HashSet<i64> = matches.iter().map(|(seq, _)| *seq).collect();
    let mut included: Vec<(i64, Value)> = Vec::new();
    let mut frontier: Vec<(i64, Value)> = matches.to_vec();
    let mut left_out = 0usize;
    for iteration in 0..MAX_ITERATIONS {
        let applicable = |include: &&Include| iteration == 0 || include.iterate;
        let mut found: Vec<(i64, Value)> = Vec::new();
        for include in parsed.includes.iter().filter(applicable) {
            let sources: Vec<i64> = frontier
                .iter()
                .filter(|(_, r)| r["resourceType"] == include.source_type.as_str())
                .map(|(seq, _)| *seq)
                .collect();
            if sources.is_empty() {
                continue;
            }
            let targets = crate::store::search::referenced(
                &state.pool,
                &sources,
                &include.source_type,
                &include.param,
                include.target_type.as_deref(),
            )
            .await?;
            found.extend(crate::store::search::by_ids(&state.pool, &targets).await?);
        }
        for include in parsed.revincludes.iter().filter(applicable) {
            let targets: Vec<(String, String)> = frontier
                .iter()
                .filter_map(|(_, r)| {
                    Some((
                        r["resourceType"].as_str()?.to_string(),
                        r["id"].as_str()?.to_string(),
                    ))
                })
                .collect();
            let limit = (state.max_includes + 1) as i64;
            found.extend(
                crate::store::search::referring(
                    &state.pool,
                    &targets,
                    &include.source_type,
                    &include.param,
                    limit,
                )
                .await?,
            );
        }
        let mut added = Vec::new();
        for (seq, resource) in found {
            if !seen.insert(seq) {
                continue;
            }
            if included.len() + added.len() >= state.max_includes {
                left_out += 1;
                continue;
            }
            added.push((seq, resource));
        }
        if added.is_empty() {
            break;
        }
        included.extend(added.iter().cloned());
        frontier = added;
    }
    if left_out > 0 {
        issues.push(Issue::warning(
            "too-costly",
            format!(
                "{left_out} or more included resources were left out: this page includes at most {} (MAX_INCLUDES); ask for smaller pages",
                state.max_includes
            ),
        ));
    }
    Ok(included)
}

/// The criteria of a conditional create (`If-None-Exist`), update or delete, parsed strictly
/// (an unknown parameter would widen the match) and confined to the caller's compartment.
/// Also returns the criteria in a canonical order, the key that serialises requests with the
/// same criteria.
pub fn conditional_criteria(
    resource_type: &ResourceType,
    text: &str,
    state: &AppState,
    access: &Access,
) -> ApiResult<(SearchQuery, String)> {
    let text = text.trim();
    let text = text
        .strip_prefix(resource_type.as_str())
        .filter(|rest| rest.starts_with('?'))
        .unwrap_or(text);
    let text = text.strip_prefix('?').unwrap_or(text);
    let parameters = parse_form(text)?;
    if let Some((name, _)) = parameters
        .iter()
        .find(|(name, _)| RESULT_PARAMETERS.contains(&name.as_str()))
    {
        return Err(ApiError::bad_parameter(
            name,
            format!("{name} shapes search results and cannot be part of conditional criteria"),
        ));
    }
    let parsed = parse_search(resource_type, &parameters, state, true)?;
    if parsed.filters.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Conditional criteria need at least one search parameter of {resource_type}, e.g. identifier=system|value"
        )));
    }
    let mut filters = parsed.filters;
    if let Access::Patient(patient) = access {
        filters.push(compartment_filter(resource_type, patient.clone()));
    }
    let mut applied = parsed.applied;
    applied.sort();
    let key = format!(
        "{resource_type}?{}",
        serde_urlencoded::to_string(&applied).unwrap_or_default()
    );
    let query = SearchQuery {
        resource_type: resource_type.to_string(),
        filters,
        sort: Vec::new(),
        count: 2,
        cursor: None,
        total: Total::None,
    };
    Ok((query, key))
}
