//! The subscription topics this server publishes (Subscriptions R5 Backport style): their
//! canonical URLs, the resource type each watches, and when a write triggers it.

use serde_json::Value;

/// One topic.
#[derive(Debug)]
pub struct Topic {
    pub code: &'static str,
    pub url: &'static str,
    pub resource_type: &'static str,
    pub description: &'static str,
    /// Whether a write (`previous` → `current`, `None` for absent or deleted) triggers it.
    triggered: fn(Option<&Value>, Option<&Value>) -> bool,
}

impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Topic {
    pub fn is_triggered_by(&self, previous: Option<&Value>, current: Option<&Value>) -> bool {
        (self.triggered)(previous, current)
    }
}

pub const TOPICS: &[Topic] = &[
    Topic {
        code: "patient-changed",
        url: "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/patient-changed",
        resource_type: "Patient",
        description: "A Patient was created, updated or deleted.",
        triggered: |previous, current| previous.is_some() || current.is_some(),
    },
    Topic {
        code: "observation-recorded",
        url: "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/observation-recorded",
        resource_type: "Observation",
        description: "An Observation was recorded: created with, or moved to, status \
                      preliminary, final, amended or corrected.",
        triggered: |previous, current| {
            is_recorded(current) && (previous.is_none() || !is_recorded(previous))
        },
    },
    Topic {
        code: "infusion-completed",
        url: "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/infusion-completed",
        resource_type: "MedicationAdministration",
        description: "A MedicationAdministration reached status completed.",
        triggered: |previous, current| {
            status_of(current) == Some("completed") && status_of(previous) != Some("completed")
        },
    },
];

/// The topic with this canonical URL (a `|version` suffix is ignored).
pub fn topic_by_url(url: &str) -> Option<&'static Topic> {
    let url = url.split('|').next().unwrap_or(url);
    TOPICS.iter().find(|t| t.url == url)
}

fn status_of(resource: Option<&Value>) -> Option<&str> {
    resource?["status"].as_str()
}

fn is_recorded(observation: Option<&Value>) -> bool {
    matches!(
        status_of(observation),
        Some("preliminary" | "final" | "amended" | "corrected")
    )
}

#[test]
fn topic_urls_live_under_the_clinic_base() {
    use crate::clinic::codes::CLINIC_BASE;
    for topic in TOPICS {
        assert_eq!(
            topic.url,
            format!("{CLINIC_BASE}/SubscriptionTopic/{}", topic.code)
        );
        assert_eq!(topic_by_url(&format!("{}|1", topic.url)), Some(topic));
    }
}

#[test]
fn triggers_follow_the_topic_definitions() {
    use serde_json::json;
    let with = |status: &str| json!({"status": status});
    let infusion = topic_by_url(TOPICS[2].url).unwrap();
    assert!(infusion.is_triggered_by(Some(&with("in-progress")), Some(&with("completed"))));
    assert!(infusion.is_triggered_by(None, Some(&with("completed"))));
    assert!(!infusion.is_triggered_by(Some(&with("completed")), Some(&with("completed"))));
    assert!(!infusion.is_triggered_by(None, Some(&with("in-progress"))));
    let observation = &TOPICS[1];
    assert!(observation.is_triggered_by(None, Some(&with("final"))));
    assert!(observation.is_triggered_by(Some(&with("registered")), Some(&with("final"))));
    assert!(!observation.is_triggered_by(Some(&with("final")), Some(&with("amended"))));
    assert!(!observation.is_triggered_by(Some(&with("final")), None));
    let patient = &TOPICS[0];
    assert!(patient.is_triggered_by(Some(&json!({})), None));
    assert!(!patient.is_triggered_by(None, None));
}
