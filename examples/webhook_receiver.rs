//! A webhook receiver for benchmarks (bench/webhook-load): takes the server's FHIR
//! Subscription notifications on loopback, checks every Standard Webhooks signature with
//! `ketamine_fhir::subscriptions::signing::verify` and measures, per event, the latency from
//! the notification-event timestamp (the change's time on the server) to its arrival here.
//!
//! ```sh
//! cargo run --release --example webhook_receiver -- \
//!     --listen 127.0.0.1:9000 --secret whsec_... --out /tmp/receiver.json
//! ```
//!
//! Every POST (any path) is a notification: 204 when its signature verifies, 401 (counted in
//! `bad_signatures`) when not, 400 when a signed body is no notification Bundle. `GET /stats`
//! returns the summary below live; `POST /reset` zeroes its counters and latencies (what was
//! seen per subscription is kept, so duplicates and reordering are still caught across a
//! reset). On SIGTERM or SIGINT it stops and writes the summary to `--out`:
//!
//! `{"received", "bad_signatures", "handshakes", "heartbeats", "events", "duplicates",
//!   "out_of_order", "malformed", "subscriptions", "first_event_at", "last_event_at",
//!   "latency_ms": {"p50", "p95", "p99", "max"}}`
//!
//! `duplicates` counts event numbers a subscription had already delivered; `out_of_order`
//! counts events whose number is not above the previous one of their subscription (so a
//! duplicate counts in both). Times are unix milliseconds.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::Method, web};
use chrono::{DateTime, Utc};
use clap::Parser;
use ketamine_fhir::subscriptions::signing::{WebhookSecret, verify};
use serde_json::{Value, json};

/// Seconds a webhook-timestamp may differ from this machine's clock.
const TOLERANCE_SECONDS: i64 = 300;
/// Latencies kept at most (8 MB); later events are still counted, their latency is not.
const MAX_LATENCY_SAMPLES: usize = 1_000_000;

#[derive(Parser, Debug)]
#[command(about = "Receives and checks ketamine-fhir webhook notifications, for benchmarks")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:9000.
    #[arg(long)]
    listen: SocketAddr,
    /// The subscriptions' webhook secret (whsec_...).
    #[arg(long)]
    secret: String,
    /// Where to write the JSON summary on exit.
    #[arg(long)]
    out: PathBuf,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// What one subscription has delivered so far (kept across resets).
#[derive(Default)]
struct Seen {
    last: i64,
    numbers: HashSet<i64>,
}

#[derive(Default)]
struct Stats {
    received: u64,
    bad_signatures: u64,
    handshakes: u64,
    heartbeats: u64,
    events: u64,
    duplicates: u64,
    out_of_order: u64,
    malformed: u64,
    first_event_at: Option<i64>,
    last_event_at: Option<i64>,
    latencies_ms: Vec<f64>,
    seen: HashMap<String, Seen>,
}

impl Stats {
    fn reset(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        *self = Stats {
            seen,
            ..Stats::default()
        };
    }

    fn record_event(&mut self, subscription: &str, number: i64, latency_ms: Option<f64>, at: i64) {
        self.events += 1;
        self.first_event_at.get_or_insert(at);
        self.last_event_at = Some(at);
        let seen = self.seen.entry(subscription.to_string()).or_default();
        if !seen.numbers.insert(number) {
            self.duplicates += 1;
        }
        if number <= seen.last {
            self.out_of_order += 1;
        }
        seen.last = seen.last.max(number);
        if let Some(latency) = latency_ms
            && self.latencies_ms.len() < MAX_LATENCY_SAMPLES
        {
            self.latencies_ms.push(latency);
        }
    }

    fn summary(&self) -> Value {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| -> Value {
            if sorted.is_empty() {
                return Value::Null;
            }
            let index = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            json!(round1(sorted[index - 1]))
        };
        json!({
            "received": self.received,
            "bad_signatures": self.bad_signatures,
            "handshakes": self.handshakes,
            "heartbeats": self.heartbeats,
            "events": self.events,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "malformed": self.malformed,
            "subscriptions": self.seen.len(),
            "first_event_at": self.first_event_at,
            "last_event_at": self.last_event_at,
            "latency_ms": {
                "samples": sorted.len(),
                "p50": rank(50.0),
                "p95": rank(95.0),
                "p99": rank(99.0),
                "max": sorted.last().map(|m| json!(round1(*m))).unwrap_or(Value::Null),
            }
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

struct Receiver {
    secret: WebhookSecret,
    stats: Mutex<Stats>,
}

/// One notification-event of a Bundle: its number and timestamp.
struct Event {
    number: i64,
    timestamp: Option<DateTime<Utc>>,
}

/// What a notification Bundle says: its type, subscription id and events.
struct Notification {
    kind: String,
    subscription: Option<String>,
    events: Vec<Event>,
}

fn parse_notification(body: &[u8]) -> Option<Notification> {
    let bundle: Value = serde_json::from_slice(body).ok()?;
    if bundle["resourceType"] != "Bundle" {
        return None;
    }
    let parameters = bundle["entry"][0]["resource"]["parameter"].as_array()?;
    let named = |name: &'static str| parameters.iter().filter(move |p| p["name"] == name);
    let kind = named("type").next()?["valueCode"].as_str()?.to_string();
    let subscription = named("subscription")
        .next()
        .and_then(|p| p["valueReference"]["reference"].as_str())
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string);
    let mut events = Vec::new();
    for event in named("notification-event") {
        let parts = event["part"].as_array()?;
        let part = |name: &'static str| parts.iter().find(|p| p["name"] == name);
        let number = part("event-number")?["valueString"]
            .as_str()?
            .parse()
            .ok()?;
        let timestamp = part("timestamp")
            .and_then(|p| p["valueInstant"].as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        events.push(Event { number, timestamp });
    }
    Some(Notification {
        kind,
        subscription,
        events,
    })
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<Receiver>,
) -> HttpResponse {
    if request.method() != Method::POST {
        return HttpResponse::MethodNotAllowed().finish();
    }
    let arrived = Utc::now();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let message_id = header("webhook-id");
    let verified = verify(
        &[&state.secret],
        message_id,
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        arrived.timestamp(),
        TOLERANCE_SECONDS,
    );
    let notification = verified
        .is_ok()
        .then(|| parse_notification(&body))
        .flatten();
    let mut stats = state.stats.lock().unwrap_or_else(|e| e.into_inner());
    stats.received += 1;
    if verified.is_err() {
        stats.bad_signatures += 1;
        return HttpResponse::Unauthorized().finish();
    }
    let Some(notification) = notification else {
        stats.malformed += 1;
        return HttpResponse::BadRequest().finish();
    };
    match notification.kind.as_str() {
        "handshake" => stats.handshakes += 1,
        "heartbeat" => stats.heartbeats += 1,
        "event-notification" => {
            // webhook-id is "{subscription id}-{event number}".
            let subscription = notification.subscription.unwrap_or_else(|| {
                message_id
                    .rsplit_once('-')
                    .map_or(message_id, |(id, _)| id)
                    .to_string()
            });
            let at = arrived.timestamp_millis();
            for event in notification.events {
                let latency = event
                    .timestamp
                    .map(|t| (arrived - t).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
                stats.record_event(&subscription, event.number, latency, at);
            }
        }
        _ => stats.malformed += 1,
    }
    HttpResponse::NoContent().finish()
}

async fn stats(state: web::Data<Receiver>) -> HttpResponse {
    let summary = state
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .summary();
    HttpResponse::Ok().json(summary)
}

async fn reset(state: web::Data<Receiver>) -> HttpResponse {
    state
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .reset();
    HttpResponse::NoContent().finish()
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret =
        WebhookSecret::parse(&args.secret).map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
    let state = web::Data::new(Receiver {
        secret,
        stats: Mutex::new(Stats::default()),
    });
    let shared = state.clone();
    HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route("/stats", web::get().to(stats))
            .route("/reset", web::post().to(reset))
            .default_service(web::to(receive))
    })
    .workers(args.workers.max(1))
    .shutdown_timeout(5)
    .bind(args.listen)?
    .run()
    .await?;
    let summary = state
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .summary();
    let partial = args.out.with_extension("partial");
    std::fs::write(&partial, format!("{summary}\n"))?;
    std::fs::rename(&partial, &args.out)?;
    eprintln!(
        "webhook_receiver: summary written to {}",
        args.out.display()
    );
    Ok(())
}
