//! The SQL of SMART Backend Services clients: the registry (`client register`, `list`,
//! `disable`), the lookup of the token endpoint, and the store of used assertion ids (`jti`)
//! that refuses a replayed client assertion.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::error::ApiResult;

/// A registered client as stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClientRow {
    #[diesel(sql_type = Text)]
    pub client_id: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub jwks: Option<Value>,
    #[diesel(sql_type = Nullable<Text>)]
    pub jwks_url: Option<String>,
    #[diesel(sql_type = Text)]
    pub scope: String,
    #[diesel(sql_type = Bool)]
    pub enabled: bool,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

/// Where a client's public keys are: inline, or at a URL.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientKeys {
    Inline(Value),
    Url(String),
}

const UPSERT: &str = "\
INSERT INTO smart_clients (client_id, jwks, jwks_url, scope, enabled)
VALUES ($1, $2::jsonb, $3, $4, true)
ON CONFLICT (client_id) DO UPDATE
   SET jwks = EXCLUDED.jwks, jwks_url = EXCLUDED.jwks_url, scope = EXCLUDED.scope,
       enabled = true, updated_at = now()
RETURNING (xmax = 0) AS created";

/// Registers a client, or replaces the keys and scopes of one registered before (enabling
/// it again). Returns whether it is new.
pub async fn register(
    pool: &Pool,
    client_id: &str,
    keys: &ClientKeys,
    scope: &str,
) -> ApiResult<bool> {
    #[derive(QueryableByName)]
    struct Created {
        #[diesel(sql_type = Bool)]
        created: bool,
    }
    let (jwks, url) = match keys {
        ClientKeys::Inline(jwks) => (Some(jwks.to_string()), None),
        ClientKeys::Url(url) => (None, Some(url.clone())),
    };
    let mut conn = connection(pool).await?;
    let row: Created = Statement::new(
        UPSERT,
        vec![
            Bound::Text(client_id.to_string()),
            Bound::OptionalText(jwks),
            Bound::OptionalText(url),
            Bound::Text(scope.to_string()),
        ],
    )
    .get_result(&mut conn)
    .await?;
    Ok(row.created)
}

/// Every registered client, by id.
pub async fn list(pool: &Pool) -> ApiResult<Vec<ClientRow>> {
    const LIST: &str = "SELECT client_id, jwks, jwks_url, scope, enabled, created_at, updated_at FROM smart_clients ORDER BY client_id";
    let mut conn = connection(pool).await?;
    Ok(Statement::new(LIST, Vec::new()).load(&mut conn).await?)
}

pub async fn find(pool: &Pool, client_id: &str) -> ApiResult<Option<ClientRow>> {
    const FIND: &str = "SELECT client_id, jwks, jwks_url, scope, enabled, created_at, updated_at FROM smart_clients WHERE client_id = $1";
    let mut conn = connection(pool).await?;
    let rows: Vec<ClientRow> = Statement::new(FIND, vec![Bound::Text(client_id.to_string())])
        .load(&mut conn)
        .await?;
    Ok(rows.into_iter().next())
}

/// Enables or disables a client; returns whether it exists.
pub async fn set_enabled(pool: &Pool, client_id: &str, enabled: bool) -> ApiResult<bool> {
    let mut conn = connection(pool).await?;
    let changed = Statement::new(
        "UPDATE smart_clients SET enabled = $2, updated_at = now() WHERE client_id = $1",
        vec![Bound::Text(client_id.to_string()), Bound::Bool(enabled)],
    )
    .execute(&mut conn)
    .await?;
    Ok(changed == 1)
}

/// Purges the assertion ids that expired, then records this one in the same statement.
/// The purge cannot free this very id: the statement's snapshot still holds the old row,
/// whose assertion would in any case be refused as expired.
const RECORD_ASSERTION: &str = "\
WITH purged AS (DELETE FROM smart_assertion_jtis WHERE expires_at < now())
INSERT INTO smart_assertion_jtis (client_id, jti, expires_at)
VALUES ($1, $2, $3)
ON CONFLICT (client_id, jti) DO NOTHING";

/// Records a client assertion's `jti`; returns false when the client used it before.
pub async fn record_assertion(
    pool: &Pool,
    client_id: &str,
    jti: &str,
    expires_at: DateTime<Utc>,
) -> ApiResult<bool> {
    let mut conn = connection(pool).await?;
    let inserted = Statement::new(
        RECORD_ASSERTION,
        vec![
            Bound::Text(client_id.to_string()),
            Bound::Text(jti.to_string()),
            Bound::Instant(expires_at),
        ],
    )
    .execute(&mut conn)
    .await?;
    Ok(inserted == 1)
}
