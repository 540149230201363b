//! The bulk load path (`seed --synthetic`) stores exactly what the single write path stores,
//! and `reindex` rebuilds exactly the index and outcome facts the writes built.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ketamine_fhir::fhir::{ResourceId, ResourceType};
use ketamine_fhir::seed::synthetic;
use ketamine_fhir::store::resources::{self, NextContent, WriteMethod};
use ketamine_fhir::store::{self, index};
use reqwest::StatusCode;

use crate::helpers::{TestApp, json};

#[derive(QueryableByName, Debug, PartialEq)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Everything stored, as sorted text lines independent of creation order and time:
/// current rows, versions, and every index row named by its resource's type and id.
const STORED_STATE: &str = "
    SELECT concat_ws(' ', 'resource', resource_type, id, version_id, deleted, content #- '{meta,lastUpdated}') AS line FROM resources
    UNION ALL SELECT concat_ws(' ', 'version', resource_type, id, version_id, deleted, method, content #- '{meta,lastUpdated}') FROM resource_versions
    UNION ALL SELECT concat_ws(' ', 'token', r.resource_type, r.id, x.param, x.system, x.code, x.text) FROM search_token x JOIN resources r ON r.created_seq = x.resource_seq
    UNION ALL SELECT concat_ws(' ', 'string', r.resource_type, r.id, x.param, x.normalized, x.exact) FROM search_string x JOIN resources r ON r.created_seq = x.resource_seq
    UNION ALL SELECT concat_ws(' ', 'date', r.resource_type, r.id, x.param, x.start, x.finish) FROM search_date x JOIN resources r ON r.created_seq = x.resource_seq
    UNION ALL SELECT concat_ws(' ', 'quantity', r.resource_type, r.id, x.param, x.value, x.system, x.code, x.canonical_value, x.canonical_code) FROM search_quantity x JOIN resources r ON r.created_seq = x.resource_seq
    UNION ALL SELECT concat_ws(' ', 'reference', r.resource_type, r.id, x.param, x.target_type, x.target_id, x.url) FROM search_reference x JOIN resources r ON r.created_seq = x.resource_seq
    UNION ALL SELECT concat_ws(' ', 'uri', r.resource_type, r.id, x.param, x.uri) FROM search_uri x JOIN resources r ON r.created_seq = x.resource_seq
    UNION ALL SELECT concat_ws(' ', 'fact', r.resource_type, r.id, x.patient_id, x.kind, x.at, x.value) FROM clinic_facts x JOIN resources r ON r.created_seq = x.resource_seq
    ORDER BY 1";

async fn stored_state(database_url: &str) -> Vec<String> {
    let mut conn = AsyncPgConnection::establish(database_url).await.unwrap();
    let lines: Vec<Line> = diesel::sql_query(STORED_STATE)
        .load(&mut conn)
        .await
        .unwrap();
    lines.into_iter().map(|l| l.line).collect()
}

const PATIENTS: u64 = 40;

/// Stored ketamine infusions given and recorded pain scores, counted from the JSON.
async fn given_infusions_and_pain_scores(database_url: &str) -> (usize, usize) {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = BigInt)]
        infusions: i64,
        #[diesel(sql_type = BigInt)]
        pain_scores: i64,
    }
    let mut conn = AsyncPgConnection::establish(database_url).await.unwrap();
    let counts: Counts = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE resource_type = 'MedicationAdministration' \
                  AND content->>'status' IN ('completed', 'in-progress') \
                  AND content @> '{\"medicationCodeableConcept\":{\"coding\":[{\"code\":\"6130\"}]}}') AS infusions, \
                count(*) FILTER (WHERE resource_type = 'Observation' \
                  AND content->>'status' IN ('final', 'amended', 'corrected', 'preliminary') \
                  AND content @> '{\"code\":{\"coding\":[{\"code\":\"72514-3\"}]}}') AS pain_scores \
         FROM resources WHERE NOT deleted",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    (counts.infusions as usize, counts.pain_scores as usize)
}

#[tokio::test]
async fn bulk_load_stores_what_the_single_write_path_stores() {
    let bulk = TestApp::spawn().await;
    let single = TestApp::spawn().await;
    let writes = bulk.config.write_context(bulk.config.listen_addr).unwrap();
    let context = writes.clone();

    let bulk_pool = store::build_pool(&bulk.config).unwrap();
    let summary = synthetic::load(&bulk_pool, &context, PATIENTS)
        .await
        .unwrap();

    let single_pool = store::build_pool(&single.config).unwrap();
    let mut written = 0;
    for n in 1..=PATIENTS {
        for resource in synthetic::patient_resources(n) {
            let resource_type =
                ResourceType::parse(resource["resourceType"].as_str().unwrap()).unwrap();
            let id = ResourceId::parse(resource["id"].as_str().unwrap()).unwrap();
            resources::write_version(
                &single_pool,
                &resource_type,
                &id,
                WriteMethod::Update,
                None,
                &writes,
                |_| Ok(NextContent::Write(resource)),
            )
            .await
            .unwrap();
            written += 1;
        }
    }
    assert_eq!(summary.created, written);
    assert_eq!(summary.existing, 0);
    let bulk_state = stored_state(&bulk.database_url).await;
    assert!(bulk_state.len() > written * 5, "{} lines", bulk_state.len());
    assert_eq!(bulk_state, stored_state(&single.database_url).await);
    let facts = |kind: &str| {
        let prefix = "fact ";
        let kind = format!(" {kind} ");
        bulk_state
            .iter()
            .filter(|line| line.starts_with(prefix) && line.contains(&kind))
            .count()
    };
    let (infusions, pain_scores) = given_infusions_and_pain_scores(&bulk.database_url).await;
    assert!(infusions > 0 && pain_scores > 0);
    assert_eq!(facts("infusion"), infusions);
    assert_eq!(facts("pain-score"), pain_scores);

    let again = synthetic::load(&bulk_pool, &context, PATIENTS)
        .await
        .unwrap();
    assert_eq!((again.created, again.existing), (0, written));
    assert_eq!(stored_state(&bulk.database_url).await, bulk_state);
}

#[tokio::test]
async fn reindex_rebuilds_the_same_index_and_bulk_loaded_data_is_searchable() {
    let app = TestApp::spawn().await;
    let context = app.config.write_context(app.config.listen_addr).unwrap();
    let pool = store::build_pool(&app.config).unwrap();
    synthetic::load(&pool, &context, 12).await.unwrap();
    let before = stored_state(&app.database_url).await;
    let mut conn = AsyncPgConnection::establish(&app.database_url)
        .await
        .unwrap();
    diesel::sql_query("DELETE FROM search_token WHERE param = 'code'")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("DELETE FROM clinic_facts WHERE kind = 'pain-score'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_ne!(stored_state(&app.database_url).await, before);
    let count = index::reindex(&pool, &context).await.unwrap();
    assert_eq!(count, synthetic::count_resources(1..=12));
    assert_eq!(stored_state(&app.database_url).await, before);

    let patient = synthetic::patient_id(3);
    let response = app
        .get(&format!(
            "Observation?patient={patient}&code=http://loinc.org|72514-3&_sort=-date"
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let bundle = json(response).await;
    let expected: Vec<String> = {
        let mut pain: Vec<(String, String)> = synthetic::patient_resources(3)
            .into_iter()
            .filter(|r| r["code"]["coding"][0]["code"] == "72514-3")
            .map(|r| {
                (
                    r["effectiveDateTime"].as_str().unwrap().to_string(),
                    r["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        pain.sort();
        pain.into_iter().rev().map(|(_, id)| id).collect()
    };
    let found: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, expected);
    assert_eq!(bundle["total"], expected.len());
}
