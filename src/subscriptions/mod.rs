//! FHIR Subscriptions with reliable, signed webhook delivery: the subscription view and
//! topics, notification Bundles, Standard Webhooks signing, the egress policy against
//! server-side request forgery, and the delivery workers. The outbox and claim SQL live in
//! `store::subscriptions`.

pub mod delivery;
pub mod egress;
pub mod notification;
pub mod signing;
pub mod subscription;
pub mod topics;

use std::sync::Arc;

use tokio::sync::Notify;

use egress::EgressPolicy;

/// What the write path needs for subscriptions.
#[derive(Debug)]
pub struct WebhookContext {
    pub policy: Arc<EgressPolicy>,
    /// Woken after a commit that recorded events, so delivery starts at once.
    pub wake: Notify,
}

impl WebhookContext {
    pub fn new(policy: EgressPolicy) -> Self {
        WebhookContext {
            policy: Arc::new(policy),
            wake: Notify::new(),
        }
    }

    pub fn wake_workers(&self) {
        self.wake.notify_one();
    }
}
