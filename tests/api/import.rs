//! `ketamine-fhir import`: NDJSON files loaded with their ids, all or nothing, every bad
//! line reported as FILE:LINE: message.

use std::path::PathBuf;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::binary;
use crate::helpers::{TestApp, json, match_ids};

/// A temporary directory of input files, removed when dropped.
struct Inputs(PathBuf);

impl Inputs {
    fn new() -> Self {
        let directory =
            std::env::temp_dir().join(format!("ketamine-import-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&directory).unwrap();
        Inputs(directory)
    }

    /// Writes `lines` (one resource or raw text each) as `name`; returns its path.
    fn file(&self, name: &str, lines: &[String]) -> String {
        let path = self.0.join(name);
        std::fs::write(
            &path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        path.display().to_string()
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn import(app: &TestApp, files: &[&str]) -> Output {
    binary(app).arg("import").args(files).output().unwrap()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Okafor", "given": ["Ada"]}], "gender": "female", "birthDate": "1975-04-12"})
}

fn pain_score(id: &str, patient_id: &str, score: i64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2026-10-02T09:00:00Z", "valueInteger": score
    })
}

fn infusion(id: &str, patient_id: &str, medication_id: &str) -> Value {
    json!({
        "resourceType": "MedicationAdministration", "id": id, "status": "completed",
        "medicationReference": {"reference": format!("Medication/{medication_id}")},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectivePeriod": {"start": "2026-10-02T10:00:00Z", "end": "2026-10-02T11:00:00Z"},
        "dosage": {"dose": {"value": 35, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}
    })
}

fn ketamine(id: &str) -> Value {
    json!({"resourceType": "Medication", "id": id, "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "238083"}]}})
}

fn lines(resources: &[Value]) -> Vec<String> {
    resources.iter().map(Value::to_string).collect()
}

#[tokio::test]
async fn a_good_import_loads_exactly_its_resources_with_their_ids_searchable() {
    let app = TestApp::spawn().await;
    let inputs = Inputs::new();
    let patients = inputs.file(
        "patients.ndjson",
        &lines(&[patient("mrn-1001"), patient("mrn-1002")]),
    );
    let records = inputs.file(
        "records.ndjson",
        &lines(&[
            pain_score("pain-1", "mrn-1001", 7),
            infusion("infusion-1", "mrn-1001", "ketamine-100"),
        ]),
    );
    // Enough resources that the Medication lands in a later batch than the infusion.
    let staff: Vec<Value> = (0..600)
        .map(|n| json!({"resourceType": "Practitioner", "id": format!("staff-{n}"), "name": [{"family": "Adeyemi"}]}))
        .collect();
    let mut staff_lines = lines(&staff);
    staff_lines.insert(300, String::new());
    let staff_file = inputs.file("staff.ndjson", &staff_lines);
    let medications = inputs.file("medications.ndjson", &lines(&[ketamine("ketamine-100")]));

    let output = import(&app, &[&patients, &records, &staff_file, &medications]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(app.count_rows("resources").await, 605);
    assert_eq!(app.count_rows("resource_versions").await, 605);

    let response = app.get("Patient/mrn-1001").await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored = json(response).await;
    assert_eq!(stored["meta"]["versionId"], "1");
    let mut without_meta = stored.clone();
    without_meta.as_object_mut().unwrap().remove("meta");
    assert_eq!(without_meta, patient("mrn-1001"));
    let found = json(
        app.get("Observation?patient=mrn-1001&code=http://loinc.org|72514-3")
            .await,
    )
    .await;
    assert_eq!(match_ids(&found), ["pain-1"]);
    let found = json(
        app.get("MedicationAdministration?medication=Medication/ketamine-100")
            .await,
    )
    .await;
    assert_eq!(match_ids(&found), ["infusion-1"]);
    assert_eq!(
        json(app.get("Practitioner?_summary=count").await).await["total"],
        600
    );
    // Outcome facts: the infusion counts as ketamine through a Medication loaded after it.
    assert_eq!(
        app.count_rows("clinic_facts WHERE kind = 'infusion'").await,
        1
    );
    assert_eq!(
        app.count_rows("clinic_facts WHERE kind = 'pain-score'")
            .await,
        1
    );
}

#[tokio::test]
async fn bad_lines_are_each_reported_and_nothing_is_loaded() {
    let app = TestApp::spawn().await;
    let inputs = Inputs::new();
    let mut broken = pain_score("pain-2", "mrn-1", 4);
    broken.as_object_mut().unwrap().remove("status");
    let file = inputs.file(
        "mixed.ndjson",
        &[
            patient("mrn-1").to_string(),
            broken.to_string(),
            pain_score("pain-3", "mrn-1", 5).to_string(),
            r#"{"resourceType": "Patient", "id": "mrn-2", "#.to_string(),
            patient("mrn-3").to_string(),
        ],
    );
    let output = import(&app, &[&file]);
    assert!(!output.status.success());
    let errors = stderr_lines(&output);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(
        errors[0],
        format!(
            "{file}:2: Observation.status: Observation.status is required (minimum cardinality 1)"
        )
    );
    assert!(
        errors[1].starts_with(&format!("{file}:4: malformed JSON at column ")),
        "{errors:?}"
    );
    assert_eq!(errors[2], "nothing was imported: 2 problem(s) in the input");
    assert_eq!(app.count_rows("resources").await, 0);
    assert_eq!(app.count_rows("search_token").await, 0);
}

#[tokio::test]
async fn unknown_types_invalid_json_duplicates_and_taken_ids_are_reported() {
    let app = TestApp::spawn().await;
    let inputs = Inputs::new();
    let first = inputs.file(
        "first.ndjson",
        &[
            patient("mrn-7").to_string(),
            json!({"resourceType": "Spaceship", "id": "enterprise"}).to_string(),
            "this is not JSON".to_string(),
            json!({"resourceType": "Subscription", "id": "hook"}).to_string(),
        ],
    );
    let second = inputs.file(
        "second.ndjson",
        &lines(&[patient("mrn-8"), patient("mrn-7")]),
    );
    let output = import(&app, &[&first, &second]);
    assert!(!output.status.success());
    assert_eq!(
        stderr_lines(&output),
        [
            format!("{first}:2: resourceType 'Spaceship' is not a type this server serves"),
            format!("{first}:3: malformed JSON at column 2: expected ident"),
            format!(
                "{first}:4: Subscription resources are not imported: create them through the API, which checks their endpoints and starts their delivery"
            ),
            format!("{second}:2: Patient/mrn-7 appears again (first at {first}:1)"),
            "nothing was imported: 4 problem(s) in the input".to_string(),
        ]
    );
    assert_eq!(app.count_rows("resources").await, 0);

    let response = app.put("Patient/mrn-8", &patient("mrn-8")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let taken = inputs.file(
        "taken.ndjson",
        &lines(&[patient("mrn-9"), patient("mrn-8")]),
    );
    let output = import(&app, &[&taken]);
    assert!(!output.status.success());
    assert_eq!(
        stderr_lines(&output),
        [
            format!("{taken}:2: Patient/mrn-8 already exists in the database"),
            "nothing was imported: 1 problem(s) in the input".to_string(),
        ]
    );
    assert_eq!(app.count_rows("resources").await, 1);
    assert_eq!(
        app.get("Patient/mrn-9").await.status(),
        StatusCode::NOT_FOUND
    );

    let output = import(&app, &["/nonexistent/patients.ndjson"]);
    assert!(!output.status.success());
    assert!(
        stderr_lines(&output)[0].starts_with("/nonexistent/patients.ndjson:0: cannot be opened: ")
    );
}
