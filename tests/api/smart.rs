//! SMART Backend Services: clients registered through the CLI get access tokens at
//! `/auth/token` with signed assertions (ES384 and RS384), and the endpoint's refusals.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::binary;
use crate::helpers::{TestApp, json, patient};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's key pair: the private key to sign with and its public JWK.
pub(crate) struct ClientKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn es384_key(kid: &str) -> ClientKey {
    use p384::elliptic_curve::sec1::ToEncodedPoint;
    use p384::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p384::SecretKey::random(&mut rand_core::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let point = secret.public_key().to_encoded_point(false);
    ClientKey {
        alg: Algorithm::ES384,
        kid: kid.to_string(),
        encoding: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384",
            "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
    }
}

pub(crate) fn rs384_key(kid: &str) -> ClientKey {
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let pem = private.to_pkcs1_pem(LineEnding::LF).unwrap();
    ClientKey {
        alg: Algorithm::RS384,
        kid: kid.to_string(),
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS384",
            "n": b64(&private.n().to_bytes_be()), "e": b64(&private.e().to_bytes_be())}),
    }
}

/// Runs `ketamine-fhir client ARGS...` and returns its stdout.
pub(crate) fn client_cli(app: &TestApp, args: &[&str]) -> String {
    let output = binary(app).arg("client").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub(crate) fn register(app: &TestApp, client_id: &str, keys: &[&ClientKey], scope: &str) {
    let file = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
    let jwks = json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()});
    std::fs::write(&file, jwks.to_string()).unwrap();
    let path = file.to_str().unwrap();
    client_cli(
        app,
        &[
            "register",
            "--client-id",
            client_id,
            "--jwks-file",
            path,
            "--scope",
            scope,
        ],
    );
}

pub(crate) fn token_url(app: &TestApp) -> String {
    format!("{}/auth/token", app.root)
}

/// A signed assertion of `client_id` with these claims changed.
pub(crate) fn assertion(app: &TestApp, key: &ClientKey, client_id: &str, changes: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"iss": client_id, "sub": client_id, "aud": token_url(app),
        "exp": now + 240, "jti": uuid::Uuid::new_v4().to_string()});
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

pub(crate) async fn request_token(
    app: &TestApp,
    assertion: &str,
    scope: &str,
) -> reqwest::Response {
    app.client
        .post(token_url(app))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap()
}

pub(crate) async fn assert_refused(
    response: reqwest::Response,
    status: StatusCode,
    error: &str,
    text: &str,
) {
    assert_eq!(response.status(), status);
    assert_eq!(
        json(response).await,
        json!({"error": error, "error_description": text})
    );
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The full flow for one client: register, list, get a token, read but not write.
async fn backend_flow(key: ClientKey) {
    let app = TestApp::spawn().await;
    register(
        &app,
        "payer-bot",
        &[&key],
        "system/Patient.rs system/Observation.rs",
    );
    assert_eq!(
        client_cli(&app, &["list"]),
        "payer-bot enabled system/Patient.rs system/Observation.rs\n"
    );
    app.create(&patient()).await;
    let signed = assertion(&app, &key, "payer-bot", json!({}));
    let response = request_token(&app, &signed, "system/Patient.read").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json(response).await;
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        body,
        json!({"access_token": token, "token_type": "bearer", "expires_in": 300,
            "scope": "system/Patient.rs"})
    );
    let jwks = json(app.get_root(".well-known/jwks.json").await).await;
    assert_eq!(jwks["keys"][0]["kid"], kid_of(&token).as_str());
    let read = json(app.get_as(&token, "Patient").await).await;
    assert_eq!(read["total"], 1);
    let observations = app.get_as(&token, "Observation").await;
    assert_eq!(observations.status(), StatusCode::FORBIDDEN);
    let write = app.post_as(&token, "Patient", &patient()).await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn es384_client_gets_a_token_that_reads_data() {
    backend_flow(es384_key("es-1")).await;
}

#[tokio::test]
async fn rs384_client_gets_a_token_that_reads_data() {
    backend_flow(rs384_key("rs-1")).await;
}

#[tokio::test]
async fn token_endpoint_refuses_forged_replayed_and_misaddressed_assertions() {
    let app = TestApp::spawn().await;
    let key = es384_key("k1");
    register(&app, "bot", &[&key], "system/*.rs");
    let unauthorized = StatusCode::UNAUTHORIZED;
    let signed = assertion(&app, &key, "bot", json!({}));
    let first = request_token(&app, &signed, "system/*.rs").await;
    assert_eq!(first.status(), StatusCode::OK);
    let replay = request_token(&app, &signed, "system/*.rs").await;
    let used = "the client assertion's jti was used before";
    assert_refused(replay, unauthorized, "invalid_client", used).await;

    let now = chrono::Utc::now().timestamp();
    let far = assertion(&app, &key, "bot", json!({"exp": now + 3600}));
    let ahead = "the client assertion's exp is more than 5 minutes ahead";
    assert_refused(
        request_token(&app, &far, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        ahead,
    )
    .await;

    let aud = assertion(
        &app,
        &key,
        "bot",
        json!({"aud": "https://elsewhere.example/token"}),
    );
    let wrong_aud = "the client assertion's aud is not the token URL";
    assert_refused(
        request_token(&app, &aud, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        wrong_aud,
    )
    .await;

    let sub = assertion(&app, &key, "bot", json!({"sub": "someone"}));
    let wrong_sub = "the client assertion's sub is not the client id";
    assert_refused(
        request_token(&app, &sub, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        wrong_sub,
    )
    .await;

    let expired = assertion(&app, &key, "bot", json!({"exp": now - 600}));
    let old = "the client assertion has expired";
    assert_refused(
        request_token(&app, &expired, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        old,
    )
    .await;

    let forged = assertion(&app, &es384_key("k1"), "bot", json!({}));
    let bad_signature = "the client assertion's signature does not verify";
    assert_refused(
        request_token(&app, &forged, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        bad_signature,
    )
    .await;

    let stranger = assertion(&app, &key, "stranger", json!({}));
    let unknown = "unknown or disabled client";
    assert_refused(
        request_token(&app, &stranger, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        unknown,
    )
    .await;

    let claims =
        json!({"iss": "bot", "sub": "bot", "aud": token_url(&app), "exp": now + 60, "jti": "n"});
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        b64(claims.to_string().as_bytes())
    );
    let not_signed = "the client assertion is not a JWT signed with RS384 or ES384";
    assert_refused(
        request_token(&app, &none, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        not_signed,
    )
    .await;

    client_cli(&app, &["disable", "--client-id", "bot"]);
    assert_eq!(client_cli(&app, &["list"]), "bot disabled system/*.rs\n");
    let after = assertion(&app, &key, "bot", json!({}));
    assert_refused(
        request_token(&app, &after, "system/*.rs").await,
        unauthorized,
        "invalid_client",
        unknown,
    )
    .await;
}

#[tokio::test]
async fn granted_scopes_never_exceed_the_clients() {
    let app = TestApp::spawn().await;
    let key = es384_key("k1");
    register(&app, "bot", &[&key], "system/Patient.rs");
    let signed = assertion(&app, &key, "bot", json!({}));
    let body = json(request_token(&app, &signed, "system/*.cruds").await).await;
    assert_eq!(body["scope"], "system/Patient.rs");
    let signed = assertion(&app, &key, "bot", json!({}));
    let refused = request_token(&app, &signed, "system/Observation.rs user/Patient.r").await;
    let text = "none of the requested scopes is allowed to this client";
    assert_refused(refused, StatusCode::BAD_REQUEST, "invalid_scope", text).await;
}

#[tokio::test]
async fn malformed_token_requests_are_400() {
    let app = TestApp::spawn().await;
    let post = |form: &'static [(&'static str, &'static str)]| {
        let request = app.client.post(token_url(&app)).form(form);
        async move { request.send().await.unwrap() }
    };
    let grant = post(&[("grant_type", "password")]).await;
    let only = "only grant_type=client_credentials is supported";
    assert_refused(
        grant,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        only,
    )
    .await;
    let missing = post(&[("grant_type", "client_credentials")]).await;
    let text = format!("client_assertion_type must be {JWT_BEARER}");
    assert_refused(missing, StatusCode::BAD_REQUEST, "invalid_request", &text).await;
}

#[tokio::test]
async fn access_token_with_an_unknown_kid_is_401() {
    let app = TestApp::spawn().await;
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(&app.token).unwrap();
    let pem = std::fs::read(&app.config.jwt_private_key_file).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("not-this-servers-key".into());
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(&pem).unwrap()).unwrap();
    let response = app.get_as(&token, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json(response).await["issue"][0]["diagnostics"],
        "the access token's signing key (kid) is not this server's; the signature cannot be verified"
    );
}

#[tokio::test]
async fn jwks_and_smart_configuration_describe_the_server() {
    let app = TestApp::spawn().await;
    let jwks = json(app.get_root(".well-known/jwks.json").await).await;
    let key = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    assert_eq!(key["kid"], kid_of(&app.token).as_str());
    let configuration = json(app.get_root(".well-known/smart-configuration").await).await;
    assert_eq!(
        configuration,
        json!({
            "issuer": app.config.jwt_issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", app.root),
            "token_endpoint": token_url(&app),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
            "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"]
        })
    );
    let under_fhir = json(app.get(".well-known/smart-configuration").await).await;
    assert_eq!(under_fhir, configuration);
}
