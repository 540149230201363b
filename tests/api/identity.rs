//! Signing-key rotation: tokens of a previous key stay valid, `/.well-known/jwks.json`
//! lists every honoured key, and a key the server was not given is refused.

use ketamine_fhir::auth::{jwt::issue_token, keys};
use ketamine_fhir::config::Config;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{FULL_ACCESS, TestApp, json, outcome_diagnostics, patient};

/// A fresh key pair in its own directory; returns a config signing with it.
fn key_pair(base: &Config) -> Config {
    let dir = std::env::temp_dir().join(format!("rotated-keys-{}", uuid::Uuid::new_v4()));
    let mut config = base.clone();
    config.jwt_private_key_file = dir.join("private.pem");
    config.jwt_public_key_file = dir.join("public.pem");
    keys::generate_if_missing(&config.jwt_private_key_file, &config.jwt_public_key_file).unwrap();
    config
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn a_token_of_a_previous_key_is_honoured_and_listed_in_the_jwks() {
    let old = key_pair(&Config::local_defaults());
    let old_public = old.jwt_public_key_file.clone();
    let app = TestApp::spawn_with(|config| {
        config.jwt_previous_public_key_files = vec![old_public];
    })
    .await;
    app.create(&patient()).await;
    let old_token = issue_token(&old, "before-rotation", FULL_ACCESS, None, 300).unwrap();
    assert_ne!(kid_of(&old_token), kid_of(&app.token));
    let bundle = json(app.get_as(&old_token, "Patient").await).await;
    assert_eq!(bundle["total"], 1);
    let current = json(app.get_as(&app.token, "Patient").await).await;
    assert_eq!(current["total"], 1);
    let jwks = json(app.get_root(".well-known/jwks.json").await).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [kid_of(&app.token), kid_of(&old_token)]);
}

#[tokio::test]
async fn a_token_of_a_key_not_configured_is_refused() {
    let app = TestApp::spawn().await;
    let stranger = key_pair(&app.config);
    let token = issue_token(&stranger, "intruder", FULL_ACCESS, None, 300).unwrap();
    let response = app.get_as(&token, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        [
            "the access token's signing key (kid) is not this server's; the signature cannot be verified"
        ]
    );
}

#[tokio::test]
async fn a_token_without_kid_is_checked_with_the_current_key_only() {
    let old = key_pair(&Config::local_defaults());
    let old_public = old.jwt_public_key_file.clone();
    let app = TestApp::spawn_with(|config| {
        config.jwt_previous_public_key_files = vec![old_public];
    })
    .await;
    let without_kid = |config: &Config| {
        let pem = std::fs::read(&config.jwt_private_key_file).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": config.jwt_issuer, "aud": config.jwt_audience,
            "sub": "no-kid", "exp": now + 300, "nbf": now, "scope": FULL_ACCESS});
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let current = app.get_as(&without_kid(&app.config), "Patient").await;
    assert_eq!(current.status(), StatusCode::OK);
    let previous = app.get_as(&without_kid(&old), "Patient").await;
    assert_eq!(previous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        outcome_diagnostics(&json(previous).await),
        ["the access token signature does not verify"]
    );
}
