//! Clinic-level outcomes over the whole population, in one statement over the outcome facts:
//! the patients with a ketamine infusion started in a range, and how their pain score moved
//! from the last one at or before their first infusion in that range to the latest after it.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Nullable};
use diesel_async::RunQueryDsl;

use super::statement::{Bound, Statement};
use super::{Pool, connection};
use crate::error::ApiResult;

/// From `clinic_facts` alone (see `clinic::facts`). `treated`: per patient, the first
/// ketamine infusion given that started in `[$1, $2)`. For each, the baseline is the latest
/// pain score at or before that infusion and the follow-up the latest after it, each one
/// backward step of the partial index of pain scores `(patient_id, at, resource_seq)`, with
/// the value in the index. A responder's reduction is compared as `(baseline - follow-up) * 100 >= k *
/// baseline`, exact for integer scores.
const CLINIC_OUTCOMES: &str = "\
WITH treated AS MATERIALIZED ( \
    SELECT patient_id, min(at) AS first_at FROM clinic_facts \
    WHERE kind = 'infusion' AND at >= $1 AND at < $2 \
    GROUP BY patient_id), \
paired AS ( \
    SELECT t.patient_id, b.value AS baseline, f.value AS follow_up \
    FROM treated t \
    LEFT JOIN LATERAL (SELECT value FROM clinic_facts \
        WHERE kind = 'pain-score' AND patient_id = t.patient_id AND at <= t.first_at \
        ORDER BY at DESC, resource_seq DESC LIMIT 1) b ON true \
    LEFT JOIN LATERAL (SELECT value FROM clinic_facts \
        WHERE kind = 'pain-score' AND patient_id = t.patient_id AND at > t.first_at \
        ORDER BY at DESC, resource_seq DESC LIMIT 1) f ON true), \
judged AS ( \
    SELECT baseline, follow_up, \
           baseline IS NOT NULL AND follow_up IS NOT NULL AS followed_up, \
           baseline > 0 AND follow_up IS NOT NULL AS evaluable \
    FROM paired) \
SELECT count(*) AS patients_treated, \
       count(*) FILTER (WHERE followed_up) AS patients_with_follow_up, \
       count(*) FILTER (WHERE evaluable) AS patients_evaluable, \
       count(*) FILTER (WHERE evaluable AND (baseline - follow_up) * 100 >= 30 * baseline) AS responders_30, \
       count(*) FILTER (WHERE evaluable AND (baseline - follow_up) * 100 >= 50 * baseline) AS responders_50, \
       avg((baseline - follow_up) / baseline * 100) FILTER (WHERE evaluable) AS mean_percent_change \
FROM judged";

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
        vec![Bound::Instant(from), Bound::Instant(to)],
    )
    .get_result(&mut conn)
    .await?;
    Ok(outcomes)
}
