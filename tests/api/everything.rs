//! `Patient/{id}/$everything`: the patient's compartment and the practitioners, organizations
//! and medications it refers to, in full keyset pages; `_type`, `_since`, `start`/`end`;
//! scopes; and the errors.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, infusion, issue_expressions, json, link, outcome_diagnostics, with_safety_override,
};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// Stores `resource` under its own id (update as create), asserting 201.
async fn put_new(app: &TestApp, resource: Value) -> Value {
    let path = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let response = app.put(&path, &resource).await;
    let status = response.status();
    let body = json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
    body
}

fn reference(target: &str) -> Value {
    json!({"reference": target})
}

fn patient(id: &str, practitioner: &str) -> Value {
    json!({
        "resourceType": "Patient", "id": id,
        "name": [{"family": "Everything", "given": [id]}],
        "gender": "female", "birthDate": "1975-04-12",
        "generalPractitioner": [reference(&format!("Practitioner/{practitioner}"))]
    })
}

fn heart_rate(id: &str, patient: &str, when: &str, performers: &[&str]) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": reference(&format!("Patient/{patient}")),
        "performer": performers.iter().map(|p| reference(p)).collect::<Vec<_>>(),
        "effectiveDateTime": when,
        "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"}
    })
}

/// A pain score the patient reported: the patient is both subject and performer.
fn pain_score(id: &str, patient: &str, when: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
        "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
        "subject": reference(&format!("Patient/{patient}")),
        "performer": [reference(&format!("Patient/{patient}"))],
        "effectiveDateTime": when,
        "valueInteger": 6
    })
}

fn condition(id: &str, patient: &str, code: &str, onset: Option<&str>) -> Value {
    let mut condition = json!({
        "resourceType": "Condition", "id": id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
        "subject": reference(&format!("Patient/{patient}")),
        "asserter": reference("Practitioner/ev-dr-shared")
    });
    if let Some(onset) = onset {
        condition["onsetDateTime"] = json!(onset);
    }
    condition
}

fn encounter(id: &str, patient: &str, start: &str, end: &str) -> Value {
    json!({
        "resourceType": "Encounter", "id": id, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": reference(&format!("Patient/{patient}")),
        "participant": [{"individual": reference("Practitioner/ev-dr-shared")}],
        "period": {"start": start, "end": end}
    })
}

fn administration(
    id: &str,
    patient: &str,
    start: &str,
    end: &str,
    medication: Option<&str>,
) -> Value {
    let mut resource = infusion(patient);
    resource["id"] = json!(id);
    resource["effectivePeriod"] = json!({"start": start, "end": end});
    resource["performer"] = json!([{"actor": reference("Practitioner/ev-dr-shared")}]);
    if let Some(medication) = medication {
        let object = resource.as_object_mut().unwrap();
        object.remove("medicationCodeableConcept");
        object.insert("medicationReference".into(), reference(medication));
    }
    with_safety_override(resource)
}

/// Two patients who share a practitioner; the ids of ev-1's `$everything` in creation order.
async fn two_patients(app: &TestApp) -> Vec<&'static str> {
    put_new(app, json!({"resourceType": "Organization", "id": "ev-org", "name": "Riverside Family Practice"})).await;
    put_new(app, json!({"resourceType": "Practitioner", "id": "ev-dr-shared", "name": [{"family": "Adeyemi"}]})).await;
    put_new(app, json!({"resourceType": "Practitioner", "id": "ev-dr-other", "name": [{"family": "Brandt"}]})).await;
    put_new(app, json!({"resourceType": "Medication", "id": "ev-med", "status": "active",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "238083"}]}})).await;
    put_new(
        app,
        json!({"resourceType": "Organization", "id": "ev-org-unrelated", "name": "Elsewhere"}),
    )
    .await;
    let mut first = patient("ev-1", "ev-dr-shared");
    first["managingOrganization"] = reference("Organization/ev-org");
    put_new(app, first).await;
    put_new(app, patient("ev-2", "ev-dr-other")).await;
    put_new(
        app,
        heart_rate(
            "ev-2-hr",
            "ev-2",
            "2026-11-20T10:00:00Z",
            &["Practitioner/ev-dr-shared", "Practitioner/ev-dr-other"],
        ),
    )
    .await;
    put_new(
        app,
        condition("ev-2-crps", "ev-2", "G90.511", Some("2024-03-01")),
    )
    .await;
    put_new(
        app,
        encounter(
            "ev-1-enc1",
            "ev-1",
            "2026-11-20T09:30:00Z",
            "2026-11-20T12:00:00Z",
        ),
    )
    .await;
    put_new(
        app,
        heart_rate(
            "ev-1-hr",
            "ev-1",
            "2026-11-20T10:00:00Z",
            &["Practitioner/ev-dr-shared"],
        ),
    )
    .await;
    put_new(app, pain_score("ev-1-pain", "ev-1", "2026-11-20T09:50:00Z")).await;
    put_new(
        app,
        administration(
            "ev-1-inf1",
            "ev-1",
            "2026-11-20T10:00:00Z",
            "2026-11-20T11:00:00Z",
            Some("Medication/ev-med"),
        ),
    )
    .await;
    put_new(
        app,
        condition("ev-1-crps", "ev-1", "G90.511", Some("2024-03-01")),
    )
    .await;
    put_new(app, condition("ev-1-fibro", "ev-1", "M79.7", None)).await;
    put_new(app, json!({
        "resourceType": "QuestionnaireResponse", "id": "ev-1-phq9", "status": "completed",
        "subject": reference("Patient/ev-1"), "authored": "2026-11-20T09:40:00Z",
        "item": [{"linkId": "phq9", "item": [{"linkId": "phq9-1", "answer": [{"valueInteger": 2}]}]}]
    }))
    .await;
    put_new(
        app,
        encounter(
            "ev-1-enc2",
            "ev-1",
            "2026-12-01T09:30:00Z",
            "2026-12-01T12:00:00Z",
        ),
    )
    .await;
    // Refers to the other patient's heart rate, which must not come with it.
    let mut panel = heart_rate("ev-1-hr2", "ev-1", "2026-12-01T10:00:00Z", &[]);
    panel.as_object_mut().unwrap().remove("performer");
    panel["hasMember"] = json!([reference("Observation/ev-2-hr")]);
    put_new(app, panel).await;
    put_new(
        app,
        administration(
            "ev-1-inf2",
            "ev-1",
            "2026-12-01T10:00:00Z",
            "2026-12-01T11:00:00Z",
            None,
        ),
    )
    .await;
    put_new(
        app,
        pain_score("ev-1-pain2", "ev-1", "2026-12-01T09:50:00Z"),
    )
    .await;
    vec![
        "Organization/ev-org",
        "Practitioner/ev-dr-shared",
        "Medication/ev-med",
        "Patient/ev-1",
        "Encounter/ev-1-enc1",
        "Observation/ev-1-hr",
        "Observation/ev-1-pain",
        "MedicationAdministration/ev-1-inf1",
        "Condition/ev-1-crps",
        "Condition/ev-1-fibro",
        "QuestionnaireResponse/ev-1-phq9",
        "Encounter/ev-1-enc2",
        "Observation/ev-1-hr2",
        "MedicationAdministration/ev-1-inf2",
        "Observation/ev-1-pain2",
    ]
}

/// `Type/id` of a Bundle's resource entries (not outcomes), in order.
fn entry_keys(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] != "outcome")
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn outcome_entries(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "outcome")
        .map(|e| &e["resource"])
        .collect()
}

async fn get_with(app: &TestApp, token: &str, url: &str) -> (StatusCode, Value) {
    let response = app.client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    (status, json(response).await)
}

/// Every page from `first` on, following `next` (at most `limit` pages).
async fn walk(app: &TestApp, token: &str, first: &str, limit: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut url = Some(format!("{}/{first}", app.base));
    while let Some(current) = url.take() {
        assert!(pages.len() < limit, "more than {limit} pages");
        let (status, page) = get_with(app, token, &current).await;
        assert_eq!(status, StatusCode::OK, "{current}: {page}");
        url = link(&page, "next");
        pages.push(page);
    }
    pages
}

async fn everything(app: &TestApp, query: &str) -> Vec<String> {
    let pages = walk(
        app,
        &app.token,
        &format!("Patient/ev-1/$everything?{query}"),
        20,
    )
    .await;
    pages.iter().flat_map(entry_keys).collect()
}

fn chunks(keys: &[&str], size: usize) -> Vec<Vec<String>> {
    keys.chunks(size)
        .map(|chunk| chunk.iter().map(|k| k.to_string()).collect())
        .collect()
}

#[tokio::test]
async fn pages_of_three_hold_the_compartment_and_its_references_once_each() {
    let app = TestApp::spawn().await;
    let expected = two_patients(&app).await;

    let pages = walk(&app, &app.token, "Patient/ev-1/$everything?_count=3", 10).await;
    let keys: Vec<Vec<String>> = pages.iter().map(entry_keys).collect();
    assert_eq!(
        keys,
        chunks(&expected, 3),
        "exact ids on every page, every page full"
    );
    let first = &pages[0];
    assert_eq!(first["type"], "searchset");
    assert!(
        first.get("total").is_none(),
        "only a complete first page gives total"
    );
    for page in &pages {
        for entry in page["entry"].as_array().unwrap() {
            let resource_type = entry["resource"]["resourceType"].as_str().unwrap();
            let mode = if ["Practitioner", "Organization", "Medication"].contains(&resource_type) {
                "include"
            } else {
                "match"
            };
            assert_eq!(entry["search"]["mode"], mode, "{entry}");
            assert_eq!(
                entry["fullUrl"],
                json!(format!(
                    "{}/{resource_type}/{}",
                    app.base,
                    entry["resource"]["id"].as_str().unwrap()
                ))
            );
        }
        assert!(outcome_entries(page).is_empty());
    }
    assert!(
        link(&pages[4], "next").is_none(),
        "no empty page after the last full one"
    );

    let pages = walk(&app, &app.token, "Patient/ev-1/$everything?_count=4", 10).await;
    let keys: Vec<Vec<String>> = pages.iter().map(entry_keys).collect();
    assert_eq!(keys, chunks(&expected, 4));

    let whole = walk(&app, &app.token, "Patient/ev-1/$everything", 2).await;
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0]["total"], 15);
    assert_eq!(entry_keys(&whole[0]), expected);
    let link_self = link(&whole[0], "self").unwrap();
    assert_eq!(link_self, format!("{}/Patient/ev-1/$everything?", app.base));
}

#[tokio::test]
async fn pages_stay_exact_while_resources_are_added_and_updated() {
    let app = TestApp::spawn().await;
    let expected = two_patients(&app).await;
    let url = format!("{}/Patient/ev-1/$everything?_count=4", app.base);
    let (status, page) = get_with(&app, &app.token, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entry_keys(&page), chunks(&expected, 4)[0]);
    let mut next = link(&page, "next").unwrap();

    // Written between pages: a resource still ahead (the heart rate) and one already
    // passed (the Patient) are updated, and new ones (with a new practitioner) are added.
    let mut updated = heart_rate(
        "ev-1-hr",
        "ev-1",
        "2026-11-20T10:00:00Z",
        &["Practitioner/ev-dr-shared"],
    );
    updated["valueQuantity"]["value"] = json!(80);
    assert_eq!(
        app.put("Observation/ev-1-hr", &updated).await.status(),
        StatusCode::OK
    );
    let mut passed = patient("ev-1", "ev-dr-shared");
    passed["managingOrganization"] = reference("Organization/ev-org");
    passed["gender"] = json!("other");
    assert_eq!(
        app.put("Patient/ev-1", &passed).await.status(),
        StatusCode::OK
    );
    put_new(
        &app,
        json!({"resourceType": "Practitioner", "id": "ev-dr-new", "name": [{"family": "Novak"}]}),
    )
    .await;
    put_new(
        &app,
        heart_rate(
            "ev-1-hr3",
            "ev-1",
            "2026-12-02T10:00:00Z",
            &["Practitioner/ev-dr-new"],
        ),
    )
    .await;

    let mut seen: Vec<String> = entry_keys(&page);
    for _ in 0..10 {
        let (status, page) = get_with(&app, &app.token, &next).await;
        assert_eq!(status, StatusCode::OK);
        let keys = entry_keys(&page);
        match link(&page, "next") {
            Some(url) => {
                assert_eq!(keys.len(), 4, "a page before the last is full: {keys:?}");
                next = url;
                seen.extend(keys);
            }
            None => {
                seen.extend(keys);
                break;
            }
        }
    }
    let mut all: Vec<String> = expected.iter().map(|k| k.to_string()).collect();
    all.extend([
        "Practitioner/ev-dr-new".to_string(),
        "Observation/ev-1-hr3".to_string(),
    ]);
    assert_eq!(
        seen, all,
        "each resource once, in creation order, the new ones last"
    );
}

#[tokio::test]
async fn type_since_and_care_dates_restrict_the_result() {
    let app = TestApp::spawn().await;
    two_patients(&app).await;

    assert_eq!(
        everything(&app, "_type=Observation,Practitioner&_count=2").await,
        [
            "Practitioner/ev-dr-shared",
            "Observation/ev-1-hr",
            "Observation/ev-1-pain",
            "Observation/ev-1-hr2",
            "Observation/ev-1-pain2"
        ]
    );
    assert_eq!(
        everything(&app, "_type=Condition&_type=Medication").await,
        [
            "Medication/ev-med",
            "Condition/ev-1-crps",
            "Condition/ev-1-fibro"
        ]
    );

    // December only: dated resources of November (and the 2024 onset) drop out, with the
    // medication only November's infusion refers to; the undated Condition stays.
    assert_eq!(
        everything(&app, "start=2026-12-01&end=2026-12-01").await,
        [
            "Organization/ev-org",
            "Practitioner/ev-dr-shared",
            "Patient/ev-1",
            "Condition/ev-1-fibro",
            "Encounter/ev-1-enc2",
            "Observation/ev-1-hr2",
            "MedicationAdministration/ev-1-inf2",
            "Observation/ev-1-pain2"
        ]
    );
    assert_eq!(
        everything(&app, "end=2026-11-30&_type=Observation,Condition,Encounter").await,
        [
            "Encounter/ev-1-enc1",
            "Observation/ev-1-hr",
            "Observation/ev-1-pain",
            "Condition/ev-1-crps",
            "Condition/ev-1-fibro"
        ]
    );
    // A period that overlaps the window's start counts; one that ended before it does not.
    assert_eq!(
        everything(
            &app,
            "start=2026-11-20T11:30:00Z&_type=Encounter,MedicationAdministration"
        )
        .await,
        [
            "Encounter/ev-1-enc1",
            "Encounter/ev-1-enc2",
            "MedicationAdministration/ev-1-inf2"
        ]
    );

    let written = json(app.get("Observation/ev-1-pain2").await).await;
    let last_written: DateTime<Utc> = written["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let since = last_written + Duration::milliseconds(1);
    for _ in 0..1000 {
        if Utc::now() > since {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let mut crps = condition("ev-1-crps", "ev-1", "G90.511", Some("2024-03-02"));
    crps["clinicalStatus"]["coding"][0]["code"] = json!("remission");
    assert_eq!(
        app.put("Condition/ev-1-crps", &crps).await.status(),
        StatusCode::OK
    );
    let practitioner = json!({"resourceType": "Practitioner", "id": "ev-dr-shared", "name": [{"family": "Adeyemi-Cole"}]});
    assert_eq!(
        app.put("Practitioner/ev-dr-shared", &practitioner)
            .await
            .status(),
        StatusCode::OK
    );
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        everything(&app, &format!("_since={since}")).await,
        ["Practitioner/ev-dr-shared", "Condition/ev-1-crps"]
    );
}

#[tokio::test]
async fn scopes_confine_the_result_and_say_what_was_left_out() {
    let app = TestApp::spawn().await;
    let expected = two_patients(&app).await;
    let url = format!("{}/Patient/ev-1/$everything", app.base);

    let own = app.token_for("patient/*.rs", Some("ev-1"));
    let (status, bundle) = get_with(&app, &own, &url).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(
        entry_keys(&bundle),
        expected,
        "a patient token sees its own record"
    );

    let other = app.token_for("patient/*.rs", Some("ev-2"));
    let (status, body) = get_with(&app, &other, &url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        outcome_diagnostics(&body),
        ["The access token is limited to one patient's data; this resource is outside it"]
    );

    let no_patient = app.token_for("user/Observation.rs user/Condition.rs", None);
    let (status, body) = get_with(&app, &no_patient, &url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        outcome_diagnostics(&body),
        ["The access token's scopes do not allow Read on Patient"]
    );

    let without_conditions = app.token_for(
        "user/Patient.r user/Observation.r user/Encounter.r user/MedicationAdministration.r \
         user/QuestionnaireResponse.r user/Practitioner.r user/Organization.r user/Medication.r",
        None,
    );
    let (status, bundle) = get_with(&app, &without_conditions, &format!("{url}?_count=50")).await;
    assert_eq!(status, StatusCode::OK);
    let visible: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|k| !k.starts_with("Condition/"))
        .collect();
    assert_eq!(entry_keys(&bundle), visible);
    let outcomes = outcome_entries(&bundle);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["issue"][0]["code"], "suppressed");
    assert_eq!(
        outcome_diagnostics(outcomes[0]),
        [
            "Left out the types the access token may not read: Condition, MedicationRequest, Group, Coverage, Claim"
        ]
    );
    let (_, conditions_only) =
        get_with(&app, &without_conditions, &format!("{url}?_type=Condition")).await;
    assert_eq!(entry_keys(&conditions_only), Vec::<String>::new());
    assert_eq!(
        outcome_diagnostics(outcome_entries(&conditions_only)[0]),
        ["Left out the types the access token may not read: Condition"]
    );

    // Observations confined to another patient are not this patient's to read.
    let mixed = app.token_for("system/Patient.r patient/Observation.r", Some("ev-2"));
    let (status, bundle) =
        get_with(&app, &mixed, &format!("{url}?_type=Patient,Observation")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entry_keys(&bundle), ["Patient/ev-1"]);
    assert_eq!(
        outcome_diagnostics(outcome_entries(&bundle)[0]),
        ["Left out the types the access token may not read: Observation"]
    );
}

#[tokio::test]
async fn the_other_patient_sees_only_its_own_record() {
    let app = TestApp::spawn().await;
    two_patients(&app).await;
    let keys = walk(&app, &app.token, "Patient/ev-2/$everything?_count=2", 5).await;
    let keys: Vec<String> = keys.iter().flat_map(entry_keys).collect();
    assert_eq!(
        keys,
        [
            "Practitioner/ev-dr-shared",
            "Practitioner/ev-dr-other",
            "Patient/ev-2",
            "Observation/ev-2-hr",
            "Condition/ev-2-crps"
        ]
    );
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len());
}

#[tokio::test]
async fn post_takes_a_parameters_body() {
    let app = TestApp::spawn().await;
    two_patients(&app).await;
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueCode": "Condition,Encounter"},
        {"name": "start", "valueDate": "2026-01-01"},
        {"name": "_count", "valueInteger": 1}
    ]});
    let response = app.post("Patient/ev-1/$everything", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let first = json(response).await;
    assert_eq!(entry_keys(&first), ["Encounter/ev-1-enc1"]);
    let next = link(&first, "next").unwrap();
    assert!(next.starts_with(&format!("{}/Patient/ev-1/$everything?_type=Condition%2CEncounter&start=2026-01-01&_count=1&_cursor=", app.base)), "{next}");
    let rest = walk(
        &app,
        &app.token,
        next.strip_prefix(&format!("{}/", app.base)).unwrap(),
        5,
    )
    .await;
    let keys: Vec<String> = rest.iter().flat_map(entry_keys).collect();
    assert_eq!(keys, ["Condition/ev-1-fibro", "Encounter/ev-1-enc2"]);

    let empty = app
        .request(Method::POST, "Patient/ev-1/$everything?_type=Patient")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::OK);
    assert_eq!(entry_keys(&json(empty).await), ["Patient/ev-1"]);

    let wrong = app
        .post(
            "Patient/ev-1/$everything",
            &json!({"resourceType": "Patient"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        outcome_diagnostics(&json(wrong).await),
        ["The body of POST $everything must be a Parameters resource"]
    );
}

#[tokio::test]
async fn unknown_deleted_and_malformed_requests_are_refused() {
    let app = TestApp::spawn().await;
    two_patients(&app).await;

    let response = app.get("Patient/nobody/$everything").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        ["Patient/nobody does not exist"]
    );

    put_new(&app, patient("ev-gone", "ev-dr-shared")).await;
    let deleted = app
        .request(Method::DELETE, "Patient/ev-gone")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let response = app.get("Patient/ev-gone/$everything").await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        ["Patient/ev-gone has been deleted"]
    );

    for (query, parameter) in [
        ("start=2026-13-01", "start"),
        ("end=tomorrow", "end"),
        ("start=2026-12-01&end=2026-11-01", "end"),
        ("_since=2026-11-01", "_since"),
        ("_type=Observation,Spaceship", "_type"),
        ("_count=0", "_count"),
        ("_count=ten", "_count"),
        ("start=2026&start=2027", "start"),
        ("_cursor=not-a-cursor", "_cursor"),
    ] {
        let response = app.get(&format!("Patient/ev-1/$everything?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = json(response).await;
        assert_eq!(issue_expressions(&body), [parameter], "{query}: {body}");
    }

    let strict = app
        .request(Method::GET, "Patient/ev-1/$everything?colour=blue")
        .header("Prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(strict.status(), StatusCode::BAD_REQUEST);
    let lenient = json(
        app.get("Patient/ev-1/$everything?colour=blue&_type=Patient")
            .await,
    )
    .await;
    assert_eq!(entry_keys(&lenient), ["Patient/ev-1"]);
    assert_eq!(
        outcome_diagnostics(outcome_entries(&lenient)[0]),
        ["Ignored parameters that $everything does not have: colour"]
    );
    assert_eq!(
        link(&lenient, "self").unwrap(),
        format!("{}/Patient/ev-1/$everything?_type=Patient", app.base)
    );
}

#[tokio::test]
async fn the_capability_statement_lists_the_operation() {
    let app = TestApp::spawn().await;
    let statement = json(app.get_anonymous("metadata").await).await;
    let patient = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    let everything = json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"});
    assert!(
        patient["operation"]
            .as_array()
            .unwrap()
            .contains(&everything),
        "{}",
        patient["operation"]
    );
}
