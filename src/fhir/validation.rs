//! Structural validation driven by the StructureDefinitions in the registry: element names,
//! cardinality, JSON shapes and primitive formats, required bindings, and the invariants
//! implemented in `invariants`. Every issue found is reported, not only the first.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::definitions::{ElementDefinition, ElementType, Registry, StructureDefinition, registry};
use super::invariants;
use super::outcome::Issue;

#[derive(Debug, Clone, Copy, Default)]
pub struct ValidationOptions {
    /// Report unknown elements as warnings instead of errors (`Prefer: handling=lenient`).
    pub lenient: bool,
}

/// Validates `resource` as a resource of type `resource_type`. Returns all issues; the
/// resource is acceptable when none of them is an error.
pub fn validate(resource_type: &str, resource: &Value, options: ValidationOptions) -> Vec<Issue> {
    let mut walker = Walker {
        registry: registry(),
        issues: Vec::new(),
        options,
    };
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(found) if found == resource_type => walker.resource(resource, resource_type),
        Some(found) => walker.issues.push(
            Issue::error(
                "invalid",
                format!("resourceType is '{found}', but this endpoint takes {resource_type}"),
            )
            .at("resourceType"),
        ),
        None => walker
            .issues
            .push(Issue::error("required", "The resource has no resourceType").at(resource_type)),
    }
    walker.issues
}

/// The issues found in a resource submitted for storage.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub issues: Vec<Issue>,
    /// Errors against the base specification (structure, types, bindings, invariants).
    structural: bool,
}

impl Report {
    pub fn structural_errors(&self) -> bool {
        self.structural
    }

    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(Issue::is_error)
    }
}

/// Base-specification validation plus the profile rules this server applies (vital signs):
/// what every create, update and patch goes through.
pub fn validate_resource(
    resource_type: &str,
    resource: &Value,
    options: ValidationOptions,
) -> Report {
    let mut issues = validate(resource_type, resource, options);
    let structural = issues.iter().any(Issue::is_error);
    if resource_type == "Observation" {
        issues.extend(invariants::vital_signs_issues(resource));
    }
    Report { issues, structural }
}

struct Walker<'r> {
    registry: &'r Registry,
    issues: Vec<Issue>,
    options: ValidationOptions,
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The type a choice property name selects: `valueQuantity` with base `value` -> `Quantity`.
fn choice_type<'e>(element: &'e ElementDefinition, key: &str) -> Option<&'e ElementType> {
    let suffix = key.strip_prefix(element.name.as_str())?;
    element.types.iter().find(|t| {
        let mut chars = t.code.chars();
        let capitalized: String = chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default();
        capitalized == suffix
    })
}

impl Walker<'_> {
    fn push(&mut self, issue: Issue) {
        self.issues.push(issue);
    }

    fn resource(&mut self, value: &Value, location: &str) {
        let Some(object) = value.as_object() else {
            self.push(
                Issue::error(
                    "structure",
                    format!("Expected a resource object, found {}", describe(value)),
                )
                .at(location),
            );
            return;
        };
        let Some(resource_type) = object.get("resourceType").and_then(Value::as_str) else {
            self.push(Issue::error("required", "A resource needs a resourceType").at(location));
            return;
        };
        let Some(definition) = self
            .registry
            .structure(resource_type)
            .filter(|d| d.kind == "resource")
        else {
            // Contained resources of types this server does not define are kept as sent.
            return;
        };
        let root = definition.type_name.clone();
        self.object(definition, &root, object, location);
        self.invariants_of(definition.root(), value, location);
    }

    /// An object whose elements are the children of `path` in `definition`.
    fn object(
        &mut self,
        definition: &StructureDefinition,
        path: &str,
        object: &Map<String, Value>,
        location: &str,
    ) {
        if object.is_empty() {
            self.push(
                Issue::error(
                    "structure",
                    "Empty objects are not allowed in FHIR JSON (ele-1)",
                )
                .at(location),
            );
            return;
        }
        let children: Vec<&ElementDefinition> = definition.children(path).collect();
        let is_resource_root = !path.contains('.') && definition.kind == "resource";
        for (key, value) in object {
            if key == "resourceType" && is_resource_root {
                continue;
            }
            if key == "fhir_comments" {
                continue;
            }
            self.property(definition, &children, key, value, location);
        }
        for element in &children {
            self.cardinality(element, object, location);
        }
    }

    fn property(
        &mut self,
        definition: &StructureDefinition,
        children: &[&ElementDefinition],
        key: &str,
        value: &Value,
        location: &str,
    ) {
        let here = format!("{location}.{key}");
        if let Some(base) = key.strip_prefix('_') {
            let primitive = children.iter().find(|e| {
                (!e.is_choice && e.name == base) || (e.is_choice && choice_type(e, base).is_some())
            });
            match primitive {
                Some(_) => self.primitive_extension(value, &here),
                None => self.unknown(key, &here),
            }
            return;
        }
        let matched = children.iter().find_map(|element| {
            if element.is_choice {
                choice_type(element, key).map(|t| (*element, t.clone()))
            } else if element.name == key {
                Some((
                    *element,
                    element.types.first().cloned().unwrap_or(ElementType {
                        code: "BackboneElement".into(),
                        profiles: vec![],
                        target_profiles: vec![],
                    }),
                ))
            } else {
                None
            }
        });
        let Some((element, element_type)) = matched else {
            self.unknown(key, &here);
            return;
        };
        match (value, element.is_repeating()) {
            (Value::Array(items), true) => {
                if items.is_empty() {
                    self.push(
                        Issue::error("structure", "Empty arrays are not allowed in FHIR JSON")
                            .at(&here),
                    );
                }
                if let Some(max) = element.max.filter(|max| items.len() > *max as usize) {
                    self.push(
                        Issue::error(
                            "structure",
                            format!(
                                "{} allows at most {max} value(s), found {}",
                                element.path,
                                items.len()
                            ),
                        )
                        .at(&here),
                    );
                }
                for (index, item) in items.iter().enumerate() {
                    self.value(
                        definition,
                        element,
                        &element_type,
                        item,
                        &format!("{here}[{index}]"),
                    );
                }
            }
            (Value::Array(_), false) => self.push(
                Issue::error(
                    "structure",
                    format!("{} takes a single value, not an array", element.path),
                )
                .at(&here),
            ),
            (_, true) => self.push(
                Issue::error(
                    "structure",
                    format!(
                        "{} repeats, so its JSON value must be an array",
                        element.path
                    ),
                )
                .at(&here),
            ),
            (_, false) => {
                if element.max == Some(0) {
                    self.push(
                        Issue::error(
                            "structure",
                            format!("{} is not allowed here (max 0)", element.path),
                        )
                        .at(&here),
                    );
                }
                self.value(definition, element, &element_type, value, &here)
            }
        }
    }

    fn unknown(&mut self, key: &str, location: &str) {
        let text = format!("Unknown element '{key}'");
        if self.options.lenient {
            self.push(
                Issue::warning("structure", format!("{text} (accepted: lenient handling)"))
                    .at(location),
            );
        } else {
            self.push(
                Issue::error(
                    "structure",
                    format!("{text}; send Prefer: handling=lenient to accept it"),
                )
                .at(location),
            );
        }
    }

    /// `_birthDate`-style companions carrying id/extension of a primitive.
    fn primitive_extension(&mut self, value: &Value, location: &str) {
        let Some(element) = self.registry.structure("Element") else {
            return;
        };
        let items: Vec<(String, &Value)> = match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter(|(_, item)| !item.is_null())
                .map(|(index, item)| (format!("{location}[{index}]"), item))
                .collect(),
            other => vec![(location.to_string(), other)],
        };
        for (here, item) in items {
            match item.as_object() {
                Some(object) => self.object(element, "Element", object, &here),
                None => self.push(
                    Issue::error(
                        "structure",
                        "A primitive's extension holder must be an object",
                    )
                    .at(&here),
                ),
            }
        }
    }

    fn cardinality(
        &mut self,
        element: &ElementDefinition,
        object: &Map<String, Value>,
        location: &str,
    ) {
        let present: Vec<&String> = object
            .keys()
            .filter(|key| {
                if element.is_choice {
                    choice_type(element, key).is_some()
                        || key
                            .strip_prefix('_')
                            .is_some_and(|k| choice_type(element, k).is_some())
                } else {
                    *key == &element.name || key.strip_prefix('_') == Some(element.name.as_str())
                }
            })
            .collect();
        if element.is_choice {
            let distinct: std::collections::HashSet<&str> =
                present.iter().map(|k| k.trim_start_matches('_')).collect();
            if distinct.len() > 1 {
                self.push(
                    Issue::error(
                        "structure",
                        format!(
                            "{} takes only one of its types, found {}",
                            element.path,
                            present
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .at(format!(
                        "{location}.{}",
                        distinct.iter().next().unwrap_or(&"")
                    )),
                );
            }
        }
        if element.min > 0 && present.is_empty() {
            let name = if element.is_choice {
                format!("{}[x]", element.name)
            } else {
                element.name.clone()
            };
            self.push(
                Issue::error(
                    "required",
                    format!(
                        "{} is required (minimum cardinality {})",
                        element.path, element.min
                    ),
                )
                .at(format!("{location}.{name}")),
            );
        }
    }

    fn value(
        &mut self,
        definition: &StructureDefinition,
        element: &ElementDefinition,
        element_type: &ElementType,
        value: &Value,
        location: &str,
    ) {
        if let Some(reference) = &element.content_reference {
            self.complex_in(
                definition,
                reference.trim_start_matches('#'),
                value,
                location,
            );
            return;
        }
        let code = element_type.code.as_str();
        if definition.children(&element.path).next().is_some() {
            // A backbone element: its children and constraints are defined inline.
            self.complex_in(definition, &element.path, value, location);
            return;
        }
        if code == "Resource" {
            self.resource(value, location);
        } else if let Some(type_definition) = self.type_definition(element_type) {
            if type_definition.kind == "primitive-type" {
                self.primitive(code, value, location);
            } else {
                let root = type_definition
                    .root()
                    .map(|r| r.path.clone())
                    .unwrap_or_else(|| code.to_string());
                self.complex_in(type_definition, &root, value, location);
            }
        } else if code.starts_with("System.") {
            self.system_primitive(code, value, location);
        }
        self.required_binding(element, value, location);
        self.invariants(element, value, location);
    }

    fn type_definition(&self, element_type: &ElementType) -> Option<&'static StructureDefinition> {
        let registry: &'static Registry = registry();
        element_type
            .profiles
            .iter()
            .find_map(|url| registry.structure_by_url(url))
            .or_else(|| registry.structure(&element_type.code))
    }

    /// An object validated against the children and constraints of `path` in `definition`.
    fn complex_in(
        &mut self,
        definition: &StructureDefinition,
        path: &str,
        value: &Value,
        location: &str,
    ) {
        match value.as_object() {
            Some(object) => {
                self.object(definition, path, object, location);
                self.invariants_of(definition.element(path), value, location);
            }
            None => self.push(
                Issue::error(
                    "structure",
                    format!("{path} must be an object, found {}", describe(value)),
                )
                .at(location),
            ),
        }
    }

    fn primitive(&mut self, code: &str, value: &Value, location: &str) {
        let shape_ok = match code {
            "boolean" => value.is_boolean(),
            "integer" | "unsignedInt" | "positiveInt" => value.is_i64() || value.is_u64(),
            "decimal" => value.is_number(),
            _ => value.is_string(),
        };
        if !shape_ok {
            self.push(
                Issue::error(
                    "value",
                    format!("Expected a value of type {code}, found {}", describe(value)),
                )
                .at(location),
            );
            return;
        }
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        if value.is_string() && text.trim().is_empty() {
            self.push(
                Issue::error(
                    "value",
                    format!("A {code} must not be empty or only whitespace"),
                )
                .at(location),
            );
            return;
        }
        if value.is_string() && text.chars().any(is_forbidden_control) {
            self.push(
                Issue::error(
                    "value",
                    format!("A {code} must not contain control characters other than tab, carriage return and line feed"),
                )
                .at(location),
            );
            return;
        }
        if code == "xhtml"
            && let Err(reason) = super::narrative::check(&text)
        {
            self.push(Issue::error("value", reason).at(location));
            return;
        }
        let pattern_ok = self
            .registry
            .primitive_pattern(code)
            .is_none_or(|pattern| pattern.is_match(&text));
        let range_ok = match code {
            "integer" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "unsignedInt" => value
                .as_i64()
                .is_some_and(|n| (0..=i32::MAX as i64).contains(&n)),
            "positiveInt" => value
                .as_i64()
                .is_some_and(|n| (1..=i32::MAX as i64).contains(&n)),
            "date" | "dateTime" | "instant" => calendar_date_ok(&text),
            "decimal" => decimal_in_range(&text),
            _ => true,
        };
        if !pattern_ok || !range_ok {
            self.push(
                Issue::error("value", format!("'{text}' is not a valid {code}")).at(location),
            );
        }
    }

    fn system_primitive(&mut self, code: &str, value: &Value, location: &str) {
        let ok = match code {
            "System.Boolean" => value.is_boolean(),
            "System.Integer" => value.is_i64(),
            "System.Decimal" => value.is_number(),
            _ => value.as_str().is_some_and(|s| !s.is_empty()),
        };
        if !ok {
            self.push(
                Issue::error("value", format!("Unexpected {} value", describe(value))).at(location),
            );
        }
    }

    fn required_binding(&mut self, element: &ElementDefinition, value: &Value, location: &str) {
        let Some(url) = &element.required_value_set else {
            return;
        };
        let Some(codes) = self.registry.value_set(url) else {
            return;
        };
        let coding_ok = |coding: &Value| {
            let system = coding["system"].as_str().unwrap_or_default();
            let code = coding["code"].as_str().unwrap_or_default();
            codes.contains(&(system.to_string(), code.to_string()))
        };
        let (ok, shown) = match value {
            Value::String(code) => (codes.iter().any(|(_, c)| c == code), code.clone()),
            Value::Object(object) if object.contains_key("coding") => (
                object["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(coding_ok),
                "the codings given".to_string(),
            ),
            Value::Object(object) if object.contains_key("code") => (
                coding_ok(value),
                object["code"].as_str().unwrap_or_default().to_string(),
            ),
            _ => return,
        };
        if !ok {
            let mut allowed: Vec<&str> = codes.iter().map(|(_, c)| c.as_str()).collect();
            allowed.sort_unstable();
            allowed.truncate(20);
            self.push(
                Issue::error(
                    "code-invalid",
                    format!(
                        "{} has a required binding to {url}; '{shown}' is not in it (allowed: {})",
                        element.path,
                        allowed.join(", ")
                    ),
                )
                .at(location),
            );
        }
    }

    fn invariants(&mut self, element: &ElementDefinition, value: &Value, location: &str) {
        self.invariants_of(Some(element), value, location);
    }

    fn invariants_of(
        &mut self,
        element: Option<&ElementDefinition>,
        value: &Value,
        location: &str,
    ) {
        let Some(element) = element else { return };
        for constraint in &element.constraints {
            if invariants::holds(&constraint.key, value) == Some(false) {
                let issue_text =
                    format!("Constraint {} failed: {}", constraint.key, constraint.human);
                let issue = if constraint.severity == "warning" {
                    Issue::warning("invariant", issue_text)
                } else {
                    Issue::error("invariant", issue_text)
                };
                self.push(issue.at(location));
            }
        }
    }
}

/// FHIR strings hold no character below U+0020 but tab, CR and LF (PostgreSQL's jsonb
/// could not store U+0000 either).
fn is_forbidden_control(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\r' | '\n')
}

/// A decimal must be finite as a 64-bit float: every JSON consumer the data reaches
/// (browsers, payers' systems) reads numbers that way, and 1e400 would become infinity.
fn decimal_in_range(text: &str) -> bool {
    text.parse::<f64>().is_ok_and(f64::is_finite)
}

/// The regexes accept 2026-02-31; the calendar does not.
fn calendar_date_ok(text: &str) -> bool {
    // `get` rather than slicing: byte 10 may fall inside a multi-byte character.
    match text.get(..10) {
        Some(day) => NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok(),
        None => text.len() < 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(resource_type: &str, resource: Value) -> Vec<String> {
        validate(resource_type, &resource, ValidationOptions::default())
            .into_iter()
            .filter(Issue::is_error)
            .map(|i| format!("{} @ {}", i.diagnostics, i.expression.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_valid_patient_has_no_issues() {
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-1"}],
            "name": [{"family": "Doe", "given": ["Jane"]}],
            "gender": "female",
            "birthDate": "1980-02-29",
            "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
        });
        assert_eq!(errors("Patient", patient), Vec::<String>::new());
    }

    #[test]
    fn unknown_elements_bad_codes_and_formats_are_all_reported() {
        let patient = json!({
            "resourceType": "Patient",
            "gender": "mail",
            "birthDate": "1980-02-30",
            "nickname": "JJ",
            "name": {"family": "Doe"}
        });
        let found = errors("Patient", patient);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found
                .iter()
                .any(|e| e.contains("'mail'") && e.ends_with("@ Patient.gender"))
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains("not a valid date") && e.ends_with("@ Patient.birthDate"))
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains("Unknown element 'nickname'"))
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains("must be an array") && e.ends_with("@ Patient.name"))
        );
    }

    #[test]
    fn missing_required_elements_and_choice_types() {
        let observation = json!({
            "resourceType": "Observation",
            "code": {"text": "x"},
            "valueQuantity": {"value": "high"}
        });
        let found = errors("Observation", observation);
        assert!(
            found
                .iter()
                .any(|e| e.contains("Observation.status is required")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains("Expected a value of type decimal")
                    && e.ends_with("Observation.valueQuantity.value")),
            "{found:?}"
        );
    }

    #[test]
    fn a_multi_byte_character_at_the_day_boundary_is_an_error_not_a_panic() {
        for birth_date in ["2024-01-0\u{e9}", "2024-01-\u{e9}1", "2024-01-01\u{e9}"] {
            let found = errors(
                "Patient",
                json!({"resourceType": "Patient", "birthDate": birth_date}),
            );
            assert!(
                found.iter().any(|e| e.contains("birthDate")),
                "{birth_date}: {found:?}"
            );
        }
    }

    #[test]
    fn lenient_mode_turns_unknown_elements_into_warnings() {
        let patient = json!({"resourceType": "Patient", "nickname": "JJ"});
        let issues = validate("Patient", &patient, ValidationOptions { lenient: true });
        assert_eq!(issues.len(), 1);
        assert!(!issues[0].is_error());
    }
}
