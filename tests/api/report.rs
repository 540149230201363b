//! `GET /reports/patients/{id}`: the HTML patient report, over HTTP against the demo clinic,
//! and rendered by headless Chromium as a browser would show (and print) it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ketamine_fhir::seed;
use ketamine_fhir::store;
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, json, outcome_diagnostics};

const PATIENT: &str = "demo-patient-01";

/// A test app with the demo clinic loaded through the ordinary write path.
async fn demo_app() -> TestApp {
    let app = TestApp::spawn().await;
    let pool = store::build_pool(&app.config).unwrap();
    let context = app.config.write_context(app.config.listen_addr).unwrap();
    if let Err(error) = seed::load_demo(&pool, &context).await {
        panic!("loading the demo clinic failed: {error:?}");
    }
    app
}

async fn report_as(app: &TestApp, token: Option<&str>, path: &str) -> Response {
    let request = app
        .client
        .get(format!("{}/reports/patients/{path}", app.root));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap()
}

/// The demo patient's resources: the Patient and its ketamine infusions.
fn demo_patient() -> (Value, Vec<Value>) {
    let all = seed::demo_resources();
    let patient = all
        .iter()
        .find(|r| r["resourceType"] == "Patient" && r["id"] == PATIENT)
        .unwrap()
        .clone();
    let infusions = all
        .into_iter()
        .filter(|r| {
            r["resourceType"] == "MedicationAdministration"
                && r["subject"]["reference"] == format!("Patient/{PATIENT}")
        })
        .collect();
    (patient, infusions)
}

fn svgs(html: &str) -> Vec<&str> {
    html.split("<svg")
        .skip(1)
        .map(|s| s.split("</svg>").next().unwrap())
        .collect()
}

#[tokio::test]
async fn the_report_shows_the_patient_charts_and_series_to_those_allowed() {
    let app = demo_app().await;
    let (patient, infusions) = demo_patient();
    assert!(
        (4..=6).contains(&infusions.len()),
        "{} infusions",
        infusions.len()
    );

    let response = report_as(&app, Some(&app.token), PATIENT).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "the report has no scripts");

    // Header: name, MRN, birth date.
    let family = patient["name"][0]["family"].as_str().unwrap();
    let given = patient["name"][0]["given"][0].as_str().unwrap();
    assert!(html.contains(&format!("{given} {family}")), "{family}");
    assert!(html.contains(patient["identifier"][0]["value"].as_str().unwrap()));

    // Three charts, each marking every infusion once; the PHQ-9 before and after the series.
    let charts = svgs(&html);
    assert_eq!(charts.len(), 3);
    for chart in &charts {
        assert_eq!(
            chart.matches(r#"class="infusion-marker""#).count(),
            infusions.len()
        );
    }
    assert!(!charts[1].contains("No PHQ-9 recorded"));
    assert_eq!(charts[1].matches("<circle").count(), 2);
    assert_eq!(charts[2].matches(r#"class="threshold""#).count(), 2);
    assert!(charts[2].contains("Hold: systolic \u{2265} 160"));

    // The series table: one series (every demo infusion is 2-5 days after the one before),
    // one row per infusion with its date and dose.
    assert_eq!(html.matches(r#"class="series-row""#).count(), 1);
    assert!(html.contains("Series 1 <span>"));
    let rows: Vec<&str> = html
        .split(r#"<tr class="infusion-row">"#)
        .skip(1)
        .map(|row| row.split("</tr>").next().unwrap())
        .collect();
    assert_eq!(rows.len(), infusions.len());
    for (row, infusion) in rows.iter().zip(&infusions) {
        let start = chrono::DateTime::parse_from_rfc3339(
            infusion["effectivePeriod"]["start"].as_str().unwrap(),
        )
        .unwrap()
        .with_timezone(&chrono::Utc);
        assert!(
            row.contains(&start.format("%-d %b %Y %H:%M").to_string()),
            "{row}"
        );
        let mg = infusion["dosage"]["dose"]["value"].as_f64().unwrap();
        assert!(
            row.contains(&format!(r#"<td class="num">{mg:.0}</td>"#)),
            "{row}"
        );
    }

    // The outcome summary is filled in.
    assert!(html.contains("Outcome summary"));
    assert!(!html.contains("Outcome summary unavailable"));
    assert!(html.contains(&format!("{} infusions in 1 series", infusions.len())));

    // Unknown patient: 404 OperationOutcome.
    let unknown = report_as(&app, Some(&app.token), "no-such-patient").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let diagnostics = outcome_diagnostics(&json(unknown).await);
    assert!(diagnostics[0].contains("Patient/no-such-patient"));

    // A token for another patient: 403; for this patient: 200.
    let other = app.token_for("patient/*.rs", Some("demo-patient-02"));
    let forbidden = report_as(&app, Some(&other), PATIENT).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    outcome_diagnostics(&json(forbidden).await);
    let own = app.token_for("patient/*.rs", Some(PATIENT));
    assert_eq!(
        report_as(&app, Some(&own), PATIENT).await.status(),
        StatusCode::OK
    );

    // No token: 401.
    let anonymous = report_as(&app, None, PATIENT).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    outcome_diagnostics(&json(anonymous).await);

    // PDF: 406, with how to get one.
    let pdf = report_as(&app, Some(&app.token), &format!("{PATIENT}?format=pdf")).await;
    assert_eq!(pdf.status(), StatusCode::NOT_ACCEPTABLE);
    let diagnostics = outcome_diagnostics(&json(pdf).await);
    assert!(diagnostics[0].contains("print"), "{diagnostics:?}");
}

/// The chromium to render with: `CHROMIUM`, else /usr/bin/chromium. Missing is a failure:
/// scripts/test installs it (scripts/lib/chromium.sh).
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "chromium not found at {} (set CHROMIUM, or run scripts/test, which installs it with chromium_ensure from scripts/lib/chromium.sh)",
        path.display()
    );
    path
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

#[tokio::test]
async fn headless_chromium_renders_the_report() {
    let chromium = chromium();
    let app = demo_app().await;
    let response = report_as(&app, Some(&app.token), PATIENT).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();

    let dir =
        std::env::temp_dir().join(format!("ketamine-report-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let png = dir.join("report.png");
    let mut child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,2000")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(status.success(), "chromium failed: {stderr}");

    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot ({e}): {stderr}"));
    assert_eq!(png_size(&bytes), (1200, 2000));
    // A blank page compresses to a few KB; the charts, table and text make far more.
    assert!(bytes.len() > 20_000, "screenshot of {} bytes", bytes.len());
    // To refresh docs/images/patient-report.png: REPORT_SCREENSHOT=docs/images/patient-report.png
    // (and REPORT_HTML=... to keep the page).
    if let Some(copy) = std::env::var_os("REPORT_SCREENSHOT") {
        std::fs::copy(&png, copy).unwrap();
    }
    if let Some(copy) = std::env::var_os("REPORT_HTML") {
        std::fs::copy(&page, copy).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
