//! The bulk load path: many new resources written in one transaction per batch (or, for
//! `import`, every batch in one transaction) with a few statements (rows passed as arrays
//! and unnested), storing exactly what `resources::write_version` stores for a
//! client-chosen id: version 1 by PUT, its current row, its index rows and its outcome facts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use tokio::sync::mpsc;

use super::clinic::referenced_medications;
use super::facts as store_facts;
use super::resources::WriteContext;
use super::resources::now;
use super::statement::{Bound, Statement};
use super::{Pool, connection, index};
use crate::clinic::config::KetamineCodes;
use crate::clinic::facts::{OutcomeFact, outcome_facts};
use crate::error::{ApiError, ApiResult};
use crate::fhir::resource::stamp_meta;
use crate::fhir::search_index::{self, IndexEntries};
use crate::fhir::{ResourceId, ResourceType};

/// A resource to load, already validated by the caller.
pub struct NewResource {
    pub resource_type: ResourceType,
    pub id: ResourceId,
    pub content: Value,
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    created_seq: i64,
}

/// A batch made ready to write: stamped, serialised and indexed (CPU work, no IO, so callers
/// can do it on another thread while an earlier batch is written).
pub struct PreparedBatch {
    last_updated: DateTime<Utc>,
    types: Vec<String>,
    ids: Vec<String>,
    contents: Vec<String>,
    entries: HashMap<Key, IndexEntries>,
    facts: HashMap<Key, Vec<OutcomeFact>>,
    /// Administrations whose Medication is not in the batch: their facts are derived in
    /// `write`, with the Medications stored.
    unresolved: Vec<(Key, Value)>,
    ketamine: KetamineCodes,
}

/// A resource's type and id.
pub type Key = (String, String);

impl PreparedBatch {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Stamps each resource as version 1, serialises it and extracts its index entries and
/// outcome facts.
pub fn prepare(batch: Vec<NewResource>, context: &WriteContext) -> PreparedBatch {
    let last_updated = now();
    let ketamine = context.clinic.ketamine.clone();
    let medications: Vec<Value> = batch
        .iter()
        .filter(|r| r.resource_type.as_str() == "Medication")
        .map(|r| r.content.clone())
        .collect();
    let mut prepared = PreparedBatch {
        last_updated,
        types: Vec::with_capacity(batch.len()),
        ids: Vec::with_capacity(batch.len()),
        contents: Vec::with_capacity(batch.len()),
        entries: HashMap::with_capacity(batch.len()),
        facts: HashMap::new(),
        unresolved: Vec::new(),
        ketamine,
    };
    for mut resource in batch {
        stamp_meta(&mut resource.content, resource.id.as_str(), 1, last_updated);
        let resource_type = resource.resource_type.as_str();
        let extracted = search_index::extract(resource_type, &resource.content, &context.index);
        let key = (resource.resource_type.to_string(), resource.id.to_string());
        if references_missing_medication(&resource.content, &medications) {
            prepared
                .unresolved
                .push((key.clone(), resource.content.clone()));
        } else {
            let facts = outcome_facts(
                resource_type,
                &resource.content,
                &medications,
                &prepared.ketamine,
            );
            if !facts.is_empty() {
                prepared.facts.insert(key.clone(), facts);
            }
        }
        prepared.contents.push(resource.content.to_string());
        prepared.types.push(key.0.clone());
        prepared.ids.push(key.1.clone());
        prepared.entries.insert(key, extracted);
    }
    prepared
}

/// An administration naming a Medication that is not among `medications`.
fn references_missing_medication(resource: &Value, medications: &[Value]) -> bool {
    referenced_medications([resource])
        .iter()
        .any(|id| !medications.iter().any(|m| m["id"].as_str() == Some(id)))
}

/// Writes a prepared batch in one transaction. Ids that already exist (live or deleted) are
/// left as they are; returns how many resources were created.
pub async fn write(pool: &Pool, batch: PreparedBatch) -> ApiResult<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    conn.transaction(async |conn: &mut AsyncPgConnection| -> ApiResult<usize> {
        Ok(write_on(conn, batch).await?.created)
    })
    .await
}

/// What writing one batch did.
pub struct WrittenBatch {
    pub created: usize,
    /// The resources whose id was taken already (live or deleted), left as they are.
    pub existing: Vec<Key>,
    /// The administrations whose Medication was not in the batch, with their sequence:
    /// their facts were derived from the Medications stored when the batch was written.
    pub unresolved: Vec<(i64, Value)>,
}

/// Writes a prepared batch in the transaction the caller holds: one statement for the
/// `resources` and `resource_versions` rows, one for the index rows, one for the facts.
async fn write_on(conn: &mut AsyncPgConnection, batch: PreparedBatch) -> ApiResult<WrittenBatch> {
    let PreparedBatch {
        last_updated,
        types,
        ids,
        contents,
        entries,
        mut facts,
        unresolved,
        ketamine,
    } = batch;
    let offered: Vec<Key> = types.iter().cloned().zip(ids.iter().cloned()).collect();
    let inserted: Vec<Inserted> = Statement::new(
        "WITH input AS ( \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS i(resource_type, id, content) \
         ), inserted AS ( \
             INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content) \
             SELECT resource_type, id, 1, $4, false, content::jsonb FROM input \
             ON CONFLICT (resource_type, id) DO NOTHING \
             RETURNING resource_type, id, created_seq, content \
         ), versions AS ( \
             INSERT INTO resource_versions (resource_type, id, version_id, last_updated, deleted, method, content) \
             SELECT resource_type, id, 1, $4, false, 'PUT', content FROM inserted ORDER BY created_seq \
         ) \
         SELECT resource_type, id, created_seq FROM inserted",
        vec![
            Bound::Texts(types),
            Bound::Texts(ids),
            Bound::Texts(contents),
            Bound::Instant(last_updated),
        ],
    )
    .load(conn)
    .await?;
    resolve_facts(conn, &unresolved, &ketamine, &mut facts).await?;
    let keyed = |row: &Inserted| (row.resource_type.clone(), row.id.clone());
    let seqs: HashMap<Key, i64> = inserted
        .iter()
        .map(|row| (keyed(row), row.created_seq))
        .collect();
    let rows: Vec<(i64, &str, &IndexEntries)> = inserted
        .iter()
        .filter_map(|row| {
            let entries = entries.get(&keyed(row))?;
            Some((row.created_seq, row.resource_type.as_str(), entries))
        })
        .collect();
    index::insert_rows(conn, &rows).await?;
    let fact_rows: Vec<(i64, &[OutcomeFact])> = inserted
        .iter()
        .filter_map(|row| Some((row.created_seq, facts.get(&keyed(row))?.as_slice())))
        .collect();
    store_facts::write_rows(conn, &[], &fact_rows).await?;
    Ok(WrittenBatch {
        created: inserted.len(),
        existing: offered
            .into_iter()
            .filter(|key| !seqs.contains_key(key))
            .collect(),
        unresolved: unresolved
            .into_iter()
            .filter_map(|(key, content)| Some((*seqs.get(&key)?, content)))
            .collect(),
    })
}

/// A message to `load_all_or_nothing`.
pub enum Load {
    Batch(Box<PreparedBatch>),
    /// The input ended; commit only if it was `valid`.
    End {
        valid: bool,
    },
}

/// What `load_all_or_nothing` did.
#[derive(Debug, Default)]
pub struct AllOrNothing {
    pub committed: bool,
    /// Resources written (and kept only if committed).
    pub created: usize,
    /// Resources whose id was taken already; any of them means nothing is kept.
    pub existing: Vec<Key>,
}

/// Why the one transaction of `load_all_or_nothing` ended without a commit.
enum NotCommitted {
    Refused(AllOrNothing),
    Failed(ApiError),
}

impl From<diesel::result::Error> for NotCommitted {
    fn from(error: diesel::result::Error) -> Self {
        NotCommitted::Failed(error.into())
    }
}

impl From<ApiError> for NotCommitted {
    fn from(error: ApiError) -> Self {
        NotCommitted::Failed(error)
    }
}

/// Writes every batch received in one transaction, which commits only if the input ends
/// `valid` and no id was taken already; otherwise everything is rolled back. Facts of
/// administrations whose Medication came in a later batch are derived again at the end.
pub async fn load_all_or_nothing(
    pool: &Pool,
    ketamine: &KetamineCodes,
    mut batches: mpsc::Receiver<Load>,
) -> ApiResult<AllOrNothing> {
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    let outcome = conn
        .transaction(
            async |conn: &mut AsyncPgConnection| -> Result<AllOrNothing, NotCommitted> {
                let mut loaded = AllOrNothing::default();
                let mut unresolved = Vec::new();
                let valid = loop {
                    match batches.recv().await {
                        Some(Load::Batch(batch)) => {
                            let written = write_on(conn, *batch).await?;
                            loaded.created += written.created;
                            loaded.existing.extend(written.existing);
                            unresolved.extend(written.unresolved);
                        }
                        Some(Load::End { valid }) => break valid,
                        None => break false,
                    }
                };
                if !valid || !loaded.existing.is_empty() {
                    return Err(NotCommitted::Refused(loaded));
                }
                refresh_facts(conn, &unresolved, ketamine).await?;
                loaded.committed = true;
                Ok(loaded)
            },
        )
        .await;
    match outcome {
        Ok(loaded) | Err(NotCommitted::Refused(loaded)) => Ok(loaded),
        Err(NotCommitted::Failed(error)) => Err(error),
    }
}

/// Derives again, from the Medications stored now, the facts of these administrations.
async fn refresh_facts(
    conn: &mut AsyncPgConnection,
    administrations: &[(i64, Value)],
    ketamine: &KetamineCodes,
) -> ApiResult<()> {
    if administrations.is_empty() {
        return Ok(());
    }
    let contents: Vec<&Value> = administrations.iter().map(|(_, content)| content).collect();
    let derived =
        store_facts::facts_of(conn, "MedicationAdministration", &contents, ketamine).await?;
    let seqs: Vec<i64> = administrations.iter().map(|(seq, _)| *seq).collect();
    let rows: Vec<(i64, &[OutcomeFact])> = seqs
        .iter()
        .zip(&derived)
        .map(|(seq, facts)| (*seq, facts.as_slice()))
        .collect();
    store_facts::write_rows(conn, &seqs, &rows).await
}

/// Derives the facts of the administrations whose Medication was not in their batch, with
/// the Medications stored (this transaction sees the batch's own).
async fn resolve_facts(
    conn: &mut AsyncPgConnection,
    unresolved: &[(Key, Value)],
    ketamine: &KetamineCodes,
    facts: &mut HashMap<Key, Vec<OutcomeFact>>,
) -> ApiResult<()> {
    let contents: Vec<&Value> = unresolved.iter().map(|(_, content)| content).collect();
    if contents.is_empty() {
        return Ok(());
    }
    let derived =
        store_facts::facts_of(conn, "MedicationAdministration", &contents, ketamine).await?;
    for ((key, _), of_resource) in unresolved.iter().zip(derived) {
        facts.insert(key.clone(), of_resource);
    }
    Ok(())
}

/// Refreshes the planner's statistics after a large load, so the first searches get the
/// plans the data calls for instead of waiting for autovacuum.
pub async fn analyze(pool: &Pool) -> ApiResult<()> {
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    conn.transaction(async |conn: &mut AsyncPgConnection| -> ApiResult<()> {
        diesel::sql_query("SET LOCAL statement_timeout = 0")
            .execute(conn)
            .await?;
        diesel::sql_query("ANALYZE").execute(conn).await?;
        Ok(())
    })
    .await
}
