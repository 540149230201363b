//! `Patient/{id}/$treatment-status`: the series, what is due next, and discharge readiness.

use chrono::{Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, outcome_diagnostics, patient};
use crate::safety::{at, blood_pressure, give, vital};

fn parameter<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no parameter {name} in {parameters}"))
}

fn part<'a>(parameter: &'a Value, name: &str) -> Vec<&'a Value> {
    parameter["part"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .collect()
}

#[tokio::test]
async fn status_during_a_series_and_discharge_after_an_infusion() {
    let app = TestApp::spawn().await;
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let nothing = json(app.get(&format!("Patient/{id}/$treatment-status")).await).await;
    assert_eq!(parameter(&nothing, "phase")["valueCode"], "not-started");
    assert_eq!(parameter(&nothing, "series-count")["valueInteger"], 0);

    // Two infusions: three days ago, and one that ended 10 minutes ago (100 minutes long).
    let first = now - Duration::days(3);
    let latest = now - Duration::minutes(110);
    assert_eq!(give(&app, &id, first, 35.0).await.0, StatusCode::CREATED);
    assert_eq!(give(&app, &id, latest, 49.0).await.0, StatusCode::CREATED);
    let status = json(app.get(&format!("Patient/{id}/$treatment-status")).await).await;
    assert_eq!(parameter(&status, "phase")["valueCode"], "in-series");
    let series = parameter(&status, "current-series");
    assert_eq!(part(series, "infusions")[0]["valueInteger"], 2);
    assert_eq!(
        part(series, "first")[0]["valueDateTime"],
        json!(format!("{}.000Z", &at(first)[..19]))
    );
    assert_eq!(
        part(series, "cumulative-dose")[0]["valueQuantity"]["value"],
        84.0
    );
    assert_eq!(
        part(series, "cumulative-dose-per-kg")[0]["valueQuantity"]["value"],
        1.2
    );
    let window = &parameter(&status, "next-infusion-window")["valuePeriod"];
    assert_eq!(
        window["start"],
        json!(format!("{}.000Z", &at(latest + Duration::hours(24))[..19]))
    );
    assert_eq!(
        window["end"],
        json!(format!("{}.000Z", &at(latest + Duration::days(7))[..19]))
    );
    assert_eq!(parameter(&status, "retreatment-due")["valueBoolean"], false);
    let discharge = parameter(&status, "discharge");
    assert_eq!(part(discharge, "ready")[0]["valueBoolean"], false);
    let reasons: Vec<&str> = part(discharge, "reason")
        .iter()
        .map(|r| r["valueString"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "10 minutes since the infusion ended; at least 30 are required",
            "no post-infusion blood pressure recorded",
            "no post-infusion heart rate recorded",
            "no post-infusion SpO2 recorded",
        ]
    );

    // Post-infusion vitals, one out of range.
    let ended = latest + Duration::minutes(100);
    app.create(&blood_pressure(
        &id,
        ended + Duration::minutes(5),
        165.0,
        90.0,
    ))
    .await;
    app.create(&vital(
        &id,
        "8867-4",
        ended + Duration::minutes(5),
        72.0,
        "/min",
    ))
    .await;
    app.create(&vital(
        &id,
        "59408-5",
        ended + Duration::minutes(5),
        97.0,
        "%",
    ))
    .await;
    let status = json(app.get(&format!("Patient/{id}/$treatment-status")).await).await;
    let reasons: Vec<String> = part(parameter(&status, "discharge"), "reason")
        .iter()
        .map(|r| r["valueString"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "10 minutes since the infusion ended; at least 30 are required".to_string(),
            "post-infusion blood pressure 165/90 mm[Hg] is at or above 160/100 mm[Hg]".to_string(),
        ]
    );
}

#[tokio::test]
async fn a_finished_series_makes_retreatment_due_and_access_is_checked() {
    let app = TestApp::spawn().await;
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let begin = now - Duration::days(60);
    for n in 0..6 {
        let start = begin + Duration::days(2 * n);
        assert_eq!(give(&app, &id, start, 35.0).await.0, StatusCode::CREATED);
        let ended = start + Duration::minutes(100);
        app.create(&blood_pressure(
            &id,
            ended + Duration::minutes(30),
            120.0,
            80.0,
        ))
        .await;
        app.create(&vital(
            &id,
            "8867-4",
            ended + Duration::minutes(30),
            70.0,
            "/min",
        ))
        .await;
        app.create(&vital(
            &id,
            "59408-5",
            ended + Duration::minutes(30),
            98.0,
            "%",
        ))
        .await;
    }
    let status = json(app.get(&format!("Patient/{id}/$treatment-status")).await).await;
    assert_eq!(parameter(&status, "phase")["valueCode"], "retreatment-due");
    assert_eq!(parameter(&status, "retreatment-due")["valueBoolean"], true);
    let last = begin + Duration::days(10);
    let window = &parameter(&status, "retreatment-window")["valuePeriod"];
    assert_eq!(
        window["start"],
        json!(format!("{}.000Z", &at(last + Duration::days(28))[..19]))
    );
    assert_eq!(
        window["end"],
        json!(format!("{}.000Z", &at(last + Duration::days(42))[..19]))
    );
    let discharge = parameter(&status, "discharge");
    assert_eq!(part(discharge, "ready")[0]["valueBoolean"], true);
    assert!(part(discharge, "reason").is_empty());

    let other = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = app.token_for("patient/*.rs", Some(&other));
    let response = app
        .get_as(&token, &format!("Patient/{id}/$treatment-status"))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!outcome_diagnostics(&json(response).await).is_empty());
    let own = app
        .get_as(&token, &format!("Patient/{other}/$treatment-status"))
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(
        app.get("Patient/unknown/$treatment-status").await.status(),
        StatusCode::NOT_FOUND
    );
}
