//! The bulk load path: many new resources written in one transaction with a few statements
//! (rows passed as arrays and unnested), storing exactly what `resources::write_version`
//! stores for a client-chosen id: version 1 by PUT, its current row and its index rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::resources::now;
use super::statement::{Bound, Statement};
use super::{Pool, connection, index};
use crate::error::ApiResult;
use crate::fhir::resource::stamp_meta;
use crate::fhir::search_index::{self, IndexContext, IndexEntries};
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
    entries: HashMap<(String, String), IndexEntries>,
}

impl PreparedBatch {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Stamps each resource as version 1, serialises it and extracts its index entries.
pub fn prepare(batch: Vec<NewResource>, context: &IndexContext) -> PreparedBatch {
    let last_updated = now();
    let mut prepared = PreparedBatch {
        last_updated,
        types: Vec::with_capacity(batch.len()),
        ids: Vec::with_capacity(batch.len()),
        contents: Vec::with_capacity(batch.len()),
        entries: HashMap::with_capacity(batch.len()),
    };
    for mut resource in batch {
        stamp_meta(&mut resource.content, resource.id.as_str(), 1, last_updated);
        let extracted =
            search_index::extract(resource.resource_type.as_str(), &resource.content, context);
        let key = (resource.resource_type.to_string(), resource.id.to_string());
        prepared.contents.push(resource.content.to_string());
        prepared.types.push(key.0.clone());
        prepared.ids.push(key.1.clone());
        prepared.entries.insert(key, extracted);
    }
    prepared
}

/// Writes a prepared batch in one transaction. Ids that already exist (live or deleted) are
/// left as they are; returns how many resources were created.
pub async fn write(pool: &Pool, batch: PreparedBatch) -> ApiResult<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let PreparedBatch {
        last_updated,
        types,
        ids,
        contents,
        entries,
    } = batch;
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    conn.transaction(async |conn: &mut AsyncPgConnection| -> ApiResult<usize> {
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
        let rows: Vec<(i64, &str, &IndexEntries)> = inserted
            .iter()
            .filter_map(|row| {
                let entries = entries.get(&(row.resource_type.clone(), row.id.clone()))?;
                Some((row.created_seq, row.resource_type.as_str(), entries))
            })
            .collect();
        index::insert_rows(conn, &rows).await?;
        Ok(inserted.len())
    })
    .await
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
