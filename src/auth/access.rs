//! Authorization: what a `Principal`'s SMART scopes let it reach, per type and
//! interaction, and whether a resource lies in a patient's compartment.

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
}

/// Is `resource` in the compartment of `patient` (the Patient itself, or about it)? A
/// Coverage is about its beneficiary (what its `patient` search parameter indexes), the
/// other types about their `subject` or `patient`.
pub fn in_patient_compartment(resource_type: &str, resource: &Value, patient: &str) -> bool {
    let target = format!("Patient/{patient}");
    let fields: &[&str] = match resource_type {
        "Patient" => return resource["id"].as_str() == Some(patient),
        "Coverage" => &["beneficiary"],
        _ => &["subject", "patient"],
    };
    fields.iter().any(|field| {
        resource[*field]["reference"]
            .as_str()
            .is_some_and(|reference| {
                reference == target || reference.ends_with(&format!("/{target}"))
            })
    })
}
