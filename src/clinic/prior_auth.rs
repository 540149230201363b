//! The prior-authorization package of `Patient/{id}/$medical-necessity`: a Claim with
//! `use = preauthorization`, built (never stored) from the patient's record, followed by
//! every resource it references, in a `collection` Bundle shaped like the Da Vinci PAS
//! request Bundle a payer's `Claim/$submit` takes. docs/INTEROP.md maps every element.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::billing::{self, Drug, Line, Placement};
use super::codes;
use super::config::{ClinicConfig, OpioidCodes};
use super::outcomes::{PatientOutcomes, ScoreChange, patient_outcomes, summary};
use super::record::{
    Diagnosis, Infusion, PatientRecord, PatientResources, instant_of, is_ketamine,
    medication_concept,
};
use super::series;
use crate::fhir::dates::local_date;
use crate::fhir::fhirpath::reference_target;
use crate::fhir::outcome::Issue;
use crate::fhir::resource::instant;

/// The resource types a package can hold besides the Claim. A caller needs read access to
/// all of them, whether or not this patient's package has one, so that the answer never
/// depends on data the caller may not see.
pub const INCLUDED_TYPES: &[&str] = &[
    "Patient",
    "Coverage",
    "Organization",
    "Practitioner",
    "Condition",
    "MedicationRequest",
    "Observation",
    "QuestionnaireResponse",
    "MedicationAdministration",
];

/// The professional claim format lets a line point at four diagnoses at most.
const MAX_DIAGNOSIS_POINTERS: usize = 4;

/// What a package is built from, read in one snapshot (see `store::prior_auth`).
#[derive(Debug, Clone, Default)]
pub struct PackageSources {
    pub patient: Value,
    /// Administrations, scores and Conditions, with the Medications that administrations and
    /// requests reference.
    pub clinical: PatientResources,
    pub medication_requests: Vec<Value>,
    /// The live Coverages whose beneficiary is the patient.
    pub coverages: Vec<Value>,
    pub questionnaire_responses: Vec<Value>,
    /// The Organizations and Practitioners of `party_references`, those that exist.
    pub parties: Vec<Value>,
}

/// What the caller asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageRequest {
    /// The id of the Coverage to bill; by default the patient's Coverage in force.
    pub coverage: Option<String>,
    /// The infusions given that the Claim has lines for.
    pub billed: BilledInfusions,
    pub planned: Option<PlannedSeries>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BilledInfusions {
    /// The infusions of the patient's latest series.
    CurrentSeries,
    /// The infusions started in `[from, to)`.
    StartedBetween(DateTime<Utc>, DateTime<Utc>),
}

/// Infusions not yet given that the clinic asks authorization for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSeries {
    pub infusions: u32,
    pub minutes: u32,
    /// The product's NDC; without it there is no drug line for the planned infusions.
    pub ndc: Option<String>,
    /// The service period `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Where and when a package is built.
#[derive(Debug, Clone)]
pub struct PackageContext<'a> {
    pub config: &'a ClinicConfig,
    /// The FHIR base URL: references and `fullUrl`s are absolute under it.
    pub base_url: &'a str,
    pub zone: Tz,
    /// The id of the clinic's Organization (`CLINIC_ORGANIZATION_ID`), the Claim's provider.
    pub clinic_organization: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// Identifies the Claim (`fullUrl` `urn:uuid:…` and `identifier`) and the Bundle.
    pub package_id: uuid::Uuid,
}

/// The Organizations and Practitioners a package may reference: the patient's primary-care
/// physicians, the payors of the patient's Coverages, and the clinic.
pub fn party_references(
    patient: &Value,
    coverages: &[Value],
    clinic_organization: Option<&str>,
) -> Vec<(String, String)> {
    let mut references: Vec<(String, String)> = references_in(&patient["generalPractitioner"])
        .chain(coverages.iter().flat_map(|c| references_in(&c["payor"])))
        .filter_map(reference_target)
        .filter(|(t, _)| matches!(*t, "Organization" | "Practitioner"))
        .map(|(t, id)| (t.to_string(), id.to_string()))
        .chain(clinic_organization.map(|id| ("Organization".to_string(), id.to_string())))
        .collect();
    references.sort();
    references.dedup();
    references
}

fn references_in(list: &Value) -> impl Iterator<Item = &str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reference"].as_str())
}

/// The package Bundle, or every reason it cannot be built (422).
pub fn build(
    sources: &PackageSources,
    request: &PackageRequest,
    context: &PackageContext,
) -> Result<Value, Vec<Issue>> {
    let parties = resolve_parties(sources, request, context)?;
    let record = PatientRecord::from_resources(&sources.clinical, context.config);
    let outcomes = patient_outcomes(&record, context.config, context.now);
    let diagnoses = claim_diagnoses(&sources.clinical.conditions);
    let evidence = gather_evidence(sources, &record, &outcomes, &diagnoses, context);
    let lines = claim_lines(sources, &record, &diagnoses, &evidence, request, context);
    if lines.is_empty() {
        return Err(vec![Issue::error(
            "business-rule",
            "Nothing to authorize: no ketamine infusion was given in the service period and no \
             planned series was asked for (planned-infusions and planned-minutes)",
        )]);
    }
    let mut entries = Entries::new(context.base_url);
    let claim = claim(
        &parties,
        &diagnoses,
        &evidence,
        &lines,
        &sources.patient,
        &mut entries,
        context,
    );
    Ok(bundle(claim, entries, context))
}

/// Who the Claim names.
struct Parties<'a> {
    coverage: &'a Value,
    payor: &'a Value,
    provider: &'a Value,
    primary_care: Vec<&'a Value>,
}

/// The Coverage, its payor, the clinic and the primary-care physicians; every missing one is
/// an issue.
fn resolve_parties<'a>(
    sources: &'a PackageSources,
    request: &PackageRequest,
    context: &PackageContext,
) -> Result<Parties<'a>, Vec<Issue>> {
    let mut issues = Vec::new();
    let patient = id_of(&sources.patient);
    let coverage = chosen_coverage(sources, request.coverage.as_deref(), context)
        .map_err(|issue| issues.push(issue))
        .ok();
    let payor = coverage.and_then(|c| {
        payor_of(c, &sources.parties)
            .map_err(|issue| issues.push(issue))
            .ok()
    });
    let provider = clinic_organization(&sources.parties, context.clinic_organization)
        .map_err(|issue| issues.push(issue))
        .ok();
    let mut primary_care = Vec::new();
    for reference in references_in(&sources.patient["generalPractitioner"]) {
        match party(
            &sources.parties,
            reference,
            &["Practitioner", "Organization"],
        ) {
            Ok(found) => primary_care.push(found),
            Err(problem) => issues.push(
                Issue::error(
                    "not-found",
                    format!("Patient/{patient}.generalPractitioner names {reference}, {problem}"),
                )
                .at("Patient.generalPractitioner"),
            ),
        }
    }
    match (coverage, payor, provider) {
        (Some(coverage), Some(payor), Some(provider)) if issues.is_empty() => Ok(Parties {
            coverage,
            payor,
            provider,
            primary_care,
        }),
        _ => Err(issues),
    }
}

/// The named Coverage, or the patient's Coverage in force with the lowest `order` (the
/// primary one), the latest recorded among equals.
fn chosen_coverage<'a>(
    sources: &'a PackageSources,
    named: Option<&str>,
    context: &PackageContext,
) -> Result<&'a Value, Issue> {
    let patient = id_of(&sources.patient);
    if let Some(id) = named {
        let coverage = sources
            .coverages
            .iter()
            .find(|c| id_of(c) == id)
            .ok_or_else(|| {
                Issue::error(
                    "not-found",
                    format!(
                        "Coverage/{id} is not a Coverage of Patient/{patient} on this server \
                         (it does not exist, was deleted, or covers someone else)"
                    ),
                )
                .at("coverage")
            })?;
        return match not_in_force(coverage, context) {
            Some(reason) => Err(Issue::error(
                "business-rule",
                format!("Coverage/{id} is not in force: {reason}"),
            )
            .at("coverage")),
            None => Ok(coverage),
        };
    }
    sources
        .coverages
        .iter()
        .rev()
        .filter(|c| not_in_force(c, context).is_none())
        .min_by_key(|c| c["order"].as_u64().unwrap_or(u64::MAX))
        .ok_or_else(|| {
            Issue::error(
                "required",
                format!(
                    "Patient/{patient} has no Coverage in force (status active, a period that \
                     includes today, the patient as beneficiary); record one or name one with \
                     the 'coverage' parameter"
                ),
            )
        })
}

/// Why a Coverage is not in force today, if it is not.
fn not_in_force(coverage: &Value, context: &PackageContext) -> Option<String> {
    let status = coverage["status"].as_str().unwrap_or_default();
    if status != "active" {
        return Some(format!("its status is '{status}'"));
    }
    let bound = |field: &str| {
        coverage["period"][field]
            .as_str()
            .and_then(|text| crate::fhir::dates::date_range_in(text, context.zone))
    };
    match (bound("start"), bound("end")) {
        (Some((start, _)), _) if start > context.now => Some(format!(
            "its period starts on {}",
            coverage["period"]["start"].as_str().unwrap_or_default()
        )),
        (_, Some((_, end))) if end <= context.now => Some(format!(
            "its period ended on {}",
            coverage["period"]["end"].as_str().unwrap_or_default()
        )),
        _ => None,
    }
}

/// The insurer: the first payor of the Coverage that is an Organization.
fn payor_of<'a>(coverage: &Value, parties: &'a [Value]) -> Result<&'a Value, Issue> {
    let id = id_of(coverage);
    let payors: Vec<&str> = references_in(&coverage["payor"]).collect();
    let Some(reference) = payors
        .iter()
        .find(|r| reference_target(r).is_some_and(|(t, _)| t == "Organization"))
    else {
        return Err(Issue::error(
            "business-rule",
            format!(
                "Coverage/{id} has no payor Organization (payor: {}); a prior authorization \
                 goes to an insurer",
                payors.join(", ")
            ),
        )
        .at("Coverage.payor"));
    };
    party(parties, reference, &["Organization"]).map_err(|problem| {
        Issue::error(
            "not-found",
            format!("Coverage/{id} names the payor {reference}, {problem}"),
        )
        .at("Coverage.payor")
    })
}

fn clinic_organization<'a>(parties: &'a [Value], id: Option<&str>) -> Result<&'a Value, Issue> {
    let Some(id) = id else {
        return Err(Issue::error(
            "required",
            "No clinic Organization is configured: CLINIC_ORGANIZATION_ID names the \
             Organization that requests prior authorizations (the Claim's provider)",
        ));
    };
    party(parties, &format!("Organization/{id}"), &["Organization"]).map_err(|problem| {
        Issue::error(
            "not-found",
            format!("CLINIC_ORGANIZATION_ID names Organization/{id}, {problem}"),
        )
    })
}

/// The party a reference names, or what is wrong with it (to finish a sentence).
fn party<'a>(parties: &'a [Value], reference: &str, types: &[&str]) -> Result<&'a Value, String> {
    let Some((resource_type, id)) = reference_target(reference) else {
        return Err("which is not a reference to a resource on this server".into());
    };
    if !types.contains(&resource_type) {
        return Err(format!(
            "which is not a {} (the types a prior-authorization package holds there)",
            types.join(" or ")
        ));
    }
    parties
        .iter()
        .find(|p| p["resourceType"] == resource_type && id_of(p) == id)
        .ok_or_else(|| "which does not exist or has been deleted".into())
}

fn id_of(resource: &Value) -> &str {
    resource["id"].as_str().unwrap_or_default()
}

/// One `Claim.diagnosis`: an active Condition coded in ICD-10-CM.
struct ClaimDiagnosis<'a> {
    condition: &'a Value,
    id: &'a str,
    /// The Condition's ICD-10-CM codings.
    codings: Vec<&'a Value>,
}

/// The active Conditions with an ICD-10-CM code, in the order recorded, except that Z codes
/// (factors such as long-term opioid use) follow the conditions treated, so that the first,
/// principal diagnosis is a pain condition.
fn claim_diagnoses(conditions: &[Value]) -> Vec<ClaimDiagnosis<'_>> {
    let mut diagnoses: Vec<ClaimDiagnosis> = conditions
        .iter()
        .filter(|condition| Diagnosis::read(condition).active)
        .filter_map(|condition| {
            let codings: Vec<&Value> = condition["code"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["system"] == codes::ICD10_CM && c["code"].is_string())
                .collect();
            (!codings.is_empty()).then(|| ClaimDiagnosis {
                condition,
                id: id_of(condition),
                codings,
            })
        })
        .collect();
    diagnoses.sort_by_key(|d| {
        d.codings[0]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with('Z'))
    });
    diagnoses
}

/// What a piece of evidence is (`Claim.supportingInfo.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Diagnosis,
    PriorTreatment,
    OpioidUse,
    BaselineMeasure,
    FollowUpMeasure,
    Infusion,
    OutcomeSummary,
}

impl Kind {
    fn coding(self) -> Value {
        let (code, display) = match self {
            Kind::Diagnosis => ("diagnosis", "Diagnosis"),
            Kind::PriorTreatment => ("prior-treatment", "Prior treatment"),
            Kind::OpioidUse => ("opioid-use", "Opioid use"),
            Kind::BaselineMeasure => ("baseline-measure", "Outcome measure at baseline"),
            Kind::FollowUpMeasure => ("follow-up-measure", "Outcome measure at follow-up"),
            Kind::Infusion => ("infusion", "Ketamine infusion given"),
            Kind::OutcomeSummary => ("outcome-summary", "Outcome summary"),
        };
        json!({"system": codes::EVIDENCE_KINDS, "code": code, "display": display})
    }
}

/// One `Claim.supportingInfo`: a resource of the record, or a summary text.
struct Evidence<'a> {
    kind: Kind,
    resource: Option<&'a Value>,
    text: Option<String>,
    /// `timingDate`: when it was recorded or took place, in the clinic's zone.
    date: Option<String>,
}

impl<'a> Evidence<'a> {
    fn resource(kind: Kind, resource: &'a Value, date: Option<String>) -> Self {
        Evidence {
            kind,
            resource: Some(resource),
            text: None,
            date,
        }
    }

    fn is(&self, resource_type: &str, id: &str) -> bool {
        self.resource
            .is_some_and(|r| r["resourceType"] == resource_type && id_of(r) == id)
    }
}

/// The evidence in the order a reviewer reads it: diagnoses, prior treatments, opioid use,
/// outcome measures before and after (with the questionnaires they were scored from), the
/// infusions given, and the outcome summary.
fn gather_evidence<'a>(
    sources: &'a PackageSources,
    record: &PatientRecord,
    outcomes: &PatientOutcomes,
    diagnoses: &[ClaimDiagnosis<'a>],
    context: &PackageContext,
) -> Vec<Evidence<'a>> {
    let zone = context.zone;
    let mut evidence: Vec<Evidence> = diagnoses
        .iter()
        .map(|d| {
            let onset = date_field(d.condition, &["onsetDateTime", "recordedDate"], zone);
            Evidence::resource(Kind::Diagnosis, d.condition, onset)
        })
        .collect();
    evidence.extend(medication_history(sources, context));
    for change in [&outcomes.pain, &outcomes.peg, &outcomes.phq9]
        .into_iter()
        .flatten()
    {
        evidence.extend(measures(sources, change, zone));
    }
    for infusion in &record.infusions {
        let found = infusion
            .id
            .as_deref()
            .and_then(|id| by_id(&sources.clinical.administrations, id));
        if let Some(administration) = found {
            let date = Some(local_date(infusion.start, zone));
            evidence.push(Evidence::resource(Kind::Infusion, administration, date));
        }
    }
    let last_infusion = record.infusions.last().map(|i| i.start);
    evidence.extend(
        summary(outcomes, last_infusion, zone)
            .into_iter()
            .map(|text| Evidence {
                kind: Kind::OutcomeSummary,
                resource: None,
                text: Some(text),
                date: None,
            }),
    );
    evidence
}

/// Prior treatments (medications other than ketamine and opioids that were stopped or
/// completed), then opioid use (an opioid the patient takes or took).
fn medication_history<'a>(
    sources: &'a PackageSources,
    context: &PackageContext,
) -> Vec<Evidence<'a>> {
    let medications = &sources.clinical.medications;
    let config = context.config;
    let mut prior = Vec::new();
    let mut opioid = Vec::new();
    for request in &sources.medication_requests {
        let concept = medication_concept(request, medications);
        if concept.is_some_and(|c| is_ketamine(c, &config.ketamine)) {
            continue;
        }
        let status = request["status"].as_str().unwrap_or_default();
        let date = date_field(request, &["authoredOn"], context.zone);
        if is_opioid(request, medications, &config.opioids) {
            if matches!(status, "active" | "on-hold" | "completed" | "stopped") {
                opioid.push(Evidence::resource(Kind::OpioidUse, request, date));
            }
        } else if matches!(status, "completed" | "stopped") {
            prior.push(Evidence::resource(Kind::PriorTreatment, request, date));
        }
    }
    prior.extend(opioid);
    prior
}

/// Does the request's medication (its code, or an ingredient of the referenced Medication)
/// have one of the opioid codes?
fn is_opioid(request: &Value, medications: &[Value], opioids: &OpioidCodes) -> bool {
    let listed = |concept: &Value| {
        codes::codings(concept).any(|(system, code)| {
            system == opioids.system && opioids.codes.iter().any(|c| c == code)
        })
    };
    if medication_concept(request, medications).is_some_and(listed) {
        return true;
    }
    let referenced = request["medicationReference"]["reference"]
        .as_str()
        .and_then(reference_target)
        .and_then(|(_, id)| by_id(medications, id));
    referenced.is_some_and(|medication| {
        medication["ingredient"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|ingredient| listed(&ingredient["itemCodeableConcept"]))
    })
}

/// The baseline and latest Observations of a score, each followed by the
/// QuestionnaireResponses it was derived from.
fn measures<'a>(sources: &'a PackageSources, change: &ScoreChange, zone: Tz) -> Vec<Evidence<'a>> {
    let mut evidence = Vec::new();
    let mut add = |kind: Kind, id: Option<&str>, at: DateTime<Utc>| {
        let Some(observation) = id.and_then(|id| by_id(&sources.clinical.observations, id)) else {
            return;
        };
        let date = Some(local_date(at, zone));
        evidence.push(Evidence::resource(kind, observation, date.clone()));
        for reference in references_in(&observation["derivedFrom"]) {
            let response = reference_target(reference)
                .filter(|(t, _)| *t == "QuestionnaireResponse")
                .and_then(|(_, id)| by_id(&sources.questionnaire_responses, id));
            if let Some(response) = response {
                evidence.push(Evidence::resource(kind, response, date.clone()));
            }
        }
    };
    add(
        Kind::BaselineMeasure,
        change.baseline_observation.as_deref(),
        change.baseline_at,
    );
    if change.latest_observation != change.baseline_observation {
        add(
            Kind::FollowUpMeasure,
            change.latest_observation.as_deref(),
            change.latest_at,
        );
    }
    evidence
}

/// The lines of the infusions billed, then those of the planned series.
fn claim_lines(
    sources: &PackageSources,
    record: &PatientRecord,
    diagnoses: &[ClaimDiagnosis],
    evidence: &[Evidence],
    request: &PackageRequest,
    context: &PackageContext,
) -> Vec<Line> {
    let every_diagnosis: Vec<usize> = (1..=diagnoses.len().min(MAX_DIAGNOSIS_POINTERS)).collect();
    let mut lines = Vec::new();
    for infusion in billed_infusions(record, &request.billed, context.config) {
        let administration = infusion
            .id
            .as_deref()
            .and_then(|id| by_id(&sources.clinical.administrations, id));
        let Some(administration) = administration else {
            continue;
        };
        let diagnoses = Some(reason_pointers(administration, diagnoses))
            .filter(|pointers| !pointers.is_empty())
            .unwrap_or_else(|| every_diagnosis.clone());
        let information = evidence
            .iter()
            .position(|e| {
                e.kind == Kind::Infusion && e.is("MedicationAdministration", id_of(administration))
            })
            .map(|index| vec![index + 1])
            .unwrap_or_default();
        let placement = Placement {
            serviced: (
                "servicedDate",
                json!(local_date(infusion.start, context.zone)),
            ),
            diagnoses,
            information,
        };
        let drug = medication_concept(administration, &sources.clinical.medications)
            .and_then(|concept| billing::ndc_of(concept, &context.config.ketamine))
            .map(|ndc| Drug {
                ndc,
                quantity: billing::drug_quantity(infusion, record.weight_at(infusion)),
            });
        let codes = billing::administration_codes(infusion.minutes());
        lines.extend(billing::infusion_lines(codes, 1, drug, &placement));
    }
    if let Some(planned) = &request.planned {
        let last_day = planned.to - Duration::milliseconds(1);
        let placement = Placement {
            serviced: (
                "servicedPeriod",
                json!({"start": local_date(planned.from, context.zone), "end": local_date(last_day, context.zone)}),
            ),
            diagnoses: every_diagnosis,
            information: Vec::new(),
        };
        let drug = planned.ndc.clone().map(|ndc| Drug {
            ndc,
            quantity: None,
        });
        let codes = billing::administration_codes(Some(f64::from(planned.minutes)));
        lines.extend(billing::infusion_lines(
            codes,
            planned.infusions,
            drug,
            &placement,
        ));
    }
    lines
}

fn billed_infusions<'a>(
    record: &'a PatientRecord,
    billed: &BilledInfusions,
    config: &ClinicConfig,
) -> Vec<&'a Infusion> {
    match billed {
        BilledInfusions::CurrentSeries => series::group(&record.infusions, &config.series)
            .pop()
            .map(|s| s.infusions)
            .unwrap_or_default(),
        BilledInfusions::StartedBetween(from, to) => record
            .infusions
            .iter()
            .filter(|i| i.start >= *from && i.start < *to)
            .collect(),
    }
}

/// The positions of the Conditions the administration names as its reason.
fn reason_pointers(administration: &Value, diagnoses: &[ClaimDiagnosis]) -> Vec<usize> {
    let reasons: Vec<&str> = references_in(&administration["reasonReference"])
        .filter_map(reference_target)
        .filter(|(t, _)| *t == "Condition")
        .map(|(_, id)| id)
        .collect();
    diagnoses
        .iter()
        .enumerate()
        .filter(|(_, d)| reasons.contains(&d.id))
        .map(|(index, _)| index + 1)
        .take(MAX_DIAGNOSIS_POINTERS)
        .collect()
}

/// The resources of the Bundle after the Claim, each once, in the order first referenced.
struct Entries<'a> {
    base_url: &'a str,
    resources: Vec<(String, &'a Value)>,
    seen: HashSet<String>,
}

impl<'a> Entries<'a> {
    fn new(base_url: &'a str) -> Self {
        Entries {
            base_url,
            resources: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Adds the resource (once) and returns a reference to it by its `fullUrl`.
    fn reference(&mut self, resource: &'a Value) -> Value {
        let url = format!(
            "{}/{}/{}",
            self.base_url,
            resource["resourceType"].as_str().unwrap_or_default(),
            id_of(resource)
        );
        if self.seen.insert(url.clone()) {
            self.resources.push((url.clone(), resource));
        }
        json!({"reference": url})
    }
}

fn claim<'a>(
    parties: &Parties<'a>,
    diagnoses: &[ClaimDiagnosis<'a>],
    evidence: &[Evidence<'a>],
    lines: &[Line],
    patient: &'a Value,
    entries: &mut Entries<'a>,
    context: &PackageContext,
) -> Value {
    let mut claim = json!({
        "resourceType": "Claim",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", context.package_id)}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "preauthorization",
        "patient": entries.reference(patient),
    });
    let coverage = entries.reference(parties.coverage);
    claim["created"] = json!(instant(context.now));
    claim["insurer"] = entries.reference(parties.payor);
    claim["provider"] = entries.reference(parties.provider);
    claim["priority"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]});
    if !parties.primary_care.is_empty() {
        claim["careTeam"] = parties
            .primary_care
            .iter()
            .enumerate()
            .map(|(index, physician)| {
                json!({
                    "sequence": index + 1,
                    "provider": entries.reference(physician),
                    "role": {
                        "coding": [{"system": "https://codesystem.x12.org/005010/98", "code": "P3", "display": "Primary Care Provider"}],
                        "text": "Primary care physician (Patient.generalPractitioner)"
                    }
                })
            })
            .collect();
    }
    claim["supportingInfo"] = evidence
        .iter()
        .enumerate()
        .map(|(index, e)| supporting_info(index + 1, e, entries))
        .collect();
    if !diagnoses.is_empty() {
        claim["diagnosis"] = diagnoses
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let mut diagnosis = json!({"sequence": index + 1, "diagnosisCodeableConcept": {"coding": d.codings}});
                if index == 0 {
                    diagnosis["type"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-diagnosistype", "code": "principal"}]}]);
                }
                diagnosis
            })
            .collect();
    }
    claim["insurance"] = json!([{"sequence": 1, "focal": true, "coverage": coverage}]);
    claim["item"] = lines
        .iter()
        .enumerate()
        .map(|(index, line)| line.to_item(index + 1))
        .collect();
    claim
}

fn supporting_info<'a>(
    sequence: usize,
    evidence: &Evidence<'a>,
    entries: &mut Entries<'a>,
) -> Value {
    let category = if evidence.text.is_some() {
        "freeFormMessage"
    } else {
        "additionalInformation"
    };
    let mut info = json!({
        "sequence": sequence,
        "category": {"coding": [{"system": codes::PAS_TEMP_CODES, "code": category}]},
        "code": {"coding": [evidence.kind.coding()]},
    });
    if let Some(date) = &evidence.date {
        info["timingDate"] = json!(date);
    }
    if let Some(resource) = evidence.resource {
        info["valueReference"] = entries.reference(resource);
    }
    if let Some(text) = &evidence.text {
        info["valueString"] = json!(text);
    }
    info
}

/// The `collection` Bundle: the Claim (it is not stored, so its `fullUrl` is a `urn:uuid`),
/// then every resource it references by its absolute URL.
fn bundle(claim: Value, entries: Entries, context: &PackageContext) -> Value {
    let id = format!("urn:uuid:{}", context.package_id);
    let mut entry = vec![json!({"fullUrl": id, "resource": claim})];
    entry.extend(
        entries
            .resources
            .into_iter()
            .map(|(url, resource)| json!({"fullUrl": url, "resource": resource})),
    );
    json!({
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": id},
        "type": "collection",
        "timestamp": instant(context.now),
        "entry": entry,
    })
}

fn by_id<'a>(resources: &'a [Value], id: &str) -> Option<&'a Value> {
    resources.iter().find(|r| id_of(r) == id)
}

/// The date (in the clinic's zone) of the first of `fields` that holds a full date or
/// dateTime; partial dates (a year, a month) give none.
fn date_field(resource: &Value, fields: &[&str], zone: Tz) -> Option<String> {
    let text = fields.iter().find_map(|f| resource[*f].as_str())?;
    if text.len() == 10 {
        return Some(text.to_string());
    }
    (text.len() > 10)
        .then(|| instant_of(text))
        .flatten()
        .map(|at| local_date(at, zone))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::fhir::validation::{ValidationOptions, validate_resource};

    const BASE: &str = "https://clinic.example/fhir";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 20, 12, 0, 0).unwrap()
    }

    fn condition(id: &str, code: &str, status: &str) -> Value {
        json!({
            "resourceType": "Condition", "id": id,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
            "code": {"coding": [{"system": codes::ICD10_CM, "code": code}]},
            "subject": {"reference": "Patient/p1"}
        })
    }

    fn coverage(id: &str, status: &str, order: Option<u64>, end: Option<&str>) -> Value {
        let mut coverage = json!({
            "resourceType": "Coverage", "id": id, "status": status,
            "beneficiary": {"reference": "Patient/p1"},
            "payor": [{"reference": "Organization/payer"}]
        });
        if let Some(order) = order {
            coverage["order"] = json!(order);
        }
        if let Some(end) = end {
            coverage["period"] = json!({"end": end});
        }
        coverage
    }

    fn infusion(id: &str, start: DateTime<Utc>, minutes: i64) -> Value {
        json!({
            "resourceType": "MedicationAdministration", "id": id, "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "238083"}]},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": instant(start), "end": instant(start + Duration::minutes(minutes))},
            "dosage": {"dose": {"value": 35, "unit": "mg", "system": codes::UCUM, "code": "mg"}}
        })
    }

    fn organization(id: &str) -> Value {
        json!({"resourceType": "Organization", "id": id, "name": id})
    }

    /// Three infusions of 40, 61 and 120 minutes; fibromyalgia and long-term opioid use.
    fn sources() -> PackageSources {
        let day = |n: i64| Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap() + Duration::days(n);
        PackageSources {
            patient: json!({"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
            clinical: PatientResources {
                administrations: vec![
                    infusion("i1", day(0), 40),
                    infusion("i2", day(2), 61),
                    infusion("i3", day(4), 120),
                ],
                observations: Vec::new(),
                conditions: vec![
                    condition("opioids", "Z79.891", "active"),
                    condition("fibro", "M79.7", "active"),
                    condition("old", "G89.4", "resolved"),
                ],
                medications: Vec::new(),
            },
            coverages: vec![coverage("cov", "active", None, None)],
            parties: vec![
                organization("payer"),
                organization("clinic"),
                json!({"resourceType": "Practitioner", "id": "gp"}),
            ],
            ..PackageSources::default()
        }
    }

    fn context(config: &ClinicConfig) -> PackageContext<'_> {
        PackageContext {
            config,
            base_url: BASE,
            zone: chrono_tz::UTC,
            clinic_organization: Some("clinic"),
            now: now(),
            package_id: uuid::Uuid::nil(),
        }
    }

    fn current_series() -> PackageRequest {
        PackageRequest {
            coverage: None,
            billed: BilledInfusions::CurrentSeries,
            planned: None,
        }
    }

    #[test]
    fn the_claim_bills_each_infusion_by_its_length_and_passes_validation() {
        let mut config = ClinicConfig::default();
        config.ketamine.products[0].ndc = Some("99999-0100-10".into());
        let bundle = build(&sources(), &current_series(), &context(&config)).unwrap();
        let claim = &bundle["entry"][0]["resource"];
        let report = validate_resource("Claim", claim, ValidationOptions::default());
        assert!(!report.has_errors(), "{:?}", report.issues);
        let lines: Vec<(String, String, u64)> = claim["item"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item["productOrService"]["coding"][0]["code"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    item["servicedDate"].as_str().unwrap().to_string(),
                    item["quantity"]["value"].as_u64().unwrap(),
                )
            })
            .collect();
        let line =
            |code: &str, date: &str, quantity| (code.to_string(), date.to_string(), quantity);
        assert_eq!(
            lines,
            [
                line("96365", "2026-03-02", 1),
                line("J3490", "2026-03-02", 1),
                line("96365", "2026-03-04", 1),
                line("J3490", "2026-03-04", 1),
                line("96365", "2026-03-06", 1),
                line("96366", "2026-03-06", 1),
                line("J3490", "2026-03-06", 1),
            ]
        );
        assert_eq!(
            claim["item"][1]["detail"],
            json!([{"sequence": 1,
                    "productOrService": {"coding": [{"system": codes::NDC, "code": "99999-0100-10"}], "text": "ketamine"},
                    "quantity": {"value": 0.35, "unit": "mL", "system": codes::UCUM, "code": "mL"}}])
        );
        // Z79.891 was recorded first but follows the pain diagnosis; the resolved one is left out.
        let diagnoses: Vec<&str> = claim["diagnosis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d["diagnosisCodeableConcept"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(diagnoses, ["M79.7", "Z79.891"]);
        assert_eq!(claim["item"][0]["diagnosisSequence"], json!([1, 2]));
        // The infusion lines point at their administration's supportingInfo.
        let info = claim["item"][0]["informationSequence"][0].as_u64().unwrap() as usize;
        assert_eq!(
            claim["supportingInfo"][info - 1]["valueReference"]["reference"],
            format!("{BASE}/MedicationAdministration/i1")
        );
    }

    #[test]
    fn without_an_ndc_there_is_no_drug_line_and_planned_infusions_cover_the_period() {
        let config = ClinicConfig::default();
        let from = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap();
        let request = PackageRequest {
            coverage: None,
            billed: BilledInfusions::StartedBetween(from, from + Duration::weeks(6)),
            planned: Some(PlannedSeries {
                infusions: 6,
                minutes: 100,
                ndc: Some("99999-0100-10".into()),
                from,
                to: from + Duration::weeks(6),
            }),
        };
        let bundle = build(&sources(), &request, &context(&config)).unwrap();
        let items = bundle["entry"][0]["resource"]["item"]
            .as_array()
            .unwrap()
            .clone();
        let codes: Vec<(&str, u64)> = items
            .iter()
            .map(|i| {
                (
                    i["productOrService"]["coding"][0]["code"].as_str().unwrap(),
                    i["quantity"]["value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(codes, [("96365", 6), ("96366", 6), ("J3490", 6)]);
        assert_eq!(
            items[0]["servicedPeriod"],
            json!({"start": "2026-04-01", "end": "2026-05-12"})
        );
        assert!(items[2]["detail"][0].get("quantity").is_none());
        let given = build(&sources(), &current_series(), &context(&config)).unwrap();
        let codes: Vec<&str> = given["entry"][0]["resource"]["item"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["productOrService"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["96365", "96365", "96365", "96366"]);
    }

    #[test]
    fn the_coverage_in_force_with_the_lowest_order_is_billed() {
        let config = ClinicConfig::default();
        let sources = PackageSources {
            coverages: vec![
                coverage("secondary", "active", Some(2), None),
                coverage("ended", "active", Some(1), Some("2026-03-19")),
                coverage("cancelled", "cancelled", Some(1), None),
                coverage("primary", "active", Some(1), Some("2026-12-31")),
            ],
            ..sources()
        };
        let chosen = |named: Option<&str>| {
            chosen_coverage(&sources, named, &context(&config)).map(|c| id_of(c).to_string())
        };
        assert_eq!(chosen(None).unwrap(), "primary");
        assert_eq!(chosen(Some("secondary")).unwrap(), "secondary");
        assert_eq!(
            chosen(Some("ended")).unwrap_err().diagnostics,
            "Coverage/ended is not in force: its period ended on 2026-03-19"
        );
        assert_eq!(
            chosen(Some("cancelled")).unwrap_err().diagnostics,
            "Coverage/cancelled is not in force: its status is 'cancelled'"
        );
        assert_eq!(chosen(Some("someone-elses")).unwrap_err().code, "not-found");
        let uncovered = PackageSources {
            coverages: Vec::new(),
            ..sources.clone()
        };
        let none = chosen_coverage(&uncovered, None, &context(&config)).unwrap_err();
        assert_eq!(none.code, "required");
    }

    #[test]
    fn every_missing_party_is_reported_at_once() {
        let config = ClinicConfig::default();
        let mut sources = sources();
        sources.parties.clear();
        let mut context = context(&config);
        context.clinic_organization = None;
        let issues = build(&sources, &current_series(), &context).unwrap_err();
        let diagnostics: Vec<&str> = issues.iter().map(|i| i.diagnostics.as_str()).collect();
        assert_eq!(
            diagnostics,
            [
                "Coverage/cov names the payor Organization/payer, which does not exist or has been deleted",
                "No clinic Organization is configured: CLINIC_ORGANIZATION_ID names the Organization that requests prior authorizations (the Claim's provider)",
                "Patient/p1.generalPractitioner names Practitioner/gp, which does not exist or has been deleted",
            ]
        );
    }

    #[test]
    fn parties_are_the_physicians_the_payors_and_the_clinic() {
        let patient = json!({"generalPractitioner": [
            {"reference": "Practitioner/gp"}, {"reference": "PractitionerRole/r"}, {"reference": "https://clinic.example/fhir/Organization/practice"}
        ]});
        let coverages = [
            coverage("a", "active", None, None),
            coverage("b", "active", None, None),
        ];
        let parties = party_references(&patient, &coverages, Some("clinic"));
        let expected = [
            ("Organization", "clinic"),
            ("Organization", "payer"),
            ("Organization", "practice"),
            ("Practitioner", "gp"),
        ];
        assert_eq!(
            parties,
            expected.map(|(t, id)| (t.to_string(), id.to_string()))
        );
    }
}
