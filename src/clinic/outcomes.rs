//! Outcome measures of one patient (pain change from baseline and the IMMPACT category, PEG
//! and PHQ-9 change with response and remission, infusions and dose), as figures, as the
//! FHIR Parameters `Patient/{id}/$outcomes` returns, and as the sentences of a summary.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::codes;
use super::config::ClinicConfig;
use super::record::{PatientRecord, Reading, ReadingKind};
use super::series::group;
use crate::fhir::dates::local_date;
use crate::fhir::resource::instant;

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
    /// The Observations the two scores come from.
    pub baseline_observation: Option<String>,
    pub latest_observation: Option<String>,
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
    /// Sum of the doses given, in mg (those whose amount could be worked out).
    pub cumulative_dose_mg: f64,
    /// Infusions whose dose in mg is unknown (per kg without a weight in the year before).
    pub infusions_without_dose: usize,
    pub days_since_last_infusion: Option<i64>,
}

/// The outcomes of one patient's record at `now`. Baselines are taken at the first infusion
/// of the current (latest) series: pain is the latest score at or before its start (none
/// without infusions); PEG and PHQ-9 the same, falling back to the earliest score.
pub fn patient_outcomes(
    record: &PatientRecord,
    config: &ClinicConfig,
    now: DateTime<Utc>,
) -> PatientOutcomes {
    let series = group(&record.infusions, &config.series);
    let series_start = series.last().map(|s| s.first().start);
    let pain = series_start.and_then(|start| {
        let baseline = record
            .readings_of(ReadingKind::PainSeverity)
            .rev()
            .find(|r| r.at <= start)?;
        score_change(
            baseline,
            record.readings_of(ReadingKind::PainSeverity).next_back()?,
        )
    });
    let peg = questionnaire_change(record, ReadingKind::PainInterference, series_start);
    let phq9 = questionnaire_change(record, ReadingKind::Depression, series_start);
    let mut cumulative_dose_mg = 0.0;
    let mut infusions_without_dose = 0;
    for infusion in &record.infusions {
        match infusion.milligrams(record.weight_at(infusion)) {
            Some(mg) => cumulative_dose_mg += mg,
            None => infusions_without_dose += 1,
        }
    }
    PatientOutcomes {
        pain_response: pain
            .as_ref()
            .and_then(|p| p.percent_change)
            .map(PainResponse::of_percent_change),
        pain,
        peg,
        phq9_response: phq9
            .as_ref()
            .and_then(|p| p.percent_change)
            .map(|percent| percent >= 50.0),
        phq9_remission: phq9.as_ref().map(|p| p.latest < 5.0),
        phq9,
        infusions_given: record.infusions.len(),
        series_count: series.len(),
        cumulative_dose_mg,
        infusions_without_dose,
        days_since_last_infusion: record.infusions.last().map(|i| (now - i.start).num_days()),
    }
}

impl PainResponse {
    /// The IMMPACT category of a percent reduction.
    pub fn of_percent_change(percent: f64) -> Self {
        if percent >= 50.0 {
            PainResponse::Substantial
        } else if percent >= 30.0 {
            PainResponse::Moderate
        } else {
            PainResponse::Minimal
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            PainResponse::Minimal => "minimal",
            PainResponse::Moderate => "moderate",
            PainResponse::Substantial => "substantial",
        }
    }
}

/// Baseline at the series start (or the earliest score), latest the most recent score.
fn questionnaire_change(
    record: &PatientRecord,
    kind: ReadingKind,
    series_start: Option<DateTime<Utc>>,
) -> Option<ScoreChange> {
    let at_start =
        series_start.and_then(|start| record.readings_of(kind).rev().find(|r| r.at <= start));
    let baseline = at_start.or_else(|| record.readings_of(kind).next())?;
    score_change(baseline, record.readings_of(kind).next_back()?)
}

fn score_change(baseline: &Reading, latest: &Reading) -> Option<ScoreChange> {
    let absolute_change = baseline.value - latest.value;
    Some(ScoreChange {
        baseline: baseline.value,
        baseline_at: baseline.at,
        latest: latest.value,
        latest_at: latest.at,
        absolute_change,
        percent_change: (baseline.value != 0.0).then(|| absolute_change / baseline.value * 100.0),
        baseline_observation: baseline.observation_id.clone(),
        latest_observation: latest.observation_id.clone(),
    })
}

/// Percentages and doses are reported to one decimal, scores as recorded.
pub fn rounded(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The outcomes in sentences a reviewer reads (dates in `zone`): pain, PEG and PHQ-9 from
/// baseline to latest with their response categories, and the infusions given, the latest
/// at `last_infusion`.
pub fn summary(
    outcomes: &PatientOutcomes,
    last_infusion: Option<DateTime<Utc>>,
    zone: Tz,
) -> Vec<String> {
    let mut texts = Vec::new();
    if let Some(pain) = &outcomes.pain {
        let mut text = score_text("Pain severity (NRS 0-10, LOINC 72514-3)", pain, zone);
        if let Some(response) = outcomes.pain_response {
            text.push_str(&format!(
                "; IMMPACT response: {} (moderate from 30%, substantial from 50% reduction)",
                response.code()
            ));
        }
        texts.push(text);
    }
    if let Some(peg) = &outcomes.peg {
        texts.push(score_text(
            "PEG pain interference (LOINC 91147-9)",
            peg,
            zone,
        ));
    }
    if let Some(phq9) = &outcomes.phq9 {
        let mut text = score_text("PHQ-9 depression (LOINC 44261-6)", phq9, zone);
        let yes_no = |value: bool| if value { "yes" } else { "no" };
        if let Some(response) = outcomes.phq9_response {
            text.push_str(&format!(
                "; response (50% reduction or more): {}",
                yes_no(response)
            ));
        }
        if let Some(remission) = outcomes.phq9_remission {
            text.push_str(&format!("; remission (below 5): {}", yes_no(remission)));
        }
        texts.push(text);
    }
    texts.push(infusions_text(outcomes, last_infusion, zone));
    texts
}

fn score_text(label: &str, change: &ScoreChange, zone: Tz) -> String {
    let points = rounded(change.absolute_change.abs(), 2);
    let direction = if change.absolute_change > 0.0 {
        "lower"
    } else {
        "higher"
    };
    let change_text = match change.percent_change {
        _ if change.absolute_change == 0.0 => "unchanged".to_string(),
        Some(percent) if percent >= 0.0 => {
            format!(
                "{points} points {direction} ({}% reduction)",
                rounded(percent, 1)
            )
        }
        Some(percent) => format!(
            "{points} points {direction} ({}% increase)",
            rounded(-percent, 1)
        ),
        None => format!("{points} points {direction} (no percentage from a baseline of 0)"),
    };
    format!(
        "{label}: {} at baseline on {}, {} latest on {}; {change_text}",
        rounded(change.baseline, 2),
        local_date(change.baseline_at, zone),
        rounded(change.latest, 2),
        local_date(change.latest_at, zone),
    )
}

fn infusions_text(
    outcomes: &PatientOutcomes,
    last_infusion: Option<DateTime<Utc>>,
    zone: Tz,
) -> String {
    let Some(latest) = last_infusion else {
        return "Ketamine infusions: none given yet".into();
    };
    let mut text = format!(
        "Ketamine infusions: {} given in {} series, {} mg in total; the latest on {}",
        outcomes.infusions_given,
        outcomes.series_count,
        rounded(outcomes.cumulative_dose_mg, 1),
        local_date(latest, zone),
    );
    if outcomes.infusions_without_dose > 0 {
        text.push_str(&format!(
            " ({} with a dose per kg and no weight on record, not summed)",
            outcomes.infusions_without_dose
        ));
    }
    text
}

/// The FHIR R4 Parameters resource `Patient/{id}/$outcomes` returns. Unknown values are
/// left out.
pub fn to_parameters(outcomes: &PatientOutcomes, patient_id: &str) -> Value {
    let mut parameters = vec![json!({
        "name": "patient",
        "valueReference": {"reference": format!("Patient/{patient_id}")}
    })];
    let mut score = |prefix: &str, change: &Option<ScoreChange>| {
        let Some(change) = change else {
            return;
        };
        parameters.extend([
            json!({"name": format!("{prefix}-baseline"), "valueDecimal": change.baseline}),
            json!({"name": format!("{prefix}-baseline-date"), "valueDateTime": instant(change.baseline_at)}),
            json!({"name": format!("{prefix}-latest"), "valueDecimal": change.latest}),
            json!({"name": format!("{prefix}-latest-date"), "valueDateTime": instant(change.latest_at)}),
            json!({"name": format!("{prefix}-absolute-change"), "valueDecimal": change.absolute_change}),
        ]);
        if let Some(percent) = change.percent_change {
            parameters.push(json!({
                "name": format!("{prefix}-percent-change"),
                "valueDecimal": rounded(percent, 1)
            }));
        }
    };
    score("pain", &outcomes.pain);
    score("peg", &outcomes.peg);
    score("phq9", &outcomes.phq9);
    if let Some(response) = outcomes.pain_response {
        parameters.push(json!({"name": "pain-response", "valueCode": response.code()}));
    }
    if let Some(response) = outcomes.phq9_response {
        parameters.push(json!({"name": "phq9-response", "valueBoolean": response}));
    }
    if let Some(remission) = outcomes.phq9_remission {
        parameters.push(json!({"name": "phq9-remission", "valueBoolean": remission}));
    }
    parameters.push(json!({"name": "infusions-given", "valueInteger": outcomes.infusions_given}));
    parameters.push(json!({"name": "series-count", "valueInteger": outcomes.series_count}));
    parameters.push(json!({
        "name": "cumulative-dose",
        "valueQuantity": {
            "value": rounded(outcomes.cumulative_dose_mg, 1),
            "unit": "mg",
            "system": codes::UCUM,
            "code": "mg"
        }
    }));
    if outcomes.infusions_without_dose > 0 {
        parameters.push(json!({
            "name": "infusions-without-known-dose",
            "valueInteger": outcomes.infusions_without_dose
        }));
    }
    if let Some(days) = outcomes.days_since_last_infusion {
        parameters.push(json!({"name": "days-since-last-infusion", "valueInteger": days}));
    }
    json!({"resourceType": "Parameters", "parameter": parameters})
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::clinic::record::{Dose, Infusion};

    fn day(n: i64, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, hour, minute, 0).unwrap() + Duration::days(n)
    }

    fn reading(kind: ReadingKind, at: DateTime<Utc>, value: f64) -> Reading {
        Reading::new(kind, at, value)
    }

    fn infusion(start: DateTime<Utc>, dose: Dose) -> Infusion {
        Infusion {
            id: None,
            status: "completed".into(),
            start,
            end: Some(start + Duration::minutes(60)),
            dose: Some(dose),
            rate: None,
            concentration_mg_per_ml: None,
            route: None,
        }
    }

    fn record(mut readings: Vec<Reading>, infusions: Vec<Infusion>) -> PatientRecord {
        readings.sort_by_key(|r| r.at);
        PatientRecord {
            infusions,
            readings,
            diagnoses: Vec::new(),
        }
    }

    use ReadingKind::{BodyWeight, Depression, PainInterference, PainSeverity};

    /// Two series: days 1, 3, 5 and (after a 35-day gap) days 40, 42, 35 mg each (the last
    /// two as 0.5 mg/kg of 70 kg).
    fn two_series() -> PatientRecord {
        record(
            vec![
                reading(BodyWeight, day(0, 9, 0), 70.0),
                reading(PainSeverity, day(-10, 9, 0), 9.0),
                reading(PainSeverity, day(1, 9, 50), 8.0),
                reading(PainSeverity, day(40, 9, 50), 6.0),
                reading(PainSeverity, day(50, 9, 0), 3.0),
                reading(Depression, day(-10, 9, 0), 20.0),
                reading(Depression, day(30, 9, 0), 12.0),
                reading(Depression, day(50, 9, 0), 4.0),
                reading(PainInterference, day(45, 9, 0), 6.0),
                reading(PainInterference, day(50, 9, 0), 4.0),
            ],
            vec![
                infusion(day(1, 10, 0), Dose::Milligrams(35.0)),
                infusion(day(3, 10, 0), Dose::Milligrams(35.0)),
                infusion(day(5, 10, 0), Dose::Milligrams(35.0)),
                infusion(day(40, 10, 0), Dose::MilligramsPerKg(0.5)),
                infusion(day(42, 10, 0), Dose::MilligramsPerKg(0.5)),
            ],
        )
    }

    #[test]
    fn baselines_are_taken_at_the_start_of_the_current_series() {
        let outcomes = patient_outcomes(&two_series(), &ClinicConfig::default(), day(60, 10, 0));
        assert_eq!(
            outcomes.pain,
            Some(ScoreChange {
                baseline: 6.0,
                baseline_at: day(40, 9, 50),
                latest: 3.0,
                latest_at: day(50, 9, 0),
                absolute_change: 3.0,
                percent_change: Some(50.0),
                baseline_observation: None,
                latest_observation: None,
            })
        );
        assert_eq!(outcomes.pain_response, Some(PainResponse::Substantial));
        let phq9 = outcomes.phq9.clone().unwrap();
        assert_eq!(
            (phq9.baseline, phq9.latest, phq9.absolute_change),
            (12.0, 4.0, 8.0)
        );
        assert_eq!(phq9.baseline_at, day(30, 9, 0));
        assert!((phq9.percent_change.unwrap() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(outcomes.phq9_response, Some(true));
        assert_eq!(outcomes.phq9_remission, Some(true));
        // No PEG before the series: the earliest is the baseline.
        let peg = outcomes.peg.clone().unwrap();
        assert_eq!((peg.baseline, peg.latest), (6.0, 4.0));
        assert!((peg.percent_change.unwrap() - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(outcomes.infusions_given, 5);
        assert_eq!(outcomes.series_count, 2);
        assert_eq!(outcomes.cumulative_dose_mg, 175.0);
        assert_eq!(outcomes.infusions_without_dose, 0);
        assert_eq!(outcomes.days_since_last_infusion, Some(18));
    }

    #[test]
    fn parameters_name_every_known_value() {
        let outcomes = patient_outcomes(&two_series(), &ClinicConfig::default(), day(60, 10, 0));
        let parameters = to_parameters(&outcomes, "p1");
        assert_eq!(parameters["resourceType"], "Parameters");
        let value = |name: &str| -> Value {
            let found: Vec<&Value> = parameters["parameter"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == name)
                .collect();
            assert_eq!(found.len(), 1, "{name} in {parameters}");
            let mut entry = found[0].clone();
            entry.as_object_mut().unwrap().remove("name");
            entry
        };
        assert_eq!(
            value("patient"),
            json!({"valueReference": {"reference": "Patient/p1"}})
        );
        assert_eq!(value("pain-baseline"), json!({"valueDecimal": 6.0}));
        assert_eq!(
            value("pain-baseline-date"),
            json!({"valueDateTime": "2026-02-10T09:50:00.000Z"})
        );
        assert_eq!(value("pain-latest"), json!({"valueDecimal": 3.0}));
        assert_eq!(value("pain-absolute-change"), json!({"valueDecimal": 3.0}));
        assert_eq!(value("pain-percent-change"), json!({"valueDecimal": 50.0}));
        assert_eq!(value("pain-response"), json!({"valueCode": "substantial"}));
        assert_eq!(value("phq9-percent-change"), json!({"valueDecimal": 66.7}));
        assert_eq!(value("phq9-response"), json!({"valueBoolean": true}));
        assert_eq!(value("phq9-remission"), json!({"valueBoolean": true}));
        assert_eq!(value("peg-percent-change"), json!({"valueDecimal": 33.3}));
        assert_eq!(value("infusions-given"), json!({"valueInteger": 5}));
        assert_eq!(value("series-count"), json!({"valueInteger": 2}));
        assert_eq!(
            value("cumulative-dose"),
            json!({"valueQuantity": {"value": 175.0, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}})
        );
        assert_eq!(
            value("days-since-last-infusion"),
            json!({"valueInteger": 18})
        );
    }

    #[test]
    fn without_infusions_there_is_no_pain_baseline_and_unknowns_are_left_out() {
        let untreated = record(
            vec![
                reading(PainSeverity, day(0, 9, 0), 7.0),
                reading(Depression, day(0, 9, 0), 10.0),
                reading(Depression, day(7, 9, 0), 8.0),
            ],
            Vec::new(),
        );
        let outcomes = patient_outcomes(&untreated, &ClinicConfig::default(), day(10, 0, 0));
        assert_eq!(outcomes.pain, None);
        assert_eq!(outcomes.pain_response, None);
        assert_eq!(outcomes.peg, None);
        let phq9 = outcomes.phq9.clone().unwrap();
        assert_eq!((phq9.baseline, phq9.latest), (10.0, 8.0));
        assert_eq!(outcomes.phq9_response, Some(false));
        assert_eq!(outcomes.phq9_remission, Some(false));
        assert_eq!(outcomes.infusions_given, 0);
        assert_eq!(outcomes.series_count, 0);
        assert_eq!(outcomes.days_since_last_infusion, None);
        let parameters = to_parameters(&outcomes, "p2");
        let names: Vec<&str> = parameters["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("pain") || n.starts_with("peg"))
        );
        assert!(!names.contains(&"days-since-last-infusion"));
        assert!(names.contains(&"phq9-baseline") && names.contains(&"infusions-given"));
    }

    #[test]
    fn a_zero_baseline_has_no_percent_change_and_no_category() {
        let zero = record(
            vec![
                reading(PainSeverity, day(0, 9, 0), 0.0),
                reading(PainSeverity, day(3, 9, 0), 2.0),
            ],
            vec![infusion(day(0, 10, 0), Dose::Milligrams(35.0))],
        );
        let outcomes = patient_outcomes(&zero, &ClinicConfig::default(), day(3, 10, 0));
        let pain = outcomes.pain.clone().unwrap();
        assert_eq!((pain.absolute_change, pain.percent_change), (-2.0, None));
        assert_eq!(outcomes.pain_response, None);
        let parameters = to_parameters(&outcomes, "p3").to_string();
        assert!(parameters.contains("pain-absolute-change"));
        assert!(
            !parameters.contains("pain-percent-change") && !parameters.contains("pain-response")
        );
    }

    #[test]
    fn a_dose_per_kg_without_a_weight_in_the_year_before_is_not_summed() {
        let old_weight = record(
            vec![reading(BodyWeight, day(-400, 9, 0), 70.0)],
            vec![
                infusion(day(0, 10, 0), Dose::MilligramsPerKg(0.5)),
                infusion(day(2, 10, 0), Dose::Milligrams(30.0)),
            ],
        );
        let outcomes = patient_outcomes(&old_weight, &ClinicConfig::default(), day(2, 10, 0));
        assert_eq!(outcomes.cumulative_dose_mg, 30.0);
        assert_eq!(outcomes.infusions_without_dose, 1);
        assert_eq!(outcomes.days_since_last_infusion, Some(0));
    }

    #[test]
    fn immpact_categories_start_at_30_and_50_percent() {
        assert_eq!(PainResponse::of_percent_change(29.9), PainResponse::Minimal);
        assert_eq!(
            PainResponse::of_percent_change(-20.0),
            PainResponse::Minimal
        );
        assert_eq!(
            PainResponse::of_percent_change(30.0),
            PainResponse::Moderate
        );
        assert_eq!(
            PainResponse::of_percent_change(49.9),
            PainResponse::Moderate
        );
        assert_eq!(
            PainResponse::of_percent_change(50.0),
            PainResponse::Substantial
        );
    }
}
