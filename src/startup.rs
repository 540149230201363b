//! Start-up: pool, token verifier, the actix app and HTTP server with graceful shutdown.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::auth::TokenVerifier;
use crate::config::{Config, DefaultTotal};
use crate::fhir::search::PageLimits;
use crate::metrics::Metrics;
use crate::routes::{self, AppState};
use crate::store::search::Total;
use crate::store::{self, Pool};
use crate::telemetry;

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    base_url: String,
    state: web::Data<AppState>,
    server: Server,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and builds the server. Migrations are
    /// not run here: `serve` and the tests run them first.
    pub fn build(config: &Config) -> anyhow::Result<Self> {
        let pool = store::build_pool(config)?;
        let verifier = web::Data::new(TokenVerifier::from_config(config)?);
        let listener = TcpListener::bind(config.listen_addr)?;
        let address = listener.local_addr()?;
        let base_url = config.base_url_for(address);
        let state = web::Data::new(AppState {
            pool,
            base_url: base_url.clone(),
            page_limits: PageLimits {
                default: config.default_page_size,
                max: config.max_page_size,
            },
            max_body_bytes: config.max_body_bytes,
            writes: config.write_context(address)?,
            max_includes: config.max_includes,
            default_total: match config.search_default_total {
                DefaultTotal::None => Total::WhenComplete,
                DefaultTotal::Estimate => Total::Estimate,
                DefaultTotal::Accurate => Total::Accurate,
            },
        });
        let metrics = web::Data::new(Metrics::new());
        let openapi = crate::openapi::configure(crate::openapi::document());
        let shared_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(verifier.clone())
                .app_data(metrics.clone())
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

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// A pool for one-off commands (`seed`).
pub fn command_pool(config: &Config) -> anyhow::Result<Pool> {
    store::build_pool(config)
}
