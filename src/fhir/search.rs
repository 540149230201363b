//! Parsing search requests into the filters, sort, paging and result options the store and
//! the search handler execute, following the R4 search rules for each parameter type.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::dates::date_range_in;
use super::search_index::{IndexKind, IndexedParameter, indexed_parameter};
use super::{text, ucum};
use crate::error::{ApiError, ApiResult};

/// R4 comparison prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    StartsAfter,
    EndsBefore,
    Approximately,
}

impl Prefix {
    /// Splits a leading prefix off a date, number or quantity value.
    fn split(parameter: &str, value: &str) -> ApiResult<(Prefix, String)> {
        let Some(head) = value
            .get(..2)
            .filter(|h| h.chars().all(|c| c.is_ascii_lowercase()))
        else {
            return Ok((Prefix::Eq, value.to_string()));
        };
        let prefix = match head {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::StartsAfter,
            "eb" => Prefix::EndsBefore,
            "ap" => Prefix::Approximately,
            _ => {
                return Err(ApiError::bad_parameter(
                    parameter,
                    format!("'{head}' is not a search prefix (eq, ne, gt, lt, ge, le, sa, eb, ap)"),
                ));
            }
        };
        Ok((prefix, value[2..].to_string()))
    }
}

/// One token value to match (`code`, `system|code`, `|code`, `system|`).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenMatch {
    Code(String),
    SystemAndCode(String, String),
    CodeWithoutSystem(String),
    System(String),
}

/// A reference value: a local target (type optional), or a URL of another server.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceMatch {
    Local {
        target_type: Option<String>,
        id: String,
    },
    Url(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    StartsWith,
    Exact,
    Contains,
}

/// A searched number or quantity: its prefix, the value and the range its precision
/// implies, and for quantities the unit (canonicalised when UCUM knows it).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberMatch {
    pub prefix: Prefix,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub system: Option<String>,
    pub code: Option<String>,
    /// `(canonical value, low, high, canonical unit)` for UCUM units of a known dimension.
    pub canonical: Option<(f64, f64, f64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DateMatch {
    pub prefix: Prefix,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One value of a parameter; the values of one parameter are OR-ed.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    Token(TokenMatch),
    /// `:text`: the normalised display/text starts with this.
    TokenText(String),
    String(StringMode, String),
    Date(DateMatch),
    Number(NumberMatch),
    Reference(ReferenceMatch),
    Uri(String),
}

/// A filter on the resources searched; filters are AND-ed.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Ids(Vec<String>),
    LastUpdated(Vec<DateMatch>),
    /// A parameter's values (OR-ed); `negate` for `:not`.
    Values {
        param: String,
        kind: IndexKind,
        values: Vec<ValueMatch>,
        negate: bool,
    },
    /// `:missing=true|false`.
    Missing {
        param: String,
        kind: IndexKind,
        missing: bool,
    },
    /// `subject:Patient.identifier=x`: a reference whose target (of `target_type`) matches.
    Chain {
        param: String,
        target_type: String,
        inner: Box<Filter>,
    },
    /// `_has:Observation:patient:code=x`: some `source_type` resource refers here through
    /// `param` and matches `inner`.
    Has {
        source_type: String,
        param: String,
        inner: Box<Filter>,
    },
    /// At least one of the groups matches, each group an AND of its filters (the slices a
    /// token's restricted scopes open); no group matches nothing.
    AnyOf(Vec<Vec<Filter>>),
}

/// A sort key from `_sort`.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Id,
    LastUpdated,
    Param { param: String, kind: IndexKind },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// How the total is reported (`_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    None,
    Estimate,
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`, `iterate` for `:iterate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source_type: String,
    pub param: String,
    pub target_type: Option<String>,
    pub iterate: bool,
}

#[derive(Debug, Clone)]
pub struct ParsedSearch {
    pub filters: Vec<Filter>,
    pub sort: Vec<Sort>,
    pub count: i64,
    pub cursor: Option<String>,
    pub total: Option<TotalMode>,
    pub summary: Summary,
    pub elements: Vec<String>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// The parameters applied, as they go into `self`, `next` and `previous` links.
    pub applied: Vec<(String, String)>,
    /// Parameters ignored because this server does not support them.
    pub ignored: Vec<String>,
}

/// Paging limits from configuration.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default: i64,
    pub max: i64,
}

/// What parsing needs to know about the server.
#[derive(Debug, Clone)]
pub struct SearchContext {
    pub limits: PageLimits,
    pub strict: bool,
    pub base_url: String,
    pub zone: Tz,
}

/// Parameters with no effect on the result that are accepted silently.
const IGNORED_SILENTLY: &[&str] = &["_format", "_pretty"];
/// The keyset cursor this server puts in `next` and `previous` links.
pub const CURSOR_PARAMETER: &str = "_cursor";
/// Search parameters that shape a result rather than select resources; conditional criteria
/// may not use them.
pub const RESULT_PARAMETERS: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_include:iterate",
    "_revinclude",
    "_revinclude:iterate",
    CURSOR_PARAMETER,
];

pub fn parse(
    resource_type: &str,
    parameters: &[(String, String)],
    context: &SearchContext,
) -> ApiResult<ParsedSearch> {
    let mut parsed = ParsedSearch {
        filters: Vec::new(),
        sort: Vec::new(),
        count: context.limits.default,
        cursor: None,
        total: None,
        summary: Summary::False,
        elements: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        applied: Vec::new(),
        ignored: Vec::new(),
    };
    for (name, value) in parameters {
        let applied = match name.as_str() {
            "_count" => {
                parsed.count = parse_count(value, context.limits)?;
                true
            }
            "_total" => {
                parsed.total = Some(match value.as_str() {
                    "none" => TotalMode::None,
                    "estimate" => TotalMode::Estimate,
                    "accurate" => TotalMode::Accurate,
                    _ => {
                        return Err(bad(
                            name,
                            format!("_total must be none, estimate or accurate, not '{value}'"),
                        ));
                    }
                });
                true
            }
            "_sort" => {
                parsed.sort = parse_sort(resource_type, value)?;
                true
            }
            "_summary" => {
                parsed.summary = match value.as_str() {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    _ => {
                        return Err(bad(
                            name,
                            format!(
                                "_summary must be true, text, data, count or false, not '{value}'"
                            ),
                        ));
                    }
                };
                true
            }
            "_elements" => {
                parsed.elements = value
                    .split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
                true
            }
            "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
                let include = parse_include(name, value)?;
                if name.starts_with("_include") {
                    parsed.includes.push(include);
                } else {
                    parsed.revincludes.push(include);
                }
                true
            }
            CURSOR_PARAMETER => {
                parsed.cursor = Some(value.clone());
                false
            }
            name if IGNORED_SILENTLY.contains(&name) => false,
            _ => match filter(resource_type, name, value, context)? {
                Some(filter) => {
                    parsed.filters.push(filter);
                    true
                }
                None if context.strict => {
                    return Err(bad(
                        name,
                        format!(
                            "Search parameter '{name}' is not supported for {resource_type} (Prefer: handling=strict)"
                        ),
                    ));
                }
                None => {
                    parsed.ignored.push(name.clone());
                    false
                }
            },
        };
        if applied {
            parsed.applied.push((name.clone(), value.clone()));
        }
    }
    Ok(parsed)
}

fn bad(parameter: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_parameter(parameter, message)
}

fn parse_count(value: &str, limits: PageLimits) -> ApiResult<i64> {
    match value.parse::<i64>() {
        Ok(count) if count >= 0 => Ok(count.min(limits.max)),
        _ => Err(bad(
            "_count",
            format!("_count must be a non-negative integer, not '{value}'"),
        )),
    }
}

fn parse_sort(resource_type: &str, value: &str) -> ApiResult<Vec<Sort>> {
    value
        .split(',')
        .map(|item| {
            let (descending, code) = match item.strip_prefix('-') {
                Some(code) => (true, code),
                None => (false, item),
            };
            let key = match code {
                "_id" => SortKey::Id,
                "_lastUpdated" => SortKey::LastUpdated,
                _ => {
                    let parameter = indexed_parameter(resource_type, code).ok_or_else(|| {
                        bad(
                            "_sort",
                            format!(
                                "Cannot sort {resource_type} by '{code}': no such search parameter"
                            ),
                        )
                    })?;
                    SortKey::Param {
                        param: code.to_string(),
                        kind: parameter.kind,
                    }
                }
            };
            Ok(Sort { key, descending })
        })
        .collect()
}

fn parse_include(name: &str, value: &str) -> ApiResult<Include> {
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, param, target_type) = match parts.as_slice() {
        [source, param] => (*source, *param, None),
        [source, param, target] => (*source, *param, Some(target.to_string())),
        _ => {
            return Err(bad(
                name,
                format!("'{value}' is not of the form SourceType:parameter[:TargetType]"),
            ));
        }
    };
    let parameter = indexed_parameter(source_type, param)
        .filter(|p| p.kind == IndexKind::Reference)
        .ok_or_else(|| {
            bad(
                name,
                format!("'{source_type}:{param}' is not a reference search parameter"),
            )
        })?;
    if let Some(target) = &target_type
        && !parameter.targets.iter().any(|t| t == target)
    {
        return Err(bad(
            name,
            format!("'{source_type}:{param}' cannot refer to {target}"),
        ));
    }
    Ok(Include {
        source_type: source_type.to_string(),
        param: param.to_string(),
        target_type,
        iterate: name.ends_with(":iterate"),
    })
}

/// The filter for one parameter occurrence, or `None` when this server does not support it.
fn filter(
    resource_type: &str,
    name: &str,
    value: &str,
    context: &SearchContext,
) -> ApiResult<Option<Filter>> {
    if let Some(rest) = name.strip_prefix("_has:") {
        return has(rest, name, value, context);
    }
    let (head, chained) = match name.split_once('.') {
        Some((head, chained)) => (head, Some(chained)),
        None => (name, None),
    };
    let (code, modifier) = match head.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (head, None),
    };
    if let Some(chained) = chained {
        return chain(resource_type, name, code, modifier, chained, value, context);
    }
    match (code, modifier) {
        ("_id", None) => return Ok(Some(Filter::Ids(split_values(name, value)?))),
        ("_lastUpdated", None) => {
            let values = split_values(name, value)?;
            let matches = values
                .iter()
                .map(|v| parse_date(name, v, context.zone))
                .collect::<ApiResult<_>>()?;
            return Ok(Some(Filter::LastUpdated(matches)));
        }
        _ => {}
    }
    let Some(parameter) = indexed_parameter(resource_type, code) else {
        return Ok(None);
    };
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(bad(
                    name,
                    format!("{name} takes true or false, not '{value}'"),
                ));
            }
        };
        return Ok(Some(Filter::Missing {
            param: code.to_string(),
            kind: parameter.kind,
            missing,
        }));
    }
    let Some((param, negate)) = modifier_target(parameter, modifier) else {
        return Ok(None);
    };
    let values = split_values(name, value)?
        .iter()
        .map(|v| value_match(parameter, modifier, name, v, context))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Some(Filter::Values {
        param,
        kind: parameter.kind,
        values,
        negate,
    }))
}

/// Which index rows a modifier searches (`:of-type` has its own rows) and whether it
/// negates; `None` for modifiers this parameter type does not take.
fn modifier_target(parameter: &IndexedParameter, modifier: Option<&str>) -> Option<(String, bool)> {
    let code = parameter.code.clone();
    match (parameter.kind, modifier) {
        (_, None) => Some((code, false)),
        (IndexKind::Token, Some("not")) => Some((code, true)),
        (IndexKind::Token, Some("text")) => Some((code, false)),
        (IndexKind::Token, Some("of-type")) if code == "identifier" => {
            Some((format!("{code}:of-type"), false))
        }
        (IndexKind::String, Some("exact" | "contains")) => Some((code, false)),
        (IndexKind::Reference, Some(target)) if parameter.targets.iter().any(|t| t == target) => {
            Some((code, false))
        }
        _ => None,
    }
}

fn value_match(
    parameter: &IndexedParameter,
    modifier: Option<&str>,
    name: &str,
    value: &str,
    context: &SearchContext,
) -> ApiResult<ValueMatch> {
    Ok(match parameter.kind {
        IndexKind::Token => match modifier {
            Some("text") => ValueMatch::TokenText(text::normalize(value)),
            Some("of-type") => {
                let parts: Vec<&str> = value.splitn(3, '|').collect();
                let [system, type_code, identifier] = parts.as_slice() else {
                    return Err(bad(
                        name,
                        format!("'{value}' is not of the form system|type-code|value"),
                    ));
                };
                ValueMatch::Token(TokenMatch::SystemAndCode(
                    system.to_string(),
                    format!("{type_code}|{identifier}"),
                ))
            }
            _ => ValueMatch::Token(parse_token(value)),
        },
        IndexKind::String => {
            let mode = match modifier {
                Some("exact") => StringMode::Exact,
                Some("contains") => StringMode::Contains,
                _ => StringMode::StartsWith,
            };
            let text_value = if mode == StringMode::Exact {
                value.to_string()
            } else {
                text::normalize(value)
            };
            ValueMatch::String(mode, text_value)
        }
        IndexKind::Date => ValueMatch::Date(parse_date(name, value, context.zone)?),
        IndexKind::Number => ValueMatch::Number(parse_number(name, value, false)?),
        IndexKind::Quantity => ValueMatch::Number(parse_number(name, value, true)?),
        IndexKind::Reference => {
            let target_type = modifier.map(str::to_string);
            ValueMatch::Reference(parse_reference(
                name,
                value,
                target_type,
                &context.base_url,
            )?)
        }
        IndexKind::Uri => ValueMatch::Uri(value.to_string()),
    })
}

/// `subject:Patient.identifier=x` or `subject.name=x` (the target type must then be
/// unambiguous among the parameter's targets).
fn chain(
    resource_type: &str,
    name: &str,
    code: &str,
    modifier: Option<&str>,
    chained: &str,
    value: &str,
    context: &SearchContext,
) -> ApiResult<Option<Filter>> {
    let Some(parameter) =
        indexed_parameter(resource_type, code).filter(|p| p.kind == IndexKind::Reference)
    else {
        return Ok(None);
    };
    let target_type = match modifier {
        Some(target) if parameter.targets.iter().any(|t| t == target) => target.to_string(),
        Some(target) => {
            return Err(bad(
                name,
                format!("{resource_type}.{code} cannot refer to {target}"),
            ));
        }
        None => {
            // Only the stored target types that define the chained parameter can match,
            // so `patient.gender` means Patient even though `patient` may name a Group.
            let chained_code = chained.split(['.', ':']).next().unwrap_or(chained);
            let stored: Vec<&String> = parameter
                .targets
                .iter()
                .filter(|t| super::definitions::registry().is_supported_resource(t))
                .filter(|t| defines_parameter(t, chained_code))
                .collect();
            match stored.as_slice() {
                [only] => only.to_string(),
                [] => return Ok(None),
                _ => {
                    return Err(bad(
                        name,
                        format!(
                            "{code} may refer to several types; name one, e.g. {code}:{}.{chained}",
                            stored[0]
                        ),
                    ));
                }
            }
        }
    };
    if !super::definitions::registry().is_supported_resource(&target_type) {
        return Ok(None);
    }
    let Some(inner) = filter(&target_type, chained, value, context)? else {
        return Ok(None);
    };
    Ok(Some(Filter::Chain {
        param: code.to_string(),
        target_type,
        inner: Box::new(inner),
    }))
}

/// Does `resource_type` have search parameter `code` (its own or a resource-level one)?
fn defines_parameter(resource_type: &str, code: &str) -> bool {
    code.starts_with('_') || indexed_parameter(resource_type, code).is_some()
}

/// `_has:Observation:patient:code=x` (the part after `_has:` is `rest`).
fn has(rest: &str, name: &str, value: &str, context: &SearchContext) -> ApiResult<Option<Filter>> {
    let mut parts = rest.splitn(3, ':');
    let (Some(source_type), Some(param), Some(inner_name)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(
            name,
            "_has takes the form _has:Type:reference-parameter:search-parameter",
        ));
    };
    if !super::definitions::registry().is_supported_resource(source_type) {
        return Ok(None);
    }
    if indexed_parameter(source_type, param).is_none_or(|p| p.kind != IndexKind::Reference) {
        return Err(bad(
            name,
            format!("'{source_type}:{param}' is not a reference search parameter"),
        ));
    }
    let Some(inner) = filter(source_type, inner_name, value, context)? else {
        return Ok(None);
    };
    Ok(Some(Filter::Has {
        source_type: source_type.to_string(),
        param: param.to_string(),
        inner: Box::new(inner),
    }))
}

/// Splits on unescaped commas (`\,` is a literal comma); empty values are refused.
fn split_values(name: &str, value: &str) -> ApiResult<Vec<String>> {
    let mut values = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                current.push(',');
                chars.next();
            }
            ',' => values.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    values.push(current);
    if values.iter().any(String::is_empty) {
        return Err(bad(name, format!("Parameter '{name}' has an empty value")));
    }
    Ok(values)
}

fn parse_token(value: &str) -> TokenMatch {
    match value.split_once('|') {
        None => TokenMatch::Code(value.to_string()),
        Some(("", code)) => TokenMatch::CodeWithoutSystem(code.to_string()),
        Some((system, "")) => TokenMatch::System(system.to_string()),
        Some((system, code)) => TokenMatch::SystemAndCode(system.to_string(), code.to_string()),
    }
}

fn parse_reference(
    name: &str,
    value: &str,
    target_type: Option<String>,
    base_url: &str,
) -> ApiResult<ReferenceMatch> {
    let local = value
        .strip_prefix(base_url)
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(value);
    if local.contains(':') {
        return Ok(ReferenceMatch::Url(value.to_string()));
    }
    let (found_type, id) = match local.split_once('/') {
        Some((found, id)) => (Some(found.to_string()), id),
        None => (None, local),
    };
    if let (Some(found), Some(wanted)) = (&found_type, &target_type)
        && found != wanted
    {
        return Err(bad(name, format!("'{value}' is not a {wanted} reference")));
    }
    if id.is_empty() || id.contains('/') {
        return Err(bad(
            name,
            format!("'{value}' is not a reference (Type/id, id, or a URL)"),
        ));
    }
    Ok(ReferenceMatch::Local {
        target_type: found_type.or(target_type),
        id: id.to_string(),
    })
}

fn parse_date(name: &str, value: &str, zone: Tz) -> ApiResult<DateMatch> {
    let (prefix, text_value) = Prefix::split(name, value)?;
    let (start, end) = date_range_in(&text_value, zone).ok_or_else(|| {
        bad(
            name,
            format!("'{text_value}' is not a valid FHIR date or dateTime (e.g. 2026, 2026-11, 2026-11-22, 2026-11-22T10:00:00+01:00)"),
        )
    })?;
    Ok(DateMatch { prefix, start, end })
}

/// The range `[low, high)` a number's written precision implies: 100 is [99.5, 100.5),
/// 1.50 is [1.495, 1.505). Exponents count as written (`1e2` is [50, 150)).
fn precision_range(text_value: &str, value: f64) -> (f64, f64) {
    let mantissa = text_value.split(['e', 'E']).next().unwrap_or(text_value);
    let exponent: i32 = text_value
        .split(['e', 'E'])
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len() as i32);
    let half_unit = 0.5 * 10f64.powi(exponent - decimals);
    (value - half_unit, value + half_unit)
}

fn parse_number(name: &str, value: &str, with_unit: bool) -> ApiResult<NumberMatch> {
    let (prefix, rest) = Prefix::split(name, value)?;
    let mut parts = rest.splitn(3, '|');
    let number_text = parts.next().unwrap_or_default();
    let number: f64 = number_text
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| bad(name, format!("'{number_text}' is not a number")))?;
    let system = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    let code = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    if !with_unit && (system.is_some() || code.is_some()) {
        return Err(bad(
            name,
            format!("{name} is a number; '{value}' has a unit"),
        ));
    }
    let (low, high) = precision_range(number_text, number);
    let canonical = match (&system, &code) {
        (Some(system), Some(code)) if system == ucum::SYSTEM => {
            ucum::canonical(code, number).map(|(v, unit)| {
                let factor = if number != 0.0 {
                    v / number
                } else {
                    ucum::canonical(code, 1.0).map_or(1.0, |c| c.0)
                };
                (v, low * factor, high * factor, unit.to_string())
            })
        }
        _ => None,
    };
    Ok(NumberMatch {
        prefix,
        value: number,
        low,
        high,
        system,
        code,
        canonical,
    })
}

/// The window `ap` allows around a date: 10% of its distance from `now`, at least a day.
pub fn approximate_window(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let distance = (now - start).abs();
    let margin = std::cmp::max(distance / 10, TimeDelta::days(1));
    (start - margin, end + margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> SearchContext {
        SearchContext {
            limits: PageLimits {
                default: 20,
                max: 100,
            },
            strict: false,
            base_url: "http://h/fhir".into(),
            zone: chrono_tz::UTC,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn only_filter(resource_type: &str, name: &str, value: &str) -> Filter {
        let parsed = parse(resource_type, &params(&[(name, value)]), &context()).unwrap();
        assert!(parsed.ignored.is_empty(), "{name} ignored");
        parsed.filters.into_iter().next().unwrap()
    }

    fn error_parameter(resource_type: &str, name: &str, value: &str) -> String {
        match parse(resource_type, &params(&[(name, value)]), &context()).unwrap_err() {
            ApiError::BadRequest(_, Some(parameter)) => parameter,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_parameters_are_ignored_or_refused_when_strict() {
        let query = params(&[("foo", "1"), ("_count", "5")]);
        let parsed = parse("Patient", &query, &context()).unwrap();
        assert_eq!(parsed.ignored, vec!["foo".to_string()]);
        assert_eq!(parsed.applied, params(&[("_count", "5")]));
        let strict = SearchContext {
            strict: true,
            ..context()
        };
        assert!(
            matches!(parse("Patient", &query, &strict), Err(ApiError::BadRequest(_, Some(ref p))) if p == "foo")
        );
    }

    #[test]
    fn malformed_values_name_the_parameter() {
        assert_eq!(
            error_parameter("Patient", "_lastUpdated", "xx2026"),
            "_lastUpdated"
        );
        assert_eq!(
            error_parameter("Patient", "birthdate", "1970-13"),
            "birthdate"
        );
        assert_eq!(
            error_parameter("Observation", "value-quantity", "zz5"),
            "value-quantity"
        );
        assert_eq!(
            error_parameter("Observation", "value-quantity", "gtfive"),
            "value-quantity"
        );
        assert_eq!(error_parameter("Patient", "_count", "-1"), "_count");
        assert_eq!(
            error_parameter("Patient", "gender:missing", "maybe"),
            "gender:missing"
        );
        assert_eq!(error_parameter("Patient", "_sort", "shoe-size"), "_sort");
        assert_eq!(
            error_parameter("Observation", "_include", "Observation:code"),
            "_include"
        );
    }

    #[test]
    fn references_in_every_form() {
        let expected = Filter::Values {
            param: "subject".into(),
            kind: IndexKind::Reference,
            values: vec![ValueMatch::Reference(ReferenceMatch::Local {
                target_type: Some("Patient".into()),
                id: "p1".into(),
            })],
            negate: false,
        };
        assert_eq!(
            only_filter("Observation", "subject", "Patient/p1"),
            expected
        );
        assert_eq!(
            only_filter("Observation", "subject:Patient", "p1"),
            expected
        );
        assert_eq!(
            only_filter("Observation", "subject", "http://h/fhir/Patient/p1"),
            expected
        );
        assert_eq!(
            only_filter("Observation", "subject", "https://other/fhir/Patient/p1"),
            Filter::Values {
                param: "subject".into(),
                kind: IndexKind::Reference,
                values: vec![ValueMatch::Reference(ReferenceMatch::Url(
                    "https://other/fhir/Patient/p1".into()
                ))],
                negate: false,
            }
        );
    }

    #[test]
    fn number_precision_and_units() {
        let Filter::Values { values, .. } = only_filter(
            "Observation",
            "value-quantity",
            "ge5.40|http://unitsofmeasure.org|mg",
        ) else {
            panic!()
        };
        let ValueMatch::Number(number) = &values[0] else {
            panic!()
        };
        assert_eq!(number.prefix, Prefix::Ge);
        assert!((number.low - 5.395).abs() < 1e-9 && (number.high - 5.405).abs() < 1e-9);
        let (value, _, _, unit) = number.canonical.clone().unwrap();
        assert_eq!(unit, "g");
        assert!((value - 0.0054).abs() < 1e-12);
        assert_eq!(precision_range("100", 100.0), (99.5, 100.5));
        assert_eq!(precision_range("1e2", 100.0), (50.0, 150.0));
    }

    #[test]
    fn approximate_dates_widen_with_distance_from_now() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc)
        };
        let (start, end) = (at("2026-02-01T00:00:00Z"), at("2026-02-02T00:00:00Z"));
        let (low, high) = approximate_window(start, end, at("2026-12-01T00:00:00Z"));
        assert_eq!((start - low).num_days(), 30);
        assert_eq!((high - end).num_days(), 30);
        let (low, _) = approximate_window(start, end, at("2026-02-03T00:00:00Z"));
        assert_eq!(start - low, TimeDelta::days(1));
    }

    #[test]
    fn chains_and_has() {
        let chained = only_filter("Observation", "subject:Patient.identifier", "KC1");
        assert!(
            matches!(chained, Filter::Chain { ref target_type, .. } if target_type == "Patient")
        );
        let has = only_filter("Patient", "_has:Observation:patient:code", "72514-3");
        assert!(
            matches!(has, Filter::Has { ref source_type, ref param, .. } if source_type == "Observation" && param == "patient")
        );
        assert_eq!(
            error_parameter("Patient", "_has:Observation:code:code", "1"),
            "_has:Observation:code:code"
        );
    }

    #[test]
    fn token_forms_and_modifiers() {
        assert_eq!(
            parse_token("a|b"),
            TokenMatch::SystemAndCode("a".into(), "b".into())
        );
        assert_eq!(parse_token("|b"), TokenMatch::CodeWithoutSystem("b".into()));
        assert_eq!(parse_token("a|"), TokenMatch::System("a".into()));
        assert_eq!(parse_token("b"), TokenMatch::Code("b".into()));
        assert!(matches!(
            only_filter("Patient", "gender:not", "male"),
            Filter::Values { negate: true, .. }
        ));
        assert!(
            matches!(only_filter("Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|42"),
            Filter::Values { ref param, .. } if param == "identifier:of-type")
        );
    }
}
