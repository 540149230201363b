//! The patient report: one self-contained HTML5 page (inline CSS and SVG, no scripts, no
//! external assets) summarising a patient's ketamine treatment for a primary-care physician
//! or a payer's review. Pain, PHQ-9 and blood-pressure charts over time with the infusions
//! marked, the infusion series as a table, and the outcome summary. A print stylesheet lays
//! it out on A4, so the browser's "Save as PDF" gives the document to send.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::Value;

use super::chart::{Band, Line, LineChart, Threshold, TimeAxis, Zone};
use super::config::ClinicConfig;
use super::outcomes::{PainResponse, PatientOutcomes, ScoreChange};
use super::record::{PatientRecord, ReadingKind};
use super::series::group;

/// Text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

const DASH: &str = "\u{2014}";

/// The patient's name for display: the official name (else the first), given names then
/// family name, or its `text`.
fn display_name(patient: &Value) -> String {
    let names = patient["name"].as_array().cloned().unwrap_or_default();
    let Some(name) = names
        .iter()
        .find(|n| n["use"] == "official")
        .or(names.first())
    else {
        return "Unnamed patient".into();
    };
    let mut parts: Vec<String> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    if let Some(family) = name["family"].as_str() {
        parts.push(family.to_string());
    }
    if parts.is_empty() {
        name["text"]
            .as_str()
            .unwrap_or("Unnamed patient")
            .to_string()
    } else {
        parts.join(" ")
    }
}

/// The medical record number: the identifier typed MR, else the first one.
fn mrn(patient: &Value) -> Option<String> {
    let identifiers = patient["identifier"].as_array()?;
    let typed_mr = identifiers.iter().find(|i| {
        i["type"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["code"] == "MR")
    });
    typed_mr
        .or(identifiers.first())
        .and_then(|i| i["value"].as_str())
        .map(str::to_string)
}

/// The birth date as "12 Apr 1975 (age 51)", or as recorded when partial.
fn birth_date(patient: &Value, now: DateTime<Utc>) -> String {
    let Some(text) = patient["birthDate"].as_str() else {
        return DASH.into();
    };
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(born) => {
            let today = now.date_naive();
            let mut age = today.year() - born.year();
            if (today.month(), today.day()) < (born.month(), born.day()) {
                age -= 1;
            }
            format!("{} (age {age})", born.format("%-d %b %Y"))
        }
        Err(_) => text.to_string(),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn date(at: DateTime<Utc>) -> String {
    at.format("%-d %b %Y").to_string()
}

fn decimals(value: Option<f64>, places: usize) -> String {
    value.map_or_else(|| DASH.to_string(), |v| format!("{v:.places$}"))
}

/// The readings of a kind as chart points.
fn points(record: &PatientRecord, kind: ReadingKind) -> Vec<(DateTime<Utc>, f64)> {
    record.readings_of(kind).map(|r| (r.at, r.value)).collect()
}

/// Every infusion as a numbered band ("1", "2"… in time order, as in the table).
fn bands(record: &PatientRecord) -> Vec<Band> {
    record
        .infusions
        .iter()
        .enumerate()
        .map(|(i, infusion)| {
            let end = infusion.end.unwrap_or(infusion.start);
            let minutes = infusion
                .minutes()
                .map(|m| format!(", {m:.0} min"))
                .unwrap_or_default();
            Band {
                start: infusion.start,
                end,
                label: (i + 1).to_string(),
                title: format!(
                    "Infusion {} on {}{minutes}",
                    i + 1,
                    infusion.start.format("%-d %b %Y %H:%M UTC")
                ),
            }
        })
        .collect()
}

const CHARTED: [ReadingKind; 4] = [
    ReadingKind::PainSeverity,
    ReadingKind::Depression,
    ReadingKind::Systolic,
    ReadingKind::Diastolic,
];

fn charts(record: &PatientRecord, config: &ClinicConfig, now: DateTime<Utc>) -> [String; 3] {
    let axis = TimeAxis::spanning(
        record
            .readings
            .iter()
            .filter(|r| CHARTED.contains(&r.kind))
            .map(|r| r.at)
            .chain(
                record
                    .infusions
                    .iter()
                    .flat_map(|i| [Some(i.start), i.end].into_iter().flatten()),
            ),
        now,
    );
    let bands = bands(record);
    let pain = LineChart {
        title: "Pain intensity (NRS 0-10) over time".into(),
        y_label: "Pain NRS (0-10)".into(),
        y_min: 0.0,
        y_max: 10.0,
        y_ticks: (0..=5).map(|t| f64::from(t) * 2.0).collect(),
        lines: vec![Line {
            label: "Pain NRS".into(),
            color: "#7c3aed",
            unit: "",
            points: points(record, ReadingKind::PainSeverity),
        }],
        thresholds: Vec::new(),
        zones: Vec::new(),
        bands: bands.clone(),
        empty_message: "No pain score recorded".into(),
    };
    let phq9 = LineChart {
        title: "Depression (PHQ-9 total, 0-27) over time".into(),
        y_label: "PHQ-9 (0-27)".into(),
        y_min: 0.0,
        y_max: 27.0,
        y_ticks: vec![0.0, 5.0, 10.0, 15.0, 20.0, 27.0],
        lines: vec![Line {
            label: "PHQ-9 total".into(),
            color: "#0f766e",
            unit: "",
            points: points(record, ReadingKind::Depression),
        }],
        thresholds: Vec::new(),
        zones: vec![
            Zone {
                from: 5.0,
                to: 10.0,
                label: "mild",
                color: "#f8fafc",
            },
            Zone {
                from: 10.0,
                to: 15.0,
                label: "moderate",
                color: "#f1f5f9",
            },
            Zone {
                from: 15.0,
                to: 20.0,
                label: "moderately severe",
                color: "#e9eef4",
            },
            Zone {
                from: 20.0,
                to: 27.0,
                label: "severe",
                color: "#e2e8f0",
            },
        ],
        bands: bands.clone(),
        empty_message: "No PHQ-9 recorded".into(),
    };
    let systolic = points(record, ReadingKind::Systolic);
    let diastolic = points(record, ReadingKind::Diastolic);
    let hold = &config.pre_infusion;
    let (low, high) = systolic
        .iter()
        .chain(&diastolic)
        .fold((40.0f64, 200.0f64), |(low, high), (_, v)| {
            (low.min(*v - 10.0), high.max(*v + 10.0))
        });
    let (y_min, y_max) = ((low / 20.0).floor() * 20.0, (high / 20.0).ceil() * 20.0);
    let blood_pressure = LineChart {
        title: "Blood pressure (mmHg) over time, with the pre-infusion hold limit".into(),
        y_label: "Blood pressure (mmHg)".into(),
        y_min,
        y_max,
        y_ticks: (0..)
            .map(|t| y_min + f64::from(t) * 20.0)
            .take_while(|t| *t <= y_max)
            .collect(),
        lines: vec![
            Line {
                label: "Systolic".into(),
                color: "#b91c1c",
                unit: " mmHg",
                points: systolic,
            },
            Line {
                label: "Diastolic".into(),
                color: "#1d4ed8",
                unit: " mmHg",
                points: diastolic,
            },
        ],
        thresholds: vec![
            Threshold {
                value: hold.hold_systolic,
                label: format!("Hold: systolic \u{2265} {}", hold.hold_systolic),
                short_label: format!("hold {}", hold.hold_systolic),
                color: "#dc2626",
            },
            Threshold {
                value: hold.hold_diastolic,
                label: format!("Hold: diastolic \u{2265} {}", hold.hold_diastolic),
                short_label: format!("hold {}", hold.hold_diastolic),
                color: "#2563eb",
            },
        ],
        zones: Vec::new(),
        bands,
        empty_message: "No blood pressure recorded".into(),
    };
    [
        pain.render(&axis),
        phq9.render(&axis),
        blood_pressure.render(&axis),
    ]
}

/// The series table: one row per infusion, grouped under a row per series.
fn infusion_table(record: &PatientRecord, config: &ClinicConfig) -> String {
    if record.infusions.is_empty() {
        return r#"<p class="none">No ketamine infusion recorded.</p>"#.into();
    }
    let max_age = Duration::minutes((config.pre_infusion.max_age_hours * 60.0).round() as i64);
    let mut html = String::from(
        r#"<table class="infusions"><thead><tr><th>#</th><th>Date</th><th class="num">Duration<br>(min)</th><th class="num">Dose<br>(mg)</th><th class="num">Dose<br>(mg/kg)</th><th class="num">Rate<br>(mg/kg/h)</th><th class="num">Weight<br>(kg)</th><th class="num">Pre BP<br>(mmHg)</th><th class="num">Pre SpO<sub>2</sub><br>(%)</th></tr></thead><tbody>"#,
    );
    let mut number = 0;
    for series in group(&record.infusions, &config.series) {
        let total_mg: Option<f64> = series
            .infusions
            .iter()
            .map(|i| i.milligrams(record.weight_at(i)))
            .sum();
        let span = if series.infusions.len() > 1 {
            format!(
                "{} \u{2013} {}",
                date(series.first().start),
                date(series.last().start)
            )
        } else {
            date(series.first().start)
        };
        let _ = write!(
            html,
            r#"<tr class="series-row"><th colspan="9">Series {n} <span>{count} infusion{s} &middot; {span}{total}</span></th></tr>"#,
            n = series.number,
            count = series.infusions.len(),
            s = if series.infusions.len() == 1 { "" } else { "s" },
            span = escape(&span),
            total = total_mg
                .map(|mg| format!(" &middot; {mg:.0} mg in total"))
                .unwrap_or_default(),
        );
        for infusion in &series.infusions {
            number += 1;
            let weight = record.weight_at(infusion);
            let from = infusion.start - max_age;
            let systolic = record.latest_between(ReadingKind::Systolic, from, infusion.start);
            let diastolic = record.latest_between(ReadingKind::Diastolic, from, infusion.start);
            let spo2 = record.latest_between(ReadingKind::OxygenSaturation, from, infusion.start);
            let bp = match (systolic, diastolic) {
                (Some(s), Some(d)) => format!("{:.0}/{:.0}", s.value, d.value),
                _ => DASH.into(),
            };
            let held = systolic.is_some_and(|s| s.value >= config.pre_infusion.hold_systolic)
                || diastolic.is_some_and(|d| d.value >= config.pre_infusion.hold_diastolic);
            let low_spo2 = spo2.is_some_and(|s| s.value < config.pre_infusion.min_spo2);
            let _ = write!(
                html,
                r#"<tr class="infusion-row"><td>{number}</td><td>{date}</td><td class="num">{minutes}</td><td class="num">{mg}</td><td class="num">{per_kg}</td><td class="num">{rate}</td><td class="num">{weight}</td><td class="num{bp_flag}">{bp}</td><td class="num{spo2_flag}">{spo2}</td></tr>"#,
                date = escape(&infusion.start.format("%-d %b %Y %H:%M").to_string()),
                minutes = decimals(infusion.minutes(), 0),
                mg = decimals(infusion.milligrams(weight), 0),
                per_kg = decimals(infusion.mg_per_kg(weight), 2),
                rate = decimals(infusion.rate_mg_per_kg_per_hour(weight), 2),
                weight = decimals(weight, 1),
                bp_flag = if held { " flag" } else { "" },
                spo2 = decimals(spo2.map(|s| s.value), 0),
                spo2_flag = if low_spo2 { " flag" } else { "" },
            );
        }
    }
    html.push_str("</tbody></table>");
    let _ = write!(
        html,
        r#"<p class="note">Times in UTC. Pre-infusion vitals: the latest reading in the {hours} h before the start. Weight: the latest in the year before. Values marked red were at or beyond the clinic's hold limits (BP &#8805; {sys:.0}/{dia:.0} mmHg, SpO<sub>2</sub> &lt; {spo2:.0}%).</p>"#,
        hours = escape(&format!("{}", config.pre_infusion.max_age_hours)),
        sys = config.pre_infusion.hold_systolic,
        dia = config.pre_infusion.hold_diastolic,
        spo2 = config.pre_infusion.min_spo2,
    );
    html
}

fn score_line(name: &str, change: &Option<ScoreChange>, extra: &str) -> String {
    let Some(change) = change else {
        return format!(
            r#"<div class="metric"><div class="metric-name">{}</div><div class="metric-value muted">not recorded</div></div>"#,
            escape(name)
        );
    };
    let percent = change
        .percent_change
        .map(|p| {
            let word = if p >= 0.0 { "reduction" } else { "increase" };
            format!(" ({:.0}% {word})", p.abs())
        })
        .unwrap_or_default();
    format!(
        r#"<div class="metric"><div class="metric-name">{name}</div><div class="metric-value">{baseline} &rarr; {latest}<span class="change">{percent}</span></div><div class="metric-detail">Baseline {baseline_at}, latest {latest_at}{extra}</div></div>"#,
        name = escape(name),
        baseline = figure(change.baseline),
        latest = figure(change.latest),
        percent = escape(&percent),
        baseline_at = escape(&date(change.baseline_at)),
        latest_at = escape(&date(change.latest_at)),
    )
}

fn figure(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn outcome_summary(outcomes: Option<&PatientOutcomes>) -> String {
    let Some(outcomes) = outcomes else {
        return r#"<section class="summary"><h2>Outcome summary</h2><p class="none">Outcome summary unavailable.</p></section>"#.into();
    };
    let mut html = String::from(r#"<section class="summary"><h2>Outcome summary</h2>"#);
    if let Some(response) = outcomes.pain_response {
        let (class, text) = match response {
            PainResponse::Substantial => ("good", "Substantial pain reduction (\u{2265} 50%)"),
            PainResponse::Moderate => ("fair", "Moderate pain reduction (30\u{2013}49%)"),
            PainResponse::Minimal => ("poor", "Minimal pain reduction (< 30%)"),
        };
        let _ = write!(
            html,
            r#"<p class="verdict {class}">{}<span> IMMPACT category, from the pre-infusion score of the current series to the latest</span></p>"#,
            escape(text)
        );
    }
    html.push_str(r#"<div class="metrics">"#);
    html.push_str(&score_line("Pain NRS (0-10)", &outcomes.pain, ""));
    let phq9_notes = match (outcomes.phq9_response, outcomes.phq9_remission) {
        (Some(response), Some(remission)) => format!(
            "; response (\u{2265} 50% reduction): {}; remission (< 5): {}",
            if response { "yes" } else { "no" },
            if remission { "yes" } else { "no" }
        ),
        (None, Some(remission)) => format!(
            "; remission (< 5): {}",
            if remission { "yes" } else { "no" }
        ),
        _ => String::new(),
    };
    html.push_str(&score_line(
        "PHQ-9 (0-27)",
        &outcomes.phq9,
        &escape(&phq9_notes),
    ));
    html.push_str(&score_line("PEG (0-10)", &outcomes.peg, ""));
    let dose_note = if outcomes.infusions_without_dose > 0 {
        format!(
            " (dose unknown for {} infusion{})",
            outcomes.infusions_without_dose,
            if outcomes.infusions_without_dose == 1 {
                ""
            } else {
                "s"
            }
        )
    } else {
        String::new()
    };
    let _ = write!(
        html,
        r#"<div class="metric"><div class="metric-name">Treatment</div><div class="metric-value">{given} infusion{s} in {series} series</div><div class="metric-detail">Cumulative dose {dose:.0} mg{dose_note}{since}</div></div>"#,
        given = outcomes.infusions_given,
        s = if outcomes.infusions_given == 1 {
            ""
        } else {
            "s"
        },
        series = outcomes.series_count,
        dose = outcomes.cumulative_dose_mg,
        dose_note = escape(&dose_note),
        since = outcomes
            .days_since_last_infusion
            .map(|d| format!(
                "; last infusion {d} day{} ago",
                if d == 1 { "" } else { "s" }
            ))
            .unwrap_or_default(),
    );
    html.push_str("</div></section>");
    html
}

fn diagnoses(record: &PatientRecord) -> String {
    let active: Vec<String> = record
        .diagnoses
        .iter()
        .filter(|d| d.active)
        .map(|d| {
            let codes: Vec<&str> = d.icd10().collect();
            if codes.is_empty() {
                escape(&d.display)
            } else {
                format!("{} ({})", escape(&d.display), escape(&codes.join(", ")))
            }
        })
        .collect();
    if active.is_empty() {
        r#"<span class="muted">None recorded</span>"#.into()
    } else {
        active.join("; ")
    }
}

const STYLE: &str = r#"
:root { --ink: #111827; --muted: #6b7280; --rule: #d1d5db; --accent: #1e3a5f; }
* { box-sizing: border-box; }
html { background: #eef1f5; }
body { margin: 0; padding: 24px 0; color: var(--ink);
  font: 13px/1.45 "Helvetica Neue", Helvetica, Arial, "Liberation Sans", "DejaVu Sans", sans-serif; }
.page { max-width: 860px; margin: 0 auto; background: #fff; padding: 32px 40px 28px;
  box-shadow: 0 1px 3px rgba(0,0,0,.12), 0 4px 16px rgba(0,0,0,.06); }
header.report { display: flex; justify-content: space-between; align-items: flex-end;
  border-bottom: 3px solid var(--accent); padding-bottom: 10px; margin-bottom: 14px; }
header.report h1 { font-size: 20px; margin: 0; color: var(--accent); letter-spacing: .2px; }
header.report .subtitle { color: var(--muted); font-size: 12px; margin-top: 2px; }
header.report .issued { text-align: right; font-size: 11.5px; color: var(--muted); }
header.report .issued strong { color: var(--ink); font-weight: 600; }
dl.patient { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px 18px; margin: 0 0 18px;
  padding: 12px 14px; background: #f8fafc; border: 1px solid #e5e7eb; border-radius: 4px; }
dl.patient div { min-width: 0; }
dl.patient dt { font-size: 10.5px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); }
dl.patient dd { margin: 1px 0 0; font-weight: 600; overflow-wrap: anywhere; }
dl.patient .wide { grid-column: span 2; }
dl.patient .full { grid-column: 1 / -1; }
dl.patient .full dd { font-weight: 400; }
h2 { font-size: 14.5px; color: var(--accent); margin: 22px 0 8px; padding-bottom: 4px;
  border-bottom: 1px solid var(--rule); }
h3 { font-size: 12.5px; margin: 12px 0 2px; color: #374151; }
figure.chart { margin: 0 0 8px; break-inside: avoid; page-break-inside: avoid; }
figure.chart svg { display: block; width: 100%; height: auto; }
figure.chart figcaption { font-size: 11px; color: var(--muted); margin-top: 1px; }
.summary { break-inside: avoid; page-break-inside: avoid; }
.summary h2 { margin-top: 0; }
.summary { border: 1px solid #cbd5e1; border-left: 4px solid var(--accent); border-radius: 4px;
  padding: 12px 16px 10px; margin: 4px 0 6px; background: #fbfcfe; }
.verdict { margin: 0 0 10px; font-weight: 700; font-size: 13.5px; }
.verdict span { font-weight: 400; color: var(--muted); font-size: 11.5px; }
.verdict.good { color: #15803d; } .verdict.fair { color: #b45309; } .verdict.poor { color: #b91c1c; }
.metrics { display: grid; grid-template-columns: repeat(2, 1fr); gap: 10px 24px; }
.metric-name { font-size: 10.5px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); }
.metric-value { font-size: 16px; font-weight: 700; }
.metric-value.muted { font-size: 13px; font-weight: 400; color: var(--muted); font-style: italic; }
.metric-value .change { font-size: 12.5px; font-weight: 600; color: #374151; }
.metric-detail { font-size: 11.5px; color: #4b5563; }
table.infusions { width: 100%; border-collapse: collapse; font-size: 12px; }
table.infusions th, table.infusions td { padding: 4px 6px; border-bottom: 1px solid #e5e7eb; text-align: left; }
table.infusions thead th { font-size: 11px; color: #374151;
  border-bottom: 2px solid #9ca3af; vertical-align: bottom; font-weight: 600; }
table.infusions .num { text-align: right; font-variant-numeric: tabular-nums; }
table.infusions tr.series-row th { background: #f1f5f9; color: var(--accent); font-size: 12px; padding-top: 6px; }
table.infusions tr.series-row th span { font-weight: 400; color: #4b5563; margin-left: 8px; }
table.infusions td.flag { color: #b91c1c; font-weight: 700; }
table.infusions tr { break-inside: avoid; page-break-inside: avoid; }
.muted { color: var(--muted); font-style: italic; }
p.note { font-size: 11px; color: var(--muted); margin: 6px 0 0; }
p.none { color: var(--muted); font-style: italic; margin: 4px 0; }
footer.report { margin-top: 22px; padding-top: 8px; border-top: 1px solid var(--rule); font-size: 10.5px;
  color: var(--muted); display: flex; justify-content: space-between; gap: 16px; }
@page { size: A4; margin: 14mm 13mm 14mm; }
@media print {
  html, body { background: #fff; }
  body { padding: 0; font-size: 10pt; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .page { max-width: none; margin: 0; padding: 0; box-shadow: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  thead { display: table-header-group; }
  figure.chart svg { max-height: 62mm; }
}
"#;

/// The patient report as one HTML page.
pub fn render_patient_report(
    patient: &Value,
    record: &PatientRecord,
    config: &ClinicConfig,
    outcomes: Option<&PatientOutcomes>,
    now: DateTime<Utc>,
) -> String {
    let name = display_name(patient);
    let id = patient["id"].as_str().unwrap_or_default();
    let gender = patient["gender"]
        .as_str()
        .map(capitalized)
        .unwrap_or_else(|| DASH.into());
    let [pain_chart, phq9_chart, bp_chart] = charts(record, config, now);
    let first_and_last = match (record.infusions.first(), record.infusions.last()) {
        (Some(first), Some(last)) => format!("{} \u{2013} {}", date(first.start), date(last.start)),
        _ => "none".into(),
    };
    let mut html = String::with_capacity(64 * 1024);
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ketamine treatment report &ndash; {name_text}</title>
<style>{STYLE}</style>
</head>
<body>
<main class="page">
<header class="report">
<div><h1>Ketamine Infusion Treatment Report</h1><div class="subtitle">Intravenous ketamine for chronic pain &middot; summary for the referring physician and payer review</div></div>
<div class="issued">Report date<br><strong>{report_date}</strong></div>
</header>
<dl class="patient">
<div class="wide"><dt>Patient</dt><dd class="patient-name">{name_text}</dd></div>
<div><dt>MRN</dt><dd>{mrn}</dd></div>
<div><dt>Gender</dt><dd>{gender}</dd></div>
<div class="wide"><dt>Date of birth</dt><dd>{birth}</dd></div>
<div class="wide"><dt>Infusions</dt><dd>{count} &middot; {first_and_last}</dd></div>
<div class="full"><dt>Active diagnoses</dt><dd>{diagnoses}</dd></div>
</dl>
{summary}
<section class="charts">
<h2>Course over time</h2>
<figure class="chart pain">{pain_chart}<figcaption>Pain severity, 0&ndash;10 numeric rating scale (LOINC 72514-3), before and after each infusion.</figcaption></figure>
<figure class="chart phq9">{phq9_chart}<figcaption>Depression, PHQ-9 total score (LOINC 44261-6); shading marks the mild, moderate, moderately severe and severe ranges.</figcaption></figure>
<figure class="chart bp">{bp_chart}<figcaption>Blood pressure before, during and after infusions. Dashed lines: the clinic's pre-infusion hold limits.</figcaption></figure>
</section>
<section class="table">
<h2>Infusion series</h2>
{table}
</section>
<footer class="report"><span>Generated from the clinic's FHIR record (Patient/{id}) on {generated}. Confidential patient information.</span><span>ketamine-fhir</span></footer>
</main>
</body>
</html>
"#,
        name_text = escape(&name),
        report_date = escape(&date(now)),
        mrn = escape(&mrn(patient).unwrap_or_else(|| DASH.into())),
        gender = escape(&gender),
        birth = escape(&birth_date(patient, now)),
        count = record.infusions.len(),
        first_and_last = escape(&first_and_last),
        diagnoses = diagnoses(record),
        summary = outcome_summary(outcomes),
        table = infusion_table(record, config),
        id = escape(id),
        generated = escape(&now.format("%-d %b %Y %H:%M UTC").to_string()),
    );
    html
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::clinic::outcomes::patient_outcomes;
    use crate::clinic::record::{Dose, Infusion, Reading};

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap() + Duration::days(n)
    }

    fn reading(kind: ReadingKind, at: DateTime<Utc>, value: f64) -> Reading {
        Reading::new(kind, at, value)
    }

    fn infusion(start: DateTime<Utc>) -> Infusion {
        Infusion {
            id: None,
            status: "completed".into(),
            start,
            end: Some(start + Duration::minutes(60)),
            dose: Some(Dose::Milligrams(35.0)),
            rate: None,
            concentration_mg_per_ml: None,
            route: None,
        }
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "urn:x", "value": "KC000001"}],
            "name": [{"family": "O'Brien <Smith> & Co", "given": ["Ada"]}],
            "gender": "female",
            "birthDate": "1975-04-12"
        })
    }

    fn treated() -> PatientRecord {
        let mut readings = vec![reading(ReadingKind::BodyWeight, day(-2), 70.0)];
        for (i, d) in [0, 3, 20].into_iter().enumerate() {
            let pre = day(d) - Duration::minutes(10);
            readings.push(reading(ReadingKind::PainSeverity, pre, 8.0 - i as f64));
            readings.push(reading(ReadingKind::Systolic, pre, 130.0));
            readings.push(reading(ReadingKind::Diastolic, pre, 82.0));
            readings.push(reading(ReadingKind::OxygenSaturation, pre, 97.0));
        }
        readings.sort_by_key(|r| r.at);
        PatientRecord {
            infusions: vec![infusion(day(0)), infusion(day(3)), infusion(day(20))],
            readings,
            diagnoses: Vec::new(),
        }
    }

    fn svgs(html: &str) -> Vec<&str> {
        html.split("<svg")
            .skip(1)
            .map(|s| s.split("</svg>").next().unwrap())
            .collect()
    }

    #[test]
    fn escape_replaces_every_special_character() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn patient_text_is_escaped_in_the_page() {
        let mut patient = patient();
        patient["identifier"][0]["value"] = json!("<script>alert(1)</script>");
        let html = render_patient_report(
            &patient,
            &treated(),
            &ClinicConfig::default(),
            None,
            day(30),
        );
        assert!(html.contains("Ada O&#39;Brien &lt;Smith&gt; &amp; Co"));
        assert!(!html.contains("<Smith>"));
        assert!(!html.contains("<script"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn every_chart_marks_each_infusion_once() {
        let config = ClinicConfig::default();
        let record = treated();
        let outcomes = patient_outcomes(&record, &config, day(30));
        let html = render_patient_report(&patient(), &record, &config, Some(&outcomes), day(30));
        let charts = svgs(&html);
        assert_eq!(charts.len(), 3);
        for chart in charts {
            assert_eq!(chart.matches(r#"class="infusion-marker""#).count(), 3);
        }
        assert_eq!(html.matches(r#"class="infusion-row""#).count(), 3);
        // Days 0 and 3 are one series, day 20 (17 days later) starts the second.
        assert_eq!(html.matches(r#"class="series-row""#).count(), 2);
        // No PHQ-9 recorded: its chart says so.
        assert!(svgs(&html)[1].contains("No PHQ-9 recorded"));
        // The hold limits are drawn as dashed lines on the blood-pressure chart.
        assert_eq!(svgs(&html)[2].matches(r#"class="threshold""#).count(), 2);
        assert!(html.contains("Outcome summary") && !html.contains("unavailable"));
        // 35 mg of 70 kg over an hour.
        assert!(html.contains(r#"<td class="num">0.50</td><td class="num">0.50</td>"#));
        assert!(html.contains("130/82"));
    }

    #[test]
    fn an_empty_record_renders() {
        let html = render_patient_report(
            &json!({"resourceType": "Patient", "id": "empty"}),
            &PatientRecord::default(),
            &ClinicConfig::default(),
            None,
            day(0),
        );
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        assert_eq!(svgs(&html).len(), 3);
        assert!(!html.contains("infusion-marker"));
        assert!(html.contains("No PHQ-9 recorded") && html.contains("No pain score recorded"));
        assert!(html.contains("No ketamine infusion recorded"));
        assert!(html.contains("Outcome summary unavailable"));
        assert!(html.contains("Unnamed patient"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let html = render_patient_report(
            &patient(),
            &treated(),
            &ClinicConfig::default(),
            None,
            day(30),
        );
        assert!(!html.contains("<script"));
        assert!(!html.contains("<link") && !html.contains("<img") && !html.contains("url("));
        // The only URL is the SVG namespace.
        let urls = html.matches("http").count();
        assert_eq!(urls, html.matches("http://www.w3.org/2000/svg").count());
        assert!(html.contains("@media print") && html.contains("size: A4"));
        assert!(html.contains("12 Apr 1975 (age 51)"));
    }
}
