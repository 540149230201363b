//! `Patient/{id}/$outcomes` and the clinic-level `$outcomes`, against records written
//! through the API (infusions that pass the safety rules: 70 kg, 35 mg over 60 min at
//! 0.5 mg/kg/h, vital signs 10 minutes before each start).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, outcome_diagnostics, patient};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn observation(patient_id: &str, when: DateTime<Utc>, category: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": instant(when)
    })
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": unit})
}

fn score(patient_id: &str, when: DateTime<Utc>, code: &str, value: i64) -> Value {
    let mut score = observation(patient_id, when, "survey", code);
    score["valueInteger"] = json!(value);
    score
}

async fn pain(app: &TestApp, patient_id: &str, when: &str, value: i64) -> Value {
    app.create(&score(patient_id, at(when), "72514-3", value))
        .await
}

async fn phq9(app: &TestApp, patient_id: &str, when: &str, value: i64) {
    app.create(&score(patient_id, at(when), "44261-6", value))
        .await;
}

async fn weight(app: &TestApp, patient_id: &str, when: &str) {
    let mut weight = observation(patient_id, at(when), "vital-signs", "29463-7");
    weight["valueQuantity"] = quantity(70.0, "kg");
    app.create(&weight).await;
}

/// Blood pressure 120/80, heart rate 70 and SpO2 98, 10 minutes before `start`, then the
/// infusion: 35 mg over 60 minutes.
async fn infusion(app: &TestApp, patient_id: &str, start: &str, status: &str) {
    let ketamine = json!({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "6130", "display": "ketamine"}]}});
    infusion_of(app, patient_id, start, status, ketamine).await;
}

/// `infusion` of the medication named by `medication` (a `medication[x]` element); returns
/// the stored administration.
async fn infusion_of(
    app: &TestApp,
    patient_id: &str,
    start: &str,
    status: &str,
    medication: Value,
) -> Value {
    let start = at(start);
    let before = start - Duration::minutes(10);
    let mut bp = observation(patient_id, before, "vital-signs", "85354-9");
    bp["component"] = json!([
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(120.0, "mm[Hg]")},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": quantity(80.0, "mm[Hg]")}
    ]);
    app.create(&bp).await;
    let mut hr = observation(patient_id, before, "vital-signs", "8867-4");
    hr["valueQuantity"] = quantity(70.0, "/min");
    app.create(&hr).await;
    let mut spo2 = observation(patient_id, before, "vital-signs", "59408-5");
    spo2["valueQuantity"] = quantity(98.0, "%");
    app.create(&spo2).await;
    let mut administration = json!({
        "resourceType": "MedicationAdministration",
        "status": status,
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectivePeriod": {"start": instant(start), "end": instant(start + Duration::minutes(60))},
        "dosage": {
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
            "dose": quantity(35.0, "mg"),
            "rateQuantity": quantity(0.5, "mg/kg/h")
        }
    });
    administration
        .as_object_mut()
        .unwrap()
        .extend(medication.as_object().unwrap().clone());
    app.create(&administration).await
}

async fn new_patient(app: &TestApp) -> String {
    app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Pain 8 before the first of three infusions (3-7 March), 3 on 20 March: 62.5%,
/// substantial. PHQ-9 16 then 6. An infusion entered in error on 9 March is not counted.
async fn responder(app: &TestApp) -> String {
    let id = new_patient(app).await;
    weight(app, &id, "2026-03-01T08:00:00Z").await;
    pain(app, &id, "2026-02-20T08:00:00Z", 9).await;
    phq9(app, &id, "2026-03-01T08:00:00Z", 16).await;
    pain(app, &id, "2026-03-02T09:50:00Z", 8).await;
    infusion(app, &id, "2026-03-02T10:00:00Z", "completed").await;
    pain(app, &id, "2026-03-04T09:50:00Z", 7).await;
    infusion(app, &id, "2026-03-04T10:00:00Z", "completed").await;
    pain(app, &id, "2026-03-06T09:50:00Z", 5).await;
    infusion(app, &id, "2026-03-06T10:00:00Z", "completed").await;
    infusion(app, &id, "2026-03-09T10:00:00Z", "entered-in-error").await;
    pain(app, &id, "2026-03-20T10:00:00Z", 3).await;
    phq9(app, &id, "2026-03-20T10:00:00Z", 6).await;
    id
}

/// One infusion with the pre-infusion score `before` and a follow-up `after`.
async fn treated_once(app: &TestApp, start: &str, before: i64, follow_up: &str, after: i64) {
    let id = new_patient(app).await;
    let start_at = at(start);
    weight(app, &id, &instant(start_at - Duration::days(1))).await;
    pain(app, &id, &instant(start_at - Duration::minutes(5)), before).await;
    infusion(app, &id, start, "completed").await;
    pain(app, &id, follow_up, after).await;
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> Option<&'a Value> {
    let found: Vec<&Value> = parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .collect();
    assert!(found.len() <= 1, "{name} twice in {parameters}");
    found.first().copied()
}

/// The one value[x] of a parameter, as `{"valueX": ...}`.
fn value(parameters: &Value, name: &str) -> Value {
    let mut entry = parameter(parameters, name)
        .unwrap_or_else(|| panic!("no {name} in {parameters}"))
        .clone();
    entry.as_object_mut().unwrap().remove("name");
    entry
}

#[tokio::test]
async fn patient_outcomes_report_the_change_from_the_series_baseline() {
    let app = TestApp::spawn().await;
    let id = responder(&app).await;
    let response = app.get(&format!("Patient/{id}/$outcomes")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let body = json(response).await;
    assert_eq!(body["resourceType"], "Parameters");
    let expected = [
        (
            "patient",
            json!({"valueReference": {"reference": format!("Patient/{id}")}}),
        ),
        ("pain-baseline", json!({"valueDecimal": 8.0})),
        (
            "pain-baseline-date",
            json!({"valueDateTime": "2026-03-02T09:50:00.000Z"}),
        ),
        ("pain-latest", json!({"valueDecimal": 3.0})),
        (
            "pain-latest-date",
            json!({"valueDateTime": "2026-03-20T10:00:00.000Z"}),
        ),
        ("pain-absolute-change", json!({"valueDecimal": 5.0})),
        ("pain-percent-change", json!({"valueDecimal": 62.5})),
        ("pain-response", json!({"valueCode": "substantial"})),
        ("phq9-baseline", json!({"valueDecimal": 16.0})),
        (
            "phq9-baseline-date",
            json!({"valueDateTime": "2026-03-01T08:00:00.000Z"}),
        ),
        ("phq9-latest", json!({"valueDecimal": 6.0})),
        (
            "phq9-latest-date",
            json!({"valueDateTime": "2026-03-20T10:00:00.000Z"}),
        ),
        ("phq9-absolute-change", json!({"valueDecimal": 10.0})),
        ("phq9-percent-change", json!({"valueDecimal": 62.5})),
        ("phq9-response", json!({"valueBoolean": true})),
        ("phq9-remission", json!({"valueBoolean": false})),
        ("infusions-given", json!({"valueInteger": 3})),
        ("series-count", json!({"valueInteger": 1})),
        (
            "cumulative-dose",
            json!({"valueQuantity": {"value": 105.0, "unit": "mg", "system": UCUM, "code": "mg"}}),
        ),
    ];
    for (name, expected) in &expected {
        assert_eq!(&value(&body, name), expected, "{name}");
    }
    let days = (Utc::now() - at("2026-03-06T10:00:00Z")).num_days();
    assert_eq!(
        value(&body, "days-since-last-infusion"),
        json!({"valueInteger": days})
    );
    // No PEG recorded: nothing about it.
    assert!(parameter(&body, "peg-baseline").is_none());
    assert_eq!(
        body["parameter"].as_array().unwrap().len(),
        expected.len() + 1,
        "{body}"
    );
}

#[tokio::test]
async fn patient_outcomes_of_an_untreated_patient_leave_pain_out() {
    let app = TestApp::spawn().await;
    let id = new_patient(&app).await;
    pain(&app, &id, "2026-03-01T08:00:00Z", 6).await;
    let body = json(app.get(&format!("Patient/{id}/$outcomes")).await).await;
    assert!(parameter(&body, "pain-baseline").is_none(), "{body}");
    assert!(parameter(&body, "days-since-last-infusion").is_none());
    assert_eq!(value(&body, "infusions-given"), json!({"valueInteger": 0}));
    assert_eq!(value(&body, "series-count"), json!({"valueInteger": 0}));
}

#[tokio::test]
async fn patient_outcomes_of_an_unknown_patient_are_404() {
    let app = TestApp::spawn().await;
    let response = app.get("Patient/no-such-patient/$outcomes").await;
    assert_eq!(response.status(), 404);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics[0].contains("Patient/no-such-patient"),
        "{diagnostics:?}"
    );
}

#[tokio::test]
async fn a_patient_token_reaches_only_its_own_outcomes() {
    let app = TestApp::spawn().await;
    let mine = new_patient(&app).await;
    let other = new_patient(&app).await;
    let token = app.token_for("patient/*.rs", Some(&mine));
    let response = app
        .get_as(&token, &format!("Patient/{other}/$outcomes"))
        .await;
    assert_eq!(response.status(), 403);
    outcome_diagnostics(&json(response).await);
    let response = app
        .get_as(&token, &format!("Patient/{mine}/$outcomes"))
        .await;
    assert_eq!(response.status(), 200);
    // And the clinic's figures are not for patient tokens.
    let response = app.get_as(&token, "$outcomes").await;
    assert_eq!(response.status(), 403);
    outcome_diagnostics(&json(response).await);
}

#[tokio::test]
async fn clinic_outcomes_count_responders_among_the_patients_treated_in_the_range() {
    let app = TestApp::spawn().await;
    // 62.5%: a responder at 30% and 50%.
    responder(&app).await;
    // 6 -> 5, 16.7%: not a responder.
    treated_once(&app, "2026-04-01T10:00:00Z", 6, "2026-04-10T10:00:00Z", 5).await;
    // 10 -> 7, exactly 30%: a responder at 30%, not at 50%.
    treated_once(&app, "2026-05-05T10:00:00Z", 10, "2026-05-20T10:00:00Z", 7).await;
    // 9 -> 1, 88.9%, but treated in 2025: outside the range.
    treated_once(&app, "2025-10-01T10:00:00Z", 9, "2025-10-15T10:00:00Z", 1).await;
    // Only an infusion entered in error: never treated.
    let never = new_patient(&app).await;
    weight(&app, &never, "2026-04-01T08:00:00Z").await;
    pain(&app, &never, "2026-04-02T09:55:00Z", 8).await;
    infusion(&app, &never, "2026-04-02T10:00:00Z", "entered-in-error").await;
    pain(&app, &never, "2026-04-20T10:00:00Z", 1).await;

    let response = app.get("$outcomes?start=2026-01-01&end=2026-06-30").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let body = json(response).await;
    assert_eq!(body["resourceType"], "Parameters");
    let expected = [
        ("patients-treated", json!({"valueInteger": 3})),
        ("patients-with-follow-up", json!({"valueInteger": 3})),
        ("patients-evaluable", json!({"valueInteger": 3})),
        ("responders-30", json!({"valueInteger": 2})),
        ("responders-50", json!({"valueInteger": 1})),
        ("responder-rate-30", json!({"valueDecimal": 66.7})),
        ("responder-rate-50", json!({"valueDecimal": 33.3})),
        // (62.5 + 16.67 + 30) / 3
        ("mean-percent-change", json!({"valueDecimal": 36.4})),
        (
            "start",
            json!({"valueDateTime": "2026-01-01T00:00:00.000Z"}),
        ),
        ("end", json!({"valueDateTime": "2026-07-01T00:00:00.000Z"})),
    ];
    for (name, expected) in &expected {
        assert_eq!(&value(&body, name), expected, "{name}");
    }

    // All time: the 2025 patient counts too.
    let body = json(app.get("$outcomes").await).await;
    let expected = [
        ("patients-treated", json!({"valueInteger": 4})),
        ("patients-with-follow-up", json!({"valueInteger": 4})),
        ("responders-30", json!({"valueInteger": 3})),
        ("responders-50", json!({"valueInteger": 2})),
        ("responder-rate-30", json!({"valueDecimal": 75.0})),
        ("responder-rate-50", json!({"valueDecimal": 50.0})),
        // (62.5 + 16.67 + 30 + 88.89) / 4
        ("mean-percent-change", json!({"valueDecimal": 49.5})),
    ];
    for (name, expected) in &expected {
        assert_eq!(&value(&body, name), expected, "all time: {name}");
    }
    assert!(parameter(&body, "start").is_none());

    // Only 2025: one patient, whose baseline is the score before the infusion.
    let body = json(app.get("$outcomes?start=2025-01-01&end=2025-12-31").await).await;
    assert_eq!(value(&body, "patients-treated"), json!({"valueInteger": 1}));
    assert_eq!(
        value(&body, "mean-percent-change"),
        json!({"valueDecimal": 88.9})
    );

    // Nobody treated: counts of 0, no rates.
    let body = json(app.get("$outcomes?start=2024-01-01&end=2024-12-31").await).await;
    assert_eq!(value(&body, "patients-treated"), json!({"valueInteger": 0}));
    assert!(parameter(&body, "responder-rate-30").is_none());
}

/// The clinic's figures, all time, as (treated, with follow-up, responders at 30%, at 50%).
async fn clinic_counts(app: &TestApp) -> (Value, Value, Value, Value) {
    let body = json(app.get("$outcomes").await).await;
    let count = |name: &str| value(&body, name)["valueInteger"].clone();
    (
        count("patients-treated"),
        count("patients-with-follow-up"),
        count("responders-30"),
        count("responders-50"),
    )
}

#[tokio::test]
async fn clinic_outcomes_follow_every_write_of_infusions_and_scores() {
    let app = TestApp::spawn().await;
    // A 100 mg/mL vial, named through a Medication: ketamine by its product code.
    let vial = app
        .create(&json!({"resourceType": "Medication", "code": {"coding": [{"system": RXNORM, "code": "238083"}]}}))
        .await;
    let id = new_patient(&app).await;
    weight(&app, &id, "2026-04-01T08:00:00Z").await;
    pain(&app, &id, "2026-04-02T09:55:00Z", 8).await;
    let by_reference = json!({"medicationReference": {"reference": format!("Medication/{}", vial["id"].as_str().unwrap())}});
    let mut given = infusion_of(&app, &id, "2026-04-02T10:00:00Z", "completed", by_reference).await;
    let mut follow_up = pain(&app, &id, "2026-04-20T10:00:00Z", 6).await;
    // 8 -> 6, 25%: treated and followed up, not a responder.
    assert_eq!(
        clinic_counts(&app).await,
        (json!(1), json!(1), json!(0), json!(0))
    );

    // The follow-up corrected to 4 (50%).
    follow_up["status"] = json!("corrected");
    follow_up["valueInteger"] = json!(4);
    let path = format!("Observation/{}", follow_up["id"].as_str().unwrap());
    assert_eq!(app.put(&path, &follow_up).await.status(), 200);
    assert_eq!(
        clinic_counts(&app).await,
        (json!(1), json!(1), json!(1), json!(1))
    );

    // The follow-up deleted: treated, without a follow-up.
    let deleted = app
        .request(reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        clinic_counts(&app).await,
        (json!(1), json!(0), json!(0), json!(0))
    );

    // The infusion marked entered in error: nobody treated.
    given["status"] = json!("entered-in-error");
    let path = format!("MedicationAdministration/{}", given["id"].as_str().unwrap());
    assert_eq!(app.put(&path, &given).await.status(), 200);
    assert_eq!(
        clinic_counts(&app).await,
        (json!(0), json!(0), json!(0), json!(0))
    );
    assert_eq!(
        app.count_rows("clinic_facts").await,
        1,
        "the baseline score only"
    );
}

#[tokio::test]
async fn clinic_outcomes_refuse_malformed_dates() {
    let app = TestApp::spawn().await;
    for query in [
        "start=2026-13-01",
        "end=last-week",
        "start=2026-03-01&end=2026-02-01",
    ] {
        let response = app.get(&format!("$outcomes?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        outcome_diagnostics(&json(response).await);
    }
}
