//! Batch and transaction Bundles (`POST /fhir`): references between entries, the R4
//! processing order, conditional entries and references, all-or-nothing transactions,
//! batches whose entries stand alone, scopes per entry, and a 1,000-entry transaction.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, heart_rate, json, match_ids, outcome_diagnostics, patient};
use crate::safety::{at, blood_pressure, vital};

const MRN: &str = "urn:oid:2.16.840.1.113883.3.7431.1";

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}})
}

fn put(url: &str, resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "PUT", "url": url}})
}

fn request(method: &str, url: &str) -> Value {
    json!({"request": {"method": method, "url": url}})
}

fn patient_with_mrn(mrn: &str) -> Value {
    let mut body = patient();
    body["identifier"][0]["value"] = json!(mrn);
    body
}

async fn submit(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    submit_as(app, &app.token, body).await
}

async fn submit_as(app: &TestApp, token: &str, body: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(&app.base)
        .bearer_auth(token)
        .header("Content-Type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, json(response).await)
}

fn statuses(response: &Value) -> Vec<&str> {
    response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap())
        .collect()
}

/// `Type/id` of a response entry's location (`Type/id/_history/n`).
fn located(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    let parts: Vec<&str> = location.split('/').collect();
    assert_eq!(parts.len(), 4, "{location}");
    assert_eq!(parts[2], "_history");
    format!("{}/{}", parts[0], parts[1])
}

#[tokio::test]
async fn a_transaction_stores_linked_resources_with_their_references_resolved() {
    let app = TestApp::spawn().await;
    let transaction = bundle(
        "transaction",
        vec![
            post(
                "urn:uuid:9d0f4a3e-1111-4c3a-9f00-000000000001",
                heart_rate("ignored", 72),
            ),
            post("urn:uuid:9d0f4a3e-1111-4c3a-9f00-000000000002", patient()),
            put(
                "Practitioner/dr-osei",
                json!({"resourceType": "Practitioner", "id": "dr-osei", "name": [{"family": "Osei"}]}),
            ),
        ],
    );
    let mut transaction = transaction;
    transaction["entry"][0]["resource"]["subject"]["reference"] =
        json!("urn:uuid:9d0f4a3e-1111-4c3a-9f00-000000000002");
    transaction["entry"][0]["resource"]["performer"] =
        json!([{"reference": format!("{}/Practitioner/dr-osei", app.base)}]);
    transaction["entry"][2]["fullUrl"] = json!(format!("{}/Practitioner/dr-osei", app.base));

    let (status, response) = submit(&app, &transaction).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["resourceType"], "Bundle");
    assert_eq!(response["type"], "transaction-response");
    assert_eq!(
        statuses(&response),
        ["201 Created", "201 Created", "201 Created"]
    );
    let entries = response["entry"].as_array().unwrap();
    let observation = located(&entries[0]);
    let patient_ref = located(&entries[1]);
    assert_eq!(located(&entries[2]), "Practitioner/dr-osei");
    assert!(observation.starts_with("Observation/"));
    assert!(patient_ref.starts_with("Patient/"));
    for entry in entries {
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
        assert_eq!(
            entry["fullUrl"].as_str().unwrap(),
            format!("{}/{}", app.base, located(entry))
        );
        assert_eq!(
            entry["resource"]["meta"]["versionId"], "1",
            "representation by default"
        );
    }

    let stored = json(app.get(&observation).await).await;
    assert_eq!(stored["subject"]["reference"], patient_ref.as_str());
    assert_eq!(stored["performer"][0]["reference"], "Practitioner/dr-osei");
    let found = json(app.get(&format!("Observation?subject={patient_ref}")).await).await;
    assert_eq!(
        match_ids(&found),
        [observation.trim_start_matches("Observation/")]
    );
    assert_eq!(app.count_rows("resources").await, 3);
}

#[tokio::test]
async fn a_failing_entry_leaves_nothing_stored_and_is_named() {
    let app = TestApp::spawn().await;
    let existing = app.create(&patient()).await;
    let id = existing["id"].as_str().unwrap();
    let versions_before = app.count_rows("resource_versions").await;

    let mut invalid = heart_rate(id, 70);
    invalid.as_object_mut().unwrap().remove("status");
    let (status, outcome) = submit(
        &app,
        &bundle(
            "transaction",
            vec![
                post("urn:uuid:1", patient()),
                put(
                    &format!("Patient/{id}"),
                    json!({"resourceType": "Patient", "id": id, "gender": "male"}),
                ),
                post("urn:uuid:2", invalid),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let diagnostics = outcome_diagnostics(&outcome);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(
        diagnostics[0].starts_with("Bundle.entry[2] (POST Observation): "),
        "{diagnostics:?}"
    );
    assert_eq!(
        outcome["issue"][0]["expression"],
        json!(["Bundle.entry[2].resource.status"])
    );

    // A write that fails late (If-Match after two writes ran) undoes those writes too.
    let mut stale = put(
        &format!("Patient/{id}"),
        json!({"resourceType": "Patient", "id": id, "gender": "male"}),
    );
    stale["request"]["ifMatch"] = json!("W/\"7\"");
    let (status, outcome) = submit(
        &app,
        &bundle(
            "transaction",
            vec![
                post("urn:uuid:1", patient()),
                post("urn:uuid:2", heart_rate(id, 70)),
                stale,
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        outcome_diagnostics(&outcome),
        [format!(
            "Bundle.entry[2] (PUT Patient/{id}): If-Match names version 7, but the current version is 1"
        )]
    );
    assert_eq!(app.count_rows("resource_versions").await, versions_before);
    assert_eq!(app.count_rows("resources").await, 1);
    let unchanged = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(unchanged["meta"]["versionId"], "1");
    assert_eq!(unchanged["gender"], "female");
}

#[tokio::test]
async fn entries_run_in_the_r4_order_delete_post_put_then_get() {
    let app = TestApp::spawn().await;
    let patient_id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tagged = heart_rate(&patient_id, 80);
    tagged["identifier"] = json!([{"system": "urn:example:obs", "value": "HR-1"}]);
    let old = app.create(&tagged).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut create_unless_tagged = post("urn:uuid:new", tagged.clone());
    create_unless_tagged["request"]["ifNoneExist"] = json!("identifier=urn:example:obs|HR-1");
    let mut renamed = patient();
    renamed["id"] = json!(patient_id);
    renamed["name"] = json!([{"family": "Okafor-Reyes"}]);
    let (status, response) = submit(
        &app,
        &bundle(
            "transaction",
            vec![
                request("GET", &format!("Patient/{patient_id}")),
                put(&format!("Patient/{patient_id}"), renamed),
                create_unless_tagged,
                request("DELETE", &format!("Observation/{old}")),
                request("GET", "Observation?identifier=urn:example:obs|HR-1"),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    // The delete ran before the conditional create, which therefore found nothing.
    assert_eq!(
        statuses(&response),
        [
            "200 OK",
            "200 OK",
            "201 Created",
            "204 No Content",
            "200 OK"
        ]
    );
    let entries = response["entry"].as_array().unwrap();
    // The GETs ran last: they see the update and the new Observation, not the deleted one.
    assert_eq!(entries[0]["resource"]["meta"]["versionId"], "2");
    assert_eq!(entries[0]["resource"]["name"][0]["family"], "Okafor-Reyes");
    assert_eq!(entries[0]["response"]["etag"], "W/\"2\"");
    let created = located(&entries[2]);
    let search = &entries[4]["resource"];
    assert_eq!(search["type"], "searchset");
    assert_eq!(
        match_ids(search),
        [created.trim_start_matches("Observation/")]
    );
    assert_eq!(
        app.get(&format!("Observation/{old}")).await.status(),
        StatusCode::GONE
    );
}

#[tokio::test]
async fn conditional_entries_and_conditional_references_resolve_to_one_resource() {
    let app = TestApp::spawn().await;
    let known = app.create(&patient_with_mrn("KT-1")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let leaving = app.create(&patient_with_mrn("KT-9")).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut find_known = post("urn:uuid:known", patient_with_mrn("KT-1"));
    find_known["request"]["ifNoneExist"] = json!(format!("identifier={MRN}|KT-1"));
    let mut by_urn = heart_rate("x", 61);
    by_urn["subject"]["reference"] = json!("urn:uuid:known");
    let mut by_criteria = heart_rate("x", 62);
    by_criteria["subject"]["reference"] = json!(format!("Patient?identifier={MRN}|KT-1"));
    let (status, response) = submit(
        &app,
        &bundle(
            "transaction",
            vec![
                find_known,
                post("urn:uuid:a", by_urn),
                post("urn:uuid:b", by_criteria),
                put(
                    &format!("Patient?identifier={MRN}|KT-2"),
                    patient_with_mrn("KT-2"),
                ),
                request("DELETE", &format!("Patient?identifier={MRN}|KT-9")),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(
        statuses(&response),
        [
            "200 OK",
            "201 Created",
            "201 Created",
            "201 Created",
            "204 No Content"
        ]
    );
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(located(&entries[0]), format!("Patient/{known}"));
    for entry in &entries[1..3] {
        let stored = json(app.get(&located(entry)).await).await;
        assert_eq!(stored["subject"]["reference"], format!("Patient/{known}"));
    }
    let new_patient = json(app.get(&format!("Patient?identifier={MRN}|KT-2")).await).await;
    assert_eq!(
        match_ids(&new_patient),
        [located(&entries[3]).trim_start_matches("Patient/")]
    );
    assert_eq!(
        app.get(&format!("Patient/{leaving}")).await.status(),
        StatusCode::GONE
    );

    // A conditional reference that matches nothing fails the transaction.
    let mut dangling = heart_rate("x", 63);
    dangling["subject"]["reference"] = json!(format!("Patient?identifier={MRN}|NOBODY"));
    let before = app.count_rows("resource_versions").await;
    let (status, outcome) = submit(
        &app,
        &bundle("transaction", vec![post("urn:uuid:c", dangling)]),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        outcome_diagnostics(&outcome),
        [format!(
            "Bundle.entry[0] (POST Observation): The conditional reference 'Patient?identifier={MRN}|NOBODY' matches no Patient"
        )]
    );
    assert_eq!(app.count_rows("resource_versions").await, before);
}

fn safe_record(patient: &str, infusion_start: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let taken = infusion_start - chrono::Duration::minutes(10);
    vec![
        vital(
            patient,
            "29463-7",
            infusion_start - chrono::Duration::days(1),
            70.0,
            "kg",
        ),
        blood_pressure(patient, taken, 128.0, 82.0),
        vital(patient, "8867-4", taken, 72.0, "/min"),
        vital(patient, "59408-5", taken, 98.0, "%"),
    ]
}

fn ketamine_infusion(patient: &str, begin: chrono::DateTime<chrono::Utc>, dose_mg: f64) -> Value {
    json!({
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130"}]},
        "subject": {"reference": patient},
        "effectivePeriod": {"start": at(begin), "end": at(begin + chrono::Duration::minutes(60))},
        "dosage": {
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
            "dose": {"value": dose_mg, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
        }
    })
}

#[tokio::test]
async fn an_infusion_is_checked_against_the_weight_and_vitals_sent_with_it() {
    let app = TestApp::spawn().await;
    let begin: chrono::DateTime<chrono::Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
    let entries_for = |dose_mg: f64| {
        // The administration comes first in the Bundle; the server checks it after the
        // Observations that share its transaction.
        let mut entries = vec![
            post(
                "urn:uuid:infusion",
                ketamine_infusion("urn:uuid:patient", begin, dose_mg),
            ),
            post("urn:uuid:patient", patient()),
        ];
        for (n, observation) in safe_record("urn:uuid:patient", begin)
            .into_iter()
            .enumerate()
        {
            let mut observation = observation;
            observation["subject"]["reference"] = json!("urn:uuid:patient");
            entries.push(post(&format!("urn:uuid:obs-{n}"), observation));
        }
        bundle("transaction", entries)
    };

    let (status, outcome) = submit(&app, &entries_for(75.0)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{outcome}");
    let diagnostics = outcome_diagnostics(&outcome);
    assert_eq!(
        diagnostics,
        [
            "Bundle.entry[0] (POST MedicationAdministration): Infusion safety rule dose-range: dose 1.07 mg/kg exceeds 1 mg/kg",
            "Bundle.entry[0] (POST MedicationAdministration): Infusion safety rule rate-range: rate 1.07 mg/kg/h exceeds 0.75 mg/kg/h"
        ]
    );
    assert_eq!(app.count_rows("resources").await, 0);

    let (status, response) = submit(&app, &entries_for(35.0)).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let administration = &response["entry"][0]["resource"];
    assert_eq!(
        administration["subject"]["reference"],
        located(&response["entry"][1]).as_str()
    );
    let dose_per_kg = administration["dosage"]["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["url"] == "https://ketamine-fhir.example.org/fhir/StructureDefinition/dose-per-kg"
        })
        .unwrap();
    assert_eq!(dose_per_kg["valueQuantity"]["value"], json!(0.5));
    assert_eq!(app.count_rows("resources").await, 6);
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_on_their_own() {
    let app = TestApp::spawn().await;
    let existing = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut invalid = patient();
    invalid["gender"] = json!("sometimes");
    let patch = base64::engine::general_purpose::STANDARD
        .encode(json!([{"op": "replace", "path": "/gender", "value": "other"}]).to_string());
    let mut dependent = heart_rate("x", 70);
    dependent["subject"]["reference"] = json!("urn:uuid:batch-patient");
    let (status, response) = submit(
        &app,
        &bundle(
            "batch",
            vec![
                post("urn:uuid:batch-patient", patient_with_mrn("B-1")),
                post("urn:uuid:x", invalid),
                request("GET", "Patient/not-there"),
                request("GET", &format!("Patient?identifier={MRN}|B-1")),
                json!({"request": {"method": "PATCH", "url": format!("Patient/{existing}")},
                       "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch}}),
                post("urn:uuid:y", dependent),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["type"], "batch-response");
    assert_eq!(
        statuses(&response),
        [
            "201 Created",
            "400 Bad Request",
            "404 Not Found",
            "200 OK",
            "200 OK",
            "400 Bad Request"
        ]
    );
    let entries = response["entry"].as_array().unwrap();
    for failed in [1, 2, 5] {
        assert_eq!(
            entries[failed]["response"]["outcome"]["resourceType"],
            "OperationOutcome"
        );
    }
    assert_eq!(
        outcome_diagnostics(&entries[5]["response"]["outcome"]),
        [
            "Bundle.entry[5] (POST Observation): the reference 'urn:uuid:batch-patient' names no entry of this Bundle"
        ]
    );
    assert_eq!(
        match_ids(&entries[3]["resource"]),
        [located(&entries[0]).trim_start_matches("Patient/")]
    );
    assert_eq!(entries[4]["resource"]["gender"], "other");
    assert_eq!(app.count_rows("resources").await, 2);
}

#[tokio::test]
async fn malformed_bundles_and_overlapping_entries_are_refused() {
    let app = TestApp::spawn().await;
    let same = |gender: &str| {
        put(
            "Patient/p-1",
            json!({"resourceType": "Patient", "id": "p-1", "gender": gender}),
        )
    };
    let cases = [
        (
            json!({"resourceType": "Patient"}),
            "POST to the base URL takes a Bundle of type batch or transaction",
        ),
        (
            bundle("collection", vec![]),
            "Bundle.type is 'collection'; the base URL processes batch and transaction Bundles",
        ),
        (
            bundle("transaction", vec![same("male"), same("female")]),
            "Bundle.entry[0] and Bundle.entry[1] both change Patient/p-1; a transaction changes each resource once",
        ),
        (
            bundle(
                "transaction",
                vec![post("urn:uuid:1", patient()), post("urn:uuid:1", patient())],
            ),
            "Bundle.entry[0] and Bundle.entry[1] have the same fullUrl 'urn:uuid:1'",
        ),
        (
            bundle("transaction", vec![request("POST", "Patient")]),
            "Bundle.entry[0]: a POST entry needs entry.resource",
        ),
        (
            bundle(
                "transaction",
                vec![put(
                    "Patient/p-2",
                    json!({"resourceType": "Patient", "id": "p-3"}),
                )],
            ),
            "Bundle.entry[0] (PUT Patient/p-2): The body's id 'p-3' does not match the id 'p-2' in the URL",
        ),
    ];
    for (body, expected) in cases {
        let (status, outcome) = submit(&app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            outcome_diagnostics(&outcome),
            [expected.to_string()],
            "{body}"
        );
    }
    let mut dangling = heart_rate("x", 70);
    dangling["subject"]["reference"] = json!("urn:uuid:missing");
    let (status, outcome) = submit(
        &app,
        &bundle(
            "transaction",
            vec![post("urn:uuid:2", patient()), post("urn:uuid:3", dangling)],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        outcome_diagnostics(&outcome),
        [
            "Bundle.entry[1] (POST Observation): the reference 'urn:uuid:missing' names no entry of this Bundle"
        ]
    );
    assert_eq!(app.count_rows("resource_versions").await, 0);
}

#[tokio::test]
async fn every_entry_needs_the_callers_scopes_and_compartment() {
    let app = TestApp::spawn().await;
    let mine = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = app.count_rows("resource_versions").await;

    let patients_only = app.token_for("system/Patient.cruds", None);
    let (status, outcome) = submit_as(
        &app,
        &patients_only,
        &bundle(
            "transaction",
            vec![
                post("urn:uuid:1", patient()),
                post("urn:uuid:2", heart_rate(&mine, 70)),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        outcome_diagnostics(&outcome),
        [
            "Bundle.entry[1] (POST Observation): The access token's scopes do not allow Create on Observation"
        ]
    );

    let patient_token = app.token_for("patient/Observation.cruds", Some(&mine));
    let (status, outcome) = submit_as(
        &app,
        &patient_token,
        &bundle(
            "transaction",
            vec![
                post("urn:uuid:1", heart_rate(&mine, 70)),
                post("urn:uuid:2", heart_rate(&other, 70)),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        outcome_diagnostics(&outcome),
        [
            "Bundle.entry[1] (POST Observation): The access token is limited to one patient's data; this resource is outside it"
        ]
    );
    assert_eq!(app.count_rows("resource_versions").await, before);

    let (status, response) = submit_as(
        &app,
        &patient_token,
        &bundle(
            "batch",
            vec![
                post("urn:uuid:1", heart_rate(&mine, 70)),
                request("GET", "Observation"),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statuses(&response), ["201 Created", "200 OK"]);
    assert_eq!(
        match_ids(&response["entry"][1]["resource"]),
        [located(&response["entry"][0]).trim_start_matches("Observation/")]
    );
}

#[tokio::test]
async fn a_transaction_of_a_thousand_entries_commits_as_one() {
    let app = TestApp::spawn().await;
    let mut entries = Vec::new();
    for n in 0..500 {
        let urn = format!("urn:uuid:00000000-0000-4000-8000-{n:012}");
        entries.push(post(&urn, patient_with_mrn(&format!("T-{n}"))));
        let mut observation = heart_rate("x", 60 + (n % 40) as i64);
        observation["subject"]["reference"] = json!(urn);
        entries.push(post(
            &format!("urn:uuid:10000000-0000-4000-8000-{n:012}"),
            observation,
        ));
    }
    let response = app
        .client
        .post(format!("{}/", app.base))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "return=minimal")
        .body(bundle("transaction", entries).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    let entries = body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1000);
    assert!(entries.iter().all(|e| e.get("resource").is_none()));
    assert_eq!(app.count_rows("resources").await, 1000);
    let patient_of_last = located(&entries[998]);
    let last = json(app.get(&located(&entries[999])).await).await;
    assert_eq!(last["subject"]["reference"], patient_of_last.as_str());
}
