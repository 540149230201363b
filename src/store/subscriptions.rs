//! The SQL of Subscriptions: keeping a subscription's counter and delivery rows in step with
//! its resource, recording events in the transaction of the change (the outbox), claiming
//! due deliveries with `FOR UPDATE SKIP LOCKED`, and reading past events for `$events`.

use std::future::Future;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::resources::{Version, WriteContext};
use super::search::{SearchQuery, Total, search_on};
use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::error::{ApiError, ApiResult};
use crate::fhir::definitions::registry;
use crate::fhir::outcome::Issue;
use crate::fhir::search::{self, Filter, PageLimits, RESULT_PARAMETERS, SearchContext};
use crate::subscriptions::subscription::{Criteria, SubscriptionView, ensure_secret};

/// How a Subscription write changes its delivery rows, decided before the version is stored.
#[derive(Debug, Clone)]
pub struct SubscriptionPlan {
    resource_type: String,
    status: String,
    handshake: bool,
    heartbeat_seconds: Option<i32>,
}

/// Checks a Subscription about to be stored (criteria, channel, endpoint against the egress
/// policy) and sets what the server owns: the status (`requested` until a handshake
/// succeeds) and a webhook secret when none is given. 422 with every problem found.
pub async fn prepare_subscription(
    conn: &mut AsyncPgConnection,
    id: &str,
    content: &mut Value,
    context: &WriteContext,
) -> ApiResult<SubscriptionPlan> {
    ensure_secret(content);
    let view = SubscriptionView::read(content).map_err(ApiError::Unprocessable)?;
    criteria_query(&view.criteria, context)
        .map_err(|issue| ApiError::Unprocessable(vec![issue]))?;
    check_endpoint(&view.endpoint, context).await?;
    let delivered_status = delivery_status(conn, id).await?;
    let requested = matches!(view.status.as_str(), "requested" | "active");
    let handshake = requested && delivered_status.as_deref() != Some("active");
    let status = match (requested, handshake) {
        (true, true) => "requested".to_string(),
        (true, false) => "active".to_string(),
        _ => view.status.clone(),
    };
    content["status"] = Value::String(status.clone());
    Ok(SubscriptionPlan {
        resource_type: view.criteria.resource_type().to_string(),
        status,
        handshake,
        heartbeat_seconds: view
            .heartbeat_seconds
            .map(|s| s.min(i32::MAX as u32) as i32),
    })
}

async fn check_endpoint(endpoint: &str, context: &WriteContext) -> ApiResult<()> {
    let refused = |error: &dyn std::fmt::Display| {
        ApiError::Unprocessable(vec![
            Issue::error("value", error.to_string()).at("Subscription.channel.endpoint"),
        ])
    };
    let policy = &context.webhooks.policy;
    let url = policy.check_url(endpoint).map_err(|e| refused(&e))?;
    policy.check_host(&url).await.map_err(|e| refused(&e))
}

async fn delivery_status(conn: &mut AsyncPgConnection, id: &str) -> ApiResult<Option<String>> {
    #[derive(QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text)]
        status: String,
    }
    let rows: Vec<Status> = Statement::new(
        "SELECT status FROM subscription_delivery WHERE subscription_id = $1",
        vec![Bound::Text(id.to_string())],
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|r| r.status))
}

const UPSERT_SUBSCRIPTION: &str = "\
WITH counters AS ( \
    INSERT INTO subscription_counters (subscription_id, resource_type, recording) \
    VALUES ($1, $2, $3 <> 'off') \
    ON CONFLICT (subscription_id) DO UPDATE \
    SET resource_type = EXCLUDED.resource_type, recording = EXCLUDED.recording) \
INSERT INTO subscription_delivery (subscription_id, status, handshake_pending, heartbeat_seconds) \
VALUES ($1, $3, $4, $5::integer) \
ON CONFLICT (subscription_id) DO UPDATE \
SET status = EXCLUDED.status, heartbeat_seconds = EXCLUDED.heartbeat_seconds, \
    handshake_pending = EXCLUDED.handshake_pending OR (subscription_delivery.handshake_pending AND EXCLUDED.status = 'requested'), \
    attempts = CASE WHEN EXCLUDED.handshake_pending THEN 0 ELSE subscription_delivery.attempts END, \
    next_attempt_at = CASE WHEN EXCLUDED.handshake_pending THEN now() ELSE subscription_delivery.next_attempt_at END";

/// Applies a plan after the Subscription's version is stored (`plan` none: deleted).
/// The counter row is inserted before the delivery row references it, in one statement.
pub async fn apply_subscription(
    conn: &mut AsyncPgConnection,
    id: &str,
    plan: Option<&SubscriptionPlan>,
) -> ApiResult<()> {
    let statement = match plan {
        None => Statement::new(
            "DELETE FROM subscription_counters WHERE subscription_id = $1",
            vec![Bound::Text(id.to_string())],
        ),
        Some(plan) => Statement::new(
            UPSERT_SUBSCRIPTION,
            vec![
                Bound::Text(id.to_string()),
                Bound::Text(plan.resource_type.clone()),
                Bound::Text(plan.status.clone()),
                Bound::Bool(plan.handshake),
                Bound::OptionalBigInt(plan.heartbeat_seconds.map(i64::from)),
            ],
        ),
    };
    statement.execute(conn).await?;
    Ok(())
}

/// The search a resource must match for a subscription, if any (a topic without filters
/// needs none). Criteria that cannot be searched are refused here, when the Subscription is
/// written.
fn criteria_query(
    criteria: &Criteria,
    context: &WriteContext,
) -> Result<Option<SearchQuery>, Issue> {
    let (resource_type, parameters) = match criteria {
        Criteria::Topic { filters, .. } if filters.is_empty() => return Ok(None),
        Criteria::Topic { topic, filters } => (topic.resource_type, filters),
        Criteria::Query {
            resource_type,
            parameters,
        } => (resource_type.as_str(), parameters),
    };
    let refused = |text: String| Issue::error("invalid", text).at("Subscription.criteria");
    if !registry()
        .resource_types()
        .iter()
        .any(|t| t == resource_type)
    {
        return Err(refused(format!(
            "criteria name {resource_type}, which this server does not serve"
        )));
    }
    if let Some((name, _)) = parameters
        .iter()
        .find(|(n, _)| RESULT_PARAMETERS.contains(&n.as_str()))
    {
        return Err(refused(format!(
            "{name} shapes search results and cannot be part of criteria"
        )));
    }
    let search_context = SearchContext {
        limits: PageLimits { default: 1, max: 1 },
        strict: true,
        base_url: context.index.base_url.clone(),
        zone: context.index.zone,
    };
    let parsed = search::parse(resource_type, parameters, &search_context)
        .map_err(|error| refused(format!("criteria: {error}")))?;
    Ok(Some(SearchQuery {
        resource_type: resource_type.to_string(),
        filters: parsed.filters,
        sort: Vec::new(),
        count: 1,
        cursor: None,
        total: Total::None,
    }))
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = Text)]
    subscription_id: String,
    #[diesel(sql_type = Jsonb)]
    content: Value,
}

const CANDIDATES: &str = "\
SELECT c.subscription_id, r.content FROM subscription_counters c \
JOIN resources r ON r.resource_type = 'Subscription' AND r.id = c.subscription_id AND NOT r.deleted \
WHERE c.resource_type = $1 AND c.recording";

/// The counter rows are locked in id order first: two writes matching the same
/// subscriptions then wait for each other instead of deadlocking.
const RECORD_EVENTS: &str = "\
WITH locked AS ( \
    SELECT subscription_id FROM subscription_counters WHERE subscription_id = ANY($1) \
    ORDER BY subscription_id FOR UPDATE), \
bumped AS ( \
    UPDATE subscription_counters c SET events_since_start = c.events_since_start + 1 \
    FROM locked l WHERE c.subscription_id = l.subscription_id \
    RETURNING c.subscription_id, c.events_since_start) \
INSERT INTO subscription_events (subscription_id, event_number, occurred_at, focus_type, focus_id, focus_version, method) \
SELECT subscription_id, events_since_start, $2, $3, $4, $5::integer, $6 FROM bumped";

/// Records one event per subscription whose criteria this version meets, in the write's
/// transaction (its index rows are already written, so criteria are searched as stored).
/// Returns how many were recorded.
pub async fn record_events(
    conn: &mut AsyncPgConnection,
    version: &Version,
    previous: Option<&Value>,
    seq: i64,
    context: &WriteContext,
) -> ApiResult<usize> {
    let candidates: Vec<Candidate> =
        Statement::new(CANDIDATES, vec![Bound::Text(version.resource_type.clone())])
            .load(conn)
            .await?;
    let mut matched = Vec::new();
    for candidate in candidates {
        if meets_criteria(conn, &candidate.content, version, previous, seq, context).await? {
            matched.push(candidate.subscription_id);
        }
    }
    if matched.is_empty() {
        return Ok(0);
    }
    let count = matched.len();
    Statement::new(
        RECORD_EVENTS,
        vec![
            Bound::Texts(matched),
            Bound::Instant(version.last_updated),
            Bound::Text(version.resource_type.clone()),
            Bound::Text(version.id.clone()),
            Bound::BigInt(version.version_id as i64),
            Bound::Text(version.method.clone()),
        ],
    )
    .execute(conn)
    .await?;
    Ok(count)
}

async fn meets_criteria(
    conn: &mut AsyncPgConnection,
    subscription: &Value,
    version: &Version,
    previous: Option<&Value>,
    seq: i64,
    context: &WriteContext,
) -> ApiResult<bool> {
    let Ok(view) = SubscriptionView::read(subscription) else {
        return Ok(false);
    };
    let current = version.content.as_ref();
    let triggered = match &view.criteria {
        Criteria::Topic { topic, .. } => topic.is_triggered_by(previous, current),
        Criteria::Query { .. } => current.is_some(),
    };
    if !triggered {
        return Ok(false);
    }
    let Ok(query) = criteria_query(&view.criteria, context) else {
        return Ok(false);
    };
    let Some(mut query) = query else {
        return Ok(true);
    };
    if current.is_none() {
        // A deletion leaves no index rows to search; a filtered topic cannot match it.
        return Ok(false);
    }
    query.filters.push(Filter::Ids(vec![version.id.clone()]));
    let page = search_on(conn, &query).await?;
    Ok(page.rows.iter().any(|(found, _)| *found == seq))
}

/// A subscription claimed for delivery: locked until the claiming transaction ends.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claim {
    #[diesel(sql_type = Text)]
    pub subscription_id: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub delivered_through: i64,
    #[diesel(sql_type = Bool)]
    pub handshake_pending: bool,
    #[diesel(sql_type = Nullable<Integer>)]
    pub heartbeat_seconds: Option<i32>,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = BigInt)]
    pub events_since_start: i64,
    #[diesel(sql_type = Jsonb)]
    pub content: Value,
}

const CLAIM_DUE: &str = "\
SELECT d.subscription_id, d.status, d.delivered_through, d.handshake_pending, d.heartbeat_seconds, \
       d.attempts, c.events_since_start, r.content \
FROM subscription_delivery d \
JOIN subscription_counters c USING (subscription_id) \
JOIN resources r ON r.resource_type = 'Subscription' AND r.id = d.subscription_id AND NOT r.deleted \
WHERE d.status IN ('requested', 'active') AND d.next_attempt_at <= now() \
  AND (d.handshake_pending OR (d.status = 'active' AND (d.delivered_through < c.events_since_start \
       OR (d.heartbeat_seconds IS NOT NULL \
           AND coalesce(d.last_sent_at, '-infinity') + make_interval(secs => d.heartbeat_seconds) <= now())))) \
ORDER BY d.next_attempt_at \
LIMIT 1 \
FOR UPDATE OF d SKIP LOCKED";

/// An event waiting for delivery, with its focus version's content.
#[derive(Debug, Clone, QueryableByName)]
pub struct StoredEvent {
    #[diesel(sql_type = BigInt)]
    pub event_number: i64,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub focus_type: String,
    #[diesel(sql_type = Text)]
    pub focus_id: String,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub content: Option<Value>,
}

const EVENTS_AFTER: &str = "\
SELECT e.event_number, e.occurred_at, e.focus_type, e.focus_id, e.method, v.content \
FROM subscription_events e \
LEFT JOIN resource_versions v ON v.resource_type = e.focus_type AND v.id = e.focus_id \
     AND v.version_id = e.focus_version \
WHERE e.subscription_id = $1 AND e.event_number > $2 AND e.event_number <= $3 \
ORDER BY e.event_number LIMIT $4";

/// Events `(after, until]` of a subscription in order, at most `limit`.
pub async fn events_on(
    conn: &mut AsyncPgConnection,
    subscription_id: &str,
    after: i64,
    until: i64,
    limit: i64,
) -> ApiResult<Vec<StoredEvent>> {
    Ok(Statement::new(
        EVENTS_AFTER,
        vec![
            Bound::Text(subscription_id.to_string()),
            Bound::BigInt(after),
            Bound::BigInt(until),
            Bound::BigInt(limit),
        ],
    )
    .load(conn)
    .await?)
}

/// `events_on` with a pooled connection.
pub async fn events(
    pool: &Pool,
    subscription_id: &str,
    after: i64,
    until: i64,
    limit: i64,
) -> ApiResult<Vec<StoredEvent>> {
    let mut conn = connection(pool).await?;
    events_on(&mut conn, subscription_id, after, until, limit).await
}

/// Where a subscription's delivery stands, for `$status`.
#[derive(Debug, Clone, QueryableByName)]
pub struct DeliveryState {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub events_since_start: i64,
    #[diesel(sql_type = BigInt)]
    pub delivered_through: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
}

pub async fn delivery_state(
    pool: &Pool,
    subscription_id: &str,
) -> ApiResult<Option<DeliveryState>> {
    let mut conn = connection(pool).await?;
    let rows: Vec<DeliveryState> = Statement::new(
        "SELECT d.status, c.events_since_start, d.delivered_through, d.last_error \
         FROM subscription_delivery d JOIN subscription_counters c USING (subscription_id) \
         WHERE d.subscription_id = $1",
        vec![Bound::Text(subscription_id.to_string())],
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next())
}

/// What a delivery attempt leaves behind.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryUpdate {
    pub status: String,
    pub delivered_through: i64,
    pub handshake_pending: bool,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// Set when something was sent and acknowledged.
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

const UPDATE_DELIVERY: &str = "\
WITH delivered AS ( \
    UPDATE subscription_events SET delivered_at = now() \
    WHERE subscription_id = $1 AND event_number > $8 AND event_number <= $3) \
UPDATE subscription_delivery \
SET status = $2, delivered_through = $3, handshake_pending = $4, attempts = $5::integer, \
    next_attempt_at = $6, last_sent_at = coalesce($7, last_sent_at), last_error = $9 \
WHERE subscription_id = $1";

/// Claims the most overdue subscription (skipping those another worker holds), lets `send`
/// deliver to it with the lock held, and stores the update it returns, in one transaction.
/// `Ok(None)` when nothing is due. If the process dies while sending, the transaction
/// aborts and the same notification is due again.
pub async fn deliver_next<F, Fut>(
    pool: &Pool,
    batch: i64,
    send: F,
) -> ApiResult<Option<(Claim, DeliveryUpdate)>>
where
    F: FnOnce(Claim, Vec<StoredEvent>) -> Fut + Send,
    Fut: Future<Output = DeliveryUpdate> + Send,
{
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    conn.transaction(
        async move |conn: &mut AsyncPgConnection| -> ApiResult<Option<(Claim, DeliveryUpdate)>> {
            let claims: Vec<Claim> = Statement::new(CLAIM_DUE, Vec::new()).load(conn).await?;
            let Some(claim) = claims.into_iter().next() else {
                return Ok(None);
            };
            let pending = if claim.handshake_pending {
                Vec::new()
            } else {
                events_on(
                    conn,
                    &claim.subscription_id,
                    claim.delivered_through,
                    claim.events_since_start,
                    batch,
                )
                .await?
            };
            let update = send(claim.clone(), pending).await;
            Statement::new(
                UPDATE_DELIVERY,
                vec![
                    Bound::Text(claim.subscription_id.clone()),
                    Bound::Text(update.status.clone()),
                    Bound::BigInt(update.delivered_through),
                    Bound::Bool(update.handshake_pending),
                    Bound::BigInt(update.attempts as i64),
                    Bound::Instant(update.next_attempt_at),
                    Bound::OptionalInstant(update.sent_at),
                    Bound::BigInt(claim.delivered_through),
                    Bound::OptionalText(update.last_error.clone()),
                ],
            )
            .execute(conn)
            .await?;
            Ok(Some((claim, update)))
        },
    )
    .await
}

/// Events recorded and not yet acknowledged, over every subscription that is not off.
pub async fn queue_depth(pool: &Pool) -> ApiResult<i64> {
    #[derive(QueryableByName)]
    struct Depth {
        #[diesel(sql_type = BigInt)]
        depth: i64,
    }
    let mut conn = connection(pool).await?;
    let depth: Depth = Statement::new(
        "SELECT coalesce(sum(c.events_since_start - d.delivered_through), 0)::bigint AS depth \
         FROM subscription_delivery d JOIN subscription_counters c USING (subscription_id) \
         WHERE d.status <> 'off'",
        Vec::new(),
    )
    .get_result(&mut conn)
    .await?;
    Ok(depth.depth)
}
