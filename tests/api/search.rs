use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    TestApp, follow, heart_rate, infusion, json, link, match_ids as ids, patient,
};

#[tokio::test]
async fn observations_by_subject_and_patient_in_every_reference_form() {
    let app = TestApp::spawn().await;
    let a = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let oa = app.create(&heart_rate(&a, 70)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.create(&heart_rate(&b, 71)).await;
    for query in [
        format!("Observation?subject=Patient/{a}"),
        format!("Observation?patient={a}"),
        format!("Observation?subject:Patient={a}"),
        format!("Observation?subject={}/Patient/{a}", app.base),
    ] {
        let bundle = json(app.get(&query).await).await;
        assert_eq!(bundle["type"], "searchset");
        assert_eq!(ids(&bundle), vec![oa.clone()], "{query}");
        assert_eq!(bundle["total"], 1, "{query}");
    }
}

#[tokio::test]
async fn medication_administrations_by_patient() {
    let app = TestApp::spawn().await;
    let a = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ma = app.create(&infusion(&a)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.create(&infusion("someone-else")).await;
    let bundle = json(
        app.get(&format!("MedicationAdministration?patient=Patient/{a}"))
            .await,
    )
    .await;
    assert_eq!(ids(&bundle), vec![ma]);
}

#[tokio::test]
async fn patient_by_identifier_token_forms() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for query in [
        "Patient?identifier=KC000001",
        "Patient?identifier=urn:oid:2.16.840.1.113883.3.7431.1|KC000001",
        "Patient?identifier=urn:oid:2.16.840.1.113883.3.7431.1|",
    ] {
        assert_eq!(
            ids(&json(app.get(query).await).await),
            vec![id.clone()],
            "{query}"
        );
    }
    assert!(ids(&json(app.get("Patient?identifier=|KC000001").await).await).is_empty());
    assert!(ids(&json(app.get("Patient?identifier=other|KC000001").await).await).is_empty());
}

#[tokio::test]
async fn id_and_last_updated() {
    let app = TestApp::spawn().await;
    let a = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let both = json(app.get(&format!("Patient?_id={a},{b}")).await).await;
    assert_eq!(both["total"], 2);
    assert_eq!(
        json(app.get("Patient?_lastUpdated=gt2999-01-01").await).await["total"],
        0
    );
    assert_eq!(
        json(app.get("Patient?_lastUpdated=ge2000-01").await).await["total"],
        2
    );
    let bad = app.get("Patient?_lastUpdated=xx2026").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(bad).await["issue"][0]["expression"][0], "_lastUpdated");
}

#[tokio::test]
async fn count_pages_with_next_links_that_work_and_stay_stable() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            app.create(&patient()).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let first = json(app.get("Patient?_count=2&_total=accurate").await).await;
    assert_eq!(ids(&first), created[0..2]);
    assert_eq!(first["total"], 5);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    app.create(&patient()).await; // a write between pages does not shift them
    let second = json(
        app.client
            .get(&next)
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ids(&second), created[2..4]);
}

#[tokio::test]
async fn by_default_the_total_is_given_only_when_the_first_page_holds_every_match() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.create(&patient()).await;
    }
    let complete = json(app.get("Patient?_count=3").await).await;
    assert_eq!(complete["total"], 3);
    let partial = json(app.get("Patient?_count=2").await).await;
    assert!(partial.get("total").is_none(), "{partial}");
    assert_eq!(partial["entry"].as_array().unwrap().len(), 2);
    let explicit_none = json(app.get("Patient?_count=3&_total=none").await).await;
    assert!(explicit_none.get("total").is_none());

    let counting = TestApp::spawn_with(|config| {
        config.search_default_total = ketamine_fhir::config::DefaultTotal::Accurate
    })
    .await;
    for _ in 0..3 {
        counting.create(&patient()).await;
    }
    assert_eq!(
        json(counting.get("Patient?_count=2").await).await["total"],
        3
    );
}

#[tokio::test]
async fn unknown_parameters_are_ignored_and_reported_or_refused_when_strict() {
    let app = TestApp::spawn().await;
    app.create(&patient()).await;
    let bundle = json(app.get("Patient?shoe-size=42&_count=10").await).await;
    assert_eq!(bundle["total"], 1);
    let self_link = bundle["link"][0]["url"].as_str().unwrap();
    assert_eq!(self_link, format!("{}/Patient?_count=10", app.base));
    let outcome = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("shoe-size")
    );
    let strict = app
        .request(Method::GET, "Patient?shoe-size=42")
        .header("Prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(strict.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(strict).await["issue"][0]["expression"][0], "shoe-size");
}

#[tokio::test]
async fn post_search_gives_the_same_result_as_get() {
    let app = TestApp::spawn().await;
    let a = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.create(&heart_rate(&a, 70)).await;
    app.create(&heart_rate("zzz", 70)).await;
    let get = json(app.get(&format!("Observation?subject=Patient/{a}")).await).await;
    let post = app
        .request(Method::POST, "Observation/_search")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("subject=Patient/{a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::OK);
    let post = json(post).await;
    assert_eq!(ids(&get), ids(&post));
    assert_eq!(post["total"], 1);
}

#[tokio::test]
async fn deleted_and_updated_resources_are_searched_by_their_current_version() {
    let app = TestApp::spawn().await;
    let mut p = app.create(&patient()).await;
    let id = p["id"].as_str().unwrap().to_string();
    p["identifier"][0]["value"] = json!("KC999999");
    app.put(&format!("Patient/{id}"), &p).await;
    assert!(ids(&json(app.get("Patient?identifier=KC000001").await).await).is_empty());
    assert_eq!(
        ids(&json(app.get("Patient?identifier=KC999999").await).await),
        vec![id.clone()]
    );
    app.request(Method::DELETE, &format!("Patient/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(app.get("Patient").await).await["total"], 0);
}

#[tokio::test]
async fn filtered_pages_in_creation_order_go_both_ways_once_per_resource() {
    let app = TestApp::spawn().await;
    let subject = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut created = Vec::new();
    for bpm in 60..67 {
        let mut observation = heart_rate(&subject, bpm);
        // Two codings with the same code: two index rows, still one match.
        observation["code"]["coding"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": "urn:clinic:codes", "code": "8867-4"}));
        created.push(
            app.create(&observation).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        app.create(&infusion(&subject)).await;
    }
    let first = json(
        app.get("Observation?code=8867-4&value-quantity=ge61&_count=2")
            .await,
    )
    .await;
    assert_eq!(ids(&first), created[1..3]);
    assert!(link(&first, "previous").is_none());
    app.create(&heart_rate(&subject, 99)).await; // a write between pages
    let second = follow(&app, &link(&first, "next").unwrap()).await;
    assert_eq!(ids(&second), created[3..5]);
    let third = follow(&app, &link(&second, "next").unwrap()).await;
    assert_eq!(ids(&third), created[5..7]);
    let fourth = follow(&app, &link(&third, "next").unwrap()).await;
    assert_eq!(
        ids(&fourth).len(),
        1,
        "the heart rate written after the first page"
    );
    assert!(link(&fourth, "next").is_none());
    let back = follow(&app, &link(&third, "previous").unwrap()).await;
    assert_eq!(ids(&back), created[3..5]);
    let back_again = follow(&app, &link(&back, "previous").unwrap()).await;
    assert_eq!(ids(&back_again), created[1..3]);
    assert!(link(&back_again, "previous").is_none());
}

/// A search of one shape whose values are all equalities is kept prepared on its
/// connection, and after five runs PostgreSQL may plan it once for any values. On a single
/// connection, the same searches with other values, well past that point, must each still
/// find exactly their own matches: sorted, chained and by exact name (a plain name search
/// is a prefix, a range, and would be planned afresh each run).
#[tokio::test]
async fn searches_of_one_shape_repeated_on_one_connection_find_their_own_matches() {
    let app = TestApp::spawn_with(|config| config.db_pool_size = 1).await;
    let mut patients = Vec::new();
    for (family, beats) in [
        ("Okafor", [61, 62]),
        ("Brandt", [71, 72]),
        ("Ishikawa", [81, 82]),
    ] {
        let mut resource = patient();
        resource["name"][0]["family"] = json!(family);
        let id = app.create(&resource).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let mut observations = Vec::new();
        for bpm in beats {
            let mut observation = heart_rate(&id, bpm);
            observation["effectiveDateTime"] = json!(format!("2026-11-{:02}T10:00:00Z", bpm - 60));
            observations.push(
                app.create(&observation).await["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        patients.push((family, id, observations));
    }
    for round in 0..12 {
        let (family, id, observations) = &patients[round % patients.len()];
        let newest_first: Vec<String> = observations.iter().rev().cloned().collect();
        let sorted =
            format!("Observation?patient={id}&code=http://loinc.org|8867-4&_sort=-date&_count=10");
        assert_eq!(
            ids(&json(app.get(&sorted).await).await),
            newest_first,
            "round {round}: {sorted}"
        );
        let chained = format!("Observation?subject:Patient.family:exact={family}&_sort=date");
        assert_eq!(
            ids(&json(app.get(&chained).await).await),
            *observations,
            "round {round}: {chained}"
        );
        let by_name = format!("Patient?family:exact={family}");
        assert_eq!(
            ids(&json(app.get(&by_name).await).await),
            vec![id.clone()],
            "round {round}: {by_name}"
        );
    }
}
