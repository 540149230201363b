//! The request deadline (`REQUEST_TIMEOUT_MS`): a response not begun by then is abandoned
//! and answered 503, so no request holds a client, a worker or a connection indefinitely.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::error::ApiError;

/// How long a request may take until its response head is ready.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Duration);

/// Runs the handler under the deadline of the app's `RequestDeadline`. The deadline covers
/// reading the body and everything up to the response head; a body that streams after it
/// (a Bulk Data file) is not cut off. A write abandoned at its deadline is rolled back
/// unless its commit had already been sent, which the answer says may have happened.
pub async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(deadline) = req.app_data::<web::Data<RequestDeadline>>().map(|d| d.0) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // Taken after routing (this runs per resource), so the router no longer needs the
    // request to itself.
    let request = req.request().clone();
    match tokio::time::timeout(deadline, next.call(req)).await {
        Ok(response) => Ok(response?.map_into_left_body()),
        Err(_) => {
            let error = ApiError::Timeout(format!(
                "The request did not complete within {} ms and was abandoned; a write it \
                 carried may or may not have been stored: read before retrying it",
                deadline.as_millis()
            ));
            Ok(ServiceResponse::new(request, error.error_response()).map_into_right_body())
        }
    }
}
