//! HTTP-level helpers shared by handlers: body limits, content types, JSON parsing,
//! the Prefer, If-Match and If-None-Match headers, and write responses.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::{Issue, operation_outcome};
use crate::fhir::resource::{etag, instant, parse_etag};
use crate::fhir::strict_json::Limits;
use crate::store::resources::{Version, Written};

/// Reads the whole body, refusing it with 413 as soon as it passes `limit` bytes.
pub async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> ApiResult<web::Bytes> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("The request body could not be read: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Refuses bodies whose Content-Type is not one of `accepted` (compared without parameters).
pub fn require_content_type(request: &HttpRequest, accepted: &[&str]) -> ApiResult<()> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if accepted.contains(&media_type.as_str()) {
        Ok(())
    } else {
        let shown = if media_type.is_empty() {
            "none".to_string()
        } else {
            format!("'{media_type}'")
        };
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {shown} is not accepted here; send {}",
            accepted.join(" or ")
        )))
    }
}

pub const RESOURCE_CONTENT_TYPES: &[&str] = &["application/fhir+json", "application/json"];

/// Parses a JSON body (duplicate keys refused, `limits` applied); a syntax error names its
/// line and column.
pub fn parse_json(body: &[u8], limits: Limits) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "The request body is empty; a FHIR JSON resource is required",
        ));
    }
    crate::fhir::strict_json::from_slice(body, limits).map_err(|e| {
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = e.to_string();
        let reason = message.strip_suffix(&position).unwrap_or(&message);
        ApiError::bad_request(format!("Malformed JSON{position}: {reason}"))
    })
}

/// The `Prefer: return=` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPreference {
    Minimal,
    Representation,
    OperationOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preferences {
    pub return_preference: ReturnPreference,
    pub lenient: bool,
    pub strict: bool,
}

pub fn preferences(headers: &HeaderMap) -> Preferences {
    let mut preferences = Preferences {
        return_preference: ReturnPreference::Representation,
        lenient: false,
        strict: false,
    };
    for value in headers.get_all("prefer").filter_map(|v| v.to_str().ok()) {
        for token in value.split([',', ';']).map(str::trim) {
            match token.replace(' ', "").as_str() {
                "return=minimal" => preferences.return_preference = ReturnPreference::Minimal,
                "return=representation" => {
                    preferences.return_preference = ReturnPreference::Representation
                }
                "return=OperationOutcome" => {
                    preferences.return_preference = ReturnPreference::OperationOutcome
                }
                "handling=lenient" => preferences.lenient = true,
                "handling=strict" => preferences.strict = true,
                _ => {}
            }
        }
    }
    preferences
}

/// The version an `If-Match` header names (`W/"3"` or `"3"`), if present.
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<i32>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    parse_etag(text).map(Some).ok_or_else(|| {
        ApiError::PreconditionFailed(format!(
            "If-Match '{text}' is not a version ETag such as W/\"3\""
        ))
    })
}

/// Does `If-None-Match` name this version (or `*`)?
pub fn if_none_match_hits(headers: &HeaderMap, version_id: i32) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|text| {
            text.split(',')
                .any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(version_id))
        })
}

pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A resource response with the version's ETag and Last-Modified.
pub fn resource_response(
    status: StatusCode,
    version_id: i32,
    last_updated: DateTime<Utc>,
) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .content_type(FHIR_JSON)
        .insert_header((header::ETAG, etag(version_id)))
        .insert_header((header::LAST_MODIFIED, http_date(last_updated)));
    response
}

/// `201` for a write that created the resource, `200` for one that changed it.
pub fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// The response to a create/update/patch, shaped by `Prefer: return=`.
/// `write_response` for a version just written, with the write's own notices (safety
/// warnings, overrides) after the validation warnings.
pub fn written_response(
    status: StatusCode,
    written: &Written,
    base_url: &str,
    preferences: Preferences,
    warnings: &[Issue],
) -> HttpResponse {
    let issues = [warnings, written.notices.as_slice()].concat();
    write_response(status, &written.version, base_url, preferences, &issues)
}

pub fn write_response(
    status: StatusCode,
    version: &Version,
    base_url: &str,
    preferences: Preferences,
    warnings: &[Issue],
) -> HttpResponse {
    let mut response = resource_response(status, version.version_id, version.last_updated);
    response.insert_header((
        header::LOCATION,
        format!(
            "{base_url}/{}/{}/_history/{}",
            version.resource_type, version.id, version.version_id
        ),
    ));
    match preferences.return_preference {
        ReturnPreference::Minimal => response.finish(),
        ReturnPreference::Representation => {
            response.json(version.content.as_ref().unwrap_or(&Value::Null))
        }
        ReturnPreference::OperationOutcome => {
            let mut issues = warnings.to_vec();
            issues.push(Issue::information(format!(
                "{}/{} stored as version {} at {}",
                version.resource_type,
                version.id,
                version.version_id,
                instant(version.last_updated)
            )));
            response.json(operation_outcome(&issues))
        }
    }
}
