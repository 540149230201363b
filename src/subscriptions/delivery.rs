//! The delivery workers: each claims one due subscription at a time (`store::subscriptions::
//! deliver_next`), sends its handshake, heartbeat or next events in order, signed, and
//! schedules retries with backoff and jitter; status changes are mirrored on the resource.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand_core::{OsRng, RngCore};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::notification::{NotificationType, NotifiedEvent, StatusHead, bundle};
use super::signing::signature_header;
use super::subscription::{PayloadContent, SubscriptionView};
use crate::config::RetrySchedule;
use crate::error::ApiResult;
use crate::fhir::{ResourceId, ResourceType};
use crate::metrics::Metrics;
use crate::store::Pool;
use crate::store::resources::{self, NextContent, WriteContext, WriteMethod};
use crate::store::subscriptions::{Claim, DeliveryUpdate, StoredEvent, deliver_next, queue_depth};

/// Events sent per claim at most (one notification each), before the claim is committed.
const EVENTS_PER_CLAIM: i64 = 50;

/// Everything the workers share.
pub struct Deliverer {
    /// A pool of its own (a connection per worker, and one more): a claim holds its
    /// connection while it sends, which must never take connections from API requests.
    pub pool: Pool,
    pub writes: WriteContext,
    pub base_url: String,
    pub client: reqwest::Client,
    pub retry: RetrySchedule,
    pub timeout: Duration,
    pub poll: Duration,
    pub metrics: Arc<Metrics>,
}

/// Why a notification was not acknowledged.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    retry_after: Option<Duration>,
    /// 410 Gone: the endpoint will never take notifications again.
    gone: bool,
}

/// Starts `count` workers; they stop when `shutdown` turns true.
pub fn spawn_workers(
    deliverer: Arc<Deliverer>,
    count: usize,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|_| tokio::spawn(work(deliverer.clone(), shutdown.clone())))
        .collect()
}

async fn work(deliverer: Arc<Deliverer>, mut shutdown: watch::Receiver<bool>) {
    let mut depth_measured_at = tokio::time::Instant::now();
    while !*shutdown.borrow() {
        if depth_measured_at.elapsed() >= Duration::from_secs(1) {
            depth_measured_at = tokio::time::Instant::now();
            if let Ok(depth) = queue_depth(&deliverer.pool).await {
                deliverer.metrics.set_webhook_queue_depth(depth);
            }
        }
        let pause = match deliverer.deliver_once().await {
            Ok(true) => continue,
            Ok(false) => deliverer.poll,
            Err(error) => {
                tracing::warn!(error = %error, "webhook delivery failed to run");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = deliverer.writes.webhooks.wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl Deliverer {
    /// Delivers to one due subscription; `false` when none was due.
    pub async fn deliver_once(&self) -> ApiResult<bool> {
        let delivered = deliver_next(&self.pool, EVENTS_PER_CLAIM, |claim, pending| {
            self.attempt(claim, pending)
        })
        .await?;
        let Some((claim, update)) = delivered else {
            return Ok(false);
        };
        if update.status != claim.status {
            self.mirror_status(&claim.subscription_id, &update).await;
        }
        Ok(true)
    }

    async fn attempt(&self, claim: Claim, pending: Vec<StoredEvent>) -> DeliveryUpdate {
        let view = match SubscriptionView::read(&claim.content) {
            Ok(view) => view,
            Err(_) => return failed_for_good(&claim, "the stored Subscription is no longer valid"),
        };
        if claim.handshake_pending {
            return self.handshake(&claim, &view).await;
        }
        if pending.is_empty() {
            return self.heartbeat(&claim, &view).await;
        }
        self.events(&claim, &view, pending).await
    }

    async fn handshake(&self, claim: &Claim, view: &SubscriptionView) -> DeliveryUpdate {
        match self
            .post_without_events(claim, view, "requested", NotificationType::Handshake)
            .await
        {
            Ok(()) => {
                self.metrics.observe_webhook("handshake", None);
                DeliveryUpdate {
                    status: "active".into(),
                    handshake_pending: false,
                    ..acknowledged(claim)
                }
            }
            Err(failure) => {
                self.metrics.observe_webhook("handshake-failed", None);
                failed_for_good(claim, &format!("handshake failed: {}", failure.message))
            }
        }
    }

    async fn heartbeat(&self, claim: &Claim, view: &SubscriptionView) -> DeliveryUpdate {
        match self
            .post_without_events(claim, view, &claim.status, NotificationType::Heartbeat)
            .await
        {
            Ok(()) => {
                self.metrics.observe_webhook("heartbeat", None);
                acknowledged(claim)
            }
            Err(failure) => self.retry_later(claim, claim.delivered_through, failure),
        }
    }

    /// Sends the pending events one notification each, in order, stopping at the first
    /// that is not acknowledged.
    async fn events(
        &self,
        claim: &Claim,
        view: &SubscriptionView,
        pending: Vec<StoredEvent>,
    ) -> DeliveryUpdate {
        let mut delivered_through = claim.delivered_through;
        for stored in pending {
            let occurred_at = stored.occurred_at;
            let number = stored.event_number;
            let event = notified(stored, view.content);
            let head = self.head(
                claim,
                view,
                &claim.status,
                NotificationType::EventNotification,
            );
            let body = bundle(&head, std::slice::from_ref(&event), view.content);
            let message_id = format!("{}-{number}", claim.subscription_id);
            if let Err(failure) = self.post(claim, view, &message_id, &body).await {
                self.metrics
                    .observe_webhook(if failure.gone { "gone" } else { "failed" }, None);
                return self.retry_later(claim, delivered_through, failure);
            }
            let latency = (Utc::now() - occurred_at).to_std().unwrap_or_default();
            self.metrics.observe_webhook("delivered", Some(latency));
            delivered_through = number;
        }
        DeliveryUpdate {
            delivered_through,
            ..acknowledged(claim)
        }
    }

    /// The next attempt after a failure, or `error` once the schedule is used up (or the
    /// endpoint is gone). Progress made before the failure resets the count.
    fn retry_later(
        &self,
        claim: &Claim,
        delivered_through: i64,
        failure: Failure,
    ) -> DeliveryUpdate {
        let attempts = if delivered_through > claim.delivered_through {
            1
        } else {
            claim.attempts + 1
        };
        let waits = &self.retry.0;
        let exhausted = attempts as usize > waits.len();
        if failure.gone || exhausted {
            let why = if failure.gone {
                "the endpoint answered 410 Gone"
            } else {
                "retries exhausted"
            };
            return DeliveryUpdate {
                delivered_through,
                ..failed_for_good(claim, &format!("{why}: {}", failure.message))
            };
        }
        let wait =
            with_jitter(waits[attempts as usize - 1]).max(failure.retry_after.unwrap_or_default());
        tracing::info!(
            subscription = %claim.subscription_id,
            attempts,
            retry_in_seconds = wait.as_secs_f64(),
            "webhook notification not acknowledged; will retry"
        );
        DeliveryUpdate {
            delivered_through,
            attempts,
            next_attempt_at: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
            sent_at: (delivered_through > claim.delivered_through).then(Utc::now),
            last_error: Some(failure.message),
            ..unchanged(claim)
        }
    }

    fn head<'a>(
        &'a self,
        claim: &'a Claim,
        view: &'a SubscriptionView,
        status: &'a str,
        kind: NotificationType,
    ) -> StatusHead<'a> {
        StatusHead {
            base_url: &self.base_url,
            subscription_id: &claim.subscription_id,
            topic: view.criteria.topic_url(),
            status,
            kind,
            events_since_start: claim.events_since_start,
            error: None,
        }
    }

    /// A handshake or heartbeat: the status only, under a message id of its own.
    async fn post_without_events(
        &self,
        claim: &Claim,
        view: &SubscriptionView,
        status: &str,
        kind: NotificationType,
    ) -> Result<(), Failure> {
        let head = self.head(claim, view, status, kind);
        let body = bundle(&head, &[], view.content);
        let message_id = uuid::Uuid::new_v4().to_string();
        self.post(claim, view, &message_id, &body).await
    }

    /// POSTs one notification, signed with every secret of the subscription.
    async fn post(
        &self,
        claim: &Claim,
        view: &SubscriptionView,
        message_id: &str,
        body: &serde_json::Value,
    ) -> Result<(), Failure> {
        // IP literals bypass the client's resolver, so the policy is checked here too (it
        // may have been tightened since the Subscription was stored).
        let endpoint = self
            .writes
            .webhooks
            .policy
            .check_url(&view.endpoint)
            .map_err(|e| failure(e.to_string()))?;
        let body = body.to_string().into_bytes();
        let timestamp = Utc::now().timestamp();
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/fhir+json"),
        );
        for (name, value) in &view.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.append(name, value);
            }
        }
        let standard = [
            ("webhook-id", message_id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
        ];
        for (name, value) in standard {
            headers.insert(
                name,
                HeaderValue::try_from(value).map_err(|e| failure(e.to_string()))?,
            );
        }
        if !view.secrets.is_empty() {
            let secrets: Vec<_> = view.secrets.iter().collect();
            let signature = signature_header(&secrets, message_id, timestamp, &body);
            headers.insert(
                "webhook-signature",
                HeaderValue::try_from(signature).map_err(|e| failure(e.to_string()))?,
            );
        }
        let timeout = view
            .timeout_seconds
            .map(|s| Duration::from_secs(s.into()).min(self.timeout))
            .unwrap_or(self.timeout);
        let response = self
            .client
            .post(endpoint)
            .headers(headers)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|error| failure(describe(&error)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        tracing::debug!(subscription = %claim.subscription_id, status = status.as_u16(), "endpoint refused a notification");
        Err(Failure {
            message: format!("the endpoint answered {status}"),
            retry_after: retry_after(response.headers()),
            gone: status == StatusCode::GONE,
        })
    }

    /// Writes the delivery status onto the Subscription resource (a new version), unless
    /// the client has switched it off meanwhile.
    async fn mirror_status(&self, subscription_id: &str, update: &DeliveryUpdate) {
        let (Ok(resource_type), Ok(id)) = (
            ResourceType::parse("Subscription"),
            ResourceId::parse(subscription_id),
        ) else {
            return;
        };
        let written = resources::write_version(
            &self.pool,
            &resource_type,
            &id,
            WriteMethod::Update,
            None,
            &self.writes,
            |current| {
                let Some(mut content) = current.and_then(|c| c.content.clone()) else {
                    return Ok(NextContent::Nothing);
                };
                if content["status"] == "off" || content["status"] == update.status.as_str() {
                    return Ok(NextContent::Nothing);
                }
                content["status"] = update.status.clone().into();
                match &update.last_error {
                    Some(error) if update.status == "error" => {
                        content["error"] = error.clone().into()
                    }
                    _ => {
                        content.as_object_mut().map(|o| o.remove("error"));
                    }
                }
                Ok(NextContent::Write(content))
            },
        )
        .await;
        if let Err(error) = written {
            tracing::warn!(subscription = %subscription_id, error = %error, "could not record the subscription's status");
        }
    }
}

fn unchanged(claim: &Claim) -> DeliveryUpdate {
    DeliveryUpdate {
        status: claim.status.clone(),
        delivered_through: claim.delivered_through,
        handshake_pending: claim.handshake_pending,
        attempts: claim.attempts,
        next_attempt_at: Utc::now(),
        sent_at: None,
        last_error: None,
    }
}

/// Everything sent was acknowledged: the next attempt may come at once.
fn acknowledged(claim: &Claim) -> DeliveryUpdate {
    DeliveryUpdate {
        attempts: 0,
        next_attempt_at: Utc::now(),
        sent_at: Some(Utc::now()),
        last_error: None,
        ..unchanged(claim)
    }
}

/// The subscription goes to `error`; its events stay, and are sent once it is reactivated.
fn failed_for_good(claim: &Claim, why: &str) -> DeliveryUpdate {
    tracing::warn!(subscription = %claim.subscription_id, reason = why, "subscription set to error");
    DeliveryUpdate {
        status: "error".into(),
        handshake_pending: false,
        attempts: 0,
        last_error: Some(why.to_string()),
        ..unchanged(claim)
    }
}

fn notified(stored: StoredEvent, content: PayloadContent) -> NotifiedEvent {
    NotifiedEvent {
        number: stored.event_number,
        timestamp: stored.occurred_at,
        focus_type: stored.focus_type,
        focus_id: stored.focus_id,
        method: stored.method,
        resource: (content == PayloadContent::FullResource)
            .then_some(stored.content)
            .flatten(),
    }
}

fn failure(message: String) -> Failure {
    Failure {
        message,
        retry_after: None,
        gone: false,
    }
}

/// A reqwest error with its causes (the egress policy's refusal is one of them).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` in seconds or as an HTTP date, capped at a day.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at: DateTime<Utc> = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
            (at - Utc::now()).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

/// `wait` scaled by a random factor in [0.8, 1.2), so retries of many subscriptions spread.
fn with_jitter(wait: Duration) -> Duration {
    let unit = OsRng.next_u32() as f64 / u32::MAX as f64;
    wait.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let later = (Utc::now() + chrono::Duration::seconds(3600)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::try_from(later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("999999999"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(86_400)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..1000 {
            let wait = with_jitter(Duration::from_secs(100));
            assert!(
                wait >= Duration::from_secs(80) && wait < Duration::from_secs(120),
                "{wait:?}"
            );
        }
    }
}
