//! Search-index extraction: for every token and reference SearchParameter of a type whose
//! expression is in the supported FHIRPath subset, the values a resource holds.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use super::definitions::registry;
use super::fhirpath::{Expression, Node, reference_target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Token,
    Reference,
}

/// A search parameter backed by the index tables.
#[derive(Debug, Clone)]
pub struct IndexedParameter {
    pub code: String,
    pub kind: IndexKind,
    expression: Expression,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenEntry {
    pub param: String,
    pub system: Option<String>,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEntry {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct IndexEntries {
    pub tokens: Vec<TokenEntry>,
    pub references: Vec<ReferenceEntry>,
}

static INDEXED: LazyLock<HashMap<String, Vec<IndexedParameter>>> = LazyLock::new(|| {
    let registry = registry();
    registry
        .resource_types()
        .iter()
        .map(|resource_type| {
            let parameters = registry
                .search_parameters(resource_type)
                .iter()
                .filter_map(|parameter| {
                    let kind = match parameter.param_type.as_str() {
                        "token" => IndexKind::Token,
                        "reference" => IndexKind::Reference,
                        _ => return None,
                    };
                    let expression = Expression::parse(parameter.expression.as_deref()?)?;
                    expression
                        .paths
                        .iter()
                        .any(|p| &p.resource_type == resource_type)
                        .then(|| IndexedParameter {
                            code: parameter.code.clone(),
                            kind,
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

/// The index entries of one resource.
pub fn extract(resource_type: &str, resource: &Value) -> IndexEntries {
    let mut entries = IndexEntries::default();
    for parameter in indexed_parameters(resource_type) {
        for node in parameter.expression.select(resource_type, resource) {
            match parameter.kind {
                IndexKind::Token => entries.tokens.extend(tokens(&parameter.code, node)),
                IndexKind::Reference => entries.references.extend(reference(&parameter.code, node)),
            }
        }
    }
    dedup(&mut entries.tokens);
    dedup(&mut entries.references);
    entries
}

fn token(param: &str, system: Option<&Value>, code: Option<&Value>) -> Option<TokenEntry> {
    Some(TokenEntry {
        param: param.to_string(),
        system: system.and_then(Value::as_str).map(str::to_string),
        code: code?.as_str()?.to_string(),
    })
}

/// Token values by the shape of the element: CodeableConcept, Coding, Identifier,
/// ContactPoint (value only), code/string, boolean.
fn tokens(param: &str, node: Node<'_>) -> Vec<TokenEntry> {
    let value = node.value;
    match value {
        Value::String(code) => vec![TokenEntry {
            param: param.to_string(),
            system: None,
            code: code.clone(),
        }],
        Value::Bool(flag) => vec![TokenEntry {
            param: param.to_string(),
            system: None,
            code: flag.to_string(),
        }],
        Value::Object(object) => {
            if let Some(codings) = object.get("coding").and_then(Value::as_array) {
                return codings
                    .iter()
                    .filter_map(|coding| token(param, coding.get("system"), coding.get("code")))
                    .collect();
            }
            if object.contains_key("code") {
                return token(param, object.get("system"), object.get("code"))
                    .into_iter()
                    .collect();
            }
            let system = object.get("system").and_then(Value::as_str);
            // ContactPoint.system is a short code (phone, email), Identifier.system a URI.
            let is_contact_point = system.is_some_and(|s| !s.contains(':'));
            let system = if is_contact_point {
                None
            } else {
                object.get("system")
            };
            token(param, system, object.get("value"))
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    }
}

fn reference(param: &str, node: Node<'_>) -> Option<ReferenceEntry> {
    let (target_type, target_id) = reference_target(node.value["reference"].as_str()?)?;
    Some(ReferenceEntry {
        param: param.to_string(),
        target_type: Some(target_type.to_string()),
        target_id: target_id.to_string(),
    })
}

/// Drops repeated entries (a code in several codings, a reference in two paths), keeping order.
fn dedup<T: PartialEq>(items: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    *items = kept;
}
