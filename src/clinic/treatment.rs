//! Where a patient is in treatment: the current series, when the next infusion or a
//! re-treatment is due, and whether the patient may be discharged after the latest infusion.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::config::ClinicConfig;
use super::record::{Infusion, PatientRecord, ReadingKind};
use super::series::{self, Series};
use crate::fhir::resource::instant;

/// The treatment phase a patient is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No ketamine given yet.
    NotStarted,
    /// A series is under way and not yet at its target length.
    InSeries,
    /// The series reached its target or lapsed; re-treatment is not yet due.
    SeriesComplete,
    /// The re-treatment (booster) window has opened.
    RetreatmentDue,
}

impl Phase {
    fn code(self) -> &'static str {
        match self {
            Phase::NotStarted => "not-started",
            Phase::InSeries => "in-series",
            Phase::SeriesComplete => "series-complete",
            Phase::RetreatmentDue => "retreatment-due",
        }
    }
}

/// The current series in figures.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    pub number: usize,
    pub infusions: usize,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub cumulative_mg: f64,
    pub cumulative_mg_per_kg: f64,
}

/// Discharge readiness after the latest infusion.
#[derive(Debug, Clone, PartialEq)]
pub struct Discharge {
    pub infusion_id: Option<String>,
    pub ready: bool,
    /// The earliest discharge time, once the infusion has ended.
    pub earliest: Option<DateTime<Utc>>,
    /// Why the patient may not leave yet (empty when ready).
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TreatmentStatus {
    pub phase: Phase,
    pub series_count: usize,
    pub current: Option<SeriesSummary>,
    /// When the next infusion of the series may be given.
    pub next_infusion: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// When re-treatment falls due after the series.
    pub retreatment: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub discharge: Option<Discharge>,
}

fn summary(series: &Series, record: &PatientRecord) -> SeriesSummary {
    let mut cumulative_mg = 0.0;
    let mut cumulative_mg_per_kg = 0.0;
    for infusion in &series.infusions {
        let weight = record.weight_at(infusion);
        cumulative_mg += infusion.milligrams(weight).unwrap_or(0.0);
        cumulative_mg_per_kg += infusion.mg_per_kg(weight).unwrap_or(0.0);
    }
    SeriesSummary {
        number: series.number,
        infusions: series.infusions.len(),
        first: series.first().start,
        last: series.last().start,
        cumulative_mg,
        cumulative_mg_per_kg,
    }
}

pub fn treatment_status(
    record: &PatientRecord,
    config: &ClinicConfig,
    now: DateTime<Utc>,
) -> TreatmentStatus {
    let rule = &config.series;
    let grouped = series::group(&record.infusions, rule);
    let Some(latest) = grouped.last() else {
        return TreatmentStatus {
            phase: Phase::NotStarted,
            series_count: 0,
            current: None,
            next_infusion: None,
            retreatment: None,
            discharge: None,
        };
    };
    let last = latest.last().start;
    let lapsed = now - last > Duration::days(rule.new_series_after_days);
    let complete = latest.infusions.len() >= rule.target_infusions || lapsed;
    let (phase, next_infusion, retreatment) = if complete {
        let (from, to) = rule.retreatment_after_days;
        let window = (last + Duration::days(from), last + Duration::days(to));
        let phase = if now >= window.0 {
            Phase::RetreatmentDue
        } else {
            Phase::SeriesComplete
        };
        (phase, None, Some(window))
    } else {
        let earliest = last + Duration::minutes((rule.min_interval_hours * 60.0) as i64);
        let latest_due = last + Duration::days(rule.max_days_between_in_series);
        (Phase::InSeries, Some((earliest, latest_due)), None)
    };
    TreatmentStatus {
        phase,
        series_count: grouped.len(),
        current: Some(summary(latest, record)),
        next_infusion,
        retreatment,
        discharge: Some(discharge(latest.last(), record, config, now)),
    }
}

/// Rule 5: the configured minutes after the end, with post-infusion vitals within limits.
fn discharge(
    infusion: &Infusion,
    record: &PatientRecord,
    config: &ClinicConfig,
    now: DateTime<Utc>,
) -> Discharge {
    let limits = &config.pre_infusion;
    let mut reasons = Vec::new();
    let Some(end) = infusion.end.filter(|_| infusion.status == "completed") else {
        return Discharge {
            infusion_id: infusion.id.clone(),
            ready: false,
            earliest: None,
            reasons: vec!["the infusion is still in progress".into()],
        };
    };
    let earliest = end + Duration::minutes(config.discharge.min_minutes_after_end);
    if now < earliest {
        reasons.push(format!(
            "{} minutes since the infusion ended; at least {} are required",
            (now - end).num_minutes().max(0),
            config.discharge.min_minutes_after_end
        ));
    }
    let after = |kind| {
        record
            .readings_of(kind)
            .rev()
            .find(|r| r.at >= end && r.during.as_deref() != infusion.id.as_deref())
    };
    match (after(ReadingKind::Systolic), after(ReadingKind::Diastolic)) {
        (Some(s), Some(d))
            if s.value >= limits.hold_systolic || d.value >= limits.hold_diastolic =>
        {
            reasons.push(format!(
                "post-infusion blood pressure {}/{} mm[Hg] is at or above {}/{} mm[Hg]",
                s.value, d.value, limits.hold_systolic, limits.hold_diastolic
            ))
        }
        (Some(_), Some(_)) => {}
        _ => reasons.push("no post-infusion blood pressure recorded".into()),
    }
    match after(ReadingKind::HeartRate) {
        Some(r) if r.value < limits.min_heart_rate || r.value > limits.max_heart_rate => reasons
            .push(format!(
                "post-infusion heart rate {} /min is outside {}-{} /min",
                r.value, limits.min_heart_rate, limits.max_heart_rate
            )),
        Some(_) => {}
        None => reasons.push("no post-infusion heart rate recorded".into()),
    }
    match after(ReadingKind::OxygenSaturation) {
        Some(r) if r.value < limits.min_spo2 => reasons.push(format!(
            "post-infusion SpO2 {}% is below {}%",
            r.value, limits.min_spo2
        )),
        Some(_) => {}
        None => reasons.push("no post-infusion SpO2 recorded".into()),
    }
    Discharge {
        infusion_id: infusion.id.clone(),
        ready: reasons.is_empty(),
        earliest: Some(earliest),
        reasons,
    }
}

fn period(window: (DateTime<Utc>, DateTime<Utc>)) -> Value {
    json!({"start": instant(window.0), "end": instant(window.1)})
}

fn mg(value: f64, unit: &str) -> Value {
    json!({"value": (value * 100.0).round() / 100.0, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
}

/// The FHIR Parameters `$treatment-status` returns.
pub fn to_parameters(status: &TreatmentStatus) -> Value {
    let mut parameters = vec![
        json!({"name": "phase", "valueCode": status.phase.code()}),
        json!({"name": "series-count", "valueInteger": status.series_count}),
    ];
    if let Some(current) = &status.current {
        parameters.push(json!({"name": "current-series", "part": [
            {"name": "number", "valueInteger": current.number},
            {"name": "infusions", "valueInteger": current.infusions},
            {"name": "first", "valueDateTime": instant(current.first)},
            {"name": "last", "valueDateTime": instant(current.last)},
            {"name": "cumulative-dose", "valueQuantity": mg(current.cumulative_mg, "mg")},
            {"name": "cumulative-dose-per-kg", "valueQuantity": mg(current.cumulative_mg_per_kg, "mg/kg")}
        ]}));
    }
    if let Some(window) = status.next_infusion {
        parameters.push(json!({"name": "next-infusion-window", "valuePeriod": period(window)}));
    }
    if let Some(window) = status.retreatment {
        parameters.push(json!({"name": "retreatment-window", "valuePeriod": period(window)}));
    }
    parameters.push(
        json!({"name": "retreatment-due", "valueBoolean": status.phase == Phase::RetreatmentDue}),
    );
    if let Some(discharge) = &status.discharge {
        let mut part = vec![json!({"name": "ready", "valueBoolean": discharge.ready})];
        if let Some(id) = &discharge.infusion_id {
            part.push(json!({"name": "infusion", "valueReference": {"reference": format!("MedicationAdministration/{id}")}}));
        }
        if let Some(earliest) = discharge.earliest {
            part.push(json!({"name": "earliest", "valueDateTime": instant(earliest)}));
        }
        part.extend(
            discharge
                .reasons
                .iter()
                .map(|r| json!({"name": "reason", "valueString": r})),
        );
        parameters.push(json!({"name": "discharge", "part": part}));
    }
    json!({"resourceType": "Parameters", "parameter": parameters})
}
