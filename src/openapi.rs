//! The OpenAPI document: paths come from the handlers' `#[utoipa::path]` annotations, the
//! resource schemas from the same StructureDefinitions that drive validation, and the
//! examples from the demo clinic. Swagger UI is served at /docs.

use std::borrow::Cow;
use std::collections::BTreeSet;

use actix_web::web;
use serde_json::{Value, json};
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::fhir::definitions::{ElementDefinition, StructureDefinition, registry};
use crate::routes;

pub const BEARER: &str = "bearer_jwt";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ketamine-fhir",
        description = "FHIR R4 server for ketamine-infusion pain clinics. Authorize with a Bearer token \
                       (`ketamine-fhir token --subject me --scope 'system/*.cruds'`; `./scripts/run` prints one).",
    ),
    paths(
        routes::system::metadata,
        routes::audit::search,
        routes::audit::read,
        routes::bundle::process,
        routes::crud::create,
        routes::search::search_get,
        routes::search::search_post,
        routes::crud::read,
        routes::crud::update,
        routes::crud::patch,
        routes::crud::delete,
        routes::conditional::update,
        routes::conditional::delete,
        routes::crud::vread,
        routes::history::instance_history,
        routes::history::type_history,
        routes::history::system_history,
        routes::outcomes::patient_outcomes,
        routes::outcomes::clinic_outcomes,
        routes::report::patient_report,
        routes::operations::validate,
        routes::operations::treatment_status,
        routes::prior_auth::medical_necessity,
        routes::prior_auth::medical_necessity_post,
        routes::everything::everything_get,
        routes::everything::everything_post,
        routes::subscriptions::status,
        routes::subscriptions::events,
        routes::export::system_export,
        routes::export::patient_export,
        routes::export::group_export,
        routes::export::export_status,
        routes::export::cancel_export,
        routes::export::export_file,
        routes::system::healthz,
        routes::system::readyz,
        routes::system::metrics,
    ),
    components(schemas(ResourceTypeName)),
    modifiers(&ResourceSchemas, &Security, &ErrorResponses),
    tags(
        (name = "FHIR resources", description = "Create, read, update, patch, delete and version history"),
        (name = "FHIR search", description = "Search by type"),
        (name = "FHIR server", description = "CapabilityStatement and system-level history"),
        (name = "FHIR operations", description = "Clinic operations: $validate with the infusion safety rules, treatment status, outcomes"),
        (name = "Subscriptions", description = "Webhook subscriptions (R4 with the Subscriptions R5 Backport): status and past events"),
        (name = "Bulk Data", description = "FHIR Bulk Data Access v2: $export kick-off, status polling, NDJSON output files"),
        (name = "Operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed in `openapi/openapi.json`.
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

/// Swagger UI at /docs and the document at /openapi.json; `document` is built once at
/// start-up and shared by the workers.
pub fn configure(document: utoipa::openapi::OpenApi) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document.clone()));
    }
}

fn component_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

/// Declares a schema type whose body is a reference-free placeholder; the real schemas are
/// added as components by `ResourceSchemas`.
macro_rules! named_schema {
    ($type:ident, $name:literal, $schema:expr) => {
        pub struct $type;
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }
        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named_schema!(AnyResource, "Resource", any_resource_schema());
named_schema!(ResourceTypeName, "ResourceType", resource_type_schema());
named_schema!(
    OperationOutcome,
    "OperationOutcome",
    operation_outcome_schema()
);
named_schema!(Bundle, "Bundle", bundle_schema());
named_schema!(ExportManifest, "BulkDataManifest", export_manifest_schema());
named_schema!(JsonPatch, "JsonPatch", json_patch_schema());
named_schema!(Parameters, "Parameters", parameters_schema());
named_schema!(
    CapabilityStatement,
    "CapabilityStatement",
    capability_schema()
);

/// One of the resource types this server serves.
fn any_resource_schema() -> RefOr<Schema> {
    let mut one_of =
        OneOfBuilder::new().description(Some("A FHIR R4 resource of a supported type"));
    for resource_type in registry().resource_types() {
        one_of = one_of.item(component_ref(resource_type));
    }
    one_of.into()
}

fn resource_type_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(registry().resource_types().iter().cloned()))
        .description(Some(
            "A resource type this server supports (see /fhir/metadata)",
        ))
        .into()
}

fn operation_outcome_schema() -> RefOr<Schema> {
    let issue = ObjectBuilder::new()
        .property(
            "severity",
            string_enum(&["fatal", "error", "warning", "information"]),
        )
        .required("severity")
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("R4 issue-type code")),
        )
        .required("code")
        .property(
            "diagnostics",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .property(
            "expression",
            ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
        );
    ObjectBuilder::new()
        .property("resourceType", string_enum(&["OperationOutcome"]))
        .required("resourceType")
        .property("issue", ArrayBuilder::new().items(issue).min_items(Some(1)))
        .required("issue")
        .description(Some("Every error response: what went wrong, where (FHIRPath expression) and how bad"))
        .examples([json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "code-invalid",
                       "diagnostics": "Patient.gender has a required binding to http://hl7.org/fhir/ValueSet/administrative-gender; 'mail' is not in it (allowed: female, male, other, unknown)",
                       "expression": ["Patient.gender"]}]
        })])
        .into()
}

fn bundle_schema() -> RefOr<Schema> {
    let entry = ObjectBuilder::new()
        .property("fullUrl", ObjectBuilder::new().schema_type(Type::String))
        .property(
            "resource",
            OneOfBuilder::new()
                .item(component_ref("Resource"))
                .item(component_ref("OperationOutcome"))
                .description(Some(
                    "A resource, or (search mode `outcome`) an OperationOutcome about the search",
                )),
        )
        .property(
            "search",
            ObjectBuilder::new().property("mode", string_enum(&["match", "include", "outcome"])),
        )
        .property(
            "request",
            ObjectBuilder::new()
                .property("method", ObjectBuilder::new().schema_type(Type::String))
                .property("url", ObjectBuilder::new().schema_type(Type::String)),
        )
        .property(
            "response",
            ObjectBuilder::new()
                .property("status", ObjectBuilder::new().schema_type(Type::String))
                .property("etag", ObjectBuilder::new().schema_type(Type::String))
                .property("outcome", component_ref("OperationOutcome")),
        );
    let link = ObjectBuilder::new()
        .property("relation", ObjectBuilder::new().schema_type(Type::String))
        .property("url", ObjectBuilder::new().schema_type(Type::String));
    ObjectBuilder::new()
        .property("resourceType", string_enum(&["Bundle"]))
        .required("resourceType")
        .property(
            "type",
            string_enum(&["searchset", "history", "batch-response", "transaction-response"]),
        )
        .required("type")
        .property("total", ObjectBuilder::new().schema_type(Type::Integer))
        .property("link", ArrayBuilder::new().items(link))
        .property("entry", ArrayBuilder::new().items(entry))
        .description(Some(
            "A searchset or history Bundle (follow the `next` link for the next page), or the response to a batch or transaction",
        ))
        .into()
}

fn export_manifest_schema() -> RefOr<Schema> {
    let file = || {
        ObjectBuilder::new()
            .property("type", ObjectBuilder::new().schema_type(Type::String))
            .property("url", ObjectBuilder::new().schema_type(Type::String))
            .property("count", ObjectBuilder::new().schema_type(Type::Integer))
    };
    ObjectBuilder::new()
        .property(
            "transactionTime",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .required("transactionTime")
        .property("request", ObjectBuilder::new().schema_type(Type::String))
        .required("request")
        .property(
            "requiresAccessToken",
            ObjectBuilder::new().schema_type(Type::Boolean),
        )
        .required("requiresAccessToken")
        .property("output", ArrayBuilder::new().items(file()))
        .required("output")
        .property("error", ArrayBuilder::new().items(file()))
        .required("error")
        .description(Some(
            "The files of a completed export: one or more NDJSON files per resource type; download each with the same bearer token",
        ))
        .examples([json!({
            "transactionTime": "2026-12-03T09:00:00.000Z",
            "request": "https://clinic.example/fhir/$export?_type=Patient,Observation",
            "requiresAccessToken": true,
            "output": [
                {"type": "Patient", "url": "https://clinic.example/fhir/bulk-export/0b0e6a8e-2f1c-4a52-9f1e-3d0c2b1a9e77/1.ndjson", "count": 50000},
                {"type": "Patient", "url": "https://clinic.example/fhir/bulk-export/0b0e6a8e-2f1c-4a52-9f1e-3d0c2b1a9e77/2.ndjson", "count": 1200},
                {"type": "Observation", "url": "https://clinic.example/fhir/bulk-export/0b0e6a8e-2f1c-4a52-9f1e-3d0c2b1a9e77/3.ndjson", "count": 48211}
            ],
            "error": []
        })])
        .into()
}

fn json_patch_schema() -> RefOr<Schema> {
    let operation = ObjectBuilder::new()
        .property(
            "op",
            string_enum(&["add", "remove", "replace", "move", "copy", "test"]),
        )
        .required("op")
        .property("path", ObjectBuilder::new().schema_type(Type::String))
        .required("path")
        .property("value", Schema::Object(Default::default()))
        .property("from", ObjectBuilder::new().schema_type(Type::String));
    ArrayBuilder::new()
        .items(operation)
        .description(Some("RFC 6902 JSON Patch"))
        .examples([json!([{"op": "replace", "path": "/status", "value": "completed"}])])
        .into()
}

/// The answer of an operation as named parts, each with one `value[x]`.
fn parameters_schema() -> RefOr<Schema> {
    let parameter = ObjectBuilder::new()
        .property("name", ObjectBuilder::new().schema_type(Type::String))
        .required("name")
        .description(Some(
            "A part: its name and one value[x] (or a resource, or parts)",
        ));
    ObjectBuilder::new()
        .property("resourceType", string_enum(&["Parameters"]))
        .required("resourceType")
        .property("parameter", ArrayBuilder::new().items(parameter))
        .description(Some("A FHIR Parameters resource"))
        .into()
}

fn capability_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("resourceType", string_enum(&["CapabilityStatement"]))
        .property(
            "fhirVersion",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .property(
            "rest",
            ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)),
        )
        .description(Some(
            "What this server supports, generated from its registry",
        ))
        .into()
}

fn string_enum(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// Adds a component schema for each resource type and every data type they use, built from
/// the StructureDefinitions, with clinic examples from the demo data.
struct ResourceSchemas;

impl Modify for ResourceSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut pending: Vec<String> = Vec::new();
        let mut done = BTreeSet::new();
        for resource_type in registry().resource_types() {
            let Some(definition) = registry().structure(resource_type) else {
                continue;
            };
            let mut schema = structure_schema(definition, &definition.type_name, &mut pending);
            schema = schema.examples(resource_examples(resource_type));
            components
                .schemas
                .insert(resource_type.clone(), schema.into());
        }
        while let Some(name) = pending.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            // A data type, or a backbone element path named by a contentReference.
            let owner = name.split('.').next().unwrap_or(&name);
            let Some(definition) = registry().structure(owner) else {
                continue;
            };
            let root = match name.contains('.') {
                true => name.clone(),
                false => definition
                    .root()
                    .map(|r| r.path.clone())
                    .unwrap_or_else(|| name.clone()),
            };
            let schema = structure_schema(definition, &root, &mut pending);
            components
                .schemas
                .insert(component_name(&name), schema.into());
        }
        add_request_examples(openapi);
    }
}

/// An object schema of the children of `path`; complex types become `$ref`s (queued in
/// `pending`), backbone elements inline objects.
fn structure_schema(
    definition: &StructureDefinition,
    path: &str,
    pending: &mut Vec<String>,
) -> ObjectBuilder {
    let mut object = ObjectBuilder::new().schema_type(Type::Object);
    if !path.contains('.') && definition.kind == "resource" {
        object = object
            .property(
                "resourceType",
                string_enum(&[definition.type_name.as_str()]),
            )
            .required("resourceType")
            .description(Some(format!(
                "FHIR R4 {} ({})",
                definition.type_name, definition.url
            )));
    }
    for element in definition.children(path) {
        for (name, schema) in element_schemas(definition, element, pending) {
            let schema: RefOr<Schema> = if element.is_repeating() {
                ArrayBuilder::new().items(schema).into()
            } else {
                schema
            };
            object = object.property(name.clone(), schema);
            if element.min > 0 && !element.is_choice {
                object = object.required(name);
            }
        }
    }
    object
}

/// The component name of a data type, or of a backbone element path (`Type_element`).
fn component_name(name: &str) -> String {
    name.replace('.', "_")
}

/// The JSON properties one element contributes: one, or one per type for a choice.
fn element_schemas(
    definition: &StructureDefinition,
    element: &ElementDefinition,
    pending: &mut Vec<String>,
) -> Vec<(String, RefOr<Schema>)> {
    if let Some(reference) = &element.content_reference {
        // A reference back to a backbone element (QuestionnaireResponse.item.item) may be
        // recursive, so it becomes a component of its own rather than an inline copy.
        let path = reference.trim_start_matches('#').to_string();
        let schema = utoipa::openapi::Ref::from_schema_name(component_name(&path));
        pending.push(path);
        return vec![(element.name.clone(), schema.into())];
    }
    if definition.children(&element.path).next().is_some() {
        let schema = structure_schema(definition, &element.path, pending);
        return vec![(
            element.name.clone(),
            schema.description(Some(element.short.clone())).into(),
        )];
    }
    element
        .types
        .iter()
        .map(|element_type| {
            let name = if element.is_choice {
                let mut chars = element_type.code.chars();
                let first = chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string())
                    .unwrap_or_default();
                format!("{}{first}{}", element.name, chars.as_str())
            } else {
                element.name.clone()
            };
            (
                name,
                type_schema(&element_type.code, &element.short, pending),
            )
        })
        .collect()
}

fn type_schema(code: &str, description: &str, pending: &mut Vec<String>) -> RefOr<Schema> {
    let primitive = |schema_type: Type, format: Option<KnownFormat>| -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(schema_type))
            .format(format.map(SchemaFormat::KnownFormat))
            .description(Some(description.to_string()))
            .into()
    };
    match code {
        "boolean" | "System.Boolean" => primitive(Type::Boolean, None),
        "integer" | "unsignedInt" | "positiveInt" | "System.Integer" => {
            primitive(Type::Integer, Some(KnownFormat::Int32))
        }
        "decimal" | "System.Decimal" => primitive(Type::Number, None),
        "date" => primitive(Type::String, Some(KnownFormat::Date)),
        "dateTime" | "instant" => primitive(Type::String, Some(KnownFormat::DateTime)),
        "Resource" => component_ref("Resource"),
        _ => match registry().structure(code) {
            Some(definition) if definition.kind == "primitive-type" => {
                primitive(Type::String, None)
            }
            Some(_) => {
                pending.push(code.to_string());
                component_ref(code)
            }
            None => primitive(Type::String, None),
        },
    }
}

fn resource_examples(resource_type: &str) -> Vec<Value> {
    clinic_examples()
        .into_iter()
        .filter(|(_, example)| example["resourceType"] == resource_type)
        .map(|(_, example)| example)
        .collect()
}

/// Named examples from the demo clinic: a ketamine infusion, a pre-infusion blood pressure,
/// a pain score and a patient.
fn clinic_examples() -> Vec<(&'static str, Value)> {
    let demo = crate::seed::demo_resources();
    let find = |id: &str| {
        let mut resource = demo
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(object) = resource.as_object_mut() {
            object.remove("id");
        }
        resource
    };
    vec![
        ("ketamine-infusion", find("demo-patient-01-inf1")),
        (
            "pre-infusion-blood-pressure",
            find("demo-patient-01-inf1-bp-pre"),
        ),
        ("pain-score", find("demo-patient-01-inf1-pain-pre")),
        ("patient", find("demo-patient-01")),
    ]
}

fn add_request_examples(openapi: &mut utoipa::openapi::OpenApi) {
    let Some(item) = openapi.paths.paths.get_mut("/fhir/{type}") else {
        return;
    };
    let Some(post) = item.post.as_mut() else {
        return;
    };
    let Some(RefOr::T(body)) = post.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        for (name, example) in clinic_examples() {
            let example = utoipa::openapi::example::ExampleBuilder::new()
                .summary(format!(
                    "{} ({})",
                    name.replace('-', " "),
                    example["resourceType"].as_str().unwrap_or_default()
                ))
                .value(Some(example))
                .build();
            content.examples.insert(name.to_string(), example.into());
        }
    }
}

/// The bearer-token scheme; `/fhir/metadata` and the operational endpoints opt out.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "ES256 access token with SMART v2 scopes, e.g. system/*.cruds",
                    ))
                    .build(),
            ),
        );
    }
}

/// The error statuses each operation can answer with, all as OperationOutcome bodies.
/// Kept here, beside their meanings, rather than repeated in every handler's annotation.
const ERROR_RESPONSES: &[(&str, &[u16])] = &[
    (
        "batch_or_transaction",
        &[400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 503],
    ),
    ("create", &[400, 401, 403, 404, 412, 413, 415, 422, 503]),
    ("read", &[400, 401, 403, 404, 410, 503]),
    ("vread", &[400, 401, 403, 404, 410, 503]),
    ("update", &[400, 401, 403, 404, 412, 413, 415, 422, 503]),
    ("patch", &[400, 401, 403, 404, 410, 412, 413, 415, 422, 503]),
    ("delete", &[400, 401, 403, 404, 412, 503]),
    (
        "conditional_update",
        &[400, 401, 403, 404, 409, 412, 413, 415, 422, 503],
    ),
    ("conditional_delete", &[400, 401, 403, 404, 412, 503]),
    ("instance_history", &[400, 401, 403, 404, 503]),
    ("type_history", &[400, 401, 403, 404, 503]),
    ("system_history", &[400, 401, 403, 503]),
    ("search_get", &[400, 401, 403, 404, 503]),
    ("search_post", &[400, 401, 403, 404, 415, 503]),
    ("everything_get", &[400, 401, 403, 404, 410, 503]),
    ("everything_post", &[400, 401, 403, 404, 410, 413, 415, 503]),
    ("status", &[401, 403, 404, 410, 503]),
    ("events", &[400, 401, 403, 404, 410, 503]),
    ("medical_necessity", &[400, 401, 403, 404, 410, 422, 503]),
    (
        "medical_necessity_post",
        &[400, 401, 403, 404, 410, 413, 415, 422, 503],
    ),
    ("system_export", &[400, 401, 403, 503]),
    ("patient_export", &[400, 401, 403, 503]),
    ("group_export", &[400, 401, 403, 404, 410, 503]),
    ("export_status", &[401, 404, 503]),
    ("cancel_export", &[401, 404, 503]),
    ("export_file", &[401, 403, 404, 503]),
    ("validate", &[400, 401, 403, 404, 413, 415, 503]),
    ("treatment_status", &[400, 401, 403, 404, 410, 503]),
    ("patient_outcomes", &[400, 401, 503]),
    ("clinic_outcomes", &[401, 503]),
];

fn error_meaning(status: u16) -> &'static str {
    match status {
        400 => "Malformed request or invalid resource; every issue is listed",
        401 => "Missing or invalid access token",
        403 => "The token's scopes do not allow this",
        404 => "Unknown type or id",
        410 => "The resource was deleted",
        409 => {
            "Conflicts with the stored state (e.g. the id exists but the criteria do not match it)"
        }
        412 => {
            "If-Match names a version that is not current, or conditional criteria match more than one resource"
        }
        413 => "Body larger than MAX_BODY_BYTES",
        415 => "Content-Type not accepted",
        422 => {
            "Violates a profile rule (e.g. vital signs), the patch cannot be applied, or an operation lacks data it needs (e.g. a Coverage)"
        }
        503 => "Database unavailable; retry (Retry-After)",
        _ => "Error",
    }
}

/// A representative OperationOutcome for each error status, as the server words it.
fn error_example(status: u16) -> Value {
    let (code, diagnostics, expression) = match status {
        400 => (
            "code-invalid",
            "Patient.gender has a required binding to http://hl7.org/fhir/ValueSet/administrative-gender; 'mail' is not in it (allowed: female, male, other, unknown)",
            Some("Patient.gender"),
        ),
        401 => ("login", "the access token has expired", None),
        403 => (
            "forbidden",
            "The access token's scopes do not allow Create on Patient",
            None,
        ),
        404 => ("not-found", "Patient/demo-patient-99 does not exist", None),
        410 => ("deleted", "Patient/demo-patient-01 has been deleted", None),
        412 => (
            "conflict",
            "If-Match names version 1, but the current version is 2",
            None,
        ),
        409 => (
            "conflict",
            "Patient/taken exists but does not match the criteria 'identifier=urn:mrn|MRN-2'",
            None,
        ),
        413 => (
            "too-costly",
            "Request body exceeds the limit of 1048576 bytes",
            None,
        ),
        415 => (
            "not-supported",
            "Content-Type 'application/xml' is not accepted here; send application/fhir+json or application/json",
            None,
        ),
        422 => (
            "invariant",
            "Vital signs profile: needs valueQuantity with a UCUM unit (system http://unitsofmeasure.org and code) or a dataAbsentReason",
            Some("Observation.valueQuantity"),
        ),
        _ => (
            "transient",
            "The database is not available right now; retry shortly",
            None,
        ),
    };
    let mut issue = json!({"severity": "error", "code": code, "diagnostics": diagnostics});
    if let Some(expression) = expression {
        issue["expression"] = json!([expression]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            // An `{id}` that is not a FHIR id is refused before anything else.
            let takes_id = path.contains("{id}");
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let Some(operation_id) = operation.operation_id.as_deref() else {
                    continue;
                };
                let statuses: &[u16] = ERROR_RESPONSES
                    .iter()
                    .find(|(id, _)| *id == operation_id)
                    .map_or(&[], |(_, statuses)| statuses);
                let id_refusal = (takes_id && !statuses.contains(&400)).then_some(&400);
                for status in statuses.iter().chain(id_refusal) {
                    let response = utoipa::openapi::ResponseBuilder::new()
                        .description(error_meaning(*status))
                        .content(
                            "application/fhir+json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(component_ref("OperationOutcome")))
                                .example(Some(error_example(*status)))
                                .build(),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .insert(status.to_string(), response.into());
                }
            }
        }
    }
}
