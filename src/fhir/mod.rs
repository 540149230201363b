//! FHIR knowledge with no IO: the definitions registry, validation, search-parameter
//! extraction and parsing, bundles, OperationOutcome builders and typed views of resources.

pub mod bundle;
pub mod bundle_request;
pub mod capability;
pub mod compartment;
pub mod dates;
pub mod definitions;
pub mod everything;
pub mod fhirpath;
pub mod invariants;
pub mod narrative;
pub mod outcome;
pub mod parameters;
pub mod resource;
pub mod search;
pub mod search_index;
pub mod strict_json;
pub mod summary;
pub mod text;
pub mod ucum;
pub mod validation;

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::error::ApiError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_VERSION: &str = "4.0.1";

/// A resource type this server supports (checked against the registry when parsed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceType(String);

impl ResourceType {
    pub fn parse(name: &str) -> Result<Self, ApiError> {
        if definitions::registry().is_supported_resource(name) {
            Ok(ResourceType(name.to_string()))
        } else {
            Err(ApiError::UnknownType(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

static ID_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9\-\.]{1,64}$").expect("valid id regex"));

/// A logical id in FHIR's `id` format (1-64 of `A-Z a-z 0-9 - .`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        if ID_PATTERN.is_match(value) {
            Ok(ResourceId(value.to_string()))
        } else {
            Err(ApiError::bad_request(format!(
                "'{value}' is not a valid FHIR id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')"
            )))
        }
    }

    pub fn generate() -> Self {
        ResourceId(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version id: a positive integer, as this server assigns them.
pub fn parse_version_id(value: &str) -> Result<i32, ApiError> {
    value
        .parse::<i32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::NotFound(format!("Version '{value}' does not exist")))
}
