use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, json, outcome_diagnostics, patient};

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "Patient")
        .header("Content-Type", "application/fhir+json")
        .body("{\n  \"resourceType\": \"Patient\",\n  \"gender\": \n}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics[0].starts_with("Malformed JSON at line 4 column 1"),
        "{diagnostics:?}"
    );
    assert_eq!(app.count_rows("resources").await, 0);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "Patient")
        .header("Content-Type", "application/xml")
        .body("<Patient/>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics[0].contains("application/fhir+json"),
        "{diagnostics:?}"
    );
}

#[tokio::test]
async fn plain_application_json_is_accepted() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "Patient")
        .header("Content-Type", "application/json; charset=utf-8")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_resource_type_is_404() {
    let app = TestApp::spawn().await;
    let response = app.get("Spaceship/1").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(
        diagnostics[0].contains("'Spaceship' is not supported"),
        "{diagnostics:?}"
    );
}

#[tokio::test]
async fn unsupported_interaction_is_405() {
    let app = TestApp::spawn().await;
    let response = app.request(Method::PATCH, "Patient").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(response).await["issue"][0]["code"], "not-supported");
}

#[tokio::test]
async fn oversized_body_is_413_and_stores_nothing() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 2_000).await;
    let mut big = patient();
    big["name"][0]["text"] = json!("x".repeat(5_000));
    let response = app.post("Patient", &big).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let diagnostics = outcome_diagnostics(&json(response).await);
    assert!(diagnostics[0].contains("2000 bytes"), "{diagnostics:?}");
    assert_eq!(app.count_rows("resources").await, 0);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_echoed() {
    let app = TestApp::spawn().await;
    let response = app.get("Patient/none").await;
    assert!(!response.headers()["x-request-id"].is_empty());
    let response = app
        .request(Method::GET, "metadata")
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn database_outage_gives_fast_503_and_recovery_needs_no_restart() {
    let app = TestApp::spawn_with(|config| config.db_acquire_timeout_ms = 1_000).await;
    let created = app.create(&patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let database = app.database_url.rsplit('/').next().unwrap().to_string();
    // Make the database refuse new connections and end the pooled ones.
    let admin = std::env::var("TEST_DATABASE_URL").unwrap();
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&admin)
            .await
            .unwrap();
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app.get(&path).await;
        statuses.push(response.status());
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(json(response).await["issue"][0]["code"], "transient");
        }
    }
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        app.get_root("readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    diesel::sql_query(format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let mut recovered = false;
    for _ in 0..20 {
        if app.get(&path).await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "the server did not recover after the database came back"
    );
}

/// A corpus of malformed and hostile bodies: each is refused with a 4xx OperationOutcome
/// (exact status, and the reason in its first diagnostic), and nothing is stored.
#[tokio::test]
async fn hostile_bodies_get_a_4xx_outcome_and_change_nothing() {
    let app = TestApp::spawn().await;
    let patient_text = |inner: &str| format!(r#"{{"resourceType": "Patient", {inner}}}"#);
    let deep = format!(
        r#"{{"resourceType": "Patient", "extension": {}{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let many_names = format!(
        r#"{{"resourceType": "Patient", "name": [{}]}}"#,
        vec![r#"{"family": "x"}"#; 30_000].join(",")
    );
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            deep.into_bytes(),
            StatusCode::BAD_REQUEST,
            "Malformed JSON at line 1 column 105: the document nests deeper than 64 levels",
        ),
        (
            b"{\"resourceType\": \"Patient\", \"gender\": \"fe\xffmale\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "Malformed JSON at line 1",
        ),
        (
            patient_text(r#""gender": "male", "gender": "female""#).into_bytes(),
            StatusCode::BAD_REQUEST,
            ": duplicate key \"gender\"",
        ),
        (
            patient_text(r#""name": [{"family": "\ud800"}]"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "Malformed JSON at line 1",
        ),
        (
            patient_text(r#""multipleBirthInteger": 99999999999999999999999"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "Expected a value of type integer",
        ),
        (
            patient_text(r#""birthDate": "1975-04-12", "extension": [{"url": "http://example.org/x", "valueDecimal": 1e400}]"#)
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "'1e+400' is not a valid decimal",
        ),
        (
            patient_text(r#""text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>"}"#)
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "Narrative.div may not contain <script> elements (txt-1)",
        ),
        (
            patient_text(r#""name": [{"family": "Ok\u0000afor"}]"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "A string must not contain control characters",
        ),
        (
            patient_text(r#""birthDate": "2024-01-0é""#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "'2024-01-0é' is not a valid date",
        ),
        (
            patient_text(r#""birthDate": "1975-04-12", "name": [{"given": [1, 2, 3]}]"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "Expected a value of type string",
        ),
        (
            many_names.into_bytes(),
            StatusCode::BAD_REQUEST,
            ": the document has more than 50000 values",
        ),
    ];
    for (body, status, diagnostic) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(160)]).to_string();
        let response = app
            .request(Method::POST, "Patient")
            .header("Content-Type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .unwrap();
        let actual = response.status();
        let outcome = json(response).await;
        assert_eq!(actual, status, "{shown}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{shown}");
        let diagnostics = outcome_diagnostics(&outcome);
        assert!(
            diagnostics[0].contains(diagnostic),
            "{shown}: {diagnostics:?}"
        );
    }
    assert_eq!(app.count_rows("resource_versions").await, 0);
}
