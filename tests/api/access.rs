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

    /// Asserts that `token` creating a heart rate for A is a 403 that stores nothing.
    async fn assert_create_refused(&self, token: &str, bpm: i64) {
        let before = self.app.count_rows("resources").await;
        let response = self
            .app
            .post_as(token, "Observation", &heart_rate(&self.a, bpm))
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        forbidden(&json(response).await);
        assert_eq!(self.app.count_rows("resources").await, before);
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

/// The ids of a Bundle's resources, its OperationOutcome entry left out.
fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["resource"]["resourceType"] != "OperationOutcome")
                .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn outcome_entry(bundle: &Value) -> &Value {
    bundle["entry"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e["resource"]["resourceType"] == "OperationOutcome")
        })
        .map(|e| &e["resource"])
        .expect("an OperationOutcome entry")
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
    assert_eq!(outcome_entry(&bundle)["issue"][0]["code"], "suppressed");
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
    t.assert_create_refused(&t.token_a("patient/*.rs"), 75)
        .await;
}

/// Type and system history of a patient token hold the versions about its patient only,
/// judged version by version: an Observation moved from B to A shows A only its new version.
#[tokio::test]
async fn type_and_system_history_keep_to_the_compartment() {
    let t = two_patients().await;
    let moved = id_of(t.app.create(&heart_rate(&t.b, 95)).await);
    let mut now_about_a = heart_rate(&t.a, 65);
    now_about_a["id"] = json!(moved);
    let response = t
        .app
        .put(&format!("Observation/{moved}"), &now_about_a)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = t.token_a("patient/*.rs");
    let versions = |bundle: &Value| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let resource = &e["resource"];
                let id = resource["id"].as_str().unwrap().to_string();
                (
                    id,
                    resource["meta"]["versionId"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let mut expected = vec![
        (t.a_obs.clone(), "1".to_string()),
        (moved.clone(), "2".to_string()),
    ];
    expected.sort();
    let observations = t
        .get_clean(&token, "Observation/_history", StatusCode::OK)
        .await;
    assert_eq!(versions(&observations), expected);
    assert_eq!(observations["total"], 2);
    let everything = t.get_clean(&token, "_history", StatusCode::OK).await;
    let mut with_patient = expected.clone();
    with_patient.push((t.a.clone(), "1".to_string()));
    with_patient.sort();
    assert_eq!(versions(&everything), with_patient);
    let instance = t
        .get_clean(
            &token,
            &format!("Observation/{moved}/_history"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(versions(&instance), [(moved.clone(), "2".to_string())]);
    let patients = t
        .get_clean(&token, "Patient/_history", StatusCode::OK)
        .await;
    assert_eq!(versions(&patients), [(t.a.clone(), "1".to_string())]);
}

fn laboratory(patient_id: &str) -> Value {
    let mut observation = heart_rate(patient_id, 0);
    observation["category"][0]["coding"][0]["code"] = json!("laboratory");
    observation["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]});
    observation["valueQuantity"] = json!({"value": 0.9, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"});
    observation
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// `patient/Observation.rs?category=vital-signs` reaches A's vital signs and nothing else,
/// by search, read, version read, history and batch.
#[tokio::test]
async fn a_restricted_patient_scope_reaches_only_what_its_query_matches() {
    let t = two_patients().await;
    let a_lab = id_of(t.app.create(&laboratory(&t.a)).await);
    let token = t.token_a("patient/Observation.rs?category=vital-signs");
    let all = t.get_clean(&token, "Observation", StatusCode::OK).await;
    assert_eq!(entry_ids(&all), std::slice::from_ref(&t.a_obs));
    let labs = t
        .get_clean(&token, "Observation?category=laboratory", StatusCode::OK)
        .await;
    assert_eq!(labs["total"], 0);
    for path in [
        format!("Observation/{}", t.a_obs),
        format!("Observation/{}/_history/1", t.a_obs),
        format!("Observation/{}/_history", t.a_obs),
    ] {
        t.get_clean(&token, &path, StatusCode::OK).await;
    }
    for path in [
        format!("Observation/{a_lab}"),
        format!("Observation/{a_lab}/_history/1"),
        format!("Observation/{a_lab}/_history"),
        format!("Observation/{}", t.b_obs),
        format!("Patient/{}", t.a),
        "Observation/_history".to_string(),
    ] {
        forbidden(&t.get_clean(&token, &path, StatusCode::FORBIDDEN).await);
    }
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Observation/{a_lab}")}},
        {"request": {"method": "GET", "url": format!("Observation/{}", t.a_obs)}},
        {"request": {"method": "GET", "url": "Observation?code=2160-0"}}
    ]});
    let response = t.app.post_as(&token, "", &batch).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    let entries = body["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "403 Forbidden");
    assert_eq!(entries[1]["response"]["status"], "200 OK");
    assert_eq!(entries[1]["resource"]["id"], t.a_obs.as_str());
    assert_eq!(entries[2]["resource"]["total"], 0);
}

/// A system/ restricted scope spans patients; several restricted scopes reach the union
/// of what each matches.
#[tokio::test]
async fn restricted_scopes_reach_the_union_of_their_queries() {
    let t = two_patients().await;
    let a_lab = id_of(t.app.create(&laboratory(&t.a)).await);
    let b_lab = id_of(t.app.create(&laboratory(&t.b)).await);
    let labs_only = t
        .app
        .token_for("system/Observation.rs?category=laboratory", None);
    let response = t.app.get_as(&labs_only, "Observation").await;
    assert_eq!(response.status(), StatusCode::OK);
    let bundle = json(response).await;
    assert_eq!(
        sorted(entry_ids(&bundle)),
        sorted(vec![a_lab.clone(), b_lab.clone()])
    );
    let response = t
        .app
        .get_as(&labs_only, &format!("Observation/{}", t.a_obs))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    forbidden(&json(response).await);

    let both = t.token_a(
        "patient/Observation.rs?category=vital-signs system/Observation.rs?category=laboratory",
    );
    let response = t.app.get_as(&both, "Observation?_count=10").await;
    assert_eq!(response.status(), StatusCode::OK);
    let bundle = json(response).await;
    assert_eq!(bundle["total"], 3);
    assert_eq!(
        sorted(entry_ids(&bundle)),
        sorted(vec![t.a_obs.clone(), a_lab, b_lab])
    );
}

/// Included resources are judged by their own type's reach: `system/Patient.rs?_id=A`
/// includes patient A and leaves B out, saying that something was left out.
#[tokio::test]
async fn includes_keep_to_restricted_scopes_of_the_included_type() {
    let t = two_patients().await;
    let token = t.app.token_for(
        &format!("system/Observation.rs system/Patient.rs?_id={}", t.a),
        None,
    );
    let response = t
        .app
        .get_as(&token, "Observation?_include=Observation:subject")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let bundle = json(response).await;
    assert_eq!(
        sorted(entry_ids(&bundle)),
        sorted(vec![t.a.clone(), t.a_obs.clone(), t.b_obs.clone()])
    );
    assert!(!bundle.to_string().contains(B_FAMILY));
    let outcome = outcome_entry(&bundle);
    assert_eq!(outcome["issue"][0]["code"], "suppressed");
}

/// Restrictions are enforced as search filters, so a restricted write scope writes
/// nothing; a restriction that does not select resources opens nothing.
#[tokio::test]
async fn restricted_writes_and_unenforceable_restrictions_are_refused() {
    let t = two_patients().await;
    let writer = t.token_a("patient/Observation.cruds?category=vital-signs");
    t.assert_create_refused(&writer, 77).await;
    let response = t
        .app
        .get_as(&writer, &format!("Observation/{}", t.a_obs))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for scope in [
        "system/Observation.rs?_count=1000",
        "system/Observation.rs?_include=Observation:subject",
        "system/Observation.rs?no-such-parameter=1",
    ] {
        let token = t.app.token_for(scope, None);
        let response = t.app.get_as(&token, "Observation").await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{scope}");
        let body = json(response).await;
        forbidden(&body);
        let text = body["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(text.contains("cannot be enforced"), "{scope}: {text}");
    }
}
