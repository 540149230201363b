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
    /// The database is unreachable, read-only, full, or the pool is exhausted: 503, fast.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The request passed its deadline, or a statement its `statement_timeout`: 503.
    #[error("timed out: {0}")]
    Timeout(String),
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
            | ApiError::Timeout(_)
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
            ApiError::Timeout(text) => single("timeout", text),
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
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            ApiError::Unavailable(_) | ApiError::Timeout(_) => {
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
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => ApiError::Conflict(
                "A concurrent change touched the same data; retry the request".into(),
            ),
            Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => {
                ApiError::Unavailable(READ_ONLY.into())
            }
            // No SQLSTATE: the connection failed (closed, reset, I/O) rather than the statement.
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => ApiError::Unavailable(UNREACHABLE.into()),
            Error::DatabaseError(_, info) => {
                database_outage(info.message()).unwrap_or_else(|| ApiError::internal(&error))
            }
            _ => ApiError::internal(&error),
        }
    }
}

const UNREACHABLE: &str = "The database is not reachable; retry shortly";
const READ_ONLY: &str = "The database accepts no writes right now (read-only); retry shortly";

/// What a failing statement says about the database, not about the request.
#[derive(Clone, Copy)]
enum Outage {
    StatementTimeout,
    DiskFull,
    Busy,
    Down,
    ReadOnly,
}

/// PostgreSQL's operational failures by the start of their message, since diesel passes on
/// the message (in English unless the server's `lc_messages` says otherwise) but not the
/// SQLSTATE. Each answers 503 with Retry-After: the request may be sent again unchanged.
const OUTAGES: &[(&str, Outage)] = &[
    // 57014 query_canceled: statement_timeout, or an operator's cancel.
    ("canceling statement due to", Outage::StatementTimeout),
    // 53100 disk_full on a table, an index or a temporary file.
    ("could not extend file", Outage::DiskFull),
    ("could not write to file", Outage::DiskFull),
    // 53200 out_of_memory, 53300 too_many_connections.
    ("out of memory", Outage::Busy),
    ("sorry, too many clients", Outage::Busy),
    ("remaining connection slots are reserved", Outage::Busy),
    // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 25P03
    // idle_in_transaction_session_timeout, and 08xxx connection failures.
    ("terminating connection", Outage::Down),
    ("the database system is", Outage::Down),
    ("server closed the connection", Outage::Down),
    // 25006 read_only_sql_transaction, when it reaches diesel without its kind.
    ("cannot execute", Outage::ReadOnly),
];

/// The 503 a database failure with this message is answered with, if it is an outage.
fn database_outage(message: &str) -> Option<ApiError> {
    let message = message.to_ascii_lowercase();
    let (_, outage) = OUTAGES
        .iter()
        .find(|(start, _)| message.starts_with(start))?;
    match outage {
        Outage::StatementTimeout => Some(ApiError::Timeout(format!(
            "A database statement ran past its time limit ({message}); retry shortly"
        ))),
        Outage::DiskFull if message.contains("no space left") || message.contains("wrote only") => {
            Some(ApiError::Unavailable(
                "The database has no disk space left; nothing was stored; retry later".into(),
            ))
        }
        Outage::Busy => Some(ApiError::Unavailable(
            "The database is out of connections or memory right now; retry shortly".into(),
        )),
        Outage::Down => Some(ApiError::Unavailable(UNREACHABLE.into())),
        Outage::ReadOnly if message.contains("read-only transaction") => {
            Some(ApiError::Unavailable(READ_ONLY.into()))
        }
        Outage::DiskFull | Outage::ReadOnly => None,
    }
}

impl From<crate::store::PoolError> for ApiError {
    fn from(error: crate::store::PoolError) -> Self {
        use deadpool::managed::{PoolError, TimeoutType};
        ApiError::Unavailable(match error {
            PoolError::Timeout(TimeoutType::Wait) => {
                "Every database connection is busy; retry shortly".into()
            }
            _ => "The database is not available right now; retry shortly".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_and_code(message: &str) -> Option<(u16, String)> {
        let error = database_outage(message)?;
        Some((
            error.status_code().as_u16(),
            error.outcome()["issue"][0]["code"].as_str()?.to_string(),
        ))
    }

    #[test]
    fn operational_database_failures_are_503_and_others_are_not() {
        let outage = |code: &str| Some((503, code.to_string()));
        for (message, expected) in [
            (
                "canceling statement due to statement timeout",
                outage("timeout"),
            ),
            (
                "could not extend file \"base/16384/16500\": No space left on device",
                outage("transient"),
            ),
            (
                "could not extend file \"base/1/2\": wrote only 4096 of 8192 bytes at block 7",
                outage("transient"),
            ),
            (
                "terminating connection due to administrator command",
                outage("transient"),
            ),
            ("the database system is shutting down", outage("transient")),
            ("sorry, too many clients already", outage("transient")),
            (
                "cannot execute INSERT in a read-only transaction",
                outage("transient"),
            ),
            (
                "could not extend file \"base/1/2\": Permission denied",
                None,
            ),
            ("cannot execute INSERT: relation is a view", None),
            ("duplicate key value violates unique constraint", None),
        ] {
            assert_eq!(status_and_code(message), expected, "{message}");
        }
    }
}
