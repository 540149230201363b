//! Conditional interactions, which pick their target by search criteria: create with
//! `If-None-Exist`, update by `PUT /Type?criteria`, delete by `DELETE /Type?criteria`.
//! The search and the write run in one transaction (`store::resources::write_conditionally`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::AppState;
use super::crud::{deletion, ensure_in_compartment, ensure_may_create, resource_body};
use super::http::{
    Preferences, created_or_ok, if_match, preferences, write_response, written_response,
};
use super::search::conditional_criteria;
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::outcome::Issue;
use crate::fhir::resource::id_of;
use crate::fhir::{ResourceId, ResourceType};
use crate::store::resources::{self, ConditionalStep, Current, Matched, NextContent, WriteMethod};
use crate::store::search::SearchQuery;

/// The criteria of a conditional write as a search, and its lock key. They read what they
/// match, so the caller needs the search permission too, and a patient-scoped search sees
/// only its compartment.
pub(super) fn criteria_search(
    principal: &Principal,
    resource_type: &ResourceType,
    criteria: &str,
    state: &AppState,
) -> ApiResult<(SearchQuery, String)> {
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Search)?;
    conditional_criteria(resource_type, criteria, state, &access)
}

fn several(resource_type: &ResourceType, criteria: &str) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "The criteria '{criteria}' match more than one {resource_type}; make them more selective"
    ))
}

/// A conditional create's choice: create when nothing matches, stop at one match.
pub(super) fn create_target<'a>(
    resource_type: &'a ResourceType,
    criteria: &'a str,
) -> impl FnOnce(&Matched) -> ApiResult<ConditionalStep> + Send + 'a {
    move |matched| match matched {
        Matched::Nothing => Ok(ConditionalStep::Write(
            ResourceId::generate(),
            WriteMethod::Create,
        )),
        Matched::One(_) => Ok(ConditionalStep::Stop),
        Matched::Several => Err(several(resource_type, criteria)),
    }
}

/// A conditional update's choice: the one match, or (no match) the body's id or a new one.
pub(super) fn update_target<'a>(
    resource_type: &'a ResourceType,
    criteria: &'a str,
    body_id: Option<ResourceId>,
) -> impl FnOnce(&Matched) -> ApiResult<ConditionalStep> + Send + 'a {
    move |matched| {
        let target = match (matched, body_id) {
            (Matched::Several, _) => return Err(several(resource_type, criteria)),
            (Matched::Nothing, Some(id)) => id,
            (Matched::Nothing, None) => ResourceId::generate(),
            (Matched::One(found), Some(id)) if found.id != id.as_str() => {
                return Err(ApiError::bad_parameter(
                    "id",
                    format!(
                        "The body's id '{id}' is not that of {resource_type}/{}, which the criteria match",
                        found.id
                    ),
                ));
            }
            (Matched::One(found), _) => ResourceId::parse(&found.id)?,
        };
        Ok(ConditionalStep::Write(target, WriteMethod::Update))
    }
}

/// A conditional update's decision: when nothing matched, the chosen id must be free.
pub(super) fn conditional_replace<'a>(
    access: &'a Access,
    resource_type: &'a ResourceType,
    criteria: &'a str,
    resource: Value,
) -> impl FnOnce(&Matched, Option<&Current>) -> ApiResult<NextContent> + Send + 'a {
    move |matched, current| {
        if let Some(existing) = current.and_then(|c| c.content.as_ref()) {
            if matches!(matched, Matched::Nothing) {
                return Err(ApiError::Conflict(format!(
                    "{resource_type}/{} exists but does not match the criteria '{criteria}'",
                    id_of(existing).unwrap_or_default()
                )));
            }
            ensure_in_compartment(access, resource_type, existing)?;
        }
        Ok(NextContent::Write(resource))
    }
}

/// A conditional delete's choice: the one match, or nothing to do.
pub(super) fn delete_target<'a>(
    resource_type: &'a ResourceType,
    criteria: &'a str,
) -> impl FnOnce(&Matched) -> ApiResult<ConditionalStep> + Send + 'a {
    move |matched| match matched {
        Matched::Nothing => Ok(ConditionalStep::Stop),
        Matched::One(found) => Ok(ConditionalStep::Write(
            ResourceId::parse(&found.id)?,
            WriteMethod::Delete,
        )),
        Matched::Several => Err(several(resource_type, criteria)),
    }
}

/// `POST /Type` with `If-None-Exist`: creates only when nothing matches; one match is
/// returned as it is (200), several are a 412.
#[allow(clippy::too_many_arguments)]
pub async fn create_if_none_exist(
    state: &AppState,
    principal: &Principal,
    access: &Access,
    resource_type: &ResourceType,
    resource: Value,
    warnings: &[Issue],
    preferences: Preferences,
    criteria: &str,
) -> ApiResult<HttpResponse> {
    let (query, key) = criteria_search(principal, resource_type, criteria, state)?;
    ensure_may_create(access, resource_type, &resource)?;
    let outcome = resources::write_conditionally(
        &state.pool,
        resource_type,
        &query,
        &key,
        None,
        &state.writes,
        create_target(resource_type, criteria),
        |_, _| Ok(NextContent::Write(resource)),
    )
    .await?;
    match (outcome.written, outcome.matched) {
        (Some(written), _) => Ok(written_response(
            StatusCode::CREATED,
            &written,
            &state.base_url,
            preferences,
            warnings,
        )),
        (None, Matched::One(existing)) => Ok(write_response(
            StatusCode::OK,
            &existing,
            &state.base_url,
            preferences,
            &[Issue::information(format!(
                "{resource_type}/{} already matches If-None-Exist '{criteria}'; nothing was created",
                existing.id
            ))],
        )),
        (None, _) => Err(ApiError::internal("conditional create wrote nothing")),
    }
}

#[utoipa::path(
    put, path = "/fhir/{type}", tag = "FHIR resources", operation_id = "conditional_update",
    summary = "Conditional update: update the one resource the search criteria match",
    description = "No match: the resource is created (with the body's id, or a new one). One match: it is updated; a body id must be that resource's. Several matches: 412. Unknown parameters are refused, not ignored.",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. Patient"),
        ("identifier" = Option<String>, Query, description = "Any search parameters of the type, e.g. identifier=http://clinic.example/mrn|MRN-1"),
        ("Prefer" = Option<String>, Header, description = "return=minimal | representation | OperationOutcome"),
        ("If-Match" = Option<String>, Header, description = "W/\"3\": only write if version 3 is current")),
    request_body(content = crate::openapi::AnyResource, content_type = "application/fhir+json"),
    responses(
        (status = 200, description = "The matching resource, updated", body = crate::openapi::AnyResource, content_type = "application/fhir+json"),
        (status = 201, description = "Nothing matched; created", body = crate::openapi::AnyResource, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn update(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let resource_type = ResourceType::parse(&path)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Update)?;
    let criteria = request.query_string();
    let (query, key) = criteria_search(&principal, &resource_type, criteria, &state)?;
    let preferences = preferences(request.headers());
    let expected_version = if_match(request.headers())?;
    let (resource, warnings) =
        resource_body(&request, payload, &state, &resource_type, preferences).await?;
    let body_id = id_of(&resource).map(ResourceId::parse).transpose()?;
    ensure_in_compartment(&access, &resource_type, &resource)?;
    let outcome = resources::write_conditionally(
        &state.pool,
        &resource_type,
        &query,
        &key,
        expected_version,
        &state.writes,
        update_target(&resource_type, criteria, body_id),
        conditional_replace(&access, &resource_type, criteria, resource),
    )
    .await?;
    let written = outcome
        .written
        .ok_or_else(|| ApiError::internal("conditional update wrote nothing"))?;
    Ok(written_response(
        created_or_ok(written.created),
        &written,
        &state.base_url,
        preferences,
        &warnings,
    ))
}

#[utoipa::path(
    delete, path = "/fhir/{type}", tag = "FHIR resources", operation_id = "conditional_delete",
    summary = "Conditional delete: delete the one resource the search criteria match",
    description = "No match: nothing to delete (204). One match: it is deleted (204). Several matches: 412 (conditionalDelete is 'single'). Unknown parameters are refused, not ignored.",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. Observation"),
        ("identifier" = Option<String>, Query, description = "Any search parameters of the type, e.g. identifier=http://clinic.example/obs|OBS-1"),
        ("If-Match" = Option<String>, Header, description = "W/\"3\": only delete if version 3 is current")),
    responses(
        (status = 204, description = "Deleted, or nothing matched")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn delete(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let resource_type = ResourceType::parse(&path)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Delete)?;
    let criteria = request.query_string();
    let (query, key) = criteria_search(&principal, &resource_type, criteria, &state)?;
    let expected_version = if_match(request.headers())?;
    resources::write_conditionally(
        &state.pool,
        &resource_type,
        &query,
        &key,
        expected_version,
        &state.writes,
        delete_target(&resource_type, criteria),
        |_, current| deletion(&access, &resource_type)(current),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
