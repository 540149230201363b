//! The synthetic clinic at scale (`seed --synthetic --patients N`): a deterministic population
//! generated patient by patient (each from its own seed, so any patient can be made alone),
//! validated, and loaded through the bulk path in parallel batches.
//!
//! Most people in a clinic's registry are early in their care: about 40% were seen but not
//! infused yet, 42% had a first infusion, and 18% a full series of 4 to 6. Every patient has
//! an intake weight, pain score and PHQ-9; every infusion its pre-infusion blood pressure,
//! heart rate and pain score, an SpO2 during it (`partOf` the infusion) and a blood
//! pressure after it; a treated patient a follow-up pain score and PHQ-9. That is about ten
//! Observations per patient.

use chrono::{Duration, TimeZone, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use super::{
    DIAGNOSES, Dice, Person, SeedSummary, blood_pressure, body_weight, coding, heart_rate,
    infusion, infusion_minutes, oxygen_saturation, pain_score, person, phq9_score,
};
use crate::error::{ApiError, ApiResult};
use crate::fhir::validation::{ValidationOptions, validate_resource};
use crate::fhir::{ResourceId, ResourceType};
use crate::store::Pool;
use crate::store::bulk::{self, NewResource};
use crate::store::resources::WriteContext;

/// Patients per batch (about 150 resources) and batches in flight at once.
const PATIENTS_PER_BATCH: u64 = 100;
const BATCHES_IN_FLIGHT: usize = 3;
const SEED: u64 = 0x7379_6e74_6865_7469;

const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Smithers",
    "Smithson",
    "Müller",
    "Okafor",
    "Lindqvist",
    "Tanaka",
    "Novak",
    "Haddad",
    "Petrov",
    "Castillo",
];
const GIVEN_FEMALE: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Ada",
    "Maren",
    "Inès",
    "Yuki",
    "Petra",
    "Zoë",
];
const GIVEN_MALE: &[&str] = &[
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Charles", "Tobias", "Kenji", "Marek", "Rafael", "Omar", "José",
];

/// The id of the `n`th synthetic patient (1-based); its resources' ids start with it.
pub fn patient_id(n: u64) -> String {
    format!("syn-{n:07}")
}

/// How many resources the patients `range` hold.
pub fn count_resources(range: std::ops::RangeInclusive<u64>) -> usize {
    range.map(|n| patient_resources(n).len()).sum()
}

/// Every resource of the `n`th synthetic patient, references pointing backwards.
pub fn patient_resources(n: u64) -> Vec<Value> {
    let mut dice = Dice(SEED ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let patient = patient_id(n);
    let mut all = vec![patient_resource(n, &patient, &mut dice)];
    let epoch = Utc
        .with_ymd_and_hms(2025, 1, 6, 8, 0, 0)
        .single()
        .expect("valid date");
    let intake =
        epoch + Duration::days(dice.between(0, 660)) + Duration::minutes(dice.between(0, 540));
    let weight_kg = dice.between(50, 120) as f64;
    all.push(body_weight(
        format!("{patient}-weight"),
        &patient,
        intake,
        weight_kg,
    ));
    let mut pain = dice.between(5, 9);
    let mut phq9 = dice.between(5, 24);
    all.push(pain_score(
        format!("{patient}-pain-intake"),
        &patient,
        intake,
        pain,
    ));
    all.push(phq9_score(
        format!("{patient}-phq9-intake"),
        &patient,
        intake,
        phq9,
    ));

    let infusions = match dice.between(0, 99) {
        0..=39 => 0,
        40..=81 => 1,
        _ => dice.between(4, 6),
    };
    let diagnosis = *dice.pick(DIAGNOSES);
    let mut start = intake + Duration::days(dice.between(3, 14));
    let mut weighed = intake;
    let mut last_end = start;
    for i in 1..=infusions {
        let prefix = format!("{patient}-inf{i}");
        let mg_per_kg = dice.between(30, 80) as f64 / 100.0;
        let minutes = infusion_minutes(&mut dice, mg_per_kg);
        let end = start + Duration::minutes(minutes);
        let before = start - Duration::minutes(10);
        // The safety rules want a weight from the last 30 days and SpO2 before each infusion.
        if start - weighed > Duration::days(25) {
            weighed = start - Duration::minutes(20);
            all.push(body_weight(
                format!("{prefix}-weight"),
                &patient,
                weighed,
                weight_kg,
            ));
        }
        all.push(oxygen_saturation(
            format!("{prefix}-spo2-pre"),
            &patient,
            before,
            dice.between(94, 100),
        ));
        all.push(blood_pressure(
            format!("{prefix}-bp-pre"),
            &patient,
            before,
            dice.between(105, 158),
            dice.between(62, 98),
        ));
        all.push(heart_rate(
            format!("{prefix}-hr-pre"),
            &patient,
            before,
            dice.between(58, 98),
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
        let mut spo2 = oxygen_saturation(
            format!("{prefix}-spo2-intra"),
            &patient,
            start + Duration::minutes(minutes / 2),
            dice.between(93, 100),
        );
        spo2["partOf"] = json!([{"reference": format!("MedicationAdministration/{prefix}")}]);
        all.push(spo2);
        all.push(blood_pressure(
            format!("{prefix}-bp-post"),
            &patient,
            end + Duration::minutes(30),
            dice.between(105, 158),
            dice.between(62, 98),
        ));
        pain = (pain - dice.between(0, 2)).max(0);
        last_end = end;
        start += Duration::days(dice.between(2, 5)) + Duration::minutes(dice.between(-60, 60));
    }
    if infusions > 0 {
        let follow_up = last_end + Duration::days(dice.between(7, 21));
        phq9 = (phq9 - dice.between(0, 10)).max(0);
        all.push(pain_score(
            format!("{patient}-pain-follow-up"),
            &patient,
            follow_up,
            pain,
        ));
        all.push(phq9_score(
            format!("{patient}-phq9-follow-up"),
            &patient,
            follow_up,
            phq9,
        ));
    }
    all
}

fn patient_resource(n: u64, id: &str, dice: &mut Dice) -> Value {
    let Person {
        female,
        given,
        family,
        birth_date: birth,
    } = person(dice, (GIVEN_FEMALE, GIVEN_MALE, FAMILY), (1940, 2005));
    json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{
            "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number")]},
            "system": "urn:oid:2.16.840.1.113883.3.7431.1",
            "value": format!("SYN{n:07}")
        }],
        "active": true,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": if female { "female" } else { "male" },
        "birthDate": birth,
        "telecom": [
            {"system": "phone", "value": format!("555-{:07}", n), "use": "mobile"},
            {"system": "email", "value": format!("{}.{}{n}@example.org", given.to_lowercase(), family.to_lowercase())}
        ],
        "address": [{"line": [format!("{} Synthetic Avenue", dice.between(1, 999))], "city": "Springfield", "postalCode": format!("{:05}", dice.between(10_000, 99_999))}],
        "generalPractitioner": [{"reference": format!("Practitioner/gp-{:03}", n % 250)}]
    })
}

/// The validated resources of patients `first..=last`, ready for the bulk path.
fn batch(first: u64, last: u64) -> ApiResult<Vec<NewResource>> {
    let mut resources = Vec::new();
    for n in first..=last {
        for content in patient_resources(n) {
            let resource_type =
                ResourceType::parse(content["resourceType"].as_str().unwrap_or_default())?;
            let report = validate_resource(
                resource_type.as_str(),
                &content,
                ValidationOptions::default(),
            );
            if report.has_errors() {
                return Err(ApiError::Invalid(report.issues));
            }
            let id = ResourceId::parse(content["id"].as_str().unwrap_or_default())?;
            resources.push(NewResource {
                resource_type,
                id,
                content,
            });
        }
    }
    Ok(resources)
}

/// Loads synthetic patients `1..=patients`; ids already present are left as they are, so a
/// load can be resumed or grown. Batches are generated and indexed on blocking threads while
/// earlier ones are written.
pub async fn load(pool: &Pool, context: &WriteContext, patients: u64) -> ApiResult<SeedSummary> {
    let batches = (0..patients.div_ceil(PATIENTS_PER_BATCH)).map(|index| {
        let first = index * PATIENTS_PER_BATCH + 1;
        (first, (first + PATIENTS_PER_BATCH - 1).min(patients))
    });
    let summary = stream::iter(batches)
        .map(|(first, last)| {
            let context = context.clone();
            async move {
                let prepared = tokio::task::spawn_blocking(move || {
                    batch(first, last).map(|resources| bulk::prepare(resources, &context))
                })
                .await
                .map_err(ApiError::internal)??;
                let offered = prepared.len();
                let created = bulk::write(pool, prepared).await?;
                if last % 10_000 < PATIENTS_PER_BATCH {
                    tracing::info!(patients = last, "synthetic patients loaded");
                }
                Ok::<_, ApiError>((created, offered - created))
            }
        })
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .try_fold(
            SeedSummary {
                created: 0,
                existing: 0,
            },
            |mut summary, (created, existing)| async move {
                summary.created += created;
                summary.existing += existing;
                Ok(summary)
            },
        )
        .await?;
    bulk::analyze(pool).await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_patients_are_valid_deterministic_and_about_twelve_observations_each() {
        let patients = 500;
        let all: Vec<Value> = (1..=patients).flat_map(patient_resources).collect();
        assert_eq!(
            all,
            (1..=patients)
                .flat_map(patient_resources)
                .collect::<Vec<_>>()
        );
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
        let observations = all
            .iter()
            .filter(|r| r["resourceType"] == "Observation")
            .count();
        let per_patient = observations as f64 / patients as f64;
        assert!(
            (10.0..14.0).contains(&per_patient),
            "{per_patient} observations per patient"
        );
        let ids: std::collections::HashSet<&str> =
            all.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), all.len(), "ids are unique");
    }

    #[test]
    fn doses_stay_within_the_clinic_range() {
        for n in 1..=300 {
            let resources = patient_resources(n);
            let weight = resources
                .iter()
                .find(|r| r["id"] == format!("{}-weight", patient_id(n)))
                .unwrap()["valueQuantity"]["value"]
                .as_f64()
                .unwrap();
            for infusion in resources
                .iter()
                .filter(|r| r["resourceType"] == "MedicationAdministration")
            {
                let per_kg = infusion["dosage"]["dose"]["value"].as_f64().unwrap() / weight;
                assert!(
                    (0.1..=1.0).contains(&per_kg),
                    "{}: {per_kg} mg/kg",
                    infusion["id"]
                );
            }
        }
    }
}
