//! The deterministic synthetic demo clinic: patients with a weight, an infusion series of
//! IV ketamine dosed in mg/kg, and pre/intra/post vitals and pain scores. No real person.
//! `synthetic` makes the same kind of clinic at any scale.

pub mod synthetic;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use crate::clinic::safety;
use crate::error::ApiResult;
use crate::fhir::resource::instant;
use crate::fhir::validation::{ValidationOptions, validate_resource};
use crate::fhir::{ResourceId, ResourceType};
use crate::store::Pool;
use crate::store::resources::{self, NextContent, WriteContext, WriteMethod};

pub const DEMO_PATIENTS: usize = 50;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const SNOMED: &str = "http://snomed.info/sct";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// A small deterministic generator (SplitMix64), so the demo clinic is the same everywhere
/// (the tests also use it to generate queries).
pub struct Dice(pub u64);

impl Dice {
    pub fn roll(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.roll() % ((high - low + 1) as u64)) as i64
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.roll() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FAMILY: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Novak",
    "Brennan",
    "Castillo",
    "Haddad",
    "Petrov",
    "Nguyen",
    "Abara",
    "Whitfield",
];
const GIVEN_FEMALE: &[&str] = &[
    "Ada", "Maren", "Ines", "Yuki", "Petra", "Nora", "Lucia", "Samira",
];
const GIVEN_MALE: &[&str] = &[
    "Tobias", "Kenji", "Marek", "Rafael", "Omar", "Declan", "Ivo", "Felix",
];
const DIAGNOSES: &[(&str, &str)] = &[
    ("G90.50", "Complex regional pain syndrome I, unspecified"),
    (
        "G90.512",
        "Complex regional pain syndrome I of left upper limb",
    ),
    ("M79.7", "Fibromyalgia"),
    ("G89.4", "Chronic pain syndrome"),
    ("G56.41", "Causalgia of right upper limb"),
];

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": unit})
}

fn vital(id: String, patient: &str, at: DateTime<Utc>, code: Value, text: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [coding(CATEGORY, "vital-signs", "Vital Signs")]}],
        "code": {"coding": code, "text": text},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": instant(at),
    })
}

/// A made-up person: sex, names and birth date drawn from the lists.
struct Person {
    female: bool,
    given: &'static str,
    family: &'static str,
    birth_date: String,
}

fn person(
    dice: &mut Dice,
    names: (&[&'static str], &[&'static str], &[&'static str]),
    birth_years: (i64, i64),
) -> Person {
    let (given_female, given_male, families) = names;
    let female = dice.roll().is_multiple_of(2);
    let given = if female {
        *dice.pick(given_female)
    } else {
        *dice.pick(given_male)
    };
    let family = *dice.pick(families);
    let birth_date = format!(
        "{}-{:02}-{:02}",
        dice.between(birth_years.0, birth_years.1),
        dice.between(1, 12),
        dice.between(1, 28)
    );
    Person {
        female,
        given,
        family,
        birth_date,
    }
}

fn body_weight(id: String, patient: &str, at: DateTime<Utc>, kg: f64) -> Value {
    let mut weight = vital(
        id,
        patient,
        at,
        json!([coding(LOINC, "29463-7", "Body weight")]),
        "Body weight",
    );
    weight["valueQuantity"] = quantity(kg, "kg");
    weight
}

fn blood_pressure(
    id: String,
    patient: &str,
    at: DateTime<Utc>,
    systolic: i64,
    diastolic: i64,
) -> Value {
    let mut bp = vital(
        id,
        patient,
        at,
        json!([coding(LOINC, "85354-9", "Blood pressure panel")]),
        "Blood pressure",
    );
    bp["component"] = json!([
        {"code": {"coding": [coding(LOINC, "8480-6", "Systolic blood pressure")]}, "valueQuantity": quantity(systolic as f64, "mm[Hg]")},
        {"code": {"coding": [coding(LOINC, "8462-4", "Diastolic blood pressure")]}, "valueQuantity": quantity(diastolic as f64, "mm[Hg]")}
    ]);
    bp
}

fn heart_rate(id: String, patient: &str, at: DateTime<Utc>, bpm: i64) -> Value {
    let mut heart_rate = vital(
        id,
        patient,
        at,
        json!([coding(LOINC, "8867-4", "Heart rate")]),
        "Heart rate",
    );
    heart_rate["valueQuantity"] = quantity(bpm as f64, "/min");
    heart_rate
}

fn oxygen_saturation(id: String, patient: &str, at: DateTime<Utc>, percent: i64) -> Value {
    let mut spo2 = vital(
        id,
        patient,
        at,
        json!([
            coding(LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
            coding(LOINC, "59408-5", "Oxygen saturation by Pulse oximetry")
        ]),
        "SpO2",
    );
    spo2["valueQuantity"] = quantity(percent as f64, "%");
    spo2
}

/// An IV ketamine infusion of `mg_per_kg` over `start..end` (`minutes` long).
#[allow(clippy::too_many_arguments)]
fn infusion(
    id: &str,
    patient: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    weight_kg: f64,
    mg_per_kg: f64,
    minutes: i64,
    diagnosis: (&str, &str),
) -> Value {
    let dose_mg = (mg_per_kg * weight_kg).round();
    let rate = ((mg_per_kg * 60.0 / minutes as f64) * 100.0).round() / 100.0;
    // The figures the server's safety rules compute and store on every ketamine dosage.
    let computed = safety::dosage_extensions(Some(dose_mg / weight_kg), Some(rate));
    json!({
        "resourceType": "MedicationAdministration",
        "id": id,
        "status": "completed",
        "medicationCodeableConcept": {"coding": [coding(RXNORM, "6130", "ketamine")], "text": "Ketamine IV infusion"},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectivePeriod": {"start": instant(start), "end": instant(end)},
        "reasonCode": [{"coding": [coding(ICD10, diagnosis.0, diagnosis.1)]}],
        "dosage": {
            "text": format!("{mg_per_kg} mg/kg IV over {minutes} min"),
            "route": {"coding": [coding(SNOMED, "47625008", "Intravenous route")]},
            "dose": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"},
            "rateQuantity": quantity(rate, "mg/kg/h"),
            "extension": computed
        }
    })
}

/// An infusion length for `mg_per_kg` that keeps the rate within the clinic's default
/// 0.25-0.75 mg/kg/h and the length within 40-120 minutes.
fn infusion_minutes(dice: &mut Dice, mg_per_kg: f64) -> i64 {
    let shortest = ((mg_per_kg * 60.0 / 0.75).ceil() as i64).max(40);
    let longest = ((mg_per_kg * 60.0 / 0.25).floor() as i64).min(120);
    dice.between(shortest, longest.max(shortest))
}

/// Every resource of the demo clinic, in an order where references point backwards.
pub fn demo_resources() -> Vec<Value> {
    let mut dice = Dice(0x6B65_7461_6D69_6E65);
    let epoch = Utc
        .with_ymd_and_hms(2026, 6, 1, 9, 0, 0)
        .single()
        .expect("valid date");
    let mut all = Vec::new();
    for n in 1..=DEMO_PATIENTS {
        let patient = format!("demo-patient-{n:02}");
        let person = person(&mut dice, (GIVEN_FEMALE, GIVEN_MALE, FAMILY), (1950, 2000));
        all.push(json!({
            "resourceType": "Patient",
            "id": patient,
            "identifier": [{
                "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number")]},
                "system": "urn:oid:2.16.840.1.113883.3.7431.1",
                "value": format!("KC{:06}", 100_000 + n * 37)
            }],
            "active": true,
            "name": [{"use": "official", "family": person.family, "given": [person.given]}],
            "gender": if person.female { "female" } else { "male" },
            "birthDate": person.birth_date,
            "telecom": [{"system": "phone", "value": format!("555-01{:02}", n), "use": "mobile"}],
            "address": [{"line": [format!("{} Demo Street", 10 + n)], "city": "Springfield", "postalCode": format!("{:05}", 10_000 + n)}]
        }));
        let weight_kg = dice.between(52, 110) as f64;
        let series_start =
            epoch + Duration::days(dice.between(0, 120)) + Duration::minutes(30 * n as i64);
        all.push(body_weight(
            format!("{patient}-weight"),
            &patient,
            series_start - Duration::days(3),
            weight_kg,
        ));
        let diagnosis = *dice.pick(DIAGNOSES);
        let infusions = dice.between(4, 6);
        let mut start = series_start;
        let mut last_end = start;
        let mut pain = dice.between(6, 9);
        for i in 1..=infusions {
            let prefix = format!("{patient}-inf{i}");
            let mg_per_kg = dice.between(30, 80) as f64 / 100.0;
            let minutes = infusion_minutes(&mut dice, mg_per_kg);
            let end = start + Duration::minutes(minutes);
            all.extend(vitals(
                &prefix,
                &patient,
                start - Duration::minutes(10),
                "pre",
                &mut dice,
                None,
            ));
            all.push(pain_score(
                format!("{prefix}-pain-pre"),
                &patient,
                start - Duration::minutes(5),
                pain,
            ));
            all.push(infusion(
                &prefix, &patient, start, end, weight_kg, mg_per_kg, minutes, diagnosis,
            ));
            all.extend(vitals(
                &prefix,
                &patient,
                start + Duration::minutes(minutes / 2),
                "intra",
                &mut dice,
                Some(&prefix),
            ));
            all.extend(vitals(
                &prefix,
                &patient,
                end + Duration::minutes(30),
                "post",
                &mut dice,
                None,
            ));
            pain = (pain - dice.between(0, 2)).max(1);
            all.push(pain_score(
                format!("{prefix}-pain-post"),
                &patient,
                end + Duration::minutes(35),
                pain,
            ));
            last_end = end;
            start += Duration::days(dice.between(2, 5));
        }
        all.push(condition(
            &patient,
            diagnosis,
            series_start - Duration::days(60),
        ));
        let phq9 = dice.between(8, 22);
        all.push(phq9_score(
            format!("{patient}-phq9-baseline"),
            &patient,
            series_start - Duration::minutes(15),
            phq9,
        ));
        all.push(phq9_score(
            format!("{patient}-phq9-follow-up"),
            &patient,
            last_end + Duration::minutes(40),
            (phq9 - dice.between(2, 12)).max(0),
        ));
    }
    all
}

/// The diagnosis the series treats, on the problem list since `onset`.
fn condition(patient: &str, diagnosis: (&str, &str), onset: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "Condition",
        "id": format!("{patient}-diagnosis"),
        "clinicalStatus": {"coding": [coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")]},
        "verificationStatus": {"coding": [coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")]},
        "category": [{"coding": [coding("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")]}],
        "code": {"coding": [coding(ICD10, diagnosis.0, diagnosis.1)], "text": diagnosis.1},
        "subject": {"reference": format!("Patient/{patient}")},
        "onsetDateTime": instant(onset)
    })
}

fn vitals(
    prefix: &str,
    patient: &str,
    at: DateTime<Utc>,
    phase: &str,
    dice: &mut Dice,
    during: Option<&str>,
) -> Vec<Value> {
    let bp = blood_pressure(
        format!("{prefix}-bp-{phase}"),
        patient,
        at,
        dice.between(108, 150),
        dice.between(65, 95),
    );
    let heart_rate = heart_rate(
        format!("{prefix}-hr-{phase}"),
        patient,
        at,
        dice.between(58, 98),
    );
    let spo2 = oxygen_saturation(
        format!("{prefix}-spo2-{phase}"),
        patient,
        at,
        dice.between(94, 100),
    );
    let mut all = vec![bp, heart_rate, spo2];
    if let Some(administration) = during {
        for observation in &mut all {
            observation["partOf"] =
                json!([{"reference": format!("MedicationAdministration/{administration}")}]);
        }
    }
    all
}

/// A questionnaire score (category `survey`) with a LOINC code.
fn survey_score(
    id: String,
    patient: &str,
    at: DateTime<Utc>,
    loinc: (&str, &str),
    score: i64,
) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [coding(CATEGORY, "survey", "Survey")]}],
        "code": {"coding": [coding(LOINC, loinc.0, loinc.1)]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": instant(at),
        "valueInteger": score
    })
}

/// Pain severity on the 0–10 numeric rating scale.
fn pain_score(id: String, patient: &str, at: DateTime<Utc>, score: i64) -> Value {
    let code = (
        "72514-3",
        "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
    );
    survey_score(id, patient, at, code, score)
}

/// The PHQ-9 depression total score.
fn phq9_score(id: String, patient: &str, at: DateTime<Utc>, score: i64) -> Value {
    let code = (
        "44261-6",
        "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    );
    survey_score(id, patient, at, code, score)
}

pub struct SeedSummary {
    pub created: usize,
    pub existing: usize,
}

/// Loads the demo clinic; resources that already exist are left as they are.
pub async fn load_demo(pool: &Pool, context: &WriteContext) -> ApiResult<SeedSummary> {
    let mut summary = SeedSummary {
        created: 0,
        existing: 0,
    };
    for resource in demo_resources() {
        let resource_type =
            ResourceType::parse(resource["resourceType"].as_str().unwrap_or_default())?;
        let id = ResourceId::parse(resource["id"].as_str().unwrap_or_default())?;
        let report = validate_resource(
            resource_type.as_str(),
            &resource,
            ValidationOptions::default(),
        );
        if report.has_errors() {
            return Err(crate::error::ApiError::Invalid(report.issues));
        }
        let written = resources::write_version(
            pool,
            &resource_type,
            &id,
            WriteMethod::Update,
            None,
            context,
            |current| {
                Ok(match current {
                    Some(_) => NextContent::Nothing,
                    None => NextContent::Write(resource),
                })
            },
        )
        .await?;
        match written {
            Some(_) => summary.created += 1,
            None => summary.existing += 1,
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_resource_is_valid() {
        let all = demo_resources();
        assert!(all.len() > DEMO_PATIENTS * 40, "{} resources", all.len());
        for resource in &all {
            let resource_type = resource["resourceType"].as_str().unwrap();
            let report = validate_resource(resource_type, resource, ValidationOptions::default());
            assert!(
                !report.has_errors(),
                "{}: {:?}",
                resource["id"],
                report.issues
            );
        }
    }

    #[test]
    fn doses_stay_within_the_clinic_range() {
        for resource in demo_resources()
            .iter()
            .filter(|r| r["resourceType"] == "MedicationAdministration")
        {
            let id = resource["id"].as_str().unwrap();
            let patient = resource["subject"]["reference"]
                .as_str()
                .unwrap()
                .trim_start_matches("Patient/")
                .to_string();
            let weight = demo_resources()
                .into_iter()
                .find(|r| r["id"] == format!("{patient}-weight"))
                .unwrap()["valueQuantity"]["value"]
                .as_f64()
                .unwrap();
            let per_kg = resource["dosage"]["dose"]["value"].as_f64().unwrap() / weight;
            assert!((0.1..=1.0).contains(&per_kg), "{id}: {per_kg} mg/kg");
        }
    }

    #[test]
    fn the_demo_is_deterministic() {
        assert_eq!(demo_resources(), demo_resources());
    }
}
