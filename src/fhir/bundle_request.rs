//! Batch and transaction request Bundles: entries parsed into the interactions they ask
//! for, the order a transaction processes them in, and references between entries
//! (`urn:uuid:` and other fullUrls) rewritten to the ids the server assigned.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::resource::parse_etag;
use super::{ResourceId, ResourceType, parse_version_id};
use crate::error::{ApiError, ApiResult};

/// `Bundle.type` of a request: `batch` entries succeed or fail alone, a `transaction`
/// succeeds or fails as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Batch,
    Transaction,
}

impl BundleKind {
    pub fn response_type(self) -> &'static str {
        match self {
            BundleKind::Batch => "batch-response",
            BundleKind::Transaction => "transaction-response",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(text: &str) -> Option<Method> {
        Some(match text {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// What `entry.request.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `Patient`: create, or a search without parameters.
    Type(ResourceType),
    /// `Patient/1`.
    Instance(ResourceType, ResourceId),
    /// `Patient/1/_history/2`.
    Version(ResourceType, ResourceId, i32),
    /// `Patient?identifier=x`: a search, or the criteria of a conditional update/delete.
    Criteria(ResourceType, String),
}

impl Target {
    pub fn resource_type(&self) -> &ResourceType {
        match self {
            Target::Type(t)
            | Target::Instance(t, _)
            | Target::Version(t, _, _)
            | Target::Criteria(t, _) => t,
        }
    }
}

/// One entry of a request Bundle, checked for shape.
#[derive(Debug, Clone)]
pub struct EntryRequest {
    /// Position in `Bundle.entry`.
    pub index: usize,
    pub method: Method,
    pub target: Target,
    /// `entry.request.url` as sent, for messages.
    pub url: String,
    pub full_url: Option<String>,
    /// The resource of a POST or PUT.
    pub resource: Option<Value>,
    /// The JSON Patch of a PATCH (from a Binary resource).
    pub patch: Option<json_patch::Patch>,
    pub if_none_exist: Option<String>,
    pub if_match: Option<i32>,
}

impl EntryRequest {
    /// `Bundle.entry[3] (PUT Patient/1)`: where an error message points.
    pub fn location(&self) -> String {
        entry_location(self.index, Some((self.method.as_str(), &self.url)))
    }

    /// Whether the infusion safety rules check this write: such writes run after the
    /// other writes of a transaction, so they see the weight and vitals sent with them.
    fn is_safety_checked(&self) -> bool {
        self.method != Method::Get
            && self.method != Method::Delete
            && self.target.resource_type().as_str() == "MedicationAdministration"
    }

    /// The R4 processing order of a transaction: DELETE, POST, PUT/PATCH, then GET.
    fn processing_rank(&self) -> u8 {
        let deferred = if self.is_safety_checked() { 2 } else { 0 };
        match self.method {
            Method::Delete => 0,
            Method::Post => 1 + deferred,
            Method::Put | Method::Patch => 2 + deferred,
            Method::Get => 5,
        }
    }
}

pub fn entry_location(index: usize, request: Option<(&str, &str)>) -> String {
    match request {
        Some((method, url)) => format!("Bundle.entry[{index}] ({method} {url})"),
        None => format!("Bundle.entry[{index}]"),
    }
}

/// A request Bundle: its kind and each entry, or why that entry cannot be processed.
pub struct BundleRequest {
    pub kind: BundleKind,
    pub entries: Vec<Result<EntryRequest, ApiError>>,
}

/// Reads a `batch` or `transaction` Bundle. Errors about the Bundle as a whole come back
/// as `Err`; errors of single entries are kept per entry (a batch answers them one by one).
pub fn parse(bundle: &Value, base_url: &str, max_entries: usize) -> ApiResult<BundleRequest> {
    if bundle["resourceType"] != "Bundle" {
        return Err(ApiError::bad_parameter(
            "resourceType",
            "POST to the base URL takes a Bundle of type batch or transaction",
        ));
    }
    let kind = match bundle["type"].as_str() {
        Some("batch") => BundleKind::Batch,
        Some("transaction") => BundleKind::Transaction,
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "Bundle.type",
                format!(
                    "Bundle.type is '{other}'; the base URL processes batch and transaction Bundles"
                ),
            ));
        }
        None => {
            return Err(ApiError::bad_parameter(
                "Bundle.type",
                "Bundle.type is required: batch or transaction",
            ));
        }
    };
    let entries = match &bundle["entry"] {
        Value::Null => &Vec::new(),
        Value::Array(entries) => entries,
        _ => {
            return Err(ApiError::bad_parameter(
                "Bundle.entry",
                "Bundle.entry must be an array",
            ));
        }
    };
    if entries.len() > max_entries {
        return Err(ApiError::bad_parameter(
            "Bundle.entry",
            format!(
                "The Bundle has {} entries; at most {max_entries} are processed in one request (MAX_BUNDLE_ENTRIES)",
                entries.len()
            ),
        ));
    }
    let entries = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| parse_entry(index, entry, base_url))
        .collect();
    Ok(BundleRequest { kind, entries })
}

fn parse_entry(index: usize, entry: &Value, base_url: &str) -> ApiResult<EntryRequest> {
    let at = |text: String| {
        ApiError::bad_parameter(
            &format!("Bundle.entry[{index}].request"),
            format!("{}: {text}", entry_location(index, None)),
        )
    };
    let request = &entry["request"];
    if !request.is_object() {
        return Err(at("entry.request (method and url) is required".into()));
    }
    let method_text = request["method"].as_str().unwrap_or_default();
    let method = Method::parse(method_text).ok_or_else(|| {
        at(format!(
            "request.method '{method_text}' is not one of GET, POST, PUT, PATCH, DELETE"
        ))
    })?;
    let url = request["url"]
        .as_str()
        .ok_or_else(|| at("request.url is required".into()))?;
    let target = parse_url(url, base_url).map_err(at)?;
    let resource = entry.get("resource").filter(|r| !r.is_null()).cloned();
    let full_url = entry["fullUrl"].as_str().map(str::to_string);
    let if_match = match request["ifMatch"].as_str() {
        Some(text) => Some(parse_etag(text).ok_or_else(|| {
            at(format!(
                "request.ifMatch '{text}' is not an ETag such as W/\"3\""
            ))
        })?),
        None => None,
    };
    let mut parsed = EntryRequest {
        index,
        method,
        target,
        url: url.to_string(),
        full_url,
        resource: None,
        patch: None,
        if_none_exist: request["ifNoneExist"].as_str().map(str::to_string),
        if_match,
    };
    check_method_and_target(&parsed).map_err(at)?;
    match method {
        Method::Post | Method::Put => {
            let resource = resource
                .filter(Value::is_object)
                .ok_or_else(|| at(format!("a {method_text} entry needs entry.resource")))?;
            parsed.resource = Some(resource);
        }
        Method::Patch => {
            parsed.patch = Some(json_patch_of(resource.as_ref()).map_err(at)?);
        }
        Method::Get | Method::Delete => {
            if resource.is_some() {
                return Err(at(format!("a {method_text} entry has no entry.resource")));
            }
        }
    }
    Ok(parsed)
}

/// Which targets each method accepts.
fn check_method_and_target(entry: &EntryRequest) -> Result<(), String> {
    let fits = matches!(
        (&entry.method, &entry.target),
        (Method::Get, _)
            | (Method::Post, Target::Type(_))
            | (
                Method::Put | Method::Patch | Method::Delete,
                Target::Instance(..) | Target::Criteria(..)
            )
    );
    if !fits {
        return Err(format!(
            "{} cannot be applied to '{}'",
            entry.method.as_str(),
            entry.url
        ));
    }
    if entry.method == Method::Patch && matches!(entry.target, Target::Criteria(..)) {
        return Err("conditional PATCH is not supported; name the resource (Type/id)".into());
    }
    if entry.if_none_exist.is_some() && entry.method != Method::Post {
        return Err("request.ifNoneExist applies to POST only".into());
    }
    Ok(())
}

/// `Patient`, `Patient/1`, `Patient/1/_history/2`, `Patient?x=y`, relative or under the
/// server's base URL.
pub fn parse_url(url: &str, base_url: &str) -> Result<Target, String> {
    let relative = url
        .strip_prefix(base_url)
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(url)
        .trim_start_matches('/');
    if relative.contains("://") {
        return Err(format!("request.url '{url}' is not on this server"));
    }
    let (path, query) = match relative.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (relative, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let resource_type = |name: &str| ResourceType::parse(name).map_err(|e| error_text(&e));
    let id = |text: &str| ResourceId::parse(text).map_err(|e| error_text(&e));
    let target = match (segments.as_slice(), query) {
        ([name], Some(query)) => Target::Criteria(resource_type(name)?, query.to_string()),
        ([name], None) => Target::Type(resource_type(name)?),
        ([name, instance], None) => Target::Instance(resource_type(name)?, id(instance)?),
        ([name, instance, "_history", version], None) => Target::Version(
            resource_type(name)?,
            id(instance)?,
            parse_version_id(version).map_err(|e| error_text(&e))?,
        ),
        _ => {
            return Err(format!(
                "request.url '{url}' is not Type, Type/id, Type/id/_history/version or Type?criteria"
            ));
        }
    };
    Ok(target)
}

fn error_text(error: &ApiError) -> String {
    match error {
        ApiError::BadRequest(text, _) => text.clone(),
        other => other.to_string(),
    }
}

/// The JSON Patch a PATCH entry carries as a Binary (`contentType`
/// application/json-patch+json, the patch base64-encoded in `data`).
fn json_patch_of(resource: Option<&Value>) -> Result<json_patch::Patch, String> {
    let Some(binary) = resource.filter(|r| r["resourceType"] == "Binary") else {
        return Err(
            "a PATCH entry carries its JSON Patch as a Binary resource (contentType application/json-patch+json)".into(),
        );
    };
    if binary["contentType"] != "application/json-patch+json" {
        return Err(
            "the PATCH entry's Binary.contentType must be application/json-patch+json".into(),
        );
    }
    let data = binary["data"].as_str().unwrap_or_default();
    let bytes = STANDARD
        .decode(data)
        .map_err(|_| "the PATCH entry's Binary.data is not base64".to_string())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the PATCH entry's Binary.data is not a JSON Patch document: {e}"))
}

/// The order in which a transaction processes its entries (positions in `entries`).
pub fn processing_order<'a>(entries: impl Iterator<Item = &'a EntryRequest>) -> Vec<usize> {
    let mut ranked: Vec<(u8, usize, usize)> = entries
        .enumerate()
        .map(|(position, entry)| (entry.processing_rank(), entry.index, position))
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .map(|(_, _, position)| position)
        .collect()
}

/// Rewrites every `reference` in `resource` that names another entry's fullUrl to that
/// entry's `Type/id`. A `urn:uuid:`/`urn:oid:` reference that names no entry is an error:
/// it could never resolve once stored.
pub fn rewrite_references(
    resource: &mut Value,
    full_urls: &HashMap<String, String>,
) -> Result<(), String> {
    match resource {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = value
                {
                    if let Some(local) = full_urls.get(reference.as_str()) {
                        *reference = local.clone();
                    } else if reference.starts_with("urn:uuid:")
                        || reference.starts_with("urn:oid:")
                    {
                        return Err(format!(
                            "the reference '{reference}' names no entry of this Bundle"
                        ));
                    }
                    continue;
                }
                rewrite_references(value, full_urls)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|item| rewrite_references(item, full_urls)),
        _ => Ok(()),
    }
}

/// References of the form `Type?criteria` (conditional references), each once.
pub fn conditional_references(resource: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_conditional_references(resource, &mut found);
    found.sort();
    found.dedup();
    found
}

fn collect_conditional_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match value {
                    Value::String(reference) if key == "reference" => {
                        if is_conditional_reference(reference) {
                            found.push(reference.clone());
                        }
                    }
                    _ => collect_conditional_references(value, found),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_conditional_references(item, found)),
        _ => {}
    }
}

fn is_conditional_reference(reference: &str) -> bool {
    reference.split_once('?').is_some_and(|(name, _)| {
        !name.contains('/') && name.starts_with(|c: char| c.is_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BASE: &str = "http://localhost:8080/fhir";

    fn entry(method: &str, url: &str) -> Value {
        json!({"request": {"method": method, "url": url}})
    }

    fn parsed(entries: Vec<Value>) -> Vec<Result<EntryRequest, ApiError>> {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        parse(&bundle, BASE, 100).unwrap().entries
    }

    #[test]
    fn urls_name_types_instances_versions_and_criteria() {
        assert_eq!(
            parse_url("Patient", BASE).unwrap(),
            Target::Type(ResourceType::parse("Patient").unwrap())
        );
        assert!(
            matches!(parse_url("/Patient/p1", BASE).unwrap(), Target::Instance(_, id) if id.as_str() == "p1")
        );
        assert!(matches!(
            parse_url(&format!("{BASE}/Patient/p1/_history/3"), BASE).unwrap(),
            Target::Version(_, _, 3)
        ));
        assert!(
            matches!(parse_url("Patient?identifier=a|b", BASE).unwrap(), Target::Criteria(_, q) if q == "identifier=a|b")
        );
        assert!(parse_url("http://elsewhere.example/fhir/Patient/1", BASE).is_err());
        assert!(parse_url("Patient/1/extra", BASE).is_err());
        assert!(parse_url("Spaceship/1", BASE).is_err());
    }

    #[test]
    fn entries_are_checked_one_by_one() {
        let entries = parsed(vec![
            json!({"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}}),
            entry("POST", "Patient"),
            entry("POST", "Patient/1"),
            entry("FETCH", "Patient"),
            json!({"resource": {"resourceType": "Patient"}}),
            json!({"request": {"method": "DELETE", "url": "Patient/1", "ifMatch": "W/\"4\""}}),
            json!({"request": {"method": "DELETE", "url": "Patient/1", "ifMatch": "latest"}}),
        ]);
        assert!(entries[0].is_ok());
        let message = |i: usize| match &entries[i] {
            Err(ApiError::BadRequest(text, _)) => text.clone(),
            other => panic!("entry {i}: {other:?}"),
        };
        assert_eq!(
            message(1),
            "Bundle.entry[1]: a POST entry needs entry.resource"
        );
        assert_eq!(
            message(2),
            "Bundle.entry[2]: POST cannot be applied to 'Patient/1'"
        );
        assert!(message(3).contains("'FETCH' is not one of"));
        assert!(message(4).contains("entry.request (method and url) is required"));
        assert_eq!(entries[5].as_ref().unwrap().if_match, Some(4));
        assert!(message(6).contains("ifMatch 'latest'"));
    }

    #[test]
    fn bundle_level_errors() {
        let not_bundle = json!({"resourceType": "Patient"});
        assert!(parse(&not_bundle, BASE, 10).is_err());
        let collection = json!({"resourceType": "Bundle", "type": "collection"});
        assert!(parse(&collection, BASE, 10).is_err());
        let many = json!({"resourceType": "Bundle", "type": "batch", "entry": vec![entry("GET", "Patient"); 11]});
        assert!(parse(&many, BASE, 10).is_err());
        let empty = json!({"resourceType": "Bundle", "type": "batch"});
        assert!(parse(&empty, BASE, 10).unwrap().entries.is_empty());
    }

    #[test]
    fn transactions_delete_then_create_then_update_then_read() {
        let post = |t: &str| json!({"request": {"method": "POST", "url": t}, "resource": {"resourceType": t}});
        let entries: Vec<EntryRequest> = parsed(vec![
            entry("GET", "Patient/1"),
            json!({"request": {"method": "PUT", "url": "MedicationAdministration/m"}, "resource": {"resourceType": "MedicationAdministration"}}),
            post("MedicationAdministration"),
            json!({"request": {"method": "PUT", "url": "Patient/2"}, "resource": {"resourceType": "Patient"}}),
            post("Observation"),
            entry("DELETE", "Observation/9"),
        ])
        .into_iter()
        .map(Result::unwrap)
        .collect();
        assert_eq!(processing_order(entries.iter()), [5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn patch_entries_carry_a_binary_json_patch() {
        let patch = STANDARD.encode(br#"[{"op": "replace", "path": "/active", "value": false}]"#);
        let entries = parsed(vec![
            json!({"request": {"method": "PATCH", "url": "Patient/1"}, "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch}}),
            json!({"request": {"method": "PATCH", "url": "Patient/1"}, "resource": {"resourceType": "Patient"}}),
        ]);
        assert_eq!(
            entries[0].as_ref().unwrap().patch.as_ref().unwrap().0.len(),
            1
        );
        assert!(entries[1].is_err());
    }

    #[test]
    fn references_to_entries_are_rewritten() {
        let urls = HashMap::from([
            ("urn:uuid:1".to_string(), "Patient/abc".to_string()),
            (
                format!("{BASE}/Practitioner/x"),
                "Practitioner/x".to_string(),
            ),
        ]);
        let mut resource = json!({
            "subject": {"reference": "urn:uuid:1"},
            "performer": [{"reference": format!("{BASE}/Practitioner/x")}, {"reference": "Organization/o"}]
        });
        rewrite_references(&mut resource, &urls).unwrap();
        assert_eq!(resource["subject"]["reference"], "Patient/abc");
        assert_eq!(resource["performer"][0]["reference"], "Practitioner/x");
        assert_eq!(resource["performer"][1]["reference"], "Organization/o");
        let mut dangling = json!({"subject": {"reference": "urn:uuid:2"}});
        assert!(rewrite_references(&mut dangling, &urls).is_err());
    }

    #[test]
    fn conditional_references_are_found() {
        let resource = json!({
            "subject": {"reference": "Patient?identifier=http://clinic.example/mrn|1"},
            "basedOn": [{"reference": "MedicationRequest/1"}, {"reference": "Patient?identifier=http://clinic.example/mrn|1"}]
        });
        assert_eq!(
            conditional_references(&resource),
            ["Patient?identifier=http://clinic.example/mrn|1"]
        );
    }
}
