//! Table-driven checks of every parameter type and modifier against a small fixture clinic.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, follow, json, link, match_ids as ordered_ids, with_safety_override};

const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";

fn patient(id: &str, family: &str, given: &str, birth: &str, gender: &str, active: bool) -> Value {
    json!({
        "resourceType": "Patient", "id": id, "active": active,
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                        "system": "urn:mrn", "value": format!("MRN-{id}")}],
        "name": [{"family": family, "given": [given]}],
        "gender": gender, "birthDate": birth,
        "telecom": [{"system": "phone", "value": format!("555-{id}")}, {"system": "email", "value": format!("{id}@example.org")}],
        "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": if id == "a" { "10001" } else { "20002" }}],
        "generalPractitioner": [{"reference": format!("Practitioner/gp-{id}")}]
    })
}

fn observation(
    id: &str,
    subject: &str,
    code: &str,
    category: &str,
    effective: &str,
    value: Value,
) -> Value {
    let mut observation = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}], "text": format!("code {code}")},
        "subject": {"reference": format!("Patient/{subject}")},
        "effectiveDateTime": effective
    });
    for (key, item) in value.as_object().unwrap() {
        observation[key] = item.clone();
    }
    observation
}

async fn fixture() -> TestApp {
    let app = TestApp::spawn().await;
    let resources = vec![
        patient("a", "Smith", "Anne", "1970-05-01", "female", true),
        patient("b", "Smithers", "Bob", "1985-12-31", "male", false),
        patient("c", "Müller", "Zoë", "1960-01-15", "female", true),
        observation(
            "o1",
            "a",
            "72514-3",
            "survey",
            "2026-01-10T10:00:00-05:00",
            json!({"valueInteger": 7}),
        ),
        observation(
            "o2",
            "a",
            "8867-4",
            "vital-signs",
            "2026-01-10T10:05:00-05:00",
            json!({"valueQuantity": {"value": 80, "unit": "/min", "system": UCUM, "code": "/min"}}),
        ),
        observation(
            "o3",
            "b",
            "8867-4",
            "vital-signs",
            "2025-12-31T23:30:00+00:00",
            json!({"valueQuantity": {"value": 110, "unit": "/min", "system": UCUM, "code": "/min"}}),
        ),
        observation(
            "o4",
            "a",
            "29463-7",
            "vital-signs",
            "2026-02-01",
            json!({"valueQuantity": {"value": 72.5, "unit": "kg", "system": UCUM, "code": "kg"}}),
        ),
        observation(
            "o5",
            "b",
            "29463-7",
            "vital-signs",
            "2026-02-02",
            json!({"valueQuantity": {"value": 70000, "unit": "g", "system": UCUM, "code": "g"}}),
        ),
        observation(
            "o6",
            "c",
            "85354-9",
            "vital-signs",
            "2026-03-01T09:00:00Z",
            json!({
            "partOf": [{"reference": "MedicationAdministration/ma1"}],
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 150, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 95, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
            ]}),
        ),
        json!({
            "resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130"}], "text": "Ketamine"},
            "subject": {"reference": "Patient/c"},
            "context": {"reference": "Encounter/e1"},
            "performer": [{"actor": {"reference": "Practitioner/nurse-1"}}],
            "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G90.50"}]}],
            "effectivePeriod": {"start": "2026-03-01T08:30:00Z", "end": "2026-03-01T09:30:00Z"},
            "dosage": {"dose": {"value": 35, "unit": "mg", "system": UCUM, "code": "mg"}}
        }),
    ];
    for resource in resources {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let response = app.put(&path, &with_safety_override(resource)).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{path}: {}",
            response.text().await.unwrap()
        );
    }
    app
}

async fn matches(app: &TestApp, query: &str) -> Vec<String> {
    let response = app.get(query).await;
    let status = response.status();
    let bundle = json(response).await;
    assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    let outcome = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome");
    assert!(outcome.is_none(), "{query} ignored something: {outcome:?}");
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn check(app: &TestApp, cases: &[(&str, &[&str])]) {
    let mut failures = Vec::new();
    for (query, expected) in cases {
        let found = matches(app, query).await;
        if found != *expected {
            failures.push(format!("{query}: expected {expected:?}, found {found:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn string_parameters() {
    let app = fixture().await;
    check(
        &app,
        &[
            ("Patient?name=smi", &["a", "b"]),
            ("Patient?name=SMITH", &["a", "b"]),
            ("Patient?family=muller", &["c"]),
            ("Patient?given=zoe", &["c"]),
            ("Patient?name:exact=Smith", &["a"]),
            ("Patient?name:exact=smith", &[]),
            ("Patient?name:contains=ther", &["b"]),
            ("Patient?family=smith&given=bob", &["b"]),
            ("Patient?name=anne,zoe", &["a", "c"]),
            ("Patient?address=springf", &["a", "b", "c"]),
            ("Patient?address-postalcode=10001", &["a"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn token_parameters_and_modifiers() {
    let app = fixture().await;
    check(
        &app,
        &[
            ("Patient?gender=female", &["a", "c"]),
            ("Patient?gender:not=female", &["b"]),
            ("Patient?active=true", &["a", "c"]),
            ("Patient?identifier=urn:mrn|MRN-a", &["a"]),
            (
                "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-b",
                &["b"],
            ),
            ("Patient?phone=555-a", &["a"]),
            ("Patient?email=b@example.org", &["b"]),
            ("Patient?telecom=555-c", &["c"]),
            ("Observation?code=8867-4", &["o2", "o3"]),
            (
                "Observation?code=http://loinc.org|8867-4,http://loinc.org|72514-3",
                &["o1", "o2", "o3"],
            ),
            ("Observation?code:text=code 8867", &["o2", "o3"]),
            ("Observation?category=survey", &["o1"]),
            (
                "Observation?status=final&category=vital-signs&code:not=29463-7",
                &["o2", "o3", "o6"],
            ),
            ("Observation?component-code=8480-6", &["o6"]),
            ("Observation?combo-code=8462-4", &["o6"]),
            (
                "MedicationAdministration?code=http://www.nlm.nih.gov/research/umls/rxnorm|6130",
                &["ma1"],
            ),
            ("MedicationAdministration?reason-given=G90.50", &["ma1"]),
            ("MedicationAdministration?status=completed", &["ma1"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn date_parameters_with_precision_and_zones() {
    let app = fixture().await;
    check(
        &app,
        &[
            ("Patient?birthdate=1970", &["a"]),
            ("Patient?birthdate=1970-05-01", &["a"]),
            ("Patient?birthdate=ge1970", &["a", "b"]),
            ("Patient?birthdate=lt1970-05-01", &["c"]),
            ("Patient?birthdate=le1970-05-01", &["a", "c"]),
            ("Patient?birthdate=ne1970-05-01", &["b", "c"]),
            ("Patient?birthdate=sa1970&birthdate=eb1990", &["b"]),
            // 10:00-05:00 is 15:00 UTC.
            ("Observation?date=2026-01-10T15:00:00Z", &["o1"]),
            ("Observation?date=2026-01-10T10:00:00-05:00", &["o1"]),
            ("Observation?date=2026-01-10", &["o1", "o2"]),
            ("Observation?date=2026-01", &["o1", "o2"]),
            ("Observation?date=ge2026-01-01&code=8867-4", &["o2"]),
            ("Observation?date=lt2026-01-01", &["o3"]),
            ("Observation?date=2025-12-31", &["o3"]),
            (
                "MedicationAdministration?effective-time=2026-03-01T09:00:00Z",
                &[],
            ),
            (
                "MedicationAdministration?effective-time=2026-03-01",
                &["ma1"],
            ),
            (
                "MedicationAdministration?effective-time=gt2026-03-01T09:00:00Z",
                &["ma1"],
            ),
            ("Observation?date=ap2026-02-01&code=29463-7", &["o4", "o5"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn quantity_and_number_parameters_compare_across_units() {
    let app = fixture().await;
    check(
        &app,
        &[
            ("Observation?value-quantity=80", &["o2"]),
            ("Observation?value-quantity=gt100", &["o3", "o5"]),
            (
                "Observation?value-quantity=72.5|http://unitsofmeasure.org|kg",
                &["o4"],
            ),
            (
                "Observation?value-quantity=70|http://unitsofmeasure.org|kg",
                &["o5"],
            ),
            (
                "Observation?value-quantity=72500|http://unitsofmeasure.org|g",
                &["o4"],
            ),
            (
                "Observation?value-quantity=ge71|http://unitsofmeasure.org|kg",
                &["o4"],
            ),
            (
                "Observation?value-quantity=lt100|http://unitsofmeasure.org|/min",
                &["o2"],
            ),
            (
                "Observation?value-quantity=ap78|http://unitsofmeasure.org|/min",
                &["o2"],
            ),
            (
                "Observation?component-value-quantity=gt140|http://unitsofmeasure.org|mm[Hg]",
                &["o6"],
            ),
            (
                "Observation?combo-value-quantity=95|http://unitsofmeasure.org|mm[Hg]",
                &["o6"],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn references_chains_and_has() {
    let app = fixture().await;
    check(
        &app,
        &[
            ("Observation?patient=a", &["o1", "o2", "o4"]),
            ("Observation?subject:Patient=b", &["o3", "o5"]),
            ("Observation?part-of=MedicationAdministration/ma1", &["o6"]),
            ("MedicationAdministration?context=Encounter/e1", &["ma1"]),
            (
                "MedicationAdministration?performer=Practitioner/nurse-1",
                &["ma1"],
            ),
            ("Patient?general-practitioner=Practitioner/gp-b", &["b"]),
            ("Observation?subject:Patient.name=smithers", &["o3", "o5"]),
            ("Observation?patient.gender=female&code=29463-7", &["o4"]),
            ("Patient?_has:Observation:patient:code=72514-3", &["a"]),
            (
                "Patient?_has:Observation:patient:value-quantity=gt100",
                &["b"],
            ),
            (
                "Patient?_has:MedicationAdministration:patient:status=completed",
                &["c"],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn missing_modifier_and_resource_level_parameters() {
    let app = fixture().await;
    check(
        &app,
        &[
            ("Observation?value-quantity:missing=true", &["o1", "o6"]),
            ("Observation?part-of:missing=false", &["o6"]),
            ("Patient?_id=a,c", &["a", "c"]),
            ("Patient?_lastUpdated=gt2000-01-01", &["a", "b", "c"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn malformed_values_are_400_naming_the_parameter() {
    let app = fixture().await;
    for (query, parameter) in [
        ("Patient?birthdate=1970-13-01", "birthdate"),
        ("Patient?birthdate=xx1970", "birthdate"),
        ("Observation?value-quantity=abc", "value-quantity"),
        ("Observation?date=2026-01-10T10:00", "date"),
        ("Patient?active:missing=perhaps", "active:missing"),
        ("Patient?_sort=favourite-colour", "_sort"),
        ("Observation?subject=", "subject"),
        ("Observation?_include=Observation:status", "_include"),
    ] {
        let response = app.get(query).await;
        let status = response.status();
        let body = json(response).await;
        if query.ends_with("T10:00") {
            // hh:mm precision is a valid search value.
            assert_eq!(status, StatusCode::OK, "{query}");
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(
            body["issue"][0]["expression"][0], parameter,
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn sort_by_several_keys_in_both_directions() {
    let app = fixture().await;
    let by_date = json(app.get("Observation?_sort=-date").await).await;
    assert_eq!(ordered_ids(&by_date), ["o6", "o5", "o4", "o2", "o1", "o3"]);
    let by_birth = json(app.get("Patient?_sort=birthdate").await).await;
    assert_eq!(ordered_ids(&by_birth), ["c", "a", "b"]);
    let by_gender_then_family = json(app.get("Patient?_sort=gender,-family").await).await;
    // female before male; within female, family descending: "smith" after "muller".
    assert_eq!(ordered_ids(&by_gender_then_family), ["a", "c", "b"]);
    let by_value = json(
        app.get("Observation?_sort=value-quantity&value-quantity:missing=false")
            .await,
    )
    .await;
    // 80/min, 110/min (in /s), then 70 kg and 72.5 kg (in g): canonical units group by dimension.
    assert_eq!(ordered_ids(&by_value).len(), 4);
}

#[tokio::test]
async fn sorted_pages_link_forward_and_back_and_stay_stable_under_writes() {
    let app = fixture().await;
    let first = json(
        app.get("Observation?_sort=-date&_count=2&_total=accurate")
            .await,
    )
    .await;
    assert_eq!(ordered_ids(&first), ["o6", "o5"]);
    assert_eq!(first["total"], 6);
    assert!(link(&first, "previous").is_none());
    // A write that sorts onto the first page does not shift the later ones.
    let mut late = observation(
        "o7",
        "a",
        "8867-4",
        "vital-signs",
        "2026-12-01T10:00:00Z",
        json!({"valueQuantity": {"value": 60, "unit": "/min", "system": UCUM, "code": "/min"}}),
    );
    late["id"] = json!("o7");
    assert_eq!(
        app.put("Observation/o7", &late).await.status(),
        StatusCode::CREATED
    );
    let second = follow(&app, &link(&first, "next").unwrap()).await;
    assert_eq!(ordered_ids(&second), ["o4", "o2"]);
    assert_eq!(
        second["total"], 7,
        "the links keep _total=accurate, so later pages count too"
    );
    let third = follow(&app, &link(&second, "next").unwrap()).await;
    assert_eq!(ordered_ids(&third), ["o1", "o3"]);
    assert!(link(&third, "next").is_none());
    let back = follow(&app, &link(&third, "previous").unwrap()).await;
    assert_eq!(ordered_ids(&back), ["o4", "o2"]);
    let back_again = follow(&app, &link(&back, "previous").unwrap()).await;
    assert_eq!(ordered_ids(&back_again), ["o6", "o5"]);
    let newest = follow(
        &app,
        &link(&back_again, "previous").expect("o7 now precedes o6"),
    )
    .await;
    assert_eq!(ordered_ids(&newest), ["o7"]);
}

#[tokio::test]
async fn includes_revincludes_and_their_limit() {
    let app = fixture().await;
    let bundle = json(
        app.get("Observation?code=29463-7&_include=Observation:patient")
            .await,
    )
    .await;
    let included: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    let mut included = included;
    included.sort();
    assert_eq!(included, ["a", "b"]);
    let bundle = json(app.get("Patient?_id=c&_revinclude=Observation:patient&_revinclude=MedicationAdministration:patient").await).await;
    let mut revincluded: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    revincluded.sort();
    assert_eq!(revincluded, ["ma1", "o6"]);
    // :iterate follows from the included MedicationAdministration to its Patient... and the
    // Observation that is part of it.
    let bundle = json(app.get("Observation?_id=o6&_include=Observation:part-of&_include:iterate=MedicationAdministration:patient").await).await;
    let mut chain: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    chain.sort();
    assert_eq!(chain, ["c", "ma1"]);
}

#[tokio::test]
async fn include_limit_is_reported_never_silent() {
    let app = TestApp::spawn_with(|config| config.max_includes = 1).await;
    for (id, family) in [("p1", "One"), ("p2", "Two")] {
        let mut body = patient(id, family, "X", "1980-01-01", "other", true);
        body["id"] = json!(id);
        app.put(&format!("Patient/{id}"), &body).await;
        let obs = observation(
            &format!("w-{id}"),
            id,
            "29463-7",
            "vital-signs",
            "2026-01-01",
            json!({"valueQuantity": {"value": 70, "unit": "kg", "system": UCUM, "code": "kg"}}),
        );
        app.put(&format!("Observation/w-{id}"), &obs).await;
    }
    let bundle = json(app.get("Observation?_include=Observation:patient").await).await;
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .count(),
        1
    );
    let outcome = entries
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("an outcome says what was left out");
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("left out")
    );
}

#[tokio::test]
async fn summary_elements_and_total_modes() {
    let app = fixture().await;
    let count = json(app.get("Observation?code=8867-4&_summary=count").await).await;
    assert_eq!(count["total"], 2);
    assert!(count["entry"].as_array().unwrap().is_empty());
    let elements = json(app.get("Patient?_id=a&_elements=gender").await).await;
    let patient = &elements["entry"][0]["resource"];
    assert_eq!(patient["gender"], "female");
    assert!(patient.get("name").is_none());
    assert_eq!(patient["meta"]["tag"][0]["code"], "SUBSETTED");
    let summary = json(app.get("Patient?_id=a&_summary=true").await).await;
    assert!(
        summary["entry"][0]["resource"].get("name").is_some(),
        "name is a summary element"
    );
    let none = json(app.get("Patient?_total=none").await).await;
    assert!(none.get("total").is_none());
    let estimate = json(app.get("Patient?_total=estimate").await).await;
    assert!(estimate["total"].as_i64().is_some());
    let accurate = json(app.get("Patient?gender=female&_total=accurate").await).await;
    assert_eq!(accurate["total"], 2);
}
