//! The one typed configuration, read from environment variables (or flags) with local defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Server configuration. Every field is an environment variable; README.md lists them all.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "postgres://ketamine:ketamine@127.0.0.1:54329/ketamine"
    )]
    pub database_url: String,

    /// A file holding the PostgreSQL connection URL (a mounted secret). When set it is read
    /// at start and replaces DATABASE_URL, so the password need not sit in the environment.
    #[arg(long, global = true, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Address the HTTP server binds to (`host:port`; port 0 picks a free port).
    #[arg(
        long,
        global = true,
        env = "LISTEN_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen_addr: SocketAddr,

    /// Externally visible base URL of the FHIR endpoint, used in links and Location headers.
    /// Defaults to `http://{LISTEN_ADDR}/fhir`.
    #[arg(long, global = true, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,

    /// Log output: `pretty` for people, `json` for log collectors.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,

    /// Maximum number of pooled database connections (0 = twice the CPU cores plus one).
    /// More connections than PostgreSQL can run at once only add contention: requests then
    /// wait their turn in the pool instead, which keeps tail latency low.
    #[arg(long, global = true, env = "DB_POOL_SIZE", default_value_t = 0)]
    pub db_pool_size: usize,

    /// How long a request waits for a pooled connection (or a new one) before it gets a 503.
    #[arg(
        long,
        global = true,
        env = "DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub db_acquire_timeout_ms: u64,

    /// PostgreSQL `statement_timeout` of every pooled connection, in milliseconds: a
    /// statement running longer is cancelled and its request answered 503 (0 = no limit).
    #[arg(
        long,
        global = true,
        env = "DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub db_statement_timeout_ms: u64,

    /// Deadline of a request, in milliseconds: a request whose response has not begun by
    /// then is abandoned and answered 503 (a response already streaming, such as a Bulk
    /// Data file, is not cut off).
    #[arg(
        long,
        global = true,
        env = "REQUEST_TIMEOUT_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub request_timeout_ms: u64,

    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(
        long,
        global = true,
        env = "MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_body_bytes: usize,

    /// Largest batch or transaction Bundle accepted, in bytes (larger ones get 413).
    #[arg(
        long,
        global = true,
        env = "MAX_BUNDLE_BYTES",
        default_value_t = 16 * 1_048_576
    )]
    pub max_bundle_bytes: usize,

    /// Most JSON values (of any kind) a resource body may hold; a Bundle body may hold
    /// 40 times as many. Larger bodies are refused with 400 before they are parsed.
    #[arg(long, global = true, env = "MAX_JSON_VALUES", default_value_t = 50_000)]
    pub max_json_values: usize,

    /// Most entries a batch or transaction Bundle may hold.
    #[arg(
        long,
        global = true,
        env = "MAX_BUNDLE_ENTRIES",
        default_value_t = 5000
    )]
    pub max_bundle_entries: usize,

    /// Default page size of searches and histories.
    #[arg(long, global = true, env = "DEFAULT_PAGE_SIZE", default_value_t = 20)]
    pub default_page_size: i64,

    /// Largest page size a client may ask for with `_count`.
    #[arg(long, global = true, env = "MAX_PAGE_SIZE", default_value_t = 500)]
    pub max_page_size: i64,

    /// IANA time zone of the clinic: dates without a zone (birth dates, `date=2026-11-22`)
    /// are days in this zone.
    #[arg(long, global = true, env = "CLINIC_TIMEZONE", default_value = "UTC")]
    pub clinic_timezone: chrono_tz::Tz,

    /// `Bundle.total` of a search's first page when the client sends no `_total`: `none`
    /// reports it only when that page holds every match (it is then free), `estimate` gives
    /// the planner's estimate, `accurate` counts every match (costly for large results).
    #[arg(
        long,
        global = true,
        env = "SEARCH_DEFAULT_TOTAL",
        value_enum,
        default_value = "none"
    )]
    pub search_default_total: DefaultTotal,

    /// Most resources `_include`/`_revinclude` add to one page; beyond it the Bundle says
    /// how many were left out.
    #[arg(long, global = true, env = "MAX_INCLUDES", default_value_t = 1000)]
    pub max_includes: usize,

    /// PEM file with the ES256 public key that verifies access tokens.
    #[arg(
        long,
        global = true,
        env = "JWT_PUBLIC_KEY_FILE",
        default_value = ".data/jwt/public.pem"
    )]
    pub jwt_public_key_file: PathBuf,

    /// PEM files with previous ES256 public keys (comma-separated), so tokens signed before
    /// a key rotation verify until they expire. Each is selected by its `kid`.
    #[arg(
        long,
        global = true,
        env = "JWT_PREVIOUS_PUBLIC_KEY_FILES",
        value_delimiter = ','
    )]
    pub jwt_previous_public_key_files: Vec<PathBuf>,

    /// PEM file with the ES256 private key used by `token` (and created by `keygen`).
    #[arg(
        long,
        global = true,
        env = "JWT_PRIVATE_KEY_FILE",
        default_value = ".data/jwt/private.pem"
    )]
    pub jwt_private_key_file: PathBuf,

    /// Required `iss` claim of access tokens.
    #[arg(
        long,
        global = true,
        env = "JWT_ISSUER",
        default_value = "ketamine-fhir-dev"
    )]
    pub jwt_issuer: String,

    /// Required `aud` claim of access tokens.
    #[arg(
        long,
        global = true,
        env = "JWT_AUDIENCE",
        default_value = "ketamine-fhir"
    )]
    pub jwt_audience: String,

    /// External OpenID Connect issuers whose access tokens are honoured (comma-separated
    /// issuer URLs, each exactly as in its tokens' `iss`). Their keys are found through
    /// `{issuer}/.well-known/openid-configuration` and fetched through the egress policy.
    #[arg(long, global = true, env = "OIDC_ISSUERS", value_delimiter = ',')]
    pub oidc_issuers: Vec<String>,

    /// Required `aud` claim of external issuers' tokens; by default `JWT_AUDIENCE`.
    #[arg(long, global = true, env = "OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,

    /// Clock leeway, in seconds, when checking `exp` and `nbf`.
    #[arg(long, global = true, env = "JWT_LEEWAY_SECONDS", default_value_t = 30)]
    pub jwt_leeway_seconds: u64,

    /// Seconds given to in-flight requests to finish after SIGTERM or Ctrl-C.
    #[arg(
        long,
        global = true,
        env = "SHUTDOWN_TIMEOUT_SECONDS",
        default_value_t = 30
    )]
    pub shutdown_timeout_seconds: u64,

    /// TOML file with the clinic's safety thresholds, series and discharge rules
    /// (config/clinic.toml shows every key with its default). Unset: the defaults.
    #[arg(long, global = true, env = "CLINIC_CONFIG_FILE")]
    pub clinic_config_file: Option<PathBuf>,

    /// Id of the clinic's Organization on this server: the provider of the prior-authorization
    /// Claims `Patient/{id}/$medical-necessity` builds. Unset: that operation answers 422.
    #[arg(long, global = true, env = "CLINIC_ORGANIZATION_ID", value_parser = parse_resource_id)]
    pub clinic_organization_id: Option<String>,

    /// Number of HTTP worker threads (0 = one per CPU core).
    #[arg(long, global = true, env = "HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    #[command(flatten)]
    pub webhooks: WebhookConfig,

    #[command(flatten)]
    pub bulk_export: BulkExportConfig,

    #[command(flatten)]
    pub edge: EdgeConfig,

    #[command(flatten)]
    pub audit: AuditConfig,
}

/// The audit trail's group commit (src/audit/writer.rs).
#[derive(Debug, Clone, Args)]
pub struct AuditConfig {
    /// Tasks writing AuditEvents, each on a database connection of its own. A request's
    /// answer waits for the commit of its event; events that arrive together share one.
    #[arg(long, global = true, env = "AUDIT_WRITERS", default_value_t = 2)]
    pub audit_writers: usize,

    /// Most AuditEvents one writer inserts in one statement and commit.
    #[arg(long, global = true, env = "AUDIT_BATCH_MAX", default_value_t = 256)]
    pub audit_batch_max: usize,

    /// When the event of a request that writes nothing (a read, a search, a refusal) is
    /// safe enough to answer the request: `flushed`, once PostgreSQL has flushed it to
    /// disk; `committed`, once it is committed, PostgreSQL flushing it within three
    /// `wal_writer_delay`s (a crash of PostgreSQL itself in that window loses those events).
    /// A write's event is always in the write's own transaction.
    #[arg(long, global = true, env = "AUDIT_DURABILITY", value_enum, default_value_t = AuditDurability::Flushed)]
    pub audit_durability: AuditDurability,
}

/// See `AuditConfig::audit_durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditDurability {
    Flushed,
    Committed,
}

/// Protection at the HTTP edge: CORS for browser clients and per-client rate limits
/// (src/security/).
#[derive(Debug, Clone, Args)]
pub struct EdgeConfig {
    /// Origins of browser applications allowed to call the API (comma-separated, e.g.
    /// `https://app.example.org`, or `*` for any origin). Empty: no cross-origin access.
    /// The server's own origin is always allowed, so the Swagger UI works.
    #[arg(
        long,
        global = true,
        env = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Requests per second each client may make, sustained (0 = no limit). A client is
    /// the subject of its verified token, or its IP address without one. Above the limit
    /// requests get 429 with `Retry-After`.
    #[arg(
        long,
        global = true,
        env = "RATE_LIMIT_PER_SECOND",
        default_value_t = 10_000
    )]
    pub rate_limit_per_second: u32,

    /// Requests a client may make at once above the sustained rate before it is limited.
    #[arg(
        long,
        global = true,
        env = "RATE_LIMIT_BURST",
        default_value_t = 20_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_limit_burst: u32,
}

/// Bulk Data `$export` jobs (src/export/).
#[derive(Debug, Clone, Args)]
pub struct BulkExportConfig {
    /// Export workers per instance, each running one job at a time (0 = this instance runs
    /// none; others on the same database still do).
    #[arg(long, global = true, env = "BULK_EXPORT_WORKERS", default_value_t = 1)]
    pub bulk_export_workers: usize,

    /// How often idle export workers look for jobs other instances accepted, and for
    /// expired jobs to delete, in milliseconds (jobs accepted here wake them at once).
    #[arg(
        long,
        global = true,
        env = "BULK_EXPORT_POLL_MS",
        default_value_t = 1000
    )]
    pub bulk_export_poll_ms: u64,

    /// How long a finished export's files are kept, from the moment it finished (`30s`,
    /// `90m`, `24h`, `7d`, or seconds). After it the job and its files are deleted.
    #[arg(
        long,
        global = true,
        env = "BULK_EXPORT_RETENTION",
        default_value = "24h",
        value_parser = parse_duration
    )]
    pub bulk_export_retention: Duration,

    /// Resources read and stored per step of an export: each step is one statement and one
    /// transaction, and cancellation is noticed between steps.
    #[arg(
        long,
        global = true,
        env = "BULK_EXPORT_CHUNK",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub bulk_export_chunk: u32,

    /// Most resources in one output file; a type with more is split over several files
    /// (a file is also closed once it passes 32 MiB).
    #[arg(
        long,
        global = true,
        env = "BULK_EXPORT_FILE_RESOURCES",
        default_value_t = 50_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub bulk_export_file_resources: u32,
}

/// A duration written as a number with a unit (`s`, `m`, `h`, `d`) or as seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_seconds) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 'h')) => (&text[..at], 3600),
        Some((at, 'd')) => (&text[..at], 86_400),
        _ => (text, 1),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_seconds))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 90m, 24h or 7d"))
}

/// Delivery of Subscription notifications (src/subscriptions/).
#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    /// Delivery workers per instance: each sends one subscription's notifications at a time
    /// (0 = this instance delivers nothing; others on the same database still do).
    #[arg(long, global = true, env = "WEBHOOK_WORKERS", default_value_t = 4)]
    pub webhook_workers: usize,

    /// Networks notification endpoints may be in although the egress policy denies them
    /// (comma-separated CIDRs). Private, loopback and link-local addresses are denied
    /// unless listed here; ./scripts/run allows loopback only.
    #[arg(long, global = true, env = "WEBHOOK_ALLOW_NETWORKS", default_value = "", value_parser = parse_networks)]
    pub webhook_allow_networks: Networks,

    /// Seconds to wait before each retry of a failed notification, comma-separated; after
    /// the last, the subscription goes to `error` (its events are kept). The default spans
    /// 32 hours. Each wait gets +-20% jitter, and a longer Retry-After is honoured.
    #[arg(
        long,
        global = true,
        env = "WEBHOOK_RETRY_SCHEDULE",
        default_value = "5,15,60,300,900,1800,3600,7200,14400,21600,21600,21600,21600",
        value_parser = parse_schedule
    )]
    pub webhook_retry_schedule: RetrySchedule,

    /// Connect timeout of a notification request, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "WEBHOOK_CONNECT_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub webhook_connect_timeout_ms: u64,

    /// Total timeout of a notification request, in milliseconds (a subscription's
    /// backport-timeout may shorten it).
    #[arg(
        long,
        global = true,
        env = "WEBHOOK_TIMEOUT_MS",
        default_value_t = 10000
    )]
    pub webhook_timeout_ms: u64,

    /// How often idle workers look for work recorded by other instances, in milliseconds
    /// (events recorded by this instance wake them at once).
    #[arg(long, global = true, env = "WEBHOOK_POLL_MS", default_value_t = 250)]
    pub webhook_poll_ms: u64,
}

fn parse_resource_id(text: &str) -> Result<String, String> {
    crate::fhir::ResourceId::parse(text)
        .map(|id| id.as_str().to_string())
        .map_err(|e| e.to_string())
}

/// A list of networks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Networks(pub Vec<ipnet::IpNet>);

fn parse_networks(text: &str) -> Result<Networks, String> {
    crate::subscriptions::egress::parse_networks(text).map(Networks)
}

/// The waits before each retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(pub Vec<Duration>);

fn parse_schedule(text: &str) -> Result<RetrySchedule, String> {
    let waits = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{part:?} is not a number of seconds"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if waits.is_empty() {
        return Err("the retry schedule needs at least one wait".into());
    }
    Ok(RetrySchedule(waits))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DefaultTotal {
    None,
    Estimate,
    Accurate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    /// The FHIR base URL as clients see it, without a trailing slash, for a server bound
    /// to `bound` (which differs from LISTEN_ADDR when that asks for port 0).
    pub fn base_url_for(&self, bound: SocketAddr) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}/fhir"),
        }
    }

    /// What search-index extraction needs, for a server bound to `bound`.
    pub fn index_context(&self, bound: SocketAddr) -> crate::fhir::search_index::IndexContext {
        crate::fhir::search_index::IndexContext {
            base_url: self.base_url_for(bound),
            zone: self.clinic_timezone,
        }
    }

    /// What the write path needs: index extraction, the clinic's rules (read from
    /// CLINIC_CONFIG_FILE) and the webhook egress policy.
    pub fn write_context(
        &self,
        bound: SocketAddr,
    ) -> anyhow::Result<crate::store::resources::WriteContext> {
        let clinic = crate::clinic::config::ClinicConfig::load(self.clinic_config_file.as_deref())?;
        let policy = crate::subscriptions::egress::EgressPolicy::new(
            self.webhooks.webhook_allow_networks.0.clone(),
        );
        Ok(crate::store::resources::WriteContext {
            index: self.index_context(bound),
            clinic: std::sync::Arc::new(clinic),
            webhooks: std::sync::Arc::new(crate::subscriptions::WebhookContext::new(policy)),
        })
    }

    /// The pool size, with 0 resolved against the machine's cores.
    pub fn pool_size(&self) -> usize {
        match self.db_pool_size {
            0 => 2 * std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
            size => size,
        }
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The defaults, as a local `serve` would see them with no environment set.
    /// Tests start from this and override what they need.
    /// Replaces the settings given as files (`*_FILE`, the way container secrets are
    /// mounted) with the files' contents.
    pub fn read_secret_files(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.database_url_file {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!("reading DATABASE_URL_FILE {}: {error}", path.display())
            })?;
            let url = text.trim();
            anyhow::ensure!(
                !url.is_empty(),
                "DATABASE_URL_FILE {} is empty",
                path.display()
            );
            self.database_url = url.to_string();
        }
        Ok(())
    }

    pub fn local_defaults() -> Self {
        use clap::FromArgMatches;
        let command = <Self as Args>::augment_args(clap::Command::new("config"));
        let matches = command
            .try_get_matches_from(["config"])
            .expect("configuration defaults parse");
        Self::from_arg_matches(&matches).expect("configuration defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_seconds() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
