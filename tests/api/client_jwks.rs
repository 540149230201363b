//! SMART Backend Services clients whose keys are at a JWKS URL: fetched through the egress
//! policy, cached, refetched for a new kid (at most once per 10 s), and every failure to
//! fetch an `invalid_client` refusal.

use ketamine_fhir::config::Networks;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, json, patient};
use crate::served::{Served, unreachable_url};
use crate::smart::{ClientKey, assert_refused, assertion, client_cli, es384_key, request_token};

fn register_url(app: &TestApp, client_id: &str, url: &str, scope: &str) {
    client_cli(
        app,
        &[
            "register",
            "--client-id",
            client_id,
            "--jwks-url",
            url,
            "--scope",
            scope,
        ],
    );
}

fn key_set(keys: &[&ClientKey]) -> serde_json::Value {
    json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()})
}

#[tokio::test]
async fn a_url_client_gets_tokens_and_its_rotated_key_is_fetched_once() {
    let app = TestApp::spawn().await;
    let idp = Served::start();
    let first = es384_key("first");
    idp.set("/jwks.json", key_set(&[&first]));
    register_url(&app, "lab-bot", &idp.url("/jwks.json"), "system/Patient.rs");
    app.create(&patient()).await;

    let response = request_token(
        &app,
        &assertion(&app, &first, "lab-bot", json!({})),
        "system/Patient.rs",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = json(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(json(app.get_as(&token, "Patient").await).await["total"], 1);
    let again = request_token(
        &app,
        &assertion(&app, &first, "lab-bot", json!({})),
        "system/Patient.rs",
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(idp.fetches("/jwks.json"), 1, "the cached key set is used");

    let second = es384_key("second");
    idp.set("/jwks.json", key_set(&[&second]));
    let rotated = request_token(
        &app,
        &assertion(&app, &second, "lab-bot", json!({})),
        "system/Patient.rs",
    )
    .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    assert_eq!(
        idp.fetches("/jwks.json"),
        2,
        "an unknown kid fetches the set again"
    );

    let ghost = es384_key("ghost");
    let refused = request_token(
        &app,
        &assertion(&app, &ghost, "lab-bot", json!({})),
        "system/Patient.rs",
    )
    .await;
    let no_key = "no registered key of the client has that kid";
    assert_refused(refused, StatusCode::UNAUTHORIZED, "invalid_client", no_key).await;
    assert_eq!(
        idp.fetches("/jwks.json"),
        2,
        "no refetch within 10 s of the last"
    );
}

#[tokio::test]
async fn a_jwks_url_the_egress_policy_denies_is_invalid_client() {
    let app = TestApp::spawn_with(|config| {
        config.webhooks.webhook_allow_networks = Networks(Vec::new());
    })
    .await;
    let idp = Served::start();
    let key = es384_key("k1");
    idp.set("/jwks.json", key_set(&[&key]));
    let url = idp.url("/jwks.json");
    register_url(&app, "bot", &url, "system/*.rs");
    let response = request_token(
        &app,
        &assertion(&app, &key, "bot", json!({})),
        "system/*.rs",
    )
    .await;
    let denied = format!(
        "the client's JWKS is unavailable: {url} is refused by the egress policy: endpoint address 127.0.0.1 is not allowed: private, loopback and link-local addresses are denied"
    );
    assert_refused(
        response,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        &denied,
    )
    .await;
    assert_eq!(idp.fetches("/jwks.json"), 0);
}

#[tokio::test]
async fn an_unreachable_jwks_url_is_invalid_client() {
    let app = TestApp::spawn().await;
    let url = unreachable_url();
    register_url(&app, "bot", &url, "system/*.rs");
    let key = es384_key("k1");
    let response = request_token(
        &app,
        &assertion(&app, &key, "bot", json!({})),
        "system/*.rs",
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = json(response).await;
    assert_eq!(body["error"], "invalid_client");
    let description = body["error_description"].as_str().unwrap();
    let expected = format!("the client's JWKS is unavailable: {url} could not be fetched: ");
    assert!(description.starts_with(&expected), "{description}");
}

#[tokio::test]
async fn register_takes_exactly_one_key_source_and_enable_undoes_disable() {
    let app = TestApp::spawn().await;
    let both = crate::cli::binary(&app)
        .args([
            "client",
            "register",
            "--client-id",
            "x",
            "--scope",
            "system/*.rs",
        ])
        .args([
            "--jwks-file",
            "/dev/null",
            "--jwks-url",
            "https://keys.example/jwks",
        ])
        .output()
        .unwrap();
    assert!(!both.status.success());
    let neither = crate::cli::binary(&app)
        .args([
            "client",
            "register",
            "--client-id",
            "x",
            "--scope",
            "system/*.rs",
        ])
        .output()
        .unwrap();
    assert!(!neither.status.success());
    let not_http = crate::cli::binary(&app)
        .args([
            "client",
            "register",
            "--client-id",
            "x",
            "--scope",
            "system/*.rs",
        ])
        .args(["--jwks-url", "file:///etc/passwd"])
        .output()
        .unwrap();
    assert!(!not_http.status.success());
    assert_eq!(
        String::from_utf8_lossy(&not_http.stderr).trim(),
        "Error: the JWKS URL must be http or https"
    );
    assert_eq!(app.count_rows("smart_clients").await, 0);

    register_url(&app, "bot", "https://keys.example/jwks", "system/*.rs");
    client_cli(&app, &["disable", "--client-id", "bot"]);
    assert_eq!(client_cli(&app, &["list"]), "bot disabled system/*.rs\n");
    client_cli(&app, &["enable", "--client-id", "bot"]);
    assert_eq!(client_cli(&app, &["list"]), "bot enabled system/*.rs\n");
}
