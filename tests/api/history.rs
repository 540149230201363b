use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, heart_rate, json, patient};

#[tokio::test]
async fn instance_history_is_newest_first_with_paging() {
    let app = TestApp::spawn().await;
    let mut body = patient();
    body["id"] = json!("h1");
    for gender in ["female", "male", "other", "unknown"] {
        body["gender"] = json!(gender);
        app.put("Patient/h1", &body).await;
    }
    let page = json(app.get("Patient/h1/_history?_count=3").await).await;
    assert_eq!(page["type"], "history");
    assert_eq!(page["total"], 4);
    let versions: Vec<&str> = page["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["4", "3", "2"]);
    let next = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .client
        .get(&next)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let second = json(response).await;
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    assert_eq!(second["entry"][0]["resource"]["meta"]["versionId"], "1");
    assert_eq!(second["entry"][0]["request"]["method"], "PUT");
    assert!(
        second["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next")
    );
}

#[tokio::test]
async fn type_and_system_history_cover_the_right_resources() {
    let app = TestApp::spawn().await;
    let p = app.create(&patient()).await;
    app.create(&heart_rate(p["id"].as_str().unwrap(), 60)).await;
    let patients = json(app.get("Patient/_history").await).await;
    assert_eq!(patients["total"], 1);
    let all = json(app.get("_history").await).await;
    assert_eq!(all["total"], 2);
    assert_eq!(all["entry"][0]["resource"]["resourceType"], "Observation");
}

#[tokio::test]
async fn history_since_filters_by_time_and_bad_since_is_400() {
    let app = TestApp::spawn().await;
    app.create(&patient()).await;
    let future = json(
        app.get("Patient/_history?_since=2999-01-01T00:00:00Z")
            .await,
    )
    .await;
    assert_eq!(future["total"], 0);
    let past = json(
        app.get("Patient/_history?_since=2000-01-01T00:00:00Z")
            .await,
    )
    .await;
    assert_eq!(past["total"], 1);
    let bad = app.get("Patient/_history?_since=yesterday").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(bad).await["issue"][0]["expression"][0], "_since");
}
