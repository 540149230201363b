//! Infusion safety rules: each at, just inside and just outside its limit (defaults of
//! config/clinic.toml), every failure listed with its figures, nothing stored on refusal,
//! the documented override, and `$validate` running the same checks without storing.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, outcome_diagnostics, patient};

const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";
const DOSE_PER_KG: &str = "https://ketamine-fhir.example.org/fhir/StructureDefinition/dose-per-kg";
const RATE_PER_KG: &str = "https://ketamine-fhir.example.org/fhir/StructureDefinition/rate-per-kg";
const OVERRIDE: &str = "https://ketamine-fhir.example.org/fhir/StructureDefinition/safety-override";
const OVERRIDDEN: &str =
    "https://ketamine-fhir.example.org/fhir/StructureDefinition/safety-overridden-rule";

fn start() -> DateTime<Utc> {
    "2026-11-20T10:00:00Z".parse().unwrap()
}

pub fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn vital(patient: &str, code: &str, time: DateTime<Utc>, value: f64, unit: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at(time),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}
    })
}

pub fn blood_pressure(patient: &str, time: DateTime<Utc>, systolic: f64, diastolic: f64) -> Value {
    let component = |code: &str, value: f64| {
        json!({"code": {"coding": [{"system": LOINC, "code": code}]},
               "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}})
    };
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at(time),
        "component": [component("8480-6", systolic), component("8462-4", diastolic)]
    })
}

/// What a case puts on record before the infusion; `Clinic::safe()` passes every rule.
#[derive(Clone)]
struct Clinic {
    weight_kg: Option<f64>,
    weight_age: Duration,
    vitals_age: Duration,
    systolic: f64,
    diastolic: f64,
    heart_rate: f64,
    spo2: f64,
}

impl Clinic {
    fn safe() -> Self {
        Clinic {
            weight_kg: Some(70.0),
            weight_age: Duration::days(1),
            vitals_age: Duration::minutes(10),
            systolic: 128.0,
            diastolic: 82.0,
            heart_rate: 72.0,
            spo2: 98.0,
        }
    }

    /// Creates a patient with this record; returns the patient id.
    async fn patient(&self, app: &TestApp) -> String {
        let id = app.create(&patient()).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        if let Some(kg) = self.weight_kg {
            app.create(&vital(&id, "29463-7", start() - self.weight_age, kg, "kg"))
                .await;
        }
        let taken = start() - self.vitals_age;
        app.create(&blood_pressure(&id, taken, self.systolic, self.diastolic))
            .await;
        app.create(&vital(&id, "8867-4", taken, self.heart_rate, "/min"))
            .await;
        app.create(&vital(&id, "59408-5", taken, self.spo2, "%"))
            .await;
        id
    }
}

/// A completed IV ketamine infusion of `dose_mg` over `minutes` starting at `begin`.
pub fn infusion(patient: &str, begin: DateTime<Utc>, dose_mg: f64, minutes: i64) -> Value {
    json!({
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectivePeriod": {"start": at(begin), "end": at(begin + Duration::minutes(minutes))},
        "dosage": {
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
            "dose": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}
        }
    })
}

pub fn with_rate(mut administration: Value, rate: f64) -> Value {
    administration["dosage"]["rateQuantity"] =
        json!({"value": rate, "unit": "mg/kg/h", "system": UCUM, "code": "mg/kg/h"});
    administration
}

/// Posts the administration; returns the status and the safety diagnostics (empty on 201).
async fn attempt(app: &TestApp, administration: &Value) -> (StatusCode, Vec<String>) {
    let before = app.count_rows("resource_versions").await;
    let response = app.post("MedicationAdministration", administration).await;
    let status = response.status();
    let body = json(response).await;
    if status == StatusCode::CREATED {
        return (status, Vec::new());
    }
    assert_eq!(
        app.count_rows("resource_versions").await,
        before,
        "a refused write stored something"
    );
    (status, outcome_diagnostics(&body))
}

/// Asserts a case passes (`None`) or fails with exactly this one safety diagnostic.
async fn expect(app: &TestApp, administration: &Value, failure: Option<&str>) {
    let (status, diagnostics) = attempt(app, administration).await;
    match failure {
        None => assert_eq!(status, StatusCode::CREATED, "{diagnostics:?}"),
        Some(text) => {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{administration}");
            assert_eq!(diagnostics, [text.to_string()]);
        }
    }
}

fn rule(name: &str, text: &str) -> String {
    format!("Infusion safety rule {name}: {text}")
}

#[tokio::test]
async fn a_safe_infusion_is_stored_with_its_computed_dose_and_rate_per_kg() {
    let app = TestApp::spawn().await;
    let patient = Clinic::safe().patient(&app).await;
    let stored = app.create(&infusion(&patient, start(), 35.0, 60)).await;
    let extensions = stored["dosage"]["extension"].as_array().unwrap();
    assert_eq!(extensions.len(), 2, "{stored}");
    assert_eq!(extensions[0]["url"], DOSE_PER_KG);
    assert_eq!(
        extensions[0]["valueQuantity"],
        json!({"value": 0.5, "unit": "mg/kg", "system": UCUM, "code": "mg/kg"})
    );
    assert_eq!(extensions[1]["url"], RATE_PER_KG);
    assert_eq!(extensions[1]["valueQuantity"]["value"], 0.5);
    assert_eq!(extensions[1]["valueQuantity"]["code"], "mg/kg/h");
    let read = json(
        app.get(&format!(
            "MedicationAdministration/{}",
            stored["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(read, stored);
}

#[tokio::test]
async fn dose_per_kg_limits() {
    let app = TestApp::spawn().await;
    // 70 kg over 100 minutes keeps the rate inside 0.25-0.75 mg/kg/h for doses near 1 mg/kg.
    let cases: [(f64, i64, Option<&str>); 6] = [
        (70.0, 100, None), // 1.0 mg/kg: at the limit
        (69.3, 100, None), // 0.99: just inside
        (70.7, 100, Some("dose 1.01 mg/kg exceeds 1 mg/kg")),
        (7.0, 40, None), // 0.1 at the lower limit... rate 0.15 is checked separately below
        (6.3, 40, Some("dose 0.09 mg/kg is below 0.1 mg/kg")),
        (98.0, 112, Some("dose 1.4 mg/kg exceeds 1 mg/kg")),
    ];
    for (dose, minutes, failure) in cases {
        let patient = Clinic::safe().patient(&app).await;
        // A rate inside its range, so only the dose rule is under test.
        let administration = with_rate(infusion(&patient, start(), dose, minutes), 0.5);
        expect(
            &app,
            &administration,
            failure.map(|t| rule("dose-range", t)).as_deref(),
        )
        .await;
    }
}

#[tokio::test]
async fn rate_and_duration_limits() {
    let app = TestApp::spawn().await;
    type Case = (Option<f64>, i64, Option<(&'static str, &'static str)>);
    let cases: [Case; 8] = [
        (Some(0.75), 60, None),
        (Some(0.74), 60, None),
        (
            Some(0.76),
            60,
            Some(("rate-range", "rate 0.76 mg/kg/h exceeds 0.75 mg/kg/h")),
        ),
        (Some(0.25), 60, None),
        (
            Some(0.24),
            60,
            Some(("rate-range", "rate 0.24 mg/kg/h is below 0.25 mg/kg/h")),
        ),
        (Some(0.5), 40, None),
        (
            Some(0.5),
            39,
            Some((
                "duration-range",
                "infusion of 39 minutes is shorter than 40 minutes",
            )),
        ),
        (
            Some(0.5),
            121,
            Some((
                "duration-range",
                "infusion of 121 minutes is longer than 120 minutes",
            )),
        ),
    ];
    for (rate, minutes, failure) in cases {
        let patient = Clinic::safe().patient(&app).await;
        let mut administration = infusion(&patient, start(), 35.0, minutes);
        if let Some(rate) = rate {
            administration = with_rate(administration, rate);
        }
        let failure = failure.map(|(name, text)| rule(name, text));
        expect(&app, &administration, failure.as_deref()).await;
    }
    // Without a recorded rate, it is the dose over the length: 35 mg / 70 kg over 30 min = 1 mg/kg/h.
    let patient = Clinic::safe().patient(&app).await;
    let (status, diagnostics) = attempt(&app, &infusion(&patient, start(), 35.0, 30)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        diagnostics,
        [
            rule("rate-range", "rate 1 mg/kg/h exceeds 0.75 mg/kg/h"),
            rule(
                "duration-range",
                "infusion of 30 minutes is shorter than 40 minutes"
            ),
        ]
    );
}

#[tokio::test]
async fn body_weight_must_be_recent() {
    let app = TestApp::spawn().await;
    let cases = [
        (Some(Duration::days(30)), None),
        (Some(Duration::days(29)), None),
        (
            Some(Duration::days(31)),
            Some(
                "no body weight recorded in the 30 days before the infusion (the latest, 70 kg, is 31 days old)",
            ),
        ),
        (
            None,
            Some("no body weight recorded in the 30 days before the infusion (none on record)"),
        ),
    ];
    for (age, failure) in cases {
        let clinic = Clinic {
            weight_kg: age.map(|_| 70.0),
            weight_age: age.unwrap_or_default(),
            ..Clinic::safe()
        };
        let patient = clinic.patient(&app).await;
        let administration = with_rate(infusion(&patient, start(), 35.0, 60), 0.5);
        expect(
            &app,
            &administration,
            failure.map(|t| rule("weight-recorded", t)).as_deref(),
        )
        .await;
    }
}

#[tokio::test]
async fn pre_infusion_vitals_limits() {
    let app = TestApp::spawn().await;
    let bp_hold = |s: f64, d: f64| {
        rule(
            "pre-blood-pressure",
            &format!(
                "pre-infusion blood pressure {s}/{d} mm[Hg] is at or above the hold limit 160/100 mm[Hg]"
            ),
        )
    };
    let cases: Vec<(Clinic, Vec<String>)> = vec![
        (
            Clinic {
                systolic: 159.0,
                diastolic: 99.0,
                ..Clinic::safe()
            },
            vec![],
        ),
        (
            Clinic {
                systolic: 160.0,
                diastolic: 99.0,
                ..Clinic::safe()
            },
            vec![bp_hold(160.0, 99.0)],
        ),
        (
            Clinic {
                systolic: 159.0,
                diastolic: 100.0,
                ..Clinic::safe()
            },
            vec![bp_hold(159.0, 100.0)],
        ),
        (
            Clinic {
                heart_rate: 50.0,
                ..Clinic::safe()
            },
            vec![],
        ),
        (
            Clinic {
                heart_rate: 49.0,
                ..Clinic::safe()
            },
            vec![rule(
                "pre-heart-rate",
                "pre-infusion heart rate 49 /min is outside 50-120 /min",
            )],
        ),
        (
            Clinic {
                heart_rate: 120.0,
                ..Clinic::safe()
            },
            vec![],
        ),
        (
            Clinic {
                heart_rate: 121.0,
                ..Clinic::safe()
            },
            vec![rule(
                "pre-heart-rate",
                "pre-infusion heart rate 121 /min is outside 50-120 /min",
            )],
        ),
        (
            Clinic {
                spo2: 92.0,
                ..Clinic::safe()
            },
            vec![],
        ),
        (
            Clinic {
                spo2: 91.0,
                ..Clinic::safe()
            },
            vec![rule(
                "pre-spo2",
                "pre-infusion SpO2 91% is below the floor of 92%",
            )],
        ),
        (
            Clinic {
                vitals_age: Duration::hours(2),
                ..Clinic::safe()
            },
            vec![],
        ),
        (
            Clinic {
                vitals_age: Duration::hours(2) + Duration::minutes(1),
                ..Clinic::safe()
            },
            ["blood pressure", "heart rate", "SpO2"]
                .iter()
                .map(|what| {
                    rule(
                        "pre-vitals-recorded",
                        &format!("no pre-infusion {what} recorded in the 2 hours before the start"),
                    )
                })
                .collect(),
        ),
    ];
    for (clinic, failures) in cases {
        let patient = clinic.patient(&app).await;
        let administration = with_rate(infusion(&patient, start(), 35.0, 60), 0.5);
        let (status, diagnostics) = attempt(&app, &administration).await;
        let expected = if failures.is_empty() {
            StatusCode::CREATED
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        assert_eq!((status, diagnostics), (expected, failures));
    }
}

/// Records weight and vitals before `begin`, then an infusion of `dose_mg` (70 kg, 100 min).
pub async fn give(
    app: &TestApp,
    patient: &str,
    begin: DateTime<Utc>,
    dose_mg: f64,
) -> (StatusCode, Vec<String>) {
    let taken = begin - Duration::minutes(10);
    app.create(&vital(
        patient,
        "29463-7",
        begin - Duration::hours(1),
        70.0,
        "kg",
    ))
    .await;
    app.create(&blood_pressure(patient, taken, 120.0, 80.0))
        .await;
    app.create(&vital(patient, "8867-4", taken, 70.0, "/min"))
        .await;
    app.create(&vital(patient, "59408-5", taken, 98.0, "%"))
        .await;
    let minutes = 100;
    let rate = (dose_mg / 70.0) * 60.0 / minutes as f64;
    attempt(
        app,
        &with_rate(
            infusion(patient, begin, dose_mg, minutes),
            (rate * 1000.0).round() / 1000.0,
        ),
    )
    .await
}

#[tokio::test]
async fn interval_series_and_cumulative_dose_limits() {
    let app = TestApp::spawn().await;
    let created = (StatusCode::CREATED, Vec::<String>::new());
    // Interval: 24 h apart passes, 23 h does not (either side of an infusion on record).
    let patient = Clinic::safe().patient(&app).await;
    assert_eq!(give(&app, &patient, start(), 35.0).await, created);
    assert_eq!(
        give(&app, &patient, start() + Duration::hours(24), 35.0).await,
        created
    );
    assert_eq!(
        give(&app, &patient, start() + Duration::hours(47), 35.0).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![rule(
                "infusion-interval",
                "the previous infusion was 23 hours apart; at least 24 hours are required"
            )]
        )
    );
    assert_eq!(
        give(&app, &patient, start() - Duration::hours(23), 35.0).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![rule(
                "infusion-interval",
                "the next infusion is 23 hours apart; at least 24 hours are required"
            )]
        )
    );

    // Series length: six infusions two days apart pass, the seventh does not.
    let patient = Clinic::safe().patient(&app).await;
    for n in 0..6 {
        assert_eq!(
            give(&app, &patient, start() + Duration::days(2 * n), 35.0).await,
            created,
            "infusion {n}"
        );
    }
    assert_eq!(
        give(&app, &patient, start() + Duration::days(12), 35.0).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![rule(
                "series-length",
                "this is infusion 7 of the series; at most 6 are allowed"
            )]
        )
    );
    // More than 14 days later a new series starts: allowed.
    assert_eq!(
        give(&app, &patient, start() + Duration::days(10 + 15), 35.0).await,
        created
    );

    // Series span: infusions 12 days apart stay one series; day 42 is allowed, day 44 is
    // past 6 weeks.
    let patient = Clinic::safe().patient(&app).await;
    for n in 0..4 {
        assert_eq!(
            give(&app, &patient, start() + Duration::days(12 * n), 35.0).await,
            created
        );
    }
    assert_eq!(
        give(&app, &patient, start() + Duration::days(44), 35.0).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![rule(
                "series-duration",
                "the series would span 44 days; at most 6 weeks are allowed"
            )]
        )
    );
    assert_eq!(
        give(&app, &patient, start() + Duration::days(42), 35.0).await,
        created
    );

    // Rolling 7 days: 4.0 mg/kg allowed; 1.0 + 1.0 + 1.0 + 1.0 passes, a fifth 0.5 does not
    // within the same week (and the series total 4.5 is still under 6).
    let patient = Clinic::safe().patient(&app).await;
    for n in 0..4 {
        assert_eq!(
            give(&app, &patient, start() + Duration::hours(36 * n), 70.0).await,
            created,
            "infusion {n}"
        );
    }
    assert_eq!(
        give(&app, &patient, start() + Duration::hours(36 * 4), 35.0).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![rule(
                "cumulative-7-days",
                "cumulative dose over 7 days 4.5 mg/kg exceeds 4 mg/kg"
            )]
        )
    );

    // Series total: five infusions of 1.0 mg/kg three days apart (never more than 3 mg/kg in
    // a week), then a sixth of 1.05 mg/kg takes the series to 6.05, over its 6 mg/kg.
    let patient = Clinic::safe().patient(&app).await;
    for n in 0..5 {
        assert_eq!(
            give(&app, &patient, start() + Duration::days(3 * n), 70.0).await,
            created
        );
    }
    assert_eq!(
        give(&app, &patient, start() + Duration::days(15), 73.5).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![
                rule("dose-range", "dose 1.05 mg/kg exceeds 1 mg/kg"),
                rule(
                    "cumulative-series",
                    "cumulative dose in the series 6.05 mg/kg exceeds 6 mg/kg"
                ),
            ]
        )
    );
}

fn condition(patient: &str, code: &str, status: &str, flagged: bool) -> Value {
    let mut condition = json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}], "text": "Diagnosis"},
        "subject": {"reference": format!("Patient/{patient}")}
    });
    if flagged {
        condition["category"] = json!([{"coding": [{"system": "https://ketamine-fhir.example.org/fhir/CodeSystem/condition-flag", "code": "ketamine-contraindication"}]}]);
    }
    condition
}

#[tokio::test]
async fn active_contraindications_block_and_resolved_ones_do_not() {
    let app = TestApp::spawn().await;
    let cases = [
        ("F20.9", "active", false, true),
        ("F20.9", "resolved", false, false),
        ("I10", "active", false, false),
        ("I10", "active", true, true),
        ("G90.511", "active", false, false),
        ("F11.20", "recurrence", false, true),
    ];
    for (code, status, flagged, blocks) in cases {
        let patient = Clinic::safe().patient(&app).await;
        let stored = app
            .create(&condition(&patient, code, status, flagged))
            .await;
        let administration = with_rate(infusion(&patient, start(), 35.0, 60), 0.5);
        let expected = blocks.then(|| {
            let named = if code == "I10" {
                "Diagnosis".to_string()
            } else {
                format!("{code} (Diagnosis)")
            };
            rule(
                "contraindication",
                &format!(
                    "active condition {named} is a contraindication to ketamine, Condition/{}",
                    stored["id"].as_str().unwrap()
                ),
            )
        });
        expect(&app, &administration, expected.as_deref()).await;
    }
}

#[tokio::test]
async fn every_failed_rule_is_listed_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let clinic = Clinic {
        weight_kg: None,
        systolic: 170.0,
        diastolic: 105.0,
        spo2: 90.0,
        ..Clinic::safe()
    };
    let patient = clinic.patient(&app).await;
    let (status, diagnostics) = attempt(&app, &infusion(&patient, start(), 35.0, 20)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        diagnostics,
        [
            rule(
                "weight-recorded",
                "no body weight recorded in the 30 days before the infusion (none on record)"
            ),
            rule(
                "duration-range",
                "infusion of 20 minutes is shorter than 40 minutes"
            ),
            rule(
                "pre-blood-pressure",
                "pre-infusion blood pressure 170/105 mm[Hg] is at or above the hold limit 160/100 mm[Hg]"
            ),
            rule(
                "pre-spo2",
                "pre-infusion SpO2 90% is below the floor of 92%"
            ),
        ]
    );
    assert_eq!(
        app.count_rows("resources WHERE resource_type = 'MedicationAdministration'")
            .await,
        0
    );
}

fn documented_override(reason: Option<&str>, rules: &[&str]) -> Value {
    let mut parts = vec![
        json!({"url": "practitioner", "valueReference": {"reference": "Practitioner/dr-adeyemi"}}),
    ];
    if let Some(reason) = reason {
        parts.push(json!({"url": "reason", "valueString": reason}));
    }
    parts.extend(rules.iter().map(|r| json!({"url": "rule", "valueCode": r})));
    json!({"url": OVERRIDE, "extension": parts})
}

#[tokio::test]
async fn a_documented_override_lets_a_clinician_proceed_and_is_audited() {
    let app = TestApp::spawn().await;
    let patient = Clinic {
        systolic: 162.0,
        diastolic: 96.0,
        ..Clinic::safe()
    }
    .patient(&app)
    .await;
    let mut administration = with_rate(infusion(&patient, start(), 84.0, 100), 0.72);

    // An override of the dose alone leaves the blood pressure hold in force.
    administration["extension"] = json!([documented_override(
        Some("Titrated up after four infusions without response"),
        &["dose-range"]
    )]);
    let (status, diagnostics) = attempt(&app, &administration).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        diagnostics,
        [rule(
            "pre-blood-pressure",
            "pre-infusion blood pressure 162/96 mm[Hg] is at or above the hold limit 160/100 mm[Hg]"
        )]
    );

    // Without a reason the override is refused.
    administration["extension"] = json!([documented_override(None, &[])]);
    let (status, diagnostics) = attempt(&app, &administration).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        diagnostics[0].contains("needs a 'reason'"),
        "{diagnostics:?}"
    );

    // Naming both rules (or none, meaning all) lets it through; the override is stored,
    // each overridden rule is recorded on the resource and in the audit table.
    administration["extension"] = json!([documented_override(
        Some("BP 162/96 after anxiety; repeat 150/90 verbally confirmed"),
        &["dose-range", "pre-blood-pressure"]
    )]);
    let response = app
        .post_with_headers(
            "MedicationAdministration",
            &administration,
            &[("Prefer", "return=OperationOutcome")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let outcome = outcome_diagnostics(&json(response).await);
    assert_eq!(
        outcome[..2],
        [
            "Infusion safety rule dose-range overridden by Practitioner/dr-adeyemi: dose 1.2 mg/kg exceeds 1 mg/kg".to_string(),
            "Infusion safety rule pre-blood-pressure overridden by Practitioner/dr-adeyemi: pre-infusion blood pressure 162/96 mm[Hg] is at or above the hold limit 160/100 mm[Hg]".to_string(),
        ]
    );
    let stored = json(app.get("MedicationAdministration?status=completed").await).await["entry"][0]
        ["resource"]
        .clone();
    let overridden: Vec<(String, String)> = stored["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["url"] == OVERRIDDEN)
        .map(|e| {
            (
                e["extension"][0]["valueCode"].as_str().unwrap().into(),
                e["extension"][1]["valueString"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        overridden,
        [
            ("dose-range".to_string(), "dose 1.2 mg/kg exceeds 1 mg/kg".to_string()),
            ("pre-blood-pressure".to_string(), "pre-infusion blood pressure 162/96 mm[Hg] is at or above the hold limit 160/100 mm[Hg]".to_string()),
        ]
    );
    assert_eq!(stored["extension"][0]["url"], OVERRIDE);
    assert_eq!(
        app.count_rows(&format!(
            "safety_overrides WHERE patient_id = '{patient}' AND practitioner = 'Practitioner/dr-adeyemi' AND version_id = 1 AND rule IN ('dose-range', 'pre-blood-pressure')"
        ))
        .await,
        2
    );
}

#[tokio::test]
async fn validate_runs_the_same_checks_without_storing() {
    let app = TestApp::spawn().await;
    let patient = Clinic {
        spo2: 91.0,
        ..Clinic::safe()
    }
    .patient(&app)
    .await;
    let administration = with_rate(infusion(&patient, start(), 35.0, 60), 0.5);
    let before = app.count_rows("resource_versions").await;
    let response = app
        .post("MedicationAdministration/$validate", &administration)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    let errors: Vec<&str> = body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| i["diagnostics"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        [rule(
            "pre-spo2",
            "pre-infusion SpO2 91% is below the floor of 92%"
        )]
    );
    assert_eq!(app.count_rows("resource_versions").await, before);

    // A safe one validates with an informational outcome and the figures it computed.
    let patient = Clinic::safe().patient(&app).await;
    let body = json(
        app.post(
            "MedicationAdministration/$validate",
            &with_rate(infusion(&patient, start(), 35.0, 60), 0.5),
        )
        .await,
    )
    .await;
    let severities: Vec<&str> = body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["severity"].as_str().unwrap())
        .collect();
    assert!(!severities.contains(&"error"), "{body}");
    assert!(
        outcome_diagnostics(&body)
            .iter()
            .any(|d| d == "Infusion safety: all rules pass (dose 0.5 mg/kg, rate 0.5 mg/kg/h)"),
        "{body}"
    );

    // Structural problems are reported the same way, still with 200.
    let body = json(
        app.post(
            "MedicationAdministration/$validate",
            &json!({"resourceType": "MedicationAdministration"}),
        )
        .await,
    )
    .await;
    assert!(
        body["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "error")
    );
}

#[tokio::test]
async fn a_product_code_and_an_update_to_completed_are_checked_too() {
    let app = TestApp::spawn().await;
    let patient = Clinic::safe().patient(&app).await;
    let medication = app
        .create(&json!({"resourceType": "Medication", "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "238083"}]}}))
        .await;
    // 100 mg/mL at 0.42 mL/h... 42 mg/h for 70 kg is 0.6 mg/kg/h.
    let mut administration = infusion(&patient, start(), 35.0, 60);
    administration
        .as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    administration["medicationReference"] =
        json!({"reference": format!("Medication/{}", medication["id"].as_str().unwrap())});
    administration["status"] = json!("in-progress");
    administration["effectivePeriod"] = json!({"start": at(start())});
    administration["dosage"]["rateQuantity"] =
        json!({"value": 0.42, "unit": "mL/h", "system": UCUM, "code": "mL/h"});
    let stored = app.create(&administration).await;
    assert_eq!(
        stored["dosage"]["extension"][1]["valueQuantity"]["value"],
        0.6
    );

    // Completing it after 20 minutes is refused; after 60 it is stored.
    let path = format!(
        "MedicationAdministration/{}",
        stored["id"].as_str().unwrap()
    );
    let mut completed = stored.clone();
    completed["status"] = json!("completed");
    completed["effectivePeriod"]["end"] = json!(at(start() + Duration::minutes(20)));
    let response = app.put(&path, &completed).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        [rule(
            "duration-range",
            "infusion of 20 minutes is shorter than 40 minutes"
        )]
    );
    completed["effectivePeriod"]["end"] = json!(at(start() + Duration::minutes(60)));
    assert_eq!(app.put(&path, &completed).await.status(), StatusCode::OK);

    // A note added later changes nothing the rules read: not re-checked, even though the
    // vitals are now older than two hours relative to... the same start (still passing).
    let mut noted = json(app.get(&path).await).await;
    noted["note"] = json!([{"text": "Tolerated well"}]);
    assert_eq!(app.put(&path, &noted).await.status(), StatusCode::OK);
}
