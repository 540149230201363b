use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, json};

#[tokio::test]
async fn capability_statement_lists_each_type_and_its_interactions() {
    let app = TestApp::spawn().await;
    let response = app.get_anonymous("metadata").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let statement = json(response).await;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Patient",
            "Observation",
            "MedicationAdministration",
            "Condition",
            "Encounter",
            "Practitioner",
            "Organization",
            "Medication",
            "MedicationRequest",
            "QuestionnaireResponse",
            "Subscription",
            "Group",
            "Coverage",
            "Claim"
        ]
    );
    let subscription = resources
        .iter()
        .find(|r| r["type"] == "Subscription")
        .unwrap();
    let topics: Vec<&str> = subscription["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["valueCanonical"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        [
            "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/patient-changed",
            "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/observation-recorded",
            "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/infusion-completed"
        ]
    );
    assert_eq!(subscription["operation"][0]["name"], "status");
    assert_eq!(subscription["operation"][1]["name"], "events");
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    assert_eq!(
        patient["operation"],
        serde_json::json!([{"name": "medical-necessity",
                            "definition": "https://ketamine-fhir.example.org/fhir/OperationDefinition/Patient-medical-necessity"},
                           {"name": "everything",
                            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                           {"name": "export",
                            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}])
    );
    for resource in resources {
        let interactions: Vec<&str> = resource["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        assert!(
            interactions.contains(&"create")
                && interactions.contains(&"search-type")
                && interactions.contains(&"patch")
        );
    }
    let expected: [(&str, &[(&str, &str)]); 3] = [
        (
            "Patient",
            &[
                ("_id", "token"),
                ("_lastUpdated", "date"),
                ("_tag", "token"),
                ("_profile", "uri"),
                ("_security", "token"),
                ("identifier", "token"),
                ("name", "string"),
                ("family", "string"),
                ("given", "string"),
                ("birthdate", "date"),
                ("gender", "token"),
                ("telecom", "token"),
                ("phone", "token"),
                ("email", "token"),
                ("address", "string"),
                ("address-postalcode", "string"),
                ("general-practitioner", "reference"),
                ("active", "token"),
            ],
        ),
        (
            "Observation",
            &[
                ("subject", "reference"),
                ("patient", "reference"),
                ("code", "token"),
                ("category", "token"),
                ("date", "date"),
                ("status", "token"),
                ("value-quantity", "quantity"),
                ("value-concept", "token"),
                ("component-code", "token"),
                ("component-value-quantity", "quantity"),
                ("combo-code", "token"),
                ("combo-value-quantity", "quantity"),
                ("encounter", "reference"),
                ("part-of", "reference"),
                ("derived-from", "reference"),
                ("performer", "reference"),
            ],
        ),
        (
            "MedicationAdministration",
            &[
                ("subject", "reference"),
                ("patient", "reference"),
                ("code", "token"),
                ("medication", "reference"),
                ("effective-time", "date"),
                ("status", "token"),
                ("context", "reference"),
                ("performer", "reference"),
                ("reason-given", "token"),
                ("request", "reference"),
                ("device", "reference"),
            ],
        ),
    ];
    for (resource, (type_name, parameters)) in resources.iter().zip(expected) {
        assert_eq!(resource["type"], type_name);
        let listed: Vec<(&str, &str)> = resource["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["type"].as_str().unwrap()))
            .collect();
        for parameter in parameters {
            assert!(
                listed.contains(parameter),
                "{type_name}: {parameter:?} missing"
            );
        }
        assert_eq!(resource["conditionalCreate"], true);
        assert_eq!(resource["conditionalUpdate"], true);
        assert_eq!(resource["conditionalDelete"], "single");
    }
    let includes = |index: usize, key: &str| -> Vec<String> {
        resources[index][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(includes(1, "searchInclude").contains(&"Observation:part-of".to_string()));
    let patient_revincludes = includes(0, "searchRevInclude");
    for source in ["Observation:subject", "MedicationAdministration:patient"] {
        assert!(
            patient_revincludes.contains(&source.to_string()),
            "{source}"
        );
    }
    assert!(!patient_revincludes.contains(&"Observation:code".to_string()));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get_root("healthz").await.status(), StatusCode::OK);
    let ready = app.get_root("readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    app.get("Patient/nope").await;
    let metrics = app.get_root("metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{method="GET",route="/fhir/{type}/{id}",status="404"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    assert!(metrics.contains("db_pool_connections"));
    assert!(metrics.contains("webhook_queue_depth"));
}

#[tokio::test]
async fn committed_openapi_document_matches_the_code() {
    let committed: Value =
        serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    let generated: Value = serde_json::from_str(&ketamine_fhir::openapi::document_json()).unwrap();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn openapi_is_served_and_swagger_ui_loads() {
    let app = TestApp::spawn().await;
    let document = json(app.get_root("openapi.json").await).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let ui = app.get_root("docs/").await;
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.unwrap().contains("swagger"));
}

/// The URL of a documented path with its parameters filled in: Patient, `id`, version 1.
fn operation_url(app: &TestApp, path: &str, id: &str) -> String {
    let path = path
        .replace("{type}", "Patient")
        .replace("{id}", id)
        .replace("{version}", "1");
    format!("{}{path}", app.root)
}

/// What Swagger's "Try it out" does: every operation of the served document, called with
/// its path parameters filled in and the bearer token, answers with a status the document
/// lists for that operation.
#[tokio::test]
async fn every_documented_operation_answers_with_a_documented_status() {
    let app = TestApp::spawn().await;
    let mut body = crate::helpers::patient();
    body["id"] = serde_json::json!("try-it");
    assert_eq!(
        app.put("Patient/try-it", &body).await.status(),
        StatusCode::CREATED
    );
    let document = json(app.get_root("openapi.json").await).await;
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let url = operation_url(&app, path, "try-it");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = app
                .client
                .request(method.clone(), &url)
                .bearer_auth(&app.token);
            let content_type = operation["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.keys().next().cloned());
            if let Some(content_type) = content_type {
                let payload = match content_type.as_str() {
                    "application/json-patch+json" => {
                        r#"[{"op":"replace","path":"/active","value":true}]"#.to_string()
                    }
                    "application/x-www-form-urlencoded" => "_id=try-it".to_string(),
                    _ => body.to_string(),
                };
                request = request.header("Content-Type", content_type).body(payload);
            }
            let status = request.send().await.unwrap().status().as_u16().to_string();
            let documented: Vec<&String> =
                operation["responses"].as_object().unwrap().keys().collect();
            assert!(
                documented.contains(&&status),
                "{method} {path} answered {status}, documented {documented:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 37);
}

/// An `{id}` that is not a FHIR id is refused with 400 on every operation that takes one,
/// and the document says so (a finding of the schemathesis run).
#[tokio::test]
async fn a_malformed_id_is_a_documented_400_on_every_operation_that_takes_one() {
    let app = TestApp::spawn().await;
    let document = json(app.get_root("openapi.json").await).await;
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let url = operation_url(&app, path, "not%20an%20id!");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .client
                .request(method.clone(), &url)
                .bearer_auth(&app.token)
                .header("Content-Type", "application/fhir+json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{method} {path}"
            );
            assert!(
                operation["responses"]["400"].is_object(),
                "{method} {path} does not document 400"
            );
            let body = json(response).await;
            assert_eq!(body["resourceType"], "OperationOutcome", "{method} {path}");
            assert_eq!(body["issue"][0]["code"], "invalid", "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}
