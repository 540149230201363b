//! The SQL of the audit trail: append one AuditEvent, search them. Rows are never updated
//! or deleted (the migration's triggers refuse it).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Jsonb;
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::audit::event::AuditRecord;
use crate::error::ApiResult;

const INSERT: &str = "\
INSERT INTO audit_events (id, recorded, request_id, agent, patient, outcome, subtype, action, content)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)";

/// Records one AuditEvent, committed when this returns `Ok`.
pub async fn append(pool: &Pool, record: &AuditRecord) -> ApiResult<()> {
    let id = uuid::Uuid::new_v4().to_string();
    let recorded = Utc::now();
    let content = record.resource(&id, recorded);
    let mut conn = connection(pool).await?;
    Statement::new(
        INSERT,
        vec![
            Bound::Text(id),
            Bound::Instant(recorded),
            Bound::OptionalText(record.request_id.clone()),
            Bound::OptionalText(record.agent.clone()),
            Bound::OptionalText(record.patient.clone()),
            Bound::Text(record.outcome().into()),
            Bound::Text(record.interaction.code.into()),
            Bound::Text(record.interaction.action.code().into()),
            Bound::Text(content.to_string()),
        ],
    )
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// What an auditor's search asks for; every filter given must hold.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub agent: Option<String>,
    pub patient: Option<String>,
    pub outcome: Option<String>,
    pub subtype: Option<String>,
    pub action: Option<String>,
    pub request_id: Option<String>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub before: Option<DateTime<Utc>>,
    pub id: Option<String>,
    pub limit: i64,
}

const SEARCH: &str = "\
SELECT content FROM audit_events
 WHERE ($1::text IS NULL OR agent = $1)
   AND ($2::text IS NULL OR patient = $2)
   AND ($3::text IS NULL OR outcome = $3)
   AND ($4::text IS NULL OR subtype = $4)
   AND ($5::text IS NULL OR action = $5)
   AND ($6::text IS NULL OR request_id = $6)
   AND ($7::timestamptz IS NULL OR recorded >= $7)
   AND ($8::timestamptz IS NULL OR recorded < $8)
   AND ($9::text IS NULL OR id = $9)
 ORDER BY seq
 LIMIT $10";

/// The AuditEvents matching `filter`, oldest first.
pub async fn search(pool: &Pool, filter: &AuditFilter) -> ApiResult<Vec<Value>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Jsonb)]
        content: Value,
    }
    let mut conn = connection(pool).await?;
    let rows: Vec<Row> = Statement::new(
        SEARCH,
        vec![
            Bound::OptionalText(filter.agent.clone()),
            Bound::OptionalText(filter.patient.clone()),
            Bound::OptionalText(filter.outcome.clone()),
            Bound::OptionalText(filter.subtype.clone()),
            Bound::OptionalText(filter.action.clone()),
            Bound::OptionalText(filter.request_id.clone()),
            Bound::OptionalInstant(filter.since),
            Bound::OptionalInstant(filter.before),
            Bound::OptionalText(filter.id.clone()),
            Bound::BigInt(filter.limit),
        ],
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.content).collect())
}
