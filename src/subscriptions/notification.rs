//! Notification Bundles as the Subscriptions R5 Backport IG shapes them for R4: a `history`
//! Bundle whose first entry is the subscription-status Parameters, then one entry per
//! event's focus (none for `empty` payloads).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::subscription::{PayloadContent, STATUS_PROFILE};

/// `type` of a subscription-status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationType {
    Handshake,
    Heartbeat,
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl NotificationType {
    pub fn code(self) -> &'static str {
        match self {
            NotificationType::Handshake => "handshake",
            NotificationType::Heartbeat => "heartbeat",
            NotificationType::EventNotification => "event-notification",
            NotificationType::QueryStatus => "query-status",
            NotificationType::QueryEvent => "query-event",
        }
    }
}

/// What the subscription-status says about the subscription itself.
#[derive(Debug, Clone)]
pub struct StatusHead<'a> {
    /// The FHIR base URL of this server.
    pub base_url: &'a str,
    pub subscription_id: &'a str,
    pub topic: Option<&'a str>,
    pub status: &'a str,
    pub kind: NotificationType,
    pub events_since_start: i64,
    pub error: Option<&'a str>,
}

/// One event as notified.
#[derive(Debug, Clone)]
pub struct NotifiedEvent {
    pub number: i64,
    pub timestamp: DateTime<Utc>,
    pub focus_type: String,
    pub focus_id: String,
    /// POST, PUT, PATCH or DELETE.
    pub method: String,
    /// The focus version, for `full-resource` payloads (none for a deletion).
    pub resource: Option<Value>,
}

impl NotifiedEvent {
    fn reference(&self) -> String {
        format!("{}/{}", self.focus_type, self.focus_id)
    }
}

/// The notification Bundle.
pub fn bundle(head: &StatusHead, events: &[NotifiedEvent], content: PayloadContent) -> Value {
    let status_id = Uuid::new_v4().to_string();
    let mut entries = vec![json!({
        "fullUrl": format!("urn:uuid:{status_id}"),
        "resource": status_parameters(head, events, content, &status_id),
        "request": {"method": "GET", "url": format!("{}/Subscription/{}/$status", head.base_url, head.subscription_id)},
        "response": {"status": "200"}
    })];
    if content != PayloadContent::Empty {
        entries.extend(
            events
                .iter()
                .map(|event| focus_entry(head.base_url, event, content)),
        );
    }
    json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "type": "history",
        "timestamp": instant(Utc::now()),
        "entry": entries
    })
}

/// The subscription-status Parameters (profile backport-subscription-status-r4).
pub fn status_parameters(
    head: &StatusHead,
    events: &[NotifiedEvent],
    content: PayloadContent,
    id: &str,
) -> Value {
    let mut parameters = vec![json!({
        "name": "subscription",
        "valueReference": {"reference": format!("{}/Subscription/{}", head.base_url, head.subscription_id)}
    })];
    if let Some(topic) = head.topic {
        parameters.push(json!({"name": "topic", "valueCanonical": topic}));
    }
    parameters.push(json!({"name": "status", "valueCode": head.status}));
    parameters.push(json!({"name": "type", "valueCode": head.kind.code()}));
    parameters.push(json!({
        "name": "events-since-subscription-start",
        "valueString": head.events_since_start.to_string()
    }));
    for event in events {
        let mut parts = vec![
            json!({"name": "event-number", "valueString": event.number.to_string()}),
            json!({"name": "timestamp", "valueInstant": instant(event.timestamp)}),
        ];
        if content != PayloadContent::Empty {
            parts.push(json!({
                "name": "focus",
                "valueReference": {"reference": format!("{}/{}", head.base_url, event.reference())}
            }));
        }
        parameters.push(json!({"name": "notification-event", "part": parts}));
    }
    if let Some(error) = head.error {
        parameters.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({
        "resourceType": "Parameters",
        "id": id,
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters
    })
}

fn focus_entry(base_url: &str, event: &NotifiedEvent, content: PayloadContent) -> Value {
    let reference = event.reference();
    let status = match event.method.as_str() {
        "POST" => "201",
        "DELETE" => "204",
        _ => "200",
    };
    let mut entry = json!({
        "fullUrl": format!("{base_url}/{reference}"),
        "request": {"method": event.method, "url": reference},
        "response": {"status": status}
    });
    if content == PayloadContent::FullResource
        && let Some(resource) = &event.resource
    {
        entry["resource"] = resource.clone();
    }
    entry
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(kind: NotificationType) -> StatusHead<'static> {
        StatusHead {
            base_url: "http://server/fhir",
            subscription_id: "s1",
            topic: Some(
                "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/infusion-completed",
            ),
            status: "active",
            kind,
            events_since_start: 7,
            error: None,
        }
    }

    fn event() -> NotifiedEvent {
        NotifiedEvent {
            number: 7,
            timestamp: "2026-03-02T10:00:00Z".parse().unwrap(),
            focus_type: "MedicationAdministration".into(),
            focus_id: "ma1".into(),
            method: "PUT".into(),
            resource: Some(json!({"resourceType": "MedicationAdministration", "id": "ma1"})),
        }
    }

    #[test]
    fn a_full_resource_notification_carries_status_then_focus() {
        let bundle = bundle(
            &head(NotificationType::EventNotification),
            &[event()],
            PayloadContent::FullResource,
        );
        assert_eq!(bundle["type"], "history");
        let status = &bundle["entry"][0];
        assert_eq!(
            status["request"]["url"],
            "http://server/fhir/Subscription/s1/$status"
        );
        let parameters = &status["resource"]["parameter"];
        let names: Vec<&str> = parameters
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "subscription",
                "topic",
                "status",
                "type",
                "events-since-subscription-start",
                "notification-event"
            ]
        );
        assert_eq!(parameters[4]["valueString"], "7");
        assert_eq!(
            parameters[5]["part"][0],
            json!({"name": "event-number", "valueString": "7"})
        );
        assert_eq!(
            parameters[5]["part"][1]["valueInstant"],
            "2026-03-02T10:00:00.000Z"
        );
        assert_eq!(
            parameters[5]["part"][2]["valueReference"]["reference"],
            "http://server/fhir/MedicationAdministration/ma1"
        );
        let focus = &bundle["entry"][1];
        assert_eq!(
            focus["fullUrl"],
            "http://server/fhir/MedicationAdministration/ma1"
        );
        assert_eq!(
            focus["request"],
            json!({"method": "PUT", "url": "MedicationAdministration/ma1"})
        );
        assert_eq!(focus["resource"]["id"], "ma1");
    }

    #[test]
    fn id_only_has_no_resource_and_empty_has_no_focus() {
        let id_only = bundle(
            &head(NotificationType::EventNotification),
            &[event()],
            PayloadContent::IdOnly,
        );
        assert!(id_only["entry"][1].get("resource").is_none());
        let empty = bundle(
            &head(NotificationType::EventNotification),
            &[event()],
            PayloadContent::Empty,
        );
        assert_eq!(empty["entry"].as_array().unwrap().len(), 1);
        assert_eq!(
            empty["entry"][0]["resource"]["parameter"][5]["part"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let handshake = bundle(
            &head(NotificationType::Handshake),
            &[],
            PayloadContent::FullResource,
        );
        assert_eq!(
            handshake["entry"][0]["resource"]["parameter"][3]["valueCode"],
            "handshake"
        );
    }
}
