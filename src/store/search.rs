//! Search execution: filters, sort and keyset paging turned into one SQL query over the
//! current live resources and the index tables. Every client value is a bound parameter.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::error::ApiResult;
use crate::fhir::search::{
    DateMatch, Filter, NumberMatch, Prefix, ReferenceMatch, Sort, SortKey, StringMode, TokenMatch,
    ValueMatch, approximate_window,
};
use crate::fhir::search_index::IndexKind;

/// A sort value as it is carried in a paging cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortValue {
    Null,
    Text(String),
    Instant(DateTime<Utc>),
    Number(f64),
}

/// Where a page starts: after (or, going back, before) the row with these sort values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub values: Vec<SortValue>,
    pub seq: i64,
    pub backwards: bool,
}

/// How `total` is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    /// Only when it is free: on a first page that holds every match.
    WhenComplete,
    Estimate,
    Accurate,
}

#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub resource_type: String,
    pub filters: Vec<Filter>,
    pub sort: Vec<Sort>,
    pub count: i64,
    pub cursor: Option<Cursor>,
    pub total: Total,
}

#[derive(Debug)]
pub struct SearchPage {
    /// `(created_seq, content)` of the matches, in order.
    pub rows: Vec<(i64, Value)>,
    pub next: Option<Cursor>,
    pub previous: Option<Cursor>,
    pub total: Option<i64>,
}

/// SQL text with numbered placeholders and their values.
#[derive(Debug, Default)]
pub(super) struct Sql {
    text: String,
    binds: Vec<Bound>,
    aliases: usize,
    /// Whether a value bounds a range (see `range`), so the statement is planned with its
    /// values on every run.
    ranged: bool,
}

impl Sql {
    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub(super) fn bind(&mut self, value: Bound) -> &mut Self {
        self.binds.push(value);
        let placeholder = format!("${}", self.binds.len());
        self.text.push_str(&placeholder);
        self
    }

    pub(super) fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bound::Text(value.to_string()))
    }

    /// A value that bounds a range (a date, number, string prefix, substring or paging
    /// cursor). How many rows such a bound selects depends on its value, so one plan for
    /// all values could be a poor one (a name prefix planned without its value scanned
    /// every name): a statement with one is not kept, and is planned with its values each
    /// time. Equalities (`text`, `bind`) are estimated well without their values.
    pub(super) fn range(&mut self, value: Bound) -> &mut Self {
        self.ranged = true;
        self.bind(value)
    }

    /// A resource type or search parameter code, written into the text as a literal
    /// rather than bound: the planner then prunes the partitions of other types when it
    /// plans the statement, so a kept statement's plan for all values reads only the
    /// partitions it names (with a bound type it would be costed over every partition and
    /// never chosen). Anything that is not plainly a name is bound instead.
    pub(super) fn name(&mut self, name: &str) -> &mut Self {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if plain {
            self.push("'").push(name).push("'")
        } else {
            self.text(name)
        }
    }

    fn alias(&mut self, stem: &str) -> String {
        self.aliases += 1;
        format!("{stem}{}", self.aliases)
    }

    /// `(a OR b OR ...)` over `items`, each written by `write`.
    pub(super) fn any_of<T>(
        &mut self,
        items: &[T],
        mut write: impl FnMut(&mut Self, &T),
    ) -> &mut Self {
        self.push("(");
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                self.push(" OR ");
            }
            write(self, item);
        }
        self.push(")")
    }

    pub(super) fn into_query(self) -> Statement {
        Statement::built(self.text, self.binds, !self.ranged)
    }
}

fn table(kind: IndexKind) -> &'static str {
    match kind {
        IndexKind::Token => "search_token",
        IndexKind::String => "search_string",
        IndexKind::Date => "search_date",
        IndexKind::Quantity | IndexKind::Number => "search_quantity",
        IndexKind::Reference => "search_reference",
        IndexKind::Uri => "search_uri",
    }
}

/// `LIKE` pattern text with its wildcards escaped.
pub(super) fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The first string after every string starting with `prefix` (byte order).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn token_condition(sql: &mut Sql, x: &str, value: &TokenMatch) {
    match value {
        TokenMatch::Code(code) => sql.push(&format!("{x}.code = ")).text(code),
        TokenMatch::SystemAndCode(system, code) => sql
            .push(&format!("({x}.code = "))
            .text(code)
            .push(&format!(" AND {x}.system = "))
            .text(system)
            .push(")"),
        TokenMatch::CodeWithoutSystem(code) => sql
            .push(&format!("({x}.code = "))
            .text(code)
            .push(&format!(" AND {x}.system IS NULL)")),
        TokenMatch::System(system) => sql.push(&format!("{x}.system = ")).text(system),
    };
}

fn starts_with(sql: &mut Sql, column: &str, prefix: &str) {
    sql.push(&format!("({column} ~>=~ "))
        .range(Bound::Text(prefix.to_string()));
    match prefix_upper_bound(prefix) {
        Some(upper) => sql
            .push(&format!(" AND {column} ~<~ "))
            .range(Bound::Text(upper))
            .push(")"),
        None => sql.push(")"),
    };
}

/// The R4 date comparisons of a stored range `[start, finish)` with a searched `[a, b)`.
fn date_condition(sql: &mut Sql, start: &str, finish: &str, value: &DateMatch) {
    let a = || Bound::Instant(value.start);
    let b = || Bound::Instant(value.end);
    match value.prefix {
        Prefix::Eq => sql
            .push(&format!("({start} >= "))
            .range(a())
            .push(&format!(" AND {finish} <= "))
            .range(b())
            .push(")"),
        Prefix::Ne => sql
            .push(&format!("NOT ({start} >= "))
            .range(a())
            .push(&format!(" AND {finish} <= "))
            .range(b())
            .push(")"),
        Prefix::Gt => sql.push(&format!("{finish} > ")).range(b()),
        Prefix::Lt => sql.push(&format!("{start} < ")).range(a()),
        Prefix::Ge => sql
            .push(&format!("({finish} > "))
            .range(b())
            .push(&format!(" OR ({start} >= "))
            .range(a())
            .push(&format!(" AND {finish} <= "))
            .range(b())
            .push("))"),
        Prefix::Le => sql
            .push(&format!("({start} < "))
            .range(a())
            .push(&format!(" OR ({start} >= "))
            .range(a())
            .push(&format!(" AND {finish} <= "))
            .range(b())
            .push("))"),
        Prefix::StartsAfter => sql.push(&format!("{start} >= ")).range(b()),
        Prefix::EndsBefore => sql.push(&format!("{finish} <= ")).range(a()),
        Prefix::Approximately => {
            let (low, high) = approximate_window(value.start, value.end, Utc::now());
            sql.push(&format!("({start} < "))
                .range(Bound::Instant(high))
                .push(&format!(" AND {finish} > "))
                .range(Bound::Instant(low))
                .push(")")
        }
    };
}

/// Number and quantity comparisons, in canonical units when the searched unit has them.
fn number_condition(sql: &mut Sql, x: &str, value: &NumberMatch) {
    let (column, target, low, high) = match &value.canonical {
        Some((canonical, low, high, unit)) => {
            sql.push(&format!("({x}.canonical_code = "))
                .text(unit)
                .push(" AND ");
            (format!("{x}.canonical_value"), *canonical, *low, *high)
        }
        None => {
            sql.push("(");
            if let Some(system) = &value.system {
                sql.push(&format!("{x}.system = "))
                    .text(system)
                    .push(" AND ");
            }
            if let Some(code) = &value.code {
                sql.push(&format!("{x}.code = ")).text(code).push(" AND ");
            }
            (format!("{x}.value"), value.value, value.low, value.high)
        }
    };
    let n = Bound::Number;
    match value.prefix {
        Prefix::Eq => sql
            .push(&format!("{column} >= "))
            .range(n(low))
            .push(&format!(" AND {column} < "))
            .range(n(high)),
        Prefix::Ne => sql
            .push(&format!("NOT ({column} >= "))
            .range(n(low))
            .push(&format!(" AND {column} < "))
            .range(n(high))
            .push(")"),
        Prefix::Gt | Prefix::StartsAfter => sql.push(&format!("{column} > ")).range(n(target)),
        Prefix::Lt | Prefix::EndsBefore => sql.push(&format!("{column} < ")).range(n(target)),
        Prefix::Ge => sql.push(&format!("{column} >= ")).range(n(target)),
        Prefix::Le => sql.push(&format!("{column} <= ")).range(n(target)),
        Prefix::Approximately => {
            let (a, b) = (target * 0.9, target * 1.1);
            sql.push(&format!("{column} >= "))
                .range(n(a.min(b)))
                .push(&format!(" AND {column} <= "))
                .range(n(a.max(b)))
        }
    };
    sql.push(")");
}

fn value_condition(sql: &mut Sql, x: &str, value: &ValueMatch) {
    match value {
        ValueMatch::Token(token) => token_condition(sql, x, token),
        ValueMatch::TokenText(text) => starts_with(sql, &format!("{x}.text"), text),
        ValueMatch::String(StringMode::StartsWith, text) => {
            starts_with(sql, &format!("{x}.normalized"), text)
        }
        ValueMatch::String(StringMode::Exact, text) => {
            sql.push(&format!("{x}.exact = ")).text(text);
        }
        ValueMatch::String(StringMode::Contains, text) => {
            sql.push(&format!("{x}.normalized LIKE "))
                .range(Bound::Text(format!("%{}%", like_escaped(text))));
        }
        ValueMatch::Date(date) => {
            date_condition(sql, &format!("{x}.start"), &format!("{x}.finish"), date)
        }
        ValueMatch::Number(number) => number_condition(sql, x, number),
        ValueMatch::Reference(ReferenceMatch::Local { target_type, id }) => {
            sql.push(&format!("({x}.target_id = ")).text(id);
            if let Some(target_type) = target_type {
                sql.push(&format!(" AND {x}.target_type = "))
                    .text(target_type);
            }
            sql.push(")");
        }
        ValueMatch::Reference(ReferenceMatch::Url(url)) => {
            sql.push(&format!("{x}.url = ")).text(url);
        }
        ValueMatch::Uri(uri) => {
            sql.push(&format!("{x}.uri = ")).text(uri);
        }
    }
}

/// `EXISTS (SELECT 1 FROM <index> x WHERE x belongs to <alias> and is <param>` — the caller
/// adds its conditions and the closing parenthesis.
fn open_index_rows(
    sql: &mut Sql,
    row_seq: &str,
    resource_type: &str,
    kind: IndexKind,
    param: &str,
    negate: bool,
) -> String {
    let x = sql.alias("x");
    let not = if negate { "NOT " } else { "" };
    sql.push(&format!("{not}EXISTS (SELECT 1 FROM {} {x} WHERE {x}.resource_seq = {row_seq} AND {x}.resource_type = ", table(kind)))
        .name(resource_type)
        .push(&format!(" AND {x}.param = "))
        .name(param);
    x
}

/// The row a condition is about: a `resources` row, or (in the index-driven form of a
/// page) an index row standing for one, of which only the sequence is at hand.
#[derive(Debug, Clone, Copy)]
struct Row<'a> {
    alias: &'a str,
    seq_column: &'static str,
}

impl Row<'_> {
    fn resource(alias: &str) -> Row<'_> {
        Row {
            alias,
            seq_column: "created_seq",
        }
    }

    fn seq(&self) -> String {
        format!("{}.{}", self.alias, self.seq_column)
    }

    fn is_resource(&self) -> bool {
        self.seq_column == "created_seq"
    }
}

/// The SQL condition for `filter` on `row`, of type `resource_type`.
fn filter_condition(sql: &mut Sql, row: Row, resource_type: &str, filter: &Filter) {
    let needs_resource_row = matches!(
        filter,
        Filter::Ids(_) | Filter::LastUpdated(_) | Filter::Has { .. }
    );
    if needs_resource_row && !row.is_resource() {
        let alias = sql.alias("r");
        sql.push(&format!(
            "EXISTS (SELECT 1 FROM resources {alias} WHERE {alias}.resource_type = "
        ))
        .name(resource_type)
        .push(&format!(
            " AND {alias}.created_seq = {} AND NOT {alias}.deleted AND ",
            row.seq()
        ));
        filter_condition(sql, Row::resource(&alias), resource_type, filter);
        sql.push(")");
        return;
    }
    let alias = row.alias;
    let row_seq = row.seq();
    match filter {
        Filter::Ids(ids) => {
            sql.push(&format!("{alias}.id = ANY("))
                .bind(Bound::Texts(ids.clone()))
                .push(")");
        }
        Filter::LastUpdated(values) => {
            let start = format!("{alias}.last_updated");
            let finish = format!("({alias}.last_updated + interval '1 millisecond')");
            sql.any_of(values, |sql, value| {
                date_condition(sql, &start, &finish, value)
            });
        }
        Filter::Values {
            param,
            kind,
            values,
            negate,
        } => {
            let x = open_index_rows(sql, &row_seq, resource_type, *kind, param, *negate);
            sql.push(" AND ")
                .any_of(values, |sql, value| value_condition(sql, &x, value))
                .push(")");
        }
        Filter::Missing {
            param,
            kind,
            missing,
        } => {
            open_index_rows(sql, &row_seq, resource_type, *kind, param, *missing);
            sql.push(")");
        }
        Filter::Chain {
            param,
            target_type,
            inner,
        } => {
            let x = open_index_rows(
                sql,
                &row_seq,
                resource_type,
                IndexKind::Reference,
                param,
                false,
            );
            let target = sql.alias("t");
            sql.push(&format!(" AND {x}.target_type = "))
                .name(target_type)
                .push(&format!(
                    " AND EXISTS (SELECT 1 FROM resources {target} WHERE {target}.resource_type = "
                ))
                .name(target_type)
                .push(&format!(
                    " AND {target}.id = {x}.target_id AND NOT {target}.deleted AND "
                ));
            filter_condition(sql, Row::resource(&target), target_type, inner);
            sql.push("))");
        }
        Filter::Has {
            source_type,
            param,
            inner,
        } => {
            let x = sql.alias("x");
            let source = sql.alias("s");
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM search_reference {x} JOIN resources {source} ON {source}.created_seq = {x}.resource_seq AND {source}.resource_type = "
            ))
            .name(source_type)
            .push(&format!(" WHERE {x}.resource_type = "))
            .name(source_type)
            .push(&format!(" AND {x}.param = "))
            .name(param)
            .push(&format!(" AND {x}.target_type = {alias}.resource_type AND {x}.target_id = {alias}.id AND NOT {source}.deleted AND "));
            filter_condition(sql, Row::resource(&source), source_type, inner);
            sql.push(")");
        }
        Filter::AnyOf(groups) if groups.is_empty() => {
            sql.push("false");
        }
        Filter::AnyOf(groups) => {
            sql.any_of(groups, |sql, group| {
                for (index, filter) in group.iter().enumerate() {
                    if index > 0 {
                        sql.push(" AND ");
                    }
                    filter_condition(sql, row, resource_type, filter);
                }
                if group.is_empty() {
                    sql.push("true");
                }
            });
        }
    }
}

/// `(<filter> AND <filter> …)` over the `resources` row `alias` of `resource_type`, `true`
/// without filters: the conditions of one search, for statements built elsewhere (bulk export).
pub(super) fn all_of(sql: &mut Sql, alias: &str, resource_type: &str, filters: &[Filter]) {
    if filters.is_empty() {
        sql.push("true");
        return;
    }
    sql.push("(");
    for (index, filter) in filters.iter().enumerate() {
        if index > 0 {
            sql.push(" AND ");
        }
        filter_condition(sql, Row::resource(alias), resource_type, filter);
    }
    sql.push(")");
}

/// `FROM resources r WHERE <type, live, filters>`
fn from_where(sql: &mut Sql, query: &SearchQuery) {
    sql.push(" FROM resources r WHERE r.resource_type = ")
        .name(&query.resource_type)
        .push(" AND NOT r.deleted");
    for filter in &query.filters {
        sql.push(" AND ");
        filter_condition(sql, Row::resource("r"), &query.resource_type, filter);
    }
}

/// The scalar SQL of a sort key for the row `r` of type `resource_type`.
fn sort_expression(sql: &mut Sql, resource_type: &str, sort: &Sort) {
    let (kind, param) = match &sort.key {
        SortKey::Id => {
            sql.push("r.id");
            return;
        }
        SortKey::LastUpdated => {
            sql.push("r.last_updated");
            return;
        }
        SortKey::Param { param, kind } => (*kind, param),
    };
    let aggregate = if sort.descending { "max" } else { "min" };
    let column = match kind {
        IndexKind::Token => "x.code".to_string(),
        IndexKind::String => "x.normalized".to_string(),
        IndexKind::Date if sort.descending => "x.finish".to_string(),
        IndexKind::Date => "x.start".to_string(),
        IndexKind::Quantity | IndexKind::Number => {
            "coalesce(x.canonical_value, x.value)".to_string()
        }
        IndexKind::Reference => "coalesce(x.target_id, x.url)".to_string(),
        IndexKind::Uri => "x.uri".to_string(),
    };
    sql.push(&format!(
        "(SELECT {aggregate}({column}) FROM {} x WHERE x.resource_type = ",
        table(kind)
    ))
    .name(resource_type)
    .push(" AND x.resource_seq = r.created_seq AND x.param = ")
    .name(param)
    .push(")");
}

fn sort_value_kind(sort: &Sort) -> IndexKind {
    match &sort.key {
        SortKey::Id => IndexKind::Token,
        SortKey::LastUpdated => IndexKind::Date,
        SortKey::Param { kind, .. } => *kind,
    }
}

/// The ordered comparison components of the rows `alias`: for each sort key its null flag
/// (nulls last) and its value, then the creation sequence. `(expression, descending)`.
fn order_components(alias: &str, sort: &[Sort], backwards: bool) -> Vec<(String, bool)> {
    let mut components = Vec::new();
    for (index, key) in sort.iter().enumerate() {
        components.push((format!("({alias}.k{index} IS NULL)"), backwards));
        components.push((format!("{alias}.k{index}"), key.descending != backwards));
    }
    components.push((format!("{alias}.seq"), backwards));
    components
}

fn order_by(components: &[(String, bool)]) -> String {
    components
        .iter()
        .map(|(expression, descending)| {
            format!("{expression} {}", if *descending { "DESC" } else { "ASC" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn bind_sort_value(value: &SortValue) -> Option<Bound> {
    match value {
        SortValue::Null => None,
        SortValue::Text(text) => Some(Bound::Text(text.clone())),
        SortValue::Instant(at) => Some(Bound::Instant(*at)),
        SortValue::Number(number) => Some(Bound::Number(*number)),
    }
}

/// The cursor's values in component order: null flags, values, sequence.
fn cursor_components(cursor: &Cursor) -> Vec<Option<Bound>> {
    let mut values = Vec::new();
    for value in &cursor.values {
        values.push(Some(Bound::Bool(*value == SortValue::Null)));
        values.push(bind_sort_value(value));
    }
    values.push(Some(Bound::BigInt(cursor.seq)));
    values
}

/// Rows strictly after the cursor in the page's order (lexicographic over components).
fn keyset_condition(sql: &mut Sql, components: &[(String, bool)], cursor: &Cursor) {
    let values = cursor_components(cursor);
    sql.push("(");
    let mut first = true;
    for i in 0..components.len() {
        let Some(value) = &values[i] else { continue };
        if !first {
            sql.push(" OR ");
        }
        first = false;
        sql.push("(");
        for j in 0..i {
            let (expression, _) = &components[j];
            match &values[j] {
                Some(bound) => sql
                    .push(&format!("{expression} = "))
                    .range(bound.clone())
                    .push(" AND "),
                None => sql.push(&format!("{expression} IS NULL AND ")),
            };
        }
        let (expression, descending) = &components[i];
        let op = if *descending { "<" } else { ">" };
        sql.push(&format!("{expression} {op} "))
            .range(value.clone())
            .push(")");
    }
    if first {
        sql.push("false");
    }
    sql.push(")");
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct PlanRow {
    #[diesel(sql_type = diesel::sql_types::Json, column_name = "QUERY PLAN")]
    plan: Value,
}

/// A sort key's value from its JSON rendering (`jsonb_build_array` of the keys).
fn decode_sort_value(value: &Value, kind: IndexKind) -> SortValue {
    match (value, kind) {
        (Value::Null, _) => SortValue::Null,
        (Value::String(text), IndexKind::Date) => DateTime::parse_from_rfc3339(text)
            .map(|at| SortValue::Instant(at.with_timezone(&Utc)))
            .unwrap_or(SortValue::Null),
        (Value::Number(number), _) => number
            .as_f64()
            .map(SortValue::Number)
            .unwrap_or(SortValue::Null),
        (Value::String(text), _) => SortValue::Text(text.clone()),
        _ => SortValue::Null,
    }
}

/// One row of a page: sequence, content and its sort values.
struct PageRow {
    seq: i64,
    content: Value,
    values: Vec<SortValue>,
}

/// The filter whose index rows drive a page in creation order (no `_sort`): the first one
/// that matches values of a parameter.
fn index_driver(query: &SearchQuery) -> Option<usize> {
    if !query.sort.is_empty() {
        return None;
    }
    query
        .filters
        .iter()
        .position(|filter| matches!(filter, Filter::Values { negate: false, .. }))
}

/// A page in creation order driven by one filter's index rows, read in `resource_seq` order
/// from the cursor on, the other filters probed for each, until the page is full. Index
/// rows exist only for live resources of the type, so `resources` is joined only for the
/// page's content. Its cost follows the page, not its depth in the result, whatever the
/// planner estimates: the plan has no other order to start from.
fn page_driven_by_index(query: &SearchQuery, driver: usize, backwards: bool) -> Sql {
    let Filter::Values {
        param,
        kind,
        values,
        ..
    } = &query.filters[driver]
    else {
        unreachable!("index_driver picks value filters")
    };
    let mut page = Sql::default();
    page.push(&format!(
        "SELECT p.seq, c.content, jsonb_build_array() AS keys FROM (SELECT DISTINCT ON (d.resource_seq) d.resource_seq AS seq FROM {} d WHERE d.resource_type = ",
        table(*kind)
    ))
    .name(&query.resource_type)
    .push(" AND d.param = ")
    .name(param)
    .push(" AND ")
    .any_of(values, |sql, value| value_condition(sql, "d", value));
    if let Some(cursor) = &query.cursor {
        page.push(if backwards {
            " AND d.resource_seq < "
        } else {
            " AND d.resource_seq > "
        })
        .range(Bound::BigInt(cursor.seq));
    }
    let row = Row {
        alias: "d",
        seq_column: "resource_seq",
    };
    for (index, filter) in query.filters.iter().enumerate() {
        if index != driver {
            page.push(" AND ");
            filter_condition(&mut page, row, &query.resource_type, filter);
        }
    }
    let direction = if backwards { "DESC" } else { "ASC" };
    page.push(&format!(" ORDER BY d.resource_seq {direction} LIMIT "))
        .bind(Bound::BigInt(query.count + 1))
        .push(") p JOIN resources c ON c.resource_type = ")
        .name(&query.resource_type)
        .push(&format!(
            " AND c.created_seq = p.seq AND NOT c.deleted ORDER BY p.seq {direction}"
        ));
    page
}

/// A page over the `resources` rows of the type: sort keys and sequences found first, from
/// the index alone, and only the rows of the page then joined to their content.
fn page_over_resources(query: &SearchQuery, backwards: bool) -> Sql {
    let keys: Vec<String> = (0..query.sort.len()).map(|i| format!("k{i}")).collect();
    let key_list = |alias: &str| -> String {
        keys.iter()
            .map(|key| format!(", {alias}.{key}"))
            .collect::<String>()
    };
    let mut page = Sql::default();
    page.push(&format!(
        "SELECT p.seq, c.content, jsonb_build_array({}) AS keys FROM (SELECT q.seq{} FROM (SELECT r.created_seq AS seq",
        keys.iter()
            .map(|key| format!("p.{key}"))
            .collect::<Vec<_>>()
            .join(", "),
        key_list("q"),
    ));
    for (index, sort) in query.sort.iter().enumerate() {
        page.push(", ");
        sort_expression(&mut page, &query.resource_type, sort);
        page.push(&format!(" AS k{index}"));
    }
    from_where(&mut page, query);
    if !query.sort.is_empty() {
        // Keeps each sort key a column computed once, not a subplan copied into every
        // ORDER BY and keyset term (which multiplies planning time).
        page.push(" OFFSET 0");
    }
    page.push(") q");
    let inner = order_components("q", &query.sort, backwards);
    if let Some(cursor) = &query.cursor {
        page.push(" WHERE ");
        keyset_condition(&mut page, &inner, cursor);
    }
    page.push(" ORDER BY ")
        .push(&order_by(&inner))
        .push(" LIMIT ")
        .bind(Bound::BigInt(query.count + 1))
        .push(") p JOIN resources c ON c.resource_type = ")
        .name(&query.resource_type)
        .push(" AND c.created_seq = p.seq ORDER BY ")
        .push(&order_by(&order_components("p", &query.sort, backwards)));
    page
}

pub async fn search(pool: &Pool, query: &SearchQuery) -> ApiResult<SearchPage> {
    let mut conn = connection(pool).await?;
    search_on(&mut conn, query).await
}

/// `search` on a given connection (inside a caller's transaction).
pub async fn search_on(conn: &mut AsyncPgConnection, query: &SearchQuery) -> ApiResult<SearchPage> {
    let backwards = query.cursor.as_ref().is_some_and(|c| c.backwards);
    let page = match index_driver(query) {
        Some(driver) => page_driven_by_index(query, driver, backwards),
        None => page_over_resources(query, backwards),
    };
    tracing::debug!(sql = %page.text, "search page query");
    let rows = load_rows(conn, page, &query.sort).await?;
    let has_more = rows.len() as i64 > query.count;
    let mut rows: Vec<PageRow> = rows.into_iter().take(query.count as usize).collect();
    if backwards {
        rows.reverse();
    }
    let cursor_at = |row: &PageRow, backwards: bool| Cursor {
        values: row.values.clone(),
        seq: row.seq,
        backwards,
    };
    let (next, previous) = if backwards {
        (
            rows.as_slice().last().map(|r| cursor_at(r, false)),
            has_more
                .then(|| rows.as_slice().first().map(|r| cursor_at(r, true)))
                .flatten(),
        )
    } else {
        (
            has_more
                .then(|| rows.as_slice().last().map(|r| cursor_at(r, false)))
                .flatten(),
            query
                .cursor
                .as_ref()
                .and(rows.as_slice().first().map(|r| cursor_at(r, true))),
        )
    };
    let total = match query.total {
        Total::WhenComplete if query.cursor.is_none() && !has_more => Some(rows.len() as i64),
        Total::None | Total::WhenComplete => None,
        Total::Accurate => {
            let mut count = Sql::default();
            count.push("SELECT count(*) AS count");
            from_where(&mut count, query);
            let row: CountRow = count.into_query().get_result(conn).await?;
            Some(row.count)
        }
        Total::Estimate => {
            let mut explain = Sql::default();
            explain.push("EXPLAIN (FORMAT JSON) SELECT 1");
            from_where(&mut explain, query);
            let row: PlanRow = explain.into_query().get_result(conn).await?;
            row.plan[0]["Plan"]["Plan Rows"]
                .as_f64()
                .map(|rows| rows.round() as i64)
        }
    };
    Ok(SearchPage {
        rows: rows.into_iter().map(|r| (r.seq, r.content)).collect(),
        next,
        previous,
        total,
    })
}

#[derive(QueryableByName)]
struct LoadedRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Jsonb)]
    content: Value,
    #[diesel(sql_type = Jsonb)]
    keys: Value,
}

async fn load_rows(
    conn: &mut AsyncPgConnection,
    page: Sql,
    sort: &[Sort],
) -> ApiResult<Vec<PageRow>> {
    let rows: Vec<LoadedRow> = page.into_query().load(conn).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let values = sort
                .iter()
                .enumerate()
                .map(|(index, key)| decode_sort_value(&row.keys[index], sort_value_kind(key)))
                .collect();
            PageRow {
                seq: row.seq,
                content: row.content,
                values,
            }
        })
        .collect())
}

/// Current, live resources of `resource_type` with these ids (for `_include`).
pub async fn by_ids(pool: &Pool, targets: &[(String, String)]) -> ApiResult<Vec<(i64, Value)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        created_seq: i64,
        #[diesel(sql_type = Nullable<Jsonb>)]
        content: Option<Value>,
    }
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = connection(pool).await?;
    let (types, ids): (Vec<String>, Vec<String>) = targets.iter().cloned().unzip();
    let mut sql = Sql::default();
    sql.push("SELECT r.created_seq, r.content FROM resources r JOIN unnest(")
        .bind(Bound::Texts(types))
        .push("::text[], ")
        .bind(Bound::Texts(ids))
        .push("::text[]) AS t(resource_type, id) ON r.resource_type = t.resource_type AND r.id = t.id WHERE NOT r.deleted ORDER BY r.created_seq");
    let rows: Vec<Row> = sql.into_query().load(&mut conn).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.created_seq, r.content?)))
        .collect())
}

/// `(target_type, target_id)` of the `param` references held by these resources.
pub async fn referenced(
    pool: &Pool,
    seqs: &[i64],
    source_type: &str,
    param: &str,
    target_type: Option<&str>,
) -> ApiResult<Vec<(String, String)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        target_type: String,
        #[diesel(sql_type = Text)]
        target_id: String,
    }
    let mut conn = connection(pool).await?;
    let mut sql = Sql::default();
    sql.push("SELECT DISTINCT x.target_type, x.target_id FROM search_reference x WHERE x.resource_seq = ANY(")
        .bind(Bound::BigInts(seqs.to_vec()))
        .push(") AND x.resource_type = ")
        .name(source_type)
        .push(" AND x.param = ")
        .name(param)
        .push(" AND x.target_type IS NOT NULL AND x.target_id IS NOT NULL");
    if let Some(target_type) = target_type {
        sql.push(" AND x.target_type = ").name(target_type);
    }
    let rows: Vec<Row> = sql.into_query().load(&mut conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.target_type, r.target_id))
        .collect())
}

/// Live `source_type` resources whose `param` refers to one of `targets` (for
/// `_revinclude`), at most `limit`.
pub async fn referring(
    pool: &Pool,
    targets: &[(String, String)],
    source_type: &str,
    param: &str,
    limit: i64,
) -> ApiResult<Vec<(i64, Value)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        created_seq: i64,
        #[diesel(sql_type = Nullable<Jsonb>)]
        content: Option<Value>,
    }
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = connection(pool).await?;
    let (types, ids): (Vec<String>, Vec<String>) = targets.iter().cloned().unzip();
    let mut sql = Sql::default();
    sql.push("SELECT r.created_seq, r.content FROM resources r WHERE NOT r.deleted AND r.resource_type = ")
        .name(source_type)
        .push(" AND r.created_seq IN (SELECT x.resource_seq FROM search_reference x JOIN unnest(")
        .bind(Bound::Texts(types))
        .push("::text[], ")
        .bind(Bound::Texts(ids))
        .push("::text[]) AS t(target_type, target_id) ON x.target_type = t.target_type AND x.target_id = t.target_id WHERE x.resource_type = ")
        .name(source_type)
        .push(" AND x.param = ")
        .name(param)
        .push(") ORDER BY r.created_seq LIMIT ")
        .bind(Bound::BigInt(limit));
    let rows: Vec<Row> = sql.into_query().load(&mut conn).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.created_seq, r.content?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_as_literals_and_anything_else_is_bound() {
        let mut sql = Sql::default();
        sql.push("t = ").name("MedicationAdministration");
        sql.push(" AND p = ").name("general-practitioner");
        sql.push(" AND q = ").name("Pat'ient");
        sql.push(" AND r = ").name("");
        assert_eq!(
            sql.text,
            "t = 'MedicationAdministration' AND p = 'general-practitioner' AND q = $1 AND r = $2"
        );
        assert_eq!(sql.binds.len(), 2);
        assert!(matches!(&sql.binds[0], Bound::Text(v) if v == "Pat'ient"));
    }

    #[test]
    fn a_statement_bounding_a_range_is_planned_with_its_values_each_time() {
        use diesel::pg::Pg;
        use diesel::query_builder::QueryFragment;
        let mut equality = Sql::default();
        equality.push("SELECT 1 WHERE 'an equality' = ").text("a");
        assert!(
            equality
                .into_query()
                .is_safe_to_cache_prepared(&Pg)
                .unwrap()
        );
        let mut ranged = Sql::default();
        ranged
            .push("SELECT 1 WHERE 'a range' = ")
            .text("a")
            .push(" AND 'b' > ")
            .range(Bound::Text("c".into()));
        assert!(!ranged.into_query().is_safe_to_cache_prepared(&Pg).unwrap());
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("smi").as_deref(), Some("smj"));
        assert_eq!(like_escaped("50%_off"), "50\\%\\_off");
    }
}
