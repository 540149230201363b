//! `Statement`: SQL text with `$n` placeholders and the values bound to them, run through
//! diesel. A statement with a fixed text is prepared once per connection and kept; one
//! whose text is built per request (search) is kept too if one plan may serve all its
//! values and its text is among the first `BUILT_TEXTS_KEPT` distinct ones the process
//! has seen, and prepared for that call only otherwise, since the variety of such texts
//! has no bound.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Double, Nullable, Text, Timestamptz, Untyped};

/// A value bound to one placeholder.
#[derive(Debug, Clone)]
pub enum Bound {
    Text(String),
    BigInt(i64),
    Number(f64),
    Bool(bool),
    Instant(DateTime<Utc>),
    BigInts(Vec<i64>),
    Texts(Vec<String>),
    OptionalTexts(Vec<Option<String>>),
    /// A text array, or NULL.
    NullableTexts(Option<Vec<String>>),
    Instants(Vec<DateTime<Utc>>),
    Doubles(Vec<f64>),
    OptionalDoubles(Vec<Option<f64>>),
    OptionalText(Option<String>),
    OptionalBigInt(Option<i64>),
    OptionalInstant(Option<DateTime<Utc>>),
}

/// `sql` refers to `values` as `$1`, `$2`, …; a placeholder may appear more than once (each
/// appearance is sent as a parameter of its own).
#[derive(Debug, Clone)]
pub struct Statement {
    sql: Cow<'static, str>,
    values: Vec<Bound>,
    keep_prepared: bool,
}

impl Statement {
    /// A statement whose text never changes: kept prepared on each connection.
    pub fn new(sql: &'static str, values: Vec<Bound>) -> Self {
        Statement {
            sql: Cow::Borrowed(sql),
            values,
            keep_prepared: true,
        }
    }

    /// A statement whose text was built for one request: kept prepared when one plan may
    /// serve all its values (`plan_fits_all_values`) and its text is one of the texts
    /// admitted (see `admitted`), prepared for this call only otherwise.
    pub fn built(sql: String, values: Vec<Bound>, plan_fits_all_values: bool) -> Self {
        let keep_prepared = plan_fits_all_values && admitted(&sql);
        Statement {
            sql: Cow::Owned(sql),
            values,
            keep_prepared,
        }
    }
}

/// How many distinct built texts each connection may keep prepared. A search of one shape
/// (the same parameters and modifiers, any values) has one text, and a client's searches
/// come in few shapes. A kept statement spares a round trip and its parsing, and after
/// five runs PostgreSQL may plan it once for all values; it costs the database about
/// 130 KB per text on each connection that ran it, which this bound limits.
pub const BUILT_TEXTS_KEPT: usize = 64;

/// Whether `sql` is one of the texts kept prepared: the first `BUILT_TEXTS_KEPT`
/// distinct texts the process built are, for as long as it runs; later ones are not, so
/// clients sending ever new shapes cannot grow the connections' caches without bound.
fn admitted(sql: &str) -> bool {
    static KEPT: OnceLock<KeptTexts> = OnceLock::new();
    KEPT.get_or_init(|| KeptTexts::new(BUILT_TEXTS_KEPT))
        .admits(sql)
}

/// The first `limit` distinct texts offered.
struct KeptTexts {
    limit: usize,
    texts: Mutex<HashSet<String>>,
}

impl KeptTexts {
    fn new(limit: usize) -> Self {
        KeptTexts {
            limit,
            texts: Mutex::new(HashSet::new()),
        }
    }

    fn admits(&self, sql: &str) -> bool {
        let mut texts = self
            .texts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        texts.contains(sql) || (texts.len() < self.limit && texts.insert(sql.to_string()))
    }
}

impl QueryId for Statement {
    type QueryId = ();
    // Kept (when it is) by its SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// Rows come back by column name (`QueryableByName`), as with `diesel::sql_query`.
impl Query for Statement {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for Statement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        if !self.keep_prepared {
            out.unsafe_to_cache_prepared();
        }
        let mut rest: &str = &self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            let number: usize = rest[at + 1..at + 1 + digits].parse().map_err(|_| {
                diesel::result::Error::QueryBuilderError("'$' without a number".into())
            })?;
            rest = &rest[at + 1 + digits..];
            let value = number
                .checked_sub(1)
                .and_then(|index| self.values.get(index))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("no value for placeholder ${number}").into(),
                    )
                })?;
            match value {
                Bound::Text(v) => out.push_bind_param::<Text, _>(v)?,
                Bound::BigInt(v) => out.push_bind_param::<BigInt, _>(v)?,
                Bound::Number(v) => out.push_bind_param::<Double, _>(v)?,
                Bound::Bool(v) => out.push_bind_param::<Bool, _>(v)?,
                Bound::Instant(v) => out.push_bind_param::<Timestamptz, _>(v)?,
                Bound::BigInts(v) => out.push_bind_param::<Array<BigInt>, _>(v)?,
                Bound::Texts(v) => out.push_bind_param::<Array<Text>, _>(v)?,
                Bound::OptionalTexts(v) => out.push_bind_param::<Array<Nullable<Text>>, _>(v)?,
                Bound::NullableTexts(v) => out.push_bind_param::<Nullable<Array<Text>>, _>(v)?,
                Bound::Instants(v) => out.push_bind_param::<Array<Timestamptz>, _>(v)?,
                Bound::Doubles(v) => out.push_bind_param::<Array<Double>, _>(v)?,
                Bound::OptionalDoubles(v) => {
                    out.push_bind_param::<Array<Nullable<Double>>, _>(v)?
                }
                Bound::OptionalText(v) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                Bound::OptionalBigInt(v) => out.push_bind_param::<Nullable<BigInt>, _>(v)?,
                Bound::OptionalInstant(v) => out.push_bind_param::<Nullable<Timestamptz>, _>(v)?,
            }
        }
        out.push_sql(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::query_builder::QueryBuilder;

    #[test]
    fn placeholders_are_replaced_in_order() {
        let statement = Statement::new(
            "SELECT $1::text, x FROM t WHERE y = ANY($2)",
            vec![Bound::Text("a".into()), Bound::BigInts(vec![1])],
        );
        let mut builder = diesel::pg::PgQueryBuilder::default();
        statement.to_sql(&mut builder, &Pg).unwrap();
        assert_eq!(
            builder.finish(),
            "SELECT $1::text, x FROM t WHERE y = ANY($2)"
        );
    }

    #[test]
    fn only_the_first_texts_up_to_the_limit_are_kept() {
        let kept = KeptTexts::new(2);
        assert!(kept.admits("SELECT 1"));
        assert!(kept.admits("SELECT 2"));
        assert!(!kept.admits("SELECT 3"), "a third text is past the limit");
        assert!(kept.admits("SELECT 1"), "an admitted text stays admitted");
        assert!(kept.admits("SELECT 2"));
        assert!(!kept.admits("SELECT 3"), "and the third is still refused");
    }

    #[test]
    fn a_kept_statement_may_be_cached_and_a_refused_one_may_not() {
        use diesel::query_builder::QueryFragment;
        let kept = Statement {
            sql: Cow::Borrowed("SELECT $1::text"),
            values: vec![Bound::Text("a".into())],
            keep_prepared: true,
        };
        let once = Statement {
            keep_prepared: false,
            ..kept.clone()
        };
        assert!(kept.is_safe_to_cache_prepared(&Pg).unwrap());
        assert!(!once.is_safe_to_cache_prepared(&Pg).unwrap());
    }
}
