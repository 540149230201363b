//! Server-rendered inline SVG line charts over time, for the patient report: fixed value
//! axis with ticks, a date axis shared by every chart of a report, optional shaded value
//! zones and dashed threshold lines, and infusions drawn as vertical bands. No scripts; a
//! `<title>` on each point and band gives the exact value as a tooltip.

use std::fmt::Write;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::report::escape;

/// Size of the drawing in SVG user units; the SVG scales to the page width.
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 30.0;
/// Narrowest an infusion band is drawn, so a one-hour infusion stays visible on a
/// months-long axis.
const MIN_BAND: f64 = 4.0;

/// The time span every chart of one report shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeAxis {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeAxis {
    /// A span holding every instant given, padded on both sides; thirty days up to `now`
    /// when there is none.
    pub fn spanning(instants: impl IntoIterator<Item = DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let mut all = instants.into_iter();
        let Some(first) = all.next() else {
            return TimeAxis {
                from: now - Duration::days(30),
                to: now,
            };
        };
        let (from, to) = all.fold((first, first), |(low, high), at| {
            (low.min(at), high.max(at))
        });
        let pad = ((to - from) / 25).max(Duration::hours(12));
        TimeAxis {
            from: from - pad,
            to: to + pad,
        }
    }

    fn seconds(&self) -> f64 {
        ((self.to - self.from).num_seconds() as f64).max(1.0)
    }
}

/// One data line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    /// CSS colour.
    pub color: &'static str,
    pub unit: &'static str,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// A dashed horizontal line at a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub value: f64,
    /// In the legend.
    pub label: String,
    /// On the line.
    pub short_label: String,
    pub color: &'static str,
}

/// A shaded range of the value axis with a name (e.g. a PHQ-9 severity band).
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub from: f64,
    pub to: f64,
    pub label: &'static str,
    pub color: &'static str,
}

/// An infusion: a vertical band from start to end, numbered.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub label: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Names the chart for screen readers.
    pub title: String,
    pub y_label: String,
    pub y_min: f64,
    pub y_max: f64,
    pub y_ticks: Vec<f64>,
    pub lines: Vec<Line>,
    pub thresholds: Vec<Threshold>,
    pub zones: Vec<Zone>,
    pub bands: Vec<Band>,
    /// Shown across the plot when no line has a point.
    pub empty_message: String,
}

enum Swatch {
    Line(&'static str),
    Dashed(&'static str),
    Band,
}

struct Frame {
    axis: TimeAxis,
    y_min: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, at: DateTime<Utc>) -> f64 {
        let share = (at - self.axis.from).num_seconds() as f64 / self.axis.seconds();
        LEFT + share.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        let share = (value - self.y_min) / (self.y_max - self.y_min).max(f64::EPSILON);
        HEIGHT - BOTTOM - share.clamp(0.0, 1.0) * (HEIGHT - TOP - BOTTOM)
    }
}

/// Figures as SVG attributes: two decimals at most.
fn n(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A value as a tick or tooltip label.
fn figure(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Date ticks: midnights every 1, 2, 3, 7, 14, 28... days, at most eight.
fn date_ticks(axis: &TimeAxis) -> (Vec<DateTime<Utc>>, &'static str) {
    let days = axis.seconds() / 86_400.0;
    let step = [1, 2, 3, 7, 14, 28, 56, 91, 182, 365, 730]
        .into_iter()
        .find(|step| days / *step as f64 <= 8.0)
        .unwrap_or(1461);
    let first_day = axis.from.date_naive() + Duration::days(1);
    let mut tick = Utc.from_utc_datetime(&first_day.and_hms_opt(0, 0, 0).expect("midnight"));
    let mut ticks = Vec::new();
    while tick <= axis.to {
        ticks.push(tick);
        tick += Duration::days(step);
    }
    let format = if step >= 56 { "%b %Y" } else { "%-d %b" };
    (ticks, format)
}

impl LineChart {
    pub fn render(&self, axis: &TimeAxis) -> String {
        let frame = Frame {
            axis: *axis,
            y_min: self.y_min,
            y_max: self.y_max,
        };
        let (plot_left, plot_right) = (LEFT, WIDTH - RIGHT);
        let (plot_top, plot_bottom) = (TOP, HEIGHT - BOTTOM);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg class="chart" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg" font-size="10.5">"#,
            w = n(WIDTH),
            h = n(HEIGHT),
            title = escape(&self.title),
        );
        let _ = write!(svg, "<title>{}</title>", escape(&self.title));

        // Zones, then grid lines and value ticks.
        for zone in &self.zones {
            let (top, bottom) = (frame.y(zone.to), frame.y(zone.from));
            let _ = write!(
                svg,
                r##"<rect class="zone" x="{x}" y="{y}" width="{w}" height="{h}" fill="{c}"/><text class="zone-label" x="{tx}" y="{ty}" text-anchor="end" fill="#6b7280" font-size="9">{label}</text>"##,
                x = n(plot_left),
                y = n(top),
                w = n(plot_right - plot_left),
                h = n(bottom - top),
                c = zone.color,
                tx = n(plot_right - 4.0),
                ty = n(top + 10.0),
                label = escape(zone.label),
            );
        }
        for tick in &self.y_ticks {
            let y = frame.y(*tick);
            let _ = write!(
                svg,
                r##"<line x1="{l}" x2="{r}" y1="{y}" y2="{y}" stroke="#e5e7eb" stroke-width="1"/><text x="{tx}" y="{ty}" text-anchor="end" fill="#4b5563">{label}</text>"##,
                l = n(plot_left),
                r = n(plot_right),
                y = n(y),
                tx = n(plot_left - 6.0),
                ty = n(y + 3.5),
                label = figure(*tick),
            );
        }

        // Infusion bands with their numbers above the plot.
        for band in &self.bands {
            let x = frame.x(band.start);
            let width = (frame.x(band.end) - x).max(MIN_BAND);
            let x = x - if width == MIN_BAND {
                MIN_BAND / 2.0
            } else {
                0.0
            };
            let _ = write!(
                svg,
                r##"<rect class="infusion-marker" x="{x}" y="{y}" width="{w}" height="{h}" fill="#f59e0b" fill-opacity="0.28"><title>{title}</title></rect><text class="infusion-label" x="{tx}" y="{ty}" text-anchor="middle" fill="#b45309" font-size="9" font-weight="600">{label}</text>"##,
                x = n(x),
                y = n(plot_top),
                w = n(width),
                h = n(plot_bottom - plot_top),
                title = escape(&band.title),
                tx = n(x + width / 2.0),
                ty = n(plot_top - 4.0),
                label = escape(&band.label),
            );
        }

        // Thresholds.
        for threshold in &self.thresholds {
            let y = frame.y(threshold.value);
            let _ = write!(
                svg,
                r##"<line class="threshold" x1="{l}" x2="{r}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="1.2" stroke-dasharray="6 4"/><text x="{tx}" y="{ty}" text-anchor="end" fill="{c}" font-size="9.5" stroke="#ffffff" stroke-width="3" paint-order="stroke">{label}</text>"##,
                l = n(plot_left),
                r = n(plot_right),
                y = n(y),
                c = threshold.color,
                tx = n(plot_right - 4.0),
                ty = n(y - 3.0),
                label = escape(&threshold.short_label),
            );
        }

        // Axes and date ticks.
        let _ = write!(
            svg,
            r##"<line x1="{l}" x2="{l}" y1="{t}" y2="{b}" stroke="#6b7280"/><line x1="{l}" x2="{r}" y1="{b}" y2="{b}" stroke="#6b7280"/>"##,
            l = n(plot_left),
            r = n(plot_right),
            t = n(plot_top),
            b = n(plot_bottom),
        );
        let (ticks, format) = date_ticks(axis);
        for tick in ticks {
            let x = frame.x(tick);
            let _ = write!(
                svg,
                r##"<line x1="{x}" x2="{x}" y1="{b}" y2="{b2}" stroke="#6b7280"/><text class="date-tick" x="{x}" y="{ty}" text-anchor="middle" fill="#4b5563">{label}</text>"##,
                x = n(x),
                b = n(plot_bottom),
                b2 = n(plot_bottom + 4.0),
                ty = n(plot_bottom + 16.0),
                label = escape(&tick.format(format).to_string()),
            );
        }
        let _ = write!(
            svg,
            r##"<text x="12" y="{y}" transform="rotate(-90 12 {y})" text-anchor="middle" fill="#374151" font-size="10">{label}</text>"##,
            y = n((plot_top + plot_bottom) / 2.0),
            label = escape(&self.y_label),
        );

        // Lines and points.
        for line in &self.lines {
            if line.points.is_empty() {
                continue;
            }
            let path: Vec<String> = line
                .points
                .iter()
                .map(|(at, value)| format!("{},{}", n(frame.x(*at)), n(frame.y(*value))))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline class="series" points="{p}" fill="none" stroke="{c}" stroke-width="1.8" stroke-linejoin="round"/>"#,
                p = path.join(" "),
                c = line.color,
            );
            for (at, value) in &line.points {
                let _ = write!(
                    svg,
                    r##"<circle cx="{x}" cy="{y}" r="2.6" fill="#ffffff" stroke="{c}" stroke-width="1.5"><title>{label} {v}{unit} on {at}</title></circle>"##,
                    x = n(frame.x(*at)),
                    y = n(frame.y(*value)),
                    c = line.color,
                    label = escape(&line.label),
                    v = figure(*value),
                    unit = escape(line.unit),
                    at = at.format("%-d %b %Y %H:%M UTC"),
                );
            }
        }
        if self.lines.iter().all(|l| l.points.is_empty()) {
            let _ = write!(
                svg,
                r##"<text class="empty" x="{x}" y="{y}" text-anchor="middle" fill="#6b7280" font-size="13" font-style="italic">{message}</text>"##,
                x = n((plot_left + plot_right) / 2.0),
                y = n((plot_top + plot_bottom) / 2.0),
                message = escape(&self.empty_message),
            );
        }

        // Legend, top left above the plot.
        let mut entries: Vec<(Swatch, &str)> = Vec::new();
        entries.extend(
            self.lines
                .iter()
                .map(|l| (Swatch::Line(l.color), l.label.as_str())),
        );
        entries.extend(
            self.thresholds
                .iter()
                .map(|t| (Swatch::Dashed(t.color), t.label.as_str())),
        );
        entries.push((Swatch::Band, "Ketamine infusion (numbered)"));
        let mut x = plot_left;
        let y = 12.0;
        for (swatch, label) in entries {
            let (x1, x2) = (n(x), n(x + 16.0));
            match swatch {
                Swatch::Line(c) => {
                    let _ = write!(
                        svg,
                        r#"<line x1="{x1}" x2="{x2}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="2"/>"#
                    );
                }
                Swatch::Dashed(c) => {
                    let _ = write!(
                        svg,
                        r#"<line x1="{x1}" x2="{x2}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="1.2" stroke-dasharray="4 3"/>"#
                    );
                }
                Swatch::Band => {
                    let _ = write!(
                        svg,
                        r##"<rect x="{x1}" y="{top}" width="16" height="8" fill="#f59e0b" fill-opacity="0.35"/>"##,
                        top = n(y - 4.0)
                    );
                }
            }
            let _ = write!(
                svg,
                r##"<text x="{tx}" y="{ty}" fill="#374151">{label}</text>"##,
                tx = n(x + 20.0),
                ty = n(y + 3.5),
                label = escape(label),
            );
            x += 30.0 + label.chars().count() as f64 * 5.4;
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap() + Duration::days(day)
    }

    #[test]
    fn the_axis_spans_every_instant_with_padding() {
        let axis = TimeAxis::spanning([at(5), at(0), at(20)], at(100));
        assert!(axis.from < at(0) && axis.to > at(20));
        let empty = TimeAxis::spanning([], at(100));
        assert_eq!((empty.from, empty.to), (at(70), at(100)));
    }

    #[test]
    fn date_ticks_are_midnights_and_at_most_eight() {
        for days in [1, 10, 40, 200, 900] {
            let axis = TimeAxis::spanning([at(0), at(days)], at(0));
            let (ticks, _) = date_ticks(&axis);
            assert!(
                !ticks.is_empty() && ticks.len() <= 9,
                "{days}: {}",
                ticks.len()
            );
            assert!(
                ticks
                    .iter()
                    .all(|t| t.format("%H:%M").to_string() == "00:00")
            );
        }
    }

    #[test]
    fn values_outside_the_axis_stay_inside_the_plot() {
        let frame = Frame {
            axis: TimeAxis::spanning([at(0), at(10)], at(0)),
            y_min: 0.0,
            y_max: 10.0,
        };
        assert_eq!(frame.y(20.0), TOP);
        assert_eq!(frame.y(-5.0), HEIGHT - BOTTOM);
        assert_eq!(frame.x(at(-100)), LEFT);
    }
}
