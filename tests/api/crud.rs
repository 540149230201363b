use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, heart_rate, infusion, json, outcome_diagnostics, patient};

#[tokio::test]
async fn create_assigns_id_version_and_location() {
    let app = TestApp::spawn().await;
    let response = app.post("Patient", &patient()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(response.headers()["etag"], "W/\"1\"");
    assert!(response.headers().contains_key("last-modified"));
    let body = json(response).await;
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("{}/Patient/{id}/_history/1", app.base));
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["name"], patient()["name"]);
    assert_eq!(app.count_rows("resources").await, 1);
}

#[tokio::test]
async fn read_returns_exactly_what_was_sent_plus_meta() {
    let app = TestApp::spawn().await;
    let mut sent = infusion("p1");
    // Not given, so the safety rules neither check nor annotate it: stored as sent.
    sent["status"] = json!("not-done");
    sent.as_object_mut().unwrap().remove("extension");
    sent["extension"] = json!([{"url": "http://clinic.example/fhir/StructureDefinition/mg-per-kg", "valueDecimal": 0.5}]);
    sent["note"] = json!([{"text": "Tolerated well; mild dissociation ✓"}]);
    // Decimal precision is meaning in FHIR: 35.250 and 0.50 must come back as written.
    let text = sent
        .to_string()
        .replace("\"valueDecimal\":0.5", "\"valueDecimal\":0.50")
        .replace("\"value\":35", "\"value\":35.250");
    assert!(text.contains("0.50") && text.contains("35.250"));
    let response = app
        .request(Method::POST, "MedicationAdministration")
        .header("Content-Type", "application/fhir+json")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = json(response).await["id"].as_str().unwrap().to_string();
    let read_text = app
        .get(&format!("MedicationAdministration/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let read: Value = serde_json::from_str(&read_text).unwrap();
    assert_eq!(
        read["extension"][0]["valueDecimal"].to_string(),
        "0.50",
        "{read_text}"
    );
    assert_eq!(
        read["dosage"]["dose"]["value"].to_string(),
        "35.250",
        "{read_text}"
    );
    let mut expected: Value = serde_json::from_str(&text).unwrap();
    expected["id"] = json!(id);
    expected["meta"] = read["meta"].clone();
    assert_eq!(read, expected);
}

#[tokio::test]
async fn update_makes_version_two_and_vread_keeps_version_one() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let id = created["id"].as_str().unwrap();
    let mut changed = created.clone();
    changed["gender"] = json!("other");
    let response = app.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "W/\"2\"");
    let v1 = json(app.get(&format!("Patient/{id}/_history/1")).await).await;
    let v2 = json(app.get(&format!("Patient/{id}/_history/2")).await).await;
    assert_eq!(v1["gender"], "female");
    assert_eq!(v2["gender"], "other");
    assert_eq!(v2["meta"]["versionId"], "2");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/3")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn update_as_create_with_client_id_is_201() {
    let app = TestApp::spawn().await;
    let mut body = patient();
    body["id"] = json!("mrn-42");
    let response = app.put("Patient/mrn-42", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("{}/Patient/mrn-42/_history/1", app.base)
    );
    assert_eq!(
        json(app.get("Patient/mrn-42").await).await["meta"]["versionId"],
        "1"
    );
}

#[tokio::test]
async fn put_with_mismatched_or_missing_body_id_is_400_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut body = patient();
    body["id"] = json!("other");
    let response = app.put("Patient/mine", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(diagnostics[0].contains("does not match"), "{diagnostics:?}");
    let response = app.put("Patient/mine", &patient()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count_rows("resources").await, 0);
}

#[tokio::test]
async fn stale_if_match_is_412_and_current_if_match_succeeds() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("Patient/{id}");
    let first = app
        .request(Method::PUT, &path)
        .header("Content-Type", "application/fhir+json")
        .header("If-Match", "W/\"1\"")
        .body(created.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let stale = app
        .request(Method::PUT, &path)
        .header("Content-Type", "application/fhir+json")
        .header("If-Match", "W/\"1\"")
        .body(created.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let diagnostics = outcome_diagnostics(&json(stale).await);
    assert!(
        diagnostics[0].contains("current version is 2"),
        "{diagnostics:?}"
    );
    assert_eq!(app.count_rows("resource_versions").await, 2);
}

#[tokio::test]
async fn if_none_match_on_current_version_is_304() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let response = app
        .request(Method::GET, &path)
        .header("If-None-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = app
        .request(Method::GET, &path)
        .header("If-None-Match", "W/\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn delete_is_soft_read_gives_410_and_history_keeps_it() {
    let app = TestApp::spawn().await;
    let created = app.create(&heart_rate("p1", 72)).await;
    let path = format!("Observation/{}", created["id"].as_str().unwrap());
    let response = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let gone = app.get(&path).await;
    assert_eq!(gone.status(), StatusCode::GONE);
    assert_eq!(json(gone).await["issue"][0]["code"], "deleted");
    let history = json(app.get(&format!("{path}/_history")).await).await;
    assert_eq!(history["total"], 2);
    assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
    assert!(history["entry"][0].get("resource").is_none());
    assert_eq!(
        history["entry"][1]["resource"]["valueQuantity"]["value"],
        72
    );
    // Deleting again changes nothing.
    let again = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.count_rows("resource_versions").await, 2);
}

#[tokio::test]
async fn read_of_unknown_id_is_404_operation_outcome() {
    let app = TestApp::spawn().await;
    let response = app.get("Patient/does-not-exist").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = json(response).await;
    assert_eq!(body["issue"][0]["code"], "not-found");
}

#[tokio::test]
async fn json_patch_changes_one_element_and_bumps_the_version() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let patch = json!([{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/active", "value": true}]);
    let response = app
        .request(Method::PATCH, &path)
        .header("Content-Type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["gender"], "male");
    assert_eq!(body["active"], true);
    assert_eq!(body["meta"]["versionId"], "2");
}

#[tokio::test]
async fn json_patch_producing_an_invalid_resource_is_refused_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let patch = json!([{"op": "replace", "path": "/gender", "value": "robot"}]);
    let response = app
        .request(Method::PATCH, &path)
        .header("Content-Type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(outcome_diagnostics(&json(response).await)[0].contains("'robot'"));
    assert_eq!(json(app.get(&path).await).await["gender"], "female");
    assert_eq!(app.count_rows("resource_versions").await, 1);
}

#[tokio::test]
async fn prefer_return_minimal_and_operation_outcome() {
    let app = TestApp::spawn().await;
    let minimal = app
        .request(Method::POST, "Patient")
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "return=minimal")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), StatusCode::CREATED);
    assert!(minimal.headers().contains_key("location"));
    assert_eq!(minimal.text().await.unwrap(), "");
    let outcome = app
        .request(Method::POST, "Patient")
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "return=OperationOutcome")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(outcome.status(), StatusCode::CREATED);
    let body = json(outcome).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "information");
}

#[tokio::test]
async fn concurrent_updates_of_one_resource_get_each_version_exactly_once() {
    let app = TestApp::spawn().await;
    let mut body = patient();
    body["id"] = json!("busy");
    assert_eq!(
        app.put("Patient/busy", &body).await.status(),
        StatusCode::CREATED
    );
    const WRITERS: usize = 24;
    let mut handles = Vec::new();
    for n in 0..WRITERS {
        let client = app.client.clone();
        let url = format!("{}/Patient/busy", app.base);
        let token = app.token.clone();
        let mut body = body.clone();
        body["telecom"] = json!([{"system": "phone", "value": format!("555-{n:04}")}]);
        handles.push(tokio::spawn(async move {
            let response = client
                .put(url)
                .bearer_auth(token)
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let stored: Value = response.json().await.unwrap();
            stored["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        }));
    }
    let mut versions = Vec::new();
    for handle in handles {
        versions.push(handle.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=WRITERS + 1).collect::<Vec<_>>());
    let history = json(app.get("Patient/busy/_history?_count=100").await).await;
    assert_eq!(history["total"], WRITERS as i64 + 1);
    assert_eq!(
        app.count_rows("resource_versions").await,
        WRITERS as i64 + 1
    );
}
