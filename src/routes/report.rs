//! `GET /reports/patients/{id}`: the patient report as HTML.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;

use super::AppState;
use super::operations::{patient_record, readable_patient};
use crate::auth::Principal;
use crate::clinic::outcomes::patient_outcomes;
use crate::clinic::report::render_patient_report;
use crate::error::{ApiError, ApiResult};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::{Issue, operation_outcome};

/// The page has no scripts and loads nothing: a policy that forbids both.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// What `?format=` asks for.
enum Format {
    Html,
    Pdf,
    Other(String),
}

fn requested_format(request: &HttpRequest) -> ApiResult<Format> {
    let parameters: Vec<(String, String)> = serde_urlencoded::from_str(request.query_string())
        .map_err(|_| ApiError::bad_request("The query string is not valid form encoding"))?;
    let mut given = parameters.into_iter().filter(|(key, _)| key == "format");
    let format = match given.next() {
        None => Format::Html,
        Some((_, value)) => match value.as_str() {
            "html" | "text/html" => Format::Html,
            "pdf" | "application/pdf" => Format::Pdf,
            _ => Format::Other(value),
        },
    };
    if given.next().is_some() {
        return Err(ApiError::bad_parameter(
            "format",
            "The parameter 'format' may be given only once",
        ));
    }
    Ok(format)
}

/// 406 with an OperationOutcome (the error type has no 406 of its own).
fn not_acceptable(message: String) -> HttpResponse {
    HttpResponse::build(StatusCode::NOT_ACCEPTABLE)
        .content_type(FHIR_JSON)
        .json(operation_outcome(&[Issue::error("not-supported", message)]))
}

#[utoipa::path(
    get, path = "/reports/patients/{id}", tag = "Clinic outcomes",
    summary = "A patient's treatment report (HTML, printable to PDF)",
    description = "One self-contained HTML page (inline CSS and SVG, no scripts) for the referring \
                   physician or a payer's review: patient header; pain NRS, PHQ-9 and blood-pressure \
                   charts over time with every infusion marked and the pre-infusion hold limits drawn; \
                   the infusion series table (date, duration, dose in mg and mg/kg, rate, weight, \
                   pre-infusion BP and SpO2); and the outcome summary of `Patient/{id}/$outcomes`. \
                   A print stylesheet lays it out on A4: print it, or \"Save as PDF\", to get a PDF. \
                   Readable with the same scopes as the Patient; a patient-scoped token only for its own patient.",
    params(
        ("id" = String, Path, description = "Patient id, e.g. demo-patient-01"),
        ("format" = Option<String>, Query, description = "html (the default). pdf is answered with 406: print the HTML instead")
    ),
    responses(
        (status = 200, description = "The report", body = String, content_type = "text/html"),
        (status = 403, description = "The token's scopes do not allow reading Patient, or it is limited to another patient", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "No such patient", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json"),
        (status = 406, description = "format=pdf (or another format): the PDF is made by printing the HTML", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json"),
        (status = 410, description = "The patient has been deleted", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn patient_report(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let (patient, _) = readable_patient(&state, &principal, &path).await?;
    match requested_format(&request)? {
        Format::Html => {}
        Format::Pdf => {
            return Ok(not_acceptable(
                "The report is not served as PDF. Request the HTML report and print it, or use the \
                 browser's \"Save as PDF\": it has a print stylesheet laid out for A4."
                    .into(),
            ));
        }
        Format::Other(other) => {
            return Ok(not_acceptable(format!(
                "The report format '{other}' is not supported; the report is HTML (print it for a PDF)"
            )));
        }
    }
    let record = patient_record(&state, &path).await?;
    let now = Utc::now();
    let outcomes = patient_outcomes(&record, state.clinic(), now);
    let html = render_patient_report(&patient, &record, state.clinic(), Some(&outcomes), now);
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(html))
}
