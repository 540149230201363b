//! Operational endpoints: CapabilityStatement, liveness, readiness, Prometheus metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::error::ApiResult;
use crate::fhir::FHIR_JSON;
use crate::fhir::capability::capability_statement;
use crate::metrics::Metrics;

pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .json(capability_statement(
            &state.base_url,
            env!("CARGO_PKG_VERSION"),
        ))
}

/// The process is up and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers and every migration is applied; 503 otherwise.
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    crate::store::check_ready(&state.pool).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

pub async fn metrics(state: web::Data<AppState>, metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render(&state.pool))
}
