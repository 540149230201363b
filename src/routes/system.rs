//! Operational endpoints: CapabilityStatement, liveness, readiness, Prometheus metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::error::ApiResult;
use crate::fhir::FHIR_JSON;
use crate::fhir::capability::capability_statement;
use crate::metrics::Metrics;

#[utoipa::path(
    get, path = "/fhir/metadata", tag = "FHIR server",
    summary = "CapabilityStatement (no token needed)",
    responses((status = 200, description = "What this server supports", body = crate::openapi::CapabilityStatement, content_type = "application/fhir+json")),
    security(())
)]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .json(capability_statement(
            &state.base_url,
            env!("CARGO_PKG_VERSION"),
        ))
}

/// The process is up and serving.
#[utoipa::path(
    get, path = "/healthz", tag = "Operations",
    summary = "Liveness: the process is up",
    responses((status = 200, description = "Up")),
    security(())
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers and every migration is applied; 503 otherwise.
#[utoipa::path(
    get, path = "/readyz", tag = "Operations",
    summary = "Readiness: database reachable and migrations applied",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json")),
    security(())
)]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    crate::store::check_ready(&state.pool).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

#[utoipa::path(
    get, path = "/metrics", tag = "Operations",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")),
    security(())
)]
pub async fn metrics(state: web::Data<AppState>, metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render(&state.pool))
}
