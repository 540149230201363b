//! `GET /reports/patients/{id}`: the patient report as HTML.

use actix_web::HttpResponse;

use crate::error::{ApiError, ApiResult};

pub async fn patient_report() -> ApiResult<HttpResponse> {
    Err(ApiError::internal("not yet"))
}
