//! Authorization: what a `Principal`'s SMART scopes let it reach, per type and
//! interaction (with or without the search restrictions of granular scopes), and whether
//! a resource lies in a patient's compartment.

use serde_json::Value;

use super::jwt::Principal;
use super::scopes::{Interaction, Scope, ScopeContext};
use crate::error::ApiError;

/// What a request may reach: everything its scopes name, or one patient's compartment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Full,
    Patient(String),
}

/// One part of the data restricted scopes open: the resources that match `query`, within
/// `patient`'s compartment when it came from a patient/ scope (an empty `query` is the
/// compartment alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub patient: Option<String>,
    pub query: Vec<(String, String)>,
}

/// What a read or a search may reach once scopes with a search restriction
/// (`patient/Observation.rs?category=vital-signs`) count too: what `Access` says, or only
/// resources in at least one of the slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Whole(Access),
    Slices(Vec<Slice>),
}

/// Types outside every patient compartment that list patients or hold partner endpoints:
/// a patient/ scope never reaches them, not even `patient/*.cruds`.
pub const CLOSED_TO_PATIENT_SCOPES: &[&str] = &["Group", "Subscription"];

fn closed_to_patient_scope(scope: &Scope, resource_type: Option<&str>) -> bool {
    scope.context == ScopeContext::Patient
        && resource_type.is_some_and(|wanted| CLOSED_TO_PATIENT_SCOPES.contains(&wanted))
}

impl Principal {
    /// Checks the scopes for `interaction` on `resource_type` (`None`: all types, as for
    /// system history). Patient-context scopes grant access to that patient's data only.
    pub fn authorize(
        &self,
        resource_type: Option<&str>,
        interaction: Interaction,
    ) -> Result<Access, ApiError> {
        let permission = interaction.permission();
        let granting: Vec<&Scope> = self
            .scopes
            .iter()
            .filter(|scope| scope.grants(resource_type, permission))
            .filter(|scope| !closed_to_patient_scope(scope, resource_type))
            .collect();
        if granting
            .iter()
            .any(|scope| scope.context != ScopeContext::Patient)
        {
            return Ok(Access::Full);
        }
        if !granting.is_empty() {
            if let Some(patient) = &self.patient {
                return Ok(Access::Patient(patient.clone()));
            }
            return Err(ApiError::Forbidden(
                "patient/ scopes need a token with a patient claim".into(),
            ));
        }
        let target = resource_type.unwrap_or("all resource types");
        Err(ApiError::Forbidden(format!(
            "The access token's scopes do not allow {interaction:?} on {target}"
        )))
    }

    /// Like `authorize`, but scopes with a search restriction count too: for reading and
    /// searching, where the restriction is enforced as a search filter. A patient/
    /// restricted scope in a token without a patient claim opens nothing.
    pub fn reach(&self, resource_type: &str, interaction: Interaction) -> Result<Reach, ApiError> {
        let whole = self.authorize(Some(resource_type), interaction);
        if let Ok(Access::Full) = whole {
            return Ok(Reach::Whole(Access::Full));
        }
        let mut slices: Vec<Slice> = self
            .scopes
            .iter()
            .filter(|scope| !closed_to_patient_scope(scope, Some(resource_type)))
            .filter_map(|scope| {
                let query = scope.grants_restricted(resource_type, interaction.permission())?;
                let patient = match scope.context {
                    ScopeContext::Patient => Some(self.patient.clone()?),
                    ScopeContext::System | ScopeContext::User => None,
                };
                Some(Slice {
                    patient,
                    query: query.to_vec(),
                })
            })
            .collect();
        if slices.is_empty() {
            return whole.map(Reach::Whole);
        }
        if let Ok(Access::Patient(patient)) = whole {
            slices.push(Slice {
                patient: Some(patient),
                query: Vec::new(),
            });
        }
        slices.dedup();
        Ok(Reach::Slices(slices))
    }
}

/// Is `resource` in the compartment of `patient` (the Patient itself, or about it)?
pub fn in_patient_compartment(resource_type: &str, resource: &Value, patient: &str) -> bool {
    patients_of(resource_type, resource)
        .iter()
        .any(|found| found == patient)
}

/// The patients `resource` is about, by id: the Patient itself; a Coverage's beneficiary
/// (what its `patient` search parameter indexes); the `subject` or `patient` of the other
/// types, when it refers to a Patient (relatively or by absolute URL).
pub fn patients_of(resource_type: &str, resource: &Value) -> Vec<String> {
    let fields: &[&str] = match resource_type {
        "Patient" => {
            return resource["id"]
                .as_str()
                .map(str::to_string)
                .into_iter()
                .collect();
        }
        "Coverage" => &["beneficiary"],
        _ => &["subject", "patient"],
    };
    let mut patients: Vec<String> = fields
        .iter()
        .filter_map(|field| resource[*field]["reference"].as_str())
        .filter_map(patient_id_of_reference)
        .collect();
    patients.dedup();
    patients
}

/// `Patient/x` or `https://host/fhir/Patient/x` → `x`.
pub fn patient_id_of_reference(reference: &str) -> Option<String> {
    let (before, id) = reference.rsplit_once("Patient/")?;
    let whole_segment = before.is_empty() || before.ends_with('/');
    (whole_segment && !id.is_empty() && !id.contains('/')).then(|| id.to_string())
}
