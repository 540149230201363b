//! Writing the outcome facts (`clinic_facts`, see `clinic::facts`): replaced with a
//! resource's search index rows in the transaction that writes its version, inserted by the
//! bulk path, rebuilt by reindex.

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::clinic::{medications_on, referenced_medications};
use super::statement::{Bound, Statement};
use crate::clinic::config::KetamineCodes;
use crate::clinic::facts::{OutcomeFact, has_facts, outcome_facts};
use crate::error::ApiResult;

/// The facts of resources of one type, with the Medications their administrations
/// reference read from the database (one query, only when one is referenced).
pub async fn facts_of(
    conn: &mut AsyncPgConnection,
    resource_type: &str,
    contents: &[&Value],
    ketamine: &KetamineCodes,
) -> ApiResult<Vec<Vec<OutcomeFact>>> {
    if !has_facts(resource_type) {
        return Ok(vec![Vec::new(); contents.len()]);
    }
    let medications = match resource_type {
        "MedicationAdministration" => {
            medications_on(conn, referenced_medications(contents.iter().copied())).await?
        }
        _ => Vec::new(),
    };
    Ok(contents
        .iter()
        .map(|content| outcome_facts(resource_type, content, &medications, ketamine))
        .collect())
}

/// Replaces the facts of one resource (`facts` empty for a deletion), in one statement.
pub async fn replace(
    conn: &mut AsyncPgConnection,
    resource_seq: i64,
    existed: bool,
    facts: &[OutcomeFact],
) -> ApiResult<()> {
    let deleted = if existed {
        vec![resource_seq]
    } else {
        Vec::new()
    };
    write_rows(conn, &deleted, &[(resource_seq, facts)]).await
}

/// Deletes the facts of the resources `deleted`, then inserts the facts of `inserted`,
/// in one statement (the statement's DELETE does not see the rows its INSERT adds).
pub async fn write_rows(
    conn: &mut AsyncPgConnection,
    deleted: &[i64],
    inserted: &[(i64, &[OutcomeFact])],
) -> ApiResult<()> {
    let facts = inserted
        .iter()
        .flat_map(|(seq, facts)| facts.iter().map(move |fact| (*seq, fact)));
    let (mut seqs, mut patients, mut kinds, mut ats, mut values) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (seq, fact) in facts {
        seqs.push(seq);
        patients.push(fact.patient_id.clone());
        kinds.push(fact.kind.code().to_string());
        ats.push(fact.at);
        values.push(fact.value);
    }
    if seqs.is_empty() && deleted.is_empty() {
        return Ok(());
    }
    Statement::new(
        "WITH deleted AS (DELETE FROM clinic_facts WHERE resource_seq = ANY($6)) \
         INSERT INTO clinic_facts (resource_seq, patient_id, kind, at, value) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[])",
        vec![
            Bound::BigInts(seqs),
            Bound::Texts(patients),
            Bound::Texts(kinds),
            Bound::Instants(ats),
            Bound::OptionalDoubles(values),
            Bound::BigInts(deleted.to_vec()),
        ],
    )
    .execute(conn)
    .await?;
    Ok(())
}
