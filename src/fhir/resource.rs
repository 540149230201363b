//! Server-owned parts of a resource (`id`, `meta.versionId`, `meta.lastUpdated`) and the
//! FHIR text forms of instants and versions.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A FHIR `instant` in UTC with millisecond precision.
pub fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The weak ETag of a version: `W/"3"`.
pub fn etag(version_id: i32) -> String {
    format!("W/\"{version_id}\"")
}

/// The version an ETag names (`W/"3"` or `"3"`), if it is one.
pub fn parse_etag(text: &str) -> Option<i32> {
    let trimmed = text.trim();
    let unweak = trimmed.strip_prefix("W/").unwrap_or(trimmed);
    unweak.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// Sets the server-owned fields, keeping everything else the client sent in `meta`
/// (profile, tag, security, extensions) untouched.
pub fn stamp_meta(resource: &mut Value, id: &str, version_id: i32, last_updated: DateTime<Utc>) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    object.insert("id".into(), Value::String(id.to_string()));
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".into(), Value::String(version_id.to_string()));
        meta.insert("lastUpdated".into(), Value::String(instant(last_updated)));
    }
}

/// The `resourceType` of a JSON body, if it has one.
pub fn resource_type_of(resource: &Value) -> Option<&str> {
    resource.get("resourceType").and_then(Value::as_str)
}

/// The (system, code) pairs of a CodeableConcept's codings (a missing system is "").
pub fn codings(concept: &Value) -> impl Iterator<Item = (&str, &str)> {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|coding| {
            Some((
                coding["system"].as_str().unwrap_or_default(),
                coding["code"].as_str()?,
            ))
        })
}

/// The body's `id`, if it has one.
pub fn id_of(resource: &Value) -> Option<&str> {
    resource.get("id").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn stamping_keeps_client_meta() {
        let mut patient =
            json!({"resourceType": "Patient", "meta": {"tag": [{"code": "x"}], "versionId": "99"}});
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        stamp_meta(&mut patient, "p1", 2, at);
        assert_eq!(
            patient,
            json!({"resourceType": "Patient", "id": "p1",
                   "meta": {"tag": [{"code": "x"}], "versionId": "2", "lastUpdated": "2026-11-22T08:00:00.000Z"}})
        );
    }
}
