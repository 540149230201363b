//! `Statement`: SQL whose text is fixed (only the bound values change), run through diesel
//! so that it is prepared once per connection and kept, unlike `diesel::sql_query`, which
//! is parsed and planned again on every call.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Double, Nullable, Text, Timestamptz};

/// A value bound to one placeholder.
#[derive(Debug, Clone)]
pub enum Bound {
    Text(String),
    BigInts(Vec<i64>),
    Texts(Vec<String>),
    OptionalTexts(Vec<Option<String>>),
    Instants(Vec<DateTime<Utc>>),
    Doubles(Vec<f64>),
    OptionalDoubles(Vec<Option<f64>>),
}

/// `sql` refers to `values` as `$1`, `$2`, …; a placeholder may appear more than once (each
/// appearance is sent as a parameter of its own).
#[derive(Debug, Clone)]
pub struct Statement {
    sql: &'static str,
    values: Vec<Bound>,
}

impl Statement {
    pub fn new(sql: &'static str, values: Vec<Bound>) -> Self {
        Statement { sql, values }
    }
}

impl QueryId for Statement {
    type QueryId = ();
    // Cached by its SQL text, which is a constant.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for Statement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        let mut rest = self.sql;
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
                Bound::BigInts(v) => out.push_bind_param::<Array<BigInt>, _>(v)?,
                Bound::Texts(v) => out.push_bind_param::<Array<Text>, _>(v)?,
                Bound::OptionalTexts(v) => out.push_bind_param::<Array<Nullable<Text>>, _>(v)?,
                Bound::Instants(v) => out.push_bind_param::<Array<Timestamptz>, _>(v)?,
                Bound::Doubles(v) => out.push_bind_param::<Array<Double>, _>(v)?,
                Bound::OptionalDoubles(v) => {
                    out.push_bind_param::<Array<Nullable<Double>>, _>(v)?
                }
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
}
