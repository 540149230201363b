//! `Patient/{id}/$everything` in one statement per page: the patient's compartment and the
//! resources outside any compartment that it refers to, as one stream in creation order,
//! paged by keyset on `created_seq`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Jsonb};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::error::ApiResult;
use crate::fhir::compartment::{patient_compartment_types, patient_links};
use crate::fhir::everything::{CareWindow, care_date_parameter};

/// The page statement, written once from the compartment definition so that every table it
/// names is one type's partition and every reference lookup uses the `(param, target_id,
/// …)` index; kept prepared on each connection. Placeholders:
///
/// `$1` patient id, `$2` the compartment types the caller may read, `$3`/`$4` the care
/// window (either may be NULL), `$5` the compartment types returned, `$6` the referenced
/// types returned, `$7` the `created_seq` after which the page starts, `$8` `_since`
/// (NULL: none), `$9` the row limit.
///
/// `members` are the Patient itself and the resources whose linking references point at
/// it (one arm per type); with a care window, a resource of a type with a care date is kept
/// when one of its dates overlaps the window or it has none. `entries` are the members of
/// the returned types (matches) and, once each, the live resources of the referenced types
/// that the members' reference index rows point at (includes; each target looked up once).
/// Both are computed whole (`MATERIALIZED`, so the cursor is not pushed into them) and the
/// page is the entries after the cursor, in order, joined to their content until the limit
/// is reached: a page holds exactly the limit until the last, and a referenced resource
/// comes once, at its own place in the order, whichever page its referrers are on.
static PAGE: LazyLock<String> = LazyLock::new(page_statement);

fn page_statement() -> String {
    let mut arms = vec![
        "SELECT r.resource_type, r.created_seq AS seq FROM resources r \
         WHERE r.resource_type = 'Patient' AND r.id = $1 AND NOT r.deleted AND 'Patient' = ANY($2)"
            .to_string(),
    ];
    arms.extend(patient_compartment_types().map(member_arm));
    format!(
        "WITH members AS MATERIALIZED ({}), \
         entries AS MATERIALIZED ( \
             SELECT m.resource_type, m.seq, false AS included FROM members m WHERE m.resource_type = ANY($5) \
           UNION ALL \
             SELECT t.resource_type, t.created_seq, true FROM ( \
                 SELECT DISTINCT y.target_type, y.target_id FROM members m \
                 JOIN search_reference y ON y.resource_type = m.resource_type AND y.resource_seq = m.seq \
                 WHERE y.target_type = ANY($6)) y \
             JOIN resources t ON t.resource_type = y.target_type AND t.id = y.target_id \
             WHERE NOT t.deleted) \
         SELECT e.seq, e.included, r.content \
         FROM (SELECT * FROM entries WHERE seq > $7 ORDER BY seq) e \
         CROSS JOIN LATERAL (SELECT r.content FROM resources r \
             WHERE r.resource_type = e.resource_type AND r.created_seq = e.seq AND NOT r.deleted \
               AND ($8::timestamptz IS NULL OR r.last_updated >= $8)) r \
         ORDER BY e.seq LIMIT $9",
        arms.join(" UNION ")
    )
}

/// The members of one type: its resources whose linking references point at the patient.
fn member_arm(resource_type: &str) -> String {
    let links: Vec<String> = patient_links(resource_type)
        .iter()
        .map(|param| literal(param))
        .collect();
    let of_type = literal(resource_type);
    let mut arm = format!(
        "SELECT x.resource_type, x.resource_seq FROM search_reference x \
         WHERE x.resource_type = {of_type} AND x.param IN ({}) \
         AND x.target_type = 'Patient' AND x.target_id = $1 AND {of_type} = ANY($2)",
        links.join(", ")
    );
    if let Some(care_date) = care_date_parameter(resource_type) {
        let dates = format!(
            "SELECT 1 FROM search_date d WHERE d.resource_type = {of_type} \
             AND d.resource_seq = x.resource_seq AND d.param = {}",
            literal(care_date)
        );
        arm.push_str(&format!(
            " AND (($3::timestamptz IS NULL AND $4::timestamptz IS NULL) OR NOT EXISTS ({dates}) \
             OR EXISTS ({dates} AND d.finish > coalesce($3, '-infinity') \
             AND d.start < coalesce($4, 'infinity')))"
        ));
    }
    arm
}

/// A type or parameter name of the definitions as an SQL literal; they are letters, digits
/// and dashes, never client input.
fn literal(name: &str) -> String {
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "not a definition name: {name}"
    );
    format!("'{name}'")
}

#[derive(Debug, Clone)]
pub struct EverythingQuery {
    pub patient: String,
    /// The compartment types the caller may read: only their resources are members,
    /// returned, and followed to what they refer to.
    pub readable: Vec<String>,
    /// The compartment types returned (as matches).
    pub returned: Vec<String>,
    /// The types outside any compartment returned when members refer to them (as includes).
    pub referenced: Vec<String>,
    pub care: CareWindow,
    pub since: Option<DateTime<Utc>>,
    pub count: i64,
    /// The `created_seq` of the previous page's last entry.
    pub after: Option<i64>,
}

#[derive(Debug)]
pub struct Entry {
    pub seq: i64,
    /// Referenced by the compartment rather than in it.
    pub included: bool,
    pub content: Value,
}

#[derive(Debug)]
pub struct EverythingPage {
    pub entries: Vec<Entry>,
    /// Where the next page starts, if there is one.
    pub next: Option<i64>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Bool)]
    included: bool,
    #[diesel(sql_type = Jsonb)]
    content: Value,
}

#[tracing::instrument(skip_all, fields(patient = %query.patient))]
pub async fn page(pool: &Pool, query: &EverythingQuery) -> ApiResult<EverythingPage> {
    let statement = Statement::new(
        PAGE.as_str(),
        vec![
            Bound::Text(query.patient.clone()),
            Bound::Texts(query.readable.clone()),
            Bound::OptionalInstant(query.care.from),
            Bound::OptionalInstant(query.care.to),
            Bound::Texts(query.returned.clone()),
            Bound::Texts(query.referenced.clone()),
            Bound::BigInt(query.after.unwrap_or(0)),
            Bound::OptionalInstant(query.since),
            Bound::BigInt(query.count + 1),
        ],
    );
    let mut conn = connection(pool).await?;
    let rows: Vec<Row> = statement.load(&mut conn).await?;
    let has_more = rows.len() as i64 > query.count;
    let entries: Vec<Entry> = rows
        .into_iter()
        .take(query.count as usize)
        .map(|row| Entry {
            seq: row.seq,
            included: row.included,
            content: row.content,
        })
        .collect();
    let next = has_more.then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(EverythingPage { entries, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_has_one_member_arm_per_compartment_type() {
        let text = page_statement();
        assert!(
            text.contains(
                "x.resource_type = 'Observation' AND x.param IN ('subject', 'performer')"
            )
        );
        assert!(text.contains("x.resource_type = 'Patient' AND x.param IN ('link')"));
        assert!(text.contains(
            "d.resource_type = 'Encounter' AND d.resource_seq = x.resource_seq AND d.param = 'date'"
        ));
        assert!(!text.contains("'Practitioner'"));
        assert_eq!(
            text.matches("FROM search_reference x").count(),
            patient_compartment_types().count()
        );
    }
}
