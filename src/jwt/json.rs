//! A JSON object reader that refuses duplicate member names at every depth.
//!
//! `serde_json` keeps the last of two members with one name without a word. RFC 7515 §4
//! and RFC 7519 §4 allow that, but a token whose header says `"alg":"ES256","alg":"none"`
//! would then read differently to a parser that keeps the first; meshid refuses it. The
//! reader here is `serde_json`'s own parser (so syntax, UTF-8 and its nesting limit of 128
//! are its) driving a visitor that builds the same `Value` and stops at a repeated name.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// Why a part is not a JSON object.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum JsonFault {
    /// Not a JSON text (syntax, UTF-8, trailing bytes, too deep).
    Syntax,
    /// JSON, but not an object.
    NotAnObject,
    /// A member name repeated inside one object.
    Duplicate(String),
}

/// Reads `bytes` as one JSON object, refusing duplicate member names at any depth.
pub(super) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonFault> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (value, duplicate.into_inner()) {
        (_, Some(name)) => Err(JsonFault::Duplicate(name)),
        (Err(_), None) => Err(JsonFault::Syntax),
        (Ok(Value::Object(map)), None) => Ok(map),
        (Ok(_), None) => Err(JsonFault::NotAnObject),
    }
}

/// Deserializes one JSON value; records the first repeated member name and fails.
#[derive(Clone, Copy)]
struct Strict<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity; serde_json reports an overflowing number as an error.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            // One lookup: the slot is kept while the value is read.
            match members.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(self)?);
                }
                Entry::Occupied(member) => {
                    let name = member.key().clone();
                    let message = format!("duplicate member {name:?}");
                    *self.duplicate.borrow_mut() = Some(name);
                    return Err(de::Error::custom(message));
                }
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_read_as_serde_json_reads_them() {
        let text = br#" {"a":[1,-2,1.5,"x",null,true,{"b":{}}],"c":18446744073709551615} "#;
        let map = parse_object(text).unwrap();
        let reference: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(Value::Object(map), reference);
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        let dup = |s: &str| parse_object(s.as_bytes());
        assert_eq!(
            dup(r#"{"alg":"ES256","alg":"none"}"#),
            Err(JsonFault::Duplicate("alg".into()))
        );
        assert_eq!(
            dup(r#"{"a":[{"x":1,"x":1}]}"#),
            Err(JsonFault::Duplicate("x".into()))
        );
        // Escapes are decoded before names are compared.
        assert_eq!(
            dup(r#"{"sub":1,"\u0073ub":2}"#),
            Err(JsonFault::Duplicate("sub".into()))
        );
        assert!(dup(r#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
    }

    #[test]
    fn non_objects_and_garbage() {
        assert_eq!(parse_object(b"[]"), Err(JsonFault::NotAnObject));
        assert_eq!(parse_object(b"\"x\""), Err(JsonFault::NotAnObject));
        for bad in [
            &b""[..],
            b"{",
            b"{}x",
            b"{} {}",
            b"{\"a\":\xff}",
            b"{'a':1}",
        ] {
            assert_eq!(parse_object(bad), Err(JsonFault::Syntax), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let deep = format!(r#"{{"a":{deep}}}"#);
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonFault::Syntax));
    }
}
