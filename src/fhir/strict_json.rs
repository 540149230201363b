//! JSON parsing as FHIR needs it: an object with the same key twice is refused rather
//! than silently keeping the last value (RFC 8259 leaves the choice to the parser), and
//! documents deeper or larger than the limits are refused before they are built.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// How deep and how large a document may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nesting of objects and arrays (FHIR resources stay well under 30).
    pub max_depth: usize,
    /// Values of any kind, counted over the whole document.
    pub max_values: usize,
}

/// Parses `body`, refusing duplicate keys at any depth and documents beyond `limits`.
pub fn from_slice(body: &[u8], limits: Limits) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let values = Cell::new(0);
    let walker = Walker {
        limits,
        depth: 0,
        values: &values,
    };
    walker.deserialize(&mut deserializer)?;
    deserializer.end()?;
    serde_json::from_slice(body)
}

/// Walks a document without building it, failing at the first repeated key or limit.
#[derive(Clone, Copy)]
struct Walker<'a> {
    limits: Limits,
    depth: usize,
    values: &'a Cell<usize>,
}

impl Walker<'_> {
    fn count<E: de::Error>(&self) -> Result<(), E> {
        let seen = self.values.get() + 1;
        self.values.set(seen);
        if seen > self.limits.max_values {
            return Err(E::custom(format!(
                "the document has more than {} values",
                self.limits.max_values
            )));
        }
        Ok(())
    }

    fn nested<E: de::Error>(self) -> Result<Self, E> {
        self.count()?;
        if self.depth >= self.limits.max_depth {
            return Err(E::custom(format!(
                "the document nests deeper than {} levels",
                self.limits.max_depth
            )));
        }
        Ok(Walker {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(inner)?;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.count()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.count()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.count()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.count()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.count()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_depth: 4,
        max_values: 10,
    };

    fn parse(text: &str) -> serde_json::Result<Value> {
        from_slice(text.as_bytes(), LIMITS)
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse(r#"{"a": 1, "a": 2}"#).is_err());
        let nested = parse(r#"{"a": [{"b": {"c": 1, "c": 1}}]}"#).unwrap_err();
        assert!(
            nested.to_string().starts_with("duplicate key \"c\""),
            "{nested}"
        );
        assert!(parse(r#"{"a": {"b": 1}, "b": {"a": 1}}"#).is_ok());
    }

    #[test]
    fn values_come_back_as_sent() {
        let value = parse(r#"{"n": 1.50, "big": 123456789012345678901234567890}"#).unwrap();
        assert_eq!(value["n"].to_string(), "1.50");
        assert_eq!(value["big"].to_string(), "123456789012345678901234567890");
        assert!(parse("{} trailing").is_err());
    }

    #[test]
    fn depth_and_size_are_bounded() {
        assert!(parse("[[[[1]]]]").is_ok());
        let deep = parse("[[[[[1]]]]]").unwrap_err();
        assert!(
            deep.to_string()
                .starts_with("the document nests deeper than 4 levels"),
            "{deep}"
        );
        assert!(parse("[1, 2, 3, 4, 5, 6, 7, 8, 9]").is_ok());
        let large = parse("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]").unwrap_err();
        assert!(
            large
                .to_string()
                .starts_with("the document has more than 10 values"),
            "{large}"
        );
    }
}
