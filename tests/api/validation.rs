use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    TestApp, heart_rate, infusion, issue_expressions, json, outcome_diagnostics, patient,
};

#[tokio::test]
async fn every_validation_issue_is_listed_with_its_path() {
    let app = TestApp::spawn().await;
    let mut bad = patient();
    bad["gender"] = json!("mail");
    bad["birthDate"] = json!("1975-02-30");
    bad["nickname"] = json!("Ace");
    let response = app.post("Patient", &bad).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json(response).await;
    let expressions = issue_expressions(&body);
    assert_eq!(expressions.len(), 3, "{body}");
    assert!(expressions.contains(&"Patient.gender"));
    assert!(expressions.contains(&"Patient.birthDate"));
    assert!(expressions.contains(&"Patient.nickname"));
    assert_eq!(app.count_rows("resources").await, 0);
}

#[tokio::test]
async fn resource_type_must_match_the_endpoint() {
    let app = TestApp::spawn().await;
    let response = app.post("Observation", &patient()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(outcome_diagnostics(&json(response).await)[0].contains("resourceType is 'Patient'"));
}

#[tokio::test]
async fn lenient_handling_accepts_and_reports_unknown_elements() {
    let app = TestApp::spawn().await;
    let mut body = patient();
    body["nickname"] = json!("Ace");
    let response = app
        .request(Method::POST, "Patient")
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "handling=lenient, return=OperationOutcome")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let outcome = json(response).await;
    assert_eq!(outcome["issue"][0]["severity"], "warning");
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.nickname");
}

#[tokio::test]
async fn medication_administration_without_dose_or_rate_fails_mad_1() {
    let app = TestApp::spawn().await;
    let mut body = infusion("p1");
    body["dosage"] = json!({"text": "as directed"});
    let response = app.post("MedicationAdministration", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics.iter().any(|d| d.contains("mad-1")),
        "{diagnostics:?}"
    );
}

#[tokio::test]
async fn observation_with_value_and_data_absent_reason_fails_obs_6() {
    let app = TestApp::spawn().await;
    let mut body = heart_rate("p1", 80);
    body["dataAbsentReason"] = json!({"text": "not measured"});
    let response = app.post("Observation", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics.iter().any(|d| d.contains("obs-6")),
        "{diagnostics:?}"
    );
}

#[tokio::test]
async fn missing_required_status_and_wrong_types_are_reported_together() {
    let app = TestApp::spawn().await;
    let mut body = heart_rate("p1", 80);
    body.as_object_mut().unwrap().remove("status");
    body["valueQuantity"]["value"] = json!("eighty");
    let response = app.post("Observation", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json(response).await;
    let expressions = issue_expressions(&body);
    assert!(expressions.contains(&"Observation.status"), "{body}");
    assert!(
        expressions.contains(&"Observation.valueQuantity.value"),
        "{body}"
    );
}

#[tokio::test]
async fn vital_signs_without_ucum_unit_are_422() {
    let app = TestApp::spawn().await;
    let mut body = heart_rate("p1", 80);
    body["valueQuantity"] = json!({"value": 80, "unit": "beats"});
    let response = app.post("Observation", &body).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics[0].contains("Vital signs profile"),
        "{diagnostics:?}"
    );
    assert_eq!(app.count_rows("resources").await, 0);
}

#[tokio::test]
async fn blood_pressure_panel_needs_both_components() {
    let app = TestApp::spawn().await;
    let mut body = heart_rate("p1", 80);
    body["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "85354-9"}]});
    body.as_object_mut().unwrap().remove("valueQuantity");
    body["component"] = json!([{
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueQuantity": {"value": 150, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    }]);
    let response = app.post("Observation", &body).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics.iter().any(|d| d.contains("diastolic")),
        "{diagnostics:?}"
    );
}
