//! History queries: instance, type and system `_history`, newest first, keyset-paged by sequence.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;

use super::resources::Version;
use super::schema::resource_versions;
use super::search::like_escaped;
use super::{Pool, connection};
use crate::error::ApiResult;

#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// Only versions written at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Keyset cursor: only versions older than this sequence number.
    pub before_seq: Option<i64>,
    pub count: i64,
    /// Only versions whose content is in this patient's compartment (a patient token's
    /// type or system history); deletions, having no content, are left out.
    pub compartment: Option<String>,
}

#[derive(Debug)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    /// The cursor of the next (older) page, when there is one.
    pub next_cursor: Option<i64>,
    pub total: i64,
}

type Boxed<'a> = resource_versions::BoxedQuery<'a, Pg>;

fn scoped(query: &HistoryQuery) -> Boxed<'_> {
    let mut select = resource_versions::table.into_boxed();
    match &query.scope {
        HistoryScope::System => {}
        HistoryScope::Type(resource_type) => {
            select = select.filter(resource_versions::resource_type.eq(resource_type));
        }
        HistoryScope::Instance(resource_type, id) => {
            select = select
                .filter(resource_versions::resource_type.eq(resource_type))
                .filter(resource_versions::id.eq(id));
        }
    }
    if let Some(since) = query.since {
        select = select.filter(resource_versions::last_updated.ge(since));
    }
    if let Some(patient) = &query.compartment {
        select = select.filter(version_in_compartment(patient));
    }
    select
}

/// The compartment rule of `auth::access::in_patient_compartment`, on a stored version: the
/// Patient itself, a Coverage whose beneficiary is the patient, any other resource whose
/// `subject` or `patient` refers to the patient (relatively or by absolute URL).
fn version_in_compartment(
    patient: &str,
) -> Box<dyn BoxableExpression<resource_versions::table, Pg, SqlType = Bool>> {
    let reference = format!("Patient/{patient}");
    let absolute = format!("%/{}", like_escaped(&reference));
    Box::new(
        sql::<Bool>("((resource_type = 'Patient' AND id = ")
            .bind::<Text, _>(patient.to_string())
            .sql(") OR (resource_type = 'Coverage' AND (content #>> '{beneficiary,reference}' = ")
            .bind::<Text, _>(reference.clone())
            .sql(" OR content #>> '{beneficiary,reference}' LIKE ")
            .bind::<Text, _>(absolute.clone())
            .sql(")) OR (resource_type NOT IN ('Patient', 'Coverage') AND (content #>> '{subject,reference}' = ")
            .bind::<Text, _>(reference.clone())
            .sql(" OR content #>> '{subject,reference}' LIKE ")
            .bind::<Text, _>(absolute.clone())
            .sql(" OR content #>> '{patient,reference}' = ")
            .bind::<Text, _>(reference)
            .sql(" OR content #>> '{patient,reference}' LIKE ")
            .bind::<Text, _>(absolute)
            .sql(")))"),
    )
}

pub async fn history(pool: &Pool, query: &HistoryQuery) -> ApiResult<HistoryPage> {
    let mut conn = connection(pool).await?;
    let total: i64 = scoped(query).count().get_result(&mut conn).await?;
    let mut page = scoped(query);
    if let Some(before) = query.before_seq {
        page = page.filter(resource_versions::seq.lt(before));
    }
    let mut rows: Vec<(i64, Version)> = page
        .order(resource_versions::seq.desc())
        .limit(query.count + 1)
        .select((resource_versions::seq, Version::as_select()))
        .load(&mut conn)
        .await?;
    let next_cursor = if rows.len() as i64 > query.count {
        rows.truncate(query.count as usize);
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Ok(HistoryPage {
        versions: rows.into_iter().map(|(_, version)| version).collect(),
        next_cursor,
        total,
    })
}
