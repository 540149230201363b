//! Search-index extraction: for every SearchParameter of a type whose expression is in the
//! supported FHIRPath subset, the values a resource holds, shaped for its parameter type.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::dates::date_range_in;
use super::definitions::registry;
use super::fhirpath::{Expression, Node};
use super::{text, ucum};

/// The search-parameter types this server indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Token,
    String,
    Date,
    Quantity,
    Number,
    Reference,
    Uri,
}

impl IndexKind {
    fn from_type(param_type: &str) -> Option<Self> {
        Some(match param_type {
            "token" => IndexKind::Token,
            "string" => IndexKind::String,
            "date" => IndexKind::Date,
            "quantity" => IndexKind::Quantity,
            "number" => IndexKind::Number,
            "reference" => IndexKind::Reference,
            "uri" => IndexKind::Uri,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Token => "token",
            IndexKind::String => "string",
            IndexKind::Date => "date",
            IndexKind::Quantity => "quantity",
            IndexKind::Number => "number",
            IndexKind::Reference => "reference",
            IndexKind::Uri => "uri",
        }
    }
}

/// A search parameter backed by the index tables.
#[derive(Debug, Clone)]
pub struct IndexedParameter {
    pub code: String,
    pub kind: IndexKind,
    /// Resource types a reference parameter may point to.
    pub targets: Vec<String>,
    expression: Expression,
}

/// What extraction needs beyond the resource: which URLs are this server's, and the zone
/// in which dates without one are read.
#[derive(Debug, Clone)]
pub struct IndexContext {
    pub base_url: String,
    pub zone: Tz,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenEntry {
    pub param: String,
    pub system: Option<String>,
    pub code: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StringEntry {
    pub param: String,
    pub normalized: String,
    pub exact: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DateEntry {
    pub param: String,
    pub start: DateTime<Utc>,
    pub finish: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantityEntry {
    pub param: String,
    pub value: f64,
    pub system: Option<String>,
    pub code: Option<String>,
    pub canonical_value: Option<f64>,
    pub canonical_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEntry {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UriEntry {
    pub param: String,
    pub uri: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct IndexEntries {
    pub tokens: Vec<TokenEntry>,
    pub strings: Vec<StringEntry>,
    pub dates: Vec<DateEntry>,
    pub quantities: Vec<QuantityEntry>,
    pub references: Vec<ReferenceEntry>,
    pub uris: Vec<UriEntry>,
}

/// `_id` and `_lastUpdated` are answered from the resources table itself.
const COLUMN_PARAMETERS: &[&str] = &["_id", "_lastUpdated"];

static INDEXED: LazyLock<HashMap<String, Vec<IndexedParameter>>> = LazyLock::new(|| {
    let registry = registry();
    registry
        .resource_types()
        .iter()
        .map(|resource_type| {
            let parameters = registry
                .search_parameters(resource_type)
                .iter()
                .filter(|parameter| !COLUMN_PARAMETERS.contains(&parameter.code.as_str()))
                .filter_map(|parameter| {
                    let kind = IndexKind::from_type(&parameter.param_type)?;
                    let expression = Expression::parse(parameter.expression.as_deref()?)?;
                    expression
                        .applies_to(resource_type)
                        .then(|| IndexedParameter {
                            code: parameter.code.clone(),
                            kind,
                            targets: parameter.targets.clone(),
                            expression,
                        })
                })
                .collect();
            (resource_type.clone(), parameters)
        })
        .collect()
});

/// The index-backed search parameters of a resource type.
pub fn indexed_parameters(resource_type: &str) -> &'static [IndexedParameter] {
    INDEXED
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub fn indexed_parameter(resource_type: &str, code: &str) -> Option<&'static IndexedParameter> {
    indexed_parameters(resource_type)
        .iter()
        .find(|p| p.code == code)
}

/// A fingerprint of the extraction rules: when it changes, stored indexes are stale.
pub fn fingerprint(context: &IndexContext) -> String {
    let mut parts: Vec<String> = INDEXED
        .iter()
        .flat_map(|(resource_type, parameters)| {
            parameters.iter().map(move |p| {
                format!(
                    "{resource_type}.{}:{}:{:?}",
                    p.code,
                    p.kind.name(),
                    p.expression
                )
            })
        })
        .collect();
    parts.sort();
    parts.push(format!("zone={}", context.zone));
    parts.push(format!("base={}", context.base_url));
    parts.push(format!("rules={EXTRACTION_RULES_VERSION}"));
    let joined = parts.join("\n");
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = joined.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Bump when the extraction code changes meaning.
const EXTRACTION_RULES_VERSION: u32 = 2;

/// The index entries of one resource.
pub fn extract(resource_type: &str, resource: &Value, context: &IndexContext) -> IndexEntries {
    let mut entries = IndexEntries::default();
    for parameter in indexed_parameters(resource_type) {
        let param = parameter.code.as_str();
        for node in parameter.expression.select(resource_type, resource) {
            match parameter.kind {
                IndexKind::Token => tokens(param, node, &mut entries.tokens),
                IndexKind::String => strings(param, node.value, &mut entries.strings),
                IndexKind::Date => entries.dates.extend(date(param, node.value, context)),
                IndexKind::Quantity | IndexKind::Number => {
                    entries.quantities.extend(quantity(param, node.value))
                }
                IndexKind::Reference => entries
                    .references
                    .extend(reference(param, node.value, context)),
                IndexKind::Uri => entries.uris.extend(node.value.as_str().map(|uri| UriEntry {
                    param: param.to_string(),
                    uri: uri.to_string(),
                })),
            }
        }
    }
    dedup(&mut entries.tokens);
    dedup(&mut entries.strings);
    dedup(&mut entries.dates);
    dedup(&mut entries.quantities);
    dedup(&mut entries.references);
    dedup(&mut entries.uris);
    entries
}

fn string_of(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_string)
}

fn token_row(
    param: &str,
    system: Option<&Value>,
    code: Option<&Value>,
    display: Option<&str>,
) -> TokenEntry {
    TokenEntry {
        param: param.to_string(),
        system: string_of(system),
        code: string_of(code),
        text: display.map(text::normalize),
    }
}

/// Token values by the shape of the element: CodeableConcept, Coding, Identifier (also
/// under `<param>:of-type`), ContactPoint (value only), code/string/id, boolean.
fn tokens(param: &str, node: Node<'_>, into: &mut Vec<TokenEntry>) {
    let value = node.value;
    match value {
        Value::String(code) => into.push(TokenEntry {
            param: param.to_string(),
            system: None,
            code: Some(code.clone()),
            text: None,
        }),
        Value::Bool(flag) => into.push(TokenEntry {
            param: param.to_string(),
            system: None,
            code: Some(flag.to_string()),
            text: None,
        }),
        Value::Object(object) => {
            let concept_text = object.get("text").and_then(Value::as_str);
            if let Some(codings) = object.get("coding").and_then(Value::as_array) {
                for coding in codings {
                    let display = concept_text.or(coding["display"].as_str());
                    into.push(token_row(
                        param,
                        coding.get("system"),
                        coding.get("code"),
                        display,
                    ));
                }
                if codings.is_empty() && concept_text.is_some() {
                    into.push(token_row(param, None, None, concept_text));
                }
            } else if object.contains_key("code") {
                into.push(token_row(
                    param,
                    object.get("system"),
                    object.get("code"),
                    object.get("display").and_then(Value::as_str),
                ));
            } else if object.contains_key("value") {
                identifier_or_contact(param, object, into);
            } else if concept_text.is_some() {
                into.push(token_row(param, None, None, concept_text));
            }
        }
        _ => {}
    }
}

fn identifier_or_contact(
    param: &str,
    object: &serde_json::Map<String, Value>,
    into: &mut Vec<TokenEntry>,
) {
    let system = object.get("system").and_then(Value::as_str);
    // ContactPoint.system is a short code (phone, email); Identifier.system a URI.
    if system.is_some_and(|s| !s.contains(':')) {
        into.push(token_row(param, None, object.get("value"), None));
        return;
    }
    let identifier_type = object.get("type").unwrap_or(&Value::Null);
    let type_text = identifier_type["text"].as_str();
    into.push(token_row(
        param,
        object.get("system"),
        object.get("value"),
        type_text,
    ));
    let Some(value) = object.get("value").and_then(Value::as_str) else {
        return;
    };
    for coding in identifier_type["coding"].as_array().into_iter().flatten() {
        let Some(type_code) = coding["code"].as_str() else {
            continue;
        };
        into.push(TokenEntry {
            param: format!("{param}:of-type"),
            system: string_of(coding.get("system")),
            code: Some(format!("{type_code}|{value}")),
            text: None,
        });
    }
}

/// The text parts a string parameter matches: the string itself, or the parts of a
/// HumanName or Address (and any `text`).
fn strings(param: &str, value: &Value, into: &mut Vec<StringEntry>) {
    const PARTS: &[&str] = &[
        "text",
        "family",
        "given",
        "prefix",
        "suffix",
        "line",
        "city",
        "district",
        "state",
        "postalCode",
        "country",
    ];
    let mut push = |text_value: &str| {
        into.push(StringEntry {
            param: param.to_string(),
            normalized: text::normalize(text_value),
            exact: text_value.to_string(),
        })
    };
    match value {
        Value::String(text_value) => push(text_value),
        Value::Object(object) => {
            for part in PARTS {
                match object.get(*part) {
                    Some(Value::String(text_value)) => push(text_value),
                    Some(Value::Array(items)) => {
                        items.iter().filter_map(Value::as_str).for_each(&mut push)
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// A date, dateTime, instant or Period as the instant range it covers.
fn date(param: &str, value: &Value, context: &IndexContext) -> Option<DateEntry> {
    let (start, finish) = match value {
        Value::String(text_value) => date_range_in(text_value, context.zone)?,
        Value::Object(_) => {
            let start = value["start"]
                .as_str()
                .and_then(|s| date_range_in(s, context.zone))
                .map(|r| r.0);
            let end = value["end"]
                .as_str()
                .and_then(|s| date_range_in(s, context.zone))
                .map(|r| r.1);
            if start.is_none() && end.is_none() {
                return None;
            }
            (
                start.unwrap_or(DateTime::<Utc>::MIN_UTC),
                end.unwrap_or(DateTime::<Utc>::MAX_UTC),
            )
        }
        _ => return None,
    };
    Some(DateEntry {
        param: param.to_string(),
        start,
        finish,
    })
}

fn quantity(param: &str, value: &Value) -> Option<QuantityEntry> {
    let (number, system, code) = match value {
        Value::Number(number) => (number.as_f64()?, None, None),
        Value::Object(object) => (
            object.get("value")?.as_f64()?,
            string_of(object.get("system")),
            string_of(object.get("code")).or_else(|| string_of(object.get("unit"))),
        ),
        _ => return None,
    };
    let canonical = (system.as_deref() == Some(ucum::SYSTEM))
        .then(|| code.as_deref().and_then(|c| ucum::canonical(c, number)))
        .flatten();
    Some(QuantityEntry {
        param: param.to_string(),
        value: number,
        system,
        code,
        canonical_value: canonical.map(|c| c.0),
        canonical_code: canonical.map(|c| c.1.to_string()),
    })
}

/// A literal reference: relative `Type/id`, or absolute. Absolute URLs under this server's
/// base are local; others are kept as URLs. Contained (`#x`) references are not indexed.
fn reference(param: &str, value: &Value, context: &IndexContext) -> Option<ReferenceEntry> {
    let text_value = match value {
        Value::Object(object) => object.get("reference")?.as_str()?,
        Value::String(canonical) => canonical.as_str(),
        _ => return None,
    };
    if text_value.starts_with('#') {
        return None;
    }
    let local = text_value
        .strip_prefix(context.base_url.as_str())
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(text_value);
    let entry =
        |target_type: Option<&str>, target_id: Option<&str>, url: Option<&str>| ReferenceEntry {
            param: param.to_string(),
            target_type: target_type.map(str::to_string),
            target_id: target_id.map(str::to_string),
            url: url.map(str::to_string),
        };
    if local.contains(':') {
        return Some(entry(None, None, Some(text_value)));
    }
    let without_version = local.split("/_history/").next().unwrap_or(local);
    match without_version.split_once('/') {
        Some((target_type, id)) if !id.contains('/') => {
            Some(entry(Some(target_type), Some(id), None))
        }
        _ => Some(entry(None, None, Some(text_value))),
    }
}

/// Drops repeated entries (a code in several codings, a value in two paths), keeping order.
fn dedup<T: PartialEq>(items: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    *items = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> IndexContext {
        IndexContext {
            base_url: "http://fhir.example/fhir".into(),
            zone: chrono_tz::America::New_York,
        }
    }

    #[test]
    fn patient_strings_dates_tokens_and_references() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [{"family": "Müller", "given": ["Zoë", "Anne"]}],
            "birthDate": "1970-05-01",
            "gender": "female",
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "system": "urn:mrn", "value": "42"}],
            "telecom": [{"system": "phone", "value": "555-0101"}],
            "generalPractitioner": [{"reference": "http://fhir.example/fhir/Practitioner/gp1"}],
            "meta": {"tag": [{"system": "urn:t", "code": "demo"}], "profile": ["http://example.org/p"]}
        });
        let entries = extract("Patient", &patient, &context());
        let family: Vec<&str> = entries
            .strings
            .iter()
            .filter(|s| s.param == "family")
            .map(|s| s.normalized.as_str())
            .collect();
        assert_eq!(family, ["muller"]);
        assert!(
            entries
                .strings
                .iter()
                .any(|s| s.param == "name" && s.normalized == "zoe")
        );
        let birth = entries
            .dates
            .iter()
            .find(|d| d.param == "birthdate")
            .unwrap();
        assert_eq!(birth.start.to_rfc3339(), "1970-05-01T04:00:00+00:00");
        assert_eq!(birth.finish.to_rfc3339(), "1970-05-02T04:00:00+00:00");
        assert!(
            entries
                .tokens
                .iter()
                .any(|t| t.param == "identifier:of-type" && t.code.as_deref() == Some("MR|42"))
        );
        assert!(entries.tokens.iter().any(|t| t.param == "phone"
            && t.code.as_deref() == Some("555-0101")
            && t.system.is_none()));
        assert!(
            entries
                .tokens
                .iter()
                .any(|t| t.param == "_tag" && t.code.as_deref() == Some("demo"))
        );
        assert!(
            entries
                .uris
                .iter()
                .any(|u| u.param == "_profile" && u.uri == "http://example.org/p")
        );
        let gp = entries
            .references
            .iter()
            .find(|r| r.param == "general-practitioner")
            .unwrap();
        assert_eq!(
            (gp.target_type.as_deref(), gp.target_id.as_deref()),
            (Some("Practitioner"), Some("gp1"))
        );
    }

    #[test]
    fn observation_quantities_are_canonicalised_and_periods_are_ranges() {
        let observation = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body Weight"},
            "valueQuantity": {"value": 72.5, "system": "http://unitsofmeasure.org", "code": "kg"},
            "effectivePeriod": {"start": "2026-01-01T10:00:00+01:00"},
            "subject": {"reference": "https://elsewhere.example/Patient/9"}
        });
        let entries = extract("Observation", &observation, &context());
        let weight = entries
            .quantities
            .iter()
            .find(|q| q.param == "value-quantity")
            .unwrap();
        assert_eq!(weight.canonical_code.as_deref(), Some("g"));
        assert_eq!(weight.canonical_value, Some(72_500.0));
        let date = entries.dates.iter().find(|d| d.param == "date").unwrap();
        assert_eq!(date.start.to_rfc3339(), "2026-01-01T09:00:00+00:00");
        assert_eq!(date.finish, DateTime::<Utc>::MAX_UTC);
        let code = entries.tokens.iter().find(|t| t.param == "code").unwrap();
        assert_eq!(code.text.as_deref(), Some("body weight"));
        let subject = entries
            .references
            .iter()
            .find(|r| r.param == "subject")
            .unwrap();
        assert_eq!(
            subject.url.as_deref(),
            Some("https://elsewhere.example/Patient/9")
        );
        let patient = entries
            .references
            .iter()
            .find(|r| r.param == "patient")
            .unwrap();
        assert_eq!(
            (patient.target_id.as_deref(), patient.url.as_deref()),
            (None, Some("https://elsewhere.example/Patient/9"))
        );
    }
}

#[cfg(test)]
mod coverage_tests {
    use super::*;

    /// Every R4 search parameter of every registry type is index-backed, except the
    /// resource-level text/query parameters, Patient `deceased` (exists() in its FHIRPath),
    /// and the composites (Observation's, Group's) and `value-string` of Observation.
    #[test]
    fn every_standard_parameter_is_indexed_but_the_known_exceptions() {
        const NOT_INDEXED_ANYWHERE: &[&str] = &["_text", "_content", "_query"];
        let mut unsupported: Vec<String> = Vec::new();
        for resource_type in registry().resource_types() {
            for parameter in registry().search_parameters(resource_type) {
                let code = parameter.code.as_str();
                let skipped =
                    COLUMN_PARAMETERS.contains(&code) || NOT_INDEXED_ANYWHERE.contains(&code);
                if !skipped && indexed_parameter(resource_type, code).is_none() {
                    unsupported.push(format!("{resource_type}.{code}"));
                }
            }
        }
        unsupported.sort();
        let expected = [
            "Group.characteristic-value",
            "Observation.code-value-concept",
            "Observation.code-value-date",
            "Observation.code-value-quantity",
            "Observation.code-value-string",
            "Observation.combo-code-value-concept",
            "Observation.combo-code-value-quantity",
            "Observation.component-code-value-concept",
            "Observation.component-code-value-quantity",
            "Observation.value-string",
            "Patient.deceased",
        ];
        assert_eq!(unsupported, expected);
    }
}
