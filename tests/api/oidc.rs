//! Access tokens of an external OpenID Connect issuer (`OIDC_ISSUERS`): an identity
//! provider inside the test publishes its discovery document and RS256 keys on loopback.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, outcome_diagnostics, patient};
use crate::served::Served;
use crate::smart::{ClientKey, rs384_key};

struct Provider {
    served: Served,
    key: ClientKey,
}

impl Provider {
    /// A provider whose discovery document names `issuer` (its own URL when `None`).
    fn start(issuer: Option<&str>) -> Self {
        let served = Served::start();
        let mut key = rs384_key("idp-key-1");
        key.alg = Algorithm::RS256;
        key.jwk["alg"] = json!("RS256");
        let issuer = issuer.map_or_else(|| served.root.clone(), str::to_string);
        served.set(
            "/.well-known/openid-configuration",
            json!({"issuer": issuer, "jwks_uri": served.url("/keys")}),
        );
        served.set("/keys", json!({"keys": [key.jwk]}));
        Provider { served, key }
    }

    fn issuer(&self) -> String {
        self.served.root.clone()
    }

    /// A token of this provider for `app`, with these claims changed.
    fn token(&self, app: &TestApp, changes: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({"iss": self.issuer(), "aud": app.config.jwt_audience,
            "sub": "dr-who", "exp": now + 300, "nbf": now - 5, "scope": "system/*.rs",
            "fhirUser": "Practitioner/who"});
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        let mut header = Header::new(self.key.alg);
        header.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key.encoding).unwrap()
    }
}

async fn spawn_trusting(issuer: &str) -> TestApp {
    let issuer = issuer.to_string();
    TestApp::spawn_with(|config| config.oidc_issuers = vec![issuer]).await
}

async fn assert_unauthorized(app: &TestApp, token: &str, reason: &str) {
    let response = app.get_as(token, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(outcome_diagnostics(&json(response).await), [reason]);
}

#[tokio::test]
async fn a_token_of_a_configured_issuer_reads_data() {
    let idp = Provider::start(None);
    let app = spawn_trusting(&idp.issuer()).await;
    app.create(&patient()).await;
    let token = idp.token(&app, json!({}));
    assert_eq!(json(app.get_as(&token, "Patient").await).await["total"], 1);
    assert_eq!(json(app.get_as(&token, "Patient").await).await["total"], 1);
    let write = app.post_as(&token, "Patient", &patient()).await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    let listed = idp.token(&app, json!({"scope": null, "scp": ["system/Patient.rs"]}));
    assert_eq!(json(app.get_as(&listed, "Patient").await).await["total"], 1);
    assert_eq!(idp.served.fetches("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.served.fetches("/keys"), 1);
}

#[tokio::test]
async fn tokens_of_the_issuer_that_fail_a_check_are_401() {
    let idp = Provider::start(None);
    let app = spawn_trusting(&idp.issuer()).await;
    let now = chrono::Utc::now().timestamp();
    let wrong_aud = idp.token(&app, json!({"aud": "someone-else"}));
    assert_unauthorized(&app, &wrong_aud, "the access token has the wrong audience").await;
    let expired = idp.token(&app, json!({"exp": now - 600}));
    assert_unauthorized(&app, &expired, "the access token has expired").await;

    let mut stranger = rs384_key("idp-key-unknown");
    stranger.alg = Algorithm::RS256;
    let unknown_kid = Provider {
        served: Served::start(),
        key: stranger,
    };
    let claims = json!({"iss": idp.issuer(), "aud": app.config.jwt_audience, "sub": "x",
        "exp": now + 300, "scope": "system/*.rs"});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(unknown_kid.key.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &unknown_kid.key.encoding).unwrap();
    let no_key = "no key of the issuer has the access token's kid";
    assert_unauthorized(&app, &token, no_key).await;

    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(idp.key.kid.clone());
    let hmac = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"s")).unwrap();
    let algs = "the access token must be signed with RS256, RS384, ES256 or ES384";
    assert_unauthorized(&app, &hmac, algs).await;
}

#[tokio::test]
async fn an_issuer_not_configured_is_401() {
    let idp = Provider::start(None);
    let app = TestApp::spawn().await;
    let token = idp.token(&app, json!({}));
    let own = "the access token's signing key (kid) is not this server's; the signature cannot be verified";
    assert_unauthorized(&app, &token, own).await;
    assert_eq!(idp.served.fetches("/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_401() {
    let idp = Provider::start(Some("https://impostor.example"));
    let app = spawn_trusting(&idp.issuer()).await;
    let token = idp.token(&app, json!({}));
    let other = "the issuer's discovery document names another issuer";
    assert_unauthorized(&app, &token, other).await;
    assert_eq!(idp.served.fetches("/keys"), 0);
}

#[tokio::test]
async fn a_patient_token_of_the_issuer_is_confined_to_its_patient() {
    let idp = Provider::start(None);
    let app = spawn_trusting(&idp.issuer()).await;
    let mine = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = idp.token(&app, json!({"scope": "patient/*.rs", "patient": mine}));
    let own = app.get_as(&token, &format!("Patient/{mine}")).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(json(own).await["id"], mine.as_str());
    let other = app.get_as(&token, &format!("Patient/{theirs}")).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let bundle = json(app.get_as(&token, "Patient").await).await;
    assert_eq!(bundle["total"], 1);
}
