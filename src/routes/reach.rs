//! What a token's scopes let a read or a search see: the filters that confine a search to
//! its reach, the check that a resource read by id lies within it, and the sifting of
//! included resources.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::AppState;
use super::crud::ensure_in_compartment;
use super::search::parse_search;
use crate::auth::access::{Access, Reach, Slice, in_patient_compartment};
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::ResourceType;
use crate::fhir::compartment::may_be_in_patient_compartment;
use crate::fhir::search::{Filter, RESULT_PARAMETERS, ReferenceMatch, ValueMatch};
use crate::fhir::search_index::IndexKind;
use crate::store::search::{SearchQuery, Total};

/// The filters a search of `resource_type` adds to stay within `reach`: none for full
/// access, the compartment for a patient, and for restricted scopes the slices they open
/// (one slice's filters as they are, so an index can drive the query; several OR-ed).
pub fn reach_filters(
    resource_type: &ResourceType,
    reach: &Reach,
    state: &AppState,
) -> ApiResult<Vec<Filter>> {
    match reach {
        Reach::Whole(Access::Full) => Ok(Vec::new()),
        Reach::Whole(Access::Patient(patient)) => {
            Ok(vec![compartment_filter(resource_type, patient.clone())])
        }
        Reach::Slices(slices) => {
            let mut groups = slices
                .iter()
                .map(|slice| slice_filters(resource_type, slice, state))
                .collect::<ApiResult<Vec<_>>>()?;
            if groups.len() == 1 {
                Ok(groups.remove(0))
            } else {
                Ok(vec![Filter::AnyOf(groups)])
            }
        }
    }
}

/// One slice as filters. A restriction this server cannot enforce exactly (an unknown
/// parameter, or one that shapes results instead of selecting them) opens nothing: the
/// request is refused rather than answered with more than the scope allows.
fn slice_filters(
    resource_type: &ResourceType,
    slice: &Slice,
    state: &AppState,
) -> ApiResult<Vec<Filter>> {
    let query = serde_urlencoded::to_string(&slice.query).unwrap_or_default();
    let refuse = |why: String| {
        ApiError::Forbidden(format!(
            "The scope restriction '{resource_type}?{query}' cannot be enforced: {why}"
        ))
    };
    if let Some((name, _)) = slice
        .query
        .iter()
        .find(|(name, _)| RESULT_PARAMETERS.contains(&name.as_str()) || name.starts_with("_has"))
    {
        return Err(refuse(format!("{name} does not select resources")));
    }
    let parsed = parse_search(resource_type, &slice.query, state, true)
        .map_err(|error| refuse(error.to_string()))?;
    if parsed.filters.len() != slice.query.len() {
        return Err(refuse("not every parameter selects resources".into()));
    }
    let mut filters = parsed.filters;
    if let Some(patient) = &slice.patient {
        filters.push(compartment_filter(resource_type, patient.clone()));
    }
    Ok(filters)
}

/// The filter that keeps a patient-scoped search inside that patient's compartment.
pub fn compartment_filter(resource_type: &ResourceType, patient: String) -> Filter {
    match resource_type.as_str() {
        "Patient" => Filter::Ids(vec![patient]),
        _ => Filter::Values {
            param: "patient".into(),
            kind: IndexKind::Reference,
            values: vec![ValueMatch::Reference(ReferenceMatch::Local {
                target_type: Some("Patient".into()),
                id: patient,
            })],
            negate: false,
        },
    }
}

/// Refuses `resource` (read by id, or a version of it) unless it lies within `reach`.
/// Restricted scopes are checked against the search index, so against the resource's
/// current version: the same answer a search would give.
pub async fn ensure_within_reach(
    state: &AppState,
    reach: &Reach,
    resource_type: &ResourceType,
    resource: &Value,
) -> ApiResult<()> {
    if let Reach::Whole(access) = reach {
        return ensure_in_compartment(access, resource_type, resource);
    }
    let id = id_of(resource);
    if matching_ids(state, resource_type, vec![id.clone()], reach)
        .await?
        .contains(&id)
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "The access token's scopes reach only some {resource_type} resources (their search restrictions); this one is outside them"
    )))
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap_or_default().to_string()
}

/// The ids among `ids` of `resource_type` that a search within `reach` finds.
async fn matching_ids(
    state: &AppState,
    resource_type: &ResourceType,
    ids: Vec<String>,
    reach: &Reach,
) -> ApiResult<HashSet<String>> {
    let mut filters = vec![Filter::Ids(ids.clone())];
    filters.extend(reach_filters(resource_type, reach, state)?);
    let query = SearchQuery {
        resource_type: resource_type.to_string(),
        filters,
        sort: Vec::new(),
        count: ids.len() as i64,
        cursor: None,
        total: Total::None,
    };
    let page = crate::store::search::search(&state.pool, &query).await?;
    Ok(page
        .rows
        .iter()
        .filter_map(|(_, resource)| resource["id"].as_str().map(str::to_string))
        .collect())
}

/// The included resources (`_include`, `_revinclude`) the token may read, each judged by
/// its own type's reach: a type the scopes do not grant is left out; a patient token sees
/// its compartment and the types outside every patient compartment (medications,
/// practitioners); restricted scopes see what their restrictions match.
pub async fn visible_included(
    state: &AppState,
    principal: &Principal,
    included: Vec<(i64, Value)>,
) -> ApiResult<Vec<(i64, Value)>> {
    let mut reaches: HashMap<String, Option<Reach>> = HashMap::new();
    // Per resource: decided at once, or (`None`) once its type's restricted search has run.
    let mut verdicts: Vec<Option<bool>> = Vec::with_capacity(included.len());
    let mut to_check: HashMap<String, Vec<String>> = HashMap::new();
    for (_, resource) in &included {
        let Some(type_name) = resource["resourceType"].as_str() else {
            verdicts.push(Some(false));
            continue;
        };
        let reach = reaches
            .entry(type_name.to_string())
            .or_insert_with(|| principal.reach(type_name, Interaction::Read).ok());
        verdicts.push(match reach {
            None => Some(false),
            Some(Reach::Whole(Access::Full)) => Some(true),
            Some(Reach::Whole(Access::Patient(patient))) => Some(
                !may_be_in_patient_compartment(type_name)
                    || in_patient_compartment(type_name, resource, patient),
            ),
            Some(Reach::Slices(_)) => {
                let ids = to_check.entry(type_name.to_string()).or_default();
                ids.push(id_of(resource));
                None
            }
        });
    }
    let mut matched: HashSet<(String, String)> = HashSet::new();
    for (type_name, ids) in to_check {
        let resource_type = ResourceType::parse(&type_name)?;
        if let Some(reach) = &reaches[&type_name] {
            let found = matching_ids(state, &resource_type, ids, reach).await?;
            matched.extend(found.into_iter().map(|id| (type_name.clone(), id)));
        }
    }
    let matches = |resource: &Value| {
        let type_name = resource["resourceType"].as_str().unwrap_or_default();
        matched.contains(&(type_name.to_string(), id_of(resource)))
    };
    Ok(included
        .into_iter()
        .zip(verdicts)
        .filter(|((_, resource), verdict)| verdict.unwrap_or_else(|| matches(resource)))
        .map(|(entry, _)| entry)
        .collect())
}
