//! CORS for browser applications on the origins CORS_ALLOWED_ORIGINS names.

use actix_cors::Cors;
use actix_web::http::Method;

use crate::config::EdgeConfig;

/// Request headers a FHIR browser client sends besides the CORS-safelisted ones.
const ALLOWED_HEADERS: [&str; 9] = [
    "authorization",
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-none-exist",
    "prefer",
    "x-request-id",
];

/// Response headers scripts may read: versioning, locations, and the async-job headers.
const EXPOSED_HEADERS: [&str; 7] = [
    "etag",
    "location",
    "content-location",
    "last-modified",
    "retry-after",
    "x-progress",
    "x-request-id",
];

/// The CORS policy, or `None` when no origin is configured (then browsers keep their
/// same-origin rule and no CORS headers are sent).
pub fn policy(edge: &EdgeConfig, own_origin: &str) -> Option<Cors> {
    let origins: Vec<&str> = edge
        .cors_allowed_origins
        .iter()
        .map(|origin| origin.trim().trim_end_matches('/'))
        .filter(|origin| !origin.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let mut cors = if origins.contains(&"*") {
        Cors::default().allow_any_origin()
    } else {
        origins
            .iter()
            .chain(std::iter::once(&own_origin))
            .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
    };
    cors = cors
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
        ])
        .allowed_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(3600);
    Some(cors)
}

/// `scheme://host[:port]` of a base URL such as `https://fhir.example.org/fhir`.
pub fn origin_of(base_url: &str) -> String {
    let (scheme, rest) = base_url.split_once("://").unwrap_or(("http", base_url));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_drops_the_path() {
        assert_eq!(
            origin_of("https://fhir.example.org/fhir"),
            "https://fhir.example.org"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/fhir"),
            "http://127.0.0.1:8080"
        );
    }
}
