//! Start-up: pool, token verifier, the actix app and HTTP server with graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, web};

use crate::audit::writer::AuditWriter;
use crate::auth::TokenVerifier;
use crate::config::{Config, DefaultTotal};
use crate::export::worker::{self as export_worker, Exporter};
use crate::export::{ExportContext, ExportSettings};
use crate::fhir::search::PageLimits;
use crate::metrics::Metrics;
use crate::routes::{self, AppState};
use crate::security::{cors, headers, rate_limit::RateLimits};
use crate::store::search::Total;
use crate::store::{self, Pool};
use crate::subscriptions::delivery::{self, Deliverer};
use crate::subscriptions::egress;
use crate::telemetry;
use tokio::sync::watch;

/// Nesting depth of a request body: FHIR resources stay well under 30 levels, and a
/// deeper document is refused before it is built.
const MAX_JSON_DEPTH: usize = 64;

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    base_url: String,
    state: web::Data<AppState>,
    server: Server,
    deliverer: Arc<Deliverer>,
    delivery_workers: usize,
    exporter: Arc<Exporter>,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and builds the server. Migrations are
    /// not run here: `serve` and the tests run them first.
    pub fn build(config: &Config) -> anyhow::Result<Self> {
        let pool = store::build_request_pool(config)?;
        let verifier = web::Data::new(TokenVerifier::from_config(config)?);
        // The token endpoint signs with the private key; a server that only verifies
        // tokens of another authorization server may have none.
        let signer = config
            .jwt_private_key_file
            .exists()
            .then(|| crate::auth::TokenSigner::from_config(config))
            .transpose()?;
        let signer = web::Data::new(signer);
        let listener = TcpListener::bind(config.listen_addr)?;
        let address = listener.local_addr()?;
        let base_url = config.base_url_for(address);
        let exports = Arc::new(ExportContext::new(export_settings(config)));
        let state = web::Data::new(AppState {
            pool,
            base_url: base_url.clone(),
            page_limits: PageLimits {
                default: config.default_page_size,
                max: config.max_page_size,
            },
            max_body_bytes: config.max_body_bytes,
            max_bundle_bytes: config.max_bundle_bytes,
            max_bundle_entries: config.max_bundle_entries,
            json_limits: crate::fhir::strict_json::Limits {
                max_depth: MAX_JSON_DEPTH,
                max_values: config.max_json_values,
            },
            writes: config.write_context(address)?,
            max_includes: config.max_includes,
            default_total: match config.search_default_total {
                DefaultTotal::None => Total::WhenComplete,
                DefaultTotal::Estimate => Total::Estimate,
                DefaultTotal::Accurate => Total::Accurate,
            },
            clinic_organization: config.clinic_organization_id.clone(),
            exports: exports.clone(),
        });
        let metrics = Arc::new(Metrics::new());
        let deliverer = Arc::new(Deliverer {
            pool: store::build_worker_pool(config, config.webhooks.webhook_workers + 1)?,
            writes: state.writes.clone(),
            base_url: base_url.clone(),
            client: egress::client(
                state.writes.webhooks.policy.clone(),
                Duration::from_millis(config.webhooks.webhook_connect_timeout_ms),
                Duration::from_millis(config.webhooks.webhook_timeout_ms),
            )?,
            retry: config.webhooks.webhook_retry_schedule.clone(),
            timeout: Duration::from_millis(config.webhooks.webhook_timeout_ms),
            poll: Duration::from_millis(config.webhooks.webhook_poll_ms.max(10)),
            metrics: metrics.clone(),
        });
        let exporter = Arc::new(Exporter {
            pool: store::build_worker_pool(config, config.bulk_export.bulk_export_workers + 1)?,
            context: exports,
            search: routes::export::search_context(&state),
        });
        let remote = web::Data::new(crate::auth::remote::RemoteDocuments::new(
            state.writes.webhooks.policy.clone(),
            Duration::from_millis(config.webhooks.webhook_connect_timeout_ms),
            Duration::from_millis(config.webhooks.webhook_timeout_ms),
        )?);
        let issuers = web::Data::new(crate::auth::oidc::ExternalIssuers::new(
            config,
            remote.clone(),
        ));
        let audit = web::Data::new(AuditWriter::start(
            store::build_audit_pool(config)?,
            config.audit.audit_writers,
            config.audit.audit_batch_max,
        ));
        let metrics = web::Data::from(metrics);
        let openapi = crate::openapi::configure(crate::openapi::document());
        let shared_state = state.clone();
        let edge = config.edge.clone();
        let own_origin = cors::origin_of(&base_url);
        let rate_limits = web::Data::new(RateLimits::from_config(&config.edge));
        let deadline = web::Data::new(routes::deadline::RequestDeadline(config.request_timeout()));
        let mut server = HttpServer::new(move || {
            let rate_limits = rate_limits.clone();
            let cors_policy = cors::policy(&edge, &own_origin);
            App::new()
                .app_data(state.clone())
                .app_data(verifier.clone())
                .app_data(signer.clone())
                .app_data(remote.clone())
                .app_data(issuers.clone())
                .app_data(metrics.clone())
                .app_data(rate_limits)
                .app_data(deadline.clone())
                .app_data(audit.clone())
                // Innermost first: a 429 is still audited and gets CORS and security headers, and every
                // response its request id and log line.
                .wrap(from_fn(crate::security::rate_limit::limit_rate))
                .wrap(from_fn(crate::audit::middleware::record_audit))
                .wrap(Condition::new(
                    cors_policy.is_some(),
                    cors_policy.unwrap_or_default(),
                ))
                .wrap(from_fn(headers::add_security_headers))
                .wrap(from_fn(telemetry::request_context))
                .configure(routes::configure)
                .configure(openapi.clone())
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?
        .shutdown_timeout(config.shutdown_timeout_seconds);
        if config.http_workers > 0 {
            server = server.workers(config.http_workers);
        }
        Ok(Application {
            port: address.port(),
            base_url,
            state: shared_state,
            server: server.run(),
            deliverer,
            delivery_workers: config.webhooks.webhook_workers,
            exporter,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Rebuilds the search index if it was built by other extraction rules (or never);
    /// returns how many resources were reindexed.
    pub async fn ensure_search_index(&self) -> anyhow::Result<usize> {
        store::index::ensure_current(&self.state.pool, &self.state.writes)
            .await
            .map_err(|e| anyhow::anyhow!("rebuilding the search index failed: {e}"))
    }

    /// Serves, delivers webhook notifications and runs bulk exports, until SIGINT/SIGTERM;
    /// then drains in-flight requests, lets each delivery worker finish the notification it
    /// is sending, and each export worker its step (its job is released for another).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let mut workers =
            delivery::spawn_workers(self.deliverer, self.delivery_workers, stopped.clone());
        let export_workers = self.exporter.context.settings.workers;
        workers.extend(export_worker::spawn_workers(
            self.exporter,
            export_workers,
            stopped,
        ));
        let served = self.server.await;
        let _ = stop.send(true);
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::warn!(error = %error, "a background worker ended abnormally");
            }
        }
        served
    }
}

fn export_settings(config: &Config) -> ExportSettings {
    let exports = &config.bulk_export;
    ExportSettings {
        workers: exports.bulk_export_workers,
        poll: Duration::from_millis(exports.bulk_export_poll_ms.max(10)),
        retention: exports.bulk_export_retention,
        chunk: exports.bulk_export_chunk,
        file_resources: exports.bulk_export_file_resources,
    }
}

/// A pool for one-off commands (`seed`).
pub fn command_pool(config: &Config) -> anyhow::Result<Pool> {
    store::build_pool(config)
}
