//! Outcome measures of one patient (pain change from baseline and the IMMPACT category, PEG
//! and PHQ-9 change with response and remission, infusions and dose), as figures and as the
//! FHIR Parameters `Patient/{id}/$outcomes` returns.

use chrono::{DateTime, Utc};

/// IMMPACT categories of pain reduction from baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PainResponse {
    /// Less than 30% reduction (or worse).
    Minimal,
    /// At least 30%.
    Moderate,
    /// At least 50%.
    Substantial,
}

/// Baseline, latest and change of one score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreChange {
    pub baseline: f64,
    pub baseline_at: DateTime<Utc>,
    pub latest: f64,
    pub latest_at: DateTime<Utc>,
    /// baseline - latest (positive is better).
    pub absolute_change: f64,
    /// (baseline - latest) / baseline x 100; `None` when the baseline is 0.
    pub percent_change: Option<f64>,
}

/// Everything `$outcomes` reports for one patient.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientOutcomes {
    /// Pain NRS: baseline is the pre-infusion score of the first infusion of the current
    /// series, latest the most recent score.
    pub pain: Option<ScoreChange>,
    pub pain_response: Option<PainResponse>,
    pub peg: Option<ScoreChange>,
    pub phq9: Option<ScoreChange>,
    /// PHQ-9 reduced by at least 50%.
    pub phq9_response: Option<bool>,
    /// Latest PHQ-9 below 5.
    pub phq9_remission: Option<bool>,
    pub infusions_given: usize,
    pub series_count: usize,
    /// Sum of the doses given, in mg.
    pub cumulative_dose_mg: f64,
    pub days_since_last_infusion: Option<i64>,
}
