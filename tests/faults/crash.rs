//! SIGKILL of the server in the middle of a stream of writes: after a restart on the same
//! database every acknowledged write is there at its version, no version is half-written,
//! and history and the search index agree with the current content.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::checks::{assert_indexes_intact, assert_versions_whole, index_fingerprint};
use crate::cluster::Cluster;
use crate::server::{Server, marked_patient};

const WRITERS: usize = 6;
/// Each writer stops after this many operations, if the kill has not stopped it first.
const MAX_OPERATIONS: usize = 400;
/// The server is killed once this many writes were acknowledged.
const KILL_AFTER: usize = 200;
/// Patients every writer updates, so updates of one resource race each other.
const SHARED: usize = 3;

/// A write the server acknowledged with a 2xx.
#[derive(Debug, Clone)]
enum Ack {
    Stored {
        id: String,
        version: i64,
        mark: String,
    },
    Deleted {
        id: String,
    },
}

fn stored(answer: &crate::server::Answer, mark: &str) -> Ack {
    Ack::Stored {
        id: answer.body["id"].as_str().unwrap().to_string(),
        version: answer.body["meta"]["versionId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        mark: mark.to_string(),
    }
}

/// Writer `w`: creates its own Patients, updates them (with If-Match), deletes some, and
/// updates the shared ones, until the server stops answering or its operations run out.
async fn writer(
    server: Arc<Server>,
    w: usize,
    shared: Arc<Vec<String>>,
    acked: Arc<AtomicUsize>,
) -> Vec<Ack> {
    let mut acks = Vec::new();
    // Own live Patients and their current versions.
    let mut own: Vec<(String, i64)> = Vec::new();
    for k in 0..MAX_OPERATIONS {
        let mark = format!("w{w}n{k}");
        let (method, path, body, headers) = match k % 5 {
            0 | 1 => (
                Method::POST,
                "/fhir/Patient".to_string(),
                Some(marked_patient(&mark)),
                vec![],
            ),
            2 if !own.is_empty() => {
                let (id, version) = own[k % own.len()].clone();
                let mut body = marked_patient(&mark);
                body["id"] = Value::String(id.clone());
                (
                    Method::PUT,
                    format!("/fhir/Patient/{id}"),
                    Some(body),
                    vec![("If-Match", format!("W/\"{version}\""))],
                )
            }
            3 if own.len() > 2 => {
                let (id, _) = own.remove(0);
                (Method::DELETE, format!("/fhir/Patient/{id}"), None, vec![])
            }
            _ => {
                let id = &shared[k % SHARED];
                let mut body = marked_patient(&mark);
                body["id"] = Value::String(id.clone());
                (
                    Method::PUT,
                    format!("/fhir/Patient/{id}"),
                    Some(body),
                    vec![],
                )
            }
        };
        let Ok(answer) = server
            .try_send_with(method.clone(), &path, body.as_ref(), &headers)
            .await
        else {
            break;
        };
        match (method, answer.status) {
            (Method::DELETE, StatusCode::OK | StatusCode::NO_CONTENT) => {
                acks.push(Ack::Deleted {
                    id: path.rsplit('/').next().unwrap().to_string(),
                });
            }
            (_, StatusCode::OK | StatusCode::CREATED) => {
                let ack = stored(&answer, &mark);
                if let Ack::Stored { id, version, .. } = &ack
                    && !shared.contains(id)
                {
                    own.retain(|(own_id, _)| own_id != id);
                    own.push((id.clone(), *version));
                }
                acks.push(ack);
            }
            (_, status) => panic!("writer {w}: {path} answered {status}: {}", answer.body),
        }
        acked.fetch_add(1, Ordering::SeqCst);
    }
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_a_sigkill_whole_and_indexed() {
    let cluster = Cluster::start_new(&["max_connections = 50"]);
    let url = cluster.create_database("fhir", None);
    let mut server = Server::start(&url, &[("DB_POOL_SIZE", "8")]).await;

    let mut shared = Vec::new();
    for s in 0..SHARED {
        let answer = server
            .send(
                Method::POST,
                "/fhir/Patient",
                Some(&marked_patient(&format!("shared{s}"))),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        shared.push(answer.body["id"].as_str().unwrap().to_string());
    }
    let shared = Arc::new(shared);
    let acked = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(server);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(running.clone(), w, shared.clone(), acked.clone())))
        .collect();
    let started = Instant::now();
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writes too slow: {} acknowledged",
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The writers hold the other references; only the kill goes through this one.
    let pid = running.pid();
    kill_9(pid);
    let mut acks = Vec::new();
    for writer in writers {
        acks.extend(writer.await.unwrap());
    }
    server = Arc::try_unwrap(running)
        .ok()
        .expect("the writers have ended");
    server.forget_killed();
    assert!(acks.len() >= KILL_AFTER, "{} acknowledged", acks.len());
    assert!(
        acks.len() < WRITERS * MAX_OPERATIONS,
        "the kill came after every writer had finished"
    );

    let versions = cluster.sql("fhir", "SELECT count(*) FROM resource_versions");
    eprintln!(
        "{} writes acknowledged before the kill; {versions} versions stored",
        acks.len()
    );
    server.restart().await;
    assert_acknowledged_writes_are_there(&server, &acks).await;
    assert_versions_whole(&cluster, "fhir");
    assert_search_finds_the_current_content(&server, &cluster, &acks).await;
    let before = index_fingerprint(&cluster, "fhir");
    server.command("reindex");
    assert_eq!(
        index_fingerprint(&cluster, "fhir"),
        before,
        "the index differs from a rebuild"
    );
    assert_indexes_intact(&cluster, "fhir");
}

fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn assert_acknowledged_writes_are_there(server: &Server, acks: &[Ack]) {
    for ack in acks {
        match ack {
            Ack::Stored { id, version, mark } => {
                let answer = server
                    .get(&format!("/fhir/Patient/{id}/_history/{version}"))
                    .await;
                assert_eq!(
                    answer.status,
                    StatusCode::OK,
                    "Patient/{id} version {version}: {}",
                    answer.body
                );
                assert_eq!(
                    answer.body["identifier"][0]["value"],
                    mark.as_str(),
                    "Patient/{id} version {version}"
                );
            }
            Ack::Deleted { id } => {
                let answer = server.get(&format!("/fhir/Patient/{id}")).await;
                assert_eq!(
                    answer.status,
                    StatusCode::GONE,
                    "deleted Patient/{id}: {}",
                    answer.body
                );
            }
        }
    }
}

/// Every live Patient's current mark finds exactly it; a mark only an older version or a
/// deleted Patient carried finds nothing.
async fn assert_search_finds_the_current_content(server: &Server, cluster: &Cluster, acks: &[Ack]) {
    let rows = cluster.sql(
        "fhir",
        "SELECT id || ' ' || coalesce(content->'identifier'->0->>'value', '-') FROM resources WHERE NOT deleted",
    );
    let current: HashMap<String, String> = rows
        .lines()
        .map(|line| {
            let (id, mark) = line.split_once(' ').unwrap();
            (mark.to_string(), id.to_string())
        })
        .collect();
    let mut marks: BTreeMap<String, Option<String>> = current
        .iter()
        .map(|(m, id)| (m.clone(), Some(id.clone())))
        .collect();
    for ack in acks {
        if let Ack::Stored { mark, .. } = ack {
            marks.entry(mark.clone()).or_insert(None);
        }
    }
    for (mark, expected) in marks {
        let answer = server
            .get(&format!(
                "/fhir/Patient?identifier=urn:fault-test|{mark}&_count=10"
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let found: Vec<&str> = answer.body["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str())
            .collect();
        assert_eq!(
            found,
            expected.as_deref().into_iter().collect::<Vec<_>>(),
            "search for {mark}"
        );
    }
}
