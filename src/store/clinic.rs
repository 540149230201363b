//! The reads and writes of the clinic rules: one patient's infusions, the Observations the
//! rules read, Conditions and referenced Medications; the per-patient infusion lock; and
//! the audit rows of safety overrides.

use diesel::QueryableByName;
use diesel::sql_types::{Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::clinic::codes;
use crate::clinic::config::ClinicConfig;
use crate::clinic::record::{PatientRecord, PatientResources};
use crate::clinic::safety::{self, Assessment, Decision};
use crate::error::{ApiError, ApiResult};
use crate::fhir::fhirpath::reference_target;

/// See `compartment_resources_on`.
const COMPARTMENT_RESOURCES: &str = "\
SELECT r.resource_type, r.content FROM resources r \
WHERE r.resource_type = ANY($1) AND NOT r.deleted AND r.created_seq IN ( \
    SELECT x.resource_seq FROM search_reference x \
    WHERE x.resource_type = r.resource_type AND x.resource_type = ANY($1) AND x.param = 'patient' \
      AND x.target_type = 'Patient' AND x.target_id = $2) \
  AND (r.resource_type <> 'Observation' OR r.created_seq IN ( \
    SELECT t.resource_seq FROM search_token t \
    WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = $3 AND t.code = ANY($4))) \
ORDER BY r.created_seq";

#[derive(QueryableByName)]
pub(super) struct TypedContent {
    #[diesel(sql_type = Text)]
    pub(super) resource_type: String,
    #[diesel(sql_type = Jsonb)]
    pub(super) content: Value,
}

/// The types the clinic rules read: every MedicationAdministration and Condition of the
/// patient, and the Observations with the clinic's LOINC codes.
const RECORD_TYPES: &[&str] = &["MedicationAdministration", "Observation", "Condition"];

/// The live resources of `types` in the patient's compartment (by the `patient` search
/// parameter), as `(type, content)` in creation order; Observations only those with one of
/// the clinic's LOINC codes. One round trip.
pub async fn compartment_resources_on(
    conn: &mut AsyncPgConnection,
    patient_id: &str,
    types: &[&str],
) -> ApiResult<Vec<(String, Value)>> {
    let rows: Vec<TypedContent> = Statement::new(
        COMPARTMENT_RESOURCES,
        vec![
            Bound::Texts(types.iter().map(|t| t.to_string()).collect()),
            Bound::Text(patient_id.to_string()),
            Bound::Text(codes::LOINC.to_string()),
            Bound::Texts(
                codes::OBSERVATION_CODES
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            ),
        ],
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.resource_type, row.content))
        .collect())
}

/// Sorts compartment rows into the record the clinic rules read (without Medications) and
/// the rows of other types.
pub fn into_record(rows: Vec<(String, Value)>) -> (PatientResources, Vec<(String, Value)>) {
    let mut resources = PatientResources::default();
    let mut others = Vec::new();
    for (resource_type, content) in rows {
        match resource_type.as_str() {
            "MedicationAdministration" => resources.administrations.push(content),
            "Observation" => resources.observations.push(content),
            "Condition" => resources.conditions.push(content),
            _ => others.push((resource_type, content)),
        }
    }
    (resources, others)
}

pub async fn patient_resources_on(
    conn: &mut AsyncPgConnection,
    patient_id: &str,
) -> ApiResult<PatientResources> {
    let rows = compartment_resources_on(conn, patient_id, RECORD_TYPES).await?;
    let (mut resources, _) = into_record(rows);
    let medication_ids = referenced_medications(&resources.administrations);
    resources.medications = medications_on(conn, medication_ids).await?;
    Ok(resources)
}

/// `patient_resources_on` on a pooled connection.
pub async fn patient_resources(pool: &Pool, patient_id: &str) -> ApiResult<PatientResources> {
    let mut conn = connection(pool).await?;
    patient_resources_on(&mut conn, patient_id).await
}

/// The ids of the Medications that administrations reference.
pub fn referenced_medications<'a>(
    administrations: impl IntoIterator<Item = &'a Value>,
) -> Vec<String> {
    let mut ids: Vec<String> = administrations
        .into_iter()
        .filter_map(|a| a["medicationReference"]["reference"].as_str())
        .filter_map(reference_target)
        .filter(|(t, _)| *t == "Medication")
        .map(|(_, id)| id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

const MEDICATIONS: &str = "SELECT r.resource_type, r.content FROM resources r \
WHERE r.resource_type = 'Medication' AND r.id = ANY($1) AND NOT r.deleted";

pub async fn medications_on(
    conn: &mut AsyncPgConnection,
    ids: Vec<String>,
) -> ApiResult<Vec<Value>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<TypedContent> = Statement::new(MEDICATIONS, vec![Bound::Texts(ids)])
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.content).collect())
}

/// Serialises infusion writes of one patient until the transaction ends, so two infusions
/// recorded at once are each checked against the other (interval, cumulative dose).
pub async fn lock_patient_infusions(
    conn: &mut AsyncPgConnection,
    patient_id: &str,
) -> ApiResult<()> {
    Statement::new(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        vec![Bound::Text(format!("infusions of Patient/{patient_id}"))],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One overridden rule, as audited.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideRecord {
    pub resource_type: String,
    pub resource_id: String,
    pub version_id: i32,
    pub patient_id: String,
    pub rule: String,
    pub finding: String,
    pub reason: String,
    pub practitioner: String,
}

const INSERT_OVERRIDES: &str = "\
INSERT INTO safety_overrides (resource_type, resource_id, version_id, patient_id, rule, finding, reason, practitioner) \
SELECT $1, $2, $3::integer, $4, rule, finding, $5, $6 FROM unnest($7::text[], $8::text[]) AS o(rule, finding)";

/// Records the overridden rules of one version (all rows share resource, reason and
/// practitioner).
pub async fn record_overrides(
    conn: &mut AsyncPgConnection,
    records: &[OverrideRecord],
) -> ApiResult<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    Statement::new(
        INSERT_OVERRIDES,
        vec![
            Bound::Text(first.resource_type.clone()),
            Bound::Text(first.resource_id.clone()),
            Bound::BigInt(first.version_id as i64),
            Bound::Text(first.patient_id.clone()),
            Bound::Text(first.reason.clone()),
            Bound::Text(first.practitioner.clone()),
            Bound::Texts(records.iter().map(|r| r.rule.clone()).collect()),
            Bound::Texts(records.iter().map(|r| r.finding.clone()).collect()),
        ],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The safety assessment of an administration, when the rules apply to it (see
/// `safety::patient_to_check`), against the patient's record as this connection sees it.
/// With `lock`, infusion writes of that patient wait for this transaction.
pub async fn assess_infusion_on(
    conn: &mut AsyncPgConnection,
    config: &ClinicConfig,
    administration: &Value,
    previous: Option<&Value>,
    lock: bool,
) -> ApiResult<Option<(String, Assessment)>> {
    let medications = medications_on(conn, referenced_medications([administration])).await?;
    let Some((patient, infusion)) =
        safety::patient_to_check(administration, previous, &medications, config)
    else {
        return Ok(None);
    };
    if lock {
        lock_patient_infusions(conn, &patient).await?;
    }
    let resources = patient_resources_on(conn, &patient).await?;
    let record = PatientRecord::from_resources(&resources, config);
    Ok(Some((patient, safety::assess(&infusion, &record, config))))
}

/// The write path's step for MedicationAdministrations: refuses an unsafe infusion (422,
/// every failed rule), or stores the computed figures on it and returns what to audit.
pub async fn enforce_infusion_rules(
    conn: &mut AsyncPgConnection,
    config: &ClinicConfig,
    administration: &mut Value,
    previous: Option<&Value>,
) -> ApiResult<Option<(String, Decision)>> {
    let Some((patient, assessment)) =
        assess_infusion_on(conn, config, administration, previous, true).await?
    else {
        return Ok(None);
    };
    let decision = safety::decide(administration, &assessment).map_err(ApiError::Unprocessable)?;
    Ok(Some((patient, decision)))
}

/// `assess_infusion_on` on a pooled connection, without locking (for `$validate`).
pub async fn assess_infusion(
    pool: &Pool,
    config: &ClinicConfig,
    administration: &Value,
) -> ApiResult<Option<(String, Assessment)>> {
    let mut conn = connection(pool).await?;
    assess_infusion_on(&mut conn, config, administration, None, false).await
}
