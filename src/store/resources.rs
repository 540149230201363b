//! Resource versions: read, vread, and the single write path (`write_version`) that every
//! create, update, patch and delete goes through, in one transaction.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::clinic::{self, OverrideRecord};
use super::schema::{resource_versions, resources};
use super::search::{self, SearchQuery, Total};
use super::statement::{Bound, Statement};
use super::transaction::Tx;
use super::{Pool, connection};
use super::{facts, index, subscriptions};
use crate::auth::access::patients_of;
use crate::clinic::config::ClinicConfig;
use crate::clinic::facts::has_facts;
use crate::clinic::safety::Decision;
use crate::error::{ApiError, ApiResult};
use crate::fhir::outcome::Issue;
use crate::fhir::resource::{id_of, stamp_meta};
use crate::fhir::search_index::{self, IndexContext, IndexEntries};
use crate::fhir::{ResourceId, ResourceType};
use crate::subscriptions::WebhookContext;

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

/// What every write needs besides the resource: how index values are extracted, and the
/// clinic's rules that some writes must pass (infusion safety).
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub index: IndexContext,
    pub clinic: Arc<ClinicConfig>,
    /// Subscriptions: the egress policy endpoints must pass, and the workers to wake.
    pub webhooks: Arc<WebhookContext>,
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
    /// Warnings about the write to report with it (safety notices, overrides).
    pub notices: Vec<Issue>,
    /// Subscription events recorded with the write.
    pub events: usize,
    /// The patients the resource is about (before its deletion, for a delete): for the
    /// write's AuditEvent.
    pub patients: Vec<String>,
}

/// The current version of a resource (live or deleted), if it ever existed.
pub async fn read_current(
    pool: &Pool,
    resource_type: &ResourceType,
    id: &ResourceId,
) -> ApiResult<Option<Current>> {
    current_on(&mut *connection(pool).await?, resource_type, id).await
}

pub(super) async fn current_on(
    conn: &mut AsyncPgConnection,
    resource_type: &ResourceType,
    id: &ResourceId,
) -> ApiResult<Option<Current>> {
    Ok(resources::table
        .find((resource_type.as_str(), id.as_str()))
        .select(Current::as_select())
        .first(conn)
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
            // A typed cast, not an SQL literal: diesel keeps the statement prepared on
            // the connection only when every part of it is known at compile time.
            resources::content.cast::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(),
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
    context: &WriteContext,
    decide: F,
) -> ApiResult<Option<Written>>
where
    F: FnOnce(Option<&Current>) -> ApiResult<NextContent> + Send,
{
    let mut tx = Tx::begin(pool, context).await?;
    let written = tx.write(resource_type, id, method, if_match, decide).await;
    tx.finish(written).await
}

/// `write_version`'s steps on a connection whose transaction the caller holds.
pub(super) async fn write_in<F>(
    conn: &mut AsyncPgConnection,
    resource_type: &ResourceType,
    id: &ResourceId,
    method: WriteMethod,
    if_match: Option<i32>,
    context: &WriteContext,
    decide: F,
) -> ApiResult<Option<Written>>
where
    F: FnOnce(Option<&Current>) -> ApiResult<NextContent> + Send,
{
    lock(conn, &format!("{resource_type}/{id}")).await?;
    let current = current_on(conn, resource_type, id).await?;
    check_if_match(if_match, current.as_ref())?;
    let next_version = current.as_ref().map_or(1, |c| c.version_id + 1);
    let created = current.as_ref().is_none_or(|c| c.deleted);
    let last_updated = now();
    let previous = current.as_ref().and_then(|c| c.content.as_ref());
    let mut checked = None;
    let mut subscription_plan = None;
    let content = match decide(current.as_ref())? {
        NextContent::Nothing => return Ok(None),
        NextContent::Delete => None,
        NextContent::Write(mut content) => {
            stamp_meta(&mut content, id.as_str(), next_version, last_updated);
            if resource_type.as_str() == "MedicationAdministration" {
                checked =
                    clinic::enforce_infusion_rules(conn, &context.clinic, &mut content, previous)
                        .await?;
            }
            if resource_type.as_str() == "Subscription" {
                let plan =
                    subscriptions::prepare_subscription(conn, id.as_str(), &mut content, context)
                        .await?;
                subscription_plan = Some(plan);
            }
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
    let patients = version
        .content
        .as_ref()
        .or(previous)
        .map(|content| patients_of(resource_type.as_str(), content))
        .unwrap_or_default();
    let seq = store_version(conn, &version, current.as_ref(), context).await?;
    if resource_type.as_str() == "Subscription" {
        subscriptions::apply_subscription(conn, id.as_str(), subscription_plan.as_ref()).await?;
    }
    let events = subscriptions::record_events(conn, &version, previous, seq, context).await?;
    let notices = match checked {
        Some((patient, decision)) => audit_overrides(conn, &version, &patient, decision).await?,
        None => Vec::new(),
    };
    Ok(Some(Written {
        version,
        created,
        notices,
        events,
        patients,
    }))
}

/// Records each overridden safety rule of this version, in its transaction; returns the
/// notices to report with the write.
async fn audit_overrides(
    conn: &mut AsyncPgConnection,
    version: &Version,
    patient: &str,
    decision: Decision,
) -> ApiResult<Vec<Issue>> {
    let Some(by) = decision.by.filter(|_| !decision.overridden.is_empty()) else {
        return Ok(decision.notices);
    };
    let records: Vec<OverrideRecord> = decision
        .overridden
        .iter()
        .map(|finding| OverrideRecord {
            resource_type: version.resource_type.clone(),
            resource_id: version.id.clone(),
            version_id: version.version_id,
            patient_id: patient.to_string(),
            rule: finding.rule.to_string(),
            finding: finding.text.clone(),
            reason: by.reason.clone(),
            practitioner: by.practitioner.clone(),
        })
        .collect();
    clinic::record_overrides(conn, &records).await?;
    let rules: Vec<&str> = decision.overridden.iter().map(|f| f.rule).collect();
    tracing::warn!(
        resource = %format!("{}/{}/_history/{}", version.resource_type, version.id, version.version_id),
        rules = %rules.join(","),
        "infusion safety rules overridden"
    );
    let mut notices = decision.notices;
    notices.extend(decision.overridden.iter().map(|finding| {
        Issue::warning(
            "business-rule",
            format!(
                "Infusion safety rule {} overridden by {}: {}",
                finding.rule, by.practitioner, finding.text
            ),
        )
    }));
    Ok(notices)
}

/// What a conditional interaction's criteria matched: nothing, one live resource, or more.
#[derive(Debug, Clone)]
pub enum Matched {
    Nothing,
    One(Version),
    Several,
}

/// What a conditional interaction does about what its criteria matched.
pub enum ConditionalStep {
    /// Go on through the single write path for this resource.
    Write(ResourceId, WriteMethod),
    /// Write nothing.
    Stop,
}

/// The result of a conditional interaction: what matched and what was written, if anything.
#[derive(Debug)]
pub struct ConditionalOutcome {
    pub matched: Matched,
    pub written: Option<Written>,
}

/// Conditional create, update and delete: in one transaction, under a lock on `lock_key`
/// (the normalised criteria, so two requests with the same criteria cannot both create), it
/// runs `criteria`, lets `choose` decide from the matches whether and what to write, and
/// writes through the same steps as `write_version` (`decide` also sees the matches).
#[allow(clippy::too_many_arguments)]
pub async fn write_conditionally<C, F>(
    pool: &Pool,
    resource_type: &ResourceType,
    criteria: &SearchQuery,
    lock_key: &str,
    if_match: Option<i32>,
    context: &WriteContext,
    choose: C,
    decide: F,
) -> ApiResult<ConditionalOutcome>
where
    C: FnOnce(&Matched) -> ApiResult<ConditionalStep> + Send,
    F: FnOnce(&Matched, Option<&Current>) -> ApiResult<NextContent> + Send,
{
    let mut tx = Tx::begin(pool, context).await?;
    let outcome = conditionally_in(
        &mut tx,
        resource_type,
        criteria,
        lock_key,
        if_match,
        choose,
        decide,
    )
    .await;
    tx.finish(outcome).await
}

async fn conditionally_in<C, F>(
    tx: &mut Tx<'_>,
    resource_type: &ResourceType,
    criteria: &SearchQuery,
    lock_key: &str,
    if_match: Option<i32>,
    choose: C,
    decide: F,
) -> ApiResult<ConditionalOutcome>
where
    C: FnOnce(&Matched) -> ApiResult<ConditionalStep> + Send,
    F: FnOnce(&Matched, Option<&Current>) -> ApiResult<NextContent> + Send,
{
    let matched = tx.match_criteria(resource_type, criteria, lock_key).await?;
    let written = match choose(&matched)? {
        ConditionalStep::Stop => None,
        ConditionalStep::Write(id, method) => {
            let decide = |current: Option<&Current>| decide(&matched, current);
            tx.write(resource_type, &id, method, if_match, decide)
                .await?
        }
    };
    Ok(ConditionalOutcome { matched, written })
}

pub(super) async fn matching(
    conn: &mut AsyncPgConnection,
    resource_type: &ResourceType,
    criteria: &SearchQuery,
) -> ApiResult<Matched> {
    let query = SearchQuery {
        count: 2,
        cursor: None,
        sort: Vec::new(),
        total: Total::None,
        ..criteria.clone()
    };
    let page = search::search_on(conn, &query).await?;
    Ok(match page.rows.as_slice() {
        [] => Matched::Nothing,
        [(_, content)] => {
            let id = id_of(content).unwrap_or_default().to_string();
            let id = ResourceId::parse(&id)?;
            let current = current_on(conn, resource_type, &id)
                .await?
                .ok_or_else(|| ApiError::internal("a matched resource has no current row"))?;
            Matched::One(Version {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                version_id: current.version_id,
                last_updated: current.last_updated,
                deleted: current.deleted,
                method: String::new(),
                content: current.content,
            })
        }
        _ => Matched::Several,
    })
}

/// Server time at the precision PostgreSQL keeps, so JSON and columns agree exactly.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or_else(|_| Utc::now())
}

/// A transaction-scoped advisory lock on `key` (a resource, or conditional criteria).
pub(super) async fn lock(conn: &mut AsyncPgConnection, key: &str) -> ApiResult<()> {
    Statement::new(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        vec![Bound::Text(key.to_string())],
    )
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
    context: &WriteContext,
) -> ApiResult<i64> {
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
    let existed = current.is_some();
    let (entries, outcome_facts) = match &version.content {
        Some(content) => {
            let entries = search_index::extract(&version.resource_type, content, &context.index);
            let ketamine = &context.clinic.ketamine;
            let mut of_content =
                facts::facts_of(conn, &version.resource_type, &[content], ketamine).await?;
            (entries, of_content.pop().unwrap_or_default())
        }
        None => (IndexEntries::default(), Vec::new()),
    };
    index::replace(conn, seq, &version.resource_type, existed, &entries).await?;
    if has_facts(&version.resource_type) && (existed || !outcome_facts.is_empty()) {
        facts::replace(conn, seq, existed, &outcome_facts).await?;
    }
    Ok(seq)
}
