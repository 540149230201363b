//! The HTTP edge: security headers, CORS, per-client rate limits, secrets read from files
//! and logs that carry no patient data.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::{binary, free_port, stop_with_sigterm, wait_until_ready};
use crate::helpers::{FULL_ACCESS, TestApp, create_database, json, outcome_diagnostics};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn api_responses_carry_security_headers_and_are_not_cached() {
    let app = TestApp::spawn().await;
    let response = app.get("Patient").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&response, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&response, "referrer-policy"), Some("no-referrer"));
    assert_eq!(
        header(&response, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert!(
        header(&response, "strict-transport-security").is_some_and(|v| v.starts_with("max-age="))
    );

    let denied = app.get_anonymous("Patient").await;
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&denied, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&denied, "cache-control"), Some("no-store"));

    let explorer = app.get_root("docs/").await;
    assert_eq!(explorer.status(), StatusCode::OK);
    let policy = header(&explorer, "content-security-policy").unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    assert_eq!(header(&explorer, "cache-control"), None);
}

#[tokio::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let app = TestApp::spawn().await;
    let response = app
        .request(reqwest::Method::GET, "Patient")
        .header("Origin", "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn configured_origins_get_cors_and_others_do_not() {
    let app = TestApp::spawn_with(|config| {
        config.edge.cors_allowed_origins = vec!["https://app.example.org".into()];
    })
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/Patient", app.base))
        .header("Origin", "https://app.example.org")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, if-match",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some("https://app.example.org")
    );
    let allowed_headers = header(&preflight, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in ["authorization", "content-type", "if-match"] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }

    let created = app
        .request(reqwest::Method::POST, "Patient")
        .header("Origin", "https://app.example.org")
        .header("Content-Type", "application/fhir+json")
        .body(crate::helpers::patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        header(&created, "access-control-allow-origin"),
        Some("https://app.example.org")
    );
    let exposed = header(&created, "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("etag") && exposed.contains("location"),
        "{exposed}"
    );

    let stranger = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/Patient", app.base))
        .header("Origin", "https://evil.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&stranger, "access-control-allow-origin"), None);
    assert_ne!(stranger.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_and_others_are_unaffected() {
    let app = TestApp::spawn_with(|config| {
        config.edge.rate_limit_per_second = 1;
        config.edge.rate_limit_burst = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get("Patient").await.status(), StatusCode::OK);
    }
    let limited = app.get("Patient").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let body = json(limited).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "throttled");
    assert!(body.get("entry").is_none());

    let other_client = ketamine_fhir::auth::jwt::issue_token(
        &app.config,
        "another-partner",
        FULL_ACCESS,
        None,
        600,
    )
    .unwrap();
    assert_eq!(
        app.get_as(&other_client, "Patient").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get_root("healthz").await.status(), StatusCode::OK);
    assert_eq!(app.get_root("readyz").await.status(), StatusCode::OK);
}

/// The server started from the binary with its database URL in a file (and a wrong one in
/// the environment), then asked about a patient in every way that could echo the patient's
/// name or identifier: none of it reaches the log, nor does the database password.
#[tokio::test]
async fn database_url_from_a_file_and_no_patient_data_in_logs() {
    let app = TestApp::spawn().await;
    let database_url = create_database().await;
    let secret_dir =
        std::env::temp_dir().join(format!("ketamine-secret-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&secret_dir).unwrap();
    let url_file = secret_dir.join("database-url");
    std::fs::write(&url_file, format!("{database_url}\n")).unwrap();
    let port = free_port();
    let log_file = secret_dir.join("server.log");
    let mut child = binary(&app)
        .arg("serve")
        .env("DATABASE_URL", "postgres://nobody:wrong@127.0.0.1:1/none")
        .env("DATABASE_URL_FILE", &url_file)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SHUTDOWN_TIMEOUT_SECONDS", "5")
        .stdout(std::fs::File::create(&log_file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_ready(&app.client, port).await;

    let base = format!("http://127.0.0.1:{port}/fhir");
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "MRN-PHI-77310"}],
        "name": [{"family": "Quixotemarsh", "given": ["Zebediah"]}],
        "birthDate": "1970-01-01"
    });
    let send = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = app
            .client
            .request(method, format!("{base}/{path}"))
            .bearer_auth(&app.token)
            .header("Content-Type", "application/fhir+json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        request.send()
    };
    let created = send(reqwest::Method::POST, "Patient", Some(patient.clone()))
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let searched = send(
        reqwest::Method::GET,
        "Patient?name=Zebediah&identifier=MRN-PHI-77310",
        None,
    )
    .await
    .unwrap();
    assert_eq!(json(searched).await["total"], 1);
    let mut invalid = patient.clone();
    invalid["birthDate"] = json!("Zebediah-Quixotemarsh");
    let refused = send(reqwest::Method::POST, "Patient", Some(invalid))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let diagnostics = outcome_diagnostics(&json(refused).await).join(" ");
    assert!(
        diagnostics.contains("Zebediah-Quixotemarsh"),
        "{diagnostics}"
    );
    let missing = send(reqwest::Method::GET, "Patient/Zebediah-Quixotemarsh", None)
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let status = stop_with_sigterm(&mut child).await;
    assert!(status.success(), "serve exited with {status}");
    let mut log = std::fs::read_to_string(&log_file).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("request served"),
        "the server logged no requests: {log}"
    );
    let password = database_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    for secret in ["Zebediah", "Quixotemarsh", "MRN-PHI-77310", password] {
        assert!(!log.contains(secret), "the log contains {secret:?}");
    }
    std::fs::remove_dir_all(&secret_dir).unwrap();
}

/// The explorer's content security policy still lets the Swagger UI load its scripts,
/// fetch the OpenAPI document and render the operations, in a real browser.
#[tokio::test]
async fn the_swagger_ui_renders_under_its_content_security_policy() {
    let chromium = crate::report::chromium();
    let app = TestApp::spawn().await;
    let profile =
        std::env::temp_dir().join(format!("ketamine-docs-{}", uuid::Uuid::new_v4().simple()));
    let run = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("{}/docs/", app.root))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .expect("chromium did not finish within 90 s")
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium exited with {}",
        output.status
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("opblock"),
        "no operations rendered: {}",
        &dom[..dom.len().min(2000)]
    );
    assert!(
        dom.contains("/fhir/Patient/{id}"),
        "the Patient read is not listed"
    );
}
