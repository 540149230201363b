//! Bundle builders: searchset and history, with paging links.

use serde_json::{Value, json};

use super::resource::{etag, instant};
use crate::store::resources::Version;

/// A link of a Bundle (`self`, `next`, `previous`).
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

fn links_json(links: &[Link]) -> Value {
    Value::Array(
        links
            .iter()
            .map(|link| json!({"relation": link.relation, "url": link.url}))
            .collect(),
    )
}

/// How an entry came into a searchset (`entry.search.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    Match,
    Include,
    Outcome,
}

impl SearchMode {
    fn as_str(self) -> &'static str {
        match self {
            SearchMode::Match => "match",
            SearchMode::Include => "include",
            SearchMode::Outcome => "outcome",
        }
    }
}

/// A searchset entry: the resource under its absolute `fullUrl` (outcomes have none).
/// Built key by key: `json!` would copy the resource rather than move it.
pub fn search_entry(base_url: &str, resource: Value, mode: SearchMode) -> Value {
    let mut entry = serde_json::Map::new();
    if mode != SearchMode::Outcome {
        let full_url = format!(
            "{base_url}/{}/{}",
            resource["resourceType"].as_str().unwrap_or_default(),
            resource["id"].as_str().unwrap_or_default()
        );
        entry.insert("fullUrl".into(), Value::String(full_url));
    }
    entry.insert("resource".into(), resource);
    entry.insert("search".into(), json!({"mode": mode.as_str()}));
    Value::Object(entry)
}

/// A searchset Bundle of matches (`entry.search.mode` = match).
pub fn searchset(
    base_url: &str,
    resources: Vec<Value>,
    total: Option<i64>,
    links: &[Link],
) -> Value {
    let entries = resources
        .into_iter()
        .map(|resource| search_entry(base_url, resource, SearchMode::Match))
        .collect();
    searchset_of(entries, total, links)
}

/// A searchset Bundle of entries made with `search_entry`.
pub fn searchset_of(entries: Vec<Value>, total: Option<i64>, links: &[Link]) -> Value {
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant(chrono::Utc::now())},
        "type": "searchset",
    });
    if let Some(total) = total {
        bundle["total"] = json!(total);
    }
    bundle["link"] = links_json(links);
    bundle["entry"] = Value::Array(entries);
    bundle
}

/// A history Bundle: newest first, deletions as entries without a resource.
pub fn history(base_url: &str, versions: Vec<Version>, total: i64, links: &[Link]) -> Value {
    let entries: Vec<Value> = versions
        .into_iter()
        .map(|version| {
            let url = format!("{}/{}", version.resource_type, version.id);
            let status = match (version.method.as_str(), version.version_id) {
                ("DELETE", _) => "204",
                (_, 1) => "201",
                _ => "200",
            };
            let mut entry = json!({
                "fullUrl": format!("{base_url}/{url}"),
                "request": {"method": version.method, "url": if version.method == "POST" { version.resource_type.clone() } else { url.clone() }},
                "response": {
                    "status": status,
                    "etag": etag(version.version_id),
                    "lastModified": instant(version.last_updated),
                    "location": format!("{url}/_history/{}", version.version_id),
                },
            });
            if let Some(content) = version.content {
                entry["resource"] = content;
            }
            entry
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant(chrono::Utc::now())},
        "type": "history",
        "total": total,
        "link": links_json(links),
    });
    // Assigned, not written in `json!`, which would copy every entry.
    bundle["entry"] = Value::Array(entries);
    bundle
}
