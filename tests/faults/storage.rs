//! A database that cannot take writes: read-only (as a failover or maintenance makes it)
//! and out of disk space (a real, size-limited filesystem). Writes get a clear 503, reads
//! whose audit cannot be recorded are not answered (503), nothing is stored half-way, and
//! reads, their audits and writes work again once the cause is gone.

use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::checks::{assert_indexes_intact, assert_versions_whole, stored_marks};
use crate::cluster::{Cluster, used_kilobytes};
use crate::server::{Answer, Server, marked_patient};

async fn create(server: &Server, body: &Value) -> Answer {
    server.send(Method::POST, "/fhir/Patient", Some(body)).await
}

/// Creates until one answers 201, for at most `limit`.
async fn create_eventually(server: &Server, mark: &str, limit: Duration) -> Answer {
    let started = Instant::now();
    loop {
        let answer = create(server, &marked_patient(mark)).await;
        if answer.status == StatusCode::CREATED || started.elapsed() > limit {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_unavailable(answer: &Answer, says: &str) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.issue_code(), "transient", "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    let diagnostics = answer.body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains(says), "{diagnostics}");
}

/// Creates `count` Patients marked `prefix-i` and returns their read paths.
async fn some_patients(server: &Server, prefix: &str, count: usize) -> Vec<String> {
    let mut paths = Vec::new();
    for i in 0..count {
        let answer = create(server, &marked_patient(&format!("{prefix}-{i}"))).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        paths.push(format!(
            "/fhir/Patient/{}",
            answer.body["id"].as_str().unwrap()
        ));
    }
    paths
}

/// Reads during the outage: 503, since their AuditEvent cannot be recorded.
async fn assert_reads_refused(server: &Server, paths: &[String], says: &str) {
    for path in paths {
        assert_unavailable(&server.get(path).await, says);
    }
}

/// How many successful reads of `paths` the audit trail holds.
fn audited_reads(cluster: &Cluster, paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|path| {
            let id = path.rsplit('/').next().unwrap();
            cluster.sql(
                "fhir",
                &format!(
                    "SELECT count(*) FROM audit_events WHERE subtype = 'read' AND outcome = '0' AND patients @> ARRAY['{id}']"
                ),
            )
        })
        .collect()
}

async fn assert_reads_work(server: &Server, paths: &[String]) {
    for path in paths {
        assert_eq!(server.get(path).await.status, StatusCode::OK, "{path}");
    }
    let search = server
        .get("/fhir/Patient?identifier=urn:fault-test|&_count=100")
        .await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.body);
    assert_eq!(server.get("/readyz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_database_refuses_writes_and_unauditable_reads_with_503() {
    let cluster = Cluster::start_new(&[]);
    let url = cluster.create_database("fhir", None);
    let server = Server::start(&url, &[("DB_POOL_SIZE", "4")]).await;
    let paths = some_patients(&server, "before", 5).await;

    cluster.sql(
        "postgres",
        "ALTER SYSTEM SET default_transaction_read_only = on",
    );
    cluster.sql("postgres", "SELECT pg_reload_conf()");
    // As a failover does: the sessions of the old primary end.
    cluster.sql(
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'fhir'",
    );
    let versions = cluster.sql("fhir", "SELECT count(*) FROM resource_versions");
    for i in 0..6 {
        let answer = create(&server, &marked_patient(&format!("refused-{i}"))).await;
        assert_unavailable(&answer, "read-only");
    }
    let mut changed = marked_patient("refused-update");
    changed["id"] = paths[0].rsplit('/').next().unwrap().into();
    let update = server.send(Method::PUT, &paths[0], Some(&changed)).await;
    assert_unavailable(&update, "read-only");
    assert_reads_refused(&server, &paths, "read-only").await;
    assert_eq!(
        cluster.sql("fhir", "SELECT count(*) FROM resource_versions"),
        versions
    );

    cluster.sql(
        "postgres",
        "ALTER SYSTEM RESET default_transaction_read_only",
    );
    cluster.sql("postgres", "SELECT pg_reload_conf()");
    let answer = create_eventually(&server, "after", Duration::from_secs(10)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(audited_reads(&cluster, &paths), vec!["0"; paths.len()]);
    assert_reads_work(&server, &paths).await;
    assert_eq!(audited_reads(&cluster, &paths), vec!["1"; paths.len()]);
    let stored = stored_marks(&cluster, "fhir");
    assert!(
        !stored.iter().any(|m| m.starts_with("refused")),
        "{stored:?}"
    );
    assert_versions_whole(&cluster, "fhir");
}

/// A Patient carrying `kilobytes` of incompressible text, so a few fill a small disk.
fn bulky_patient(mark: &str, kilobytes: usize) -> Value {
    let mut bytes = vec![0u8; kilobytes * 512];
    OsRng.fill_bytes(&mut bytes);
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut patient = marked_patient(mark);
    patient["extension"] = serde_json::json!([{
        "url": "https://ketamine-fhir.example.org/fhir/StructureDefinition/fault-test-ballast",
        "valueString": text
    }]);
    patient
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_writes_with_503_and_corrupts_nothing() {
    let mut cluster = Cluster::start_new(&[]);
    // The database lives in a tablespace on its own tmpfs, a filesystem that really fills;
    // the write-ahead log stays on the data directory's disk.
    let small = cluster.dir.join("small");
    cluster.mount_tmpfs(&small, 512);
    let space = small.join("space");
    cluster.own_dir(&space);
    cluster.sql(
        "postgres",
        &format!("CREATE TABLESPACE small LOCATION '{}'", space.display()),
    );
    let url = cluster.create_database("fhir", Some("small"));
    let server = Server::start(&url, &[("DB_POOL_SIZE", "4")]).await;
    let paths = some_patients(&server, "before", 5).await;
    // Leave room for a few bulky Patients only.
    cluster.resize_tmpfs(&small, used_kilobytes(&small) + 1_536);

    let mut answers = Vec::new();
    let mut refused_in_a_row = 0;
    for i in 0..200 {
        let mark = format!("bulky-{i}");
        let answer = create(&server, &bulky_patient(&mark, 96)).await;
        match answer.status {
            StatusCode::CREATED => refused_in_a_row = 0,
            _ => {
                assert_unavailable(&answer, "no disk space");
                refused_in_a_row += 1;
            }
        }
        answers.push((mark, answer));
        if refused_in_a_row == 3 {
            break;
        }
    }
    assert_eq!(refused_in_a_row, 3, "the disk never filled");
    let accepted = answers
        .iter()
        .filter(|(_, a)| a.status == StatusCode::CREATED)
        .count();
    eprintln!("{accepted} bulky Patients stored before the disk was full");
    // Fill what room is left with audit rows: once none fits, reads are refused.
    let mut refused_reads = 0;
    for _ in 0..2_000 {
        if server.get(&paths[0]).await.status == StatusCode::SERVICE_UNAVAILABLE {
            refused_reads += 1;
            break;
        }
    }
    assert_eq!(refused_reads, 1, "reads kept being answered on a full disk");
    assert_reads_refused(&server, &paths[1..], "no disk space").await;
    let stored = stored_marks(&cluster, "fhir");
    for (mark, answer) in &answers {
        assert_eq!(
            stored.contains(mark),
            answer.status == StatusCode::CREATED,
            "{mark} answered {}",
            answer.status
        );
    }

    cluster.resize_tmpfs(&small, 512 * 1024);
    let answer = create_eventually(&server, "after", Duration::from_secs(10)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let before = audited_reads(&cluster, &paths[1..]);
    assert_eq!(before, vec!["0"; paths.len() - 1]);
    assert_reads_work(&server, &paths).await;
    assert_eq!(
        audited_reads(&cluster, &paths[1..]),
        vec!["1"; paths.len() - 1]
    );
    assert_versions_whole(&cluster, "fhir");
    assert_indexes_intact(&cluster, "fhir");
}
