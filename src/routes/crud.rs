//! Instance interactions: create, read, vread, update, patch, delete.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::AppState;
use super::conditional;
use super::http::{
    Preferences, RESOURCE_CONTENT_TYPES, created_or_ok, if_match, if_none_match_hits, parse_json,
    preferences, read_body, require_content_type, resource_response, written_response,
};
use super::reach::ensure_within_reach;
use crate::auth::access::{Access, Reach, in_patient_compartment};
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::outcome::Issue;
use crate::fhir::resource::{id_of, resource_type_of};
use crate::fhir::validation::{ValidationOptions, validate_resource};
use crate::fhir::{ResourceId, ResourceType, parse_version_id};
use crate::store::resources::{self, Current, NextContent, WriteMethod};

/// Reads, parses and validates a resource body for `resource_type`. Returns the resource
/// and the warnings to report (lenient handling).
pub(super) async fn resource_body(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    resource_type: &ResourceType,
    preferences: Preferences,
) -> ApiResult<(Value, Vec<Issue>)> {
    require_content_type(request, RESOURCE_CONTENT_TYPES)?;
    let body = read_body(request, payload, state.max_body_bytes).await?;
    let resource = parse_json(&body, state.json_limits)?;
    if !resource.is_object() {
        return Err(ApiError::bad_request(
            "The body must be a JSON object holding one FHIR resource",
        ));
    }
    let warnings = checked(resource_type, &resource, preferences)?;
    Ok((resource, warnings))
}

/// Validates; errors refuse the write (400 for base-spec rules, 422 for profile rules).
pub(super) fn checked(
    resource_type: &ResourceType,
    resource: &Value,
    preferences: Preferences,
) -> ApiResult<Vec<Issue>> {
    let options = ValidationOptions {
        lenient: preferences.lenient,
    };
    let report = validate_resource(resource_type.as_str(), resource, options);
    if report.structural_errors() {
        Err(ApiError::Invalid(report.issues))
    } else if report.has_errors() {
        Err(ApiError::Unprocessable(report.issues))
    } else {
        Ok(report.issues)
    }
}

/// A patient-scoped token may add data about its patient, but no new Patient: the server
/// assigns the id, so the new resource could never be that patient.
pub(super) fn ensure_may_create(
    access: &Access,
    resource_type: &ResourceType,
    resource: &Value,
) -> ApiResult<()> {
    if matches!(access, Access::Patient(_)) && resource_type.as_str() == "Patient" {
        return Err(ApiError::Forbidden(
            "A patient-scoped token cannot create Patient resources".into(),
        ));
    }
    ensure_in_compartment(access, resource_type, resource)
}

pub(super) fn ensure_in_compartment(
    access: &Access,
    resource_type: &ResourceType,
    resource: &Value,
) -> ApiResult<()> {
    match access {
        Access::Full => Ok(()),
        Access::Patient(patient)
            if in_patient_compartment(resource_type.as_str(), resource, patient) =>
        {
            Ok(())
        }
        Access::Patient(_) => Err(ApiError::Forbidden(
            "The access token is limited to one patient's data; this resource is outside it".into(),
        )),
    }
}

/// The criteria of a conditional create, if the request has them.
fn if_none_exist(request: &HttpRequest) -> ApiResult<Option<&str>> {
    request
        .headers()
        .get("if-none-exist")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::bad_parameter("If-None-Exist", "If-None-Exist is not text"))
        })
        .transpose()
}

pub(super) fn not_found(resource_type: &ResourceType, id: &ResourceId) -> ApiError {
    ApiError::NotFound(format!("{resource_type}/{id} does not exist"))
}

pub(super) fn gone(resource_type: &ResourceType, id: &ResourceId) -> ApiError {
    ApiError::Gone(format!("{resource_type}/{id} has been deleted"))
}

/// The type and id of an instance URL.
pub fn instance(resource_type: &str, id: &str) -> ApiResult<(ResourceType, ResourceId)> {
    Ok((ResourceType::parse(resource_type)?, ResourceId::parse(id)?))
}

pub(super) fn live_content<'c>(
    current: Option<&'c Current>,
    resource_type: &ResourceType,
    id: &ResourceId,
) -> ApiResult<&'c Value> {
    match current {
        None => Err(not_found(resource_type, id)),
        Some(Current {
            content: Some(content),
            ..
        }) => Ok(content),
        Some(_) => Err(gone(resource_type, id)),
    }
}

/// The current content of a live resource: 404 if it never existed, 410 if deleted.
pub(super) async fn read_live(
    state: &AppState,
    resource_type: &ResourceType,
    id: &ResourceId,
) -> ApiResult<Value> {
    let current = resources::read_current(&state.pool, resource_type, id).await?;
    live_content(current.as_ref(), resource_type, id).cloned()
}

/// The body of an update must carry the id of its URL.
pub(super) fn check_body_id(resource: &Value, id: &ResourceId) -> ApiResult<()> {
    match id_of(resource) {
        Some(body_id) if body_id == id.as_str() => Ok(()),
        Some(body_id) => Err(ApiError::bad_parameter(
            "id",
            format!("The body's id '{body_id}' does not match the id '{id}' in the URL"),
        )),
        None => Err(ApiError::bad_parameter(
            "id",
            format!("The body needs an id, and it must be '{id}'"),
        )),
    }
}

/// An update's decision: the new content, if the caller may replace what is there.
pub(super) fn replace_with<'a>(
    access: &'a Access,
    resource_type: &'a ResourceType,
    resource: Value,
) -> impl FnOnce(Option<&Current>) -> ApiResult<NextContent> + Send + 'a {
    move |current| {
        if let Some(content) = current.and_then(|c| c.content.as_ref()) {
            ensure_in_compartment(access, resource_type, content)?;
        }
        Ok(NextContent::Write(resource))
    }
}

/// A patch's decision: the current content with `operations` applied, validated again
/// (its warnings land in `warnings`); neither resourceType nor id may change.
pub(super) fn patched_with<'a>(
    access: &'a Access,
    resource_type: &'a ResourceType,
    id: &'a ResourceId,
    operations: &'a json_patch::Patch,
    preferences: Preferences,
    warnings: &'a mut Vec<Issue>,
) -> impl FnOnce(Option<&Current>) -> ApiResult<NextContent> + Send + 'a {
    move |current| {
        let mut patched = live_content(current, resource_type, id)?.clone();
        ensure_in_compartment(access, resource_type, &patched)?;
        json_patch::patch(&mut patched, operations).map_err(|e| {
            ApiError::Unprocessable(vec![Issue::error(
                "processing",
                format!("The patch could not be applied: {e}"),
            )])
        })?;
        if resource_type_of(&patched) != Some(resource_type.as_str())
            || id_of(&patched) != Some(id.as_str())
        {
            return Err(ApiError::Unprocessable(vec![Issue::error(
                "processing",
                "A patch may not change resourceType or id",
            )]));
        }
        *warnings = checked(resource_type, &patched, preferences)?;
        ensure_in_compartment(access, resource_type, &patched)?;
        Ok(NextContent::Write(patched))
    }
}

/// A delete's decision: a deletion marker for a live resource the caller may reach;
/// nothing for one already deleted or never created.
pub(super) fn deletion<'a>(
    access: &'a Access,
    resource_type: &'a ResourceType,
) -> impl FnOnce(Option<&Current>) -> ApiResult<NextContent> + Send + 'a {
    move |current| match current.and_then(|c| c.content.as_ref()) {
        Some(content) => {
            ensure_in_compartment(access, resource_type, content)?;
            Ok(NextContent::Delete)
        }
        None => Ok(NextContent::Nothing),
    }
}

#[utoipa::path(
    post, path = "/fhir/{type}", tag = "FHIR resources",
    summary = "Create a resource (server-assigned id)",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("Prefer" = Option<String>, Header, description = "return=minimal | representation | OperationOutcome; handling=lenient accepts unknown elements"), ("If-None-Exist" = Option<String>, Header, description = "Conditional create, e.g. identifier=http://clinic.example/mrn|MRN-1: created only if nothing matches")),
    request_body(content = crate::openapi::AnyResource, content_type = "application/fhir+json", description = "The resource; its id, if any, is replaced"),
    responses(
        (status = 201, description = "Created as version 1", body = crate::openapi::AnyResource, content_type = "application/fhir+json", headers(("ETag" = String, description = "W/\"version\""), ("Last-Modified" = String), ("Location" = String, description = "…/Type/id/_history/version"))),
        (status = 200, description = "If-None-Exist matched one resource, returned as it is; nothing was created", body = crate::openapi::AnyResource, content_type = "application/fhir+json", headers(("ETag" = String, description = "W/\"version\""), ("Location" = String, description = "…/Type/id/_history/version")))
    ),
    security(("bearer_jwt" = []))
)]
pub async fn create(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let resource_type = ResourceType::parse(&path)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Create)?;
    let preferences = preferences(request.headers());
    let (resource, warnings) =
        resource_body(&request, payload, &state, &resource_type, preferences).await?;
    if let Some(criteria) = if_none_exist(&request)? {
        return conditional::create_if_none_exist(
            &state,
            &principal,
            &access,
            &resource_type,
            resource,
            &warnings,
            preferences,
            criteria,
        )
        .await;
    }
    ensure_may_create(&access, &resource_type, &resource)?;
    let id = ResourceId::generate();
    let written = resources::write_version(
        &state.pool,
        &resource_type,
        &id,
        WriteMethod::Create,
        None,
        &state.writes,
        |_| Ok(NextContent::Write(resource)),
    )
    .await?
    .ok_or_else(|| ApiError::internal("create wrote nothing"))?;
    Ok(written_response(
        StatusCode::CREATED,
        &written,
        &state.base_url,
        preferences,
        &warnings,
    ))
}

#[utoipa::path(
    get, path = "/fhir/{type}/{id}", tag = "FHIR resources",
    summary = "Read the current version",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("id" = String, Path, description = "Logical id, e.g. demo-patient-01"), ("If-None-Match" = Option<String>, Header, description = "W/\"3\": 304 if still current")),
    responses(
        (status = 200, description = "The current version", body = crate::openapi::AnyResource, content_type = "application/fhir+json", headers(("ETag" = String), ("Last-Modified" = String))),
        (status = 304, description = "Not modified since the given ETag")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn read(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (resource_type, id) = instance(&path.0, &path.1)?;
    let reach = principal.reach(resource_type.as_str(), Interaction::Read)?;
    let current = resources::read_current_text(&state.pool, &resource_type, &id)
        .await?
        .ok_or_else(|| not_found(&resource_type, &id))?;
    let Some(content) = current.content else {
        return Err(gone(&resource_type, &id));
    };
    if reach != Reach::Whole(Access::Full) {
        let parsed: Value = serde_json::from_str(&content).map_err(ApiError::internal)?;
        ensure_within_reach(&state, &reach, &resource_type, &parsed).await?;
    }
    if if_none_match_hits(request.headers(), current.version_id) {
        return Ok(resource_response(
            StatusCode::NOT_MODIFIED,
            current.version_id,
            current.last_updated,
        )
        .finish());
    }
    Ok(resource_response(StatusCode::OK, current.version_id, current.last_updated).body(content))
}

#[utoipa::path(
    get, path = "/fhir/{type}/{id}/_history/{version}", tag = "FHIR resources",
    summary = "Read a specific version",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("id" = String, Path, description = "Logical id, e.g. demo-patient-01"), ("version" = String, Path, description = "Version id, e.g. 1")),
    responses(
        (status = 200, description = "That version", body = crate::openapi::AnyResource, content_type = "application/fhir+json", headers(("ETag" = String), ("Last-Modified" = String)))
    ),
    security(("bearer_jwt" = []))
)]
pub async fn vread(
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (resource_type, id) = instance(&path.0, &path.1)?;
    let reach = principal.reach(resource_type.as_str(), Interaction::Vread)?;
    let version_id = parse_version_id(&path.2)?;
    let version = resources::read_version(&state.pool, &resource_type, &id, version_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("{resource_type}/{id} has no version {version_id}"))
        })?;
    let Some(content) = &version.content else {
        return Err(ApiError::Gone(format!(
            "Version {version_id} of {resource_type}/{id} is a deletion"
        )));
    };
    ensure_within_reach(&state, &reach, &resource_type, content).await?;
    Ok(resource_response(StatusCode::OK, version.version_id, version.last_updated).json(content))
}

#[utoipa::path(
    put, path = "/fhir/{type}/{id}", tag = "FHIR resources",
    summary = "Update, or create with a client-chosen id",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("id" = String, Path, description = "Logical id, e.g. demo-patient-01"), ("Prefer" = Option<String>, Header, description = "return=minimal | representation | OperationOutcome; handling=lenient accepts unknown elements"), ("If-Match" = Option<String>, Header, description = "W/\"3\": only write if version 3 is current")),
    request_body(content = crate::openapi::AnyResource, content_type = "application/fhir+json", description = "The whole resource; its id must equal the URL id"),
    responses(
        (status = 200, description = "Updated as a new version", body = crate::openapi::AnyResource, content_type = "application/fhir+json", headers(("ETag" = String, description = "W/\"version\""), ("Last-Modified" = String), ("Location" = String, description = "…/Type/id/_history/version"))),
        (status = 201, description = "Created with the client's id", body = crate::openapi::AnyResource, content_type = "application/fhir+json", headers(("ETag" = String, description = "W/\"version\""), ("Last-Modified" = String), ("Location" = String, description = "…/Type/id/_history/version")))
    ),
    security(("bearer_jwt" = []))
)]
pub async fn update(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (resource_type, id) = instance(&path.0, &path.1)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Update)?;
    let preferences = preferences(request.headers());
    let expected_version = if_match(request.headers())?;
    let (resource, warnings) =
        resource_body(&request, payload, &state, &resource_type, preferences).await?;
    check_body_id(&resource, &id)?;
    ensure_in_compartment(&access, &resource_type, &resource)?;
    let written = resources::write_version(
        &state.pool,
        &resource_type,
        &id,
        WriteMethod::Update,
        expected_version,
        &state.writes,
        replace_with(&access, &resource_type, resource),
    )
    .await?
    .ok_or_else(|| ApiError::internal("update wrote nothing"))?;
    Ok(written_response(
        created_or_ok(written.created),
        &written,
        &state.base_url,
        preferences,
        &warnings,
    ))
}

#[utoipa::path(
    patch, path = "/fhir/{type}/{id}", tag = "FHIR resources",
    summary = "Apply a JSON Patch",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("id" = String, Path, description = "Logical id, e.g. demo-patient-01"), ("Prefer" = Option<String>, Header, description = "return=minimal | representation | OperationOutcome; handling=lenient accepts unknown elements"), ("If-Match" = Option<String>, Header, description = "W/\"3\": only write if version 3 is current")),
    request_body(content = crate::openapi::JsonPatch, content_type = "application/json-patch+json"),
    responses(
        (status = 200, description = "Patched as a new version", body = crate::openapi::AnyResource, content_type = "application/fhir+json", headers(("ETag" = String, description = "W/\"version\""), ("Last-Modified" = String), ("Location" = String, description = "…/Type/id/_history/version")))
    ),
    security(("bearer_jwt" = []))
)]
pub async fn patch(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (resource_type, id) = instance(&path.0, &path.1)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Patch)?;
    let preferences = preferences(request.headers());
    let expected_version = if_match(request.headers())?;
    require_content_type(&request, &["application/json-patch+json"])?;
    let body = read_body(&request, payload, state.max_body_bytes).await?;
    let operations: json_patch::Patch =
        serde_json::from_value(parse_json(&body, state.json_limits)?).map_err(|e| {
            ApiError::bad_request(format!("The body is not a JSON Patch document: {e}"))
        })?;
    let mut warnings = Vec::new();
    let written = resources::write_version(
        &state.pool,
        &resource_type,
        &id,
        WriteMethod::Patch,
        expected_version,
        &state.writes,
        patched_with(
            &access,
            &resource_type,
            &id,
            &operations,
            preferences,
            &mut warnings,
        ),
    )
    .await?
    .ok_or_else(|| ApiError::internal("patch wrote nothing"))?;
    Ok(written_response(
        StatusCode::OK,
        &written,
        &state.base_url,
        preferences,
        &warnings,
    ))
}

#[utoipa::path(
    delete, path = "/fhir/{type}/{id}", tag = "FHIR resources",
    summary = "Delete (history keeps every version)",
    params(("type" = crate::openapi::ResourceTypeName, Path, description = "Resource type, e.g. MedicationAdministration"), ("id" = String, Path, description = "Logical id, e.g. demo-patient-01"), ("If-Match" = Option<String>, Header, description = "W/\"3\": only write if version 3 is current")),
    responses(
        (status = 204, description = "Deleted, or there was nothing to delete")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn delete(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (resource_type, id) = instance(&path.0, &path.1)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Delete)?;
    let expected_version = if_match(request.headers())?;
    resources::write_version(
        &state.pool,
        &resource_type,
        &id,
        WriteMethod::Delete,
        expected_version,
        &state.writes,
        deletion(&access, &resource_type),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
