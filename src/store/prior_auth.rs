//! The reads of a prior-authorization package (`clinic::prior_auth`): the patient's record,
//! medication requests, Coverages and questionnaire responses, the Medications and the
//! parties (payors, primary-care physicians, the clinic) they name, in one read-only
//! snapshot so that the package never mixes two states of the record.

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::clinic::{
    TypedContent, compartment_resources_on, into_record, medications_on, referenced_medications,
};
use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::clinic::prior_auth::{PackageSources, party_references};
use crate::error::ApiResult;

const PACKAGE_TYPES: &[&str] = &[
    "MedicationAdministration",
    "Observation",
    "Condition",
    "MedicationRequest",
    "Coverage",
    "QuestionnaireResponse",
];

/// Everything the package of `patient` (as already read) is built from. The compartment of
/// a Coverage is its beneficiary, so only the patient's own Coverages are read.
pub async fn package_sources(
    pool: &Pool,
    patient: Value,
    clinic_organization: Option<&str>,
) -> ApiResult<PackageSources> {
    let patient_id = patient["id"].as_str().unwrap_or_default().to_string();
    let mut pooled = connection(pool).await?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    conn.build_transaction()
        .read_only()
        .repeatable_read()
        .run(
            async |conn: &mut AsyncPgConnection| -> ApiResult<PackageSources> {
                let rows = compartment_resources_on(conn, &patient_id, PACKAGE_TYPES).await?;
                let (mut clinical, others) = into_record(rows);
                let mut sources = PackageSources::default();
                for (resource_type, content) in others {
                    match resource_type.as_str() {
                        "MedicationRequest" => sources.medication_requests.push(content),
                        "Coverage" => sources.coverages.push(content),
                        _ => sources.questionnaire_responses.push(content),
                    }
                }
                let medication_ids = referenced_medications(
                    clinical
                        .administrations
                        .iter()
                        .chain(&sources.medication_requests),
                );
                clinical.medications = medications_on(conn, medication_ids).await?;
                let parties = party_references(&patient, &sources.coverages, clinic_organization);
                sources.parties = live_resources_on(conn, parties).await?;
                sources.clinical = clinical;
                sources.patient = patient;
                Ok(sources)
            },
        )
        .await
}

const LIVE_RESOURCES: &str = "\
SELECT r.resource_type, r.content FROM resources r \
WHERE r.resource_type = ANY($1) AND NOT r.deleted \
  AND (r.resource_type, r.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

/// The live resources among `(type, id)` pairs; missing and deleted ones are left out.
async fn live_resources_on(
    conn: &mut AsyncPgConnection,
    references: Vec<(String, String)>,
) -> ApiResult<Vec<Value>> {
    if references.is_empty() {
        return Ok(Vec::new());
    }
    let (types, ids): (Vec<String>, Vec<String>) = references.into_iter().unzip();
    let rows: Vec<TypedContent> =
        Statement::new(LIVE_RESOURCES, vec![Bound::Texts(types), Bound::Texts(ids)])
            .load(conn)
            .await?;
    Ok(rows.into_iter().map(|row| row.content).collect())
}
