//! The SQL of the audit trail: append a batch of AuditEvents, search them. Rows are never updated
//! or deleted (the migration's triggers refuse it).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Jsonb;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::audit::event::AuditRecord;
use crate::error::ApiResult;

const INSERT: &str = "\
INSERT INTO audit_events (id, recorded, request_id, agent, patients, outcome, subtype, action, content)
SELECT id, recorded, request_id, agent, string_to_array(patients, E'\\x1f'), outcome, subtype,
       action, content::jsonb
  FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::text[])
    AS event(id, recorded, request_id, agent, patients, outcome, subtype, action, content)";

/// The separator of the patient ids of one event in the statement's text array (an id
/// never holds it: FHIR ids are letters, digits, `-` and `.`).
const PATIENT_SEPARATOR: &str = "\u{1f}";

/// Records `records` in one statement (one commit): all of them when this returns `Ok`,
/// none otherwise.
pub async fn append_all(pool: &Pool, records: &[&AuditRecord]) -> ApiResult<()> {
    append_on(&mut *connection(pool).await?, records).await
}

/// `append_all` on a given connection: inside the caller's transaction, the events commit
/// with it (a write's audit) or not at all.
pub async fn append_on(conn: &mut AsyncPgConnection, records: &[&AuditRecord]) -> ApiResult<()> {
    let recorded = Utc::now();
    let ids: Vec<String> = records
        .iter()
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let optional = |field: fn(&AuditRecord) -> &Option<String>| -> Bound {
        Bound::OptionalTexts(records.iter().map(|r| field(r).clone()).collect())
    };
    let text = |field: fn(&AuditRecord) -> String| -> Bound {
        Bound::Texts(records.iter().map(|r| field(r)).collect())
    };
    let contents = records
        .iter()
        .zip(&ids)
        .map(|(record, id)| record.resource(id, recorded).to_string())
        .collect();
    Statement::new(
        INSERT,
        vec![
            Bound::Texts(ids),
            Bound::Instants(vec![recorded; records.len()]),
            optional(|r| &r.request_id),
            optional(|r| &r.agent),
            text(|r| r.patients.join(PATIENT_SEPARATOR)),
            text(|r| r.outcome().into()),
            text(|r| r.interaction.code.into()),
            text(|r| r.interaction.action.code().into()),
            Bound::Texts(contents),
        ],
    )
    .execute(conn)
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
   AND ($2::text IS NULL OR patients @> ARRAY[$2::text])
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
