//! The infusion safety rules: what a ketamine administration must satisfy before it is
//! recorded as in progress or completed, each failure stated with its figures, and the
//! documented override that lets a clinician proceed. Pure functions over the record.

use chrono::Duration;
use serde_json::{Value, json};

use super::codes;
use super::config::ClinicConfig;
use super::record::{Infusion, PatientRecord, Reading, ReadingKind};
use super::series;
use crate::fhir::fhirpath::reference_target;
use crate::fhir::outcome::Issue;

/// One failed rule: a stable rule name, the sentence with the figures, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub text: String,
    pub expression: &'static str,
}

/// What the rules found about one administration, and the figures computed on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// Failures that block the write unless overridden.
    pub failures: Vec<Finding>,
    /// Reported, never blocking (escalations during the infusion).
    pub notices: Vec<Finding>,
    pub weight_kg: Option<f64>,
    pub mg_per_kg: Option<f64>,
    pub rate_mg_per_kg_per_hour: Option<f64>,
}

/// The patient an administration is about, and its infusion view, when the safety rules
/// apply to it: a ketamine MedicationAdministration that is in progress or completed, and
/// is new, newly in that status, or changed in what the rules read.
pub fn patient_to_check(
    administration: &Value,
    previous: Option<&Value>,
    medications: &[Value],
    config: &ClinicConfig,
) -> Option<(String, Infusion)> {
    let infusion = Infusion::read(administration, medications, &config.ketamine)?;
    if !infusion.was_given() {
        return None;
    }
    if let Some(previous) = previous {
        let unchanged = Infusion::read(previous, medications, &config.ketamine)
            .is_some_and(|before| before.same_facts(&infusion))
            && previous["subject"] == administration["subject"];
        if unchanged {
            return None;
        }
    }
    let reference = administration["subject"]["reference"].as_str()?;
    match reference_target(reference)? {
        ("Patient", id) => Some((id.to_string(), infusion)),
        _ => None,
    }
}

impl Infusion {
    /// Equal in everything the rules read (the id and version aside).
    fn same_facts(&self, other: &Infusion) -> bool {
        self.status == other.status
            && self.start == other.start
            && self.end == other.end
            && self.dose == other.dose
            && self.rate == other.rate
            && self.concentration_mg_per_ml == other.concentration_mg_per_ml
    }
}

fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

/// `0.5`, `1.25`: figures as a clinician writes them.
fn figure(value: f64) -> String {
    let rounded = round(value, 2);
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded}")
    }
}

/// Runs every rule on `infusion` against the rest of the patient's record.
pub fn assess(infusion: &Infusion, record: &PatientRecord, config: &ClinicConfig) -> Assessment {
    let mut assessment = Assessment::default();
    let weight = weight_rule(infusion, record, config, &mut assessment.failures);
    assessment.weight_kg = weight;
    assessment.mg_per_kg = infusion.mg_per_kg(weight);
    assessment.rate_mg_per_kg_per_hour = infusion.rate_mg_per_kg_per_hour(weight);
    dose_rules(&mut assessment, infusion, config);
    pre_infusion_rules(infusion, record, config, &mut assessment.failures);
    during_infusion_notices(infusion, record, config, &mut assessment.notices);
    series_rules(infusion, record, config, weight, &mut assessment.failures);
    contraindication_rule(record, config, &mut assessment.failures);
    assessment
}

fn weight_rule(
    infusion: &Infusion,
    record: &PatientRecord,
    config: &ClinicConfig,
    failures: &mut Vec<Finding>,
) -> Option<f64> {
    let days = config.weight.max_age_days;
    let window_start = infusion.start - Duration::days(days);
    if let Some(weight) = record.weight_between(window_start, infusion.start) {
        return Some(weight.value);
    }
    let older = record
        .readings_of(ReadingKind::BodyWeight)
        .rev()
        .find(|r| r.at <= infusion.start);
    let text = match older {
        Some(older) => format!(
            "no body weight recorded in the {days} days before the infusion (the latest, {} kg, is {} days old)",
            figure(older.value),
            (infusion.start - older.at).num_days()
        ),
        None => format!(
            "no body weight recorded in the {days} days before the infusion (none on record)"
        ),
    };
    failures.push(Finding {
        rule: "weight-recorded",
        text,
        expression: "MedicationAdministration.subject",
    });
    None
}

/// `(relation, limit)` when `value` lies outside `[low, high]`, worded for a finding.
fn outside(
    value: f64,
    (low, high): (f64, f64),
    (below, above): (&'static str, &'static str),
) -> Option<(&'static str, f64)> {
    if value > high {
        Some((above, high))
    } else if value < low {
        Some((below, low))
    } else {
        None
    }
}

fn dose_rules(assessment: &mut Assessment, infusion: &Infusion, config: &ClinicConfig) {
    let rule = &config.dose;
    let limits = ["is below", "exceeds"];
    let checks = [
        (
            "dose-range",
            assessment.mg_per_kg,
            (rule.min_mg_per_kg, rule.max_mg_per_kg),
            (limits[0], limits[1]),
            "dose",
            "mg/kg",
            "MedicationAdministration.dosage.dose",
        ),
        (
            "rate-range",
            assessment.rate_mg_per_kg_per_hour,
            (
                rule.min_rate_mg_per_kg_per_hour,
                rule.max_rate_mg_per_kg_per_hour,
            ),
            (limits[0], limits[1]),
            "rate",
            "mg/kg/h",
            "MedicationAdministration.dosage.rate",
        ),
        (
            "duration-range",
            infusion.minutes(),
            (rule.min_minutes, rule.max_minutes),
            ("is shorter than", "is longer than"),
            "infusion of",
            "minutes",
            "MedicationAdministration.effectivePeriod",
        ),
    ];
    for (name, value, range, wording, label, unit, expression) in checks {
        let Some(value) = value else { continue };
        if let Some((relation, limit)) = outside(value, range, wording) {
            assessment.failures.push(Finding {
                rule: name,
                text: format!(
                    "{label} {} {unit} {relation} {} {unit}",
                    figure(value),
                    figure(limit)
                ),
                expression,
            });
        }
    }
}

/// The latest reading of `kind` taken in the window before the infusion (not during one).
fn pre_reading<'a>(
    record: &'a PatientRecord,
    kind: ReadingKind,
    infusion: &Infusion,
    hours: f64,
) -> Option<&'a Reading> {
    let from = infusion.start - Duration::milliseconds((hours * 3_600_000.0) as i64);
    record
        .readings_of(kind)
        .rev()
        .filter(|r| r.during.is_none())
        .find(|r| r.at >= from && r.at <= infusion.start)
}

fn pre_infusion_rules(
    infusion: &Infusion,
    record: &PatientRecord,
    config: &ClinicConfig,
    failures: &mut Vec<Finding>,
) {
    let rule = &config.pre_infusion;
    let hours = rule.max_age_hours;
    let expression = "MedicationAdministration.effectivePeriod.start";
    let missing = |what: &str| Finding {
        rule: "pre-vitals-recorded",
        text: format!(
            "no pre-infusion {what} recorded in the {} hours before the start",
            figure(hours)
        ),
        expression,
    };
    let systolic = pre_reading(record, ReadingKind::Systolic, infusion, hours);
    let diastolic = pre_reading(record, ReadingKind::Diastolic, infusion, hours);
    match (systolic, diastolic) {
        (Some(systolic), Some(diastolic)) => {
            if systolic.value >= rule.hold_systolic || diastolic.value >= rule.hold_diastolic {
                failures.push(Finding {
                    rule: "pre-blood-pressure",
                    text: format!(
                        "pre-infusion blood pressure {}/{} mm[Hg] is at or above the hold limit {}/{} mm[Hg]",
                        figure(systolic.value), figure(diastolic.value),
                        figure(rule.hold_systolic), figure(rule.hold_diastolic)
                    ),
                    expression,
                });
            }
        }
        _ => failures.push(missing("blood pressure")),
    }
    match pre_reading(record, ReadingKind::HeartRate, infusion, hours) {
        Some(rate) if rate.value < rule.min_heart_rate || rate.value > rule.max_heart_rate => {
            failures.push(Finding {
                rule: "pre-heart-rate",
                text: format!(
                    "pre-infusion heart rate {} /min is outside {}-{} /min",
                    figure(rate.value),
                    figure(rule.min_heart_rate),
                    figure(rule.max_heart_rate)
                ),
                expression,
            })
        }
        Some(_) => {}
        None => failures.push(missing("heart rate")),
    }
    match pre_reading(record, ReadingKind::OxygenSaturation, infusion, hours) {
        Some(spo2) if spo2.value < rule.min_spo2 => failures.push(Finding {
            rule: "pre-spo2",
            text: format!(
                "pre-infusion SpO2 {}% is below the floor of {}%",
                figure(spo2.value),
                figure(rule.min_spo2)
            ),
            expression,
        }),
        Some(_) => {}
        None => failures.push(missing("SpO2")),
    }
}

/// Blood pressure at or above the escalation limit, or SpO2 under the floor, during this
/// infusion: reported with the write, never refusing it (the infusion happened).
fn during_infusion_notices(
    infusion: &Infusion,
    record: &PatientRecord,
    config: &ClinicConfig,
    notices: &mut Vec<Finding>,
) {
    let Some(id) = infusion.id.as_deref() else {
        return;
    };
    let rule = &config.pre_infusion;
    let during = |kind| {
        record
            .readings_of(kind)
            .filter(move |r| r.during.as_deref() == Some(id))
    };
    for (systolic, diastolic) in during(ReadingKind::Systolic).zip(during(ReadingKind::Diastolic)) {
        if systolic.value >= rule.escalate_systolic || diastolic.value >= rule.escalate_diastolic {
            notices.push(Finding {
                rule: "intra-blood-pressure",
                text: format!(
                    "blood pressure {}/{} mm[Hg] during the infusion is at or above the escalation limit {}/{} mm[Hg]",
                    figure(systolic.value), figure(diastolic.value),
                    figure(rule.escalate_systolic), figure(rule.escalate_diastolic)
                ),
                expression: "MedicationAdministration",
            });
        }
    }
    for spo2 in during(ReadingKind::OxygenSaturation).filter(|r| r.value < rule.min_spo2) {
        notices.push(Finding {
            rule: "intra-spo2",
            text: format!(
                "SpO2 {}% during the infusion is below the floor of {}%",
                figure(spo2.value),
                figure(rule.min_spo2)
            ),
            expression: "MedicationAdministration",
        });
    }
}

/// Interval to the nearest other infusion, series length and span, cumulative doses.
fn series_rules(
    infusion: &Infusion,
    record: &PatientRecord,
    config: &ClinicConfig,
    weight: Option<f64>,
    failures: &mut Vec<Finding>,
) {
    let rule = &config.series;
    let expression = "MedicationAdministration.effectivePeriod.start";
    let others: Vec<&Infusion> = record
        .infusions
        .iter()
        .filter(|other| other.id.is_none() || other.id != infusion.id)
        .collect();
    let nearest = others
        .iter()
        .map(|other| {
            (
                other,
                (infusion.start - other.start).num_milliseconds().abs(),
            )
        })
        .min_by_key(|(_, gap)| *gap);
    if let Some((other, gap)) = nearest {
        let hours = gap as f64 / 3_600_000.0;
        if hours < rule.min_interval_hours {
            let side = if other.start <= infusion.start {
                "the previous infusion was"
            } else {
                "the next infusion is"
            };
            failures.push(Finding {
                rule: "infusion-interval",
                text: format!(
                    "{side} {} hours apart; at least {} hours are required",
                    figure(hours),
                    figure(rule.min_interval_hours)
                ),
                expression,
            });
        }
    }
    let mut all: Vec<Infusion> = others.into_iter().cloned().collect();
    all.push(infusion.clone());
    all.sort_by_key(|i| i.start);
    let grouped = series::group(&all, rule);
    let Some(current) = grouped.iter().find(|s| s.infusions.contains(&infusion)) else {
        return;
    };
    let position = current
        .infusions
        .iter()
        .position(|i| *i == infusion)
        .unwrap_or(0)
        + 1;
    if position > rule.max_infusions {
        failures.push(Finding {
            rule: "series-length",
            text: format!(
                "this is infusion {position} of the series; at most {} are allowed",
                rule.max_infusions
            ),
            expression,
        });
    }
    let span_days = (infusion.start - current.first().start).num_hours() as f64 / 24.0;
    if span_days > (rule.max_weeks * 7) as f64 {
        failures.push(Finding {
            rule: "series-duration",
            text: format!(
                "the series would span {} days; at most {} weeks are allowed",
                figure(span_days),
                rule.max_weeks
            ),
            expression,
        });
    }
    let dose_of = |i: &Infusion| {
        let at_time = record.weight_at(i).or(weight);
        i.mg_per_kg(at_time).unwrap_or(0.0)
    };
    let limits = &config.cumulative;
    let series_total: f64 = current
        .infusions
        .iter()
        .filter(|i| i.start <= infusion.start)
        .map(|i| dose_of(i))
        .sum();
    if series_total > limits.max_mg_per_kg_per_series {
        failures.push(Finding {
            rule: "cumulative-series",
            text: format!(
                "cumulative dose in the series {} mg/kg exceeds {} mg/kg",
                figure(series_total),
                figure(limits.max_mg_per_kg_per_series)
            ),
            expression: "MedicationAdministration.dosage.dose",
        });
    }
    let week_start = infusion.start - Duration::days(7);
    let week_total: f64 = all
        .iter()
        .filter(|i| i.start > week_start && i.start <= infusion.start)
        .map(dose_of)
        .sum();
    if week_total > limits.max_mg_per_kg_per_7_days {
        failures.push(Finding {
            rule: "cumulative-7-days",
            text: format!(
                "cumulative dose over 7 days {} mg/kg exceeds {} mg/kg",
                figure(week_total),
                figure(limits.max_mg_per_kg_per_7_days)
            ),
            expression: "MedicationAdministration.dosage.dose",
        });
    }
}

/// Does an ICD-10-CM code match a configured code (`F20*` is a prefix)?
fn code_matches(code: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => code.starts_with(prefix),
        None => code == pattern,
    }
}

fn contraindication_rule(
    record: &PatientRecord,
    config: &ClinicConfig,
    failures: &mut Vec<Finding>,
) {
    for diagnosis in record.diagnoses.iter().filter(|d| d.active) {
        let listed = diagnosis.icd10().find(|code| {
            config
                .contraindications
                .icd10_codes
                .iter()
                .any(|p| code_matches(code, p))
        });
        if listed.is_none() && !diagnosis.flagged_contraindication {
            continue;
        }
        let named = match listed {
            Some(code) => format!("{code} ({})", diagnosis.display),
            None => diagnosis.display.clone(),
        };
        let reference = diagnosis
            .id
            .as_deref()
            .map(|id| format!(", Condition/{id}"))
            .unwrap_or_default();
        failures.push(Finding {
            rule: "contraindication",
            text: format!("active condition {named} is a contraindication to ketamine{reference}"),
            expression: "MedicationAdministration.subject",
        });
    }
}

/// A clinician's documented override, read from the administration.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub reason: String,
    pub practitioner: String,
    /// The rules overridden; empty means every failed rule.
    pub rules: Vec<String>,
}

impl Override {
    /// The override extension, if present; `Err` names what it lacks.
    pub fn read(administration: &Value) -> Result<Option<Override>, String> {
        let Some(extension) = extensions(administration, codes::OVERRIDE_EXTENSION).next() else {
            return Ok(None);
        };
        let parts = |url: &'static str| extensions(extension, url);
        let reason = parts("reason")
            .find_map(|e| e["valueString"].as_str())
            .map(str::trim);
        let practitioner =
            parts("practitioner").find_map(|e| e["valueReference"]["reference"].as_str());
        let (Some(reason), Some(practitioner)) = (reason.filter(|r| !r.is_empty()), practitioner)
        else {
            return Err(format!(
                "the override extension ({}) needs a 'reason' (valueString) and a 'practitioner' (valueReference to a Practitioner)",
                codes::OVERRIDE_EXTENSION
            ));
        };
        if !matches!(reference_target(practitioner), Some(("Practitioner", _))) {
            return Err(format!(
                "the override's practitioner must reference a Practitioner, not '{practitioner}'"
            ));
        }
        Ok(Some(Override {
            reason: reason.to_string(),
            practitioner: practitioner.to_string(),
            rules: parts("rule")
                .filter_map(|e| e["valueCode"].as_str().map(str::to_string))
                .collect(),
        }))
    }

    fn covers(&self, finding: &Finding) -> bool {
        self.rules.is_empty() || self.rules.iter().any(|r| r == finding.rule)
    }
}

fn extensions<'a>(holder: &'a Value, url: &'a str) -> impl Iterator<Item = &'a Value> {
    holder["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |e| e["url"] == url)
}

/// What a checked write stores besides the resource: the rules overridden, to be audited.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub overridden: Vec<Finding>,
    pub by: Option<Override>,
    pub notices: Vec<Issue>,
}

/// Decides a write from the assessment: refused (422 issues, one per failed rule not
/// covered by an override), or allowed with the computed figures stored on the resource.
pub fn decide(administration: &mut Value, assessment: &Assessment) -> Result<Decision, Vec<Issue>> {
    let documented = Override::read(administration).map_err(|text| {
        vec![
            Issue::error("business-rule", format!("Infusion safety: {text}"))
                .at("MedicationAdministration.extension"),
        ]
    })?;
    let (overridden, refused): (Vec<&Finding>, Vec<&Finding>) = assessment
        .failures
        .iter()
        .partition(|f| documented.as_ref().is_some_and(|o| o.covers(f)));
    if !refused.is_empty() {
        return Err(refused.iter().map(|f| issue(f, "error")).collect());
    }
    annotate(administration, assessment, &overridden);
    Ok(Decision {
        overridden: overridden.into_iter().cloned().collect(),
        by: documented,
        notices: assessment
            .notices
            .iter()
            .map(|f| issue(f, "warning"))
            .collect(),
    })
}

/// The OperationOutcome issue of a finding.
pub fn issue(finding: &Finding, severity: &str) -> Issue {
    let text = format!("Infusion safety rule {}: {}", finding.rule, finding.text);
    let issue = match severity {
        "error" => Issue::error("business-rule", text),
        _ => Issue::warning("business-rule", text),
    };
    issue.at(finding.expression)
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({"value": round(value, 3), "unit": unit, "system": codes::UCUM, "code": unit})
}

/// The dosage extensions carrying the computed dose per kg and rate per kg and hour.
pub fn dosage_extensions(
    mg_per_kg: Option<f64>,
    rate_mg_per_kg_per_hour: Option<f64>,
) -> Vec<Value> {
    let dose = mg_per_kg.map(|per_kg| {
        json!({"url": codes::DOSE_PER_KG_EXTENSION, "valueQuantity": quantity(per_kg, "mg/kg")})
    });
    let rate = rate_mg_per_kg_per_hour.map(|rate| {
        json!({"url": codes::RATE_PER_KG_EXTENSION, "valueQuantity": quantity(rate, "mg/kg/h")})
    });
    dose.into_iter().chain(rate).collect()
}

/// Stores the computed mg/kg and mg/kg/h on `dosage`, and the overridden rules on the
/// resource, replacing what an earlier version (or the client) put under those URLs.
fn annotate(administration: &mut Value, assessment: &Assessment, overridden: &[&Finding]) {
    let computed = [codes::DOSE_PER_KG_EXTENSION, codes::RATE_PER_KG_EXTENSION];
    let dosage = &mut administration["dosage"];
    if dosage.is_object() {
        let mut kept = without(dosage, &computed);
        kept.extend(dosage_extensions(
            assessment.mg_per_kg,
            assessment.rate_mg_per_kg_per_hour,
        ));
        set_extensions(dosage, kept);
    }
    let mut kept = without(administration, &[codes::OVERRIDDEN_RULE_EXTENSION]);
    for finding in overridden {
        kept.push(json!({
            "url": codes::OVERRIDDEN_RULE_EXTENSION,
            "extension": [
                {"url": "rule", "valueCode": finding.rule},
                {"url": "finding", "valueString": finding.text}
            ]
        }));
    }
    set_extensions(administration, kept);
}

fn without(holder: &Value, urls: &[&str]) -> Vec<Value> {
    holder["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| !urls.iter().any(|url| e["url"] == *url))
        .cloned()
        .collect()
}

fn set_extensions(holder: &mut Value, extensions: Vec<Value>) {
    let Some(object) = holder.as_object_mut() else {
        return;
    };
    if extensions.is_empty() {
        object.remove("extension");
    } else {
        object.insert("extension".into(), Value::Array(extensions));
    }
}
