//! The CapabilityStatement, generated from the registry and the interactions the route table
//! serves, so it can never list something the server does not do.

use serde_json::{Value, json};

use crate::subscriptions::topics::TOPICS;

use super::FHIR_VERSION;
use super::definitions::registry;
use super::search_index::{IndexKind, indexed_parameters};

/// The interactions served for every resource type (see `routes::configure`).
pub const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// The system-level interactions served.
pub const SYSTEM_INTERACTIONS: &[&str] = &["transaction", "batch", "history-system"];

pub fn capability_statement(base_url: &str, software_version: &str) -> Value {
    let registry = registry();
    let resources: Vec<Value> = registry
        .resource_types()
        .iter()
        .map(|resource_type| {
            let mut search_params = vec![
                json!({"name": "_id", "type": "token", "documentation": "Logical id; comma for OR"}),
                json!({"name": "_lastUpdated", "type": "date", "documentation": "When last changed; prefixes eq ne lt le gt ge sa eb ap"}),
            ];
            for parameter in indexed_parameters(resource_type) {
                let definition = registry.search_parameter(resource_type, &parameter.code);
                search_params.push(json!({
                    "name": parameter.code,
                    "type": parameter.kind.name(),
                    "documentation": definition.map(|d| d.description.lines().next().unwrap_or_default().to_string()).unwrap_or_default(),
                }));
            }
            let search_include: Vec<String> = indexed_parameters(resource_type)
                .iter()
                .filter(|p| p.kind == IndexKind::Reference)
                .map(|p| format!("{resource_type}:{}", p.code))
                .collect();
            let search_rev_include: Vec<String> = registry
                .resource_types()
                .iter()
                .flat_map(|source| {
                    indexed_parameters(source)
                        .iter()
                        .filter(|p| {
                            p.kind == IndexKind::Reference
                                && p.targets.iter().any(|t| t == resource_type)
                        })
                        .map(move |p| format!("{source}:{}", p.code))
                })
                .collect();
            let mut resource = json!({
                "type": resource_type,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{resource_type}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": search_include,
                "searchRevInclude": search_rev_include,
                "searchParam": search_params,
            });
            if resource_type == "Subscription" {
                describe_subscriptions(&mut resource);
            }
            if resource_type == "Patient" {
                let mut operations = vec![
                    json!({"name": "medical-necessity", "definition": MEDICAL_NECESSITY_OPERATION}),
                    json!({"name": "everything", "definition": PATIENT_EVERYTHING}),
                ];
                operations.extend(bulk_export_operation(resource_type));
                resource["operation"] = json!(operations);
            } else if let Some(operation) = bulk_export_operation(resource_type) {
                resource["operation"] = json!([operation]);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "instantiates": [BACKPORT_SERVER, BULK_DATA_SERVER],
        "status": "active",
        "date": "2026-11-22",
        "publisher": "ketamine-fhir",
        "kind": "instance",
        "software": {"name": "ketamine-fhir", "version": software_version},
        "implementation": {"description": "FHIR R4 server for ketamine-infusion pain clinics", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": registry.source,
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "description": "Bearer JWT (ES256) with SMART v2 scopes such as system/Patient.cruds or user/*.rs; v1 .read/.write accepted."
            },
            "resource": resources,
            "interaction": SYSTEM_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
            "operation": [{"name": "export", "definition": format!("{BULK_DATA}/OperationDefinition/export")}],
        }],
    })
}

/// `Patient/{id}/$medical-necessity` (routes::prior_auth), the clinic's own operation.
pub const MEDICAL_NECESSITY_OPERATION: &str =
    "https://ketamine-fhir.example.org/fhir/OperationDefinition/Patient-medical-necessity";

/// FHIR Bulk Data Access: the server CapabilityStatement this one follows, and the
/// `$export` operations served (system level above, Patient and Group level here).
const BULK_DATA: &str = "http://hl7.org/fhir/uv/bulkdata";
const BULK_DATA_SERVER: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

fn bulk_export_operation(resource_type: &str) -> Option<serde_json::Value> {
    let definition = match resource_type {
        "Patient" => "patient-export",
        "Group" => "group-export",
        _ => return None,
    };
    Some(
        json!({"name": "export", "definition": format!("{BULK_DATA}/OperationDefinition/{definition}")}),
    )
}

/// `Patient/{id}/$everything` (served by `routes::everything`).
const PATIENT_EVERYTHING: &str = "http://hl7.org/fhir/OperationDefinition/Patient-everything";

/// The Subscriptions R5 Backport server CapabilityStatement this one follows.
const BACKPORT_SERVER: &str = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4";
const TOPIC_CANONICAL: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical";

/// The topics served (as the backport's extension) and the Subscription operations.
fn describe_subscriptions(resource: &mut Value) {
    resource["extension"] = TOPICS
        .iter()
        .map(|topic| json!({"url": TOPIC_CANONICAL, "valueCanonical": topic.url}))
        .collect();
    resource["supportedProfile"] = json!([
        "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
    ]);
    resource["operation"] = json!([
        {"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"},
        {"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"}
    ]);
}
