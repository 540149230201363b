//! Search checked against a naive oracle: a few hundred generated queries run through the
//! server (SQL over the index tables) and through a small in-memory filter written here
//! from the R4 search page (values read straight from the JSON with hand-written paths, and
//! matched with the spec's rules), and the two must return the same resources.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use ketamine_fhir::seed::{Dice, synthetic};
use reqwest::StatusCode;
use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;

use crate::helpers::{TestApp, json, match_ids, with_safety_override};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

// ---------------------------------------------------------------------------------------
// The fixture: a synthetic clinic plus resources at the edges of the rules.

fn edge_resources() -> Vec<Value> {
    let observation = |id: &str, effective: (&str, Value), value: Value| {
        let mut o = json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            "subject": {"reference": "Patient/edge-p1"}
        });
        o[effective.0] = effective.1;
        if value.is_null() {
            o["dataAbsentReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed"}]});
        } else {
            o["valueQuantity"] = value;
        }
        o
    };
    let kg = |v: f64, code: &str| json!({"value": v, "unit": code, "system": UCUM, "code": code});
    vec![
        json!({"resourceType": "Patient", "id": "edge-p1", "active": false, "gender": "female",
               "birthDate": "1970", "name": [{"family": "Müller", "given": ["Zoë"]}],
               "identifier": [{"system": "urn:edge", "value": "E-1"}]}),
        json!({"resourceType": "Patient", "id": "edge-p2", "gender": "male", "birthDate": "1985-06",
               "name": [{"family": "Smith-Jones", "given": ["José", "Luis"], "text": "José Luis Smith-Jones"}]}),
        json!({"resourceType": "Patient", "id": "edge-p3", "birthDate": "2001-12-31",
               "name": [{"family": "van der Berg"}], "identifier": [{"value": "no-system"}]}),
        json!({"resourceType": "Patient", "id": "edge-p4"}),
        observation(
            "edge-o1",
            ("effectiveDateTime", json!("2026-01-15")),
            kg(70.0, "kg"),
        ),
        observation(
            "edge-o2",
            ("effectiveDateTime", json!("2026-01-15T23:30:00-08:00")),
            kg(70000.0, "g"),
        ),
        observation(
            "edge-o3",
            ("effectiveDateTime", json!("2026-01-16T05:00:00+05:30")),
            kg(69.5, "kg"),
        ),
        observation(
            "edge-o4",
            (
                "effectivePeriod",
                json!({"start": "2025-12-31T22:00:00Z", "end": "2026-01-01T02:00:00Z"}),
            ),
            kg(70500000.0, "mg"),
        ),
        observation(
            "edge-o5",
            ("effectivePeriod", json!({"start": "2026-02-01T00:00:00Z"})),
            kg(71.0, "kg"),
        ),
        observation(
            "edge-o6",
            ("effectiveDateTime", json!("2026-03")),
            Value::Null,
        ),
        observation(
            "edge-o7",
            ("effectiveDateTime", json!("2026-01-15T12:00:00.250Z")),
            kg(100.0, "[lb_av]"),
        ),
    ]
}

fn fixture_resources() -> Vec<Value> {
    let mut all: Vec<Value> = (1..=14).flat_map(synthetic::patient_resources).collect();
    all.extend(edge_resources());
    all
}

// ---------------------------------------------------------------------------------------
// Values of each parameter, read from the JSON by hand.

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Token,
    String,
    Date,
    Quantity,
    Reference,
}

struct Parameter {
    resource_type: &'static str,
    code: &'static str,
    kind: Kind,
}

const PARAMETERS: &[Parameter] = &[
    Parameter {
        resource_type: "Patient",
        code: "gender",
        kind: Kind::Token,
    },
    Parameter {
        resource_type: "Patient",
        code: "active",
        kind: Kind::Token,
    },
    Parameter {
        resource_type: "Patient",
        code: "identifier",
        kind: Kind::Token,
    },
    Parameter {
        resource_type: "Patient",
        code: "family",
        kind: Kind::String,
    },
    Parameter {
        resource_type: "Patient",
        code: "given",
        kind: Kind::String,
    },
    Parameter {
        resource_type: "Patient",
        code: "birthdate",
        kind: Kind::Date,
    },
    Parameter {
        resource_type: "Observation",
        code: "code",
        kind: Kind::Token,
    },
    Parameter {
        resource_type: "Observation",
        code: "category",
        kind: Kind::Token,
    },
    Parameter {
        resource_type: "Observation",
        code: "status",
        kind: Kind::Token,
    },
    Parameter {
        resource_type: "Observation",
        code: "date",
        kind: Kind::Date,
    },
    Parameter {
        resource_type: "Observation",
        code: "value-quantity",
        kind: Kind::Quantity,
    },
    Parameter {
        resource_type: "Observation",
        code: "subject",
        kind: Kind::Reference,
    },
    Parameter {
        resource_type: "Observation",
        code: "part-of",
        kind: Kind::Reference,
    },
    Parameter {
        resource_type: "MedicationAdministration",
        code: "code",
        kind: Kind::Token,
    },
    Parameter {
        resource_type: "MedicationAdministration",
        code: "effective-time",
        kind: Kind::Date,
    },
    Parameter {
        resource_type: "MedicationAdministration",
        code: "patient",
        kind: Kind::Reference,
    },
];

fn array(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// `(system, code)` pairs of a token parameter.
fn tokens(resource: &Value, code: &str) -> Vec<(Option<String>, String)> {
    let codings = |concept: &Value| -> Vec<(Option<String>, String)> {
        array(&concept["coding"])
            .into_iter()
            .filter_map(|c| {
                Some((
                    c["system"].as_str().map(str::to_string),
                    c["code"].as_str()?.to_string(),
                ))
            })
            .collect()
    };
    match (resource["resourceType"].as_str().unwrap(), code) {
        ("Patient", "gender") | ("Observation", "status") => resource[code]
            .as_str()
            .map(|v| vec![(None, v.to_string())])
            .unwrap_or_default(),
        ("Patient", "active") => resource["active"]
            .as_bool()
            .map(|v| vec![(None, v.to_string())])
            .unwrap_or_default(),
        ("Patient", "identifier") => array(&resource["identifier"])
            .into_iter()
            .filter_map(|i| {
                Some((
                    i["system"].as_str().map(str::to_string),
                    i["value"].as_str()?.to_string(),
                ))
            })
            .collect(),
        ("Observation", "code") => codings(&resource["code"]),
        ("Observation", "category") => array(&resource["category"])
            .into_iter()
            .flat_map(codings)
            .collect(),
        ("MedicationAdministration", "code") => codings(&resource["medicationCodeableConcept"]),
        other => panic!("no token accessor for {other:?}"),
    }
}

fn strings(resource: &Value, code: &str) -> Vec<String> {
    let names = array(&resource["name"]);
    match code {
        "family" => names
            .iter()
            .filter_map(|n| n["family"].as_str())
            .map(str::to_string)
            .collect(),
        "given" => names
            .iter()
            .flat_map(|n| array(&n["given"]))
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        other => panic!("no string accessor for {other}"),
    }
}

/// `[start, end)` of a date, dateTime or instant as the spec's precision rules give it
/// (dates without a zone in UTC, the test server's clinic zone).
fn date_range(text: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap());
    match text.len() {
        4 => {
            let year: i32 = text.parse().ok()?;
            Some((
                midnight(NaiveDate::from_ymd_opt(year, 1, 1)?),
                midnight(NaiveDate::from_ymd_opt(year + 1, 1, 1)?),
            ))
        }
        7 => {
            let (year, month) = (text[..4].parse().ok()?, text[5..].parse().ok()?);
            let start = NaiveDate::from_ymd_opt(year, month, 1)?;
            let end = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            Some((midnight(start), midnight(end)))
        }
        10 => {
            let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some((midnight(day), midnight(day) + Duration::days(1)))
        }
        _ => {
            let at: DateTime<FixedOffset> = DateTime::parse_from_rfc3339(text).ok()?;
            let precision = match text.split_once('.') {
                Some((_, rest)) => {
                    let digits = rest.chars().take_while(char::is_ascii_digit).count() as u32;
                    Duration::nanoseconds(10i64.pow(9 - digits))
                }
                None => Duration::seconds(1),
            };
            let start = at.with_timezone(&Utc);
            Some((start, start + precision))
        }
    }
}

fn dates(resource: &Value, code: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let effective = |r: &Value| -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if let Some(text) = r["effectiveDateTime"].as_str() {
            return date_range(text).into_iter().collect();
        }
        let period = &r["effectivePeriod"];
        if period.is_object() {
            let start = period["start"].as_str().and_then(date_range).map(|r| r.0);
            let end = period["end"].as_str().and_then(date_range).map(|r| r.1);
            return vec![(
                start.unwrap_or(DateTime::<Utc>::MIN_UTC),
                end.unwrap_or(DateTime::<Utc>::MAX_UTC),
            )];
        }
        Vec::new()
    };
    match code {
        "birthdate" => resource["birthDate"]
            .as_str()
            .and_then(date_range)
            .into_iter()
            .collect(),
        "date" | "effective-time" => effective(resource),
        other => panic!("no date accessor for {other}"),
    }
}

/// Mass units in grams (the avoirdupois pound included); other units compare only with
/// themselves.
fn grams_per_unit(code: &str) -> Option<f64> {
    match code {
        "ug" => Some(1e-6),
        "mg" => Some(1e-3),
        "g" => Some(1.0),
        "kg" => Some(1e3),
        "[lb_av]" => Some(453.592_37),
        _ => None,
    }
}

fn quantities(resource: &Value) -> Vec<(f64, Option<String>, Option<String>)> {
    let q = &resource["valueQuantity"];
    q["value"]
        .as_f64()
        .map(|v| {
            vec![(
                v,
                q["system"].as_str().map(str::to_string),
                q["code"].as_str().map(str::to_string),
            )]
        })
        .unwrap_or_default()
}

fn references(resource: &Value, code: &str) -> Vec<String> {
    let field = match code {
        "subject" | "patient" => "subject",
        "part-of" => "partOf",
        other => panic!("no reference accessor for {other}"),
    };
    array(&resource[field])
        .into_iter()
        .filter_map(|r| r["reference"].as_str().map(str::to_string))
        .collect()
}

fn has_values(resource: &Value, parameter: &Parameter) -> bool {
    match parameter.kind {
        Kind::Token => !tokens(resource, parameter.code).is_empty(),
        Kind::String => !strings(resource, parameter.code).is_empty(),
        Kind::Date => !dates(resource, parameter.code).is_empty(),
        Kind::Quantity => !quantities(resource).is_empty(),
        Kind::Reference => !references(resource, parameter.code).is_empty(),
    }
}

// ---------------------------------------------------------------------------------------
// Matching, from the R4 search page.

fn normalized(text: &str) -> String {
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase()
}

fn prefix_of(value: &str) -> (&str, &str) {
    match value.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb")) => (p, &value[2..]),
        _ => ("eq", value),
    }
}

fn date_matches(value: &str, target: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    let (prefix, text) = prefix_of(value);
    let (a, b) = date_range(text).expect("generated dates parse");
    let (start, end) = target;
    let contained = start >= a && end <= b;
    match prefix {
        "eq" => contained,
        "ne" => !contained,
        "gt" => end > b,
        "lt" => start < a,
        "ge" => end > b || contained,
        "le" => start < a || contained,
        "sa" => start >= b,
        "eb" => end <= a,
        other => panic!("prefix {other}"),
    }
}

fn quantity_matches(value: &str, target: &(f64, Option<String>, Option<String>)) -> bool {
    let (prefix, rest) = prefix_of(value);
    let parts: Vec<&str> = rest.split('|').collect();
    let number_text = parts[0];
    let searched: f64 = number_text.parse().unwrap();
    let decimals = number_text
        .split_once('.')
        .map_or(0, |(_, f)| f.len() as i32);
    let half = 0.5 * 10f64.powi(-decimals);
    let (system, code) = (parts.get(1).copied(), parts.get(2).copied());
    let (mut stored, mut low, mut high, mut wanted) =
        (target.0, searched - half, searched + half, searched);
    if let Some(code) = code {
        let stored_code = target.2.as_deref().unwrap_or_default();
        match (grams_per_unit(code), grams_per_unit(stored_code), system) {
            (Some(searched_factor), Some(stored_factor), Some(UCUM)) => {
                stored *= stored_factor;
                low *= searched_factor;
                high *= searched_factor;
                wanted *= searched_factor;
            }
            _ => {
                if stored_code != code || system.is_some_and(|s| target.1.as_deref() != Some(s)) {
                    return false;
                }
            }
        }
    }
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    match prefix {
        "eq" => stored >= low && stored < high,
        "ne" => !(stored >= low && stored < high),
        "gt" | "sa" => stored > wanted && !close(stored, wanted),
        "lt" | "eb" => stored < wanted && !close(stored, wanted),
        "ge" => stored > wanted || close(stored, wanted),
        "le" => stored < wanted || close(stored, wanted),
        other => panic!("prefix {other}"),
    }
}

fn token_matches(value: &str, target: &(Option<String>, String)) -> bool {
    match value.split_once('|') {
        None => target.1 == value,
        Some(("", code)) => target.0.is_none() && target.1 == code,
        Some((system, "")) => target.0.as_deref() == Some(system),
        Some((system, code)) => target.0.as_deref() == Some(system) && target.1 == code,
    }
}

fn reference_matches(value: &str, target: &str) -> bool {
    if value.contains('/') {
        target == value
    } else {
        target.rsplit('/').next() == Some(value)
    }
}

/// Does `resource` satisfy `name=value` (one parameter occurrence, values OR-ed)?
fn satisfies(resource: &Value, parameter: &Parameter, modifier: Option<&str>, value: &str) -> bool {
    if modifier == Some("missing") {
        return (value == "true") != has_values(resource, parameter);
    }
    let any = |value: &str| -> bool {
        match parameter.kind {
            Kind::Token => tokens(resource, parameter.code)
                .iter()
                .any(|t| token_matches(value, t)),
            Kind::String => strings(resource, parameter.code)
                .iter()
                .any(|s| match modifier {
                    Some("exact") => s == value,
                    Some("contains") => normalized(s).contains(&normalized(value)),
                    _ => normalized(s).starts_with(&normalized(value)),
                }),
            Kind::Date => dates(resource, parameter.code)
                .into_iter()
                .any(|d| date_matches(value, d)),
            Kind::Quantity => quantities(resource)
                .iter()
                .any(|q| quantity_matches(value, q)),
            Kind::Reference => references(resource, parameter.code)
                .iter()
                .any(|r| reference_matches(value, r)),
        }
    };
    let matched = value.split(',').any(any);
    if modifier == Some("not") {
        !matched
    } else {
        matched
    }
}

// ---------------------------------------------------------------------------------------
// Generated queries.

/// One value for `parameter`, usually taken from a resource of the fixture so it matches
/// something, with a modifier where the type has them.
fn generate_value(
    dice: &mut Dice,
    parameter: &Parameter,
    pool: &[&Value],
) -> (Option<&'static str>, String) {
    let resource = *dice.pick(pool);
    match parameter.kind {
        Kind::Token => {
            let found = tokens(resource, parameter.code);
            let (system, code) = if found.is_empty() {
                (None, "unknown-code".to_string())
            } else {
                dice.pick(&found).clone()
            };
            let modifier = *dice.pick(&[None, None, None, Some("not"), Some("missing")]);
            if modifier == Some("missing") {
                return (modifier, dice.pick(&["true", "false"]).to_string());
            }
            let value = match (dice.below(4), system) {
                (0, Some(system)) => format!("{system}|{code}"),
                (1, Some(system)) => format!("{system}|"),
                (2, _) => format!("|{code}"),
                _ => code,
            };
            (modifier, value)
        }
        Kind::String => {
            let found = strings(resource, parameter.code);
            let text = if found.is_empty() {
                "zz".to_string()
            } else {
                dice.pick(&found).clone()
            };
            match dice.below(4) {
                0 => (Some("exact"), text),
                1 => {
                    let chars: Vec<char> = text.chars().collect();
                    let from = dice.below(chars.len().max(1));
                    let middle: String = chars.iter().skip(from).take(3).collect();
                    (Some("contains"), normalized(&middle).to_uppercase())
                }
                _ => {
                    let chars: Vec<char> = text.chars().collect();
                    let prefix: String = chars
                        .iter()
                        .take(1 + dice.below(chars.len().max(1)))
                        .collect();
                    (
                        None,
                        if dice.below(2) == 0 {
                            normalized(&prefix)
                        } else {
                            prefix
                        },
                    )
                }
            }
        }
        Kind::Date => {
            let found = dates(resource, parameter.code);
            let at = found
                .first()
                .map(|d| {
                    if d.0 == DateTime::<Utc>::MIN_UTC {
                        d.1 - Duration::hours(1)
                    } else {
                        d.0
                    }
                })
                .unwrap_or_else(|| Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap());
            let at = at + Duration::minutes(dice.below(3 * 24 * 60) as i64 - 36 * 60);
            let text = match dice.below(5) {
                0 => at.format("%Y").to_string(),
                1 => at.format("%Y-%m").to_string(),
                2 => at.format("%Y-%m-%d").to_string(),
                3 => at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                _ => at
                    .with_timezone(&FixedOffset::east_opt(-5 * 3600).unwrap())
                    .format("%Y-%m-%dT%H:%M:%S-05:00")
                    .to_string(),
            };
            let prefix = *dice.pick(&["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]);
            (None, format!("{prefix}{text}"))
        }
        Kind::Quantity => {
            let found = quantities(resource);
            let (value, _, code) =
                found
                    .first()
                    .cloned()
                    .unwrap_or((70.0, None, Some("kg".into())));
            let prefix = *dice.pick(&["", "eq", "ne", "gt", "lt", "ge", "le"]);
            let number = match dice.below(3) {
                0 => format!("{value}"),
                1 => format!("{:.1}", value + 0.04),
                _ => format!("{}", value.round() as i64 + dice.below(3) as i64 - 1),
            };
            let unit = match (dice.below(4), code.as_deref()) {
                (0, _) => String::new(),
                (1, Some("kg")) => format!("|{UCUM}|g"),
                (_, Some(code)) => format!("|{UCUM}|{code}"),
                (_, None) => String::new(),
            };
            let number = if unit.ends_with("|g") {
                format!("{}", value * 1000.0)
            } else {
                number
            };
            (None, format!("{prefix}{number}{unit}"))
        }
        Kind::Reference => {
            let found = references(resource, parameter.code);
            let target = found
                .first()
                .cloned()
                .unwrap_or_else(|| "Patient/nobody".into());
            let value = if dice.below(2) == 0 {
                target.rsplit('/').next().unwrap().to_string()
            } else {
                target
            };
            (None, value)
        }
    }
}

struct Query {
    resource_type: &'static str,
    /// `(parameter index, modifier, value)`, AND-ed.
    clauses: Vec<(usize, Option<&'static str>, String)>,
}

impl Query {
    fn url(&self) -> String {
        let mut pairs: Vec<(String, String)> = self
            .clauses
            .iter()
            .map(|(index, modifier, value)| {
                let code = PARAMETERS[*index].code;
                let name = match modifier {
                    Some(m) => format!("{code}:{m}"),
                    None => code.to_string(),
                };
                (name, value.clone())
            })
            .collect();
        pairs.push(("_count".into(), "500".into()));
        format!(
            "{}?{}",
            self.resource_type,
            serde_urlencoded::to_string(&pairs).unwrap()
        )
    }
}

fn generate_queries(count: usize, fixture: &[Value]) -> Vec<Query> {
    let mut dice = Dice(0x5EA2_C4E5);
    (0..count)
        .map(|_| {
            let first = dice.below(PARAMETERS.len());
            let resource_type = PARAMETERS[first].resource_type;
            let pool: Vec<&Value> = fixture
                .iter()
                .filter(|r| r["resourceType"] == resource_type)
                .collect();
            let of_type: Vec<usize> = (0..PARAMETERS.len())
                .filter(|i| PARAMETERS[*i].resource_type == resource_type)
                .collect();
            let mut clauses = Vec::new();
            for index in
                std::iter::once(first).chain((dice.below(3) == 0).then(|| *dice.pick(&of_type)))
            {
                let (modifier, mut value) = generate_value(&mut dice, &PARAMETERS[index], &pool);
                if modifier != Some("missing") && dice.below(4) == 0 {
                    let (other_modifier, other) =
                        generate_value(&mut dice, &PARAMETERS[index], &pool);
                    if other_modifier == modifier {
                        value = format!("{value},{other}");
                    }
                }
                clauses.push((index, modifier, value));
            }
            Query {
                resource_type,
                clauses,
            }
        })
        .collect()
}

fn expected(query: &Query, fixture: &[Value]) -> BTreeSet<String> {
    fixture
        .iter()
        .filter(|r| r["resourceType"] == query.resource_type)
        .filter(|r| {
            query
                .clauses
                .iter()
                .all(|(index, modifier, value)| satisfies(r, &PARAMETERS[*index], *modifier, value))
        })
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

async fn found(app: &TestApp, url: &str) -> BTreeSet<String> {
    let response = app.get(url).await;
    let status = response.status();
    let bundle = json(response).await;
    assert_eq!(status, StatusCode::OK, "{url}: {bundle}");
    assert!(
        bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next"),
        "{url}: more than one page"
    );
    match_ids(&bundle).into_iter().collect()
}

#[tokio::test]
async fn generated_queries_match_the_naive_oracle() {
    let app = TestApp::spawn().await;
    let fixture = fixture_resources();
    for resource in &fixture {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let response = app
            .put(&path, &with_safety_override(resource.clone()))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{path}: {}",
            response.text().await.unwrap()
        );
    }
    let queries = generate_queries(400, &fixture);
    let mut disagreements = Vec::new();
    let mut non_empty = 0;
    for query in &queries {
        let url = query.url();
        let want = expected(query, &fixture);
        let got = found(&app, &url).await;
        if !want.is_empty() {
            non_empty += 1;
        }
        if want != got {
            disagreements.push(format!(
                "{url}\n  only the server: {:?}\n  only the oracle: {:?}",
                got.difference(&want).collect::<Vec<_>>(),
                want.difference(&got).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} queries disagree:\n{}",
        disagreements.len(),
        queries.len(),
        disagreements.join("\n")
    );
    assert!(
        non_empty > queries.len() / 2,
        "only {non_empty} queries matched anything"
    );
}
