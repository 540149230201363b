//! The AuditEvent resource of one interaction: who (token subject, peer address), what
//! (interaction, resource, query), which patient, the outcome and the request id.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::Interaction;

const EVENT_TYPES: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const INTERACTIONS: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPES: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLES: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPES: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
/// The observer named in every event's `source`.
pub const OBSERVER: &str = "ketamine-fhir";

/// Everything known about one interaction when its response is ready.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub interaction: Interaction,
    /// The token subject; `None` when no valid token came with the request.
    pub agent: Option<String>,
    pub address: Option<String>,
    /// `Type/id` (or `Type`) of the resources addressed or written.
    pub targets: Vec<String>,
    /// Ids of the patients whose data was touched.
    pub patients: Vec<String>,
    pub query: Option<String>,
    pub request_id: Option<String>,
    pub status: u16,
}

impl AuditRecord {
    /// AuditEvent.outcome: 0 success, 4 minor failure (the client's), 8 serious (the server's).
    pub fn outcome(&self) -> &'static str {
        match self.status {
            0..=399 => "0",
            400..=499 => "4",
            _ => "8",
        }
    }

    pub fn resource(&self, id: &str, recorded: DateTime<Utc>) -> Value {
        let mut event = json!({
            "resourceType": "AuditEvent",
            "id": id,
            "type": self.event_type(),
            "subtype": [{"system": INTERACTIONS, "code": self.interaction.code}],
            "action": self.interaction.action.code(),
            "recorded": recorded.to_rfc3339_opts(SecondsFormat::Micros, true),
            "outcome": self.outcome(),
            "outcomeDesc": format!("HTTP {}", self.status),
            "agent": [self.agent()],
            "source": {
                "observer": {"display": OBSERVER},
                "type": [{"system": SOURCE_TYPES, "code": "4", "display": "Application Server"}]
            },
        });
        let entities = self.entities();
        if !entities.is_empty() {
            event["entity"] = Value::Array(entities);
        }
        event
    }

    fn event_type(&self) -> Value {
        if self.interaction.code == "login" {
            json!({"system": DICOM, "code": "110114", "display": "User Authentication"})
        } else {
            json!({"system": EVENT_TYPES, "code": "rest", "display": "RESTful Operation"})
        }
    }

    fn agent(&self) -> Value {
        let mut agent = json!({"requestor": true});
        if let Some(subject) = &self.agent {
            agent["who"] = json!({"identifier": {"value": subject}});
        }
        if let Some(address) = &self.address {
            agent["network"] = json!({"address": address, "type": "2"});
        }
        agent
    }

    fn entities(&self) -> Vec<Value> {
        let mut entities = Vec::new();
        for target in &self.targets {
            entities.push(json!({
                "what": {"reference": target},
                "type": {"system": ENTITY_TYPES, "code": "2", "display": "System Object"}
            }));
        }
        for patient in &self.patients {
            entities.push(json!({
                "what": {"reference": format!("Patient/{patient}")},
                "type": {"system": ENTITY_TYPES, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLES, "code": "1", "display": "Patient"}
            }));
        }
        let mut request = json!({
            "type": {"system": ENTITY_TYPES, "code": "2", "display": "System Object"},
            "description": "the request"
        });
        if let Some(query) = self.query.as_deref().filter(|q| !q.is_empty()) {
            request["query"] = base64::engine::general_purpose::STANDARD
                .encode(query)
                .into();
        }
        if let Some(id) = &self.request_id {
            request["detail"] = json!([{"type": "request-id", "valueString": id}]);
        }
        entities.push(request);
        entities
    }
}
