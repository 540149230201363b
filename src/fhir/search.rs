//! Parsing search requests: parameters, prefixes, modifiers and values into filters the
//! store executes, with the list of what was applied and what was ignored.

use chrono::{DateTime, Datelike, FixedOffset, Months, NaiveDate, TimeDelta, TimeZone, Utc};

use super::search_index::{IndexKind, indexed_parameter};
use crate::error::{ApiError, ApiResult};

/// One token value to match (`code`, `system|code`, `|code`, `system|`).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenMatch {
    Code(String),
    SystemAndCode(String, String),
    CodeWithoutSystem(String),
    System(String),
}

/// One reference value to match; `target_type` `None` matches any type.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceMatch {
    pub target_type: Option<String>,
    pub id: String,
}

/// How a stored instant is compared with a searched range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateComparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    StartsAfter,
    EndsBefore,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DateMatch {
    pub comparison: DateComparison,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One search parameter occurrence; values inside one filter are OR-ed, filters are AND-ed.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Ids(Vec<String>),
    LastUpdated(Vec<DateMatch>),
    Token {
        param: String,
        values: Vec<TokenMatch>,
    },
    Reference {
        param: String,
        values: Vec<ReferenceMatch>,
    },
}

/// How the total is reported (`_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    None,
    Accurate,
}

#[derive(Debug, Clone)]
pub struct ParsedSearch {
    pub filters: Vec<Filter>,
    pub count: i64,
    pub after_seq: Option<i64>,
    pub total: TotalMode,
    /// The parameters applied, as they go into `self` and `next` links.
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

/// Parameters with no effect on the result that are accepted silently.
const IGNORED_SILENTLY: &[&str] = &["_format", "_pretty"];
/// The keyset cursor this server puts in `next` links.
pub const CURSOR_PARAMETER: &str = "_cursor";

pub fn parse(
    resource_type: &str,
    parameters: &[(String, String)],
    limits: PageLimits,
    strict: bool,
    base_url: &str,
) -> ApiResult<ParsedSearch> {
    let mut parsed = ParsedSearch {
        filters: Vec::new(),
        count: limits.default,
        after_seq: None,
        total: TotalMode::Accurate,
        applied: Vec::new(),
        ignored: Vec::new(),
    };
    for (name, value) in parameters {
        let applied = match name.as_str() {
            "_count" => {
                parsed.count = parse_count(value, limits)?;
                true
            }
            "_total" => {
                parsed.total = match value.as_str() {
                    "none" => TotalMode::None,
                    "accurate" | "estimate" => TotalMode::Accurate,
                    _ => {
                        return Err(ApiError::bad_parameter(
                            "_total",
                            format!("_total must be none, estimate or accurate, not '{value}'"),
                        ));
                    }
                };
                true
            }
            CURSOR_PARAMETER => {
                parsed.after_seq = Some(value.parse().map_err(|_| {
                    ApiError::bad_parameter(
                        CURSOR_PARAMETER,
                        "The paging cursor is not valid; start again from the first page",
                    )
                })?);
                false
            }
            name if IGNORED_SILENTLY.contains(&name) => false,
            _ => match filter(resource_type, name, value, base_url)? {
                Some(filter) => {
                    parsed.filters.push(filter);
                    true
                }
                None if strict => {
                    return Err(ApiError::bad_parameter(
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

fn parse_count(value: &str, limits: PageLimits) -> ApiResult<i64> {
    match value.parse::<i64>() {
        Ok(count) if count >= 0 => Ok(count.min(limits.max)),
        _ => Err(ApiError::bad_parameter(
            "_count",
            format!("_count must be a non-negative integer, not '{value}'"),
        )),
    }
}

/// The kinds of parameter this server applies.
enum Kind {
    Ids,
    LastUpdated,
    Token,
    Reference(Option<String>),
}

fn kind(resource_type: &str, code: &str, modifier: Option<&str>) -> Option<Kind> {
    match (code, modifier) {
        ("_id", None) => Some(Kind::Ids),
        ("_lastUpdated", None) => Some(Kind::LastUpdated),
        _ => match (indexed_parameter(resource_type, code)?.kind, modifier) {
            (IndexKind::Token, None) => Some(Kind::Token),
            (IndexKind::Reference, None) => Some(Kind::Reference(None)),
            (IndexKind::Reference, Some(target))
                if target.starts_with(|c: char| c.is_ascii_uppercase()) =>
            {
                Some(Kind::Reference(Some(target.to_string())))
            }
            _ => None,
        },
    }
}

/// The filter for one parameter, or `None` when this server does not support it.
fn filter(
    resource_type: &str,
    name: &str,
    value: &str,
    base_url: &str,
) -> ApiResult<Option<Filter>> {
    let (code, modifier) = match name.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (name, None),
    };
    let Some(kind) = kind(resource_type, code, modifier) else {
        return Ok(None);
    };
    let values = split_values(value);
    if values.iter().any(String::is_empty) {
        return Err(ApiError::bad_parameter(
            name,
            format!("Parameter '{name}' has an empty value"),
        ));
    }
    Ok(Some(match kind {
        Kind::Ids => Filter::Ids(values),
        Kind::LastUpdated => Filter::LastUpdated(
            values
                .iter()
                .map(|v| parse_date_match(name, v))
                .collect::<ApiResult<_>>()?,
        ),
        Kind::Token => Filter::Token {
            param: code.to_string(),
            values: values.iter().map(|v| parse_token(v)).collect(),
        },
        Kind::Reference(target_type) => Filter::Reference {
            param: code.to_string(),
            values: values
                .iter()
                .map(|v| parse_reference(name, v, target_type.as_deref(), base_url))
                .collect::<ApiResult<_>>()?,
        },
    }))
}

/// Splits on unescaped commas; `\,` stands for a literal comma.
fn split_values(value: &str) -> Vec<String> {
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
    values
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
    target_type: Option<&str>,
    base_url: &str,
) -> ApiResult<ReferenceMatch> {
    let local = value
        .strip_prefix(base_url)
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(value);
    if local.contains("://") {
        return Err(ApiError::bad_parameter(
            name,
            format!(
                "'{value}' refers to another server; only references to this server can be searched"
            ),
        ));
    }
    let (found_type, id) = match local.split_once('/') {
        Some((resource_type, id)) => (Some(resource_type), id),
        None => (None, local),
    };
    if let (Some(found), Some(wanted)) = (found_type, target_type)
        && found != wanted
    {
        return Err(ApiError::bad_parameter(
            name,
            format!("'{value}' is not a {wanted} reference"),
        ));
    }
    Ok(ReferenceMatch {
        target_type: found_type.or(target_type).map(str::to_string),
        id: id.to_string(),
    })
}

fn parse_date_match(name: &str, value: &str) -> ApiResult<DateMatch> {
    let (comparison, text) = match value.get(..2) {
        Some(prefix) if prefix.chars().all(|c| c.is_ascii_lowercase()) => {
            let comparison = match prefix {
                "eq" => DateComparison::Eq,
                "ne" => DateComparison::Ne,
                "lt" => DateComparison::Lt,
                "le" => DateComparison::Le,
                "gt" => DateComparison::Gt,
                "ge" => DateComparison::Ge,
                "sa" => DateComparison::StartsAfter,
                "eb" => DateComparison::EndsBefore,
                _ => {
                    return Err(ApiError::bad_parameter(
                        name,
                        format!(
                            "'{prefix}' is not a supported prefix for {name} (eq, ne, lt, le, gt, ge, sa, eb)"
                        ),
                    ));
                }
            };
            (comparison, &value[2..])
        }
        _ => (DateComparison::Eq, value),
    };
    let (start, end) = date_range(text).ok_or_else(|| {
        ApiError::bad_parameter(
            name,
            format!("'{text}' is not a valid FHIR date or dateTime (e.g. 2026, 2026-11, 2026-11-22, 2026-11-22T10:00:00+01:00)"),
        )
    })?;
    Ok(DateMatch {
        comparison,
        start,
        end,
    })
}

/// The instant range `[start, end)` a date or dateTime of any precision stands for.
/// A time needs a zone; a date without one is taken in UTC.
pub fn date_range(text: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let utc_day =
        |date: NaiveDate| Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"));
    match text.len() {
        4 => {
            let year: i32 = text.parse().ok()?;
            let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
            Some((utc_day(start), utc_day(start.with_year(year + 1)?)))
        }
        7 => {
            let start = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
            Some((
                utc_day(start),
                utc_day(start.checked_add_months(Months::new(1))?),
            ))
        }
        10 => {
            let start = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some((utc_day(start), utc_day(start.succ_opt()?)))
        }
        _ => {
            let with_seconds = if text.as_bytes().get(16) == Some(&b':') {
                text.to_string()
            } else {
                // hh:mm precision: FHIR allows it in searches; treat as a one-minute range.
                let (head, zone) = text.split_at(16.min(text.len()));
                format!("{head}:00{zone}")
            };
            let at: DateTime<FixedOffset> = DateTime::parse_from_rfc3339(&with_seconds).ok()?;
            let precision = if text.as_bytes().get(16) == Some(&b':') {
                match text.find('.') {
                    Some(_) => TimeDelta::milliseconds(1),
                    None => TimeDelta::seconds(1),
                }
            } else {
                TimeDelta::minutes(1)
            };
            let start = at.with_timezone(&Utc);
            Some((start, start + precision))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PageLimits = PageLimits {
        default: 20,
        max: 100,
    };

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn date_ranges_follow_precision_and_zone() {
        let (start, end) = date_range("2026-11").unwrap();
        assert_eq!(start.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        let (start, end) = date_range("2026-11-22T10:00:00+02:00").unwrap();
        assert_eq!(start.to_rfc3339(), "2026-11-22T08:00:00+00:00");
        assert_eq!(end - start, TimeDelta::seconds(1));
        assert!(date_range("2026-13").is_none());
        assert!(date_range("yesterday").is_none());
    }

    #[test]
    fn unknown_parameters_are_ignored_or_refused_when_strict() {
        let query = params(&[("foo", "1"), ("_count", "5")]);
        let parsed = parse("Patient", &query, LIMITS, false, "http://h/fhir").unwrap();
        assert_eq!(parsed.ignored, vec!["foo".to_string()]);
        assert_eq!(parsed.applied, params(&[("_count", "5")]));
        let error = parse("Patient", &query, LIMITS, true, "http://h/fhir").unwrap_err();
        assert!(matches!(error, ApiError::BadRequest(_, Some(ref p)) if p == "foo"));
    }

    #[test]
    fn malformed_values_name_the_parameter() {
        let error = parse(
            "Patient",
            &params(&[("_lastUpdated", "xx2026")]),
            LIMITS,
            false,
            "http://h/fhir",
        )
        .unwrap_err();
        assert!(matches!(error, ApiError::BadRequest(_, Some(ref p)) if p == "_lastUpdated"));
        let error = parse(
            "Patient",
            &params(&[("_count", "-1")]),
            LIMITS,
            false,
            "http://h/fhir",
        )
        .unwrap_err();
        assert!(matches!(error, ApiError::BadRequest(_, Some(ref p)) if p == "_count"));
    }

    #[test]
    fn references_in_all_three_forms() {
        let base = "http://h/fhir";
        let local = parse_reference("subject", "Patient/p1", None, base).unwrap();
        let bare = parse_reference("subject:Patient", "p1", Some("Patient"), base).unwrap();
        let absolute = parse_reference("subject", "http://h/fhir/Patient/p1", None, base).unwrap();
        assert_eq!(local, bare);
        assert_eq!(local, absolute);
        assert!(
            parse_reference("subject", "http://elsewhere/fhir/Patient/p1", None, base).is_err()
        );
    }

    #[test]
    fn token_forms() {
        assert_eq!(
            parse_token("a|b"),
            TokenMatch::SystemAndCode("a".into(), "b".into())
        );
        assert_eq!(parse_token("|b"), TokenMatch::CodeWithoutSystem("b".into()));
        assert_eq!(parse_token("a|"), TokenMatch::System("a".into()));
        assert_eq!(parse_token("b"), TokenMatch::Code("b".into()));
    }
}
