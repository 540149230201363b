//! Prometheus metrics owned by one app instance: request counts, latency, pool usage, and
//! webhook deliveries (queue depth, deliveries by outcome, commit-to-acknowledgement latency).

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::store::Pool;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_size: IntGauge,
    pool_available: IntGauge,
    pool_waiting: IntGauge,
    webhook_deliveries: IntCounterVec,
    webhook_latency: HistogramVec,
    webhook_queue_depth: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["route", "method"],
        )
        .expect("valid metric");
        let pool_size = IntGauge::new("db_pool_connections", "Open database connections")
            .expect("valid metric");
        let pool_available = IntGauge::new("db_pool_idle_connections", "Idle database connections")
            .expect("valid metric");
        let pool_waiting = IntGauge::new(
            "db_pool_waiting_requests",
            "Requests waiting for a database connection",
        )
        .expect("valid metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Webhook notifications by outcome (delivered, failed, gone, handshake, handshake-failed, heartbeat)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let webhook_latency = HistogramVec::new(
            HistogramOpts::new(
                "webhook_delivery_latency_seconds",
                "From the commit that recorded an event to the endpoint's acknowledgement",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0, 3600.0,
            ]),
            &[],
        )
        .expect("valid metric");
        let webhook_queue_depth = IntGauge::new(
            "webhook_queue_depth",
            "Subscription events recorded and not yet acknowledged (all instances)",
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(pool_size.clone()),
            Box::new(pool_available.clone()),
            Box::new(pool_waiting.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(webhook_latency.clone()),
            Box::new(webhook_queue_depth.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            pool_size,
            pool_available,
            pool_waiting,
            webhook_deliveries,
            webhook_latency,
            webhook_queue_depth,
        }
    }

    /// One webhook notification's outcome, with the event's latency when it was delivered.
    pub fn observe_webhook(&self, outcome: &str, latency: Option<Duration>) {
        self.webhook_deliveries.with_label_values(&[outcome]).inc();
        if let Some(latency) = latency {
            self.webhook_latency
                .with_label_values(&[] as &[&str])
                .observe(latency.as_secs_f64());
        }
    }

    pub fn set_webhook_queue_depth(&self, depth: i64) {
        self.webhook_queue_depth.set(depth);
    }

    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition, with pool gauges read at scrape time.
    pub fn render(&self, pool: &Pool) -> String {
        let status = pool.status();
        self.pool_size.set(status.size as i64);
        self.pool_available.set(status.available as i64);
        self.pool_waiting.set(status.waiting as i64);
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of metrics");
        String::from_utf8(buffer).expect("metrics are UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
