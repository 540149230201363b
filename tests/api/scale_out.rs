//! Two instances of the service on one database, as behind a load balancer: what is
//! written through one is read, paged, versioned and locked through the other. (Webhook
//! delivery by both instances, each event once: `subscriptions::two_instances_on_one_database_deliver_each_event_once`.)

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, json, match_ids, patient};

fn marked(mark: &str) -> Value {
    let mut resource = patient();
    resource["identifier"][0] = serde_json::json!({"system": "urn:scale-out", "value": mark});
    resource
}

async fn version_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body = json(response).await;
    let version = body["meta"]["versionId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, version)
}

#[tokio::test]
async fn writes_through_either_instance_are_read_and_paged_through_the_other() {
    let first = TestApp::spawn().await;
    let second = first.spawn_instance_sharing(|_| {}).await;
    let instances = [&first, &second];
    let mut ids = Vec::new();
    for n in 0..10 {
        let created = instances[n % 2].create(&marked(&format!("m{n}"))).await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    for (n, id) in ids.iter().enumerate() {
        let other = instances[(n + 1) % 2];
        let read = json(other.get(&format!("Patient/{id}")).await).await;
        assert_eq!(read["identifier"][0]["value"], format!("m{n}"));
        let mut changed = read.clone();
        changed["gender"] = "male".into();
        let (status, version) =
            version_of(other.put(&format!("Patient/{id}"), &changed).await).await;
        assert_eq!((status, version.as_str()), (StatusCode::OK, "2"));
        let history = json(
            instances[n % 2]
                .get(&format!("Patient/{id}/_history"))
                .await,
        )
        .await;
        assert_eq!(
            history["entry"].as_array().map(Vec::len),
            Some(2),
            "{history}"
        );
    }
    // A page begun on one instance continues on the other: the cursor is in the link.
    let page = json(
        first
            .get("Patient?identifier=urn:scale-out|&_count=4")
            .await,
    )
    .await;
    let mut seen = match_ids(&page);
    let mut next = crate::helpers::link(&page, "next");
    while let Some(url) = next {
        let url = url.replace(&first.root, &second.root);
        let page = crate::helpers::follow(&second, &url).await;
        seen.extend(match_ids(&page));
        next = crate::helpers::link(&page, "next");
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn versions_and_if_match_hold_across_instances() {
    let first = TestApp::spawn().await;
    let second = first.spawn_instance_sharing(|_| {}).await;
    let created = first.create(&marked("contended")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("Patient/{id}");
    let put_if = |app: &TestApp, version: &str| {
        app.request(Method::PUT, &path)
            .header("Content-Type", "application/fhir+json")
            .header("If-Match", format!("W/\"{version}\""))
            .body(created.to_string())
            .send()
    };
    assert_eq!(put_if(&second, "1").await.unwrap().status(), StatusCode::OK);
    let stale = put_if(&first, "1").await.unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(json(stale).await["resourceType"], "OperationOutcome");

    // Twenty updates at once through both instances: each gets its own version, none lost.
    let updates = (0..20).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let path = path.clone();
        let created = created.clone();
        async move { version_of(app.put(&path, &created).await).await }
    });
    let mut versions: Vec<i64> = join_all(updates)
        .await
        .into_iter()
        .map(|(status, version)| {
            assert_eq!(status, StatusCode::OK);
            version.parse().unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, (3..=22).collect::<Vec<_>>());
    assert_eq!(
        first
            .count_rows(&format!("resource_versions WHERE id = '{id}'"))
            .await,
        22
    );
}

#[tokio::test]
async fn a_conditional_create_sent_to_both_instances_at_once_creates_one_resource() {
    let first = TestApp::spawn().await;
    let second = first.spawn_instance_sharing(|_| {}).await;
    let attempts = (0..8).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        async move {
            app.post_with_headers(
                "Patient",
                &marked("once"),
                &[("If-None-Exist", "identifier=urn:scale-out|once")],
            )
            .await
            .status()
        }
    });
    let mut statuses: Vec<u16> = join_all(attempts)
        .await
        .iter()
        .map(|s| s.as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 200, 200, 201]);
    assert_eq!(first.count_rows("resources").await, 1);
}
