//! The FHIR invariants (constraint keys from the StructureDefinitions) this server checks,
//! each written out from its FHIRPath, plus the clinic's vital-signs profile rules.

use serde_json::Value;

use super::outcome::Issue;
use super::resource::codings;

/// Does `value` satisfy the constraint `key`? `None` when this server does not check it.
pub fn holds(key: &str, value: &Value) -> Option<bool> {
    let has = |name: &str| value.get(name).is_some();
    let has_choice = |base: &str| {
        value.as_object().is_some_and(|object| {
            object.keys().any(|k| {
                k.strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            })
        })
    };
    Some(match key {
        // Period: start <= end (compared as instants when both are full dateTimes).
        "per-1" => period_ordered(value),
        // Quantity: if a code for the unit is present, the system SHALL also be present.
        "qty-3" => !has("code") || has("system"),
        // Extension: must have either extensions or value[x], not both.
        "ext-1" => has("extension") != has_choice("value"),
        // ContactPoint: a system is required if a value is provided.
        "cpt-2" => !has("value") || has("system"),
        // Patient.contact: SHALL at least contain a contact's details or a reference to an organization.
        "pat-1" => has("name") || has("telecom") || has("address") || has("organization"),
        // MedicationAdministration.dosage: SHALL have at least one of dosage.dose or dosage.rate[x].
        "mad-1" => has("dose") || has_choice("rate"),
        // Observation.referenceRange: must have at least a low or a high or text.
        "obs-3" => has("low") || has("high") || has("text"),
        // dataAbsentReason SHALL only be present if Observation.value[x] is not present.
        "obs-6" => !has("dataAbsentReason") || !has_choice("value"),
        // If Observation.code is the same as a component code, the top-level value SHALL NOT be present.
        "obs-7" => !has_choice("value") || !code_repeated_in_components(value),
        // Contained resources: no nested contained, no meta.versionId/lastUpdated, no meta.security.
        "dom-2" => contained(value).all(|c| c.get("contained").is_none()),
        "dom-4" => contained(value).all(|c| {
            c["meta"].get("versionId").is_none() && c["meta"].get("lastUpdated").is_none()
        }),
        "dom-5" => contained(value).all(|c| c["meta"].get("security").is_none()),
        _ => return None,
    })
}

fn contained(value: &Value) -> impl Iterator<Item = &Value> {
    value["contained"].as_array().into_iter().flatten()
}

fn period_ordered(period: &Value) -> bool {
    let (Some(start), Some(end)) = (period["start"].as_str(), period["end"].as_str()) else {
        return true;
    };
    match (
        chrono::DateTime::parse_from_rfc3339(start),
        chrono::DateTime::parse_from_rfc3339(end),
    ) {
        (Ok(start), Ok(end)) => start <= end,
        // Partial dates of equal precision compare correctly as text.
        _ => start.len() != end.len() || start <= end,
    }
}

fn code_repeated_in_components(observation: &Value) -> bool {
    let own: Vec<(&str, &str)> = codings(&observation["code"]).collect();
    observation["component"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|component| codings(&component["code"]).any(|c| own.contains(&c)))
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const BLOOD_PRESSURE_PANEL: &str = "85354-9";
const SYSTOLIC: &str = "8480-6";
const DIASTOLIC: &str = "8462-4";

fn has_category(observation: &Value, code: &str) -> bool {
    observation["category"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|category| codings(category).any(|(_, c)| c == code))
}

/// The R4 vital-signs profile rules for an Observation whose category
/// is vital-signs: LOINC code, Patient subject, effective time, a UCUM quantity or a
/// dataAbsentReason, and the two mm[Hg] components of a blood-pressure panel.
pub fn vital_signs_issues(observation: &Value) -> Vec<Issue> {
    if !has_category(observation, "vital-signs") {
        return Vec::new();
    }
    let mut issues = Vec::new();
    let mut fail = |text: &str, at: &str| {
        issues.push(Issue::error("invariant", format!("Vital signs profile: {text}")).at(at));
    };
    if !codings(&observation["code"]).any(|(system, _)| system == LOINC) {
        fail(
            "code needs a LOINC coding (http://loinc.org)",
            "Observation.code",
        );
    }
    let subject = observation["subject"]["reference"]
        .as_str()
        .unwrap_or_default();
    if !subject.starts_with("Patient/") && !subject.contains("/Patient/") {
        fail("subject must reference a Patient", "Observation.subject");
    }
    if !observation
        .as_object()
        .is_some_and(|o| o.keys().any(|k| k.starts_with("effective")))
    {
        fail("effective[x] is required", "Observation.effective[x]");
    }
    let is_panel = codings(&observation["code"]).any(|(_, code)| code == BLOOD_PRESSURE_PANEL);
    if is_panel {
        for (code, name) in [(SYSTOLIC, "systolic"), (DIASTOLIC, "diastolic")] {
            let component = observation["component"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| codings(&c["code"]).any(|(_, c)| c == code));
            match component {
                None => fail(
                    &format!("a blood pressure panel needs a {name} component ({code})"),
                    "Observation.component",
                ),
                Some(component) if component.get("dataAbsentReason").is_none() => {
                    if !ucum_quantity(&component["valueQuantity"], Some("mm[Hg]")) {
                        fail(
                            &format!("the {name} component needs valueQuantity in mm[Hg] (UCUM)"),
                            "Observation.component.valueQuantity",
                        );
                    }
                }
                Some(_) => {}
            }
        }
    } else if observation.get("dataAbsentReason").is_none()
        && observation.get("component").is_none()
        && !ucum_quantity(&observation["valueQuantity"], None)
    {
        fail(
            "needs valueQuantity with a UCUM unit (system http://unitsofmeasure.org and code) or a dataAbsentReason",
            "Observation.valueQuantity",
        );
    }
    issues
}

fn ucum_quantity(quantity: &Value, unit: Option<&str>) -> bool {
    quantity["value"].is_number()
        && quantity["system"] == UCUM
        && quantity["code"]
            .as_str()
            .is_some_and(|code| unit.is_none_or(|unit| unit == code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mad_1_needs_dose_or_rate() {
        assert_eq!(holds("mad-1", &json!({"route": {}})), Some(false));
        assert_eq!(holds("mad-1", &json!({"dose": {"value": 35}})), Some(true));
        assert_eq!(
            holds("mad-1", &json!({"rateQuantity": {"value": 1}})),
            Some(true)
        );
    }

    #[test]
    fn obs_6_and_obs_7() {
        assert_eq!(
            holds(
                "obs-6",
                &json!({"valueQuantity": {}, "dataAbsentReason": {}})
            ),
            Some(false)
        );
        let repeated = json!({
            "code": {"coding": [{"system": "http://loinc.org", "code": "1"}]},
            "valueString": "x",
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "1"}]}}]
        });
        assert_eq!(holds("obs-7", &repeated), Some(false));
    }

    #[test]
    fn period_start_after_end_fails() {
        let period = json!({"start": "2026-01-02T10:00:00Z", "end": "2026-01-02T09:00:00Z"});
        assert_eq!(holds("per-1", &period), Some(false));
    }

    #[test]
    fn blood_pressure_panel_needs_both_components_in_mm_hg() {
        let observation = json!({
            "resourceType": "Observation",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-01-01T10:00:00Z",
            "component": [{
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
            }]
        });
        let issues = vital_signs_issues(&observation);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].diagnostics.contains("diastolic"));
    }
}
