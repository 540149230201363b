//! The SQL of Bulk Data `$export`: jobs and their output files (`export_jobs`,
//! `export_files`, `export_chunks`), claiming a job under a lease with `FOR UPDATE SKIP
//! LOCKED`, one export step per transaction (the next resources of a type, rendered as text
//! by PostgreSQL and appended to the open file without leaving the database), and the
//! retention sweep.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::search::{Sql, all_of};
use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::error::ApiResult;
use crate::fhir::search::Filter;

/// The search parameter that places a resource in a patient's compartment: for every type
/// of the compartment it is the reference to the patient (`subject` when it is a Patient,
/// `Claim.patient`, `Coverage.beneficiary`), as the search compartment filter uses it.
pub const COMPARTMENT_PARAMETER: &str = "patient";

/// A job as accepted at kick-off.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub owner: String,
    pub request: String,
    /// `system`, `patient` or `group`.
    pub level: &'static str,
    /// Group exports: the member patients.
    pub members: Option<Vec<String>>,
    /// The types and how each is read (`export::TypePlan`s as JSON).
    pub types: Value,
    pub since: Option<DateTime<Utc>>,
}

/// Stores a new job, queued for the workers; its transaction time is the database's now.
pub async fn create_job(pool: &Pool, job: &NewJob) -> ApiResult<()> {
    let mut conn = connection(pool).await?;
    Statement::new(
        "INSERT INTO export_jobs (id, owner, request, level, members, types, since, transaction_time) \
         VALUES ($1::uuid, $2, $3, $4, $5, $6::jsonb, $7, date_trunc('milliseconds', now()))",
        vec![
            Bound::Text(job.id.clone()),
            Bound::Text(job.owner.clone()),
            Bound::Text(job.request.clone()),
            Bound::Text(job.level.to_string()),
            Bound::NullableTexts(job.members.clone()),
            Bound::Text(job.types.to_string()),
            Bound::OptionalInstant(job.since),
        ],
    )
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// A job as its owner sees it.
#[derive(Debug, Clone, QueryableByName)]
pub struct JobState {
    #[diesel(sql_type = Text)]
    pub owner: String,
    /// `queued`, `running`, `completed` or `failed`.
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub request: String,
    #[diesel(sql_type = Timestamptz)]
    pub transaction_time: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub exported: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub estimated: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub finished_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Jsonb)]
    pub types: Value,
}

/// The job, unless it never existed, was deleted, or finished longer than `retention` ago
/// (its files may not be swept yet, but they are no longer served).
pub async fn job_state(pool: &Pool, id: &str, retention: Duration) -> ApiResult<Option<JobState>> {
    let mut conn = connection(pool).await?;
    let rows: Vec<JobState> = Statement::new(
        "SELECT owner, status, request, transaction_time, exported, estimated, error, finished_at, types \
         FROM export_jobs WHERE id = $1::uuid \
         AND (finished_at IS NULL OR finished_at >= now() - $2 * interval '1 millisecond')",
        vec![Bound::Text(id.to_string()), Bound::BigInt(millis(retention))],
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next())
}

/// An output file of a job.
#[derive(Debug, Clone, QueryableByName)]
pub struct ExportFile {
    #[diesel(sql_type = Integer)]
    pub file_number: i32,
    #[diesel(sql_type = Text)]
    pub resource_type: String,
    #[diesel(sql_type = BigInt)]
    pub resource_count: i64,
    #[diesel(sql_type = BigInt)]
    pub byte_count: i64,
}

/// The files of a job, in the order they were written.
pub async fn job_files(pool: &Pool, id: &str) -> ApiResult<Vec<ExportFile>> {
    let mut conn = connection(pool).await?;
    Ok(Statement::new(
        "SELECT file_number, resource_type, resource_count, byte_count FROM export_files \
         WHERE job_id = $1::uuid ORDER BY file_number",
        vec![Bound::Text(id.to_string())],
    )
    .load(&mut conn)
    .await?)
}

pub async fn job_file(pool: &Pool, id: &str, file_number: i32) -> ApiResult<Option<ExportFile>> {
    let mut conn = connection(pool).await?;
    let rows: Vec<ExportFile> = Statement::new(
        "SELECT file_number, resource_type, resource_count, byte_count FROM export_files \
         WHERE job_id = $1::uuid AND file_number = $2::integer",
        vec![
            Bound::Text(id.to_string()),
            Bound::BigInt(file_number.into()),
        ],
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next())
}

/// The chunk of a file after chunk `after` (0: the first), with its number.
pub async fn next_chunk(
    pool: &Pool,
    id: &str,
    file_number: i32,
    after: i32,
) -> ApiResult<Option<(i32, String)>> {
    #[derive(QueryableByName)]
    struct Chunk {
        #[diesel(sql_type = Integer)]
        chunk_number: i32,
        #[diesel(sql_type = Text)]
        lines: String,
    }
    let mut conn = connection(pool).await?;
    let rows: Vec<Chunk> = Statement::new(
        "SELECT chunk_number, lines FROM export_chunks \
         WHERE job_id = $1::uuid AND file_number = $2::integer AND chunk_number > $3::integer \
         ORDER BY chunk_number LIMIT 1",
        vec![
            Bound::Text(id.to_string()),
            Bound::BigInt(file_number.into()),
            Bound::BigInt(after.into()),
        ],
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next().map(|c| (c.chunk_number, c.lines)))
}

/// Deletes a job of `owner` with its files; a worker running it notices at its next step.
/// `false` if there was no such job.
pub async fn delete_job(pool: &Pool, id: &str, owner: &str) -> ApiResult<bool> {
    let mut conn = connection(pool).await?;
    let deleted = Statement::new(
        "DELETE FROM export_jobs WHERE id = $1::uuid AND owner = $2",
        vec![Bound::Text(id.to_string()), Bound::Text(owner.to_string())],
    )
    .execute(&mut conn)
    .await?;
    Ok(deleted > 0)
}

/// Deletes up to 20 jobs that finished longer than `retention` ago, with their files;
/// returns how many. Jobs another instance is deleting at the same time are skipped.
pub async fn delete_expired(pool: &Pool, retention: Duration) -> ApiResult<usize> {
    let mut conn = connection(pool).await?;
    Ok(Statement::new(
        "DELETE FROM export_jobs WHERE id IN ( \
             SELECT id FROM export_jobs WHERE finished_at < now() - $1 * interval '1 millisecond' \
             ORDER BY finished_at LIMIT 20 FOR UPDATE SKIP LOCKED)",
        vec![Bound::BigInt(millis(retention))],
    )
    .execute(&mut conn)
    .await?)
}

/// A job a worker has claimed.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedJob {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub level: String,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    pub members: Option<Vec<String>>,
    #[diesel(sql_type = Jsonb)]
    pub types: Value,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub since: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub estimated: Option<i64>,
}

/// Claims the oldest job that is queued, or whose holder's lease lapsed, for `holder`.
pub async fn claim_job(
    pool: &Pool,
    holder: &str,
    lease: Duration,
) -> ApiResult<Option<ClaimedJob>> {
    let mut conn = connection(pool).await?;
    let rows: Vec<ClaimedJob> = Statement::new(
        "UPDATE export_jobs j SET status = 'running', lease_holder = $1::uuid, \
             lease_until = now() + $2 * interval '1 millisecond' \
         FROM (SELECT id FROM export_jobs WHERE status IN ('queued', 'running') \
               AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) due \
         WHERE j.id = due.id \
         RETURNING j.id::text AS id, j.level, j.members, j.types, j.since, j.estimated",
        vec![
            Bound::Text(holder.to_string()),
            Bound::BigInt(millis(lease)),
        ],
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next())
}

/// Which patients' compartments a type is read from.
#[derive(Debug, Clone)]
pub enum Compartment {
    /// Every resource of the type (system-level export).
    Everything,
    /// The compartments of every patient.
    AllPatients,
    /// The compartments of these patients.
    Patients(Arc<Vec<String>>),
}

/// What a job reads of one type.
#[derive(Debug, Clone)]
pub struct TypeQuery {
    pub resource_type: String,
    pub compartment: Compartment,
    /// `_typeFilter` searches, OR-ed (each a list of AND-ed filters); none: no filter.
    pub filters: Vec<Vec<Filter>>,
}

/// `FROM resources r WHERE …`: the live resources of the query's type after `after_seq`
/// that its compartment, `_since` and filters select.
fn push_selection(sql: &mut Sql, query: &TypeQuery, since: Option<DateTime<Utc>>, after_seq: i64) {
    sql.push(" FROM resources r WHERE r.resource_type = ")
        .name(&query.resource_type)
        .push(" AND NOT r.deleted AND r.created_seq > ")
        .range(Bound::BigInt(after_seq));
    if let Some(since) = since {
        sql.push(" AND r.last_updated >= ")
            .range(Bound::Instant(since));
    }
    push_compartment(sql, query);
    if !query.filters.is_empty() {
        sql.push(" AND ").any_of(&query.filters, |sql, filters| {
            all_of(sql, "r", &query.resource_type, filters)
        });
    }
}

fn push_compartment(sql: &mut Sql, query: &TypeQuery) {
    let patients = match &query.compartment {
        Compartment::Everything => return,
        Compartment::AllPatients => None,
        Compartment::Patients(ids) => Some(ids),
    };
    if query.resource_type == "Patient" {
        if let Some(ids) = patients {
            sql.push(" AND r.id = ANY(")
                .bind(Bound::Texts(ids.to_vec()))
                .push(")");
        }
        return;
    }
    sql.push(" AND EXISTS (SELECT 1 FROM search_reference x WHERE x.resource_type = ")
        .name(&query.resource_type)
        .push(" AND x.resource_seq = r.created_seq AND x.param = ")
        .name(COMPARTMENT_PARAMETER)
        .push(" AND x.target_type = 'Patient'");
    if let Some(ids) = patients {
        sql.push(" AND x.target_id = ANY(")
            .bind(Bound::Texts(ids.to_vec()))
            .push(")");
    }
    sql.push(")");
}

/// Stores the planner's estimate of how many resources the job exports, for its progress.
pub async fn record_estimate(
    pool: &Pool,
    id: &str,
    queries: &[TypeQuery],
    since: Option<DateTime<Utc>>,
) -> ApiResult<i64> {
    #[derive(QueryableByName)]
    struct PlanRow {
        #[diesel(sql_type = diesel::sql_types::Json, column_name = "QUERY PLAN")]
        plan: Value,
    }
    let mut conn = connection(pool).await?;
    let mut estimated = 0i64;
    for query in queries {
        let mut sql = Sql::default();
        sql.push("EXPLAIN (FORMAT JSON) SELECT 1");
        push_selection(&mut sql, query, since, 0);
        let row: PlanRow = sql.into_query().get_result(&mut conn).await?;
        let rows = row.plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0);
        estimated += rows.round() as i64;
    }
    Statement::new(
        "UPDATE export_jobs SET estimated = $2 WHERE id = $1::uuid",
        vec![Bound::Text(id.to_string()), Bound::BigInt(estimated)],
    )
    .execute(&mut conn)
    .await?;
    Ok(estimated)
}

/// How big steps and files get, and how long a step's lease lasts.
#[derive(Debug, Clone, Copy)]
pub struct StepLimits {
    pub chunk: i64,
    pub file_resources: i64,
    pub file_bytes: i64,
    pub lease: Duration,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wrote this many resources (0 when a type ended); there is more to do.
    Exported(i64),
    /// Every type is exported; the job is completed.
    Completed,
    /// The job is no longer this worker's: cancelled (deleted) or taken over.
    Lost,
}

/// Where a job stands, as its row says.
#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = Integer)]
    type_position: i32,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
    #[diesel(sql_type = Integer)]
    file_number: i32,
    #[diesel(sql_type = BigInt)]
    file_resources: i64,
    #[diesel(sql_type = BigInt)]
    file_bytes: i64,
    #[diesel(sql_type = Integer)]
    chunks: i32,
}

/// What a step's statement read and stored.
#[derive(QueryableByName)]
struct StepRead {
    #[diesel(sql_type = BigInt)]
    resources: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

/// One step of a job, in one transaction under the job row's lock: reads the next
/// resources of the current type (at most a chunk, and no more than the open file has room
/// for), appends them to that file (or opens the next one) as one chunk, and moves the
/// job's position on; with every type done, completes the job. A job that was deleted or
/// whose lease passed to another worker is `Lost`.
pub async fn export_step(
    pool: &Pool,
    id: &str,
    holder: &str,
    queries: &[TypeQuery],
    since: Option<DateTime<Utc>>,
    limits: StepLimits,
) -> ApiResult<Step> {
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    conn.transaction(async |conn: &mut AsyncPgConnection| -> ApiResult<Step> {
        let positions: Vec<Position> = Statement::new(
            "SELECT type_position, last_seq, file_number, file_resources, file_bytes, chunks \
             FROM export_jobs WHERE id = $1::uuid AND lease_holder = $2::uuid AND status = 'running' \
             FOR UPDATE",
            vec![Bound::Text(id.to_string()), Bound::Text(holder.to_string())],
        )
        .load(conn)
        .await?;
        let Some(position) = positions.into_iter().next() else {
            return Ok(Step::Lost);
        };
        let Some(query) = queries.get(position.type_position as usize) else {
            Statement::new(
                "UPDATE export_jobs SET status = 'completed', finished_at = now(), \
                     lease_holder = NULL, lease_until = NULL WHERE id = $1::uuid",
                vec![Bound::Text(id.to_string())],
            )
            .execute(conn)
            .await?;
            return Ok(Step::Completed);
        };
        let open = position.file_resources > 0
            && position.file_resources < limits.file_resources
            && position.file_bytes < limits.file_bytes;
        let (file_number, in_file, bytes_in_file) = if open {
            (position.file_number, position.file_resources, position.file_bytes)
        } else {
            (position.file_number + 1, 0, 0)
        };
        let limit = limits.chunk.min(limits.file_resources - in_file);
        let chunk_number = position.chunks + 1;
        let read: StepRead =
            step_statement(id, query, since, position.last_seq, limit, file_number, chunk_number)
                .get_result(conn)
                .await?;
        let mut next = Position {
            type_position: position.type_position,
            last_seq: read.last_seq,
            file_number: position.file_number,
            file_resources: position.file_resources,
            file_bytes: position.file_bytes,
            chunks: position.chunks,
        };
        if read.resources > 0 {
            next.file_number = file_number;
            next.file_resources = in_file + read.resources;
            next.file_bytes = bytes_in_file + read.bytes;
            next.chunks = chunk_number;
        }
        if read.resources < limit {
            next.type_position += 1;
            next.last_seq = 0;
            next.file_resources = 0;
            next.file_bytes = 0;
        }
        Statement::new(
            "UPDATE export_jobs SET type_position = $2::integer, last_seq = $3, file_number = $4::integer, \
                 file_resources = $5, file_bytes = $6, chunks = $7::integer, exported = exported + $8, \
                 lease_until = now() + $9 * interval '1 millisecond' \
             WHERE id = $1::uuid",
            vec![
                Bound::Text(id.to_string()),
                Bound::BigInt(next.type_position.into()),
                Bound::BigInt(next.last_seq),
                Bound::BigInt(next.file_number.into()),
                Bound::BigInt(next.file_resources),
                Bound::BigInt(next.file_bytes),
                Bound::BigInt(next.chunks.into()),
                Bound::BigInt(read.resources),
                Bound::BigInt(millis(limits.lease)),
            ],
        )
        .execute(conn)
        .await?;
        Ok(Step::Exported(read.resources))
    })
    .await
}

/// The statement of one step: the page of resources as PostgreSQL renders them, appended
/// to the file as one chunk (every line newline-terminated), the file's counts updated, and
/// what was read returned. The content never leaves the database.
fn step_statement(
    id: &str,
    query: &TypeQuery,
    since: Option<DateTime<Utc>>,
    after_seq: i64,
    limit: i64,
    file_number: i32,
    chunk_number: i32,
) -> Statement {
    let mut sql = Sql::default();
    sql.push("WITH page AS (SELECT r.created_seq, r.content::text AS line");
    push_selection(&mut sql, query, since, after_seq);
    sql.push(" ORDER BY r.created_seq LIMIT ")
        .bind(Bound::BigInt(limit))
        .push(
            "), summary AS (SELECT count(*) AS resources, coalesce(max(created_seq), 0) AS last_seq, \
             coalesce(sum(octet_length(line) + 1), 0)::bigint AS bytes FROM page), \
             file AS (INSERT INTO export_files (job_id, file_number, resource_type, resource_count, byte_count) \
             SELECT ",
        )
        .bind(Bound::Text(id.to_string()))
        .push("::uuid, ")
        .bind(Bound::BigInt(file_number.into()))
        .push("::integer, ")
        .name(&query.resource_type)
        .push(
            ", resources, bytes FROM summary WHERE resources > 0 \
             ON CONFLICT (job_id, file_number) DO UPDATE SET \
             resource_count = export_files.resource_count + EXCLUDED.resource_count, \
             byte_count = export_files.byte_count + EXCLUDED.byte_count), \
             chunk AS (INSERT INTO export_chunks (job_id, file_number, chunk_number, lines) SELECT ",
        )
        .bind(Bound::Text(id.to_string()))
        .push("::uuid, ")
        .bind(Bound::BigInt(file_number.into()))
        .push("::integer, ")
        .bind(Bound::BigInt(chunk_number.into()))
        .push(
            "::integer, string_agg(line, E'\\n' ORDER BY created_seq) || E'\\n' FROM page \
             HAVING count(*) > 0) \
             SELECT resources, last_seq, bytes FROM summary",
        );
    sql.into_query()
}

/// Gives a job back, to be claimed again at once (this worker is stopping).
pub async fn release_job(pool: &Pool, id: &str, holder: &str) -> ApiResult<()> {
    let mut conn = connection(pool).await?;
    Statement::new(
        "UPDATE export_jobs SET lease_holder = NULL, lease_until = NULL \
         WHERE id = $1::uuid AND lease_holder = $2::uuid",
        vec![Bound::Text(id.to_string()), Bound::Text(holder.to_string())],
    )
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Records a failed step: the job is retried after `retry_in` by any worker, or, at the
/// `max_failures`th failure, fails for good with `message`. Returns whether it failed.
pub async fn record_failure(
    pool: &Pool,
    id: &str,
    holder: &str,
    message: &str,
    max_failures: i32,
    retry_in: Duration,
) -> ApiResult<bool> {
    #[derive(QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text)]
        status: String,
    }
    let mut conn = connection(pool).await?;
    let rows: Vec<Status> = Statement::new(
        "UPDATE export_jobs SET failures = failures + 1, lease_holder = NULL, \
             lease_until = now() + $3 * interval '1 millisecond', \
             status = CASE WHEN failures + 1 >= $4 THEN 'failed' ELSE status END, \
             error = CASE WHEN failures + 1 >= $4 THEN $5 ELSE error END, \
             finished_at = CASE WHEN failures + 1 >= $4 THEN now() END \
         WHERE id = $1::uuid AND lease_holder = $2::uuid RETURNING status",
        vec![
            Bound::Text(id.to_string()),
            Bound::Text(holder.to_string()),
            Bound::BigInt(millis(retry_in)),
            Bound::BigInt(max_failures.into()),
            Bound::Text(message.to_string()),
        ],
    )
    .load(&mut conn)
    .await?;
    Ok(rows.iter().any(|row| row.status == "failed"))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
