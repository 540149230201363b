//! Everything that talks SQL: the connection pool, migrations, resource versions, history, search.
//! Transactions start and end in this module; nothing outside it writes SQL.

pub mod audit;
pub mod bulk;
pub mod clients;
pub mod clinic;
pub mod everything;
pub mod export;
pub mod facts;
pub mod history;
pub mod index;
pub mod outcomes;
pub mod prior_auth;
pub mod resources;
pub mod schema;
pub mod search;
pub mod statement;
pub mod subscriptions;
pub mod transaction;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

use crate::config::{AuditDurability, Config};
use crate::error::{ApiError, ApiResult};

pub use diesel_async::pooled_connection::deadpool::PoolError;
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;
pub type Connection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Builds the pool. Connections are made lazily, so the server starts even while the
/// database is down and recovers on its own when it comes back: a connection whose socket
/// has closed (the server restarted or ended it) or that was left inside a transaction is
/// dropped when it returns to the pool, not reused. Recycling does not send a query
/// (deadpool's `Fast` method): a `SELECT 1` before every checkout would add a round trip
/// to every request (a read by id needs just one).
pub fn build_pool(config: &Config) -> anyhow::Result<Pool> {
    pool_with(config, config.pool_size(), Session::default())
}

/// A pool of `size` connections for a set of background workers (webhook delivery, bulk
/// export), apart from the requests' pool so that they never wait for each other.
pub fn build_worker_pool(config: &Config, size: usize) -> anyhow::Result<Pool> {
    pool_with(config, size, Session::default())
}

/// The pool of the HTTP requests. Their transactions never wait between statements for
/// anything but the server's own work, so one idle in a transaction for longer than a
/// statement may run belongs to a request abandoned at its deadline: PostgreSQL ends it,
/// releasing its locks, instead of it waiting for the pool to recycle its connection.
pub fn build_request_pool(config: &Config) -> anyhow::Result<Pool> {
    let session = Session {
        idle_in_transaction_ms: Some(config.db_statement_timeout_ms),
        ..Session::default()
    };
    pool_with(config, config.pool_size(), session)
}

/// The pool of the audit trail's group-commit writers, one connection per writer. With
/// `AUDIT_DURABILITY=committed` their commits do not wait for the WAL flush.
pub fn build_audit_pool(config: &Config) -> anyhow::Result<Pool> {
    let session = Session {
        asynchronous_commit: config.audit.audit_durability == AuditDurability::Committed,
        ..Session::default()
    };
    pool_with(config, config.audit.audit_writers.max(1), session)
}

/// Session settings of a pool's connections beyond the ones every connection gets.
#[derive(Clone, Copy, Default)]
struct Session {
    idle_in_transaction_ms: Option<u64>,
    asynchronous_commit: bool,
}

impl Session {
    fn statements(self) -> String {
        let mut statements = String::new();
        if let Some(ms) = self.idle_in_transaction_ms {
            statements.push_str(&format!("; SET idle_in_transaction_session_timeout = {ms}"));
        }
        if self.asynchronous_commit {
            statements.push_str("; SET synchronous_commit = off");
        }
        statements
    }
}

fn pool_with(config: &Config, size: usize, session: Session) -> anyhow::Result<Pool> {
    let mut manager_config = ManagerConfig::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    let statement_timeout_ms = config.db_statement_timeout_ms;
    manager_config.custom_setup = Box::new(move |url| {
        let url = url.to_string();
        async move {
            let mut conn = AsyncPgConnection::establish_with_timeout(&url).await?;
            // JIT compilation pays off for long analytic queries, not for searches that
            // take milliseconds: its compile time alone would exceed them. Merge joins are
            // off because the planner costs them from a column's whole range: a search page
            // that starts deep in creation order (`resource_seq > cursor`) was planned as a
            // merge that first reads every index row before the cursor. The statement
            // timeout keeps a slow or blocked statement from holding a connection and its
            // request past any deadline.
            conn.batch_execute(&format!(
                "SET statement_timeout = {statement_timeout_ms}; SET jit = off; SET enable_mergejoin = off{}",
                session.statements()
            ))
            .await
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        &config.database_url,
        manager_config,
    );
    let timeout = config.db_acquire_timeout();
    Ok(Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

trait EstablishWithTimeout: Sized {
    async fn establish_with_timeout(url: &str) -> diesel::ConnectionResult<Self>;
}

impl EstablishWithTimeout for AsyncPgConnection {
    async fn establish_with_timeout(url: &str) -> diesel::ConnectionResult<Self> {
        use diesel_async::AsyncConnection;
        match tokio::time::timeout(Duration::from_secs(5), AsyncPgConnection::establish(url)).await
        {
            Ok(result) => result,
            Err(_) => Err(diesel::ConnectionError::BadConnection(
                "timed out connecting to the database".into(),
            )),
        }
    }
}

/// A pooled connection, or a fast 503 when the pool is exhausted or the database is down.
pub async fn connection(pool: &Pool) -> ApiResult<Connection> {
    Ok(pool.get().await?)
}

/// Applies pending migrations through diesel's synchronous harness on a blocking thread,
/// then makes sure every resource type served has its table partitions.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let url = database_url.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        use diesel::Connection as _;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        SimpleConnection::batch_execute(&mut conn, "SET lock_timeout = '30s'")?;
        let applied: Vec<String> = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?
            .iter()
            .map(ToString::to_string)
            .collect();
        for resource_type in crate::fhir::definitions::registry().resource_types() {
            let query = diesel::sql_query("SELECT ensure_resource_type_partitions($1)")
                .bind::<diesel::sql_types::Text, _>(resource_type.as_str());
            diesel::RunQueryDsl::execute(query, &mut conn)?;
        }
        Ok(applied)
    })
    .await?
}

/// Readiness: the database answers and no embedded migration is pending.
pub async fn check_ready(pool: &Pool) -> ApiResult<()> {
    use diesel::QueryDsl;
    diesel::table! { __diesel_schema_migrations (version) { version -> Text, } }
    let mut conn = connection(pool).await?;
    let applied: Vec<String> = __diesel_schema_migrations::table
        .select(__diesel_schema_migrations::version)
        .load(&mut conn)
        .await?;
    let pending: Vec<String> = MIGRATIONS_VERSIONS
        .iter()
        .filter(|version| !applied.iter().any(|a| a == *version))
        .map(|v| v.to_string())
        .collect();
    if pending.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unavailable(format!(
            "migrations pending: {}",
            pending.join(", ")
        )))
    }
}

/// The versions of the embedded migrations (the folder names' leading timestamps, digits only).
static MIGRATIONS_VERSIONS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map(|list| {
            list.iter()
                .map(|m| m.name().version().to_string())
                .collect()
        })
        .unwrap_or_default()
});
