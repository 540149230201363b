//! FHIR operations of the clinic: `[type]/$validate` and `Patient/{id}/$treatment-status`.

use actix_web::HttpResponse;

use crate::error::{ApiError, ApiResult};

pub async fn validate() -> ApiResult<HttpResponse> {
    Err(ApiError::internal("not yet"))
}

pub async fn treatment_status() -> ApiResult<HttpResponse> {
    Err(ApiError::internal("not yet"))
}
