//! Bulk Data `$export` (v2): the kick-off at system, Patient and Group level, the status
//! URL a client polls (and cancels with `DELETE`), and the NDJSON output files. A job is
//! its owner's alone: another token subject gets 404 for it and its files.

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::AppState;
use super::crud::{ensure_in_compartment, instance, read_live};
use super::http::http_date;
use super::search::parse_form;
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::export::manifest::{self, file_number, status_url};
use crate::export::request::{self, KickOff, group_members};
use crate::export::{Level, TypePlan};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::{Issue, operation_outcome};
use crate::fhir::search::SearchContext;
use crate::store::export::{self as jobs, JobState, NewJob};

const NDJSON: &str = "application/fhir+ndjson";
/// Seconds a client is asked to wait between polls of a running job.
const RETRY_AFTER_SECONDS: &str = "2";

#[utoipa::path(
    get, path = "/fhir/$export", tag = "Bulk Data",
    summary = "Export every resource of the types (system level), asynchronously",
    params(
        ("Prefer" = String, Header, description = "respond-async (required)"),
        ("Accept" = String, Header, description = "application/fhir+json (required)"),
        ("_outputFormat" = Option<String>, Query, description = "application/fhir+ndjson (the default), application/ndjson or ndjson"),
        ("_type" = Option<String>, Query, description = "Comma-separated resource types; default: every type the token may read and search"),
        ("_since" = Option<String>, Query, description = "FHIR instant: only resources last updated at or after it"),
        ("_typeFilter" = Option<String>, Query, description = "Searches per type, e.g. Observation?code=http://loinc.org|72514-3; several of one type are OR-ed")),
    responses(
        (status = 202, description = "Accepted; poll the Content-Location URL", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json", headers(("Content-Location" = String, description = "The status URL")))
    ),
    security(("bearer_jwt" = []))
)]
pub async fn system_export(
    request: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let kickoff = kickoff_parameters(&request, &state)?;
    start(&request, &state, &principal, Level::System, &kickoff, None).await
}

#[utoipa::path(
    get, path = "/fhir/Patient/$export", tag = "Bulk Data",
    summary = "Export the compartments of all patients, asynchronously",
    params(
        ("Prefer" = String, Header, description = "respond-async (required)"),
        ("Accept" = String, Header, description = "application/fhir+json (required)"),
        ("_outputFormat" = Option<String>, Query, description = "application/fhir+ndjson (the default), application/ndjson or ndjson"),
        ("_type" = Option<String>, Query, description = "Comma-separated types of the patient compartment; default: every one the token may read and search"),
        ("_since" = Option<String>, Query, description = "FHIR instant: only resources last updated at or after it"),
        ("_typeFilter" = Option<String>, Query, description = "Searches per type, e.g. Observation?code=http://loinc.org|72514-3")),
    responses(
        (status = 202, description = "Accepted; poll the Content-Location URL", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json", headers(("Content-Location" = String, description = "The status URL")))
    ),
    security(("bearer_jwt" = []))
)]
pub async fn patient_export(
    request: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let kickoff = kickoff_parameters(&request, &state)?;
    start(&request, &state, &principal, Level::Patient, &kickoff, None).await
}

#[utoipa::path(
    get, path = "/fhir/Group/{id}/$export", tag = "Bulk Data",
    summary = "Export the compartments of a Group's member patients, asynchronously",
    params(
        ("id" = String, Path, description = "Group id"),
        ("Prefer" = String, Header, description = "respond-async (required)"),
        ("Accept" = String, Header, description = "application/fhir+json (required)"),
        ("_outputFormat" = Option<String>, Query, description = "application/fhir+ndjson (the default), application/ndjson or ndjson"),
        ("_type" = Option<String>, Query, description = "Comma-separated types of the patient compartment"),
        ("_since" = Option<String>, Query, description = "FHIR instant: only resources last updated at or after it"),
        ("_typeFilter" = Option<String>, Query, description = "Searches per type, e.g. Observation?code=http://loinc.org|72514-3")),
    responses(
        (status = 202, description = "Accepted; poll the Content-Location URL", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json", headers(("Content-Location" = String, description = "The status URL")))
    ),
    security(("bearer_jwt" = []))
)]
pub async fn group_export(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let kickoff = kickoff_parameters(&request, &state)?;
    let (resource_type, id) = instance("Group", &path)?;
    let access = principal.authorize(Some("Group"), Interaction::Read)?;
    let group = read_live(&state, &resource_type, &id).await?;
    ensure_in_compartment(&access, &resource_type, &group)?;
    let members = group_members(&group, &state.base_url);
    start(
        &request,
        &state,
        &principal,
        Level::Group,
        &kickoff,
        Some(members),
    )
    .await
}

/// The headers the asynchronous pattern requires, and the checked parameters.
fn kickoff_parameters(request: &HttpRequest, state: &AppState) -> ApiResult<KickOff> {
    let headers = request.headers();
    let prefers_async = headers
        .get_all("prefer")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .any(|token| token.trim() == "respond-async");
    if !prefers_async {
        return Err(ApiError::bad_parameter(
            "Prefer",
            "$export runs asynchronously: send Prefer: respond-async",
        ));
    }
    let accepts_fhir_json = headers
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| media.split(';').next().unwrap_or_default().trim() == "application/fhir+json");
    if !accepts_fhir_json {
        return Err(ApiError::bad_parameter(
            "Accept",
            "$export answers in FHIR JSON: send Accept: application/fhir+json",
        ));
    }
    request::parse_kickoff(&parse_form(request.query_string())?, &search_context(state))
}

/// How `_typeFilter` queries are parsed, here and by the workers.
pub fn search_context(state: &AppState) -> SearchContext {
    SearchContext {
        limits: state.page_limits,
        strict: true,
        base_url: state.base_url.clone(),
        zone: state.writes.index.zone,
    }
}

/// Plans the job for the token, stores it and wakes a worker: 202 with the status URL.
async fn start(
    request: &HttpRequest,
    state: &AppState,
    principal: &Principal,
    level: Level,
    kickoff: &KickOff,
    members: Option<Vec<String>>,
) -> ApiResult<HttpResponse> {
    let types = request::plan(level, kickoff, principal)?;
    let id = uuid::Uuid::new_v4().to_string();
    let path = request
        .path()
        .strip_prefix("/fhir")
        .unwrap_or(request.path());
    let query = request.query_string();
    let job = NewJob {
        id: id.clone(),
        owner: principal.subject.clone(),
        request: match query {
            "" => format!("{}{path}", state.base_url),
            query => format!("{}{path}?{query}", state.base_url),
        },
        level: level.as_str(),
        members,
        types: serde_json::to_value(&types).map_err(ApiError::internal)?,
        since: kickoff.since,
    };
    jobs::create_job(&state.pool, &job).await?;
    state.exports.wake.notify_one();
    let location = status_url(&state.base_url, &id);
    Ok(HttpResponse::Accepted()
        .insert_header((header::CONTENT_LOCATION, location.clone()))
        .content_type(FHIR_JSON)
        .json(operation_outcome(&[Issue::information(format!(
            "Export accepted; poll {location} for its status"
        ))])))
}

/// The caller's job: 404 for an id that is malformed, unknown, expired or another's.
async fn owned_job(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> ApiResult<(String, JobState)> {
    let unknown = || ApiError::NotFound(format!("There is no export job {id}"));
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| unknown())?
        .to_string();
    let job = jobs::job_state(&state.pool, &id, state.exports.settings.retention)
        .await?
        .filter(|job| job.owner == principal.subject)
        .ok_or_else(unknown)?;
    Ok((id, job))
}

#[utoipa::path(
    get, path = "/fhir/bulk-export/{job}", tag = "Bulk Data",
    summary = "Status of an export: 202 while it runs, the manifest when it is done",
    params(("job" = String, Path, description = "Job id from the kick-off's Content-Location")),
    responses(
        (status = 200, description = "Completed: the manifest of the output files", body = crate::openapi::ExportManifest, content_type = "application/json", headers(("Expires" = String, description = "When the files are deleted"))),
        (status = 202, description = "Still running", headers(("X-Progress" = String, description = "e.g. exported 12000 of about 50000 resources"), ("Retry-After" = String, description = "Seconds to wait before polling again"))),
        (status = 500, description = "The export failed", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn export_status(
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (id, job) = owned_job(&state, &principal, &path).await?;
    match (job.status.as_str(), job.finished_at) {
        ("completed", Some(finished_at)) => {
            let files = jobs::job_files(&state.pool, &id).await?;
            let retention = chrono::Duration::from_std(state.exports.settings.retention)
                .unwrap_or(chrono::Duration::MAX);
            let expires = finished_at
                .checked_add_signed(retention)
                .unwrap_or(finished_at);
            Ok(HttpResponse::Ok()
                .insert_header((header::EXPIRES, http_date(expires)))
                .content_type("application/json")
                .json(manifest::manifest(&job, &files, &state.base_url, &id)))
        }
        ("failed", _) => Err(ApiError::JobFailed(
            job.error.unwrap_or_else(|| "The export failed".into()),
        )),
        _ => Ok(HttpResponse::Accepted()
            .insert_header(("X-Progress", manifest::progress(&job)))
            .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS))
            .finish()),
    }
}

#[utoipa::path(
    delete, path = "/fhir/bulk-export/{job}", tag = "Bulk Data",
    summary = "Cancel a running export, or delete a finished one's files",
    params(("job" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Cancelled and deleted", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn cancel_export(
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (id, _) = owned_job(&state, &principal, &path).await?;
    if !jobs::delete_job(&state.pool, &id, &principal.subject).await? {
        return Err(ApiError::NotFound(format!("There is no export job {id}")));
    }
    Ok(HttpResponse::Accepted()
        .content_type(FHIR_JSON)
        .json(operation_outcome(&[Issue::information(format!(
            "Export job {id} is cancelled and its files are deleted"
        ))])))
}

#[utoipa::path(
    get, path = "/fhir/bulk-export/{job}/{file}", tag = "Bulk Data",
    summary = "One output file of a completed export: NDJSON, one resource per line",
    params(("job" = String, Path, description = "Job id"), ("file" = String, Path, description = "File name from the manifest, e.g. 1.ndjson")),
    responses(
        (status = 200, description = "The file", body = String, content_type = "application/fhir+ndjson")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn export_file(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (job_id, file_name) = path.into_inner();
    let (id, job) = owned_job(&state, &principal, &job_id).await?;
    let unknown = || ApiError::NotFound(format!("Export job {id} has no file {file_name}"));
    let number = file_number(&file_name).ok_or_else(unknown)?;
    if job.status != "completed" {
        return Err(unknown());
    }
    let file = jobs::job_file(&state.pool, &id, number)
        .await?
        .ok_or_else(unknown)?;
    ensure_may_download(&principal, &job.types, &file.resource_type)?;
    let pool = state.pool.clone();
    let chunks = futures_util::stream::try_unfold(0, move |after| {
        let (pool, id) = (pool.clone(), id.clone());
        async move {
            let chunk = jobs::next_chunk(&pool, &id, number, after).await?;
            Ok::<_, ApiError>(
                chunk.map(|(chunk_number, lines)| (web::Bytes::from(lines), chunk_number)),
            )
        }
    });
    let length = u64::try_from(file.byte_count).unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type(NDJSON)
        .body(SizedStream::new(length, chunks)))
}

/// The token must still read the file's type, and a patient-scoped one only files of its
/// own patient's compartment.
fn ensure_may_download(principal: &Principal, types: &Value, resource_type: &str) -> ApiResult<()> {
    let access = principal.authorize(Some(resource_type), Interaction::Read)?;
    let Access::Patient(patient) = access else {
        return Ok(());
    };
    let plans: Vec<TypePlan> = serde_json::from_value(types.clone()).map_err(ApiError::internal)?;
    let confined = plans
        .iter()
        .any(|plan| plan.resource_type == resource_type && plan.patient.as_ref() == Some(&patient));
    if confined {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "The access token is limited to one patient's data; this file is not confined to it"
                .into(),
        ))
    }
}
