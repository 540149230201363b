//! Slow statements and an exhausted pool: a table locked by another session makes
//! statements wait; the statement timeout, the pool's acquire timeout and the request
//! deadline each answer 503 in time, no request hangs, and nothing half-done is stored.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};

use crate::checks::stored_marks;
use crate::cluster::Cluster;
use crate::server::{Answer, Server, marked_patient};

/// A session holding `ACCESS EXCLUSIVE` on `resources` until dropped or released.
async fn lock_resources(url: &str) -> AsyncPgConnection {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute("BEGIN; LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    conn
}

/// `count` concurrent requests, alternately a read of `read` and a create marked `prefix-i`.
async fn burst(server: &Server, read: &str, prefix: &str, count: usize) -> Vec<Answer> {
    join_all((0..count).map(|i| async move {
        if i % 2 == 0 {
            server.get(read).await
        } else {
            let body = marked_patient(&format!("{prefix}-{i}"));
            server
                .send(Method::POST, "/fhir/Patient", Some(&body))
                .await
        }
    }))
    .await
}

async fn setup(settings: &[(&str, &str)]) -> (Cluster, String, Server, String) {
    let cluster = Cluster::start_new(&[]);
    let url = cluster.create_database("fhir", None);
    let server = Server::start(&url, settings).await;
    let created = server
        .send(Method::POST, "/fhir/Patient", Some(&marked_patient("kept")))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let read = format!("/fhir/Patient/{}", created.body["id"].as_str().unwrap());
    (cluster, url, server, read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocked_statements_time_out_and_an_exhausted_pool_fails_fast() {
    let (cluster, url, server, read) = setup(&[
        ("DB_POOL_SIZE", "2"),
        ("DB_ACQUIRE_TIMEOUT_MS", "500"),
        ("DB_STATEMENT_TIMEOUT_MS", "1000"),
        ("REQUEST_TIMEOUT_MS", "10000"),
    ])
    .await;
    let mut locker = lock_resources(&url).await;
    let answers = burst(&server, &read, "blocked", 10).await;
    let mut codes = Vec::new();
    for answer in &answers {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
        // Acquire wait (0.5 s) plus statement timeout (1 s), with room for a loaded machine.
        assert!(
            answer.elapsed < Duration::from_secs(4),
            "took {:?}",
            answer.elapsed
        );
        codes.push(answer.issue_code().to_string());
    }
    let statement_timeouts = codes.iter().filter(|c| *c == "timeout").count();
    let pool_waits = codes.iter().filter(|c| *c == "transient").count();
    assert!(statement_timeouts >= 2, "{codes:?}");
    assert!(pool_waits >= 2, "{codes:?}");
    assert_eq!(statement_timeouts + pool_waits, answers.len(), "{codes:?}");
    let timed_out = answers
        .iter()
        .find(|a| a.issue_code() == "timeout")
        .unwrap();
    assert!(
        timed_out.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("A database statement ran past its time limit"),
        "{}",
        timed_out.body
    );

    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(server.get(&read).await.status, StatusCode::OK);
    let after = server
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&marked_patient("after")),
        )
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.body);
    let stored = stored_marks(&cluster, "fhir");
    assert!(
        !stored.iter().any(|m| m.starts_with("blocked")),
        "{stored:?}"
    );
    crate::checks::assert_versions_whole(&cluster, "fhir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_request_deadline_answers_before_a_longer_statement_timeout() {
    let (cluster, url, server, read) = setup(&[
        ("DB_POOL_SIZE", "8"),
        ("DB_STATEMENT_TIMEOUT_MS", "4000"),
        ("REQUEST_TIMEOUT_MS", "1000"),
    ])
    .await;
    let mut locker = lock_resources(&url).await;
    let answers = burst(&server, &read, "abandoned", 6).await;
    for answer in &answers {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
        assert_eq!(answer.issue_code(), "timeout", "{}", answer.body);
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
        assert!(
            answer.elapsed >= Duration::from_millis(1000)
                && answer.elapsed < Duration::from_secs(3),
            "took {:?}",
            answer.elapsed
        );
        assert!(
            answer.body["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("The request did not complete within 1000 ms"),
            "{}",
            answer.body
        );
    }
    locker.batch_execute("ROLLBACK").await.unwrap();
    // The abandoned writes' transactions never commit: PostgreSQL ends them once they sit
    // idle in their transaction for longer than the statement timeout.
    let started = std::time::Instant::now();
    loop {
        let open = cluster.sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'fhir' AND state LIKE 'idle in transaction%'",
        );
        if open == "0" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{open} abandoned transactions stay open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = stored_marks(&cluster, "fhir");
    assert!(
        !stored.iter().any(|m| m.starts_with("abandoned")),
        "{stored:?}"
    );
    let after = server
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&marked_patient("after")),
        )
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.body);
    assert_eq!(server.get(&read).await.status, StatusCode::OK);
}
