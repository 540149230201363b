//! Per-client rate limits: one GCRA bucket per client (its verified token's subject, or its
//! IP address without a valid token), 429 OperationOutcome with `Retry-After` above it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::jwt::request_principal;
use crate::config::EdgeConfig;
use crate::error::ApiError;

/// Buckets of clients not seen for a while are dropped once this many are tracked.
const TRACKED_CLIENTS_LIMIT: usize = 50_000;
/// How often (in checks) the number of tracked clients is looked at.
const PRUNE_EVERY: u64 = 4096;

pub struct RateLimits {
    /// `None` when RATE_LIMIT_PER_SECOND is 0: no limits.
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl RateLimits {
    pub fn from_config(edge: &EdgeConfig) -> Self {
        let limiter = NonZeroU32::new(edge.rate_limit_per_second).map(|rate| {
            let burst = NonZeroU32::new(edge.rate_limit_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        RateLimits {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.limiter.is_some()
    }

    /// Counts one request of `client`; above its limit, the error says when to retry.
    pub fn check(&self, client: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        self.prune_now_and_then(limiter);
        limiter.check_key(&client.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::TooManyRequests(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }

    fn prune_now_and_then(&self, limiter: &DefaultKeyedRateLimiter<String>) {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks.is_multiple_of(PRUNE_EVERY) && limiter.len() > TRACKED_CLIENTS_LIMIT {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Who a request counts against: the subject of a valid bearer token, else the peer IP,
/// so forged tokens cannot spend another client's allowance.
fn client_key(req: &ServiceRequest) -> String {
    if let Ok(principal) = request_principal(req.request()) {
        return format!("sub:{}", principal.subject);
    }
    let ip = req
        .peer_addr()
        .map_or_else(|| "unknown".to_string(), |addr| addr.ip().to_string());
    format!("ip:{ip}")
}

pub async fn limit_rate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limits = req.app_data::<web::Data<RateLimits>>().cloned();
    if let Some(limits) = limits
        && limits.enabled()
        && !super::is_operational(req.path())
        && let Err(refusal) = limits.check(&client_key(&req))
    {
        return Ok(req
            .into_response(refusal.error_response())
            .map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
