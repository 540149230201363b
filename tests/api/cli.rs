//! The binary's subcommands, run as a user would run them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{TestApp, create_database, json};

/// The built binary, set up for `app`'s database and keys.
pub fn binary(app: &TestApp) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ketamine-fhir"));
    command
        .env("DATABASE_URL", &app.database_url)
        .env("JWT_PRIVATE_KEY_FILE", &app.config.jwt_private_key_file)
        .env("JWT_PUBLIC_KEY_FILE", &app.config.jwt_public_key_file)
        .env("JWT_ISSUER", &app.config.jwt_issuer)
        .env("JWT_AUDIENCE", &app.config.jwt_audience)
        .env("LOG_FORMAT", "json")
        // Error messages are asserted as users see them, without a developer's backtrace.
        .env("RUST_BACKTRACE", "0");
    command
}

/// A free loopback port for a server the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 20 s) until the server on `port` answers `/readyz` with 200.
pub async fn wait_until_ready(client: &reqwest::Client, port: u16) {
    let ready_url = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(response) = client.get(&ready_url).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server on port {port} did not become ready");
}

/// Sends SIGTERM and waits (at most 15 s) for the process to exit.
pub async fn stop_with_sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopped = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the server did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn token_prints_only_a_token_that_the_server_honours() {
    let app = TestApp::spawn().await;
    let output = binary(&app)
        .args([
            "token",
            "--subject",
            "cli-user",
            "--scope",
            "system/Patient.rs",
            "--ttl",
            "120",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.strip_suffix('\n').unwrap();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {stdout:?}");
    assert!(!token.contains(char::is_whitespace));
    let read = app.get_as(token, "Patient").await;
    assert_eq!(read.status(), StatusCode::OK);
    let write = app
        .post_as(token, "Patient", &crate::helpers::patient())
        .await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn seed_demo_loads_the_clinic_once_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let expected = ketamine_fhir::seed::demo_resources().len() as i64;
    for _ in 0..2 {
        let status = binary(&app)
            .args(["seed", "--demo"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(app.count_rows("resources").await, expected);
        assert_eq!(app.count_rows("resource_versions").await, expected);
    }
    assert_eq!(
        json(app.get("Patient?_summary=count").await).await["total"],
        50
    );
    let series = json(
        app.get("MedicationAdministration?patient=demo-patient-01&_total=accurate")
            .await,
    )
    .await;
    let infusions = series["total"].as_i64().unwrap();
    assert!((4..=6).contains(&infusions), "{infusions} infusions");
    let heart_rates = json(
        app.get("Observation?patient=demo-patient-01&code=http://loinc.org|8867-4")
            .await,
    )
    .await;
    assert_eq!(heart_rates["total"].as_i64().unwrap(), infusions * 3);
}

#[tokio::test]
async fn migrate_applies_once_and_readiness_follows() {
    let app = TestApp::spawn().await;
    let output = binary(&app).arg("migrate").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ready = app.get_root("readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn serve_migrates_an_empty_database_and_stops_cleanly_on_sigterm() {
    let app = TestApp::spawn().await;
    let database_url = create_database().await;
    let port = free_port();
    let mut child = binary(&app)
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SHUTDOWN_TIMEOUT_SECONDS", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_ready(&app.client, port).await;
    let status = stop_with_sigterm(&mut child).await;
    assert!(status.success(), "serve exited with {status}");
}
