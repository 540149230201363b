//! Attacks by one patient's token on another patient's data: every path answers with the
//! exact status and no trace of the other patient in the body.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, heart_rate, json, patient};

struct Two {
    app: TestApp,
    a: String,
    b: String,
    b_obs: String,
    a_obs: String,
}

const B_FAMILY: &str = "Zyxwvutsrq";

async fn two_patients() -> Two {
    let app = TestApp::spawn().await;
    let a = id_of(app.create(&patient()).await);
    let mut other = patient();
    other["name"] = json!([{"family": B_FAMILY, "given": ["Bea"]}]);
    let b = id_of(app.create(&other).await);
    let a_obs = id_of(app.create(&heart_rate(&a, 70)).await);
    let b_obs = id_of(app.create(&heart_rate(&b, 90)).await);
    Two {
        app,
        a,
        b,
        b_obs,
        a_obs,
    }
}

fn id_of(resource: Value) -> String {
    resource["id"].as_str().unwrap().to_string()
}

impl Two {
    fn token_a(&self, scope: &str) -> String {
        self.app.token_for(scope, Some(&self.a))
    }

    /// Asserts `status` and that nothing of patient B shows in the body.
    async fn get_clean(&self, token: &str, path: &str, status: StatusCode) -> Value {
        let response = self.app.get_as(token, path).await;
        assert_eq!(response.status(), status, "{path}");
        let text = response.text().await.unwrap();
        self.assert_no_b(&text, path);
        serde_json::from_str(&text).unwrap()
    }

    /// Paging links echo the query the client sent, so they are left out of the check.
    fn assert_no_b(&self, text: &str, what: &str) {
        let mut body: Value = serde_json::from_str(text).unwrap();
        drop_links(&mut body);
        let text = body.to_string();
        for secret in [&self.b, &self.b_obs, &B_FAMILY.to_string()] {
            assert!(
                !text.contains(secret.as_str()),
                "{what} leaks {secret}: {text}"
            );
        }
    }
}

fn drop_links(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("link");
            map.values_mut().for_each(drop_links);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_links),
        _ => {}
    }
}

fn forbidden(body: &Value) {
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "forbidden");
}

fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn reads_of_another_patient_are_403_without_content() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.rs");
    for path in [
        format!("Patient/{}", t.b),
        format!("Observation/{}", t.b_obs),
        format!("Observation/{}/_history/1", t.b_obs),
        format!("Observation/{}/_history", t.b_obs),
        format!("Patient/{}/_history", t.b),
    ] {
        forbidden(&t.get_clean(&token, &path, StatusCode::FORBIDDEN).await);
    }
    let own = t
        .get_clean(&token, &format!("Observation/{}", t.a_obs), StatusCode::OK)
        .await;
    assert_eq!(own["id"], t.a_obs.as_str());
}

#[tokio::test]
async fn searches_naming_another_patient_find_nothing() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.rs");
    for path in [
        format!("Observation?subject=Patient/{}", t.b),
        format!("Observation?patient={}", t.b),
        format!("Observation?subject.name={B_FAMILY}"),
        format!("Observation?subject:Patient.family={B_FAMILY}"),
        format!("Patient?_has:Observation:subject:_id={}", t.b_obs),
        format!("Patient?_id={}", t.b),
    ] {
        let bundle = t.get_clean(&token, &path, StatusCode::OK).await;
        assert_eq!(bundle["total"], 0, "{path}");
        assert!(entry_ids(&bundle).is_empty(), "{path}");
    }
}

/// A chain or `_has` naming another patient answers the same as one naming nobody, so it
/// cannot tell whether that patient has such data.
#[tokio::test]
async fn chains_and_has_are_no_oracle_on_another_patient() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.rs");
    let about_b = t
        .get_clean(
            &token,
            &format!("Patient?_has:Observation:subject:code=8867-4&_id={}", t.b),
            StatusCode::OK,
        )
        .await;
    let about_nobody = t
        .get_clean(
            &token,
            "Patient?_has:Observation:subject:code=8867-4&_id=nobody",
            StatusCode::OK,
        )
        .await;
    assert_eq!(about_b["total"], about_nobody["total"]);
    assert_eq!(about_b["total"], 0);
    let own = t
        .get_clean(
            &token,
            "Patient?_has:Observation:subject:code=8867-4",
            StatusCode::OK,
        )
        .await;
    assert_eq!(entry_ids(&own), std::slice::from_ref(&t.a));
}

#[tokio::test]
async fn include_and_revinclude_keep_to_the_compartment() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.rs");
    let included = t
        .get_clean(
            &token,
            "Observation?_include=Observation:subject",
            StatusCode::OK,
        )
        .await;
    let mut ids = entry_ids(&included);
    ids.sort();
    let mut expected = vec![t.a.clone(), t.a_obs.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    let text = included.to_string();
    assert!(!text.contains("not applied"), "{text}");
    let revincluded = t
        .get_clean(
            &token,
            "Patient?_revinclude=Observation:subject",
            StatusCode::OK,
        )
        .await;
    let mut ids = entry_ids(&revincluded);
    ids.sort();
    assert_eq!(ids, expected);
}

/// An included type the scopes do not grant stays out, even in the patient's compartment.
#[tokio::test]
async fn include_needs_read_on_the_included_type() {
    let t = two_patients().await;
    let token = t.token_a("patient/Observation.rs");
    let bundle = t
        .get_clean(
            &token,
            "Observation?_include=Observation:subject",
            StatusCode::OK,
        )
        .await;
    assert_eq!(entry_ids(&bundle), std::slice::from_ref(&t.a_obs));
}

#[tokio::test]
async fn groups_and_subscriptions_are_closed_to_patient_scopes() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.cruds");
    for path in ["Subscription", "Subscription/any", "Group/any/$export"] {
        let response = t
            .app
            .client
            .get(format!("{}/{path}", t.app.base))
            .bearer_auth(&token)
            .header("Prefer", "respond-async")
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let text = response.text().await.unwrap();
        t.assert_no_b(&text, path);
        forbidden(&serde_json::from_str(&text).unwrap());
    }
    let before = t.app.count_rows("resources").await;
    let response = t
        .app
        .post_as(
            &token,
            "Subscription",
            &json!({"resourceType": "Subscription", "status": "requested", "reason": "x",
                "criteria": "Observation?code=8867-4",
                "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook", "payload": "application/fhir+json"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    forbidden(&json(response).await);
    assert_eq!(t.app.count_rows("resources").await, before);
}

#[tokio::test]
async fn batch_entries_reading_another_patient_are_refused() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.rs");
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Observation/{}", t.b_obs)}},
        {"request": {"method": "GET", "url": format!("Patient/{}", t.b)}},
        {"request": {"method": "GET", "url": format!("Observation?subject=Patient/{}", t.b)}},
        {"request": {"method": "GET", "url": format!("Observation/{}", t.a_obs)}}
    ]});
    let response = t.app.post_as(&token, "", &batch).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    t.assert_no_b(&text, "batch");
    let body: Value = serde_json::from_str(&text).unwrap();
    let statuses: Vec<&str> = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses[0].starts_with("403"), "{statuses:?}");
    assert!(statuses[1].starts_with("403"), "{statuses:?}");
    assert!(statuses[2].starts_with("200"), "{statuses:?}");
    assert!(statuses[3].starts_with("200"), "{statuses:?}");
}

#[tokio::test]
async fn writes_into_another_compartment_store_nothing() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.cruds");
    let before = t.app.count_rows("resources").await;
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": heart_rate(&t.a, 71)},
        {"request": {"method": "POST", "url": "Observation"}, "resource": heart_rate(&t.b, 72)}
    ]});
    let response = t.app.post_as(&token, "", &transaction).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    forbidden(&json(response).await);
    let mut moved = heart_rate(&t.b, 73);
    moved["id"] = json!(t.a_obs);
    let response = t
        .app
        .client
        .put(format!("{}/Observation/{}", t.app.base, t.a_obs))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .body(moved.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    forbidden(&json(response).await);
    let response = t
        .app
        .client
        .put(format!("{}/Observation?code=8867-4", t.app.base))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .body(heart_rate(&t.b, 74).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    forbidden(&json(response).await);
    assert_eq!(t.app.count_rows("resources").await, before);
    let own = t
        .get_clean(&token, &format!("Observation/{}", t.a_obs), StatusCode::OK)
        .await;
    assert_eq!(own["valueQuantity"]["value"], 70);
}

#[tokio::test]
async fn read_only_patient_scope_writes_nothing() {
    let t = two_patients().await;
    let token = t.token_a("patient/*.rs");
    let before = t.app.count_rows("resources").await;
    let response = t
        .app
        .post_as(&token, "Observation", &heart_rate(&t.a, 75))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    forbidden(&json(response).await);
    assert_eq!(t.app.count_rows("resources").await, before);
}

#[actix_web::test]
async fn restricted_scopes_grant_nothing_until_enforced() {
    let t = two_patients().await;
    for scope in [
        "patient/Observation.rs?category=vital-signs",
        "system/Observation.rs?category=vital-signs",
    ] {
        let token = t.token_a(scope);
        let path = format!("/Observation/{}", t.a_obs);
        let response = t.app.get_as(&token, &path).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{scope}");
        let response = t.app.get_as(&token, "/Observation").await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{scope}");
    }
}
