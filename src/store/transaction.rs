//! A database transaction that spans several interactions: the single write path and
//! conditional matches on one connection, committed or rolled back together with the
//! AuditEvent of the request that wrote. Every write of the service runs in one (a
//! transaction Bundle runs all its entries in one).

use diesel_async::{AnsiTransactionManager, TransactionManager};

use super::audit;
use super::resources::{self, Current, Matched, NextContent, WriteContext, WriteMethod, Written};
use super::search::SearchQuery;
use super::{Connection, Pool, connection};
use crate::audit::in_flight::{self, WrittenSet};
use crate::error::{ApiError, ApiResult};
use crate::fhir::{ResourceId, ResourceType};

/// An open transaction. End it with `finish` (commit on `Ok`, roll back on `Err`); one
/// dropped unfinished is rolled back by PostgreSQL, as the pool discards connections
/// left inside a transaction.
pub struct Tx<'a> {
    conn: Connection,
    context: &'a WriteContext,
    /// Subscription events recorded so far: the delivery workers are woken after commit.
    events: usize,
    /// What was written so far, for the AuditEvent committed with it.
    written: WrittenSet,
}

impl<'a> Tx<'a> {
    pub async fn begin(pool: &Pool, context: &'a WriteContext) -> ApiResult<Tx<'a>> {
        let mut conn = connection(pool).await?;
        AnsiTransactionManager::begin_transaction(&mut *conn).await?;
        Ok(Tx {
            conn,
            context,
            events: 0,
            written: WrittenSet::default(),
        })
    }

    /// Commits if `result` is `Ok` (a failed commit becomes the error), else rolls back.
    /// The AuditEvent of the request that wrote commits with the writes: if it cannot be
    /// recorded, nothing is.
    pub async fn finish<R>(mut self, result: ApiResult<R>) -> ApiResult<R> {
        let audit = in_flight::record_for_commit(&self.written);
        let audited = audit.is_some();
        let result = match (result, audit) {
            (Ok(value), Some(record)) => match audit::append_on(&mut self.conn, &[&record]).await {
                Ok(()) => Ok(value),
                Err(error) => {
                    tracing::error!(%error, "the audit of a write cannot be recorded; the write is rolled back");
                    Err(ApiError::Unavailable(
                        "The audit trail cannot be written, so nothing was written; retry shortly"
                            .into(),
                    ))
                }
            },
            (result, _) => result,
        };
        match result {
            Ok(value) => {
                AnsiTransactionManager::commit_transaction(&mut *self.conn).await?;
                if audited {
                    in_flight::mark_recorded();
                }
                if self.events > 0 {
                    self.context.webhooks.wake_workers();
                }
                Ok(value)
            }
            Err(error) => {
                // The rollback's own failure is not the client's news: the error is.
                if let Err(rollback) =
                    AnsiTransactionManager::rollback_transaction(&mut *self.conn).await
                {
                    tracing::warn!(error = %rollback, "rollback failed; the connection is discarded");
                }
                Err(error)
            }
        }
    }

    /// The single write path (see `resources::write_version`) inside this transaction.
    pub async fn write<F>(
        &mut self,
        resource_type: &ResourceType,
        id: &ResourceId,
        method: WriteMethod,
        if_match: Option<i32>,
        decide: F,
    ) -> ApiResult<Option<Written>>
    where
        F: FnOnce(Option<&Current>) -> ApiResult<NextContent> + Send,
    {
        let written = resources::write_in(
            &mut self.conn,
            resource_type,
            id,
            method,
            if_match,
            self.context,
            decide,
        )
        .await?;
        if let Some(written) = &written {
            self.events += written.events;
            self.written.add(
                format!("{resource_type}/{id}"),
                written.patients.clone(),
                written.created,
            );
        }
        Ok(written)
    }

    /// What conditional criteria match, under a lock on `lock_key` held to the end of the
    /// transaction, so two requests with the same criteria cannot both act on "nothing".
    pub async fn match_criteria(
        &mut self,
        resource_type: &ResourceType,
        criteria: &SearchQuery,
        lock_key: &str,
    ) -> ApiResult<Matched> {
        resources::lock(&mut self.conn, &format!("conditional {lock_key}")).await?;
        resources::matching(&mut self.conn, resource_type, criteria).await
    }
}
