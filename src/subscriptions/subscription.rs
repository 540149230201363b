//! The typed view of a Subscription resource (R4 with the Subscriptions R5 Backport
//! extensions): criteria, channel, payload content, heartbeat, timeout and webhook secrets,
//! read from the stored JSON, with the checks a Subscription must pass to be stored.

use serde_json::{Value, json};

use super::signing::WebhookSecret;
use super::topics::{Topic, topic_by_url};
use crate::fhir::outcome::Issue;

pub const FILTER_CRITERIA: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
pub const PAYLOAD_CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
pub const HEARTBEAT_PERIOD: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";
pub const TIMEOUT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout";
/// Profile of the subscription-status Parameters at the head of each notification.
pub const STATUS_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
/// Extension on Subscription.channel: a Standard Webhooks secret (`whsec_...`) that signs
/// every notification. Two may be present while a partner rotates: each signs.
pub const WEBHOOK_SECRET: &str =
    "https://ketamine-fhir.example.org/fhir/StructureDefinition/webhook-secret";

/// What a subscription selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Criteria {
    /// A backport topic, optionally narrowed by filter criteria (search parameters of the
    /// topic's resource type).
    Topic {
        topic: &'static Topic,
        filters: Vec<(String, String)>,
    },
    /// Classic R4 criteria: a search (`Observation?code=...`) that a created or updated
    /// resource must match.
    Query {
        resource_type: String,
        parameters: Vec<(String, String)>,
    },
}

impl Criteria {
    pub fn resource_type(&self) -> &str {
        match self {
            Criteria::Topic { topic, .. } => topic.resource_type,
            Criteria::Query { resource_type, .. } => resource_type,
        }
    }

    pub fn topic_url(&self) -> Option<&'static str> {
        match self {
            Criteria::Topic { topic, .. } => Some(topic.url),
            Criteria::Query { .. } => None,
        }
    }
}

/// How much of the focus resource a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadContent {
    Empty,
    IdOnly,
    FullResource,
}

impl PayloadContent {
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "empty" => Some(PayloadContent::Empty),
            "id-only" => Some(PayloadContent::IdOnly),
            "full-resource" => Some(PayloadContent::FullResource),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub status: String,
    pub criteria: Criteria,
    pub endpoint: String,
    /// `channel.header` values split into name and value.
    pub headers: Vec<(String, String)>,
    pub content: PayloadContent,
    pub heartbeat_seconds: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub secrets: Vec<WebhookSecret>,
}

impl SubscriptionView {
    /// Reads a stored (or about to be stored) Subscription; every problem found is listed.
    pub fn read(subscription: &Value) -> Result<Self, Vec<Issue>> {
        let mut issues = Vec::new();
        let criteria = read_criteria(subscription)
            .map_err(|issue| issues.push(issue))
            .ok();
        let channel = &subscription["channel"];
        if channel["type"].as_str() != Some("rest-hook") {
            issues.push(
                Issue::error("not-supported", "only channel type rest-hook is supported")
                    .at("Subscription.channel.type"),
            );
        }
        let endpoint = channel["endpoint"].as_str().unwrap_or_default().to_string();
        if endpoint.is_empty() {
            issues.push(
                Issue::error("required", "a rest-hook channel needs an endpoint")
                    .at("Subscription.channel.endpoint"),
            );
        }
        let headers = read_headers(channel, &mut issues);
        let content = read_content(channel, &mut issues);
        let secrets = read_secrets(channel, &mut issues);
        match criteria {
            Some(criteria) if issues.is_empty() => Ok(SubscriptionView {
                status: subscription["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                criteria,
                endpoint,
                headers,
                content,
                heartbeat_seconds: unsigned_extension(channel, HEARTBEAT_PERIOD),
                timeout_seconds: unsigned_extension(channel, TIMEOUT),
                secrets,
            }),
            _ => Err(issues),
        }
    }
}

/// Adds a generated webhook secret to a Subscription that has none; returns whether it did.
pub fn ensure_secret(subscription: &mut Value) -> bool {
    let channel = &mut subscription["channel"];
    if extensions(channel).any(|e| e["url"] == WEBHOOK_SECRET) {
        return false;
    }
    let secret = WebhookSecret::generate().to_text();
    let extension = json!({"url": WEBHOOK_SECRET, "valueString": secret});
    match channel["extension"].as_array_mut() {
        Some(list) => list.push(extension),
        None => channel["extension"] = json!([extension]),
    }
    true
}

fn extensions(element: &Value) -> impl Iterator<Item = &Value> {
    element["extension"].as_array().into_iter().flatten()
}

fn read_criteria(subscription: &Value) -> Result<Criteria, Issue> {
    let text = subscription["criteria"].as_str().unwrap_or_default();
    let at = "Subscription.criteria";
    if text.starts_with("http://") || text.starts_with("https://") {
        let topic = topic_by_url(text).ok_or_else(|| {
            Issue::error(
                "not-supported",
                format!("unknown subscription topic {text}; see the CapabilityStatement for the topics served"),
            )
            .at(at)
        })?;
        let mut filters = Vec::new();
        for extension in
            extensions(&subscription["_criteria"]).filter(|e| e["url"] == FILTER_CRITERIA)
        {
            let filter = extension["valueString"].as_str().unwrap_or_default();
            filters.extend(filter_parameters(filter, topic.resource_type)?);
        }
        return Ok(Criteria::Topic { topic, filters });
    }
    let (resource_type, query) = text.split_once('?').unwrap_or((text, ""));
    if resource_type.is_empty() || !resource_type.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(Issue::error(
            "invalid",
            format!(
                "criteria {text:?} is neither a topic URL nor a search such as Observation?code=..."
            ),
        )
        .at(at));
    }
    Ok(Criteria::Query {
        resource_type: resource_type.to_string(),
        parameters: query_pairs(query),
    })
}

/// A backport filter: `Type?query` (the type must be the topic's) or a bare query.
fn filter_parameters(filter: &str, resource_type: &str) -> Result<Vec<(String, String)>, Issue> {
    let query = match filter.split_once('?') {
        Some((given, query)) if given == resource_type => query,
        Some((given, _)) => {
            return Err(Issue::error(
                "invalid",
                format!("filter criteria for {given}, but the topic is about {resource_type}"),
            )
            .at("Subscription.criteria.extension"));
        }
        None => filter,
    };
    Ok(query_pairs(query))
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

fn read_headers(channel: &Value, issues: &mut Vec<Issue>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (index, header) in channel["header"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let text = header.as_str().unwrap_or_default();
        match text.split_once(':') {
            Some((name, value))
                if !name.trim().is_empty()
                    && name
                        .trim()
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b':')
                    && !value.contains(['\r', '\n']) =>
            {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
            _ => issues.push(
                Issue::error("invalid", format!("header {text:?} is not 'Name: value'"))
                    .at(format!("Subscription.channel.header[{index}]")),
            ),
        }
    }
    headers
}

fn read_content(channel: &Value, issues: &mut Vec<Issue>) -> PayloadContent {
    let code = extensions(&channel["_payload"])
        .find(|e| e["url"] == PAYLOAD_CONTENT)
        .and_then(|e| e["valueCode"].as_str());
    match code {
        Some(code) => PayloadContent::parse(code).unwrap_or_else(|| {
            issues.push(
                Issue::error(
                    "invalid",
                    format!("payload content {code:?} is not empty, id-only or full-resource"),
                )
                .at("Subscription.channel.payload.extension"),
            );
            PayloadContent::Empty
        }),
        // R4: with a payload MIME type the resource is sent; without one, nothing.
        None if channel["payload"].is_string() => PayloadContent::FullResource,
        None => PayloadContent::Empty,
    }
}

fn read_secrets(channel: &Value, issues: &mut Vec<Issue>) -> Vec<WebhookSecret> {
    let mut secrets = Vec::new();
    for extension in extensions(channel).filter(|e| e["url"] == WEBHOOK_SECRET) {
        match WebhookSecret::parse(extension["valueString"].as_str().unwrap_or_default()) {
            Ok(secret) => secrets.push(secret),
            Err(error) => issues.push(
                Issue::error("invalid", format!("webhook secret: {error}"))
                    .at("Subscription.channel.extension"),
            ),
        }
    }
    if secrets.len() > 2 {
        issues.push(
            Issue::error(
                "invalid",
                "at most two webhook secrets (the new and the old during rotation)",
            )
            .at("Subscription.channel.extension"),
        );
    }
    secrets
}

fn unsigned_extension(element: &Value, url: &str) -> Option<u32> {
    extensions(element)
        .find(|e| e["url"] == url)
        .and_then(|e| {
            e["valueUnsignedInt"]
                .as_u64()
                .or(e["valuePositiveInt"].as_u64())
        })
        .map(|n| n.min(u32::MAX as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(criteria: &str) -> Value {
        json!({
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "tests",
            "criteria": criteria,
            "channel": {"type": "rest-hook", "endpoint": "https://partner.example/hook",
                        "payload": "application/fhir+json",
                        "header": ["Authorization: Bearer abc"]}
        })
    }

    #[test]
    fn a_topic_subscription_with_filters_and_backport_extensions() {
        let mut resource = subscription(TOPIC);
        resource["_criteria"] = json!({"extension": [{"url": FILTER_CRITERIA, "valueString": "MedicationAdministration?patient=Patient/p1"}]});
        resource["channel"]["_payload"] =
            json!({"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "id-only"}]});
        resource["channel"]["extension"] =
            json!([{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 60}]);
        assert!(ensure_secret(&mut resource));
        assert!(!ensure_secret(&mut resource));
        let view = SubscriptionView::read(&resource).unwrap();
        assert_eq!(view.criteria.resource_type(), "MedicationAdministration");
        match &view.criteria {
            Criteria::Topic { filters, .. } => {
                assert_eq!(
                    filters,
                    &[("patient".to_string(), "Patient/p1".to_string())]
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(view.content, PayloadContent::IdOnly);
        assert_eq!(view.heartbeat_seconds, Some(60));
        assert_eq!(view.secrets.len(), 1);
        assert_eq!(
            view.headers,
            [("Authorization".to_string(), "Bearer abc".to_string())]
        );
    }

    const TOPIC: &str =
        "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/infusion-completed";

    #[test]
    fn classic_criteria_are_a_search() {
        let view =
            SubscriptionView::read(&subscription("Observation?code=http://loinc.org|72514-3"))
                .unwrap();
        assert_eq!(
            view.criteria,
            Criteria::Query {
                resource_type: "Observation".into(),
                parameters: vec![("code".into(), "http://loinc.org|72514-3".into())]
            }
        );
        assert_eq!(view.content, PayloadContent::FullResource);
    }

    #[test]
    fn every_problem_is_listed() {
        let mut resource = subscription("https://elsewhere.example/SubscriptionTopic/x");
        resource["channel"] = json!({"type": "email", "header": ["no colon"],
            "extension": [{"url": WEBHOOK_SECRET, "valueString": "plain"}]});
        let issues = SubscriptionView::read(&resource).unwrap_err();
        let paths: Vec<String> = issues
            .iter()
            .map(|i| i.expression.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            paths,
            [
                "Subscription.criteria",
                "Subscription.channel.type",
                "Subscription.channel.endpoint",
                "Subscription.channel.header[0]",
                "Subscription.channel.extension"
            ]
        );
        let mismatched = {
            let mut r = subscription(TOPIC);
            r["_criteria"] =
                json!({"extension": [{"url": FILTER_CRITERIA, "valueString": "Patient?name=x"}]});
            r
        };
        assert!(SubscriptionView::read(&mismatched).is_err());
    }
}
