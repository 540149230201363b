//! `_summary` and `_elements`: the views of a resource a search may ask for. A reduced
//! resource carries the SUBSETTED tag, as R4 requires.

use serde_json::{Map, Value, json};

use super::definitions::registry;
use super::search::Summary;

const SUBSETTED: &str = "SUBSETTED";

/// The elements every view keeps.
const ALWAYS: &[&str] = &["resourceType", "id", "meta"];

pub fn apply(resource: Value, summary: Summary, elements: &[String]) -> Value {
    let Value::Object(object) = resource else {
        return resource;
    };
    let keep = |key: &str| -> bool {
        if ALWAYS.contains(&key) {
            return true;
        }
        match summary {
            Summary::True => is_summary_element(&object, key),
            Summary::Text => key == "text" || is_mandatory(&object, key),
            Summary::Data => key != "text",
            Summary::Count | Summary::False => {
                elements.is_empty()
                    || elements.iter().any(|e| e == key)
                    || is_mandatory(&object, key)
            }
        }
    };
    let reduced: Map<String, Value> = object
        .iter()
        .filter(|(key, _)| keep(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if reduced.len() == object.len() {
        return Value::Object(object);
    }
    let mut reduced = Value::Object(reduced);
    mark_subsetted(&mut reduced);
    reduced
}

fn resource_element<'a>(
    object: &Map<String, Value>,
    key: &str,
) -> Option<&'a super::definitions::ElementDefinition> {
    let resource_type = object.get("resourceType")?.as_str()?;
    let definition = registry().structure(resource_type)?;
    definition.children(resource_type).find(|element| {
        element.name == key
            || (element.is_choice
                && key
                    .strip_prefix(element.name.as_str())
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())))
    })
}

fn is_summary_element(object: &Map<String, Value>, key: &str) -> bool {
    resource_element(object, key).is_some_and(|element| element.is_summary || element.min > 0)
}

fn is_mandatory(object: &Map<String, Value>, key: &str) -> bool {
    resource_element(object, key).is_some_and(|element| element.min > 0)
}

fn mark_subsetted(resource: &mut Value) {
    let tag = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": SUBSETTED, "display": "Resource subsetted"});
    let meta = resource
        .as_object_mut()
        .expect("object")
        .entry("meta")
        .or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut()
            && !tags.iter().any(|t| t["code"] == SUBSETTED)
        {
            tags.push(tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation() -> Value {
        json!({"resourceType": "Observation", "id": "o1", "meta": {"versionId": "1"}, "status": "final",
               "code": {"text": "x"}, "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
               "note": [{"text": "n"}], "valueInteger": 3})
    }

    #[test]
    fn summary_true_keeps_summary_elements_and_tags() {
        let reduced = apply(observation(), Summary::True, &[]);
        assert!(reduced.get("note").is_none());
        assert!(reduced.get("text").is_none());
        assert_eq!(reduced["valueInteger"], 3);
        assert_eq!(reduced["meta"]["tag"][0]["code"], SUBSETTED);
    }

    #[test]
    fn elements_keep_only_what_is_named_and_the_mandatory() {
        let reduced = apply(observation(), Summary::False, &["note".to_string()]);
        let mut keys: Vec<&String> = reduced.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["code", "id", "meta", "note", "resourceType", "status"]
        );
    }

    #[test]
    fn data_drops_text_and_false_keeps_all() {
        assert!(
            apply(observation(), Summary::Data, &[])
                .get("text")
                .is_none()
        );
        assert_eq!(apply(observation(), Summary::False, &[]), observation());
    }
}
