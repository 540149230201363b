//! Security headers on every response: no MIME sniffing, no framing, no referrer, a
//! content security policy fitting what the path serves, HSTS, and `no-store` caching of
//! anything that may carry health data.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;

/// API responses are data, never documents to render: nothing may load or frame them.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The Swagger UI loads its own scripts and styles, sets inline styles, shows data: icons
/// and calls the API on this origin.
const EXPLORER_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Browsers honour this only over HTTPS (a TLS proxy in front of the server); over plain
/// HTTP it is ignored, so it is always sent.
const HSTS: &str = "max-age=31536000; includeSubDomains";

pub async fn add_security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path().to_owned();
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    set_default(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_default(headers, header::X_FRAME_OPTIONS, "DENY");
    set_default(headers, header::REFERRER_POLICY, "no-referrer");
    set_default(headers, header::STRICT_TRANSPORT_SECURITY, HSTS);
    set_default(headers, header::CONTENT_SECURITY_POLICY, policy_for(&path));
    if may_carry_health_data(&path) {
        set_default(headers, header::CACHE_CONTROL, "no-store");
    }
    Ok(response)
}

fn policy_for(path: &str) -> &'static str {
    if path.starts_with("/docs") {
        EXPLORER_POLICY
    } else {
        API_POLICY
    }
}

/// Everything but the probes, the OpenAPI document and the explorer's static files.
fn may_carry_health_data(path: &str) -> bool {
    !(super::is_operational(path) || path == "/openapi.json" || path.starts_with("/docs"))
}

/// Sets `name` unless the handler chose its own value (the report sets a stricter policy).
fn set_default(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}
