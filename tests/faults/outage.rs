//! PostgreSQL restarted under load: while it is down every request fails fast with a 503
//! OperationOutcome and `/readyz` says so; when it is back the same server process serves
//! again without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::cluster::Cluster;
use crate::server::{Answer, Server, marked_patient};

const ACQUIRE_TIMEOUT_MS: u64 = 1_000;
const LOADERS: usize = 4;
/// Each loader stops after this many requests even if never told to.
const MAX_REQUESTS: usize = 3_000;

const UP: u8 = 0;
const STOPPING: u8 = 1;
const DOWN: u8 = 2;
const STARTING: u8 = 3;
const BACK: u8 = 4;

/// One request of the load: the phase when it was sent and when its answer came.
struct Observed {
    sent: u8,
    answered: u8,
    answer: Answer,
    mark: Option<String>,
}

async fn load(
    server: Arc<Server>,
    n: usize,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    read: String,
) -> Vec<Observed> {
    let mut observed = Vec::new();
    for k in 0..MAX_REQUESTS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let sent = phase.load(Ordering::SeqCst);
        let (answer, mark) = if k % 2 == 0 {
            let mark = format!("load{n}x{k}");
            let answer = server
                .send(Method::POST, "/fhir/Patient", Some(&marked_patient(&mark)))
                .await;
            (answer, Some(mark))
        } else {
            (server.get(&read).await, None)
        };
        observed.push(Observed {
            sent,
            answered: phase.load(Ordering::SeqCst),
            answer,
            mark,
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    observed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_gives_fast_503s_and_the_same_process_recovers() {
    let cluster = Cluster::start_new(&[]);
    let url = cluster.create_database("fhir", None);
    let mut server = Server::start(
        &url,
        &[("DB_ACQUIRE_TIMEOUT_MS", "1000"), ("DB_POOL_SIZE", "4")],
    )
    .await;
    let created = server
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&marked_patient("before")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let read = format!("/fhir/Patient/{}", created.body["id"].as_str().unwrap());
    let pid = server.pid();

    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let server_ref = Arc::new(server);
    let loaders: Vec<_> = (0..LOADERS)
        .map(|n| {
            tokio::spawn(load(
                server_ref.clone(),
                n,
                phase.clone(),
                stop.clone(),
                read.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    phase.store(STOPPING, Ordering::SeqCst);
    tokio::task::block_in_place(|| cluster.stop_fast());
    phase.store(DOWN, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = server_ref.get("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert_eq!(ready.issue_code(), "transient");
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    phase.store(STARTING, Ordering::SeqCst);
    tokio::task::block_in_place(|| cluster.start());
    let back = Instant::now();
    server_ref
        .wait_until("ready again", Duration::from_secs(15), |a| {
            a.status == StatusCode::OK
        })
        .await;
    let recovery = back.elapsed();
    phase.store(BACK, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut observed = Vec::new();
    for loader in loaders {
        observed.extend(loader.await.unwrap());
    }
    server = Arc::try_unwrap(server_ref)
        .ok()
        .expect("the loaders have ended");
    assert!(server.is_running(), "the server process exited");
    assert_eq!(server.pid(), pid, "the server was restarted");
    eprintln!("ready again {recovery:?} after PostgreSQL started");

    for o in &observed {
        let status = o.answer.status;
        assert!(
            status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE,
            "an answer other than 2xx or 503: {status} {}",
            o.answer.body
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                ["transient", "timeout"].contains(&o.answer.issue_code()),
                "{}",
                o.answer.body
            );
            assert_eq!(o.answer.retry_after.as_deref(), Some("1"));
        }
        if o.answered == UP || o.sent == BACK {
            assert!(
                status.is_success(),
                "while PostgreSQL was up: {status} {}",
                o.answer.body
            );
        }
    }
    let while_down: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.sent == DOWN && o.answered == DOWN)
        .collect();
    assert!(
        while_down.len() >= 20,
        "only {} requests while down",
        while_down.len()
    );
    for o in &while_down {
        assert_eq!(
            o.answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            o.answer.body
        );
        assert!(
            o.answer.elapsed < Duration::from_millis(2 * ACQUIRE_TIMEOUT_MS),
            "a 503 took {:?}",
            o.answer.elapsed
        );
    }
    let slowest = while_down.iter().map(|o| o.answer.elapsed).max().unwrap();
    eprintln!(
        "{} requests while down, slowest 503 in {slowest:?}",
        while_down.len()
    );

    // What was acknowledged is stored; what was refused while down is not.
    let stored = crate::checks::stored_marks(&cluster, "fhir");
    for o in &observed {
        if let Some(mark) = &o.mark {
            if o.answer.status == StatusCode::CREATED {
                assert!(stored.contains(mark), "acknowledged {mark} is missing");
            } else if o.sent == DOWN && o.answered == DOWN {
                assert!(!stored.contains(mark), "refused {mark} was stored");
            }
        }
    }
    crate::checks::assert_versions_whole(&cluster, "fhir");
}
