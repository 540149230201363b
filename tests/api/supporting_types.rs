//! The clinic's supporting resource types come from the same registry as the first three:
//! each gets CRUD, history, validation and its standard search parameters.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, match_ids, outcome_diagnostics, patient};

fn practitioner() -> Value {
    json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
        "name": [{"family": "Adeyemi", "given": ["Tola"], "prefix": ["Dr"]}],
        "qualification": [{"code": {"text": "MD"}}]
    })
}

fn organization() -> Value {
    json!({
        "resourceType": "Organization",
        "name": "Riverside Family Practice",
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}]
    })
}

/// One valid example per supporting type, the parameter and value that should find it, and
/// a broken copy that validation must refuse with the given status.
fn examples(patient_id: &str) -> Vec<(Value, &'static str, String, Value, u16)> {
    let subject = json!({"reference": format!("Patient/{patient_id}")});
    let condition = json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G90.511", "display": "CRPS I of right upper limb"}]},
        "subject": subject,
        "onsetDateTime": "2024-03-01"
    });
    let encounter = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": subject,
        "period": {"start": "2026-11-20T09:30:00Z", "end": "2026-11-20T12:00:00Z"}
    });
    let medication = json!({
        "resourceType": "Medication",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "238083", "display": "ketamine 100 MG/ML Injectable Solution"}]},
        "status": "active"
    });
    let request = json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130"}]},
        "subject": subject,
        "authoredOn": "2026-11-01",
        "dosageInstruction": [{"text": "0.5 mg/kg IV over 60 minutes, 6 infusions over 3 weeks"}]
    });
    let response = json!({
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": subject,
        "authored": "2026-11-20T09:40:00Z",
        "item": [{"linkId": "phq9", "item": [{"linkId": "phq9-1", "answer": [{"valueInteger": 2}]}]}]
    });
    let broken = |mut resource: Value, field: &str| {
        resource.as_object_mut().unwrap().remove(field);
        resource
    };
    vec![
        (
            condition.clone(),
            "code",
            "http://hl7.org/fhir/sid/icd-10-cm|G90.511".into(),
            broken(condition, "subject"),
            400,
        ),
        (
            encounter.clone(),
            "class",
            "AMB".into(),
            broken(encounter, "status"),
            400,
        ),
        (
            practitioner(),
            "identifier",
            "http://hl7.org/fhir/sid/us-npi|1234567893".into(),
            json!({"resourceType": "Practitioner", "gender": "robot"}),
            400,
        ),
        (
            organization(),
            "name",
            "riverside".into(),
            json!({"resourceType": "Organization", "active": "yes"}),
            400,
        ),
        (
            medication.clone(),
            "code",
            "238083".into(),
            json!({"resourceType": "Medication", "status": "usable"}),
            400,
        ),
        (
            request.clone(),
            "intent",
            "order".into(),
            broken(request, "intent"),
            400,
        ),
        (
            response.clone(),
            "status",
            "completed".into(),
            broken(response, "status"),
            400,
        ),
    ]
}

#[tokio::test]
async fn each_supporting_type_has_crud_history_validation_and_search() {
    let app = TestApp::spawn().await;
    let patient = app.create(&patient()).await;
    let patient_id = patient["id"].as_str().unwrap();
    for (resource, parameter, value, broken, broken_status) in examples(patient_id) {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let created = app.create(&resource).await;
        let id = created["id"].as_str().unwrap().to_string();
        let path = format!("{resource_type}/{id}");

        let read = app.get(&path).await;
        assert_eq!(read.status(), StatusCode::OK, "{path}");
        assert_eq!(json(read).await, created);

        let mut changed = created.clone();
        changed.as_object_mut().unwrap().remove("meta");
        changed["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">changed</div>"});
        let updated = app.put(&path, &changed).await;
        assert_eq!(updated.status(), StatusCode::OK, "{path}");
        let history = json(app.get(&format!("{path}/_history")).await).await;
        assert_eq!(history["total"], 2, "{path}: {history}");

        let found = json(
            app.get(&format!("{resource_type}?{parameter}={value}"))
                .await,
        )
        .await;
        assert_eq!(
            match_ids(&found),
            [id.as_str()],
            "{resource_type}?{parameter}={value}"
        );

        let before = app.count_rows("resource_versions").await;
        let refused = app.post(&resource_type, &broken).await;
        assert_eq!(
            refused.status().as_u16(),
            broken_status,
            "{resource_type}: {broken}"
        );
        assert!(!outcome_diagnostics(&json(refused).await).is_empty());
        assert_eq!(
            app.count_rows("resource_versions").await,
            before,
            "{resource_type}"
        );
    }
}

#[tokio::test]
async fn patient_links_to_the_primary_care_physician() {
    let app = TestApp::spawn().await;
    let organization = app.create(&organization()).await;
    let mut doctor = practitioner();
    doctor["address"] = json!([{"city": "Riverside"}]);
    let doctor = app.create(&doctor).await;
    let mut person = patient();
    person["generalPractitioner"] = json!([
        {"reference": format!("Practitioner/{}", doctor["id"].as_str().unwrap())},
        {"reference": format!("Organization/{}", organization["id"].as_str().unwrap())}
    ]);
    let person = app.create(&person).await;
    let bundle = json(
        app.get(&format!(
            "Patient?_id={}&_include=Patient:general-practitioner",
            person["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    let mut included: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_string())
        .collect();
    included.sort();
    assert_eq!(included, ["Organization", "Practitioner"]);
    let by_doctor = json(
        app.get("Patient?general-practitioner:Practitioner.name=adeyemi")
            .await,
    )
    .await;
    assert_eq!(match_ids(&by_doctor), [person["id"].as_str().unwrap()]);
}
