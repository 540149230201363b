//! The export workers: each claims one job at a time (`store::export::claim_job`), runs it
//! step by step until every type is written, the job is cancelled, or the instance stops,
//! and between jobs deletes the jobs whose retention has passed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::request::{compartment, type_filter};
use super::{ExportContext, FILE_BYTES_LIMIT, Level, TypePlan};
use crate::error::{ApiError, ApiResult};
use crate::fhir::search::SearchContext;
use crate::store::Pool;
use crate::store::export::{
    self, ClaimedJob, Step, StepLimits, TypeQuery, claim_job, export_step, record_estimate,
    record_failure, release_job,
};

/// How long a claim lasts without a step renewing it; past it another worker takes over.
const LEASE: Duration = Duration::from_secs(60);
/// Failed steps before a job fails for good, and the wait before a failed step is retried.
const MAX_FAILURES: i32 = 3;
const RETRY_IN: Duration = Duration::from_secs(5);

/// Everything the workers of an instance share.
pub struct Exporter {
    /// A pool of its own (a connection per worker, and one more), so long exports never
    /// take connections from API requests.
    pub pool: Pool,
    pub context: Arc<ExportContext>,
    /// How `_typeFilter` queries are parsed (as at kick-off).
    pub search: SearchContext,
}

/// Starts `count` workers; they stop when `shutdown` turns true.
pub fn spawn_workers(
    exporter: Arc<Exporter>,
    count: usize,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|_| tokio::spawn(work(exporter.clone(), shutdown.clone())))
        .collect()
}

async fn work(exporter: Arc<Exporter>, mut shutdown: watch::Receiver<bool>) {
    let holder = uuid::Uuid::new_v4().to_string();
    let poll = exporter.context.settings.poll;
    let mut swept_at: Option<tokio::time::Instant> = None;
    while !*shutdown.borrow() {
        if swept_at.is_none_or(|at| at.elapsed() >= poll) {
            swept_at = Some(tokio::time::Instant::now());
            exporter.sweep().await;
        }
        let pause = match exporter.run_next(&holder, &shutdown).await {
            Ok(true) => continue,
            Ok(false) => poll,
            Err(error) => {
                tracing::warn!(error = %error, "bulk export worker could not run");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = exporter.context.wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl Exporter {
    /// Deletes the jobs (and files) whose retention has passed.
    async fn sweep(&self) {
        let retention = self.context.settings.retention;
        match export::delete_expired(&self.pool, retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(jobs = deleted, "expired bulk exports deleted"),
            Err(error) => tracing::warn!(error = %error, "deleting expired bulk exports failed"),
        }
    }

    fn limits(&self) -> StepLimits {
        let settings = &self.context.settings;
        StepLimits {
            chunk: settings.chunk.into(),
            file_resources: settings.file_resources.into(),
            file_bytes: FILE_BYTES_LIMIT,
            lease: LEASE,
        }
    }

    /// Claims and runs one job; `false` when none was waiting.
    async fn run_next(&self, holder: &str, shutdown: &watch::Receiver<bool>) -> ApiResult<bool> {
        let Some(job) = claim_job(&self.pool, holder, LEASE).await? else {
            return Ok(false);
        };
        tracing::info!(job = %job.id, level = %job.level, "bulk export started");
        let queries = match self.queries(&job) {
            Ok(queries) => queries,
            Err(error) => {
                self.fail(&job, holder, &error, 1).await?;
                return Ok(true);
            }
        };
        if job.estimated.is_none()
            && let Err(error) = record_estimate(&self.pool, &job.id, &queries, job.since).await
        {
            tracing::warn!(job = %job.id, error = %error, "bulk export estimate failed");
        }
        let limits = self.limits();
        loop {
            if *shutdown.borrow() {
                release_job(&self.pool, &job.id, holder).await?;
                return Ok(true);
            }
            match export_step(&self.pool, &job.id, holder, &queries, job.since, limits).await {
                Ok(Step::Exported(_)) => {}
                Ok(Step::Completed) => {
                    tracing::info!(job = %job.id, "bulk export completed");
                    return Ok(true);
                }
                Ok(Step::Lost) => {
                    tracing::info!(job = %job.id, "bulk export cancelled or taken over");
                    return Ok(true);
                }
                // The lease lapses and the job is resumed once the database is back.
                Err(error @ ApiError::Unavailable(_)) => return Err(error),
                Err(error) => {
                    self.fail(&job, holder, &error, MAX_FAILURES).await?;
                    return Ok(true);
                }
            }
        }
    }

    /// The type queries of a claimed job, its `_typeFilter`s parsed again.
    fn queries(&self, job: &ClaimedJob) -> ApiResult<Vec<TypeQuery>> {
        let level = Level::parse(&job.level)
            .ok_or_else(|| ApiError::internal(format!("unknown export level {}", job.level)))?;
        let plans: Vec<TypePlan> =
            serde_json::from_value(job.types.clone()).map_err(ApiError::internal)?;
        let members = job.members.clone().map(Arc::new);
        plans
            .iter()
            .map(|plan| {
                let filters = plan
                    .filters
                    .iter()
                    .map(|query| type_filter(&plan.resource_type, query, &self.search))
                    .collect::<ApiResult<Vec<_>>>()?;
                Ok(TypeQuery {
                    resource_type: plan.resource_type.clone(),
                    compartment: compartment(level, members.as_ref(), plan),
                    filters,
                })
            })
            .collect()
    }

    /// Records a failed step (`max_failures` of them fail the job for good).
    async fn fail(
        &self,
        job: &ClaimedJob,
        holder: &str,
        error: &ApiError,
        max_failures: i32,
    ) -> ApiResult<()> {
        let message = match error {
            ApiError::Internal(_) => format!(
                "The export stopped on an unexpected error; quote job {} when reporting it",
                job.id
            ),
            other => format!("The export stopped: {other}"),
        };
        let failed = record_failure(
            &self.pool,
            &job.id,
            holder,
            &message,
            max_failures,
            RETRY_IN,
        )
        .await?;
        if failed {
            tracing::error!(job = %job.id, error = %error, "bulk export failed");
        } else {
            tracing::warn!(job = %job.id, error = %error, "bulk export step failed; will retry");
        }
        Ok(())
    }
}
