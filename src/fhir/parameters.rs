//! Operation parameters sent as a `Parameters` body: each part's name and its one
//! primitive `value[x]` as text, the same pairs a query string gives.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The `(name, value)` pairs of a Parameters body; `not_parameters` is the message when the
/// body is another resource.
pub fn name_value_pairs(body: &Value, not_parameters: &str) -> ApiResult<Vec<(String, String)>> {
    if body["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(not_parameters));
    }
    let Some(parts) = body.get("parameter") else {
        return Ok(Vec::new());
    };
    let parts = parts.as_array().ok_or_else(|| {
        ApiError::bad_parameter(
            "Parameters.parameter",
            "Parameters.parameter must be an array",
        )
    })?;
    parts.iter().map(name_value).collect()
}

fn name_value(part: &Value) -> ApiResult<(String, String)> {
    let name = part["name"].as_str().ok_or_else(|| {
        ApiError::bad_parameter("Parameters.parameter.name", "Every parameter needs a name")
    })?;
    let values: Vec<&Value> = part
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.starts_with("value"))
        .map(|(_, value)| value)
        .collect();
    let text = match values.as_slice() {
        [Value::String(text)] => text.clone(),
        [Value::Number(number)] => number.to_string(),
        _ => {
            return Err(ApiError::bad_parameter(
                name,
                format!(
                    "The parameter '{name}' needs one primitive value[x] (valueString, valueDate, valueInteger, ...)"
                ),
            ));
        }
    };
    Ok((name.to_string(), text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairs(body: Value) -> ApiResult<Vec<(String, String)>> {
        name_value_pairs(&body, "not Parameters")
    }

    #[test]
    fn each_part_gives_its_name_and_value() {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "start", "valueDate": "2026-01-01"},
            {"name": "_type", "valueCode": "Observation"},
            {"name": "_count", "valueInteger": 5}
        ]});
        let expected: Vec<(String, String)> = [
            ("start", "2026-01-01"),
            ("_type", "Observation"),
            ("_count", "5"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .into();
        assert_eq!(pairs(body).unwrap(), expected);
        assert_eq!(pairs(json!({"resourceType": "Parameters"})).unwrap(), []);
    }

    #[test]
    fn malformed_bodies_are_400() {
        for bad in [
            json!({"resourceType": "Patient"}),
            json!({"resourceType": "Parameters", "parameter": {"name": "start"}}),
            json!({"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}),
            json!({"resourceType": "Parameters", "parameter": [{"name": "start"}]}),
            json!({"resourceType": "Parameters", "parameter": [{"name": "c", "resource": {}}]}),
            json!({"resourceType": "Parameters", "parameter": [{"name": "c", "valueId": "a", "valueString": "b"}]}),
        ] {
            assert!(
                matches!(pairs(bad.clone()), Err(ApiError::BadRequest(..))),
                "{bad}"
            );
        }
        let Err(ApiError::BadRequest(text, _)) = pairs(json!({"resourceType": "Patient"})) else {
            panic!("a Patient body is refused");
        };
        assert_eq!(text, "not Parameters");
    }
}
