//! The subset of FHIRPath that R4 SearchParameter expressions use for plain element selection:
//! unions (`|`), dotted paths over choice elements, `.where(resolve() is T)`,
//! `.where(field='x')`, `.as(T)`, `.ofType(T)` and `(path as T)`. Expressions outside the
//! subset don't parse, and the parameters they belong to are not offered.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// A child element; a choice element (`value`) matches `valueQuantity`, `valueString`, ...
    Child(String),
    /// Keep only values of this FHIR type (choice suffix or reference target type).
    OfType(String),
    /// Keep references whose target is of this resource type.
    ResolvesTo(String),
    /// Keep objects whose `field` equals `value`.
    FieldEquals(String, String),
}

/// One parsed union member: a path rooted at a resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub resource_type: String,
    steps: Vec<Step>,
}

/// A parsed expression: the union of its paths.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    pub paths: Vec<Path>,
}

/// A selected node: the JSON value and, for choice elements, the FHIR type its name reveals.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub type_hint: Option<&'a str>,
}

fn split_top_level(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_quote = false;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '\'' => in_quote = !in_quote,
            '(' if !in_quote => depth += 1,
            ')' if !in_quote => depth -= 1,
            _ => {}
        }
        if c == separator && depth == 0 && !in_quote {
            parts.push(current.trim().to_string());
            current.clear();
        } else {
            current.push(c);
        }
    }
    parts.push(current.trim().to_string());
    parts
}

impl Expression {
    pub fn parse(text: &str) -> Option<Self> {
        let paths = split_top_level(text, '|')
            .iter()
            .map(|part| parse_path(part))
            .collect::<Option<Vec<_>>>()?;
        Some(Expression { paths })
    }

    /// Does any path of the expression apply to resources of this type?
    pub fn applies_to(&self, resource_type: &str) -> bool {
        self.paths.iter().any(|p| p.applies_to(resource_type))
    }

    /// Every node the expression selects in `resource` (of type `resource_type`).
    pub fn select<'a>(&self, resource_type: &str, resource: &'a Value) -> Vec<Node<'a>> {
        let mut nodes = Vec::new();
        for path in self.paths.iter().filter(|p| p.applies_to(resource_type)) {
            nodes.extend(path.select(resource));
        }
        nodes
    }
}

fn parse_path(text: &str) -> Option<Path> {
    let text = text.trim();
    // `(Observation.value as Quantity)` and `Observation.value as Quantity`
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    if let Some((path, type_name)) = inner.split_once(" as ") {
        let mut parsed = parse_path(path)?;
        parsed
            .steps
            .push(Step::OfType(type_name.trim().to_string()));
        return Some(parsed);
    }
    let mut segments = split_top_level(inner, '.').into_iter();
    let resource_type = segments.next()?;
    if !resource_type.chars().next()?.is_ascii_uppercase() {
        return None;
    }
    let steps = segments
        .map(|s| parse_step(&s))
        .collect::<Option<Vec<_>>>()?;
    Some(Path {
        resource_type,
        steps,
    })
}

fn parse_step(segment: &str) -> Option<Step> {
    if let Some(argument) = function_argument(segment, "where") {
        if let Some(target) = argument.strip_prefix("resolve() is ") {
            return Some(Step::ResolvesTo(target.trim().to_string()));
        }
        let (field, value) = argument.split_once('=')?;
        let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        return Some(Step::FieldEquals(
            field.trim().to_string(),
            value.to_string(),
        ));
    }
    if let Some(argument) =
        function_argument(segment, "as").or_else(|| function_argument(segment, "ofType"))
    {
        return Some(Step::OfType(argument.trim().to_string()));
    }
    let is_name = !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then(|| Step::Child(segment.to_string()))
}

fn function_argument<'a>(segment: &'a str, name: &str) -> Option<&'a str> {
    segment
        .strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

impl Path {
    /// Paths rooted at `Resource` or `DomainResource` apply to every type.
    fn applies_to(&self, resource_type: &str) -> bool {
        [resource_type, "Resource", "DomainResource"].contains(&self.resource_type.as_str())
    }

    fn select<'a>(&self, resource: &'a Value) -> Vec<Node<'a>> {
        let mut nodes = vec![Node {
            value: resource,
            type_hint: None,
        }];
        for step in &self.steps {
            nodes = nodes
                .into_iter()
                .flat_map(|node| apply(step, node))
                .collect();
        }
        nodes
    }
}

fn flatten<'a>(value: &'a Value, type_hint: Option<&'a str>) -> Vec<Node<'a>> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|value| Node { value, type_hint })
            .collect(),
        Value::Null => Vec::new(),
        value => vec![Node { value, type_hint }],
    }
}

fn apply<'a>(step: &Step, node: Node<'a>) -> Vec<Node<'a>> {
    match step {
        Step::Child(name) => {
            let Some(object) = node.value.as_object() else {
                return Vec::new();
            };
            if let Some(value) = object.get(name.as_str()) {
                return flatten(value, None);
            }
            // A choice element: `value` selects `valueQuantity`, with the type kept as a hint.
            object
                .iter()
                .filter_map(|(key, value)| {
                    let suffix = key.strip_prefix(name.as_str())?;
                    suffix
                        .starts_with(|c: char| c.is_ascii_uppercase())
                        .then_some((key, value))
                })
                .flat_map(|(key, value)| {
                    let hint = &key[name.len()..];
                    flatten(value, None).into_iter().map(move |n| Node {
                        type_hint: Some(hint),
                        ..n
                    })
                })
                .collect()
        }
        Step::OfType(type_name) => {
            let matches = node
                .type_hint
                .is_some_and(|hint| hint.eq_ignore_ascii_case(type_name));
            if matches { vec![node] } else { Vec::new() }
        }
        Step::ResolvesTo(target) => {
            let reference = node.value["reference"].as_str().unwrap_or_default();
            let target_type = reference_target(reference).map(|(t, _)| t);
            if target_type == Some(target.as_str()) {
                vec![node]
            } else {
                Vec::new()
            }
        }
        Step::FieldEquals(field, expected) => {
            if node.value[field.as_str()].as_str() == Some(expected.as_str()) {
                vec![node]
            } else {
                Vec::new()
            }
        }
    }
}

/// `(type, id)` of a literal reference: `Patient/123`, `Patient/123/_history/2`,
/// or an absolute URL ending in `Type/id`. Contained (`#x`) and `urn:` references have none.
pub fn reference_target(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let without_version = match reference.find("/_history/") {
        Some(index) => &reference[..index],
        None => reference,
    };
    let mut parts = without_version.rsplitn(3, '/');
    let id = parts.next()?;
    let resource_type = parts.next()?;
    let starts_upper = resource_type.chars().next()?.is_ascii_uppercase();
    (starts_upper && !id.is_empty()).then_some((resource_type, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_union_parts_of_the_given_type_only() {
        let expression = Expression::parse(
            "Observation.subject.where(resolve() is Patient) | MedicationAdministration.subject.where(resolve() is Patient)",
        )
        .unwrap();
        let observation = json!({"subject": {"reference": "Patient/p1"}});
        assert_eq!(expression.select("Observation", &observation).len(), 1);
        let group = json!({"subject": {"reference": "Group/g1"}});
        assert!(expression.select("Observation", &group).is_empty());
    }

    #[test]
    fn choice_elements_and_as_casts() {
        let expression = Expression::parse("(Observation.value as CodeableConcept)").unwrap();
        let concept = json!({"valueCodeableConcept": {"text": "x"}});
        let quantity = json!({"valueQuantity": {"value": 1}});
        assert_eq!(expression.select("Observation", &concept).len(), 1);
        assert!(expression.select("Observation", &quantity).is_empty());
    }

    #[test]
    fn where_field_equals_filters_objects() {
        let expression = Expression::parse("Patient.telecom.where(system='phone')").unwrap();
        let patient = json!({"telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]});
        let nodes = expression.select("Patient", &patient);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].value["value"], "1");
    }

    #[test]
    fn unsupported_functions_do_not_parse() {
        assert!(
            Expression::parse("Patient.deceased.exists() and Patient.deceased != false").is_none()
        );
    }

    #[test]
    fn reference_targets() {
        assert_eq!(reference_target("Patient/1"), Some(("Patient", "1")));
        assert_eq!(
            reference_target("http://x/fhir/Patient/1/_history/3"),
            Some(("Patient", "1"))
        );
        assert_eq!(reference_target("#contained"), None);
        assert_eq!(reference_target("urn:uuid:1"), None);
    }
}
