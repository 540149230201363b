//! Clinic-level outcomes over the whole population, in one statement over the index tables:
//! the patients with a ketamine infusion started in a range, and how their pain score moved
//! from the last one at or before their first infusion in that range to the latest after it.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Nullable};
use diesel_async::RunQueryDsl;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::clinic::codes;
use crate::error::ApiResult;

/// RxNorm, and its ingredient code for ketamine.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const KETAMINE_INGREDIENT: &str = "6130";

/// The partitions are named directly (`ensure_resource_type_partitions` names them
/// `<table>_<type>`): through the parent, the `resource_type` filter stays on every scan
/// and rules out index-only scans. Statuses are excluded by anti-join on the few rows that
/// have an excluded one (both statuses are required, so not excluded is included).
/// `treated`: per patient, the first ketamine infusion given (in progress or completed)
/// that started in `[$3, $4)`. `pain`: the recorded pain scores of those patients, found
/// from the patient (reference index) and narrowed by code. `ranked` numbers the scores
/// of each patient newest first, separately at-or-before and after the first infusion;
/// only the two picked rows are read from `resources` for their value (pain scores are
/// `valueInteger`, which the quantity index does not hold). A responder's reduction is
/// compared as `(baseline - follow-up) * 100 >= k * baseline`, exact for integer scores.
const CLINIC_OUTCOMES: &str = "\
WITH treated AS MATERIALIZED ( \
    SELECT p.target_id AS patient_id, min(d.start) AS first_at \
    FROM search_token_medicationadministration c \
    JOIN search_date_medicationadministration d ON d.resource_seq = c.resource_seq \
         AND d.param = 'effective-time' \
    JOIN search_reference_medicationadministration p ON p.resource_seq = c.resource_seq \
         AND p.param = 'patient' AND p.target_type = 'Patient' \
    WHERE c.param = 'code' AND c.system = $1 AND c.code = $2 AND d.start >= $3 AND d.start < $4 \
      AND NOT EXISTS (SELECT 1 FROM search_token_medicationadministration s \
          WHERE s.resource_seq = c.resource_seq AND s.param = 'status' \
            AND s.code IN ('not-done', 'on-hold', 'entered-in-error', 'stopped', 'unknown')) \
    GROUP BY p.target_id), \
pain AS ( \
    SELECT p.target_id AS patient_id, d.start AS at, c.resource_seq \
    FROM search_token_observation c \
    JOIN search_reference_observation p ON p.resource_seq = c.resource_seq \
         AND p.param = 'patient' AND p.target_type = 'Patient' \
    JOIN search_date_observation d ON d.resource_seq = c.resource_seq AND d.param = 'date' \
    WHERE c.param = 'code' AND c.system = $5 AND c.code = $6 \
      AND NOT EXISTS (SELECT 1 FROM search_token_observation s \
          WHERE s.resource_seq = c.resource_seq AND s.param = 'status' \
            AND s.code IN ('registered', 'cancelled', 'entered-in-error', 'unknown'))), \
picked AS ( \
    SELECT DISTINCT ON (t.patient_id, x.at > t.first_at) \
           t.patient_id, x.at > t.first_at AS after, x.resource_seq \
    FROM treated t JOIN pain x USING (patient_id) \
    ORDER BY t.patient_id, x.at > t.first_at, x.at DESC, x.resource_seq DESC), \
scores AS ( \
    SELECT k.patient_id, \
           max(v.score) FILTER (WHERE NOT k.after) AS baseline, \
           max(v.score) FILTER (WHERE k.after) AS follow_up \
    FROM picked k \
    JOIN resources_observation o ON o.created_seq = k.resource_seq \
    CROSS JOIN LATERAL (SELECT coalesce((o.content ->> 'valueInteger')::float8, \
                                        (o.content #>> '{valueQuantity,value}')::float8) AS score) v \
    GROUP BY k.patient_id), \
paired AS ( \
    SELECT t.patient_id, s.baseline, s.follow_up, \
           s.baseline IS NOT NULL AND s.follow_up IS NOT NULL AS followed_up, \
           s.baseline > 0 AND s.follow_up IS NOT NULL AS evaluable \
    FROM treated t LEFT JOIN scores s USING (patient_id)) \
SELECT count(*) AS patients_treated, \
       count(*) FILTER (WHERE followed_up) AS patients_with_follow_up, \
       count(*) FILTER (WHERE evaluable) AS patients_evaluable, \
       count(*) FILTER (WHERE evaluable AND (baseline - follow_up) * 100 >= 30 * baseline) AS responders_30, \
       count(*) FILTER (WHERE evaluable AND (baseline - follow_up) * 100 >= 50 * baseline) AS responders_50, \
       avg((baseline - follow_up) / baseline * 100) FILTER (WHERE evaluable) AS mean_percent_change \
FROM paired";

/// The clinic's figures for infusions started in a range.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct ClinicOutcomes {
    /// Patients with at least one ketamine infusion given that started in the range.
    #[diesel(sql_type = BigInt)]
    pub patients_treated: i64,
    /// Of those, patients with a pain score at or before their first infusion in the range
    /// (the baseline) and one after it (the follow-up, the latest).
    #[diesel(sql_type = BigInt)]
    pub patients_with_follow_up: i64,
    /// Of those, patients whose baseline is above 0 (a percent change is defined): the
    /// denominator of the responder rates and of the mean.
    #[diesel(sql_type = BigInt)]
    pub patients_evaluable: i64,
    /// Pain reduced by at least 30% (IMMPACT moderate or better).
    #[diesel(sql_type = BigInt)]
    pub responders_30: i64,
    /// Pain reduced by at least 50% (IMMPACT substantial).
    #[diesel(sql_type = BigInt)]
    pub responders_50: i64,
    /// Mean of (baseline - follow-up) / baseline x 100; `None` without evaluable patients.
    #[diesel(sql_type = Nullable<Double>)]
    pub mean_percent_change: Option<f64>,
}

impl ClinicOutcomes {
    /// `responders` as a percentage of the evaluable patients; `None` when there are none.
    pub fn rate(&self, responders: i64) -> Option<f64> {
        (self.patients_evaluable > 0)
            .then(|| responders as f64 / self.patients_evaluable as f64 * 100.0)
    }
}

/// The figures for infusions started in `[from, to)`.
pub async fn clinic_outcomes(
    pool: &Pool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<ClinicOutcomes> {
    let mut conn = connection(pool).await?;
    let outcomes = Statement::new(
        CLINIC_OUTCOMES,
        vec![
            Bound::Text(RXNORM.to_string()),
            Bound::Text(KETAMINE_INGREDIENT.to_string()),
            Bound::Instant(from),
            Bound::Instant(to),
            Bound::Text(codes::LOINC.to_string()),
            Bound::Text(codes::PAIN_SEVERITY.to_string()),
        ],
    )
    .get_result(&mut conn)
    .await?;
    Ok(outcomes)
}
