//! Writing the search index: replacing a resource's rows in the transaction that writes its
//! version, and rebuilding every row (and the outcome facts) when the extraction rules
//! change (`reindex`).

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use chrono::{DateTime, Utc};

use super::facts as store_facts;
use super::resources::WriteContext;
use super::schema::{resources, search_index_state};
use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::clinic::facts::{self, OutcomeFact};
use crate::error::ApiResult;
use crate::fhir::definitions::registry;
use crate::fhir::search_index::{self, IndexEntries};

/// Replaces the index rows of one resource (`entries` empty for a deletion).
pub async fn replace(
    conn: &mut AsyncPgConnection,
    resource_seq: i64,
    resource_type: &str,
    existed: bool,
    entries: &IndexEntries,
) -> ApiResult<()> {
    if existed {
        delete_rows(conn, resource_type, &[resource_seq]).await?;
    }
    insert_rows(conn, &[(resource_seq, resource_type, entries)]).await
}

/// Deletes every index row of these resources of one type, in one statement.
pub async fn delete_rows(
    conn: &mut AsyncPgConnection,
    resource_type: &str,
    seqs: &[i64],
) -> ApiResult<()> {
    Statement::new(
        "WITH t AS (DELETE FROM search_token WHERE resource_type = $1 AND resource_seq = ANY($2)), \
              s AS (DELETE FROM search_string WHERE resource_type = $1 AND resource_seq = ANY($2)), \
              d AS (DELETE FROM search_date WHERE resource_type = $1 AND resource_seq = ANY($2)), \
              q AS (DELETE FROM search_quantity WHERE resource_type = $1 AND resource_seq = ANY($2)), \
              r AS (DELETE FROM search_reference WHERE resource_type = $1 AND resource_seq = ANY($2)) \
         DELETE FROM search_uri WHERE resource_type = $1 AND resource_seq = ANY($2)",
        vec![
            Bound::Text(resource_type.to_string()),
            Bound::BigInts(seqs.to_vec()),
        ],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The columns every index table starts with: which resource, and which parameter.
#[derive(Default)]
struct Owners {
    seqs: Vec<i64>,
    types: Vec<String>,
    params: Vec<String>,
}

impl Owners {
    fn push(&mut self, seq: i64, resource_type: &str, param: &str) {
        self.seqs.push(seq);
        self.types.push(resource_type.to_string());
        self.params.push(param.to_string());
    }
}

/// The index rows of many resources as one array per table column, the shape `unnest`
/// turns back into rows.
#[derive(Default)]
struct Columns {
    token: Owners,
    token_system: Vec<Option<String>>,
    token_code: Vec<Option<String>>,
    token_text: Vec<Option<String>>,
    string: Owners,
    string_normalized: Vec<String>,
    string_exact: Vec<String>,
    date: Owners,
    date_start: Vec<DateTime<Utc>>,
    date_finish: Vec<DateTime<Utc>>,
    quantity: Owners,
    quantity_value: Vec<f64>,
    quantity_system: Vec<Option<String>>,
    quantity_code: Vec<Option<String>>,
    quantity_canonical_value: Vec<Option<f64>>,
    quantity_canonical_code: Vec<Option<String>>,
    reference: Owners,
    reference_target_type: Vec<Option<String>>,
    reference_target_id: Vec<Option<String>>,
    reference_url: Vec<Option<String>>,
    uri: Owners,
    uri_value: Vec<String>,
}

impl Columns {
    fn add(&mut self, seq: i64, resource_type: &str, entries: &IndexEntries) {
        for e in &entries.tokens {
            self.token.push(seq, resource_type, &e.param);
            self.token_system.push(e.system.clone());
            self.token_code.push(e.code.clone());
            self.token_text.push(e.text.clone());
        }
        for e in &entries.strings {
            self.string.push(seq, resource_type, &e.param);
            self.string_normalized.push(e.normalized.clone());
            self.string_exact.push(e.exact.clone());
        }
        for e in &entries.dates {
            self.date.push(seq, resource_type, &e.param);
            self.date_start.push(e.start);
            self.date_finish.push(e.finish);
        }
        for e in &entries.quantities {
            self.quantity.push(seq, resource_type, &e.param);
            self.quantity_value.push(e.value);
            self.quantity_system.push(e.system.clone());
            self.quantity_code.push(e.code.clone());
            self.quantity_canonical_value.push(e.canonical_value);
            self.quantity_canonical_code.push(e.canonical_code.clone());
        }
        for e in &entries.references {
            self.reference.push(seq, resource_type, &e.param);
            self.reference_target_type.push(e.target_type.clone());
            self.reference_target_id.push(e.target_id.clone());
            self.reference_url.push(e.url.clone());
        }
        for e in &entries.uris {
            self.uri.push(seq, resource_type, &e.param);
            self.uri_value.push(e.uri.clone());
        }
    }
}

/// Inserts the index rows of `(resource_seq, resource_type, entries)` for many resources in
/// one statement (one round trip, whatever the number of rows and tables).
pub async fn insert_rows(
    conn: &mut AsyncPgConnection,
    resources: &[(i64, &str, &IndexEntries)],
) -> ApiResult<()> {
    let mut c = Columns::default();
    for (seq, resource_type, entries) in resources {
        c.add(*seq, resource_type, entries);
    }
    let statement = Statement::new(
        "WITH t AS (INSERT INTO search_token (resource_seq, resource_type, param, system, code, text) \
                    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])), \
              s AS (INSERT INTO search_string (resource_seq, resource_type, param, normalized, exact) \
                    SELECT * FROM unnest($7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[])), \
              d AS (INSERT INTO search_date (resource_seq, resource_type, param, start, finish) \
                    SELECT * FROM unnest($12::bigint[], $13::text[], $14::text[], $15::timestamptz[], $16::timestamptz[])), \
              q AS (INSERT INTO search_quantity (resource_seq, resource_type, param, value, system, code, canonical_value, canonical_code) \
                    SELECT * FROM unnest($17::bigint[], $18::text[], $19::text[], $20::float8[], $21::text[], $22::text[], $23::float8[], $24::text[])), \
              r AS (INSERT INTO search_reference (resource_seq, resource_type, param, target_type, target_id, url) \
                    SELECT * FROM unnest($25::bigint[], $26::text[], $27::text[], $28::text[], $29::text[], $30::text[])) \
         INSERT INTO search_uri (resource_seq, resource_type, param, uri) \
         SELECT * FROM unnest($31::bigint[], $32::text[], $33::text[], $34::text[])",
        vec![
            Bound::BigInts(c.token.seqs),
            Bound::Texts(c.token.types),
            Bound::Texts(c.token.params),
            Bound::OptionalTexts(c.token_system),
            Bound::OptionalTexts(c.token_code),
            Bound::OptionalTexts(c.token_text),
            Bound::BigInts(c.string.seqs),
            Bound::Texts(c.string.types),
            Bound::Texts(c.string.params),
            Bound::Texts(c.string_normalized),
            Bound::Texts(c.string_exact),
            Bound::BigInts(c.date.seqs),
            Bound::Texts(c.date.types),
            Bound::Texts(c.date.params),
            Bound::Instants(c.date_start),
            Bound::Instants(c.date_finish),
            Bound::BigInts(c.quantity.seqs),
            Bound::Texts(c.quantity.types),
            Bound::Texts(c.quantity.params),
            Bound::Doubles(c.quantity_value),
            Bound::OptionalTexts(c.quantity_system),
            Bound::OptionalTexts(c.quantity_code),
            Bound::OptionalDoubles(c.quantity_canonical_value),
            Bound::OptionalTexts(c.quantity_canonical_code),
            Bound::BigInts(c.reference.seqs),
            Bound::Texts(c.reference.types),
            Bound::Texts(c.reference.params),
            Bound::OptionalTexts(c.reference_target_type),
            Bound::OptionalTexts(c.reference_target_id),
            Bound::OptionalTexts(c.reference_url),
            Bound::BigInts(c.uri.seqs),
            Bound::Texts(c.uri.types),
            Bound::Texts(c.uri.params),
            Bound::Texts(c.uri_value),
        ],
    );
    statement.execute(conn).await?;
    Ok(())
}

/// The fingerprint of the rules that build the index rows and the outcome facts.
fn fingerprint(context: &WriteContext) -> String {
    format!(
        "{}/{}",
        search_index::fingerprint(&context.index),
        facts::fingerprint_part(&context.clinic.ketamine)
    )
}

/// The fingerprint of the rules the stored index was built with, if any.
async fn stored_fingerprint(conn: &mut AsyncPgConnection) -> ApiResult<Option<String>> {
    Ok(search_index_state::table
        .select(search_index_state::fingerprint)
        .first(conn)
        .await
        .optional()?)
}

/// Rebuilds the index when it was built by other rules (or never); returns the number of
/// resources reindexed (0 when it was current).
pub async fn ensure_current(pool: &Pool, context: &WriteContext) -> ApiResult<usize> {
    let mut conn = connection(pool).await?;
    if stored_fingerprint(&mut conn).await?.as_deref() == Some(fingerprint(context).as_str()) {
        return Ok(0);
    }
    drop(conn);
    reindex(pool, context).await
}

struct ReindexedBatch {
    count: usize,
    last: Option<i64>,
}

/// Reindexes the next resources of one type after `after` in creation order. The rows are
/// read `FOR SHARE`, so a concurrent write of one of them waits until its new index rows
/// cannot be overwritten by ones built from the version before it.
async fn reindex_batch(
    conn: &mut AsyncPgConnection,
    resource_type: &str,
    after: i64,
    context: &WriteContext,
) -> ApiResult<ReindexedBatch> {
    const BATCH: i64 = 1000;
    let batch: Vec<(i64, Option<Value>)> = resources::table
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::created_seq.gt(after))
        .order(resources::created_seq)
        .limit(BATCH)
        .select((resources::created_seq, resources::content))
        .for_share()
        .load(conn)
        .await?;
    let live: Vec<(i64, &Value)> = batch
        .iter()
        .filter_map(|(seq, content)| Some((*seq, content.as_ref()?)))
        .collect();
    let entries: Vec<IndexEntries> = live
        .iter()
        .map(|(_, content)| search_index::extract(resource_type, content, &context.index))
        .collect();
    let contents: Vec<&Value> = live.iter().map(|(_, content)| *content).collect();
    let outcome_facts =
        store_facts::facts_of(conn, resource_type, &contents, &context.clinic.ketamine).await?;
    let rows: Vec<(i64, &str, &IndexEntries)> = live
        .iter()
        .zip(&entries)
        .map(|((seq, _), entries)| (*seq, resource_type, entries))
        .collect();
    let fact_rows: Vec<(i64, &[OutcomeFact])> = live
        .iter()
        .zip(&outcome_facts)
        .map(|((seq, _), facts)| (*seq, facts.as_slice()))
        .collect();
    let seqs: Vec<i64> = batch.iter().map(|row| row.0).collect();
    delete_rows(conn, resource_type, &seqs).await?;
    insert_rows(conn, &rows).await?;
    store_facts::write_rows(conn, &seqs, &fact_rows).await?;
    Ok(ReindexedBatch {
        count: batch.len(),
        last: seqs.last().copied(),
    })
}

/// Rebuilds every index row from the current versions, type by type in batches of one
/// transaction each, then records the rules' fingerprint.
pub async fn reindex(pool: &Pool, context: &WriteContext) -> ApiResult<usize> {
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    let mut total = 0usize;
    for resource_type in registry().resource_types() {
        let mut after = 0i64;
        loop {
            let batch = conn
                .transaction(async |conn: &mut AsyncPgConnection| {
                    reindex_batch(conn, resource_type, after, context).await
                })
                .await?;
            let Some(last) = batch.last else {
                break;
            };
            total += batch.count;
            after = last;
        }
    }
    let fingerprint = fingerprint(context);
    diesel::insert_into(search_index_state::table)
        .values((
            search_index_state::singleton.eq(true),
            search_index_state::fingerprint.eq(&fingerprint),
        ))
        .on_conflict(search_index_state::singleton)
        .do_update()
        .set(search_index_state::fingerprint.eq(&fingerprint))
        .execute(conn)
        .await?;
    Ok(total)
}
