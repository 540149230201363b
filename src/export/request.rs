//! The kick-off of an export: its parameters (`_outputFormat`, `_type`, `_since`,
//! `_typeFilter`) checked strictly, the types it covers and how each is read (confined to
//! a patient's compartment for a patient-scoped token, with its filters), and the
//! compartments a job reads. No IO.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Level, TypePlan};
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::definitions::registry;
use crate::fhir::search::{self, Filter, RESULT_PARAMETERS, SearchContext};
use crate::fhir::search_index::{IndexKind, indexed_parameter};
use crate::store::export::{COMPARTMENT_PARAMETER, Compartment};

/// The output formats accepted: NDJSON, by its full and abbreviated names.
pub const OUTPUT_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Kick-off parameters of the specification this server does not support.
const UNSUPPORTED: &[&str] = &[
    "_elements",
    "patient",
    "includeAssociatedData",
    "organizeOutputBy",
    "allowPartialManifests",
];

/// The parameters of a kick-off request, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KickOff {
    /// `_type`, in the order given, without repeats.
    pub types: Option<Vec<String>>,
    pub since: Option<DateTime<Utc>>,
    /// `_typeFilter`: (type, its query's parameters form-encoded).
    pub type_filters: Vec<(String, String)>,
}

/// Checks the kick-off parameters: every one must be known and well-formed, since ignoring
/// one would export more than was asked for.
pub fn parse_kickoff(
    parameters: &[(String, String)],
    context: &SearchContext,
) -> ApiResult<KickOff> {
    let mut kickoff = KickOff::default();
    let mut seen_format = false;
    for (name, value) in parameters {
        match name.as_str() {
            "_outputFormat" => {
                once(name, &mut seen_format)?;
                if !OUTPUT_FORMATS.contains(&value.as_str()) {
                    return Err(ApiError::bad_parameter(
                        name,
                        format!(
                            "_outputFormat '{value}' is not supported; this server writes NDJSON ({})",
                            OUTPUT_FORMATS.join(", ")
                        ),
                    ));
                }
            }
            "_type" => {
                let types = kickoff.types.get_or_insert_with(Vec::new);
                for resource_type in comma_list(value) {
                    let resource_type = served_type(name, resource_type)?;
                    if !types.contains(&resource_type) {
                        types.push(resource_type);
                    }
                }
            }
            "_since" => {
                if kickoff.since.is_some() {
                    return Err(repeated(name));
                }
                kickoff.since = Some(parse_instant(name, value)?);
            }
            "_typeFilter" => {
                for query in comma_list(value) {
                    kickoff
                        .type_filters
                        .push(parse_type_filter(query, context)?);
                }
            }
            name if UNSUPPORTED.contains(&name) => {
                return Err(ApiError::bad_parameter(
                    name,
                    format!("The $export parameter {name} is not supported by this server"),
                ));
            }
            _ => {
                return Err(ApiError::bad_parameter(
                    name,
                    format!(
                        "'{name}' is not a parameter of $export; this server takes _outputFormat, _type, _since and _typeFilter"
                    ),
                ));
            }
        }
    }
    if let Some(types) = &kickoff.types {
        if types.is_empty() {
            return Err(ApiError::bad_parameter(
                "_type",
                "_type names no resource type",
            ));
        }
        if let Some((filtered, _)) = kickoff
            .type_filters
            .iter()
            .find(|(filtered, _)| !types.contains(filtered))
        {
            return Err(ApiError::bad_parameter(
                "_typeFilter",
                format!("_typeFilter names {filtered}, which _type does not include"),
            ));
        }
    }
    Ok(kickoff)
}

fn once(name: &str, seen: &mut bool) -> ApiResult<()> {
    if std::mem::replace(seen, true) {
        return Err(repeated(name));
    }
    Ok(())
}

fn repeated(name: &str) -> ApiError {
    ApiError::bad_parameter(name, format!("{name} may be given only once"))
}

fn comma_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
}

fn served_type(parameter: &str, name: &str) -> ApiResult<String> {
    if registry().is_supported_resource(name) {
        Ok(name.to_string())
    } else {
        Err(ApiError::bad_parameter(
            parameter,
            format!("'{name}' is not a resource type this server serves; see /fhir/metadata"),
        ))
    }
}

/// A FHIR `instant`: date, time to the second and a zone.
fn parse_instant(parameter: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    let well_formed = registry()
        .primitive_pattern("instant")
        .is_none_or(|pattern| pattern.is_match(value));
    let parsed = DateTime::parse_from_rfc3339(value)
        .ok()
        .filter(|_| well_formed);
    parsed.map(|at| at.with_timezone(&Utc)).ok_or_else(|| {
        ApiError::bad_parameter(
            parameter,
            format!(
                "{parameter} '{value}' is not a FHIR instant such as 2026-11-01T00:00:00Z (a '+' in the zone offset must be sent as %2B)"
            ),
        )
    })
}

/// One `_typeFilter` query, `Type?param=value&…`: checked as a strict search of the type,
/// and kept as the type and its parameters.
fn parse_type_filter(query: &str, context: &SearchContext) -> ApiResult<(String, String)> {
    let refused = |text: String| ApiError::bad_parameter("_typeFilter", text);
    let (resource_type, parameters) = query.split_once('?').ok_or_else(|| {
        refused(format!(
            "_typeFilter '{query}' is not a search such as Observation?code=http://loinc.org|72514-3"
        ))
    })?;
    let resource_type = served_type("_typeFilter", resource_type)?;
    let pairs = form(parameters)?;
    if pairs.is_empty() {
        return Err(refused(format!(
            "_typeFilter '{query}' has no search parameter"
        )));
    }
    type_filter(&resource_type, parameters, context).map_err(|error| match error {
        ApiError::BadRequest(text, _) => refused(format!("_typeFilter '{query}': {text}")),
        other => other,
    })?;
    Ok((
        resource_type,
        serde_urlencoded::to_string(&pairs).unwrap_or_default(),
    ))
}

/// The filters of a stored `_typeFilter` query of `resource_type` (its form-encoded
/// parameters): a strict search without result parameters.
pub fn type_filter(
    resource_type: &str,
    parameters: &str,
    context: &SearchContext,
) -> ApiResult<Vec<Filter>> {
    let pairs = form(parameters)?;
    if let Some((name, _)) = pairs
        .iter()
        .find(|(name, _)| RESULT_PARAMETERS.contains(&name.as_str()))
    {
        return Err(ApiError::bad_parameter(
            name,
            format!("{name} shapes search results and cannot be part of a _typeFilter"),
        ));
    }
    let strict = SearchContext {
        strict: true,
        ..context.clone()
    };
    Ok(search::parse(resource_type, &pairs, &strict)?.filters)
}

fn form(text: &str) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(text).map_err(|e| {
        ApiError::bad_parameter("_typeFilter", format!("The query could not be parsed: {e}"))
    })
}

/// The types of the patient compartment: Patient, and every type whose `patient` search
/// parameter refers to a Patient.
pub fn compartment_types() -> Vec<&'static str> {
    registry()
        .resource_types()
        .iter()
        .map(String::as_str)
        .filter(|resource_type| {
            *resource_type == "Patient"
                || indexed_parameter(resource_type, COMPARTMENT_PARAMETER).is_some_and(|p| {
                    p.kind == IndexKind::Reference && p.targets.iter().any(|t| t == "Patient")
                })
        })
        .collect()
}

/// What a token may export of a type: reading and searching it, confined to its patient's
/// compartment if either is.
fn export_access(principal: &Principal, resource_type: &str) -> ApiResult<Access> {
    let read = principal.authorize(Some(resource_type), Interaction::Read)?;
    let search = principal.authorize(Some(resource_type), Interaction::Search)?;
    Ok(match (read, search) {
        (Access::Patient(patient), _) | (_, Access::Patient(patient)) => Access::Patient(patient),
        _ => Access::Full,
    })
}

/// The types a job exports and how each is read. Types the client names (in `_type` or
/// `_typeFilter`) must be exportable with the token (403 otherwise); without `_type`, the
/// level's types the token may read are exported. A system-level export needs full access:
/// a patient-scoped token exports through `Patient/$export`.
pub fn plan(level: Level, kickoff: &KickOff, principal: &Principal) -> ApiResult<Vec<TypePlan>> {
    let candidates: Vec<&str> = match level {
        Level::System => registry()
            .resource_types()
            .iter()
            .map(String::as_str)
            .collect(),
        Level::Patient | Level::Group => compartment_types(),
    };
    let requested: Vec<&str> = match &kickoff.types {
        Some(types) => types.iter().map(String::as_str).collect(),
        None => candidates.clone(),
    };
    let named = |resource_type: &str| {
        kickoff.types.is_some() || kickoff.type_filters.iter().any(|(t, _)| t == resource_type)
    };
    let mut plans = Vec::new();
    for resource_type in requested {
        if !candidates.contains(&resource_type) {
            return Err(ApiError::bad_parameter(
                "_type",
                format!(
                    "{resource_type} is not in the patient compartment; export it with the system-level $export"
                ),
            ));
        }
        let patient = match (export_access(principal, resource_type), level) {
            (Ok(Access::Full), _) => None,
            (Ok(Access::Patient(_)), Level::System) if named(resource_type) => {
                return Err(patient_scoped_system_export());
            }
            (Ok(Access::Patient(_)), Level::System) => continue,
            (Ok(Access::Patient(patient)), _) => Some(patient),
            (Err(error), _) if named(resource_type) => return Err(error),
            (Err(_), _) => continue,
        };
        let filters = kickoff
            .type_filters
            .iter()
            .filter(|(filtered, _)| filtered == resource_type)
            .map(|(_, parameters)| parameters.clone())
            .collect();
        plans.push(TypePlan {
            resource_type: resource_type.to_string(),
            patient,
            filters,
        });
    }
    if let Some((filtered, _)) = kickoff
        .type_filters
        .iter()
        .find(|(filtered, _)| !plans.iter().any(|p| &p.resource_type == filtered))
    {
        return Err(ApiError::bad_parameter(
            "_typeFilter",
            format!("_typeFilter names {filtered}, which this export does not cover"),
        ));
    }
    if plans.is_empty() {
        return Err(match level {
            Level::System if has_patient_scopes(principal) => patient_scoped_system_export(),
            _ => ApiError::Forbidden(
                "The access token may not read and search any resource type this export covers"
                    .into(),
            ),
        });
    }
    Ok(plans)
}

fn has_patient_scopes(principal: &Principal) -> bool {
    principal
        .scopes
        .iter()
        .any(|scope| scope.context == crate::auth::scopes::ScopeContext::Patient)
}

fn patient_scoped_system_export() -> ApiError {
    ApiError::Forbidden(
        "A patient-scoped access token exports only its patient's compartment: use Patient/$export"
            .into(),
    )
}

/// The member patients of a Group: the local Patient references of its members that are
/// not marked inactive, sorted, without repeats.
pub fn group_members(group: &Value, base_url: &str) -> Vec<String> {
    let mut members: Vec<String> = group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|member| member["inactive"] != Value::Bool(true))
        .filter_map(|member| member["entity"]["reference"].as_str())
        .filter_map(|reference| {
            let local = reference
                .strip_prefix(base_url)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(reference);
            let id = local.strip_prefix("Patient/")?;
            let id = id.split("/_history/").next().unwrap_or(id);
            crate::fhir::ResourceId::parse(id)
                .ok()
                .map(|id| id.to_string())
        })
        .collect();
    members.sort();
    members.dedup();
    members
}

/// The compartment a job of `level` reads a type from: everything (system level), every
/// patient's, or those of the Group's members; narrowed to the plan's patient, if any.
pub fn compartment(
    level: Level,
    members: Option<&Arc<Vec<String>>>,
    plan: &TypePlan,
) -> Compartment {
    match (level, &plan.patient) {
        (Level::System, _) => Compartment::Everything,
        (Level::Patient, None) => Compartment::AllPatients,
        (Level::Patient, Some(patient)) => Compartment::Patients(Arc::new(vec![patient.clone()])),
        (Level::Group, None) => Compartment::Patients(members.cloned().unwrap_or_default()),
        (Level::Group, Some(patient)) => Compartment::Patients(Arc::new(
            members
                .into_iter()
                .flat_map(|members| members.iter())
                .filter(|member| *member == patient)
                .cloned()
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scopes::parse_scopes;
    use crate::fhir::search::PageLimits;

    fn context() -> SearchContext {
        SearchContext {
            limits: PageLimits { default: 1, max: 1 },
            strict: true,
            base_url: "http://localhost/fhir".into(),
            zone: chrono_tz::UTC,
        }
    }

    fn pairs(query: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(query).unwrap()
    }

    fn principal(scope: &str, patient: Option<&str>) -> Principal {
        Principal {
            subject: "client".into(),
            scopes: parse_scopes(scope),
            patient: patient.map(str::to_string),
            fhir_user: None,
        }
    }

    #[test]
    fn kickoff_parameters_are_parsed() {
        let kickoff = parse_kickoff(
            &pairs(
                "_outputFormat=ndjson&_type=Patient,Observation,Patient&_since=2026-11-01T10:00:00%2B01:00\
                 &_typeFilter=Observation%3Fcode%3Dhttp://loinc.org|72514-3,Observation%3Fstatus%3Dfinal",
            ),
            &context(),
        )
        .unwrap();
        assert_eq!(
            kickoff.types,
            Some(vec!["Patient".to_string(), "Observation".to_string()])
        );
        assert_eq!(
            kickoff.since.unwrap().to_rfc3339(),
            "2026-11-01T09:00:00+00:00"
        );
        assert_eq!(
            kickoff.type_filters,
            [
                (
                    "Observation".to_string(),
                    "code=http%3A%2F%2Floinc.org%7C72514-3".to_string()
                ),
                ("Observation".to_string(), "status=final".to_string())
            ]
        );
    }

    #[test]
    fn bad_kickoff_parameters_name_the_parameter() {
        for (query, parameter) in [
            ("_outputFormat=text/csv", "_outputFormat"),
            ("_type=Patient,Spaceship", "_type"),
            ("_since=yesterday", "_since"),
            ("_since=2026-11-01", "_since"),
            (
                "_since=2026-11-01T00:00:00Z&_since=2026-11-02T00:00:00Z",
                "_since",
            ),
            ("_typeFilter=Observation", "_typeFilter"),
            ("_typeFilter=Observation%3Fcolour%3Dred", "_typeFilter"),
            ("_typeFilter=Observation%3F_count%3D5", "_typeFilter"),
            (
                "_type=Patient&_typeFilter=Observation%3Fstatus%3Dfinal",
                "_typeFilter",
            ),
            ("_elements=id", "_elements"),
            ("_count=10", "_count"),
        ] {
            match parse_kickoff(&pairs(query), &context()) {
                Err(ApiError::BadRequest(_, Some(named))) => {
                    assert_eq!(named, parameter, "{query}")
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn compartment_types_are_those_with_a_patient_reference() {
        let types = compartment_types();
        for expected in [
            "Patient",
            "Observation",
            "MedicationAdministration",
            "Condition",
            "Coverage",
            "Claim",
        ] {
            assert!(
                types.contains(&expected),
                "{expected} missing from {types:?}"
            );
        }
        for excluded in [
            "Practitioner",
            "Organization",
            "Medication",
            "Group",
            "Subscription",
        ] {
            assert!(!types.contains(&excluded), "{excluded} in {types:?}");
        }
    }

    #[test]
    fn plans_follow_the_token() {
        let all = KickOff::default();
        let full = plan(Level::System, &all, &principal("system/*.rs", None)).unwrap();
        assert_eq!(full.len(), registry().resource_types().len());
        assert!(full.iter().all(|p| p.patient.is_none()));

        let observations_only = plan(
            Level::Patient,
            &all,
            &principal("system/Observation.rs", None),
        )
        .unwrap();
        assert_eq!(
            observations_only,
            [TypePlan {
                resource_type: "Observation".into(),
                patient: None,
                filters: vec![]
            }]
        );

        let patient_token = principal("patient/*.rs", Some("p1"));
        let own = plan(Level::Patient, &all, &patient_token).unwrap();
        assert!(own.iter().all(|p| p.patient.as_deref() == Some("p1")));
        assert!(matches!(
            plan(Level::System, &all, &patient_token),
            Err(ApiError::Forbidden(_))
        ));

        let named = KickOff {
            types: Some(vec!["Condition".into()]),
            ..KickOff::default()
        };
        assert!(matches!(
            plan(
                Level::System,
                &named,
                &principal("system/Observation.rs", None)
            ),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            plan(
                Level::System,
                &named,
                &principal("system/Condition.r", None)
            ),
            Err(ApiError::Forbidden(_))
        ));
        let outside = KickOff {
            types: Some(vec!["Practitioner".into()]),
            ..KickOff::default()
        };
        assert!(matches!(
            plan(Level::Patient, &outside, &principal("system/*.rs", None)),
            Err(ApiError::BadRequest(..))
        ));
    }

    #[test]
    fn group_members_are_active_local_patients() {
        let group = serde_json::json!({"member": [
            {"entity": {"reference": "Patient/b"}},
            {"entity": {"reference": "http://localhost/fhir/Patient/a"}},
            {"entity": {"reference": "Patient/c"}, "inactive": true},
            {"entity": {"reference": "Practitioner/d"}},
            {"entity": {"reference": "Patient/b"}},
            {"entity": {"display": "no reference"}}
        ]});
        assert_eq!(group_members(&group, "http://localhost/fhir"), ["a", "b"]);
    }
}
