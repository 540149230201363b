//! Subscriptions end to end: a real HTTP receiver on loopback, started here, that checks
//! every Standard Webhooks signature itself (HMAC-SHA256 computed in the test, not by the
//! server's code), against the real server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use ketamine_fhir::config::{Networks, RetrySchedule};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, heart_rate, issue_expressions, json, outcome_diagnostics, patient};

/// The secret partners are given; its key is the 32 bytes 1..=32.
fn secret() -> String {
    let key: Vec<u8> = (1..=32).collect();
    format!("whsec_{}", STANDARD.encode(key))
}

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Value,
    raw: Vec<u8>,
    answered: u16,
    signature_valid: bool,
}

impl Received {
    fn notification_type(&self) -> &str {
        parameter(&self.body["entry"][0]["resource"], "type")["valueCode"]
            .as_str()
            .unwrap_or_default()
    }

    fn event_numbers(&self) -> Vec<i64> {
        self.body["entry"][0]["resource"]["parameter"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "notification-event")
            .map(|p| {
                p["part"][0]["valueString"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    parameters["parameter"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// The status to answer with (200 unless a test says otherwise).
    answer: AtomicU16,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
    /// `Retry-After` to send with error answers.
    retry_after: Mutex<Option<String>>,
    /// Requests that arrived, counted before any delay.
    arrivals: AtomicU64,
}

/// A webhook endpoint on a free loopback port.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let headers: HashMap<String, String> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                value.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let signature_valid = verify(
        &secret(),
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &body,
    );
    state.arrivals.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let answer = state.answer.load(Ordering::SeqCst);
    state.received.lock().unwrap().push(Received {
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        answered: answer,
        signature_valid,
    });
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(answer).unwrap());
    if let Some(retry_after) = state.retry_after.lock().unwrap().clone() {
        response.insert_header(("Retry-After", retry_after));
    }
    response.finish()
}

/// What a partner does: HMAC-SHA256 of `id.timestamp.body` with the key, base64, compared
/// with each `v1,` signature of the header; the timestamp within five minutes.
fn verify(secret: &str, id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let Ok(sent_at) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - sent_at).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    signatures.split(' ').any(|s| s == expected)
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        state.answer.store(200, Ordering::SeqCst);
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            state,
        }
    }

    fn answer_with(&self, status: u16) {
        self.state.answer.store(status, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Event notifications acknowledged with a 2xx, in arrival order.
    fn acknowledged_events(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.notification_type() == "event-notification" && r.answered < 300)
            .collect()
    }

    /// The event numbers of `acknowledged_events`, in arrival order.
    fn acknowledged_numbers(&self) -> Vec<i64> {
        self.acknowledged_events()
            .iter()
            .flat_map(Received::event_numbers)
            .collect()
    }

    /// Waits (at most 30 s) until `done` holds for what was received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if done(&self.received()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}; received {:#?}",
            self.received()
                .iter()
                .map(|r| (
                    r.notification_type().to_string(),
                    r.event_numbers(),
                    r.answered
                ))
                .collect::<Vec<_>>()
        );
    }
}

const OBSERVATION_RECORDED: &str =
    "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/observation-recorded";
const INFUSION_COMPLETED: &str =
    "https://ketamine-fhir.example.org/fhir/SubscriptionTopic/infusion-completed";
const FILTER: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
const CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
const HEARTBEAT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";
const SECRET: &str = "https://ketamine-fhir.example.org/fhir/StructureDefinition/webhook-secret";

fn subscription(endpoint: &str, topic: &str, filter: Option<&str>, content: &str) -> Value {
    let mut resource = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Tell the primary-care practice",
        "criteria": topic,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": CONTENT, "valueCode": content}]},
            "header": ["X-Partner: practice-7"],
            "extension": [{"url": SECRET, "valueString": secret()}]
        }
    });
    if let Some(filter) = filter {
        resource["_criteria"] = json!({"extension": [{"url": FILTER, "valueString": filter}]});
    }
    resource
}

/// An app retrying `count` times `wait` apart, a receiver, a patient, and an active
/// id-only observation-recorded subscription to the receiver.
async fn watched_with_retries(wait: Duration, count: usize) -> (TestApp, Receiver, String, String) {
    let app = TestApp::spawn_with(|config| {
        config.webhooks.webhook_retry_schedule = RetrySchedule(vec![wait; count]);
    })
    .await;
    let receiver = Receiver::start().await;
    let watched = new_patient(&app).await;
    let resource = subscription(&receiver.url, OBSERVATION_RECORDED, None, "id-only");
    let id = active_subscription(&app, &receiver, &resource).await;
    (app, receiver, watched, id)
}

/// Creates the subscription and waits until its handshake made it active.
async fn active_subscription(app: &TestApp, receiver: &Receiver, resource: &Value) -> String {
    let created = app.create(resource).await;
    assert_eq!(created["status"], "requested");
    let id = created["id"].as_str().unwrap().to_string();
    receiver
        .wait_for("the handshake", |r| {
            r.iter().any(|r| r.notification_type() == "handshake")
        })
        .await;
    wait_for_status(app, &id, "active").await;
    id
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let current = json(app.get(&format!("Subscription/{id}")).await).await;
        if current["status"] == status {
            return current;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Subscription/{id} stayed {}",
            current["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn new_patient(app: &TestApp) -> String {
    app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn every_event_arrives_once_in_order_signed_and_can_be_fetched_again() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let watched = new_patient(&app).await;
    let other = new_patient(&app).await;
    let filter = format!("Observation?patient=Patient/{watched}");
    let id = active_subscription(
        &app,
        &receiver,
        &subscription(
            &receiver.url,
            OBSERVATION_RECORDED,
            Some(&filter),
            "full-resource",
        ),
    )
    .await;

    let mut created = Vec::new();
    for n in 0..20 {
        created.push(
            app.create(&heart_rate(&watched, 60 + n)).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        app.create(&heart_rate(&other, 70)).await;
    }
    receiver
        .wait_for("20 events", |_| receiver.acknowledged_events().len() >= 20)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let events = receiver.acknowledged_events();
    let numbers: Vec<i64> = events.iter().flat_map(Received::event_numbers).collect();
    assert_eq!(
        numbers,
        (1..=20).collect::<Vec<_>>(),
        "each event once, in order"
    );
    for (event, observation_id) in events.iter().zip(&created) {
        assert!(event.signature_valid, "signature of {:?}", event.headers);
        let number = event.event_numbers()[0];
        assert_eq!(event.headers["webhook-id"], format!("{id}-{number}"));
        assert_eq!(event.headers["x-partner"], "practice-7");
        assert_eq!(event.headers["content-type"], "application/fhir+json");
        assert_eq!(event.body["type"], "history");
        let status = &event.body["entry"][0]["resource"];
        assert_eq!(
            parameter(status, "topic")["valueCanonical"],
            OBSERVATION_RECORDED
        );
        assert_eq!(
            parameter(status, "subscription")["valueReference"]["reference"],
            format!("{}/Subscription/{id}", app.base)
        );
        let focus = &event.body["entry"][1];
        assert_eq!(focus["resource"]["id"], observation_id.as_str());
        assert_eq!(
            focus["resource"]["subject"]["reference"],
            format!("Patient/{watched}")
        );
        assert_eq!(
            focus["request"],
            json!({"method": "POST", "url": format!("Observation/{observation_id}")})
        );
    }
    let handshake = receiver
        .received()
        .into_iter()
        .find(|r| r.notification_type() == "handshake")
        .unwrap();
    assert!(handshake.signature_valid);

    // $status: 20 events since the start.
    let status = json(app.get(&format!("Subscription/{id}/$status")).await).await;
    let parameters = &status["entry"][0]["resource"];
    assert_eq!(
        parameter(parameters, "events-since-subscription-start")["valueString"],
        "20"
    );
    assert_eq!(parameter(parameters, "status")["valueCode"], "active");
    assert_eq!(parameter(parameters, "type")["valueCode"], "query-status");

    // $events: numbers 5 to 7, with their resources, as a partner filling a gap asks.
    let response = app
        .get(&format!(
            "Subscription/{id}/$events?eventsSinceNumber=5&eventsUntilNumber=7"
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let again = json(response).await;
    let fetched: Vec<&str> = again["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        fetched,
        [
            created[4].as_str(),
            created[5].as_str(),
            created[6].as_str()
        ]
    );
    assert_eq!(
        parameter(&again["entry"][0]["resource"], "type")["valueCode"],
        "query-event"
    );
    let bad = app
        .get(&format!("Subscription/{id}/$events?eventsSinceNumber=zero"))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    outcome_diagnostics(&json(bad).await);
    assert_eq!(app.count_rows("subscription_events").await, 20);

    // A client that may read Subscriptions but not Observations gets the events, not the
    // Observations.
    let subscriptions_only = app.token_for("system/Subscription.rs", None);
    let path = format!("Subscription/{id}/$events?eventsSinceNumber=1&eventsUntilNumber=2");
    let refused = app.get_as(&subscriptions_only, &path).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let ids_only = app
        .get_as(&subscriptions_only, &format!("{path}&content=id-only"))
        .await;
    assert_eq!(ids_only.status(), StatusCode::OK);
    let ids_only = json(ids_only).await;
    assert_eq!(ids_only["entry"].as_array().unwrap().len(), 3);
    assert!(ids_only["entry"][1].get("resource").is_none());
}

#[tokio::test]
async fn a_receiver_outage_loses_nothing() {
    let (app, receiver, watched, id) = watched_with_retries(Duration::from_millis(300), 100).await;

    receiver.answer_with(503);
    for n in 0..5 {
        app.create(&heart_rate(&watched, 60 + n)).await;
    }
    receiver
        .wait_for("failed attempts", |r| {
            r.iter().filter(|r| r.answered == 503).count() >= 3
        })
        .await;
    assert!(receiver.acknowledged_events().is_empty());
    let during = json(app.get(&format!("Subscription/{id}/$status")).await).await;
    assert_eq!(
        parameter(&during["entry"][0]["resource"], "status")["valueCode"],
        "active"
    );

    receiver.answer_with(200);
    receiver
        .wait_for("all 5 events", |_| {
            receiver.acknowledged_events().len() >= 5
        })
        .await;
    let numbers: Vec<i64> = receiver.acknowledged_numbers();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    // Every failed attempt was of event 1: nothing was skipped while the receiver was down.
    let failed: Vec<i64> = receiver
        .received()
        .iter()
        .filter(|r| r.answered == 503)
        .flat_map(Received::event_numbers)
        .collect();
    assert!(failed.iter().all(|n| *n == 1), "{failed:?}");
}

#[tokio::test]
async fn exhausted_retries_set_error_and_reactivation_delivers_what_waited() {
    let (app, receiver, watched, id) = watched_with_retries(Duration::from_millis(200), 1).await;
    receiver.answer_with(500);
    app.create(&heart_rate(&watched, 61)).await;
    let errored = wait_for_status(&app, &id, "error").await;
    assert!(
        errored["error"]
            .as_str()
            .unwrap()
            .contains("retries exhausted"),
        "{errored}"
    );
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.answered == 500)
            .count(),
        2,
        "the first try and one retry"
    );
    // Events go on being recorded while in error.
    app.create(&heart_rate(&watched, 62)).await;

    receiver.answer_with(200);
    let mut reactivate = errored.clone();
    reactivate["status"] = json!("requested");
    assert_eq!(
        app.put(&format!("Subscription/{id}"), &reactivate)
            .await
            .status(),
        StatusCode::OK
    );
    wait_for_status(&app, &id, "active").await;
    receiver
        .wait_for("both events", |_| receiver.acknowledged_events().len() >= 2)
        .await;
    let numbers: Vec<i64> = receiver.acknowledged_numbers();
    assert_eq!(numbers, [1, 2]);
}

#[tokio::test]
async fn a_gone_endpoint_or_a_refused_handshake_puts_the_subscription_in_error() {
    let app = TestApp::spawn().await;
    let refusing = Receiver::start().await;
    refusing.answer_with(401);
    let created = app
        .create(&subscription(
            &refusing.url,
            OBSERVATION_RECORDED,
            None,
            "empty",
        ))
        .await;
    let id = created["id"].as_str().unwrap();
    let errored = wait_for_status(&app, id, "error").await;
    assert!(
        errored["error"]
            .as_str()
            .unwrap()
            .contains("handshake failed"),
        "{errored}"
    );
    let watched = new_patient(&app).await;
    app.create(&heart_rate(&watched, 61)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(refusing.received().len(), 1, "only the handshake was sent");

    let gone = Receiver::start().await;
    let id = active_subscription(
        &app,
        &gone,
        &subscription(&gone.url, OBSERVATION_RECORDED, None, "empty"),
    )
    .await;
    gone.answer_with(410);
    app.create(&heart_rate(&watched, 62)).await;
    let errored = wait_for_status(&app, &id, "error").await;
    assert!(
        errored["error"].as_str().unwrap().contains("410"),
        "{errored}"
    );
    assert_eq!(
        gone.received().iter().filter(|r| r.answered == 410).count(),
        1,
        "no retry after 410"
    );
}

#[tokio::test]
async fn infusion_completed_fires_once_per_completion_and_classic_criteria_search() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let patient_id = new_patient(&app).await;
    active_subscription(
        &app,
        &receiver,
        &subscription(&receiver.url, INFUSION_COMPLETED, None, "id-only"),
    )
    .await;
    let classic = Receiver::start().await;
    // Classic R4: no payload-content extension; a payload MIME type means the resource.
    let mut by_search = subscription(
        &classic.url,
        "Observation?code=http://loinc.org|8867-4&value-quantity=gt100",
        None,
        "full-resource",
    );
    by_search["channel"]
        .as_object_mut()
        .unwrap()
        .remove("_payload");
    active_subscription(&app, &classic, &by_search).await;

    let mut infusion = crate::helpers::with_safety_override(crate::helpers::infusion(&patient_id));
    infusion["status"] = json!("in-progress");
    let started = app.create(&infusion).await;
    let mut completed = started.clone();
    completed["status"] = json!("completed");
    let path = format!(
        "MedicationAdministration/{}",
        started["id"].as_str().unwrap()
    );
    assert_eq!(app.put(&path, &completed).await.status(), StatusCode::OK);
    // Updated again while completed: not a new completion.
    completed["note"] = json!([{"text": "tolerated well"}]);
    assert_eq!(app.put(&path, &completed).await.status(), StatusCode::OK);
    receiver
        .wait_for("the completion", |_| {
            !receiver.acknowledged_events().is_empty()
        })
        .await;

    app.create(&heart_rate(&patient_id, 90)).await;
    let fast = app.create(&heart_rate(&patient_id, 130)).await;
    classic
        .wait_for("the fast heart rate", |_| {
            !classic.acknowledged_events().is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let completions = receiver.acknowledged_events();
    assert_eq!(completions.len(), 1);
    assert_eq!(
        completions[0].body["entry"][1]["fullUrl"],
        format!("{}/{path}", app.base)
    );
    assert_eq!(completions[0].body["entry"][1]["request"]["method"], "PUT");
    let matches = classic.acknowledged_events();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].body["entry"][1]["resource"]["id"], fast["id"]);
}

#[tokio::test]
async fn heartbeats_arrive_at_the_requested_period() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let mut resource = subscription(&receiver.url, OBSERVATION_RECORDED, None, "empty");
    resource["channel"]["extension"]
        .as_array_mut()
        .unwrap()
        .push(json!({"url": HEARTBEAT, "valueUnsignedInt": 1}));
    active_subscription(&app, &receiver, &resource).await;
    receiver
        .wait_for("two heartbeats", |r| {
            r.iter()
                .filter(|r| r.notification_type() == "heartbeat")
                .count()
                >= 2
        })
        .await;
    let heartbeat = receiver
        .received()
        .into_iter()
        .find(|r| r.notification_type() == "heartbeat")
        .unwrap();
    assert!(heartbeat.signature_valid);
    assert_eq!(heartbeat.body["entry"].as_array().unwrap().len(), 1);
}

/// Posts a Subscription to `endpoint`, asserts the 422, and returns its OperationOutcome.
async fn refused_endpoint(app: &TestApp, endpoint: &str) -> Value {
    let resource = subscription(endpoint, OBSERVATION_RECORDED, None, "empty");
    let response = app.post("Subscription", &resource).await;
    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "{endpoint}"
    );
    json(response).await
}

#[tokio::test]
async fn endpoints_outside_the_egress_policy_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    for endpoint in [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/hook",
        "ftp://partner.example/hook",
    ] {
        let body = refused_endpoint(&app, endpoint).await;
        assert_eq!(
            body["issue"][0]["expression"][0], "Subscription.channel.endpoint",
            "{endpoint}"
        );
    }
    // Without loopback in WEBHOOK_ALLOW_NETWORKS, the local machine is out of reach too,
    // by address and by name.
    let strict =
        TestApp::spawn_with(|config| config.webhooks.webhook_allow_networks = Networks::default())
            .await;
    let receiver = Receiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    for endpoint in [receiver.url.as_str(), by_name.as_str()] {
        let diagnostics = outcome_diagnostics(&refused_endpoint(&strict, endpoint).await);
        assert!(
            diagnostics[0].contains("not allowed") || diagnostics[0].contains("denied"),
            "{diagnostics:?}"
        );
    }
    assert_eq!(app.count_rows("resources_subscription").await, 0);
    assert_eq!(strict.count_rows("resources_subscription").await, 0);
    assert_eq!(app.count_rows("subscription_counters").await, 0);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn invalid_subscriptions_get_every_problem_listed() {
    let app = TestApp::spawn().await;
    let mut resource = subscription(
        "http://127.0.0.1:9/hook",
        "https://elsewhere.example/SubscriptionTopic/x",
        None,
        "everything",
    );
    resource["channel"]["header"] = json!(["no colon here"]);
    let response = app.post("Subscription", &resource).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json(response).await;
    let expressions = issue_expressions(&body);
    assert_eq!(
        expressions,
        [
            "Subscription.criteria",
            "Subscription.channel.header[0]",
            "Subscription.channel.payload.extension"
        ]
    );
    let unknown_parameter = subscription(
        "http://127.0.0.1:9/hook",
        "Observation?colour=blue",
        None,
        "empty",
    );
    let response = app.post("Subscription", &unknown_parameter).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(outcome_diagnostics(&json(response).await)[0].contains("colour"));
    assert_eq!(app.count_rows("resources_subscription").await, 0);
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_once() {
    let first = TestApp::spawn().await;
    let second = first.spawn_instance_sharing(|_| {}).await;
    let receiver = Receiver::start().await;
    let watched = new_patient(&first).await;
    active_subscription(
        &first,
        &receiver,
        &subscription(&receiver.url, OBSERVATION_RECORDED, None, "id-only"),
    )
    .await;
    for n in 0..30 {
        let app = if n % 2 == 0 { &first } else { &second };
        app.create(&heart_rate(&watched, 60 + n)).await;
    }
    receiver
        .wait_for("30 events", |_| receiver.acknowledged_events().len() >= 30)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let numbers: Vec<i64> = receiver.acknowledged_numbers();
    assert_eq!(numbers, (1..=30).collect::<Vec<_>>());
    let handshakes = receiver
        .received()
        .iter()
        .filter(|r| r.notification_type() == "handshake")
        .count();
    assert_eq!(handshakes, 1);
}

/// `ketamine-fhir serve` of the test binary on `port`, on the app's database and keys.
fn serve(app: &TestApp, port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_ketamine-fhir"))
        .arg("serve")
        .env("DATABASE_URL", &app.database_url)
        .env("JWT_PRIVATE_KEY_FILE", &app.config.jwt_private_key_file)
        .env("JWT_PUBLIC_KEY_FILE", &app.config.jwt_public_key_file)
        .env("JWT_ISSUER", &app.config.jwt_issuer)
        .env("JWT_AUDIENCE", &app.config.jwt_audience)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && response.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("serve on port {port} did not become ready");
}

#[tokio::test]
async fn a_server_killed_mid_delivery_delivers_what_was_pending_after_restart() {
    // The in-process server of `app` delivers nothing: the binary under test does.
    let app = TestApp::spawn_with(|config| config.webhooks.webhook_workers = 0).await;
    let receiver = Receiver::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = serve(&app, port);
    wait_ready(&app.client, port).await;
    let base = format!("http://127.0.0.1:{port}/fhir");
    let post = |path: &str, body: Value| {
        app.client
            .post(format!("{base}/{path}"))
            .bearer_auth(&app.token)
            .header("content-type", "application/fhir+json")
            .json(&body)
            .send()
    };
    let watched = post("Patient", patient())
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let created = post(
        "Subscription",
        subscription(&receiver.url, OBSERVATION_RECORDED, None, "id-only"),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_status(&app, &id, "active").await;

    // The receiver stalls, so the server is inside a delivery when it is killed.
    receiver.state.delay_ms.store(5_000, Ordering::SeqCst);
    let before = receiver.state.arrivals.load(Ordering::SeqCst);
    for n in 0..10 {
        assert_eq!(
            post("Observation", heart_rate(&watched, 60 + n))
                .await
                .unwrap()
                .status(),
            StatusCode::CREATED
        );
    }
    let started = Instant::now();
    while receiver.state.arrivals.load(Ordering::SeqCst) == before {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no delivery started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    receiver.state.delay_ms.store(0, Ordering::SeqCst);

    let mut restarted = serve(&app, port);
    wait_ready(&app.client, port).await;
    let all_ten = |received: &[Received]| {
        let mut numbers: Vec<i64> = received
            .iter()
            .filter(|r| r.notification_type() == "event-notification" && r.answered < 300)
            .flat_map(Received::event_numbers)
            .collect();
        numbers.dedup();
        numbers == (1..=10).collect::<Vec<_>>()
    };
    receiver
        .wait_for("the ten events after the restart", all_ten)
        .await;
    restarted.kill().unwrap();
    restarted.wait().unwrap();
    // Stored as delivered exactly when acknowledged: every event, once.
    assert_eq!(
        app.count_rows("subscription_events WHERE delivered_at IS NOT NULL")
            .await,
        10
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_rotated_secret_signs_alongside_the_old() {
    let (app, receiver, watched, id) = watched_with_retries(Duration::from_millis(100), 10).await;

    // 503 with Retry-After: 2 waits two seconds, not the scheduled 0.1 s.
    receiver.answer_with(503);
    *receiver.state.retry_after.lock().unwrap() = Some("2".into());
    app.create(&heart_rate(&watched, 61)).await;
    receiver
        .wait_for("two refused attempts", |r| {
            r.iter().filter(|r| r.answered == 503).count() >= 2
        })
        .await;
    receiver.answer_with(200);
    *receiver.state.retry_after.lock().unwrap() = None;
    receiver
        .wait_for("the event", |_| !receiver.acknowledged_events().is_empty())
        .await;
    let arrivals: Vec<i64> = receiver
        .received()
        .iter()
        .filter(|r| r.notification_type() == "event-notification")
        .map(|r| r.headers["webhook-timestamp"].parse().unwrap())
        .collect();
    assert!(
        arrivals.windows(2).all(|w| w[1] - w[0] >= 1),
        "attempts at {arrivals:?}"
    );

    // Rotation: a second secret; each notification then carries both signatures.
    let mut rotated = json(app.get(&format!("Subscription/{id}")).await).await;
    let new_secret = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    rotated["channel"]["extension"]
        .as_array_mut()
        .unwrap()
        .push(json!({"url": SECRET, "valueString": new_secret}));
    assert_eq!(
        app.put(&format!("Subscription/{id}"), &rotated)
            .await
            .status(),
        StatusCode::OK
    );
    wait_for_status(&app, &id, "active").await;
    app.create(&heart_rate(&watched, 62)).await;
    receiver
        .wait_for("the second event", |_| {
            receiver.acknowledged_events().len() >= 2
        })
        .await;
    let last = receiver.acknowledged_events().pop().unwrap();
    let signatures: Vec<&str> = last.headers["webhook-signature"].split(' ').collect();
    assert_eq!(signatures.len(), 2);
    assert!(last.signature_valid, "the old secret still verifies");
    let header = |name: &str| last.headers[name].as_str();
    assert!(verify(
        &new_secret,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &last.raw
    ));
}
