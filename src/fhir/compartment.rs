//! The patient compartment of the R4 CompartmentDefinition `patient`: which reference search
//! parameters of each type put a resource in a patient's compartment.

use super::definitions::registry;
use super::search_index::IndexEntries;

/// The reference search parameters of `resource_type` whose reference to `Patient/{id}` puts
/// a resource in that patient's compartment (Observation: `subject`, `performer`); empty for
/// the types that are never in one (Practitioner, Organization, Medication). A Patient is
/// also in its own compartment, besides the patients that `link` to it.
pub fn patient_links(resource_type: &str) -> &'static [String] {
    registry()
        .patient_compartment_params(resource_type)
        .unwrap_or_default()
}

/// Whether resources of this type can be in a patient's compartment.
pub fn may_be_in_patient_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || !patient_links(resource_type).is_empty()
}

/// The served types whose resources can be in a patient's compartment, in registry order.
pub fn patient_compartment_types() -> impl Iterator<Item = &'static str> {
    served_types().filter(|t| may_be_in_patient_compartment(t))
}

/// The served types never in a patient's compartment: what patient data refers to
/// (practitioners, organizations, medications) rather than data about a patient.
pub fn outside_patient_compartments() -> impl Iterator<Item = &'static str> {
    served_types().filter(|t| !may_be_in_patient_compartment(t))
}

fn served_types() -> impl Iterator<Item = &'static str> {
    registry().resource_types().iter().map(String::as_str)
}

/// Whether the resource `resource_type/id`, whose index entries are `entries`, is in the
/// compartment of the patient `patient`.
pub fn is_in_patient_compartment(
    resource_type: &str,
    id: &str,
    entries: &IndexEntries,
    patient: &str,
) -> bool {
    if resource_type == "Patient" && id == patient {
        return true;
    }
    let links = patient_links(resource_type);
    entries.references.iter().any(|reference| {
        links.contains(&reference.param)
            && reference.target_type.as_deref() == Some("Patient")
            && reference.target_id.as_deref() == Some(patient)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fhir::search_index::{IndexContext, IndexKind, extract, indexed_parameter};

    #[test]
    fn every_served_type_is_in_the_definition() {
        for resource_type in served_types() {
            assert!(
                registry()
                    .patient_compartment_params(resource_type)
                    .is_some(),
                "{resource_type} is not listed in the patient CompartmentDefinition"
            );
        }
    }

    /// A linking parameter that is not indexed would silently leave resources out.
    #[test]
    fn every_link_is_an_indexed_reference_parameter_that_can_target_a_patient() {
        for resource_type in served_types() {
            for param in patient_links(resource_type) {
                let indexed = indexed_parameter(resource_type, param)
                    .unwrap_or_else(|| panic!("{resource_type}.{param} is not indexed"));
                assert_eq!(
                    indexed.kind,
                    IndexKind::Reference,
                    "{resource_type}.{param}"
                );
                assert!(
                    indexed.targets.iter().any(|t| t == "Patient"),
                    "{resource_type}.{param} cannot refer to a Patient"
                );
            }
        }
    }

    #[test]
    fn links_come_from_the_definition() {
        assert_eq!(patient_links("Observation"), ["subject", "performer"]);
        assert_eq!(
            patient_links("MedicationAdministration"),
            ["patient", "performer", "subject"]
        );
        assert_eq!(patient_links("Patient"), ["link"]);
        assert!(patient_links("Practitioner").is_empty());
        assert!(patient_links("NotAType").is_empty());
        assert_eq!(
            outside_patient_compartments().collect::<Vec<_>>(),
            ["Practitioner", "Organization", "Medication", "Subscription"]
        );
        assert!(patient_compartment_types().any(|t| t == "Patient"));
    }

    #[test]
    fn membership_follows_the_linking_references() {
        let context = IndexContext {
            base_url: "http://fhir.example/fhir".into(),
            zone: chrono_tz::UTC,
        };
        let observation = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"text": "pain"},
            "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "http://fhir.example/fhir/Patient/p2"}, {"reference": "Practitioner/p3"}],
            "hasMember": [{"reference": "Observation/o4"}]
        });
        let entries = extract("Observation", &observation, &context);
        assert!(is_in_patient_compartment(
            "Observation",
            "o1",
            &entries,
            "p1"
        ));
        assert!(is_in_patient_compartment(
            "Observation",
            "o1",
            &entries,
            "p2"
        ));
        assert!(!is_in_patient_compartment(
            "Observation",
            "o1",
            &entries,
            "p3"
        ));

        let patient = json!({"resourceType": "Patient", "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}]});
        let entries = extract("Patient", &patient, &context);
        assert!(is_in_patient_compartment("Patient", "p5", &entries, "p5"));
        assert!(is_in_patient_compartment("Patient", "p5", &entries, "p1"));
        assert!(!is_in_patient_compartment("Patient", "p5", &entries, "p2"));
    }
}
