//! JSON documents fetched from other servers (a client's JWK Set at its registered URL):
//! through the egress policy, cached with the server's `Cache-Control: max-age` bounded to
//! [60 s, 1 h], and refetched at most once per 10 s per URL when a key is missing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::subscriptions::egress::{self, EgressPolicy};

const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// However often documents are asked for, a URL is fetched at most this often.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Key sets and discovery documents are small; a larger answer is refused.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Fetches and caches JSON documents by URL.
pub struct RemoteDocuments {
    policy: Arc<EgressPolicy>,
    client: reqwest::Client,
    /// One lock per URL, held across its fetch, so concurrent requests wait for one fetch.
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
}

#[derive(Default)]
struct Entry {
    document: Option<Value>,
    fresh_until: Option<Instant>,
    /// The last fetch of a fresh document because it did not suffice.
    refetched: Option<Instant>,
    /// The last failed fetch and why it failed.
    failed: Option<(Instant, String)>,
}

fn within_interval(at: Option<Instant>) -> bool {
    at.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL)
}

impl Entry {
    fn fresh(&self) -> Option<&Value> {
        let fresh = self.fresh_until.is_some_and(|until| Instant::now() < until);
        self.document.as_ref().filter(|_| fresh)
    }
}

impl RemoteDocuments {
    pub fn new(
        policy: Arc<EgressPolicy>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        Ok(RemoteDocuments {
            client: egress::client(policy.clone(), connect_timeout, timeout)?,
            policy,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The document at `url`: the cached one while it is fresh and `suffices` (e.g. holds
    /// the key asked for); a fresh one that does not suffice is fetched again, at most once
    /// per 10 s. A failed fetch is not retried for 10 s either. The error describes why the
    /// document could not be had.
    pub async fn get(&self, url: &str, suffices: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let entry = self.entry(url);
        let mut entry = entry.lock().await;
        if let Some(document) = entry.fresh() {
            if suffices(document) || within_interval(entry.refetched) {
                return Ok(document.clone());
            }
            entry.refetched = Some(Instant::now());
        } else if let Some((at, failure)) = &entry.failed
            && within_interval(Some(*at))
        {
            return Err(failure.clone());
        }
        match self.fetch(url).await {
            Ok((document, ttl)) => {
                entry.document = Some(document.clone());
                entry.fresh_until = Some(Instant::now() + ttl);
                entry.failed = None;
                Ok(document)
            }
            Err(failure) => {
                entry.failed = Some((Instant::now(), failure.clone()));
                Err(failure)
            }
        }
    }

    fn entry(&self, url: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.entry(url.to_string()).or_default().clone()
    }

    async fn fetch(&self, url: &str) -> Result<(Value, Duration), String> {
        let checked = self
            .policy
            .check_url(url)
            .map_err(|error| format!("{url} is refused by the egress policy: {error}"))?;
        let response = self
            .client
            .get(checked)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|error| format!("{url} could not be fetched: {}", error_chain(&error)))?;
        if !response.status().is_success() {
            return Err(format!(
                "{url} answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let ttl = cache_lifetime(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("{url} could not be read: {error}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "{url} answered more than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        let document: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("{url} did not answer a JSON document"))?;
        Ok((document, ttl))
    }
}

/// reqwest's top-level error says little ("error sending request"); its sources say why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// `Cache-Control: max-age` within [60 s, 1 h]; 5 minutes when absent or `no-cache`.
fn cache_lifetime(headers: &reqwest::header::HeaderMap) -> Duration {
    let max_age = headers
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|directive| directive.trim().strip_prefix("max-age="))
        .find_map(|seconds| seconds.trim_matches('"').parse::<u64>().ok());
    max_age
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TTL)
        .clamp(MIN_TTL, MAX_TTL)
}

/// Does the JWK Set hold a key with this `kid`?
pub fn has_kid(jwks: &Value, kid: Option<&str>) -> bool {
    let Some(kid) = kid else { return true };
    jwks["keys"]
        .as_array()
        .is_some_and(|keys| keys.iter().any(|key| key["kid"].as_str() == Some(kid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    fn lifetime(value: &str) -> Duration {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        cache_lifetime(&headers)
    }

    #[test]
    fn max_age_is_honoured_within_bounds() {
        assert_eq!(lifetime("public, max-age=600"), Duration::from_secs(600));
        assert_eq!(lifetime("max-age=5"), MIN_TTL);
        assert_eq!(lifetime("max-age=86400"), MAX_TTL);
        assert_eq!(lifetime("no-cache"), DEFAULT_TTL);
        assert_eq!(cache_lifetime(&HeaderMap::new()), DEFAULT_TTL);
    }

    #[test]
    fn has_kid_looks_in_the_keys() {
        let jwks = serde_json::json!({"keys": [{"kid": "a"}]});
        assert!(has_kid(&jwks, Some("a")));
        assert!(!has_kid(&jwks, Some("b")));
        assert!(has_kid(&jwks, None));
    }
}
