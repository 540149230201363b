//! The registry built from the official FHIR R4 definitions kept as data in `definitions/r4`:
//! StructureDefinitions (resources and data types), required-binding value sets,
//! SearchParameters and the patient CompartmentDefinition. Supporting a new resource type means adding it to the extraction script.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

const PROFILES_RESOURCES: &str = include_str!("../../definitions/r4/profiles-resources.json");
const PROFILES_TYPES: &str = include_str!("../../definitions/r4/profiles-types.json");
const SEARCH_PARAMETERS: &str = include_str!("../../definitions/r4/search-parameters.json");
const VALUE_SETS: &str = include_str!("../../definitions/r4/valuesets.json");
const MANIFEST: &str = include_str!("../../definitions/r4/MANIFEST.json");
const PATIENT_COMPARTMENT: &str =
    include_str!("../../definitions/r4/compartmentdefinition-patient.json");

/// The parsed definitions; built once, they are constant data compiled into the binary.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::load);
    &REGISTRY
}

#[derive(Debug, Clone)]
pub struct ElementType {
    pub code: String,
    pub profiles: Vec<String>,
    pub target_profiles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub key: String,
    pub severity: String,
    pub human: String,
}

#[derive(Debug, Clone)]
pub struct ElementDefinition {
    pub path: String,
    /// The JSON property name (for a choice, the part before `[x]`).
    pub name: String,
    pub is_choice: bool,
    pub min: u32,
    /// `None` means unbounded (`*`).
    pub max: Option<u32>,
    pub types: Vec<ElementType>,
    pub required_value_set: Option<String>,
    pub content_reference: Option<String>,
    pub constraints: Vec<Constraint>,
    pub short: String,
    /// Part of the `_summary=true` view.
    pub is_summary: bool,
}

impl ElementDefinition {
    pub fn is_repeating(&self) -> bool {
        self.max != Some(1) && self.max != Some(0)
    }
}

/// One StructureDefinition's snapshot, indexed by path.
#[derive(Debug)]
pub struct StructureDefinition {
    pub name: String,
    pub type_name: String,
    pub url: String,
    pub kind: String,
    pub elements: Vec<ElementDefinition>,
    children: HashMap<String, Vec<usize>>,
    by_path: HashMap<String, usize>,
}

impl StructureDefinition {
    fn from_json(resource: &Value) -> Option<Self> {
        let elements: Vec<ElementDefinition> = resource["snapshot"]["element"]
            .as_array()?
            .iter()
            .filter_map(parse_element)
            .collect();
        let mut children: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_path = HashMap::new();
        for (index, element) in elements.iter().enumerate() {
            by_path.insert(element.path.clone(), index);
            if let Some((parent, _)) = element.path.rsplit_once('.') {
                children.entry(parent.to_string()).or_default().push(index);
            }
        }
        Some(StructureDefinition {
            name: resource["name"].as_str()?.to_string(),
            type_name: resource["type"].as_str()?.to_string(),
            url: resource["url"].as_str()?.to_string(),
            kind: resource["kind"].as_str()?.to_string(),
            elements,
            children,
            by_path,
        })
    }

    /// The direct child elements of `path`.
    pub fn children(&self, path: &str) -> impl Iterator<Item = &ElementDefinition> {
        self.children
            .get(path)
            .into_iter()
            .flatten()
            .map(|index| &self.elements[*index])
    }

    pub fn element(&self, path: &str) -> Option<&ElementDefinition> {
        self.by_path.get(path).map(|index| &self.elements[*index])
    }

    pub fn root(&self) -> Option<&ElementDefinition> {
        self.elements.first()
    }
}

fn parse_element(element: &Value) -> Option<ElementDefinition> {
    let path = element["path"].as_str()?.to_string();
    let last = path.rsplit('.').next().unwrap_or(&path);
    let is_choice = last.ends_with("[x]");
    let name = last.trim_end_matches("[x]").to_string();
    let max = match element["max"].as_str() {
        Some("*") | None => None,
        Some(number) => number.parse().ok(),
    };
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let types = element["type"]
        .as_array()
        .map(|types| {
            types
                .iter()
                .filter_map(|t| {
                    Some(ElementType {
                        code: primitive_code(t)?,
                        profiles: strings(&t["profile"]),
                        target_profiles: strings(&t["targetProfile"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let required_value_set = (element["binding"]["strength"] == "required")
        .then(|| element["binding"]["valueSet"].as_str())
        .flatten()
        .map(|url| url.split('|').next().unwrap_or(url).to_string());
    let constraints = element["constraint"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| {
                    Some(Constraint {
                        key: c["key"].as_str()?.to_string(),
                        severity: c["severity"].as_str().unwrap_or("error").to_string(),
                        human: c["human"].as_str().unwrap_or_default().to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ElementDefinition {
        name,
        is_choice,
        min: element["min"].as_u64().unwrap_or(0) as u32,
        max,
        types,
        required_value_set,
        content_reference: element["contentReference"].as_str().map(str::to_string),
        constraints,
        short: element["short"].as_str().unwrap_or_default().to_string(),
        is_summary: element["isSummary"].as_bool().unwrap_or(false),
        path,
    })
}

/// The type code; the `value` elements of primitives carry a FHIRPath system type URL
/// (`http://hl7.org/fhirpath/System.String`) with the FHIR type in an extension.
fn primitive_code(element_type: &Value) -> Option<String> {
    let code = element_type["code"].as_str()?;
    if let Some(system) = code.strip_prefix("http://hl7.org/fhirpath/System.") {
        return Some(format!("System.{system}"));
    }
    Some(code.to_string())
}

/// A SearchParameter restricted to this server's resource types.
#[derive(Debug, Clone)]
pub struct SearchParameter {
    pub code: String,
    pub param_type: String,
    pub expression: Option<String>,
    pub targets: Vec<String>,
    pub description: String,
}

#[derive(Debug)]
pub struct Registry {
    /// FHIR version and source of the definitions.
    pub source: String,
    resource_types: Vec<String>,
    structures: HashMap<String, StructureDefinition>,
    profiles: HashMap<String, String>,
    value_sets: HashMap<String, HashSet<(String, String)>>,
    search_parameters: HashMap<String, Vec<SearchParameter>>,
    primitive_patterns: HashMap<String, Regex>,
    /// Per type listed in the patient CompartmentDefinition, its linking search parameters.
    patient_compartment: HashMap<String, Vec<String>>,
}

fn bundle_resources(text: &str) -> Vec<Value> {
    let bundle: Value = serde_json::from_str(text).expect("embedded definitions are valid JSON");
    match bundle["entry"].as_array() {
        Some(entries) => entries
            .iter()
            .map(|entry| entry["resource"].clone())
            .collect(),
        None => Vec::new(),
    }
}

impl Registry {
    fn load() -> Self {
        let manifest: Value = serde_json::from_str(MANIFEST).expect("manifest is valid JSON");
        let resource_types: Vec<String> = manifest["resourceTypes"]
            .as_array()
            .expect("manifest lists resource types")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let mut structures = HashMap::new();
        let mut profiles = HashMap::new();
        let mut primitive_patterns = HashMap::new();
        for resource in bundle_resources(PROFILES_RESOURCES)
            .iter()
            .chain(bundle_resources(PROFILES_TYPES).iter())
        {
            if let Some(definition) = StructureDefinition::from_json(resource) {
                if let Some(pattern) = primitive_pattern(resource) {
                    primitive_patterns.insert(definition.name.clone(), pattern);
                }
                profiles.insert(definition.url.clone(), definition.name.clone());
                structures.insert(definition.name.clone(), definition);
            }
        }
        Registry {
            source: format!(
                "FHIR {} core definitions from {} {}",
                manifest["fhirVersion"].as_str().unwrap_or("4.0.1"),
                manifest["source"].as_str().unwrap_or("?"),
                manifest["version"].as_str().unwrap_or("?")
            ),
            value_sets: load_value_sets(),
            search_parameters: load_search_parameters(&resource_types),
            patient_compartment: load_patient_compartment(),
            resource_types,
            structures,
            profiles,
            primitive_patterns,
        }
    }

    pub fn resource_types(&self) -> &[String] {
        &self.resource_types
    }

    pub fn is_supported_resource(&self, name: &str) -> bool {
        self.resource_types.iter().any(|t| t == name)
    }

    /// A StructureDefinition by name (`Patient`, `HumanName`, `SimpleQuantity`, `dateTime`).
    pub fn structure(&self, name: &str) -> Option<&StructureDefinition> {
        self.structures.get(name)
    }

    /// The StructureDefinition a profile URL names, if this registry holds it.
    pub fn structure_by_url(&self, url: &str) -> Option<&StructureDefinition> {
        self.profiles
            .get(url)
            .and_then(|name| self.structures.get(name))
    }

    /// Codes a required value set allows, as (system, code); `None` when it can't be enumerated.
    pub fn value_set(&self, url: &str) -> Option<&HashSet<(String, String)>> {
        self.value_sets.get(url)
    }

    pub fn search_parameters(&self, resource_type: &str) -> &[SearchParameter] {
        self.search_parameters
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn search_parameter(&self, resource_type: &str, code: &str) -> Option<&SearchParameter> {
        self.search_parameters(resource_type)
            .iter()
            .find(|p| p.code == code)
    }

    /// The regular expression a primitive type's value must match, from its definition.
    pub fn primitive_pattern(&self, type_code: &str) -> Option<&Regex> {
        self.primitive_patterns.get(type_code)
    }

    /// The search parameters the patient CompartmentDefinition lists for a type (empty:
    /// never in a patient's compartment); `None` if the definition does not list the type.
    pub fn patient_compartment_params(&self, resource_type: &str) -> Option<&[String]> {
        self.patient_compartment
            .get(resource_type)
            .map(Vec::as_slice)
    }
}

fn load_patient_compartment() -> HashMap<String, Vec<String>> {
    let definition: Value =
        serde_json::from_str(PATIENT_COMPARTMENT).expect("embedded definitions are valid JSON");
    definition["resource"]
        .as_array()
        .expect("the CompartmentDefinition lists resources")
        .iter()
        .filter_map(|entry| {
            let params = entry["param"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            Some((entry["code"].as_str()?.to_string(), params))
        })
        .collect()
}

/// The regex extension on a primitive type's `value` element, anchored.
fn primitive_pattern(resource: &Value) -> Option<Regex> {
    const REGEX_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/regex";
    if resource["kind"] != "primitive-type" {
        return None;
    }
    let value_path = format!("{}.value", resource["name"].as_str()?);
    let pattern = resource["snapshot"]["element"]
        .as_array()?
        .iter()
        .find(|e| e["path"].as_str() == Some(value_path.as_str()))?["type"][0]["extension"]
        .as_array()?
        .iter()
        .find(|ext| ext["url"] == REGEX_EXTENSION)?["valueString"]
        .as_str()?;
    Regex::new(&format!("^(?:{pattern})$")).ok()
}

fn collect_concepts(concepts: &Value, system: &str, into: &mut HashSet<(String, String)>) {
    for concept in concepts.as_array().into_iter().flatten() {
        if let Some(code) = concept["code"].as_str() {
            into.insert((system.to_string(), code.to_string()));
        }
        collect_concepts(&concept["concept"], system, into);
    }
}

fn load_value_sets() -> HashMap<String, HashSet<(String, String)>> {
    let resources = bundle_resources(VALUE_SETS);
    let code_systems: HashMap<&str, &Value> = resources
        .iter()
        .filter(|r| r["resourceType"] == "CodeSystem")
        .filter_map(|r| Some((r["url"].as_str()?, r)))
        .collect();
    let value_sets: HashMap<&str, &Value> = resources
        .iter()
        .filter(|r| r["resourceType"] == "ValueSet")
        .filter_map(|r| Some((r["url"].as_str()?, r)))
        .collect();
    let mut expanded = HashMap::new();
    for url in value_sets.keys() {
        if let Some(codes) = expand(url, &value_sets, &code_systems, 0) {
            expanded.insert(url.to_string(), codes);
        }
    }
    expanded
}

/// Expands a value set from its compose (whole code systems, listed concepts, imports).
/// Filters and unknown systems make it non-enumerable (`None`): such bindings are not checked.
fn expand(
    url: &str,
    value_sets: &HashMap<&str, &Value>,
    code_systems: &HashMap<&str, &Value>,
    depth: usize,
) -> Option<HashSet<(String, String)>> {
    if depth > 8 {
        return None;
    }
    let value_set = value_sets.get(url)?;
    let mut codes = HashSet::new();
    for include in value_set["compose"]["include"].as_array()? {
        if include.get("filter").is_some() {
            return None;
        }
        for imported in include["valueSet"].as_array().into_iter().flatten() {
            codes.extend(expand(
                imported.as_str()?,
                value_sets,
                code_systems,
                depth + 1,
            )?);
        }
        let Some(system) = include["system"].as_str() else {
            continue;
        };
        if let Some(listed) = include["concept"].as_array() {
            for concept in listed {
                codes.insert((system.to_string(), concept["code"].as_str()?.to_string()));
            }
        } else {
            collect_concepts(&code_systems.get(system)?["concept"], system, &mut codes);
        }
    }
    if value_set["compose"].get("exclude").is_some() {
        return None;
    }
    (!codes.is_empty()).then_some(codes)
}

fn load_search_parameters(resource_types: &[String]) -> HashMap<String, Vec<SearchParameter>> {
    let mut by_type: HashMap<String, Vec<SearchParameter>> = HashMap::new();
    for resource in bundle_resources(SEARCH_PARAMETERS) {
        let Some(code) = resource["code"].as_str() else {
            continue;
        };
        let bases: Vec<&str> = resource["base"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let parameter = SearchParameter {
            code: code.to_string(),
            param_type: resource["type"].as_str().unwrap_or_default().to_string(),
            expression: resource["expression"].as_str().map(str::to_string),
            targets: resource["target"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            description: resource["description"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        for resource_type in resource_types {
            let applies = bases.iter().any(|base| {
                *base == resource_type || *base == "Resource" || *base == "DomainResource"
            });
            if applies {
                by_type
                    .entry(resource_type.clone())
                    .or_default()
                    .push(parameter.clone());
            }
        }
    }
    by_type
}
