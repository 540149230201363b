//! Bulk Data `$export`: kick-off, polling, the manifest and the NDJSON files, at system,
//! Patient and Group level, with the access rules, cancellation, retention and the
//! takeover of a job whose instance died.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ketamine_fhir::auth::jwt::issue_token;
use ketamine_fhir::config::Config;
use ketamine_fhir::startup::Application;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{FULL_ACCESS, TestApp, heart_rate, issue_expressions, json, patient};

const NDJSON: &str = "application/fhir+ndjson";

/// Export workers that look for work every 20 ms, so tests need not wait long.
fn quick(config: &mut Config) {
    config.bulk_export.bulk_export_poll_ms = 20;
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(quick).await
}

fn pain_score(patient_id: &str, score: i64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueInteger": score
    })
}

fn practitioner() -> Value {
    json!({"resourceType": "Practitioner", "name": [{"family": "Adeyemi", "given": ["Tola"]}]})
}

fn group(members: &[&str]) -> Value {
    json!({
        "resourceType": "Group",
        "type": "person",
        "actual": true,
        "member": members.iter().map(|id| json!({"entity": {"reference": format!("Patient/{id}")}})).collect::<Vec<_>>()
    })
}

/// A kick-off with the headers the asynchronous pattern needs; `query` pairs are encoded.
async fn kick_off(app: &TestApp, token: &str, path: &str, query: &[(&str, &str)]) -> Response {
    app.client
        .get(format!("{}/{path}", app.base))
        .query(query)
        .bearer_auth(token)
        .header("Prefer", "respond-async")
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .unwrap()
}

/// Kicks off, asserts 202 with a status URL, and returns that URL.
async fn start(app: &TestApp, token: &str, path: &str, query: &[(&str, &str)]) -> String {
    let response = kick_off(app, token, path, query).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let body = json(response).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "information");
    let prefix = format!("{}/bulk-export/", app.base);
    let id = location
        .strip_prefix(&prefix)
        .expect("status URL under /fhir/bulk-export");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{location}");
    location
}

async fn get_as(app: &TestApp, token: &str, url: &str) -> Response {
    app.client.get(url).bearer_auth(token).send().await.unwrap()
}

/// Polls the status URL (at most 30 s) until the job is done; returns the manifest.
async fn manifest(app: &TestApp, token: &str, status_url: &str) -> Value {
    let started = Instant::now();
    loop {
        let response = get_as(app, token, status_url).await;
        match response.status() {
            StatusCode::ACCEPTED => {
                assert!(response.headers().contains_key("x-progress"));
                assert_eq!(response.headers()["retry-after"], "2");
            }
            StatusCode::OK => {
                assert!(
                    response.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("application/json")
                );
                assert!(response.headers().contains_key("expires"));
                return json(response).await;
            }
            other => panic!("status {other}: {}", response.text().await.unwrap()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "export did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Downloads a file of a manifest, checking its type and length; returns its lines parsed.
async fn download(app: &TestApp, token: &str, url: &str) -> Vec<Value> {
    let response = get_as(app, token, url).await;
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    assert_eq!(response.headers()["content-type"], NDJSON);
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = response.text().await.unwrap();
    assert_eq!(text.len(), length);
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON resource"))
        .collect()
}

/// Every output file of a manifest, downloaded: per type, the resources in file order.
async fn exported(app: &TestApp, token: &str, manifest: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        let lines = download(app, token, file["url"].as_str().unwrap()).await;
        assert_eq!(file["count"], lines.len(), "{file}");
        for line in &lines {
            assert_eq!(line["resourceType"], file["type"]);
        }
        by_type
            .entry(file["type"].as_str().unwrap().to_string())
            .or_default()
            .extend(lines);
    }
    by_type
}

fn ids(resources: &[Value]) -> Vec<String> {
    resources
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_string()
}

async fn execute(app: &TestApp, sql: &str) {
    let mut conn = AsyncPgConnection::establish(&app.database_url)
        .await
        .unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

/// A second instance on the app's database, with one export worker, not started yet. It is
/// built before the test's first request: building takes a while, and the client's idle
/// connection must not outlive the server's keep-alive meanwhile.
fn instance_with_a_worker(app: &TestApp) -> Application {
    let mut config = app.config.clone();
    quick(&mut config);
    config.bulk_export.bulk_export_workers = 1;
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    Application::build(&config).unwrap()
}

#[tokio::test]
async fn system_export_writes_each_live_resource_once_in_files_of_bounded_size() {
    let app = TestApp::spawn_with(|config| {
        quick(config);
        config.bulk_export.bulk_export_chunk = 2;
        config.bulk_export.bulk_export_file_resources = 3;
    })
    .await;
    let mut patients = Vec::new();
    for _ in 0..5 {
        patients.push(app.create(&patient()).await);
    }
    let deleted = patients.pop().unwrap();
    let response = app
        .request(
            reqwest::Method::DELETE,
            &format!("Patient/{}", id_of(&deleted)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let mut updated = patients[1].clone();
    updated["gender"] = json!("other");
    let response = app
        .put(&format!("Patient/{}", id_of(&updated)), &updated)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut observations = Vec::new();
    for (n, patient) in patients.iter().enumerate() {
        observations.push(
            app.create(&heart_rate(&id_of(patient), 60 + n as i64))
                .await,
        );
    }
    observations.push(app.create(&pain_score(&id_of(&patients[0]), 6)).await);
    let practitioner = app.create(&practitioner()).await;

    let status_url = start(
        &app,
        &app.token,
        "$export",
        &[("_type", "Patient,Observation,Practitioner")],
    )
    .await;
    let manifest = manifest(&app, &app.token, &status_url).await;
    assert_eq!(
        manifest["request"],
        format!(
            "{}/$export?_type=Patient%2CObservation%2CPractitioner",
            app.base
        )
    );
    assert_eq!(manifest["requiresAccessToken"], true);
    assert_eq!(manifest["error"], json!([]));
    assert!(manifest["transactionTime"].as_str().unwrap().ends_with('Z'));
    let files: Vec<(&str, i64)> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["type"].as_str().unwrap(), f["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        files,
        [
            ("Patient", 3),
            ("Patient", 1),
            ("Observation", 3),
            ("Observation", 2),
            ("Practitioner", 1)
        ]
    );
    let exported = exported(&app, &app.token, &manifest).await;
    assert_eq!(exported.len(), 3);
    assert_eq!(ids(&exported["Patient"]), ids(&patients));
    assert_eq!(ids(&exported["Observation"]), ids(&observations));
    assert_eq!(ids(&exported["Practitioner"]), [id_of(&practitioner)]);
    for resources in exported.values() {
        for resource in resources {
            let path = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                id_of(resource)
            );
            assert_eq!(
                *resource,
                json(app.get(&path).await).await,
                "{path} as stored"
            );
        }
    }
    assert_eq!(exported["Patient"][1]["gender"], "other");
    assert_eq!(app.count_rows("export_files").await, 5);
    // Steps of at most two resources, none past a file's end: 2+1, 1, 2+1, 2 and 1.
    assert_eq!(app.count_rows("export_chunks").await, 7);
}

#[tokio::test]
async fn type_since_and_type_filter_select_what_is_exported() {
    let app = spawn().await;
    let first = app.create(&patient()).await;
    let second = app.create(&patient()).await;
    let (a, b) = (id_of(&first), id_of(&second));
    let pain_a = app.create(&pain_score(&a, 7)).await;
    let heart_a = app.create(&heart_rate(&a, 72)).await;
    let pain_b = app.create(&pain_score(&b, 3)).await;

    let since = second["meta"]["lastUpdated"].as_str().unwrap();
    let url = start(
        &app,
        &app.token,
        "$export",
        &[("_type", "Patient"), ("_since", since)],
    )
    .await;
    let patients = exported(&app, &app.token, &manifest(&app, &app.token, &url).await).await;
    assert_eq!(
        ids(&patients["Patient"]),
        [b.as_str()],
        "updated at or after {since}"
    );

    let url = start(
        &app,
        &app.token,
        "$export",
        &[
            ("_type", "Observation"),
            ("_typeFilter", "Observation?code=http://loinc.org|72514-3"),
        ],
    )
    .await;
    let pain = exported(&app, &app.token, &manifest(&app, &app.token, &url).await).await;
    assert_eq!(ids(&pain["Observation"]), [id_of(&pain_a), id_of(&pain_b)]);

    // Patient level: Patients unfiltered, Observations filtered to b's pain scores.
    let filter = format!("Observation?code=http://loinc.org|72514-3&subject=Patient/{b}");
    let url = start(
        &app,
        &app.token,
        "Patient/$export",
        &[("_typeFilter", &filter)],
    )
    .await;
    let filtered = exported(&app, &app.token, &manifest(&app, &app.token, &url).await).await;
    assert_eq!(ids(&filtered["Patient"]), [a.clone(), b.clone()]);
    assert_eq!(ids(&filtered["Observation"]), [id_of(&pain_b)]);

    // Two filters of one type are OR-ed.
    let either = format!("{filter},Observation?code=8867-4");
    let url = start(
        &app,
        &app.token,
        "$export",
        &[("_type", "Observation"), ("_typeFilter", &either)],
    )
    .await;
    let or_ed = exported(&app, &app.token, &manifest(&app, &app.token, &url).await).await;
    assert_eq!(
        ids(&or_ed["Observation"]),
        [id_of(&heart_a), id_of(&pain_b)]
    );
}

#[tokio::test]
async fn patient_and_group_exports_hold_only_their_patients_compartments() {
    let app = spawn().await;
    let mut patients = Vec::new();
    for _ in 0..3 {
        patients.push(id_of(&app.create(&patient()).await));
    }
    let mut observations = Vec::new();
    for (n, id) in patients.iter().enumerate() {
        observations.push(id_of(&app.create(&heart_rate(id, 70 + n as i64)).await));
    }
    app.create(&practitioner()).await;
    let members = [patients[0].as_str(), patients[2].as_str()];
    let group = id_of(&app.create(&group(&members)).await);

    let url = start(&app, &app.token, "Patient/$export", &[]).await;
    let manifest_all = manifest(&app, &app.token, &url).await;
    let all = exported(&app, &app.token, &manifest_all).await;
    assert_eq!(all.keys().collect::<Vec<_>>(), ["Observation", "Patient"]);
    assert_eq!(ids(&all["Patient"]), patients);
    assert_eq!(ids(&all["Observation"]), observations);

    let url = start(&app, &app.token, &format!("Group/{group}/$export"), &[]).await;
    let of_group = exported(&app, &app.token, &manifest(&app, &app.token, &url).await).await;
    assert_eq!(
        of_group.keys().collect::<Vec<_>>(),
        ["Observation", "Patient"]
    );
    assert_eq!(ids(&of_group["Patient"]), members);
    assert_eq!(
        ids(&of_group["Observation"]),
        [observations[0].clone(), observations[2].clone()]
    );

    let response = kick_off(&app, &app.token, "Group/no-such-group/$export", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = kick_off(
        &app,
        &app.token,
        "Patient/$export",
        &[("_type", "Practitioner")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue_expressions(&json(response).await), ["_type"]);
    assert_eq!(app.count_rows("export_jobs").await, 2);
}

#[tokio::test]
async fn a_patient_scoped_token_exports_only_its_patients_compartment() {
    let app = spawn().await;
    let own = id_of(&app.create(&patient()).await);
    let other = id_of(&app.create(&patient()).await);
    let own_observation = id_of(&app.create(&heart_rate(&own, 64)).await);
    app.create(&heart_rate(&other, 88)).await;
    let group = id_of(&app.create(&group(&[own.as_str(), other.as_str()])).await);
    let token = app.token_for("patient/*.rs", Some(&own));

    let url = start(&app, &token, "Patient/$export", &[]).await;
    let manifest = manifest(&app, &token, &url).await;
    let exported = exported(&app, &token, &manifest).await;
    assert_eq!(ids(&exported["Patient"]), [own.as_str()]);
    assert_eq!(ids(&exported["Observation"]), [own_observation]);

    let other_patients_token = app.token_for("patient/*.rs", Some(&other));
    let file = manifest["output"][0]["url"].as_str().unwrap();
    let response = get_as(&app, &other_patients_token, file).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let jobs = app.count_rows("export_jobs").await;
    let response = kick_off(&app, &token, "$export", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(response).await["issue"][0]["code"], "forbidden");
    let response = kick_off(&app, &token, &format!("Group/{group}/$export"), &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count_rows("export_jobs").await, jobs);
}

#[tokio::test]
async fn another_client_cannot_poll_download_or_cancel_a_job() {
    let app = spawn().await;
    app.create(&patient()).await;
    let url = start(&app, &app.token, "$export", &[("_type", "Patient")]).await;
    let manifest = manifest(&app, &app.token, &url).await;
    let file = manifest["output"][0]["url"].as_str().unwrap();
    let stranger = issue_token(&app.config, "another-client", FULL_ACCESS, None, 600).unwrap();

    let response = get_as(&app, &stranger, &url).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(response).await["resourceType"], "OperationOutcome");
    assert_eq!(
        get_as(&app, &stranger, file).await.status(),
        StatusCode::NOT_FOUND
    );
    let response = app
        .client
        .delete(&url)
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.client.get(file).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(app.count_rows("export_jobs").await, 1);
    assert_eq!(download(&app, &app.token, file).await.len(), 1);
    let no_patients = app.token_for("system/Observation.rs", None);
    assert_eq!(
        get_as(&app, &no_patients, file).await.status(),
        StatusCode::FORBIDDEN
    );
    let missing = format!(
        "{}/bulk-export/{}/9.ndjson",
        app.base,
        url.rsplit('/').next().unwrap()
    );
    assert_eq!(
        get_as(&app, &app.token, &missing).await.status(),
        StatusCode::NOT_FOUND
    );
    for unknown in [
        "bulk-export/not-a-job",
        "bulk-export/6f1c1f5e-3a52-4d5b-9a51-6c3e0b1f2a77",
    ] {
        assert_eq!(app.get(unknown).await.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn cancelling_a_running_export_stops_it_and_deletes_its_files() {
    let app = TestApp::spawn_with(|config| {
        quick(config);
        config.bulk_export.bulk_export_chunk = 1;
    })
    .await;
    let pool = ketamine_fhir::store::build_pool(&app.config).unwrap();
    let context = app.config.write_context(app.config.listen_addr).unwrap();
    ketamine_fhir::seed::synthetic::load(&pool, &context, 60)
        .await
        .unwrap();
    let url = start(&app, &app.token, "$export", &[]).await;

    let started = Instant::now();
    loop {
        let response = get_as(&app, &app.token, &url).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "finished before it could be cancelled"
        );
        let progress = response.headers()["x-progress"]
            .to_str()
            .unwrap()
            .to_string();
        if progress.starts_with("exported ") && !progress.starts_with("exported 0 ") {
            assert!(progress.contains(" of about "), "{progress}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the export did not start: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = app
        .client
        .delete(&url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(json(response).await["resourceType"], "OperationOutcome");
    assert_eq!(
        app.get(&url.replace(&format!("{}/", app.base), ""))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.count_rows("export_jobs").await, 0);
    assert_eq!(app.count_rows("export_chunks").await, 0);

    // The one worker moves on: a later job completes, and nothing of the first remains.
    app.create(&practitioner()).await;
    let next = start(&app, &app.token, "$export", &[("_type", "Practitioner")]).await;
    assert_eq!(
        manifest(&app, &app.token, &next).await["output"][0]["count"],
        1
    );
    assert_eq!(app.count_rows("export_jobs").await, 1);
    assert_eq!(app.count_rows("export_chunks").await, 1);
}

#[tokio::test]
async fn finished_exports_are_deleted_after_the_retention() {
    let app = TestApp::spawn_with(|config| {
        quick(config);
        config.bulk_export.bulk_export_retention = Duration::from_secs(2);
    })
    .await;
    app.create(&patient()).await;
    let url = start(&app, &app.token, "$export", &[("_type", "Patient")]).await;
    let manifest = manifest(&app, &app.token, &url).await;
    let file = manifest["output"][0]["url"].as_str().unwrap();
    assert_eq!(download(&app, &app.token, file).await.len(), 1);
    assert_eq!(app.count_rows("export_chunks").await, 1);

    let started = Instant::now();
    while app.count_rows("export_jobs").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the expired job was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count_rows("export_files").await, 0);
    assert_eq!(app.count_rows("export_chunks").await, 0);
    assert_eq!(
        get_as(&app, &app.token, &url).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_as(&app, &app.token, file).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_kickoffs_are_refused_and_create_no_job() {
    let app = spawn().await;
    let send = |prefer: Option<&'static str>, accept: Option<&'static str>, query: &'static str| {
        let mut request = app
            .client
            .get(format!("{}/$export?{query}", app.base))
            .bearer_auth(&app.token);
        if let Some(prefer) = prefer {
            request = request.header("Prefer", prefer);
        }
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        request.send()
    };
    let fhir = Some("application/fhir+json");
    let cases: [(Option<&str>, Option<&str>, &str, &str); 10] = [
        (None, fhir, "", "Prefer"),
        (Some("return=minimal"), fhir, "", "Prefer"),
        (Some("respond-async"), Some("text/html"), "", "Accept"),
        (
            Some("respond-async"),
            fhir,
            "_type=Patient,Starship",
            "_type",
        ),
        (Some("respond-async"), fhir, "_since=last-tuesday", "_since"),
        (
            Some("respond-async"),
            fhir,
            "_since=2026-11-01T00:00:00+01:00",
            "_since",
        ),
        (
            Some("respond-async"),
            fhir,
            "_outputFormat=application/fhir%2Bjson",
            "_outputFormat",
        ),
        (
            Some("respond-async"),
            fhir,
            "_typeFilter=Observation%3Fcolour%3Dred",
            "_typeFilter",
        ),
        (Some("respond-async"), fhir, "_elements=id", "_elements"),
        (Some("respond-async"), fhir, "_count=5", "_count"),
    ];
    for (prefer, accept, query, expression) in cases {
        let response = send(prefer, accept, query).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{prefer:?} {accept:?} {query}"
        );
        let body = json(response).await;
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(issue_expressions(&body), [expression], "{body}");
    }
    let patients_only = app.token_for("system/Patient.rs", None);
    let response = kick_off(
        &app,
        &patients_only,
        "$export",
        &[("_type", "Patient,Observation")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = kick_off(
        &app,
        &app.token,
        "$export",
        &[("_typeFilter", "Observation?code=8867-4&_sort=date")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count_rows("export_jobs").await, 0);
    let response = app
        .client
        .post(format!("{}/$export", app.base))
        .bearer_auth(&app.token)
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_job_that_cannot_run_fails_with_an_operation_outcome() {
    let app = TestApp::spawn_with(|config| config.bulk_export.bulk_export_workers = 0).await;
    let other_instance = instance_with_a_worker(&app);
    let url = start(&app, &app.token, "$export", &[("_type", "Observation")]).await;
    let response = get_as(&app, &app.token, &url).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-progress"], "queued");
    // A stored filter this server no longer understands (a parameter since removed).
    execute(
        &app,
        r#"UPDATE export_jobs SET types = '[{"type": "Observation", "filters": ["colour=red"]}]'"#,
    )
    .await;
    tokio::spawn(other_instance.run_until_stopped());

    let started = Instant::now();
    let response = loop {
        let response = get_as(&app, &app.token, &url).await;
        if response.status() != StatusCode::ACCEPTED {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the job did not fail"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = json(response).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "exception");
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.starts_with("The export stopped: ") && diagnostics.contains("colour"),
        "{diagnostics}"
    );
}

#[tokio::test]
async fn another_instance_takes_over_a_job_whose_lease_lapsed() {
    let app = TestApp::spawn_with(|config| config.bulk_export.bulk_export_workers = 0).await;
    let other_instance = instance_with_a_worker(&app);
    let patients = [
        id_of(&app.create(&patient()).await),
        id_of(&app.create(&patient()).await),
    ];
    let url = start(&app, &app.token, "$export", &[("_type", "Patient")]).await;
    // As left by an instance that died while holding the job.
    execute(
        &app,
        "UPDATE export_jobs SET status = 'running', lease_holder = '00000000-0000-4000-8000-000000000001', \
         lease_until = now() - interval '1 second'",
    )
    .await;
    tokio::spawn(other_instance.run_until_stopped());

    let manifest = manifest(&app, &app.token, &url).await;
    let exported = exported(&app, &app.token, &manifest).await;
    assert_eq!(ids(&exported["Patient"]), patients);
}

#[tokio::test]
async fn the_capability_statement_lists_the_export_operations() {
    let app = spawn().await;
    let statement = json(app.get_anonymous("metadata").await).await;
    assert!(
        statement["instantiates"]
            .as_array()
            .unwrap()
            .contains(&json!(
                "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
            ))
    );
    let rest = &statement["rest"][0];
    assert_eq!(
        rest["operation"],
        json!([{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}])
    );
    let operation_of = |resource_type: &str| {
        rest["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == resource_type)
            .unwrap()["operation"]
            .clone()
    };
    assert!(
        operation_of("Patient")
            .as_array()
            .unwrap()
            .iter()
            .any(|operation| operation["definition"]
                == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export")
    );
    assert_eq!(
        operation_of("Group")[0]["definition"],
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
    );
}
