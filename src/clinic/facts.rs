//! Outcome facts: the few dated figures per patient that the clinic-level outcomes read
//! (each ketamine infusion given, each recorded pain score), derived from a resource's
//! current version and kept in `clinic_facts` next to its search index rows.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::config::KetamineCodes;
use super::record::{Infusion, Reading, ReadingKind};
use crate::fhir::fhirpath::reference_target;

/// What a fact records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    /// A ketamine infusion given (in progress or completed), at its start.
    Infusion,
    /// A pain score (LOINC 72514-3, 0-10), at its effective time.
    PainScore,
}

impl FactKind {
    /// The value of `clinic_facts.kind`.
    pub fn code(self) -> &'static str {
        match self {
            FactKind::Infusion => "infusion",
            FactKind::PainScore => "pain-score",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeFact {
    pub patient_id: String,
    pub kind: FactKind,
    pub at: DateTime<Utc>,
    /// The score of a pain score; none for an infusion.
    pub value: Option<f64>,
}

/// Bump when the facts a resource gives change meaning (the stored ones are then rebuilt).
pub const FACT_RULES_VERSION: u32 = 1;

/// The facts of one resource's current version. `medications` are the Medications its
/// `medicationReference` may name (only read for MedicationAdministrations).
pub fn outcome_facts(
    resource_type: &str,
    resource: &Value,
    medications: &[Value],
    ketamine: &KetamineCodes,
) -> Vec<OutcomeFact> {
    let Some(patient_id) = subject_patient(resource) else {
        return Vec::new();
    };
    match resource_type {
        "MedicationAdministration" => Infusion::read(resource, medications, ketamine)
            .filter(Infusion::was_given)
            .map(|infusion| OutcomeFact {
                patient_id: patient_id.to_string(),
                kind: FactKind::Infusion,
                at: infusion.start,
                value: None,
            })
            .into_iter()
            .collect(),
        "Observation" => Reading::of_observation(resource)
            .into_iter()
            .filter(|reading| reading.kind == ReadingKind::PainSeverity)
            .map(|reading| OutcomeFact {
                patient_id: patient_id.to_string(),
                kind: FactKind::PainScore,
                at: reading.at,
                value: Some(reading.value),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether resources of this type can give facts (others need no fact rows at all).
pub fn has_facts(resource_type: &str) -> bool {
    matches!(resource_type, "MedicationAdministration" | "Observation")
}

/// A fingerprint part of the fact rules: the version and the codes that name ketamine.
pub fn fingerprint_part(ketamine: &KetamineCodes) -> String {
    let products: Vec<&str> = ketamine.products.iter().map(|p| p.code.as_str()).collect();
    format!(
        "facts={FACT_RULES_VERSION};ketamine={}|{}|{}",
        ketamine.system,
        ketamine.ingredient,
        products.join(",")
    )
}

fn subject_patient(resource: &Value) -> Option<&str> {
    match reference_target(resource["subject"]["reference"].as_str()?)? {
        ("Patient", id) => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn administration(status: &str, medication: Value) -> Value {
        let mut resource = json!({
            "resourceType": "MedicationAdministration",
            "status": status,
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2026-03-02T09:00:00Z", "end": "2026-03-02T09:40:00Z"},
            "dosage": {"dose": {"value": 35, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}
        });
        let object = resource.as_object_mut().unwrap();
        for (key, value) in medication.as_object().unwrap() {
            object.insert(key.clone(), value.clone());
        }
        resource
    }

    fn rxnorm(code: &str) -> Value {
        json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}]})
    }

    fn pain(status: &str, value: Value) -> Value {
        let mut resource = json!({
            "resourceType": "Observation",
            "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-03-01T10:00:00+01:00"
        });
        resource
            .as_object_mut()
            .unwrap()
            .extend(value.as_object().unwrap().clone());
        resource
    }

    #[test]
    fn a_ketamine_infusion_given_is_a_fact_at_its_start() {
        let ketamine = KetamineCodes::default();
        let given = administration(
            "completed",
            json!({"medicationCodeableConcept": rxnorm("6130")}),
        );
        assert_eq!(
            outcome_facts("MedicationAdministration", &given, &[], &ketamine),
            vec![OutcomeFact {
                patient_id: "p1".into(),
                kind: FactKind::Infusion,
                at: at("2026-03-02T09:00:00Z"),
                value: None,
            }]
        );
        let stopped = administration(
            "stopped",
            json!({"medicationCodeableConcept": rxnorm("6130")}),
        );
        assert!(outcome_facts("MedicationAdministration", &stopped, &[], &ketamine).is_empty());
        let other = administration(
            "completed",
            json!({"medicationCodeableConcept": rxnorm("7052")}),
        );
        assert!(outcome_facts("MedicationAdministration", &other, &[], &ketamine).is_empty());
    }

    #[test]
    fn a_product_named_through_a_medication_reference_is_ketamine() {
        let ketamine = KetamineCodes::default();
        let given = administration(
            "in-progress",
            json!({"medicationReference": {"reference": "Medication/vial"}}),
        );
        let vial = json!({"resourceType": "Medication", "id": "vial", "code": rxnorm("238083")});
        assert_eq!(
            outcome_facts("MedicationAdministration", &given, &[vial], &ketamine).len(),
            1
        );
        assert!(outcome_facts("MedicationAdministration", &given, &[], &ketamine).is_empty());
    }

    #[test]
    fn a_recorded_pain_score_is_a_fact_with_its_value() {
        let ketamine = KetamineCodes::default();
        let score = pain("final", json!({"valueInteger": 7}));
        assert_eq!(
            outcome_facts("Observation", &score, &[], &ketamine),
            vec![OutcomeFact {
                patient_id: "p1".into(),
                kind: FactKind::PainScore,
                at: at("2026-03-01T09:00:00Z"),
                value: Some(7.0),
            }]
        );
        let quantity = pain("amended", json!({"valueQuantity": {"value": 4.5}}));
        assert_eq!(
            outcome_facts("Observation", &quantity, &[], &ketamine)[0].value,
            Some(4.5)
        );
        let in_error = pain("entered-in-error", json!({"valueInteger": 7}));
        assert!(outcome_facts("Observation", &in_error, &[], &ketamine).is_empty());
        let mut of_a_group = pain("final", json!({"valueInteger": 7}));
        of_a_group["subject"] = json!({"reference": "Group/g1"});
        assert!(outcome_facts("Observation", &of_a_group, &[], &ketamine).is_empty());
    }

    #[test]
    fn the_fingerprint_part_follows_the_ketamine_codes() {
        let default = KetamineCodes::default();
        let mut fewer = default.clone();
        fewer.products.pop();
        assert_ne!(fingerprint_part(&default), fingerprint_part(&fewer));
    }
}
