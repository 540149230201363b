//! Protection at the HTTP edge: response security headers, CORS for browser clients and
//! per-client rate limits.

pub mod cors;
pub mod headers;
pub mod rate_limit;

/// Probes and metrics scrapes are answered whatever the client, and carry no health data.
pub fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}
