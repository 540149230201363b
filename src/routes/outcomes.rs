//! `Patient/{id}/$outcomes` and the clinic-level `$outcomes`.

use actix_web::HttpResponse;

use crate::error::{ApiError, ApiResult};

pub async fn patient_outcomes() -> ApiResult<HttpResponse> {
    Err(ApiError::internal("not yet"))
}

pub async fn clinic_outcomes() -> ApiResult<HttpResponse> {
    Err(ApiError::internal("not yet"))
}
