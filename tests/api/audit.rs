//! The audit trail: every interaction and refusal leaves one AuditEvent, auditors search
//! them, nobody changes them, and a read whose audit cannot be written is not returned.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use ketamine_fhir::config::{AuditDurability, Config};
use ketamine_fhir::store::{self, Pool};

use crate::helpers::{TestApp, create_database, heart_rate, json};
use crate::smart::{assertion, es384_key, register, request_token};

const AUDITOR: &str = "system/AuditEvent.rs";

fn patient() -> Value {
    json!({"resourceType": "Patient", "name": [{"family": "Audited"}]})
}

/// The AuditEvents an auditor finds with `query`.
async fn audit_search(app: &TestApp, query: &str) -> Value {
    let auditor = app.token_for(AUDITOR, None);
    let response = app.get_as(&auditor, &format!("AuditEvent?{query}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}

fn events(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

async fn sql(database_url: &str, statement: &str) -> Result<usize, diesel::result::Error> {
    let mut conn = AsyncPgConnection::establish(database_url).await.unwrap();
    diesel::sql_query(statement).execute(&mut conn).await
}

#[tokio::test]
async fn a_read_leaves_one_audit_event_with_agent_entity_patient_outcome_and_request_id() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .request(Method::GET, &format!("Patient/{id}"))
        .header("X-Request-Id", "audit-read-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let found = events(&audit_search(&app, "request-id=audit-read-1").await);
    assert_eq!(found.len(), 1, "{found:?}");
    let event = &found[0];
    assert_eq!(event["subtype"][0]["code"], "read");
    assert_eq!(event["type"]["code"], "rest");
    assert_eq!(event["action"], "R");
    assert_eq!(event["outcome"], "0");
    assert_eq!(
        event["agent"][0]["who"]["identifier"]["value"],
        "test-suite"
    );
    assert_eq!(event["agent"][0]["requestor"], true);
    assert_eq!(event["agent"][0]["network"]["address"], "127.0.0.1");
    let target = format!("Patient/{id}");
    assert_eq!(event["entity"][0]["what"]["reference"], target.as_str());
    assert_eq!(event["entity"][1]["what"]["reference"], target.as_str());
    assert_eq!(event["entity"][1]["role"]["code"], "1");
    assert_eq!(
        event["entity"][2]["detail"][0]["valueString"],
        "audit-read-1"
    );
    let by_patient =
        events(&audit_search(&app, &format!("patient=Patient/{id}&subtype=read")).await);
    assert_eq!(by_patient.len(), 1);
}

#[tokio::test]
async fn a_search_and_a_create_are_audited_with_their_query_and_action() {
    let app = TestApp::spawn().await;
    app.create(&patient()).await;
    let search = app.get("Patient?family=Audited").await;
    assert_eq!(search.status(), StatusCode::OK);
    let searches = events(&audit_search(&app, "subtype=search-type").await);
    assert_eq!(searches.len(), 1);
    assert_eq!(searches[0]["entity"][0]["what"]["reference"], "Patient");
    use base64::Engine;
    let query = base64::engine::general_purpose::STANDARD.encode("family=Audited");
    assert_eq!(searches[0]["entity"][1]["query"], query.as_str());
    let creates = events(&audit_search(&app, "action=C&outcome=0").await);
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["subtype"][0]["code"], "create");
    // A refused write leaves a failure audit and no success audit.
    let invalid = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "gender": "x"}),
        )
        .await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        events(&audit_search(&app, "action=C&outcome=4").await).len(),
        1
    );
    assert_eq!(
        events(&audit_search(&app, "action=C&outcome=0").await).len(),
        1
    );
}

#[tokio::test]
async fn refusals_401_403_and_429_are_audited_as_minor_failures() {
    let app = TestApp::spawn_with(|config| {
        config.edge.rate_limit_per_second = 1;
        config.edge.rate_limit_burst = 3;
    })
    .await;
    let missing = app.get_anonymous("Patient").await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let narrow = app.token_for("system/Observation.rs", None);
    let forbidden = app.get_as(&narrow, "Patient").await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let mut limited = 0;
    for _ in 0..6 {
        if app.get_as(&narrow, "Observation").await.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited > 0);
    let rows = app
        .count_rows("audit_events WHERE outcome = '4' AND agent IS NULL")
        .await;
    assert_eq!(rows, 1);
    let refused = app
        .count_rows("audit_events WHERE outcome = '4' AND content->>'outcomeDesc' = 'HTTP 403'")
        .await;
    assert_eq!(refused, 1);
    let throttled = app
        .count_rows("audit_events WHERE outcome = '4' AND content->>'outcomeDesc' = 'HTTP 429'")
        .await;
    assert_eq!(throttled, limited);
}

#[tokio::test]
async fn an_auditor_searches_by_date_agent_patient_and_outcome() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = app.token_for("system/*.rs", None);
    for _ in 0..2 {
        assert_eq!(
            app.get(&format!("Patient/{id}")).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        app.get_as(&other, "Patient/missing").await.status(),
        StatusCode::NOT_FOUND
    );
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let all = events(&audit_search(&app, &format!("date=ge{today}&date=lt{tomorrow}")).await);
    assert_eq!(all.len(), 4, "{all:?}");
    let none = events(&audit_search(&app, &format!("date=ge{tomorrow}")).await);
    assert!(none.is_empty());
    let agent = events(&audit_search(&app, "agent=test-suite").await);
    // Every token here has subject test-suite: the create, three reads, two searches.
    assert_eq!(agent.len(), 6, "{agent:?}");
    // The create (its Patient is the patient) and the two reads.
    let patient = events(&audit_search(&app, &format!("patient={id}")).await);
    assert_eq!(patient.len(), 3);
    let failed = events(&audit_search(&app, "outcome=4").await);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["entity"][0]["what"]["reference"],
        "Patient/missing"
    );
    let reader = app.token_for("system/Patient.rs", None);
    let refused = app.get_as(&reader, "AuditEvent").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn clients_cannot_write_audit_events_and_sql_cannot_change_them() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("Patient").await.status(), StatusCode::OK);
    let before = app.count_rows("audit_events").await;
    let event = json!({"resourceType": "AuditEvent", "id": "x"});
    for (method, path) in [
        (Method::POST, "AuditEvent"),
        (Method::PUT, "AuditEvent/x"),
        (Method::DELETE, "AuditEvent/x"),
        (Method::PATCH, "AuditEvent/x"),
    ] {
        let response = app.send_json(method.clone(), path, &event).await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let body = json(response).await;
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    // Each refusal is itself audited, nothing else changed.
    assert_eq!(app.count_rows("audit_events").await, before + 4);
    let update = sql(&app.database_url, "UPDATE audit_events SET outcome = '0'").await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sql(&app.database_url, "DELETE FROM audit_events").await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    assert_eq!(app.count_rows("audit_events").await, before + 4);
}

#[tokio::test]
async fn a_read_whose_audit_cannot_be_written_is_503_and_works_after_recovery() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("Patient/{id}");
    // The server connects as the table's owner: a constraint no row meets refuses it.
    sql(
        &app.database_url,
        "ALTER TABLE audit_events ADD CONSTRAINT refuse_all CHECK (false) NOT VALID",
    )
    .await
    .unwrap();
    let refused = app.get(&path).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(refused).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(body.to_string().find("Audited").is_none(), "{body}");
    sql(
        &app.database_url,
        "ALTER TABLE audit_events DROP CONSTRAINT refuse_all",
    )
    .await
    .unwrap();
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    let reads = app.count_rows("audit_events WHERE subtype = 'read'").await;
    assert_eq!(reads, 1);
}

/// One writer and batches of at most 4: concurrent reads are committed together, and each
/// still leaves exactly its own AuditEvent before its answer is released.
#[tokio::test]
async fn concurrent_reads_share_commits_and_each_is_audited_once() {
    concurrent_reads_are_each_audited_once(AuditDurability::Flushed).await;
}

/// `AUDIT_DURABILITY=committed` relaxes when a read's event is safe enough, not whether
/// it is written: every read still leaves its own event before it is answered.
#[tokio::test]
async fn with_committed_audit_durability_each_concurrent_read_is_still_audited_once() {
    concurrent_reads_are_each_audited_once(AuditDurability::Committed).await;
}

async fn concurrent_reads_are_each_audited_once(durability: AuditDurability) {
    let app = TestApp::spawn_with(|config| {
        config.audit.audit_writers = 1;
        config.audit.audit_batch_max = 4;
        config.audit.audit_durability = durability;
    })
    .await;
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reads = (0..24).map(|n| {
        let request = app
            .request(Method::GET, &format!("Patient/{id}"))
            .header("X-Request-Id", format!("batched-read-{n}"));
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(reads).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );

    let read_events = events(&audit_search(&app, "subtype=read&_count=100").await);
    let mut request_ids: Vec<String> = read_events
        .iter()
        .map(|event| {
            event["entity"][2]["detail"][0]["valueString"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    request_ids.sort();
    let mut expected: Vec<String> = (0..24).map(|n| format!("batched-read-{n}")).collect();
    expected.sort();
    assert_eq!(request_ids, expected);
}

/// `synchronous_commit` of a connection from `pool`.
async fn synchronous_commit(pool: &Pool) -> String {
    let mut conn = pool.get().await.unwrap();
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_setting('synchronous_commit')",
    ))
    .get_result(&mut conn)
    .await
    .unwrap()
}

/// Only the audit writers' commits stop waiting for the WAL flush, and only when asked
/// to: the requests' transactions, which hold every write with its own event, always wait.
#[tokio::test]
async fn committed_audit_durability_relaxes_only_the_audit_writers_commits() {
    let mut config = Config::local_defaults();
    config.database_url = create_database().await;
    config.db_pool_size = 2;
    // The test server may run with it off for speed; this database starts from PostgreSQL's default.
    sql(
        &config.database_url,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = on', current_database()); END $$",
    )
    .await
    .unwrap();
    let flushed_audit = store::build_audit_pool(&config).unwrap();
    assert_eq!(synchronous_commit(&flushed_audit).await, "on");

    config.audit.audit_durability = AuditDurability::Committed;
    let committed_audit = store::build_audit_pool(&config).unwrap();
    assert_eq!(synchronous_commit(&committed_audit).await, "off");
    let requests = store::build_request_pool(&config).unwrap();
    assert_eq!(synchronous_commit(&requests).await, "on");
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_string()
}

/// Sends `body` (if any, as FHIR JSON) with `X-Request-Id: request_id`.
async fn send_tagged(
    app: &TestApp,
    method: Method,
    path: &str,
    request_id: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app.request(method, path).header("X-Request-Id", request_id);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string());
    }
    request.send().await.unwrap()
}

/// The one AuditEvent of the request sent with `X-Request-Id: request_id`.
async fn event_of_request(app: &TestApp, request_id: &str) -> Value {
    let found = events(&audit_search(app, &format!("request-id={request_id}")).await);
    assert_eq!(found.len(), 1, "{request_id}: {found:?}");
    found[0].clone()
}

fn references(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entity| entity["what"]["reference"].as_str().map(str::to_string))
        .collect()
}

/// A write's AuditEvent is committed with it: it names the resource written (its new id
/// for a create), the patient it is about and the status the client got, once.
#[tokio::test]
async fn each_write_leaves_one_audit_event_naming_what_it_wrote() {
    let app = TestApp::spawn().await;
    let patient_id = id_of(&app.create(&patient()).await);
    let heart = heart_rate(&patient_id, 72);
    let response = send_tagged(
        &app,
        Method::POST,
        "Observation",
        "audit-create-1",
        Some(&heart),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let observation = json(response).await;
    let observation_id = id_of(&observation);
    let created = event_of_request(&app, "audit-create-1").await;
    assert_eq!(created["subtype"][0]["code"], "create");
    assert_eq!(created["action"], "C");
    assert_eq!(created["outcome"], "0");
    assert_eq!(created["outcomeDesc"], "HTTP 201");
    assert_eq!(
        references(&created),
        [
            format!("Observation/{observation_id}"),
            format!("Patient/{patient_id}")
        ]
    );

    let mut changed = observation.clone();
    changed["valueQuantity"]["value"] = json!(80);
    let response = send_tagged(
        &app,
        Method::PUT,
        &format!("Observation/{observation_id}"),
        "audit-update-1",
        Some(&changed),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated = event_of_request(&app, "audit-update-1").await;
    assert_eq!(updated["outcomeDesc"], "HTTP 200");
    assert_eq!(updated["action"], "U");

    let response = send_tagged(
        &app,
        Method::DELETE,
        &format!("Observation/{observation_id}"),
        "audit-delete-1",
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let deleted = event_of_request(&app, "audit-delete-1").await;
    assert_eq!(deleted["outcomeDesc"], "HTTP 204");
    // The deleted Observation was about the patient: the event still says so.
    assert_eq!(
        references(&deleted),
        [
            format!("Observation/{observation_id}"),
            format!("Patient/{patient_id}")
        ]
    );
}

/// A transaction Bundle writing for two patients leaves one event an auditor finds by
/// either patient.
#[tokio::test]
async fn a_transaction_for_two_patients_is_found_by_either() {
    let app = TestApp::spawn().await;
    let first = id_of(&app.create(&patient()).await);
    let second = id_of(&app.create(&patient()).await);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": heart_rate(&first, 61)},
        {"request": {"method": "POST", "url": "Observation"}, "resource": heart_rate(&second, 62)}
    ]});
    let response = send_tagged(&app, Method::POST, "", "audit-bundle-1", Some(&bundle)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let event = event_of_request(&app, "audit-bundle-1").await;
    assert_eq!(event["outcomeDesc"], "HTTP 200");
    let written = references(&event)
        .into_iter()
        .filter(|reference| reference.starts_with("Observation/"))
        .count();
    assert_eq!(written, 2);
    for patient_id in [&first, &second] {
        let found =
            events(&audit_search(&app, &format!("patient={patient_id}&subtype=batch")).await);
        assert_eq!(found.len(), 1, "{patient_id}");
        assert_eq!(found[0]["id"], event["id"]);
    }
}

/// The write and its audit commit together: when the audit cannot be recorded the write
/// is refused with 503 and nothing of it is stored.
#[tokio::test]
async fn a_write_whose_audit_cannot_be_recorded_is_503_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let patient_id = id_of(&app.create(&patient()).await);
    let resources = app.count_rows("resources").await;
    let versions = app.count_rows("resource_versions").await;
    let index_rows = app.count_rows("search_reference").await;
    sql(
        &app.database_url,
        "ALTER TABLE audit_events ADD CONSTRAINT refuse_all CHECK (false) NOT VALID",
    )
    .await
    .unwrap();
    let response = app.post("Observation", &heart_rate(&patient_id, 70)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(response).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{body}"
    );
    assert_eq!(app.count_rows("resources").await, resources);
    assert_eq!(app.count_rows("resource_versions").await, versions);
    assert_eq!(app.count_rows("search_reference").await, index_rows);
    sql(
        &app.database_url,
        "ALTER TABLE audit_events DROP CONSTRAINT refuse_all",
    )
    .await
    .unwrap();
    let response = app.post("Observation", &heart_rate(&patient_id, 70)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(app.count_rows("resources").await, resources + 1);
}

/// The token endpoint's issues and refusals are User Authentication events (DICOM 110114)
/// with outcome 0 or 4; only an authenticated client is named as the agent (a refused
/// assertion's claimed client is not proof of who sent it).
#[tokio::test]
async fn token_requests_are_audited_as_logins() {
    let app = TestApp::spawn().await;
    let key = es384_key("audit-key");
    register(&app, "audited-client", &[&key], "system/*.rs");
    let signed = assertion(&app, &key, "audited-client", json!({}));
    assert_eq!(
        request_token(&app, &signed, "system/Patient.rs")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        request_token(&app, &signed, "system/Patient.rs")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let logins = events(&audit_search(&app, "subtype=login").await);
    assert_eq!(logins.len(), 2, "{logins:?}");
    let agents = [
        json!({"identifier": {"value": "audited-client"}}),
        Value::Null,
    ];
    for ((event, outcome), agent) in logins.iter().zip(["0", "4"]).zip(agents) {
        assert_eq!(
            event["type"]["system"],
            "http://dicom.nema.org/resources/ontology/DCM"
        );
        assert_eq!(event["type"]["code"], "110114");
        assert_eq!(event["action"], "E");
        assert_eq!(event["outcome"], outcome);
        assert_eq!(event["agent"][0]["who"], agent);
    }
}
