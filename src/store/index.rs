//! Writing the search index: replacing a resource's rows in the transaction that writes its
//! version, and rebuilding every row when the extraction rules change (`reindex`).

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::schema::{
    resources, search_date, search_index_state, search_quantity, search_reference, search_string,
    search_token, search_uri,
};
use super::{Pool, connection};
use crate::error::ApiResult;
use crate::fhir::search_index::{self, IndexContext, IndexEntries};

/// Replaces the index rows of one resource (`entries` empty for a deletion).
pub async fn replace(
    conn: &mut AsyncPgConnection,
    resource_seq: i64,
    resource_type: &str,
    existed: bool,
    entries: &IndexEntries,
) -> ApiResult<()> {
    if existed {
        delete_rows(conn, resource_seq).await?;
    }
    insert_rows(conn, resource_seq, resource_type, entries).await
}

async fn delete_rows(conn: &mut AsyncPgConnection, seq: i64) -> ApiResult<()> {
    diesel::delete(search_token::table.filter(search_token::resource_seq.eq(seq)))
        .execute(conn)
        .await?;
    diesel::delete(search_string::table.filter(search_string::resource_seq.eq(seq)))
        .execute(conn)
        .await?;
    diesel::delete(search_date::table.filter(search_date::resource_seq.eq(seq)))
        .execute(conn)
        .await?;
    diesel::delete(search_quantity::table.filter(search_quantity::resource_seq.eq(seq)))
        .execute(conn)
        .await?;
    diesel::delete(search_reference::table.filter(search_reference::resource_seq.eq(seq)))
        .execute(conn)
        .await?;
    diesel::delete(search_uri::table.filter(search_uri::resource_seq.eq(seq)))
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert_rows(
    conn: &mut AsyncPgConnection,
    seq: i64,
    resource_type: &str,
    entries: &IndexEntries,
) -> ApiResult<()> {
    if !entries.tokens.is_empty() {
        let rows: Vec<_> = entries
            .tokens
            .iter()
            .map(|t| {
                (
                    search_token::resource_seq.eq(seq),
                    search_token::resource_type.eq(resource_type),
                    search_token::param.eq(&t.param),
                    search_token::system.eq(&t.system),
                    search_token::code.eq(&t.code),
                    search_token::text.eq(&t.text),
                )
            })
            .collect();
        diesel::insert_into(search_token::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    if !entries.strings.is_empty() {
        let rows: Vec<_> = entries
            .strings
            .iter()
            .map(|s| {
                (
                    search_string::resource_seq.eq(seq),
                    search_string::resource_type.eq(resource_type),
                    search_string::param.eq(&s.param),
                    search_string::normalized.eq(&s.normalized),
                    search_string::exact.eq(&s.exact),
                )
            })
            .collect();
        diesel::insert_into(search_string::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    if !entries.dates.is_empty() {
        let rows: Vec<_> = entries
            .dates
            .iter()
            .map(|d| {
                (
                    search_date::resource_seq.eq(seq),
                    search_date::resource_type.eq(resource_type),
                    search_date::param.eq(&d.param),
                    search_date::start.eq(d.start),
                    search_date::finish.eq(d.finish),
                )
            })
            .collect();
        diesel::insert_into(search_date::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    if !entries.quantities.is_empty() {
        let rows: Vec<_> = entries
            .quantities
            .iter()
            .map(|q| {
                (
                    search_quantity::resource_seq.eq(seq),
                    search_quantity::resource_type.eq(resource_type),
                    search_quantity::param.eq(&q.param),
                    search_quantity::value.eq(q.value),
                    search_quantity::system.eq(&q.system),
                    search_quantity::code.eq(&q.code),
                    search_quantity::canonical_value.eq(q.canonical_value),
                    search_quantity::canonical_code.eq(&q.canonical_code),
                )
            })
            .collect();
        diesel::insert_into(search_quantity::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    if !entries.references.is_empty() {
        let rows: Vec<_> = entries
            .references
            .iter()
            .map(|r| {
                (
                    search_reference::resource_seq.eq(seq),
                    search_reference::resource_type.eq(resource_type),
                    search_reference::param.eq(&r.param),
                    search_reference::target_type.eq(&r.target_type),
                    search_reference::target_id.eq(&r.target_id),
                    search_reference::url.eq(&r.url),
                )
            })
            .collect();
        diesel::insert_into(search_reference::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    if !entries.uris.is_empty() {
        let rows: Vec<_> = entries
            .uris
            .iter()
            .map(|u| {
                (
                    search_uri::resource_seq.eq(seq),
                    search_uri::resource_type.eq(resource_type),
                    search_uri::param.eq(&u.param),
                    search_uri::uri.eq(&u.uri),
                )
            })
            .collect();
        diesel::insert_into(search_uri::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(())
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
pub async fn ensure_current(pool: &Pool, context: &IndexContext) -> ApiResult<usize> {
    let mut conn = connection(pool).await?;
    if stored_fingerprint(&mut conn).await?.as_deref()
        == Some(search_index::fingerprint(context).as_str())
    {
        return Ok(0);
    }
    drop(conn);
    reindex(pool, context).await
}

/// Rebuilds every index row from the current versions, in batches of one transaction each,
/// then records the rules' fingerprint.
pub async fn reindex(pool: &Pool, context: &IndexContext) -> ApiResult<usize> {
    const BATCH: i64 = 500;
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    let mut after = 0i64;
    let mut total = 0usize;
    loop {
        let batch: Vec<(i64, String, Option<Value>)> = resources::table
            .filter(resources::created_seq.gt(after))
            .order(resources::created_seq)
            .limit(BATCH)
            .select((
                resources::created_seq,
                resources::resource_type,
                resources::content,
            ))
            .load(conn)
            .await?;
        let Some(last) = batch.last().map(|row| row.0) else {
            break;
        };
        conn.transaction(async |conn: &mut AsyncPgConnection| -> ApiResult<()> {
            for (seq, resource_type, content) in &batch {
                let entries = content
                    .as_ref()
                    .map(|c| search_index::extract(resource_type, c, context))
                    .unwrap_or_default();
                replace(conn, *seq, resource_type, true, &entries).await?;
            }
            Ok(())
        })
        .await?;
        total += batch.len();
        after = last;
    }
    let fingerprint = search_index::fingerprint(context);
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
