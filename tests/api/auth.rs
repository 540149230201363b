use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, heart_rate, json, patient};

#[tokio::test]
async fn missing_token_is_401_with_www_authenticate() {
    let app = TestApp::spawn().await;
    let response = app.get_anonymous("Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(json(response).await["issue"][0]["code"], "login");
}

#[tokio::test]
async fn metadata_needs_no_token() {
    let app = TestApp::spawn().await;
    let response = app.get_anonymous("metadata").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_signed_by_another_key_is_401() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let response = app.get_as(&other.token, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        json(response).await["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
}

#[tokio::test]
async fn expired_token_is_401() {
    let app = TestApp::spawn().await;
    let expired =
        ketamine_fhir::auth::jwt::issue_token(&app.config, "t", "system/*.cruds", None, -120)
            .unwrap();
    let response = app.get_as(&expired, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        json(response).await["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn alg_none_and_hs256_tokens_are_refused() {
    use base64::Engine;
    let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let app = TestApp::spawn().await;
    let claims = json!({"iss": app.config.jwt_issuer, "aud": app.config.jwt_audience, "sub": "x",
        "exp": 4_000_000_000i64, "nbf": 0, "iat": 0, "jti": "j", "scope": "system/*.cruds"});
    let none = format!(
        "{}.{}.",
        encode(r#"{"alg":"none","typ":"JWT"}"#),
        encode(&claims.to_string())
    );
    let response = app.get_as(&none, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // HS256 keyed with the public key's PEM (the classic algorithm-confusion attack).
    let public_pem = std::fs::read(&app.config.jwt_public_key_file).unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let response = app.get_as(&hs, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_audience_is_401() {
    let app = TestApp::spawn().await;
    let mut other = app.config.clone();
    other.jwt_audience = "someone-else".into();
    let token =
        ketamine_fhir::auth::jwt::issue_token(&other, "t", "system/*.cruds", None, 60).unwrap();
    let response = app.get_as(&token, "Patient").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn read_only_scope_cannot_write_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token_for("user/Patient.rs", None);
    let response = app.post_as(&token, "Patient", &patient()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(response).await["issue"][0]["code"], "forbidden");
    assert_eq!(app.count_rows("resources").await, 0);
    let read = app.get_as(&token, "Patient").await;
    assert_eq!(read.status(), StatusCode::OK);
}

#[tokio::test]
async fn scope_for_one_type_does_not_reach_another() {
    let app = TestApp::spawn().await;
    let token = app.token_for("system/Observation.read", None);
    let response = app.get_as(&token, "Patient").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app.get_as(&token, "Observation").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn patient_scope_sees_only_that_patients_data() {
    let app = TestApp::spawn().await;
    let mine = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let my_obs = app.create(&heart_rate(&mine, 70)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let their_obs = app.create(&heart_rate(&theirs, 90)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = app.token_for("patient/*.rs", Some(&mine));
    let get = |path: String| {
        let request = app
            .client
            .request(Method::GET, format!("{}/{path}", app.base))
            .bearer_auth(&token);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        get(format!("Observation/{my_obs}")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(format!("Observation/{their_obs}")).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(format!("Patient/{theirs}")).await.status(),
        StatusCode::FORBIDDEN
    );
    let bundle = json(get("Observation".into()).await).await;
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], my_obs.as_str());
    let patients = json(get("Patient".into()).await).await;
    assert_eq!(patients["total"], 1);
}

/// A Coverage belongs to the compartment of its beneficiary, for reads and searches alike.
#[tokio::test]
async fn patient_scope_reaches_the_coverages_of_which_the_patient_is_beneficiary() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let person = app.create(&patient()).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let coverage = app
            .create(&serde_json::json!({
                "resourceType": "Coverage",
                "status": "active",
                "beneficiary": {"reference": format!("Patient/{person}")},
                "payor": [{"reference": "Organization/acme"}]
            }))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        ids.push((person, coverage));
    }
    let [(mine, my_coverage), (_, their_coverage)] = &ids[..] else {
        unreachable!()
    };
    let token = app.token_for("patient/Coverage.rs", Some(mine));
    let mine = app.get_as(&token, &format!("Coverage/{my_coverage}")).await;
    assert_eq!(mine.status(), StatusCode::OK);
    let theirs = app
        .get_as(&token, &format!("Coverage/{their_coverage}"))
        .await;
    assert_eq!(theirs.status(), StatusCode::FORBIDDEN);
    let bundle = json(app.get_as(&token, "Coverage").await).await;
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], my_coverage.as_str());
}

#[tokio::test]
async fn patient_scope_cannot_create_patients_or_data_about_others() {
    let app = TestApp::spawn().await;
    let mine = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = app.token_for("patient/*.cruds", Some(&mine));
    let post = |path: &'static str, body: serde_json::Value| {
        let request = app
            .client
            .post(format!("{}/{path}", app.base))
            .bearer_auth(&token)
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string());
        async move { request.send().await.unwrap() }
    };
    let mut someone = patient();
    someone["id"] = json!(mine);
    assert_eq!(
        post("Patient", someone).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post("Observation", heart_rate("someone-else", 80))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post("Observation", heart_rate(&mine, 80)).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.count_rows("resources").await, 2);
}

#[tokio::test]
async fn audience_may_be_a_list_and_jti_is_optional() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": app.config.jwt_issuer, "sub": "payer-system", "aud": ["other-api", app.config.jwt_audience],
        "exp": now + 60, "nbf": now, "scope": "system/Patient.rs"});
    let pem = std::fs::read(&app.config.jwt_private_key_file).unwrap();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap();
    let response = app.get_as(&token, "Patient").await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// Claims signed with the server's own key, so only the claim named in each case is wrong.
fn signed_by_server(app: &TestApp, changes: serde_json::Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"iss": app.config.jwt_issuer, "aud": app.config.jwt_audience,
        "sub": "attacker", "exp": now + 300, "nbf": now - 5, "iat": now - 5,
        "scope": "system/*.cruds"});
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let pem = std::fs::read(&app.config.jwt_private_key_file).unwrap();
    let kid = jsonwebtoken::decode_header(&app.token).unwrap().kid;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = kid;
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// A valid token whose payload is swapped for a wider one, the signature kept.
fn tampered(app: &TestApp) -> String {
    use base64::Engine;
    let narrow = app.token_for("system/Observation.rs", None);
    let parts: Vec<&str> = narrow.split('.').collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!("system/*.cruds");
    let payload = engine.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// Tampered payload, not yet valid, wrong issuer: each is a 401 OperationOutcome with no
/// data, and each refusal is on record as a failed AuditEvent with no agent.
#[tokio::test]
async fn forged_tokens_are_401_and_every_refusal_is_audited() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let now = chrono::Utc::now().timestamp();
    let attacks = [
        ("tampered payload", tampered(&app)),
        (
            "not yet valid",
            signed_by_server(&app, json!({"nbf": now + 600})),
        ),
        (
            "wrong issuer",
            signed_by_server(&app, json!({"iss": "https://elsewhere.example"})),
        ),
    ];
    let control = signed_by_server(&app, json!({}));
    assert_eq!(
        app.get_as(&control, &format!("Patient/{id}"))
            .await
            .status(),
        StatusCode::OK
    );
    for (what, token) in &attacks {
        let response = app.get_as(token, &format!("Patient/{id}")).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body = json(response).await;
        assert_eq!(body["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(body["issue"][0]["code"], "login", "{what}");
        assert!(!body.to_string().contains("Okafor"), "{what}: {body}");
    }
    let refused = app
        .count_rows(&format!(
            "audit_events WHERE outcome = '4' AND agent IS NULL AND content->>'outcomeDesc' = 'HTTP 401' AND patients @> ARRAY['{id}']"
        ))
        .await;
    assert_eq!(refused, attacks.len() as i64);
}
