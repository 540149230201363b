//! Search execution over the current, live resources and the search index tables.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::{Pool, connection};
use crate::error::ApiResult;
use crate::fhir::search::{DateComparison, DateMatch, Filter, ReferenceMatch, TokenMatch};

#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub resource_type: String,
    pub filters: Vec<Filter>,
    pub count: i64,
    /// Keyset cursor: only resources created after this sequence number.
    pub after_seq: Option<i64>,
    pub with_total: bool,
}

#[derive(Debug)]
pub struct SearchPage {
    pub resources: Vec<Value>,
    pub next_cursor: Option<i64>,
    pub total: Option<i64>,
}

/// A bind value of a search query.
#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Instant(DateTime<Utc>),
    BigInt(i64),
}

/// SQL text with numbered placeholders and their values: every client value is bound,
/// never spliced into the text.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        let placeholder = format!("${}", self.binds.len());
        self.text.push_str(&placeholder);
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_string()))
    }

    /// `( a OR b OR ... )` over `items`, each written by `write`.
    fn any_of<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.push("(");
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                self.push(" OR ");
            }
            write(self, item);
        }
        self.push(")")
    }

    fn into_query(
        self,
    ) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
        let mut query = diesel::sql_query(self.text).into_boxed::<Pg>();
        for bind in self.binds {
            query = match bind {
                Bind::Text(value) => query.bind::<Text, _>(value),
                Bind::Instant(value) => query.bind::<Timestamptz, _>(value),
                Bind::BigInt(value) => query.bind::<BigInt, _>(value),
            };
        }
        query
    }
}

fn token_condition(sql: &mut Sql, value: &TokenMatch) {
    match value {
        TokenMatch::Code(code) => sql.push("t.code = ").text(code),
        TokenMatch::SystemAndCode(system, code) => sql
            .push("t.code = ")
            .text(code)
            .push(" AND t.system = ")
            .text(system),
        TokenMatch::CodeWithoutSystem(code) => sql
            .push("t.code = ")
            .text(code)
            .push(" AND t.system IS NULL"),
        TokenMatch::System(system) => sql.push("t.system = ").text(system),
    };
}

fn reference_condition(sql: &mut Sql, value: &ReferenceMatch) {
    sql.push("(x.target_id = ").text(&value.id);
    if let Some(target_type) = &value.target_type {
        sql.push(" AND x.target_type = ").text(target_type);
    }
    sql.push(")");
}

fn date_condition(sql: &mut Sql, value: &DateMatch) {
    let start = Bind::Instant(value.start);
    let end = Bind::Instant(value.end);
    match value.comparison {
        DateComparison::Eq => sql
            .push("(r.last_updated >= ")
            .bind(start)
            .push(" AND r.last_updated < ")
            .bind(end)
            .push(")"),
        DateComparison::Ne => sql
            .push("(r.last_updated < ")
            .bind(start)
            .push(" OR r.last_updated >= ")
            .bind(end)
            .push(")"),
        DateComparison::Lt | DateComparison::EndsBefore => {
            sql.push("r.last_updated < ").bind(start)
        }
        DateComparison::Le => sql.push("r.last_updated < ").bind(end),
        DateComparison::Gt | DateComparison::StartsAfter => {
            sql.push("r.last_updated >= ").bind(end)
        }
        DateComparison::Ge => sql.push("r.last_updated >= ").bind(start),
    };
}

fn filter_condition(sql: &mut Sql, resource_type: &str, filter: &Filter) {
    match filter {
        Filter::Ids(ids) => {
            sql.any_of(ids, |sql, id| {
                sql.push("r.id = ").text(id);
            });
        }
        Filter::LastUpdated(values) => {
            sql.any_of(values, date_condition);
        }
        Filter::Token { param, values } => {
            sql.push("EXISTS (SELECT 1 FROM search_tokens t WHERE t.resource_type = ")
                .text(resource_type)
                .push(" AND t.id = r.id AND t.param = ")
                .text(param)
                .push(" AND ")
                .any_of(values, token_condition)
                .push(")");
        }
        Filter::Reference { param, values } => {
            sql.push("EXISTS (SELECT 1 FROM search_references x WHERE x.resource_type = ")
                .text(resource_type)
                .push(" AND x.id = r.id AND x.param = ")
                .text(param)
                .push(" AND ")
                .any_of(values, reference_condition)
                .push(")");
        }
    }
}

/// `FROM resources r WHERE <type, live, filters>`
fn from_where(sql: &mut Sql, query: &SearchQuery) {
    sql.push(" FROM resources r WHERE r.resource_type = ")
        .text(&query.resource_type)
        .push(" AND NOT r.deleted");
    for filter in &query.filters {
        sql.push(" AND ");
        filter_condition(sql, &query.resource_type, filter);
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    created_seq: i64,
    #[diesel(sql_type = Nullable<Jsonb>)]
    content: Option<Value>,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

pub async fn search(pool: &Pool, query: &SearchQuery) -> ApiResult<SearchPage> {
    let mut conn = connection(pool).await?;
    let mut page = Sql::default();
    page.push("SELECT r.created_seq, r.content");
    from_where(&mut page, query);
    if let Some(after) = query.after_seq {
        page.push(" AND r.created_seq > ").bind(Bind::BigInt(after));
    }
    page.push(" ORDER BY r.created_seq LIMIT ")
        .bind(Bind::BigInt(query.count + 1));
    let mut rows: Vec<Row> = page.into_query().load(&mut conn).await?;
    let next_cursor = if rows.len() as i64 > query.count {
        rows.truncate(query.count as usize);
        rows.last().map(|row| row.created_seq)
    } else {
        None
    };
    let total = if query.with_total {
        let mut count = Sql::default();
        count.push("SELECT count(*) AS count");
        from_where(&mut count, query);
        let row: CountRow = count.into_query().get_result(&mut conn).await?;
        Some(row.count)
    } else {
        None
    };
    Ok(SearchPage {
        resources: rows.into_iter().filter_map(|row| row.content).collect(),
        next_cursor,
        total,
    })
}
