//! Typed views of the parts of a patient's record the clinic rules read: ketamine infusions,
//! vital signs and scores, body weight, and diagnoses. The resources themselves stay JSON;
//! these views hold only the fields read, taken from the JSON as it is stored.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::codes;
use super::config::{ClinicConfig, KetamineCodes};
use crate::fhir::dates::date_range_in;
use crate::fhir::fhirpath::reference_target;
use crate::fhir::ucum;

/// The resources of one patient the rules need, as stored (see `store::clinic`).
#[derive(Debug, Clone, Default)]
pub struct PatientResources {
    pub administrations: Vec<Value>,
    pub observations: Vec<Value>,
    pub conditions: Vec<Value>,
    /// The Medications that administrations reference, for their codes.
    pub medications: Vec<Value>,
}

/// A patient's record read into typed views, each list in time order.
#[derive(Debug, Clone, Default)]
pub struct PatientRecord {
    pub infusions: Vec<Infusion>,
    pub readings: Vec<Reading>,
    pub diagnoses: Vec<Diagnosis>,
}

impl PatientRecord {
    pub fn from_resources(resources: &PatientResources, config: &ClinicConfig) -> Self {
        let mut infusions: Vec<Infusion> = resources
            .administrations
            .iter()
            .filter_map(|a| Infusion::read(a, &resources.medications, &config.ketamine))
            .filter(Infusion::was_given)
            .collect();
        infusions.sort_by_key(|i| i.start);
        let mut readings: Vec<Reading> = resources
            .observations
            .iter()
            .flat_map(Reading::of_observation)
            .collect();
        readings.sort_by_key(|r| r.at);
        let diagnoses = resources.conditions.iter().map(Diagnosis::read).collect();
        PatientRecord {
            infusions,
            readings,
            diagnoses,
        }
    }

    /// Readings of one kind, in time order.
    pub fn readings_of(&self, kind: ReadingKind) -> impl DoubleEndedIterator<Item = &Reading> {
        self.readings.iter().filter(move |r| r.kind == kind)
    }

    /// The latest reading of `kind` taken in `[from, until]`.
    pub fn latest_between(
        &self,
        kind: ReadingKind,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<&Reading> {
        self.readings_of(kind)
            .rev()
            .find(|r| r.at >= from && r.at <= until)
    }

    /// The weight in kg that applies to an infusion: the latest in the year before it.
    pub fn weight_at(&self, infusion: &Infusion) -> Option<f64> {
        self.weight_between(infusion.start - Duration::days(365), infusion.start)
            .map(|r| r.value)
    }

    /// The latest body weight in kg taken in `[from, until]`.
    pub fn weight_between(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Option<&Reading> {
        self.latest_between(ReadingKind::BodyWeight, from, until)
    }
}

/// Observations entered in error, cancelled or only registered are not readings.
fn counts_as_recorded(observation: &Value) -> bool {
    matches!(
        observation["status"].as_str(),
        Some("final" | "amended" | "corrected" | "preliminary")
    )
}

/// One ketamine administration.
#[derive(Debug, Clone, PartialEq)]
pub struct Infusion {
    pub id: Option<String>,
    pub status: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub dose: Option<Dose>,
    pub rate: Option<Rate>,
    /// mg per mL of the product given, when known (turns mL/h into mg/h).
    pub concentration_mg_per_ml: Option<f64>,
    pub route: Option<String>,
}

/// The dose as recorded: an amount in mg, or already per kg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dose {
    Milligrams(f64),
    MilligramsPerKg(f64),
}

/// The rate as recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    MilligramsPerKgPerHour(f64),
    MilligramsPerHour(f64),
    MillilitresPerHour(f64),
}

impl Infusion {
    /// The view of a MedicationAdministration, if it is ketamine with a start time.
    pub fn read(
        administration: &Value,
        medications: &[Value],
        ketamine: &KetamineCodes,
    ) -> Option<Self> {
        let concept = medication_concept(administration, medications)?;
        let concentration = ketamine_concentration(concept, ketamine)?;
        let (start, end) = effective_span(administration)?;
        let dosage = &administration["dosage"];
        Some(Infusion {
            id: administration["id"].as_str().map(str::to_string),
            status: administration["status"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            start,
            end,
            dose: read_dose(&dosage["dose"]),
            rate: read_rate(&dosage["rateQuantity"]),
            concentration_mg_per_ml: concentration,
            route: dosage["route"]["coding"][0]["code"]
                .as_str()
                .map(str::to_string),
        })
    }

    /// In progress or completed: the drug went in.
    pub fn was_given(&self) -> bool {
        matches!(self.status.as_str(), "in-progress" | "completed")
    }

    /// Length in minutes, once the infusion has ended.
    pub fn minutes(&self) -> Option<f64> {
        self.end
            .map(|end| (end - self.start).num_milliseconds() as f64 / 60_000.0)
    }

    /// The dose in mg/kg for a patient of `weight_kg`.
    pub fn mg_per_kg(&self, weight_kg: Option<f64>) -> Option<f64> {
        match self.dose? {
            Dose::MilligramsPerKg(per_kg) => Some(per_kg),
            Dose::Milligrams(mg) => weight_kg.filter(|w| *w > 0.0).map(|w| mg / w),
        }
    }

    /// The dose in mg for a patient of `weight_kg`.
    pub fn milligrams(&self, weight_kg: Option<f64>) -> Option<f64> {
        match self.dose? {
            Dose::Milligrams(mg) => Some(mg),
            Dose::MilligramsPerKg(per_kg) => weight_kg.map(|w| per_kg * w),
        }
    }

    /// The rate in mg/kg/h: as recorded, converted through weight and concentration, or,
    /// without a recorded rate, the dose spread over the infusion's length.
    pub fn rate_mg_per_kg_per_hour(&self, weight_kg: Option<f64>) -> Option<f64> {
        let weight = weight_kg.filter(|w| *w > 0.0);
        match self.rate {
            Some(Rate::MilligramsPerKgPerHour(rate)) => Some(rate),
            Some(Rate::MilligramsPerHour(rate)) => weight.map(|w| rate / w),
            Some(Rate::MillilitresPerHour(rate)) => {
                Some(rate * self.concentration_mg_per_ml? / weight?)
            }
            None => {
                let hours = self.minutes()? / 60.0;
                (hours > 0.0)
                    .then_some(self.mg_per_kg(weight)? / hours)?
                    .into()
            }
        }
    }
}

/// The CodeableConcept naming the medication of an administration or request: inline, or
/// from the referenced Medication.
pub fn medication_concept<'a>(resource: &'a Value, medications: &'a [Value]) -> Option<&'a Value> {
    if resource.get("medicationCodeableConcept").is_some() {
        return Some(&resource["medicationCodeableConcept"]);
    }
    let reference = resource["medicationReference"]["reference"].as_str()?;
    let (_, id) = reference_target(reference)?;
    medications
        .iter()
        .find(|m| m["id"].as_str() == Some(id))
        .map(|m| &m["code"])
}

/// Is the concept ketamine (the ingredient or a mapped product)?
pub fn is_ketamine(concept: &Value, ketamine: &KetamineCodes) -> bool {
    ketamine_concentration(concept, ketamine).is_some()
}

/// `Some(concentration)` when the concept is ketamine (the ingredient or a mapped product).
fn ketamine_concentration(concept: &Value, ketamine: &KetamineCodes) -> Option<Option<f64>> {
    codes::codings(concept).find_map(|(system, code)| {
        if system != ketamine.system {
            return None;
        }
        if code == ketamine.ingredient {
            return Some(None);
        }
        ketamine
            .products
            .iter()
            .find(|p| p.code == code)
            .map(|p| p.mg_per_ml)
    })
}

/// The start and end of `effectivePeriod`, or the instant of `effectiveDateTime`.
fn effective_span(resource: &Value) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    if let Some(at) = resource["effectiveDateTime"].as_str() {
        return Some((instant_of(at)?, None));
    }
    let period = &resource["effectivePeriod"];
    let start = instant_of(period["start"].as_str()?)?;
    let end = period["end"].as_str().and_then(instant_of);
    Some((start, end))
}

/// The instant a FHIR dateTime names (its start, for partial dates).
pub fn instant_of(text: &str) -> Option<DateTime<Utc>> {
    date_range_in(text, chrono_tz::UTC).map(|(start, _)| start)
}

fn quantity_in(quantity: &Value, unit: &str) -> Option<f64> {
    let value = quantity["value"].as_f64()?;
    let code = quantity["code"].as_str().or(quantity["unit"].as_str())?;
    if code == unit {
        return Some(value);
    }
    let (given, dimension) = ucum::canonical(code, value)?;
    let (one, target) = ucum::canonical(unit, 1.0)?;
    (dimension == target).then_some(given / one)
}

fn read_dose(quantity: &Value) -> Option<Dose> {
    quantity_in(quantity, "mg")
        .map(Dose::Milligrams)
        .or_else(|| quantity_in(quantity, "mg/kg").map(Dose::MilligramsPerKg))
}

fn read_rate(quantity: &Value) -> Option<Rate> {
    quantity_in(quantity, "mg/kg/h")
        .map(Rate::MilligramsPerKgPerHour)
        .or_else(|| quantity_in(quantity, "mg/h").map(Rate::MilligramsPerHour))
        .or_else(|| quantity_in(quantity, "mL/h").map(Rate::MillilitresPerHour))
}

/// What an Observation measured, by its LOINC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadingKind {
    BodyWeight,
    Systolic,
    Diastolic,
    HeartRate,
    OxygenSaturation,
    PainSeverity,
    PainInterference,
    Depression,
    Anxiety,
}

impl ReadingKind {
    /// The kinds a single-valued Observation with this LOINC code records.
    fn of_code(code: &str) -> Option<Self> {
        Some(match code {
            codes::BODY_WEIGHT => ReadingKind::BodyWeight,
            codes::HEART_RATE => ReadingKind::HeartRate,
            codes::SPO2 | codes::SPO2_PULSE_OXIMETRY => ReadingKind::OxygenSaturation,
            codes::PAIN_SEVERITY => ReadingKind::PainSeverity,
            codes::PEG_SCORE => ReadingKind::PainInterference,
            codes::PHQ9_TOTAL => ReadingKind::Depression,
            codes::GAD7_TOTAL => ReadingKind::Anxiety,
            codes::SYSTOLIC => ReadingKind::Systolic,
            codes::DIASTOLIC => ReadingKind::Diastolic,
            _ => return None,
        })
    }

    /// The unit values of this kind are kept in.
    fn unit(self) -> Option<&'static str> {
        match self {
            ReadingKind::BodyWeight => Some("kg"),
            ReadingKind::Systolic | ReadingKind::Diastolic => Some("mm[Hg]"),
            ReadingKind::HeartRate => Some("/min"),
            ReadingKind::OxygenSaturation => Some("%"),
            _ => None,
        }
    }
}

/// One measured value. A blood-pressure panel gives a systolic and a diastolic reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub kind: ReadingKind,
    pub at: DateTime<Utc>,
    pub value: f64,
    pub observation_id: Option<String>,
    /// The administration this reading was taken during (`partOf`).
    pub during: Option<String>,
}

impl Reading {
    /// A reading not tied to an Observation id or an infusion.
    pub fn new(kind: ReadingKind, at: DateTime<Utc>, value: f64) -> Self {
        Reading {
            kind,
            at,
            value,
            observation_id: None,
            during: None,
        }
    }

    /// The readings of an Observation that counts as recorded (see `counts_as_recorded`).
    pub fn of_observation(observation: &Value) -> Vec<Reading> {
        if counts_as_recorded(observation) {
            Reading::read(observation)
        } else {
            Vec::new()
        }
    }

    fn read(observation: &Value) -> Vec<Reading> {
        let Some((at, _)) = effective_span(observation) else {
            return Vec::new();
        };
        let observation_id = observation["id"].as_str().map(str::to_string);
        let during = observation["partOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| reference_target(p["reference"].as_str()?))
            .find(|(t, _)| *t == "MedicationAdministration")
            .map(|(_, id)| id.to_string());
        let reading = |kind: ReadingKind, holder: &Value| {
            let value = value_of(holder, kind)?;
            Some(Reading {
                kind,
                at,
                value,
                observation_id: observation_id.clone(),
                during: during.clone(),
            })
        };
        let loinc: Vec<&str> = codes::codings(&observation["code"])
            .filter(|(system, _)| *system == codes::LOINC)
            .map(|(_, code)| code)
            .collect();
        if loinc.contains(&codes::BLOOD_PRESSURE_PANEL) {
            return observation["component"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|component| {
                    let kind = codes::codings(&component["code"])
                        .filter(|(system, _)| *system == codes::LOINC)
                        .find_map(|(_, code)| ReadingKind::of_code(code))?;
                    reading(kind, component)
                })
                .collect();
        }
        loinc
            .iter()
            .find_map(|code| ReadingKind::of_code(code))
            .and_then(|kind| reading(kind, observation))
            .into_iter()
            .collect()
    }
}

/// The value of an Observation (or component) in the kind's unit.
fn value_of(holder: &Value, kind: ReadingKind) -> Option<f64> {
    if let Some(integer) = holder["valueInteger"].as_f64() {
        return Some(integer);
    }
    let quantity = &holder["valueQuantity"];
    match kind.unit() {
        Some(unit) => quantity_in(quantity, unit),
        None => quantity["value"].as_f64(),
    }
}

/// One Condition: its codes and whether it is active and flagged as a contraindication.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    pub id: Option<String>,
    pub codes: Vec<(String, String)>,
    pub display: String,
    pub active: bool,
    pub flagged_contraindication: bool,
}

impl Diagnosis {
    pub fn read(condition: &Value) -> Self {
        let clinical = codes::codings(&condition["clinicalStatus"])
            .map(|(_, code)| code)
            .next();
        let verification = codes::codings(&condition["verificationStatus"])
            .map(|(_, code)| code)
            .next();
        let active = matches!(clinical, Some("active" | "recurrence" | "relapse"))
            && !matches!(verification, Some("refuted" | "entered-in-error"));
        let flagged_contraindication = condition["category"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(codes::codings)
            .any(|coding| coding == (codes::CLINIC_CONDITION_FLAGS, codes::CONTRAINDICATION));
        let code = &condition["code"];
        Diagnosis {
            id: condition["id"].as_str().map(str::to_string),
            codes: codes::codings(code)
                .map(|(s, c)| (s.to_string(), c.to_string()))
                .collect(),
            display: code["text"]
                .as_str()
                .or(code["coding"][0]["display"].as_str())
                .or(code["coding"][0]["code"].as_str())
                .unwrap_or("unnamed condition")
                .to_string(),
            active,
            flagged_contraindication,
        }
    }

    /// The ICD-10-CM codes of this diagnosis.
    pub fn icd10(&self) -> impl Iterator<Item = &str> {
        self.codes
            .iter()
            .filter(|(system, _)| system == codes::ICD10_CM)
            .map(|(_, code)| code.as_str())
    }
}
