//! `POST /fhir`: batch and transaction Bundles. A transaction runs its writes in one
//! database transaction, in the R4 order, with references between its entries resolved,
//! and succeeds or fails as a whole; a batch runs each entry on its own. Every entry goes
//! through the same permission checks, validation and write decisions as its REST
//! interaction; GET entries run after the writes, through the REST read and search code.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Value, json};

use super::AppState;
use super::conditional::{
    conditional_replace, create_target, criteria_search, delete_target, update_target,
};
use super::crud::{
    check_body_id, checked, deletion, ensure_in_compartment, ensure_may_create, live_content,
    patched_with, replace_with,
};
use super::http::{
    Preferences, RESOURCE_CONTENT_TYPES, ReturnPreference, parse_json, preferences, read_body,
    require_content_type,
};
use super::reach::ensure_within_reach;
use super::search::{conditional_criteria, parse_form, parse_search, search_bundle};
use crate::auth::access::Reach;
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::bundle_request::{
    self, BundleKind, EntryRequest, Method, Target, conditional_references, processing_order,
    rewrite_references,
};
use crate::fhir::outcome::{Issue, operation_outcome};
use crate::fhir::resource::{etag, id_of, instant};
use crate::fhir::{FHIR_JSON, ResourceId, ResourceType};
use crate::store::resources::{
    self, ConditionalStep, Matched, NextContent, Version, WriteMethod, Written,
};
use crate::store::search::SearchQuery;
use crate::store::transaction::Tx;

#[utoipa::path(
    post, path = "/fhir", tag = "FHIR resources", operation_id = "batch_or_transaction",
    summary = "Process a batch or transaction Bundle",
    description = "A `transaction` is all or nothing: its entries run in one database transaction in the R4 order (DELETE, POST, PUT/PATCH, then GET), `urn:uuid:` fullUrls and conditional references (`Patient?identifier=...`) become real references, and any failure answers with one OperationOutcome naming the failing entry. A `batch` runs each entry on its own and reports each outcome in its response entry. Entries support create (with `ifNoneExist`), update and conditional update, PATCH (a Binary holding a JSON Patch), delete and conditional delete, read, vread and search.",
    params(("Prefer" = Option<String>, Header, description = "return=minimal | representation | OperationOutcome, for every entry; handling=lenient | strict")),
    request_body(content = crate::openapi::Bundle, content_type = "application/fhir+json", description = "A Bundle of type batch or transaction"),
    responses(
        (status = 200, description = "A batch-response or transaction-response Bundle, one entry per request entry, in order", body = crate::openapi::Bundle, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn process(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    require_content_type(&request, RESOURCE_CONTENT_TYPES)?;
    let body = read_body(&request, payload, state.max_bundle_bytes).await?;
    let bundle = parse_json(&body, state.bundle_json_limits())?;
    let parsed = bundle_request::parse(&bundle, &state.base_url, state.max_bundle_entries)?;
    let preferences = preferences(request.headers());
    let results = match parsed.kind {
        BundleKind::Batch => batch(&state, &principal, parsed.entries, preferences).await,
        BundleKind::Transaction => {
            transaction(&state, &principal, parsed.entries, preferences).await?
        }
    };
    let entries: Vec<Value> = results
        .into_iter()
        .map(|result| response_entry(result, &state.base_url, preferences))
        .collect();
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": parsed.kind.response_type(),
        "meta": {"lastUpdated": instant(chrono::Utc::now())},
        "entry": entries,
    })))
}

/// An entry checked before anything is written: the caller's reach for it, its validated
/// resource and its parsed conditional criteria.
struct Planned {
    request: EntryRequest,
    /// Reads may reach through restricted scopes; writes only ever as `Reach::Whole`.
    reach: Reach,
    warnings: Vec<Issue>,
    /// The criteria of `ifNoneExist` or of a conditional update/delete: text, search and
    /// lock key.
    criteria: Option<(String, SearchQuery, String)>,
}

impl Planned {
    fn resource_type(&self) -> &ResourceType {
        self.request.target.resource_type()
    }

    fn label(&self) -> String {
        format!("{} {}", self.request.method.as_str(), self.request.url)
    }

    /// Validates the entry's resource as its REST interaction would; references to other
    /// entries are resolved first, as profiles check what a reference names.
    fn validate(&mut self, preferences: Preferences) -> ApiResult<()> {
        if let Some(resource) = &self.request.resource {
            self.warnings = checked(self.request.target.resource_type(), resource, preferences)?;
        }
        Ok(())
    }

    fn in_entry(&self, error: ApiError) -> ApiError {
        error.in_bundle_entry(self.request.index, &self.label())
    }
}

/// What an entry writes, decided inside the transaction before any entry is written, so
/// every fullUrl maps to its final id first.
enum Identity {
    Write {
        id: ResourceId,
        method: WriteMethod,
        /// What a conditional update's criteria matched.
        matched: Option<Matched>,
    },
    /// A conditional create matched this resource: nothing is written.
    Existing(Version),
    /// A conditional delete matched nothing.
    Nothing,
    /// A GET: it runs after the writes.
    Read,
}

/// The outcome of one entry, answered in its response entry.
enum EntryResult {
    Written {
        written: Written,
        warnings: Vec<Issue>,
        status: StatusCode,
    },
    Existing(Version),
    NoContent,
    Read(Version),
    Searched(Value),
    Failed(ApiError),
}

async fn transaction(
    state: &AppState,
    principal: &Principal,
    entries: Vec<ApiResult<EntryRequest>>,
    preferences: Preferences,
) -> ApiResult<Vec<EntryResult>> {
    let mut planned = Vec::with_capacity(entries.len());
    for entry in entries {
        let request = entry?;
        let (index, label) = (
            request.index,
            format!("{} {}", request.method.as_str(), request.url),
        );
        planned.push(
            plan(state, principal, request, preferences)
                .map_err(|e| e.in_bundle_entry(index, &label))?,
        );
    }
    check_full_urls_are_unique(&planned)?;
    let mut tx = Tx::begin(&state.pool, &state.writes).await?;
    let written = write_entries(&mut tx, state, principal, &mut planned, preferences).await;
    let mut results = tx.finish(written).await?;
    // The reads see what the transaction wrote; as they follow its commit, a failing read
    // is reported in its entry rather than pretending the writes did not happen.
    for (position, entry) in planned.iter().enumerate() {
        if entry.request.method == Method::Get {
            let read = read_entry(state, principal, entry, preferences).await;
            results[position] = Some(read.unwrap_or_else(EntryResult::Failed));
        }
    }
    results
        .into_iter()
        .map(|result| result.ok_or_else(|| ApiError::internal("a Bundle entry was not processed")))
        .collect()
}

async fn batch(
    state: &AppState,
    principal: &Principal,
    entries: Vec<ApiResult<EntryRequest>>,
    preferences: Preferences,
) -> Vec<EntryResult> {
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let result = batch_entry(state, principal, entry, preferences).await;
        if let Err(error) = &result
            && error.status_code().is_server_error()
        {
            tracing::error!(%error, "batch entry failed");
        }
        results.push(result.unwrap_or_else(EntryResult::Failed));
    }
    results
}

/// One batch entry, in a transaction of its own.
async fn batch_entry(
    state: &AppState,
    principal: &Principal,
    entry: ApiResult<EntryRequest>,
    preferences: Preferences,
) -> ApiResult<EntryResult> {
    let mut planned = [plan(state, principal, entry?, preferences)?];
    if planned[0].request.method == Method::Get {
        return read_entry(state, principal, &planned[0], preferences).await;
    }
    let mut tx = Tx::begin(&state.pool, &state.writes).await?;
    let written = write_entries(&mut tx, state, principal, &mut planned, preferences).await;
    tx.finish(written)
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| ApiError::internal("a Bundle entry was not processed"))
}

/// The SMART permission an entry needs.
fn interaction_of(request: &EntryRequest) -> Interaction {
    match (request.method, &request.target) {
        (Method::Get, Target::Instance(..)) => Interaction::Read,
        (Method::Get, Target::Version(..)) => Interaction::Vread,
        (Method::Get, _) => Interaction::Search,
        (Method::Post, _) => Interaction::Create,
        (Method::Put, _) => Interaction::Update,
        (Method::Patch, _) => Interaction::Patch,
        (Method::Delete, _) => Interaction::Delete,
    }
}

/// Checks an entry without touching the database: permission, the id of an update,
/// conditional criteria and search parameters.
fn plan(
    state: &AppState,
    principal: &Principal,
    request: EntryRequest,
    preferences: Preferences,
) -> ApiResult<Planned> {
    let resource_type = request.target.resource_type().clone();
    let interaction = interaction_of(&request);
    let reach = if request.method == Method::Get {
        principal.reach(resource_type.as_str(), interaction)?
    } else {
        Reach::Whole(principal.authorize(Some(resource_type.as_str()), interaction)?)
    };
    if let (Target::Instance(_, id), Some(resource)) = (&request.target, &request.resource) {
        check_body_id(resource, id)?;
    }
    let criteria_text = match (&request.target, &request.if_none_exist) {
        (_, Some(text)) => Some(text.clone()),
        (Target::Criteria(_, text), None) if request.method != Method::Get => Some(text.clone()),
        _ => None,
    };
    let criteria = match criteria_text {
        Some(text) => {
            let (query, key) = criteria_search(principal, &resource_type, &text, state)?;
            Some((text, query, key))
        }
        None => None,
    };
    if let (Method::Get, Target::Criteria(_, query)) = (request.method, &request.target) {
        parse_search(
            &resource_type,
            &parse_form(query)?,
            state,
            preferences.strict,
        )?;
    }
    Ok(Planned {
        request,
        reach,
        warnings: Vec::new(),
        criteria,
    })
}

fn check_full_urls_are_unique(planned: &[Planned]) -> ApiResult<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for entry in planned {
        if let Some(full_url) = entry.request.full_url.as_deref()
            && let Some(first) = seen.insert(full_url, entry.request.index)
        {
            return Err(ApiError::bad_parameter(
                &format!("Bundle.entry[{}].fullUrl", entry.request.index),
                format!(
                    "Bundle.entry[{first}] and Bundle.entry[{}] have the same fullUrl '{full_url}'",
                    entry.request.index
                ),
            ));
        }
    }
    Ok(())
}

/// The writes of `planned` in one open transaction, in the R4 order: the deletions first,
/// then the identities of the other writes (so conditional creates and updates see the
/// deletions, and every fullUrl maps to its final id), references rewritten and
/// resources validated, then the other writes. GET entries are left as `None`.
async fn write_entries(
    tx: &mut Tx<'_>,
    state: &AppState,
    principal: &Principal,
    planned: &mut [Planned],
    preferences: Preferences,
) -> ApiResult<Vec<Option<EntryResult>>> {
    let mut results: Vec<Option<EntryResult>> = planned.iter().map(|_| None).collect();
    let mut identities: Vec<Option<Identity>> = planned.iter().map(|_| None).collect();
    let mut changed = Changed::default();
    let order = processing_order(planned.iter().map(|entry| &entry.request));
    let (deletions, writes): (Vec<usize>, Vec<usize>) = order
        .into_iter()
        .filter(|&position| planned[position].request.method != Method::Get)
        .partition(|&position| planned[position].request.method == Method::Delete);
    for position in deletions {
        let entry = &mut planned[position];
        let identity = identify(tx, entry).await.map_err(|e| entry.in_entry(e))?;
        changed.note(entry, &identity)?;
        let result = execute(tx, entry, identity, preferences).await;
        results[position] = result.map_err(|e| entry.in_entry(e))?;
    }
    for &position in &writes {
        let entry = &planned[position];
        let identity = identify(tx, entry).await.map_err(|e| entry.in_entry(e))?;
        changed.note(entry, &identity)?;
        identities[position] = Some(identity);
    }
    let mut references = local_references(planned, &identities);
    for &position in &writes {
        let entry = &mut planned[position];
        resolve_references(tx, state, principal, entry, &mut references)
            .await
            .map_err(|e| entry.in_entry(e))?;
        entry.validate(preferences).map_err(|e| entry.in_entry(e))?;
    }
    for position in writes {
        let identity = identities[position]
            .take()
            .expect("every write has its identity");
        let entry = &mut planned[position];
        let result = execute(tx, entry, identity, preferences).await;
        results[position] = result.map_err(|e| entry.in_entry(e))?;
    }
    Ok(results)
}

async fn identify(tx: &mut Tx<'_>, entry: &Planned) -> ApiResult<Identity> {
    let resource_type = entry.resource_type();
    let matched = match &entry.criteria {
        Some((_, query, key)) => Some(tx.match_criteria(resource_type, query, key).await?),
        None => None,
    };
    let criteria = entry
        .criteria
        .as_ref()
        .map_or("", |(text, _, _)| text.as_str());
    let chosen = |step: ConditionalStep, matched: Option<Matched>| match step {
        ConditionalStep::Write(id, method) => Identity::Write {
            id,
            method,
            matched,
        },
        ConditionalStep::Stop => match matched {
            Some(Matched::One(existing)) if entry.request.method == Method::Post => {
                Identity::Existing(existing)
            }
            _ => Identity::Nothing,
        },
    };
    let write = |id: &ResourceId, method| Identity::Write {
        id: id.clone(),
        method,
        matched: None,
    };
    Ok(
        match (entry.request.method, &entry.request.target, matched) {
            (Method::Get, _, _) => Identity::Read,
            (Method::Post, _, None) => write(&ResourceId::generate(), WriteMethod::Create),
            (Method::Post, _, Some(matched)) => chosen(
                create_target(resource_type, criteria)(&matched)?,
                Some(matched),
            ),
            (Method::Put, Target::Instance(_, id), _) => write(id, WriteMethod::Update),
            (Method::Put, _, Some(matched)) => {
                let body_id = entry
                    .request
                    .resource
                    .as_ref()
                    .and_then(id_of)
                    .map(ResourceId::parse)
                    .transpose()?;
                let step = update_target(resource_type, criteria, body_id)(&matched)?;
                chosen(step, Some(matched))
            }
            (Method::Patch, Target::Instance(_, id), _) => write(id, WriteMethod::Patch),
            (Method::Delete, Target::Instance(_, id), _) => write(id, WriteMethod::Delete),
            (Method::Delete, _, Some(matched)) => {
                chosen(delete_target(resource_type, criteria)(&matched)?, None)
            }
            _ => return Err(ApiError::internal("an entry without a target")),
        },
    )
}

/// The resources a transaction changes so far: two entries may not change the same one,
/// as which one wins would depend on order.
#[derive(Default)]
struct Changed(HashMap<String, usize>);

impl Changed {
    fn note(&mut self, entry: &Planned, identity: &Identity) -> ApiResult<()> {
        let Identity::Write { id, .. } = identity else {
            return Ok(());
        };
        let key = format!("{}/{id}", entry.resource_type());
        match self.0.insert(key.clone(), entry.request.index) {
            None => Ok(()),
            Some(first) => Err(ApiError::bad_request(format!(
                "Bundle.entry[{first}] and Bundle.entry[{}] both change {key}; a transaction changes each resource once",
                entry.request.index
            ))),
        }
    }
}

/// Each fullUrl of a written (or conditionally found) entry, mapped to `Type/id`.
fn local_references(
    planned: &[Planned],
    identities: &[Option<Identity>],
) -> HashMap<String, String> {
    planned
        .iter()
        .zip(identities)
        .filter_map(|(entry, identity)| {
            let full_url = entry.request.full_url.clone()?;
            let local = match identity.as_ref()? {
                Identity::Write { id, .. } => format!("{}/{id}", entry.resource_type()),
                Identity::Existing(version) => format!("{}/{}", version.resource_type, version.id),
                Identity::Nothing | Identity::Read => return None,
            };
            Some((full_url, local))
        })
        .collect()
}

/// Rewrites the entry's references to other entries and its conditional references
/// (`Patient?identifier=...`, each resolved to its one match) to `Type/id`.
async fn resolve_references(
    tx: &mut Tx<'_>,
    state: &AppState,
    principal: &Principal,
    entry: &mut Planned,
    references: &mut HashMap<String, String>,
) -> ApiResult<()> {
    let Some(resource) = entry.request.resource.as_mut() else {
        return Ok(());
    };
    for reference in conditional_references(resource) {
        if references.contains_key(&reference) {
            continue;
        }
        let local = resolve_conditional_reference(tx, state, principal, &reference).await?;
        references.insert(reference, local);
    }
    rewrite_references(resource, references).map_err(ApiError::bad_request)
}

async fn resolve_conditional_reference(
    tx: &mut Tx<'_>,
    state: &AppState,
    principal: &Principal,
    reference: &str,
) -> ApiResult<String> {
    let (type_name, criteria) = reference.split_once('?').unwrap_or((reference, ""));
    let resource_type = ResourceType::parse(type_name)?;
    let access = principal.authorize(Some(resource_type.as_str()), Interaction::Search)?;
    let (query, key) = conditional_criteria(&resource_type, criteria, state, &access)?;
    match tx.match_criteria(&resource_type, &query, &key).await? {
        Matched::One(found) => Ok(format!("{resource_type}/{}", found.id)),
        Matched::Nothing => Err(ApiError::PreconditionFailed(format!(
            "The conditional reference '{reference}' matches no {resource_type}"
        ))),
        Matched::Several => Err(ApiError::PreconditionFailed(format!(
            "The conditional reference '{reference}' matches more than one {resource_type}"
        ))),
    }
}

/// Runs one entry's write through the single write path, with the decision its REST
/// interaction makes.
async fn execute(
    tx: &mut Tx<'_>,
    entry: &mut Planned,
    identity: Identity,
    preferences: Preferences,
) -> ApiResult<Option<EntryResult>> {
    let (id, method, matched) = match identity {
        Identity::Read => return Ok(None),
        Identity::Existing(version) => return Ok(Some(EntryResult::Existing(version))),
        Identity::Nothing => return Ok(Some(EntryResult::NoContent)),
        Identity::Write {
            id,
            method,
            matched,
        } => (id, method, matched),
    };
    let resource_type = entry.request.target.resource_type().clone();
    let Reach::Whole(access) = &entry.reach else {
        return Err(ApiError::internal(
            "a write was planned with a restricted reach",
        ));
    };
    let if_match = entry.request.if_match;
    let resource = entry.request.resource.take();
    let mut patch_warnings = Vec::new();
    let written = match (method, resource) {
        (WriteMethod::Create, Some(resource)) => {
            ensure_may_create(access, &resource_type, &resource)?;
            tx.write(&resource_type, &id, method, None, |_| {
                Ok(NextContent::Write(resource))
            })
            .await?
        }
        (WriteMethod::Update, Some(resource)) => {
            ensure_in_compartment(access, &resource_type, &resource)?;
            match (&matched, &entry.criteria) {
                (Some(matched), Some((criteria, _, _))) => {
                    let decide = conditional_replace(access, &resource_type, criteria, resource);
                    tx.write(&resource_type, &id, method, if_match, |current| {
                        decide(matched, current)
                    })
                    .await?
                }
                _ => {
                    let decide = replace_with(access, &resource_type, resource);
                    tx.write(&resource_type, &id, method, if_match, decide)
                        .await?
                }
            }
        }
        (WriteMethod::Patch, _) => {
            let operations = entry
                .request
                .patch
                .as_ref()
                .ok_or_else(|| ApiError::internal("a PATCH entry without its patch"))?;
            let decide = patched_with(
                access,
                &resource_type,
                &id,
                operations,
                preferences,
                &mut patch_warnings,
            );
            tx.write(&resource_type, &id, method, if_match, decide)
                .await?
        }
        (WriteMethod::Delete, _) => {
            let decide = deletion(access, &resource_type);
            tx.write(&resource_type, &id, method, if_match, decide)
                .await?;
            return Ok(Some(EntryResult::NoContent));
        }
        _ => return Err(ApiError::internal("a write entry without its resource")),
    };
    let written = written.ok_or_else(|| ApiError::internal("a Bundle write wrote nothing"))?;
    let status = match method {
        WriteMethod::Create => StatusCode::CREATED,
        _ if written.created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let mut warnings = std::mem::take(&mut entry.warnings);
    warnings.extend(patch_warnings);
    Ok(Some(EntryResult::Written {
        written,
        warnings,
        status,
    }))
}

/// A GET entry, answered as its REST read, vread or search would be.
async fn read_entry(
    state: &AppState,
    principal: &Principal,
    entry: &Planned,
    preferences: Preferences,
) -> ApiResult<EntryResult> {
    match &entry.request.target {
        Target::Instance(resource_type, id) => {
            let current = resources::read_current(&state.pool, resource_type, id).await?;
            let content = live_content(current.as_ref(), resource_type, id)?;
            ensure_within_reach(state, &entry.reach, resource_type, content).await?;
            let current = current.as_ref().expect("live_content found it");
            Ok(EntryResult::Read(Version {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                version_id: current.version_id,
                last_updated: current.last_updated,
                deleted: false,
                method: String::new(),
                content: Some(content.clone()),
            }))
        }
        Target::Version(resource_type, id, version_id) => {
            let version = resources::read_version(&state.pool, resource_type, id, *version_id)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("{resource_type}/{id} has no version {version_id}"))
                })?;
            let Some(content) = &version.content else {
                return Err(ApiError::Gone(format!(
                    "Version {version_id} of {resource_type}/{id} is a deletion"
                )));
            };
            ensure_within_reach(state, &entry.reach, resource_type, content).await?;
            Ok(EntryResult::Read(version))
        }
        Target::Type(resource_type) => {
            let bundle = search_bundle(
                resource_type.as_str(),
                Vec::new(),
                state,
                principal,
                preferences.strict,
            )
            .await?;
            Ok(EntryResult::Searched(bundle))
        }
        Target::Criteria(resource_type, query) => {
            let parameters = parse_form(query)?;
            let bundle = search_bundle(
                resource_type.as_str(),
                parameters,
                state,
                principal,
                preferences.strict,
            )
            .await?;
            Ok(EntryResult::Searched(bundle))
        }
    }
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}

/// `entry.response` (and `resource`/`fullUrl`) of a written or found version.
fn version_entry(
    status: StatusCode,
    version: &Version,
    base_url: &str,
    preferences: Preferences,
    issues: &[Issue],
) -> Value {
    let mut entry = json!({
        "fullUrl": format!("{base_url}/{}/{}", version.resource_type, version.id),
        "response": {
            "status": status_text(status),
            "location": format!("{}/{}/_history/{}", version.resource_type, version.id, version.version_id),
            "etag": etag(version.version_id),
            "lastModified": instant(version.last_updated),
        }
    });
    match preferences.return_preference {
        ReturnPreference::Representation => {
            if let Some(content) = &version.content {
                entry["resource"] = content.clone();
            }
        }
        ReturnPreference::OperationOutcome => {
            let mut issues = issues.to_vec();
            issues.push(Issue::information(format!(
                "{}/{} stored as version {}",
                version.resource_type, version.id, version.version_id
            )));
            entry["response"]["outcome"] = operation_outcome(&issues);
        }
        ReturnPreference::Minimal => {}
    }
    if !issues.is_empty() && entry["response"].get("outcome").is_none() {
        entry["response"]["outcome"] = operation_outcome(issues);
    }
    entry
}

fn response_entry(result: EntryResult, base_url: &str, preferences: Preferences) -> Value {
    match result {
        EntryResult::Written {
            written,
            warnings,
            status,
        } => {
            let issues = [warnings, written.notices].concat();
            version_entry(status, &written.version, base_url, preferences, &issues)
        }
        EntryResult::Existing(version) => {
            let found = Issue::information(format!(
                "{}/{} already matches ifNoneExist; nothing was created",
                version.resource_type, version.id
            ));
            version_entry(StatusCode::OK, &version, base_url, preferences, &[found])
        }
        EntryResult::NoContent => {
            json!({"response": {"status": status_text(StatusCode::NO_CONTENT)}})
        }
        EntryResult::Read(version) => {
            let always = Preferences {
                return_preference: ReturnPreference::Representation,
                ..preferences
            };
            let mut entry = version_entry(StatusCode::OK, &version, base_url, always, &[]);
            if let Some(response) = entry["response"].as_object_mut() {
                response.remove("location");
            }
            entry
        }
        EntryResult::Searched(bundle) => {
            let mut entry = json!({"response": {"status": status_text(StatusCode::OK)}});
            // Assigned, not written in `json!`, which would copy the whole searchset.
            entry["resource"] = bundle;
            entry
        }
        EntryResult::Failed(error) => json!({
            "response": {
                "status": status_text(error.status_code()),
                "outcome": error.outcome(),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_http_status_lines() {
        assert_eq!(status_text(StatusCode::CREATED), "201 Created");
        assert_eq!(status_text(StatusCode::NO_CONTENT), "204 No Content");
        assert_eq!(
            status_text(StatusCode::PRECONDITION_FAILED),
            "412 Precondition Failed"
        );
    }
}
