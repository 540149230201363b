//! Resource versions: read, vread, and the single write path (`write_version`) that every
//! create, update, patch and delete goes through, in one transaction.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::index;
use super::schema::{resource_versions, resources};
use super::{Pool, connection};
use crate::error::{ApiError, ApiResult};
use crate::fhir::resource::stamp_meta;
use crate::fhir::search_index::{self, IndexContext, IndexEntries};
use crate::fhir::{ResourceId, ResourceType};

/// One version of a resource as stored; `content` is `None` for a deletion.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resource_versions)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version_id: i32,
    pub last_updated: DateTime<Utc>,
    pub deleted: bool,
    pub method: String,
    pub content: Option<Value>,
}

/// The current state of a resource.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resources)]
pub struct Current {
    pub created_seq: i64,
    pub version_id: i32,
    pub last_updated: DateTime<Utc>,
    pub deleted: bool,
    pub content: Option<Value>,
}

/// The interaction that produces a version; recorded in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    Create,
    Update,
    Patch,
    Delete,
}

impl WriteMethod {
    fn http_method(self) -> &'static str {
        match self {
            WriteMethod::Create => "POST",
            WriteMethod::Update => "PUT",
            WriteMethod::Patch => "PATCH",
            WriteMethod::Delete => "DELETE",
        }
    }
}

/// The outcome of a write: the stored version and whether it created the resource.
#[derive(Debug, Clone)]
pub struct Written {
    pub version: Version,
    pub created: bool,
}

/// The current version of a resource (live or deleted), if it ever existed.
pub async fn read_current(
    pool: &Pool,
    resource_type: &ResourceType,
    id: &ResourceId,
) -> ApiResult<Option<Current>> {
    let mut conn = connection(pool).await?;
    Ok(resources::table
        .find((resource_type.as_str(), id.as_str()))
        .select(Current::as_select())
        .first(&mut conn)
        .await
        .optional()?)
}

/// The current state of a resource with its content as JSON text, rendered by PostgreSQL,
/// so a read can serve it without parsing and re-serialising.
#[derive(Debug, Clone, Queryable)]
pub struct CurrentText {
    pub version_id: i32,
    pub last_updated: DateTime<Utc>,
    pub content: Option<String>,
}

pub async fn read_current_text(
    pool: &Pool,
    resource_type: &ResourceType,
    id: &ResourceId,
) -> ApiResult<Option<CurrentText>> {
    let mut conn = connection(pool).await?;
    Ok(resources::table
        .find((resource_type.as_str(), id.as_str()))
        .select((
            resources::version_id,
            resources::last_updated,
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(
                "content::text",
            ),
        ))
        .first(&mut conn)
        .await
        .optional()?)
}

/// One specific version of a resource.
pub async fn read_version(
    pool: &Pool,
    resource_type: &ResourceType,
    id: &ResourceId,
    version_id: i32,
) -> ApiResult<Option<Version>> {
    let mut conn = connection(pool).await?;
    Ok(resource_versions::table
        .filter(resource_versions::resource_type.eq(resource_type.as_str()))
        .filter(resource_versions::id.eq(id.as_str()))
        .filter(resource_versions::version_id.eq(version_id))
        .select(Version::as_select())
        .first(&mut conn)
        .await
        .optional()?)
}

/// What a write should produce, decided under the resource's lock from its current state.
pub enum NextContent {
    /// Store this content as the next version.
    Write(Value),
    /// Store a deletion marker as the next version.
    Delete,
    /// Nothing to do (e.g. deleting what is already deleted).
    Nothing,
}

/// The single write path. Under a per-resource transaction lock it reads the current state,
/// checks `If-Match`, lets `decide` compute the next content from that state, stamps
/// `id`/`meta.versionId`/`meta.lastUpdated`, writes the version, the current row and the
/// search index, and commits. Concurrent writers to one resource are serialised, so version
/// numbers are dense and none is lost.
pub async fn write_version<F>(
    pool: &Pool,
    resource_type: &ResourceType,
    id: &ResourceId,
    method: WriteMethod,
    if_match: Option<i32>,
    context: &IndexContext,
    decide: F,
) -> ApiResult<Option<Written>>
where
    F: FnOnce(Option<&Current>) -> ApiResult<NextContent> + Send,
{
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    let resource_type = resource_type.clone();
    let id = id.clone();
    conn.transaction(
        async move |conn: &mut AsyncPgConnection| -> ApiResult<Option<Written>> {
            lock_resource(conn, &resource_type, &id).await?;
            let current: Option<Current> = resources::table
                .find((resource_type.as_str(), id.as_str()))
                .select(Current::as_select())
                .first(conn)
                .await
                .optional()?;
            check_if_match(if_match, current.as_ref())?;
            let next_version = current.as_ref().map_or(1, |c| c.version_id + 1);
            let created = current.as_ref().is_none_or(|c| c.deleted);
            let last_updated = now();
            let content = match decide(current.as_ref())? {
                NextContent::Nothing => return Ok(None),
                NextContent::Delete => None,
                NextContent::Write(mut content) => {
                    stamp_meta(&mut content, id.as_str(), next_version, last_updated);
                    Some(content)
                }
            };
            let version = Version {
                resource_type: resource_type.as_str().to_string(),
                id: id.as_str().to_string(),
                version_id: next_version,
                last_updated,
                deleted: content.is_none(),
                method: method.http_method().to_string(),
                content,
            };
            store_version(conn, &version, current.as_ref(), context).await?;
            Ok(Some(Written { version, created }))
        },
    )
    .await
}

/// Server time at the precision PostgreSQL keeps, so JSON and columns agree exactly.
fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or_else(|_| Utc::now())
}

async fn lock_resource(
    conn: &mut AsyncPgConnection,
    resource_type: &ResourceType,
    id: &ResourceId,
) -> ApiResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind::<diesel::sql_types::Text, _>(format!("{}/{}", resource_type.as_str(), id.as_str()))
        .execute(conn)
        .await?;
    Ok(())
}

fn check_if_match(if_match: Option<i32>, current: Option<&Current>) -> ApiResult<()> {
    let Some(expected) = if_match else {
        return Ok(());
    };
    match current {
        Some(current) if current.version_id == expected => Ok(()),
        Some(current) => Err(ApiError::PreconditionFailed(format!(
            "If-Match names version {expected}, but the current version is {}",
            current.version_id
        ))),
        None => Err(ApiError::PreconditionFailed(format!(
            "If-Match names version {expected}, but the resource does not exist"
        ))),
    }
}

async fn store_version(
    conn: &mut AsyncPgConnection,
    version: &Version,
    current: Option<&Current>,
    context: &IndexContext,
) -> ApiResult<()> {
    diesel::insert_into(resource_versions::table)
        .values((
            resource_versions::resource_type.eq(&version.resource_type),
            resource_versions::id.eq(&version.id),
            resource_versions::version_id.eq(version.version_id),
            resource_versions::last_updated.eq(version.last_updated),
            resource_versions::deleted.eq(version.deleted),
            resource_versions::method.eq(&version.method),
            resource_versions::content.eq(&version.content),
        ))
        .execute(conn)
        .await?;
    let key = (version.resource_type.as_str(), version.id.as_str());
    let seq: i64 = match current {
        Some(current) => {
            diesel::update(resources::table.find(key))
                .set((
                    resources::version_id.eq(version.version_id),
                    resources::last_updated.eq(version.last_updated),
                    resources::deleted.eq(version.deleted),
                    resources::content.eq(&version.content),
                ))
                .execute(conn)
                .await?;
            current.created_seq
        }
        None => {
            diesel::insert_into(resources::table)
                .values((
                    resources::resource_type.eq(&version.resource_type),
                    resources::id.eq(&version.id),
                    resources::version_id.eq(version.version_id),
                    resources::last_updated.eq(version.last_updated),
                    resources::deleted.eq(version.deleted),
                    resources::content.eq(&version.content),
                ))
                .returning(resources::created_seq)
                .get_result(conn)
                .await?
        }
    };
    let entries = match &version.content {
        Some(content) => search_index::extract(&version.resource_type, content, context),
        None => IndexEntries::default(),
    };
    index::replace(
        conn,
        seq,
        &version.resource_type,
        current.is_some(),
        &entries,
    )
    .await
}
