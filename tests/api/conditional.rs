//! Conditional create (`If-None-Exist`), update (`PUT Type?criteria`) and delete
//! (`DELETE Type?criteria`): outcomes by number of matches, and what is stored.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, match_ids, outcome_diagnostics, patient};

const MRN: &str = "urn:oid:2.16.840.1.113883.3.7431.1";

fn patient_with_mrn(mrn: &str) -> Value {
    let mut body = patient();
    body["identifier"][0]["value"] = json!(mrn);
    body
}

async fn create_if_none_exist(app: &TestApp, body: &Value, criteria: &str) -> reqwest::Response {
    app.request(Method::POST, "Patient")
        .header("Content-Type", "application/fhir+json")
        .header("If-None-Exist", criteria)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn put_where(app: &TestApp, criteria: &str, body: &Value) -> reqwest::Response {
    app.send_json(Method::PUT, &format!("Patient?{criteria}"), body)
        .await
}

async fn delete_where(app: &TestApp, criteria: &str) -> reqwest::Response {
    app.request(Method::DELETE, &format!("Patient?{criteria}"))
        .send()
        .await
        .unwrap()
}

async fn ids_with_mrn(app: &TestApp, mrn: &str) -> Vec<String> {
    let bundle = json(app.get(&format!("Patient?identifier={MRN}|{mrn}")).await).await;
    match_ids(&bundle)
}

#[tokio::test]
async fn conditional_create_creates_once_then_returns_the_match() {
    let app = TestApp::spawn().await;
    let criteria = format!("identifier={MRN}|KC-1");
    let first = create_if_none_exist(&app, &patient_with_mrn("KC-1"), &criteria).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let created = json(first).await;

    let mut changed = patient_with_mrn("KC-1");
    changed["gender"] = json!("male");
    let second = create_if_none_exist(&app, &changed, &criteria).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        second.headers()["location"].to_str().unwrap(),
        format!(
            "{}/Patient/{}/_history/1",
            app.base,
            created["id"].as_str().unwrap()
        )
    );
    let returned = json(second).await;
    assert_eq!(
        returned, created,
        "the existing resource comes back unchanged"
    );
    assert_eq!(app.count_rows("resources").await, 1);
    assert_eq!(app.count_rows("resource_versions").await, 1);
}

#[tokio::test]
async fn conditional_create_accepts_a_leading_type_and_question_mark() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient_with_mrn("KC-2")).await;
    let response = create_if_none_exist(
        &app,
        &patient_with_mrn("KC-2"),
        &format!("Patient?identifier={MRN}|KC-2"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["id"], created["id"]);
    assert_eq!(app.count_rows("resources").await, 1);
}

#[tokio::test]
async fn conditional_create_with_several_matches_is_412_and_stores_nothing() {
    let app = TestApp::spawn().await;
    app.create(&patient_with_mrn("TWIN")).await;
    app.create(&patient_with_mrn("TWIN")).await;
    let response = create_if_none_exist(
        &app,
        &patient_with_mrn("TWIN"),
        &format!("identifier={MRN}|TWIN"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics[0].contains("match more than one Patient"),
        "{diagnostics:?}"
    );
    assert_eq!(app.count_rows("resources").await, 2);
}

#[tokio::test]
async fn concurrent_conditional_creates_with_the_same_criteria_create_one_resource() {
    let app = TestApp::spawn().await;
    let criteria = format!("identifier={MRN}|RACE");
    let body = patient_with_mrn("RACE");
    let requests = (0..8).map(|_| create_if_none_exist(&app, &body, &criteria));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(ids_with_mrn(&app, "RACE").await.len(), 1);
}

#[tokio::test]
async fn conditional_criteria_are_parsed_strictly() {
    let app = TestApp::spawn().await;
    let body = patient_with_mrn("KC-3");
    for (criteria, parameter) in [
        ("shoe-size=42", "shoe-size"),
        ("_count=1", "_count"),
        ("birthdate=1970-13-01", "birthdate"),
    ] {
        let response = create_if_none_exist(&app, &body, criteria).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{criteria}");
        let outcome = json(response).await;
        assert_eq!(outcome["issue"][0]["expression"][0], parameter, "{outcome}");
    }
    let empty = create_if_none_exist(&app, &body, "").await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let update = put_where(&app, "", &body).await;
    assert_eq!(update.status(), StatusCode::BAD_REQUEST);
    let delete = delete_where(&app, "unknown=1").await;
    assert_eq!(delete.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count_rows("resources").await, 0);
}

#[tokio::test]
async fn conditional_update_without_a_match_creates() {
    let app = TestApp::spawn().await;
    let response = put_where(
        &app,
        &format!("identifier={MRN}|NEW"),
        &patient_with_mrn("NEW"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json(response).await;
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(
        ids_with_mrn(&app, "NEW").await,
        vec![created["id"].as_str().unwrap()]
    );

    let mut with_id = patient_with_mrn("CHOSEN");
    with_id["id"] = json!("chosen-id");
    let response = put_where(&app, &format!("identifier={MRN}|CHOSEN"), &with_id).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(json(response).await["id"], "chosen-id");
}

#[tokio::test]
async fn conditional_update_with_one_match_updates_it() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient_with_mrn("ONE")).await;
    let id = created["id"].as_str().unwrap();
    let mut changed = patient_with_mrn("ONE");
    changed["gender"] = json!("male");
    let response = put_where(&app, &format!("identifier={MRN}|ONE"), &changed).await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated = json(response).await;
    assert_eq!(updated["id"], id);
    assert_eq!(updated["meta"]["versionId"], "2");
    let read = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(read["gender"], "male");

    let mut same_id = changed.clone();
    same_id["id"] = json!(id);
    same_id["gender"] = json!("other");
    let response = put_where(&app, &format!("identifier={MRN}|ONE"), &same_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["meta"]["versionId"], "3");
}

#[tokio::test]
async fn conditional_update_refuses_a_body_id_other_than_the_match() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient_with_mrn("ONE")).await;
    let mut other = patient_with_mrn("ONE");
    other["id"] = json!("someone-else");
    let response = put_where(&app, &format!("identifier={MRN}|ONE"), &other).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome = json(response).await;
    assert_eq!(outcome["issue"][0]["expression"][0], "id");
    let read = json(
        app.get(&format!("Patient/{}", created["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(read["meta"]["versionId"], "1");
    assert_eq!(app.count_rows("resources").await, 1);
}

#[tokio::test]
async fn conditional_update_will_not_overwrite_an_existing_resource_its_criteria_miss() {
    let app = TestApp::spawn().await;
    let mut existing = patient_with_mrn("OLD");
    existing["id"] = json!("taken");
    assert_eq!(
        app.put("Patient/taken", &existing).await.status(),
        StatusCode::CREATED
    );
    let mut body = patient_with_mrn("OTHER");
    body["id"] = json!("taken");
    let response = put_where(&app, &format!("identifier={MRN}|OTHER"), &body).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let read = json(app.get("Patient/taken").await).await;
    assert_eq!(read["identifier"][0]["value"], "OLD");
    assert_eq!(read["meta"]["versionId"], "1");
}

#[tokio::test]
async fn conditional_update_with_several_matches_is_412() {
    let app = TestApp::spawn().await;
    app.create(&patient_with_mrn("TWIN")).await;
    app.create(&patient_with_mrn("TWIN")).await;
    let response = put_where(
        &app,
        &format!("identifier={MRN}|TWIN"),
        &patient_with_mrn("TWIN"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(app.count_rows("resource_versions").await, 2);
}

#[tokio::test]
async fn conditional_delete_deletes_the_one_match_and_refuses_several() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient_with_mrn("GONE")).await;
    app.create(&patient_with_mrn("TWIN")).await;
    app.create(&patient_with_mrn("TWIN")).await;

    let response = delete_where(&app, &format!("identifier={MRN}|TWIN")).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(ids_with_mrn(&app, "TWIN").await.len(), 2);

    let response = delete_where(&app, &format!("identifier={MRN}|GONE")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let read = app
        .get(&format!("Patient/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(read.status(), StatusCode::GONE);

    let response = delete_where(&app, &format!("identifier={MRN}|GONE")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.count_rows("resource_versions").await, 4);
}

#[tokio::test]
async fn conditional_criteria_of_a_patient_token_see_only_its_compartment() {
    let app = TestApp::spawn().await;
    let mine = app.create(&patient_with_mrn("MINE")).await;
    let theirs = app.create(&patient_with_mrn("THEIRS")).await;
    let mine_id = mine["id"].as_str().unwrap();
    let theirs_id = theirs["id"].as_str().unwrap();
    let token = app.token_for("patient/Observation.cruds", Some(mine_id));
    let observation = |patient: &str| {
        json!({
            "resourceType": "Observation", "status": "final",
            "identifier": [{"system": "urn:obs", "value": "shared-id"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "valueInteger": 4
        })
    };
    app.create(&observation(theirs_id)).await;
    let response = app
        .client
        .post(format!("{}/Observation", app.base))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .header("If-None-Exist", "identifier=urn:obs|shared-id")
        .body(observation(mine_id).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "the other patient's match is invisible to this token"
    );
    let created = json(response).await;
    assert_eq!(
        created["subject"]["reference"],
        format!("Patient/{mine_id}")
    );
    assert_eq!(app.count_rows("resources").await, 4);
}

#[tokio::test]
async fn conditional_writes_need_the_search_permission() {
    let app = TestApp::spawn().await;
    let token = app.token_for("system/Patient.c", None);
    let response = app
        .client
        .post(format!("{}/Patient", app.base))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .header("If-None-Exist", format!("identifier={MRN}|KC-9"))
        .body(patient_with_mrn("KC-9").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count_rows("resources").await, 0);
}
