//! The one error type of the service and its mapping to HTTP status + OperationOutcome.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::fhir::outcome::{Issue, operation_outcome};
use crate::telemetry::current_request_id;

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is malformed (bad JSON, bad parameter, wrong id): 400.
    #[error("bad request: {0}")]
    BadRequest(String, Option<String>),
    /// The resource failed validation; every issue found is listed: 400.
    #[error("validation failed")]
    Invalid(Vec<Issue>),
    /// Well-formed but semantically refused (business rules): 422.
    #[error("unprocessable: {0:?}")]
    Unprocessable(Vec<Issue>),
    #[error("missing or invalid credentials: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unknown resource type {0}")]
    UnknownType(String),
    #[error("gone: {0}")]
    Gone(String),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("payload too large: limit {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The client sent more requests than its rate limit allows; retry after this many
    /// seconds: 429.
    #[error("too many requests: retry after {0} s")]
    TooManyRequests(u64),
    /// The database is unreachable or the pool is exhausted: 503, fast.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A background job (a bulk export) failed; the message is written for the client: 500.
    #[error("job failed: {0}")]
    JobFailed(String),
    /// Anything unexpected. The message is logged, never sent to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into(), None)
    }

    pub fn bad_parameter(parameter: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into(), Some(parameter.to_string()))
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }

    /// The OperationOutcome this error is answered with.
    pub fn outcome(&self) -> serde_json::Value {
        operation_outcome(&self.issues())
    }

    /// The same error about entry `index` of a Bundle (`label` e.g. "PUT Patient/1"):
    /// messages start with where it happened, and issue paths point into the entry's
    /// resource.
    pub fn in_bundle_entry(self, index: usize, label: &str) -> ApiError {
        let location = format!("Bundle.entry[{index}] ({label})");
        let text = |text: String| format!("{location}: {text}");
        let issues = |issues: Vec<Issue>| -> Vec<Issue> {
            issues
                .into_iter()
                .map(|issue| Issue {
                    diagnostics: text(issue.diagnostics),
                    expression: issue.expression.map(|path| {
                        let within = path.split_once('.').map_or("", |(_, rest)| rest);
                        match within {
                            "" => format!("Bundle.entry[{index}].resource"),
                            rest => format!("Bundle.entry[{index}].resource.{rest}"),
                        }
                    }),
                    ..issue
                })
                .collect()
        };
        match self {
            ApiError::BadRequest(message, expression) => {
                ApiError::BadRequest(text(message), expression)
            }
            ApiError::Invalid(found) => ApiError::Invalid(issues(found)),
            ApiError::Unprocessable(found) => ApiError::Unprocessable(issues(found)),
            ApiError::Unauthorized(message) => ApiError::Unauthorized(text(message)),
            ApiError::Forbidden(message) => ApiError::Forbidden(text(message)),
            ApiError::NotFound(message) => ApiError::NotFound(text(message)),
            ApiError::UnknownType(name) => ApiError::NotFound(text(format!(
                "Resource type '{name}' is not supported by this server; see /fhir/metadata"
            ))),
            ApiError::Gone(message) => ApiError::Gone(text(message)),
            ApiError::MethodNotAllowed(message) => ApiError::MethodNotAllowed(text(message)),
            ApiError::Conflict(message) => ApiError::Conflict(text(message)),
            ApiError::PreconditionFailed(message) => ApiError::PreconditionFailed(text(message)),
            ApiError::UnsupportedMediaType(message) => {
                ApiError::UnsupportedMediaType(text(message))
            }
            other @ (ApiError::PayloadTooLarge(_)
            | ApiError::TooManyRequests(_)
            | ApiError::Unavailable(_)
            | ApiError::JobFailed(_)
            | ApiError::Internal(_)) => other,
        }
    }

    fn issues(&self) -> Vec<Issue> {
        let single = |code: &'static str, text: &str| vec![Issue::error(code, text)];
        match self {
            ApiError::BadRequest(text, expression) => {
                let issue = Issue::error("invalid", text.clone());
                vec![match expression {
                    Some(expression) => issue.at(expression.clone()),
                    None => issue,
                }]
            }
            ApiError::Invalid(issues) | ApiError::Unprocessable(issues) => issues.clone(),
            ApiError::Unauthorized(text) => single("login", text),
            ApiError::Forbidden(text) => single("forbidden", text),
            ApiError::NotFound(text) => single("not-found", text),
            ApiError::UnknownType(name) => single(
                "not-supported",
                &format!(
                    "Resource type '{name}' is not supported by this server; see /fhir/metadata"
                ),
            ),
            ApiError::Gone(text) => single("deleted", text),
            ApiError::MethodNotAllowed(text) => single("not-supported", text),
            ApiError::Conflict(text) => single("conflict", text),
            ApiError::PreconditionFailed(text) => single("conflict", text),
            ApiError::PayloadTooLarge(limit) => single(
                "too-costly",
                &format!("Request body exceeds the limit of {limit} bytes"),
            ),
            ApiError::UnsupportedMediaType(text) => single("not-supported", text),
            ApiError::TooManyRequests(seconds) => single(
                "throttled",
                &format!(
                    "This client has sent more requests than its rate limit allows; retry in {seconds} s"
                ),
            ),
            ApiError::Unavailable(text) => single("transient", text),
            ApiError::JobFailed(text) => single("exception", text),
            ApiError::Internal(_) => single(
                "exception",
                &format!(
                    "Internal server error; quote request id {} when reporting it",
                    current_request_id().unwrap_or_else(|| "-".into())
                ),
            ),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(..) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::UnknownType(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::JobFailed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // A failed job was logged when it failed, not on every poll of its status.
        if status.is_server_error() && !matches!(self, ApiError::JobFailed(_)) {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        }
        let mut response = HttpResponse::build(status);
        response.content_type(crate::fhir::FHIR_JSON);
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="fhir", error="invalid_token""#),
                ));
            }
            ApiError::Forbidden(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="fhir", error="insufficient_scope""#),
                ));
            }
            ApiError::TooManyRequests(seconds) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(*seconds)));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            _ => {}
        }
        response.json(operation_outcome(&self.issues()))
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &error {
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                ApiError::Unavailable("The database connection was lost; retry shortly".into())
            }
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => ApiError::Conflict(
                "A concurrent change touched the same data; retry the request".into(),
            ),
            _ if is_connection_failure(&error) => {
                ApiError::Unavailable("The database is not reachable; retry shortly".into())
            }
            _ => ApiError::Internal(error.to_string()),
        }
    }
}

/// tokio-postgres reports a dropped server as an "unknown" database error whose text names
/// the connection; classify it as an outage, not an internal fault.
fn is_connection_failure(error: &diesel::result::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    [
        "connection closed",
        "connection reset",
        "broken pipe",
        "terminating connection",
        "admin_shutdown",
        "cannot connect",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

impl From<crate::store::PoolError> for ApiError {
    fn from(_: crate::store::PoolError) -> Self {
        ApiError::Unavailable("The database is not available right now; retry shortly".into())
    }
}
