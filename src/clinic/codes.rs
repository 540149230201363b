//! The code systems, codes and extension URLs the clinic logic reads and writes.

pub const LOINC: &str = "http://loinc.org";
pub const ICD10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const CPT: &str = "http://www.ama-assn.org/go/cpt";
pub const HCPCS: &str = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets";
pub const NDC: &str = "http://hl7.org/fhir/sid/ndc";

/// IV infusion for therapy, initial, up to 1 hour.
pub const CPT_INFUSION_FIRST_HOUR: &str = "96365";
/// IV infusion for therapy, each additional hour (add-on to 96365).
pub const CPT_INFUSION_ADDITIONAL_HOUR: &str = "96366";
/// IV push, single or initial substance: what an infusion of 15 minutes or less is.
pub const CPT_IV_PUSH: &str = "96374";
/// Unclassified drugs: ketamine has no J-code of its own, so its line names the NDC.
pub const HCPCS_UNCLASSIFIED_DRUG: &str = "J3490";

/// Da Vinci PAS code system of `Claim.supportingInfo.category` (`additionalInformation`,
/// `freeFormMessage`).
pub const PAS_TEMP_CODES: &str = "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASTempCodes";

pub const BODY_WEIGHT: &str = "29463-7";
pub const BLOOD_PRESSURE_PANEL: &str = "85354-9";
pub const SYSTOLIC: &str = "8480-6";
pub const DIASTOLIC: &str = "8462-4";
pub const HEART_RATE: &str = "8867-4";
pub const SPO2: &str = "2708-6";
pub const SPO2_PULSE_OXIMETRY: &str = "59408-5";
pub const PAIN_SEVERITY: &str = "72514-3";
pub const PEG_SCORE: &str = "91147-9";
pub const PHQ9_TOTAL: &str = "44261-6";
pub const GAD7_TOTAL: &str = "70274-6";

/// Every LOINC code whose Observations the clinic rules read.
pub const OBSERVATION_CODES: &[&str] = &[
    BODY_WEIGHT,
    BLOOD_PRESSURE_PANEL,
    HEART_RATE,
    SPO2,
    SPO2_PULSE_OXIMETRY,
    PAIN_SEVERITY,
    PEG_SCORE,
    PHQ9_TOTAL,
    GAD7_TOTAL,
];

/// The clinic's own definitions (extensions and code systems) live under this base.
pub const CLINIC_BASE: &str = "https://ketamine-fhir.example.org/fhir";

/// Condition.category code system of clinic flags, and the flag that marks a
/// contraindication to ketamine.
pub const CLINIC_CONDITION_FLAGS: &str =
    "https://ketamine-fhir.example.org/fhir/CodeSystem/condition-flag";
pub const CONTRAINDICATION: &str = "ketamine-contraindication";

/// `Claim.supportingInfo.code` of a prior-authorization package: what a piece of evidence is
/// (`diagnosis`, `prior-treatment`, `opioid-use`, `baseline-measure`, `follow-up-measure`,
/// `infusion`, `outcome-summary`).
pub const EVIDENCE_KINDS: &str =
    "https://ketamine-fhir.example.org/fhir/CodeSystem/medical-necessity-evidence";

/// Extension on MedicationAdministration.dosage: the dose per kg the server computed.
pub const DOSE_PER_KG_EXTENSION: &str =
    "https://ketamine-fhir.example.org/fhir/StructureDefinition/dose-per-kg";
/// Extension on MedicationAdministration.dosage: the rate per kg and hour the server computed.
pub const RATE_PER_KG_EXTENSION: &str =
    "https://ketamine-fhir.example.org/fhir/StructureDefinition/rate-per-kg";
/// Extension on MedicationAdministration: a clinician's documented override of safety rules
/// (sub-extensions `reason`, `practitioner`, and optionally `rule`, one per rule overridden).
pub const OVERRIDE_EXTENSION: &str =
    "https://ketamine-fhir.example.org/fhir/StructureDefinition/safety-override";
/// Extension on MedicationAdministration: a rule that failed and was overridden, as the
/// server recorded it (sub-extensions `rule` and `finding`).
pub const OVERRIDDEN_RULE_EXTENSION: &str =
    "https://ketamine-fhir.example.org/fhir/StructureDefinition/safety-overridden-rule";

pub use crate::fhir::resource::codings;
