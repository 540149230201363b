//! `Patient/{id}/$medical-necessity`: the prior-authorization package, against a record
//! written through the API (infusions that pass the safety rules: 70 kg, 35 mg of ketamine
//! 100 mg/mL over 40-120 minutes, vital signs 10 minutes before each start).

use chrono::{DateTime, Duration, Utc};
use ketamine_fhir::fhir::validation::{ValidationOptions, validate_resource};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, issue_expressions, json, outcome_diagnostics, patient};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const NDC: &str = "99999-0100-10";
const CLINIC: &str = "ketamine-clinic";

/// The tables a package request must leave as they are.
const TABLES: &[&str] = &[
    "resources",
    "resource_versions",
    "search_token",
    "search_reference",
    "clinic_facts",
];

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn id(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_string()
}

/// An app whose clinic Organization exists.
async fn clinic_app() -> TestApp {
    let app =
        TestApp::spawn_with(|config| config.clinic_organization_id = Some(CLINIC.into())).await;
    let response = app
        .put(
            &format!("Organization/{CLINIC}"),
            &json!({"resourceType": "Organization", "id": CLINIC, "name": "Riverside Ketamine Clinic",
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app
}

async fn stored_rows(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        counts.push(app.count_rows(table).await);
    }
    counts
}

fn subject(patient_id: &str) -> Value {
    json!({"reference": format!("Patient/{patient_id}")})
}

fn observation(patient_id: &str, when: &str, category: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": subject(patient_id),
        "effectiveDateTime": when
    })
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": unit})
}

async fn score(app: &TestApp, patient_id: &str, when: &str, code: &str, value: Value) -> Value {
    let mut score = observation(patient_id, when, "survey", code);
    match value {
        Value::Number(n) if n.is_i64() => score["valueInteger"] = json!(n),
        other => score["valueQuantity"] = quantity(other.as_f64().unwrap(), "{score}"),
    }
    app.create(&score).await
}

/// A PHQ-9 total scored from a completed questionnaire.
async fn phq9(app: &TestApp, patient_id: &str, when: &str, total: i64) -> (Value, Value) {
    let response = app
        .create(&json!({
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": subject(patient_id),
            "authored": when,
            "item": [{"linkId": "phq9-total", "answer": [{"valueInteger": total}]}]
        }))
        .await;
    let mut observation = observation(patient_id, when, "survey", "44261-6");
    observation["valueInteger"] = json!(total);
    observation["derivedFrom"] =
        json!([{"reference": format!("QuestionnaireResponse/{}", id(&response))}]);
    (app.create(&observation).await, response)
}

fn condition(patient_id: &str, code: &str, display: &str, status: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
        "subject": subject(patient_id),
        "onsetDateTime": "2024-05-01"
    })
}

fn medication_request(patient_id: &str, medication: Value, status: &str, authored: &str) -> Value {
    let mut request = json!({
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "subject": subject(patient_id),
        "authoredOn": authored
    });
    request
        .as_object_mut()
        .unwrap()
        .extend(medication.as_object().unwrap().clone());
    request
}

fn rxnorm(code: &str, display: &str) -> Value {
    json!({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}]}})
}

/// Weight and pre-infusion vitals, then 35 mg of the product over `minutes` (at the rate
/// that makes 0.5 mg/kg), the reason being `reason`.
async fn infusion(
    app: &TestApp,
    patient_id: &str,
    start: &str,
    minutes: i64,
    product: &str,
    reason: &str,
) -> Value {
    let start = at(start);
    let before = instant(start - Duration::minutes(10));
    let mut bp = observation(patient_id, &before, "vital-signs", "85354-9");
    bp["component"] = json!([
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(120.0, "mm[Hg]")},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": quantity(80.0, "mm[Hg]")}
    ]);
    app.create(&bp).await;
    for (code, value, unit) in [("8867-4", 70.0, "/min"), ("59408-5", 98.0, "%")] {
        let mut vital = observation(patient_id, &before, "vital-signs", code);
        vital["valueQuantity"] = quantity(value, unit);
        app.create(&vital).await;
    }
    let rate = (0.5 * 60.0 / minutes as f64 * 1000.0).round() / 1000.0;
    app.create(&json!({
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationReference": {"reference": format!("Medication/{product}")},
        "subject": subject(patient_id),
        "effectivePeriod": {"start": instant(start), "end": instant(start + Duration::minutes(minutes))},
        "reasonReference": [{"reference": format!("Condition/{reason}")}],
        "dosage": {
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
            "dose": quantity(35.0, "mg"),
            "rateQuantity": quantity(rate, "mg/kg/h")
        }
    }))
    .await
}

fn coverage(patient_id: &str, payer: &str) -> Value {
    json!({
        "resourceType": "Coverage",
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EHCPOL"}]},
        "subscriberId": "AHP-55501",
        "beneficiary": subject(patient_id),
        "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": "self"}]},
        "period": {"start": "2026-01-01"},
        "payor": [{"reference": format!("Organization/{payer}")}]
    })
}

/// Everything the package of the fibromyalgia patient should hold, by role.
struct Record {
    patient: String,
    coverage: String,
    payer: String,
    physician: String,
    fibromyalgia: String,
    opioid_use: String,
    prior_treatments: Vec<String>,
    opioid: String,
    /// Pain, PEG and PHQ-9 at baseline and follow-up (the PHQ-9s each with its
    /// questionnaire), in the order of the package.
    measures: Vec<(&'static str, String)>,
    infusions: Vec<String>,
}

/// A fibromyalgia patient on long-term opioids, after two failed medications, with four
/// infusions (40, 61, 91 and 120 minutes, 2-9 March 2026): pain 8 -> 3, PEG 7.3 -> 4,
/// PHQ-9 16 -> 6. Also recorded, and left out of the package: a resolved diagnosis, an
/// active non-opioid medication, the ketamine order, vital signs and weight.
async fn fibromyalgia_patient(app: &TestApp) -> Record {
    let payer = id(&app
        .create(&json!({"resourceType": "Organization", "name": "Acme Health Plan",
                         "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "pay"}]}]}))
        .await);
    let physician = id(&app
        .create(&json!({"resourceType": "Practitioner", "name": [{"family": "Adeyemi", "given": ["Tola"], "prefix": ["Dr"]}]}))
        .await);
    let mut person = patient();
    person["generalPractitioner"] = json!([{"reference": format!("Practitioner/{physician}")}]);
    let patient_id = id(&app.create(&person).await);
    let coverage = id(&app.create(&coverage(&patient_id, &payer)).await);
    let opioid_use = id(&app
        .create(&condition(
            &patient_id,
            "Z79.891",
            "Long term (current) use of opiate analgesic",
            "active",
        ))
        .await);
    let fibromyalgia = id(&app
        .create(&condition(&patient_id, "M79.7", "Fibromyalgia", "active"))
        .await);
    app.create(&condition(
        &patient_id,
        "G89.4",
        "Chronic pain syndrome",
        "resolved",
    ))
    .await;
    let mut prior_treatments = Vec::new();
    for (code, display, status) in [
        ("72625", "duloxetine", "stopped"),
        ("187832", "pregabalin", "completed"),
    ] {
        let request = medication_request(&patient_id, rxnorm(code, display), status, "2025-06-01");
        prior_treatments.push(id(&app.create(&request).await));
    }
    app.create(&medication_request(
        &patient_id,
        rxnorm("704", "amitriptyline"),
        "active",
        "2025-09-01",
    ))
    .await;
    app.create(&medication_request(
        &patient_id,
        rxnorm("6130", "ketamine"),
        "active",
        "2026-02-20",
    ))
    .await;
    let oxycodone = id(&app
        .create(&json!({"resourceType": "Medication",
                         "code": {"coding": [{"system": RXNORM, "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}]},
                         "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "7804", "display": "oxycodone"}]}}]}))
        .await);
    let opioid = id(&app
        .create(&medication_request(
            &patient_id,
            json!({"medicationReference": {"reference": format!("Medication/{oxycodone}")}}),
            "active",
            "2025-01-15",
        ))
        .await);
    let product = id(&app
        .create(&json!({"resourceType": "Medication", "status": "active",
                         "code": {"coding": [{"system": RXNORM, "code": "238083", "display": "ketamine 100 MG/ML Injectable Solution"},
                                             {"system": "http://hl7.org/fhir/sid/ndc", "code": NDC}]}}))
        .await);
    let mut weight = observation(
        &patient_id,
        "2026-03-01T08:00:00Z",
        "vital-signs",
        "29463-7",
    );
    weight["valueQuantity"] = quantity(70.0, "kg");
    app.create(&weight).await;
    let (phq9_baseline, baseline_questionnaire) =
        phq9(app, &patient_id, "2026-03-01T09:00:00Z", 16).await;
    let peg_baseline = score(
        app,
        &patient_id,
        "2026-03-01T09:00:00Z",
        "91147-9",
        json!(7.3),
    )
    .await;
    let pain_baseline = score(
        app,
        &patient_id,
        "2026-03-02T09:50:00Z",
        "72514-3",
        json!(8),
    )
    .await;
    let mut infusions = Vec::new();
    for (start, minutes) in [
        ("2026-03-02T10:00:00Z", 40),
        ("2026-03-04T10:00:00Z", 61),
        ("2026-03-06T10:00:00Z", 91),
        ("2026-03-09T10:00:00Z", 120),
    ] {
        infusions.push(id(&infusion(
            app,
            &patient_id,
            start,
            minutes,
            &product,
            &fibromyalgia,
        )
        .await));
    }
    let pain_latest = score(
        app,
        &patient_id,
        "2026-03-20T10:00:00Z",
        "72514-3",
        json!(3),
    )
    .await;
    let peg_latest = score(
        app,
        &patient_id,
        "2026-03-20T10:00:00Z",
        "91147-9",
        json!(4.0),
    )
    .await;
    let (phq9_latest, latest_questionnaire) =
        phq9(app, &patient_id, "2026-03-20T10:00:00Z", 6).await;
    let measures = vec![
        ("Observation", id(&pain_baseline)),
        ("Observation", id(&pain_latest)),
        ("Observation", id(&peg_baseline)),
        ("Observation", id(&peg_latest)),
        ("Observation", id(&phq9_baseline)),
        ("QuestionnaireResponse", id(&baseline_questionnaire)),
        ("Observation", id(&phq9_latest)),
        ("QuestionnaireResponse", id(&latest_questionnaire)),
    ];
    Record {
        patient: patient_id,
        coverage,
        payer,
        physician,
        fibromyalgia,
        opioid_use,
        prior_treatments,
        opioid,
        measures,
        infusions,
    }
}

/// Another patient of the same payer with data of every kind, none of it to be seen.
async fn other_patient(app: &TestApp, payer: &str) -> Vec<String> {
    let other = id(&app.create(&patient()).await);
    let mut ids = vec![other.clone()];
    ids.push(id(&app.create(&coverage(&other, payer)).await));
    ids.push(id(&app
        .create(&condition(
            &other,
            "G90.511",
            "CRPS I of right upper limb",
            "active",
        ))
        .await));
    ids.push(id(&app
        .create(&medication_request(
            &other,
            rxnorm("7052", "morphine"),
            "active",
            "2025-02-01",
        ))
        .await));
    ids.push(id(&score(
        app,
        &other,
        "2026-03-03T09:00:00Z",
        "72514-3",
        json!(9),
    )
    .await));
    ids.push(id(&app.create(&crate::helpers::infusion(&other)).await));
    ids
}

fn url(app: &TestApp, resource_type: &str, id: &str) -> String {
    format!("{}/{resource_type}/{id}", app.base)
}

fn reference(app: &TestApp, resource_type: &str, id: &str) -> Value {
    json!({"reference": url(app, resource_type, id)})
}

/// `(type, id)` of each entry after the Claim.
fn entry_ids(bundle: &Value) -> Vec<(String, String)> {
    bundle["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| {
            let resource = &e["resource"];
            (
                resource["resourceType"].as_str().unwrap().to_string(),
                id(resource),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(t, i)| (t.to_string(), i.to_string()))
        .collect()
}

/// The Claim's `(kind, target)` of each supportingInfo: a reference, or the summary text.
fn supporting_info(claim: &Value) -> Vec<(String, String)> {
    claim["supportingInfo"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, info)| {
            assert_eq!(info["sequence"], index + 1);
            let kind = info["code"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_string();
            let target = info["valueReference"]["reference"]
                .as_str()
                .or(info["valueString"].as_str())
                .unwrap()
                .to_string();
            (kind, target)
        })
        .collect()
}

/// `(code, servicedDate, quantity, informationSequence)` of each item.
fn items(claim: &Value) -> Vec<(String, String, u64, Value)> {
    claim["item"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, item)| {
            assert_eq!(item["sequence"], index + 1);
            (
                item["productOrService"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                item["servicedDate"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                item["quantity"]["value"].as_u64().unwrap(),
                item["informationSequence"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_package_holds_a_preauthorization_claim_and_each_resource_it_references_once() {
    let app = clinic_app().await;
    let record = fibromyalgia_patient(&app).await;
    let others = other_patient(&app, &record.payer).await;
    let stored = stored_rows(&app).await;

    let response = app
        .get(&format!("Patient/{}/$medical-necessity", record.patient))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let bundle = json(response).await;
    assert_eq!(
        stored_rows(&app).await,
        stored,
        "the package stored something"
    );

    // The Bundle: a collection whose first entry is the (unstored) Claim.
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let claim_url = bundle["entry"][0]["fullUrl"].as_str().unwrap();
    assert!(claim_url.starts_with("urn:uuid:"), "{claim_url}");
    assert_eq!(
        bundle["identifier"],
        json!({"system": "urn:ietf:rfc:3986", "value": claim_url})
    );
    assert!(bundle["timestamp"].as_str().unwrap().ends_with('Z'));
    let claim = &bundle["entry"][0]["resource"];
    assert_eq!(claim["resourceType"], "Claim");
    assert!(claim.get("id").is_none());
    let report = validate_resource("Claim", claim, ValidationOptions::default());
    assert!(report.issues.is_empty(), "{:?}", report.issues);

    // Then every resource the Claim references, each once, by its absolute URL.
    let mut expected: Vec<(&str, &str)> = vec![
        ("Patient", &record.patient),
        ("Coverage", &record.coverage),
        ("Organization", &record.payer),
        ("Organization", CLINIC),
        ("Practitioner", &record.physician),
        ("Condition", &record.fibromyalgia),
        ("Condition", &record.opioid_use),
        ("MedicationRequest", &record.prior_treatments[0]),
        ("MedicationRequest", &record.prior_treatments[1]),
        ("MedicationRequest", &record.opioid),
    ];
    expected.extend(record.measures.iter().map(|(t, i)| (*t, i.as_str())));
    expected.extend(
        record
            .infusions
            .iter()
            .map(|i| ("MedicationAdministration", i.as_str())),
    );
    assert_eq!(entry_ids(&bundle), pairs(&expected));
    for entry in &bundle["entry"].as_array().unwrap()[1..] {
        let resource = &entry["resource"];
        assert_eq!(
            entry["fullUrl"],
            url(
                &app,
                resource["resourceType"].as_str().unwrap(),
                &id(resource)
            )
        );
        assert!(
            resource["meta"]["versionId"].is_string(),
            "entries are the stored resources"
        );
    }
    let text = bundle.to_string();
    for other in &others {
        assert!(
            !text.contains(other.as_str()),
            "{other} of another patient is in the package"
        );
    }

    // The Claim itself.
    let patient_id = &record.patient;
    assert_eq!(
        claim["identifier"],
        json!([{"system": "urn:ietf:rfc:3986", "value": claim_url}])
    );
    assert_eq!(claim["status"], "active");
    assert_eq!(
        claim["type"],
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]})
    );
    assert_eq!(claim["use"], "preauthorization");
    assert_eq!(claim["patient"], reference(&app, "Patient", patient_id));
    let created = at(claim["created"].as_str().unwrap());
    assert!((Utc::now() - created).num_seconds().abs() < 60);
    assert_eq!(
        claim["insurer"],
        reference(&app, "Organization", &record.payer)
    );
    assert_eq!(claim["provider"], reference(&app, "Organization", CLINIC));
    assert_eq!(
        claim["priority"],
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]})
    );
    assert_eq!(
        claim["careTeam"],
        json!([{
            "sequence": 1,
            "provider": reference(&app, "Practitioner", &record.physician),
            "role": {"coding": [{"system": "https://codesystem.x12.org/005010/98", "code": "P3", "display": "Primary Care Provider"}],
                     "text": "Primary care physician (Patient.generalPractitioner)"}
        }])
    );
    assert_eq!(
        claim["insurance"],
        json!([{"sequence": 1, "focal": true, "coverage": reference(&app, "Coverage", &record.coverage)}])
    );
    assert_eq!(
        claim["diagnosis"],
        json!([
            {"sequence": 1,
             "diagnosisCodeableConcept": {"coding": [{"system": ICD10, "code": "M79.7", "display": "Fibromyalgia"}]},
             "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-diagnosistype", "code": "principal"}]}]},
            {"sequence": 2,
             "diagnosisCodeableConcept": {"coding": [{"system": ICD10, "code": "Z79.891", "display": "Long term (current) use of opiate analgesic"}]}}
        ])
    );

    // The evidence, in reading order, then the outcome summary from the outcomes rules.
    let target = |t: &str, i: &str| url(&app, t, i);
    let mut evidence = vec![
        ("diagnosis", target("Condition", &record.fibromyalgia)),
        ("diagnosis", target("Condition", &record.opioid_use)),
        (
            "prior-treatment",
            target("MedicationRequest", &record.prior_treatments[0]),
        ),
        (
            "prior-treatment",
            target("MedicationRequest", &record.prior_treatments[1]),
        ),
        ("opioid-use", target("MedicationRequest", &record.opioid)),
    ];
    let measure_kinds = [
        "baseline-measure",
        "follow-up-measure",
        "baseline-measure",
        "follow-up-measure",
        "baseline-measure",
        "baseline-measure",
        "follow-up-measure",
        "follow-up-measure",
    ];
    for ((t, i), kind) in record.measures.iter().zip(measure_kinds) {
        evidence.push((kind, target(t, i)));
    }
    for infusion in &record.infusions {
        evidence.push(("infusion", target("MedicationAdministration", infusion)));
    }
    let summaries = [
        "Pain severity (NRS 0-10, LOINC 72514-3): 8 at baseline on 2026-03-02, 3 latest on 2026-03-20; 5 points lower (62.5% reduction); IMMPACT response: substantial (moderate from 30%, substantial from 50% reduction)",
        "PEG pain interference (LOINC 91147-9): 7.3 at baseline on 2026-03-01, 4 latest on 2026-03-20; 3.3 points lower (45.2% reduction)",
        "PHQ-9 depression (LOINC 44261-6): 16 at baseline on 2026-03-01, 6 latest on 2026-03-20; 10 points lower (62.5% reduction); response (50% reduction or more): yes; remission (below 5): no",
        "Ketamine infusions: 4 given in 1 series, 140 mg in total; the latest on 2026-03-09",
    ];
    evidence.extend(summaries.iter().map(|s| ("outcome-summary", s.to_string())));
    let evidence: Vec<(String, String)> = evidence
        .into_iter()
        .map(|(k, t)| (k.to_string(), t))
        .collect();
    assert_eq!(supporting_info(claim), evidence);
    let infos = claim["supportingInfo"].as_array().unwrap();
    assert_eq!(
        infos[0]["category"],
        json!({"coding": [{"system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASTempCodes", "code": "additionalInformation"}]})
    );
    assert_eq!(infos[0]["timingDate"], "2024-05-01");
    assert_eq!(infos[13]["timingDate"], "2026-03-02");
    assert_eq!(
        infos[20]["category"]["coding"][0]["code"],
        "freeFormMessage"
    );
    // Every reference of the Claim resolves to an entry of the Bundle.
    let full_urls: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    let mut references = Vec::new();
    collect_references(claim, &mut references);
    assert_eq!(references.len(), 5 + 17);
    for reference in &references {
        assert!(
            full_urls.contains(&reference.as_str()),
            "{reference} is not in the Bundle"
        );
    }

    // The lines: 96365 per infusion, 96366 for the 91 and 120 minutes, J3490 with the NDC.
    let line = |code: &str, date: &str, quantity: u64, info: u64| {
        (code.to_string(), date.to_string(), quantity, json!([info]))
    };
    assert_eq!(
        items(claim),
        [
            line("96365", "2026-03-02", 1, 14),
            line("J3490", "2026-03-02", 1, 14),
            line("96365", "2026-03-04", 1, 15),
            line("J3490", "2026-03-04", 1, 15),
            line("96365", "2026-03-06", 1, 16),
            line("96366", "2026-03-06", 1, 16),
            line("J3490", "2026-03-06", 1, 16),
            line("96365", "2026-03-09", 1, 17),
            line("96366", "2026-03-09", 1, 17),
            line("J3490", "2026-03-09", 1, 17),
        ]
    );
    let item = |n: usize| &claim["item"][n];
    assert_eq!(
        item(0)["productOrService"],
        json!({"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "96365", "display": "IV infusion for therapy, initial, up to 1 hour"}]})
    );
    assert_eq!(
        item(1)["productOrService"]["coding"][0]["system"],
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
    );
    assert_eq!(
        item(1)["detail"],
        json!([{
            "sequence": 1,
            "productOrService": {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": NDC}], "text": "ketamine"},
            "quantity": {"value": 0.35, "unit": "mL", "system": UCUM, "code": "mL"}
        }])
    );
    for n in 0..10 {
        assert_eq!(
            item(n)["diagnosisSequence"],
            json!([1]),
            "item {n} points at the infusions' reason"
        );
    }
}

/// The `reference` of every Reference in `value`.
fn collect_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            if let Some(Value::String(reference)) = fields.get("reference") {
                found.push(reference.clone());
            }
            fields.values().for_each(|v| collect_references(v, found));
        }
        Value::Array(values) => values.iter().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

/// The package without what differs between two requests (ids and times of the Claim).
fn comparable(mut bundle: Value) -> Value {
    for field in ["identifier", "timestamp"] {
        bundle.as_object_mut().unwrap().remove(field);
    }
    let claim = &mut bundle["entry"][0];
    claim.as_object_mut().unwrap().remove("fullUrl");
    for field in ["identifier", "created"] {
        claim["resource"].as_object_mut().unwrap().remove(field);
    }
    bundle
}

#[tokio::test]
async fn a_parameters_body_and_a_patient_token_get_the_same_package_as_the_query() {
    let app = clinic_app().await;
    let record = fibromyalgia_patient(&app).await;
    let path = format!("Patient/{}/$medical-necessity", record.patient);
    let query = json(
        app.get(&format!(
            "{path}?coverage={}&start=2026-03-01&end=2026-03-31",
            record.coverage
        ))
        .await,
    )
    .await;
    let default = json(app.get(&path).await).await;
    assert_eq!(comparable(query.clone()), comparable(default));

    let stored = stored_rows(&app).await;
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "coverage", "valueId": record.coverage},
        {"name": "start", "valueDate": "2026-03-01"},
        {"name": "end", "valueDate": "2026-03-31"}
    ]});
    let response = app.post(&path, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let posted = json(response).await;
    assert_ne!(
        posted["identifier"], query["identifier"],
        "each package has its own id"
    );
    assert_eq!(comparable(posted), comparable(query.clone()));

    let own = app.token_for("patient/*.rs", Some(&record.patient));
    let response = app.get_as(&own, &path).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(comparable(json(response).await), comparable(query));
    assert_eq!(stored_rows(&app).await, stored);
}

#[tokio::test]
async fn other_patients_tokens_and_tokens_missing_an_included_type_are_refused() {
    let app = clinic_app().await;
    let record = fibromyalgia_patient(&app).await;
    let other = id(&app.create(&patient()).await);
    let path = format!("Patient/{}/$medical-necessity", record.patient);

    let other_token = app.token_for("patient/*.rs", Some(&other));
    let response = app.get_as(&other_token, &path).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        ["The access token is limited to one patient's data; this resource is outside it"]
    );

    let all_but_coverage = "user/Patient.rs user/Organization.rs user/Practitioner.rs user/Condition.rs \
        user/MedicationRequest.rs user/Observation.rs user/QuestionnaireResponse.rs user/MedicationAdministration.rs";
    let response = app
        .get_as(&app.token_for(all_but_coverage, None), &path)
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        [
            "The medical-necessity package holds Coverage resources, which this token may not read: \
          The access token's scopes do not allow Read on Coverage"
        ]
    );
    // Every included type is needed, even one this patient has none of.
    let no_questionnaires =
        all_but_coverage.replace("user/QuestionnaireResponse.rs", "user/Coverage.rs");
    let response = app
        .get_as(&app.token_for(&no_questionnaires, None), &path)
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        outcome_diagnostics(&json(response).await)[0]
            .contains("holds QuestionnaireResponse resources")
    );
    let everything = format!("{no_questionnaires} user/QuestionnaireResponse.rs");
    let response = app.get_as(&app.token_for(&everything, None), &path).await;
    assert_eq!(response.status(), StatusCode::OK);

    // A patient token whose other scopes reach another patient's compartment only.
    let mixed = app.token_for("system/Patient.rs patient/*.rs", Some(&other));
    let response = app.get_as(&mixed, &path).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        ["The access token reads Coverage resources of another patient only"]
    );
}

#[tokio::test]
async fn unknown_deleted_and_malformed_requests_are_refused_and_nothing_is_stored() {
    let app = clinic_app().await;
    let record = fibromyalgia_patient(&app).await;
    let other = id(&app.create(&patient()).await);
    let payer = record.payer.clone();
    let others_coverage = id(&app.create(&coverage(&other, &payer)).await);
    let gone = id(&app.create(&patient()).await);
    let response = app
        .request(Method::DELETE, &format!("Patient/{gone}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let stored = stored_rows(&app).await;
    let path = format!("Patient/{}/$medical-necessity", record.patient);

    let response = app.get("Patient/nobody/$medical-necessity").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        ["Patient/nobody does not exist"]
    );
    let response = app.get(&format!("Patient/{gone}/$medical-necessity")).await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        [format!("Patient/{gone} has been deleted")]
    );

    for (query, parameter) in [
        ("coverage=not%20an%20id", "coverage"),
        ("start=2026-03-01", "end"),
        ("start=2026-03-31&end=2026-03-01", "end"),
        (
            "planned-infusions=9&planned-minutes=60",
            "planned-infusions",
        ),
        (
            "planned-infusions=4&planned-minutes=60&planned-ndc=12",
            "planned-ndc",
        ),
        ("subject=Patient/x", "subject"),
    ] {
        let response = app.get(&format!("{path}?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            issue_expressions(&json(response).await),
            [parameter],
            "{query}"
        );
    }
    let response = app.post(&path, &json!({"resourceType": "Patient"})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        ["The body must be a Parameters resource"]
    );

    // Another patient's Coverage cannot be billed, and says no more than an unknown one.
    for coverage in [others_coverage.as_str(), "no-such-coverage"] {
        let response = app.get(&format!("{path}?coverage={coverage}")).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            outcome_diagnostics(&json(response).await),
            [format!(
                "Coverage/{coverage} is not a Coverage of Patient/{} on this server (it does not exist, was deleted, or covers someone else)",
                record.patient
            )]
        );
    }
    // A service period without infusions, and no planned series: nothing to authorize.
    let response = app
        .get(&format!("{path}?start=2026-06-01&end=2026-06-30"))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(outcome_diagnostics(&json(response).await)[0].starts_with("Nothing to authorize"));
    assert_eq!(stored_rows(&app).await, stored);
}

#[tokio::test]
async fn a_package_lists_everything_it_misses_at_once() {
    let app = TestApp::spawn().await;
    let mut person = patient();
    person["generalPractitioner"] = json!([{"reference": "Practitioner/retired-gp"}]);
    let patient_id = id(&app.create(&person).await);
    let mut ended = coverage(&patient_id, "acme");
    ended["period"] = json!({"start": "2025-01-01", "end": "2025-12-31"});
    app.create(&ended).await;
    let response = app
        .get(&format!(
            "Patient/{patient_id}/$medical-necessity?planned-infusions=4&planned-minutes=60"
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        outcome_diagnostics(&json(response).await),
        [
            format!("Patient/{patient_id} has no Coverage in force (status active, a period that includes today, the patient as beneficiary); record one or name one with the 'coverage' parameter"),
            "No clinic Organization is configured: CLINIC_ORGANIZATION_ID names the Organization that requests prior authorizations (the Claim's provider)".to_string(),
            format!("Patient/{patient_id}.generalPractitioner names Practitioner/retired-gp, which does not exist or has been deleted"),
        ]
    );
}

#[tokio::test]
async fn a_planned_series_is_billed_over_its_service_period() {
    let app = clinic_app().await;
    let payer = id(&app
        .create(&json!({"resourceType": "Organization", "name": "Acme Health Plan"}))
        .await);
    let patient_id = id(&app.create(&patient()).await);
    let coverage = id(&app.create(&coverage(&patient_id, &payer)).await);
    let fibromyalgia = id(&app
        .create(&condition(&patient_id, "M79.7", "Fibromyalgia", "active"))
        .await);
    let path = format!("Patient/{patient_id}/$medical-necessity");

    let response = app.get(&path).await;
    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "no infusion and no plan"
    );

    let response = app
        .get(&format!("{path}?planned-infusions=6&planned-minutes=100&planned-ndc={NDC}&start=2027-01-04&end=2027-02-14"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let bundle = json(response).await;
    assert_eq!(
        entry_ids(&bundle),
        pairs(&[
            ("Patient", &patient_id),
            ("Coverage", &coverage),
            ("Organization", &payer),
            ("Organization", CLINIC),
            ("Condition", &fibromyalgia)
        ])
    );
    let claim = &bundle["entry"][0]["resource"];
    assert!(!validate_resource("Claim", claim, ValidationOptions::default()).has_errors());
    let period = json!({"start": "2027-01-04", "end": "2027-02-14"});
    let hcpcs = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets";
    assert_eq!(
        claim["item"],
        json!([
            {"sequence": 1, "diagnosisSequence": [1],
             "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "96365", "display": "IV infusion for therapy, initial, up to 1 hour"}]},
             "servicedPeriod": period, "quantity": {"value": 6}},
            {"sequence": 2, "diagnosisSequence": [1],
             "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "96366", "display": "IV infusion for therapy, each additional hour"}]},
             "servicedPeriod": period, "quantity": {"value": 6}},
            {"sequence": 3, "diagnosisSequence": [1],
             "productOrService": {"coding": [{"system": hcpcs, "code": "J3490", "display": "Unclassified drugs (ketamine)"}]},
             "servicedPeriod": period, "quantity": {"value": 6},
             "detail": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": NDC}], "text": "ketamine"}}]}
        ])
    );
    assert_eq!(
        supporting_info(claim).last().unwrap(),
        &(
            "outcome-summary".to_string(),
            "Ketamine infusions: none given yet".to_string()
        )
    );
}
