//! `Patient/{id}/$everything`: its parameters (`start`, `end`, `_since`, `_type`, `_count`)
//! parsed from a query or a Parameters body, and the care date of each type that `start` and
//! `end` restrict.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::compartment::{outside_patient_compartments, patient_compartment_types};
use super::dates::date_range_in;
use super::definitions::registry;
use super::search::{CURSOR_PARAMETER, PageLimits};
use super::search_index::{IndexKind, indexed_parameters};
use crate::error::{ApiError, ApiResult};

/// The instants `[from, to)` of care that `start` and `end` name; either may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CareWindow {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl CareWindow {
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EverythingRequest {
    pub care: CareWindow,
    /// `_since`: only resources last updated at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// `_type`: the types to return; `None` means every type.
    pub types: Option<Vec<String>>,
    pub count: i64,
    pub cursor: Option<String>,
    /// The parameters applied, in request order, for the paging links.
    pub applied: Vec<(String, String)>,
    /// Unknown parameters that were ignored.
    pub ignored: Vec<String>,
}

impl EverythingRequest {
    /// Whether `_type` lets resources of this type into the result.
    pub fn returns(&self, resource_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == resource_type))
    }
}

/// Accepted and without effect on the result.
const IGNORED_SILENTLY: &[&str] = &["_format", "_pretty"];

/// Parses the operation's parameters. Malformed values, and with `strict` unknown
/// parameters, are a 400 naming the parameter.
pub fn parse(
    parameters: &[(String, String)],
    limits: PageLimits,
    zone: Tz,
    strict: bool,
) -> ApiResult<EverythingRequest> {
    let mut request = EverythingRequest {
        care: CareWindow::default(),
        since: None,
        types: None,
        count: limits.default,
        cursor: None,
        applied: Vec::new(),
        ignored: Vec::new(),
    };
    for (index, (name, value)) in parameters.iter().enumerate() {
        let once = || only_once(parameters, index, name);
        match name.as_str() {
            "start" => {
                once()?;
                request.care.from = Some(date_bound(name, value, zone)?.0);
            }
            "end" => {
                once()?;
                request.care.to = Some(date_bound(name, value, zone)?.1);
            }
            "_since" => {
                once()?;
                request.since = Some(instant(name, value, zone)?);
            }
            "_type" => request
                .types
                .get_or_insert_with(Vec::new)
                .extend(resource_types(value)?),
            "_count" => {
                once()?;
                request.count = page_size(value, limits)?;
            }
            CURSOR_PARAMETER => {
                once()?;
                request.cursor = Some(value.clone());
                continue;
            }
            name if IGNORED_SILENTLY.contains(&name) => continue,
            name if strict => {
                return Err(ApiError::bad_parameter(
                    name,
                    format!("'{name}' is not a parameter of $everything (Prefer: handling=strict)"),
                ));
            }
            name => {
                request.ignored.push(name.to_string());
                continue;
            }
        }
        request.applied.push((name.clone(), value.clone()));
    }
    if let CareWindow {
        from: Some(from),
        to: Some(to),
    } = request.care
        && to <= from
    {
        return Err(ApiError::bad_parameter(
            "end",
            "The parameter 'end' must not be before 'start'",
        ));
    }
    Ok(request)
}

fn only_once(parameters: &[(String, String)], index: usize, name: &str) -> ApiResult<()> {
    if parameters[..index]
        .iter()
        .any(|(earlier, _)| earlier == name)
    {
        return Err(ApiError::bad_parameter(
            name,
            format!("The parameter '{name}' may be given only once"),
        ));
    }
    Ok(())
}

fn date_bound(name: &str, value: &str, zone: Tz) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    date_range_in(value, zone).ok_or_else(|| {
        ApiError::bad_parameter(
            name,
            format!(
                "The parameter '{name}' must be a FHIR date or dateTime such as 2026-06-30; got '{value}'"
            ),
        )
    })
}

/// A FHIR instant (to the second, with a zone), as its primitive type defines it.
fn instant(name: &str, value: &str, zone: Tz) -> ApiResult<DateTime<Utc>> {
    let is_instant = registry()
        .primitive_pattern("instant")
        .is_some_and(|pattern| pattern.is_match(value));
    match date_range_in(value, zone) {
        Some((start, _)) if is_instant => Ok(start),
        _ => Err(ApiError::bad_parameter(
            name,
            format!(
                "The parameter '{name}' must be a FHIR instant such as 2026-06-30T08:00:00Z; got '{value}'"
            ),
        )),
    }
}

fn resource_types(value: &str) -> ApiResult<Vec<String>> {
    value
        .split(',')
        .map(str::trim)
        .map(|name| {
            if registry().is_supported_resource(name) {
                Ok(name.to_string())
            } else {
                Err(ApiError::bad_parameter(
                    "_type",
                    format!(
                        "'{name}' is not a resource type this server serves (see /fhir/metadata)"
                    ),
                ))
            }
        })
        .collect()
}

fn page_size(value: &str, limits: PageLimits) -> ApiResult<i64> {
    match value.parse::<i64>() {
        Ok(count) if count > 0 => Ok(count.min(limits.max)),
        _ => Err(ApiError::bad_parameter(
            "_count",
            format!("_count must be a positive integer, not '{value}'"),
        )),
    }
}

/// The date search parameter that holds when the care a resource records took place, for
/// the types that have one; `start` and `end` restrict these types only.
pub fn care_date_parameter(resource_type: &str) -> Option<&'static str> {
    Some(match resource_type {
        "Observation" => "date",
        "Condition" => "onset-date",
        "Encounter" => "date",
        "MedicationAdministration" => "effective-time",
        "MedicationRequest" => "authoredon",
        "QuestionnaireResponse" => "authored",
        _ => return None,
    })
}

/// Served types that are the server's configuration rather than part of a record: a
/// Subscription holds webhook secrets, and a reference to one (`Observation.focus` may name
/// any type) does not make it part of the patient's record.
const NOT_RECORD_TYPES: &[&str] = &["Subscription"];

/// The served types outside any patient compartment that compartment resources can refer
/// to through an indexed reference parameter: what `$everything` adds as includes.
pub fn referenced_types() -> Vec<&'static str> {
    outside_patient_compartments()
        .filter(|target| !NOT_RECORD_TYPES.contains(target))
        .filter(|target| {
            patient_compartment_types().any(|source| {
                indexed_parameters(source).iter().any(|parameter| {
                    parameter.kind == IndexKind::Reference
                        && parameter.targets.iter().any(|t| t == target)
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search_index::indexed_parameter;

    const LIMITS: PageLimits = PageLimits {
        default: 20,
        max: 500,
    };

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn parsed(pairs: &[(&str, &str)]) -> ApiResult<EverythingRequest> {
        parse(&params(pairs), LIMITS, chrono_tz::UTC, false)
    }

    fn error_parameter(pairs: &[(&str, &str)]) -> String {
        match parsed(pairs) {
            Err(ApiError::BadRequest(_, Some(parameter))) => parameter,
            other => panic!("expected a 400 naming a parameter, got {other:?}"),
        }
    }

    #[test]
    fn care_dates_are_indexed_date_parameters() {
        for resource_type in registry().resource_types() {
            if let Some(param) = care_date_parameter(resource_type) {
                let indexed = indexed_parameter(resource_type, param)
                    .unwrap_or_else(|| panic!("{resource_type}.{param} is not indexed"));
                assert_eq!(indexed.kind, IndexKind::Date);
            }
        }
    }

    #[test]
    fn includes_are_the_referable_types_outside_compartments() {
        assert_eq!(
            referenced_types(),
            ["Practitioner", "Organization", "Medication"]
        );
    }

    #[test]
    fn parameters_are_parsed() {
        let request = parsed(&[
            ("start", "2026-01"),
            ("end", "2026-02-15"),
            ("_since", "2026-01-10T08:00:00+01:00"),
            ("_type", "Observation,Condition"),
            ("_type", "Patient"),
            ("_count", "900"),
            ("_format", "json"),
            ("_cursor", "abc"),
            ("foo", "1"),
        ])
        .unwrap();
        assert_eq!(
            request.care.from.unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            request.care.to.unwrap().to_rfc3339(),
            "2026-02-16T00:00:00+00:00"
        );
        assert_eq!(
            request.since.unwrap().to_rfc3339(),
            "2026-01-10T07:00:00+00:00"
        );
        assert_eq!(
            request.types.as_deref().unwrap(),
            ["Observation", "Condition", "Patient"]
        );
        assert!(request.returns("Condition") && !request.returns("Encounter"));
        assert_eq!(request.count, 500);
        assert_eq!(request.cursor.as_deref(), Some("abc"));
        assert_eq!(request.ignored, ["foo"]);
        assert_eq!(request.applied.len(), 6);
        assert!(parsed(&[]).unwrap().returns("Encounter"));
    }

    #[test]
    fn malformed_values_name_their_parameter() {
        assert_eq!(error_parameter(&[("start", "2026-13-01")]), "start");
        assert_eq!(error_parameter(&[("end", "soon")]), "end");
        assert_eq!(
            error_parameter(&[("start", "2026-03-01"), ("end", "2026-02-01")]),
            "end"
        );
        assert_eq!(error_parameter(&[("_since", "2026-01-10")]), "_since");
        assert_eq!(
            error_parameter(&[("_type", "Observation,Spaceship")]),
            "_type"
        );
        assert_eq!(error_parameter(&[("_count", "0")]), "_count");
        assert_eq!(error_parameter(&[("_count", "x")]), "_count");
        assert_eq!(
            error_parameter(&[("start", "2026"), ("start", "2027")]),
            "start"
        );
        let strict = parse(&params(&[("foo", "1")]), LIMITS, chrono_tz::UTC, true);
        assert!(matches!(strict, Err(ApiError::BadRequest(_, Some(p))) if p == "foo"));
    }
}
