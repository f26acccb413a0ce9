//! `serde` support (feature `serde`): both types are strings on the wire, validated strictly
//! on the way in.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use super::{SpiffeId, TrustDomain};

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One visitor for both types: a string, parsed by `T::from_str`.
struct StrVisitor<T>(std::marker::PhantomData<T>, &'static str);

impl<T> Visitor<'_> for StrVisitor<T>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor(std::marker::PhantomData, "a SPIFFE ID string"))
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor(
            std::marker::PhantomData,
            "a trust-domain name string",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
    #[serde(crate = "::serde")]
    struct Config {
        id: SpiffeId,
        td: TrustDomain,
    }

    #[test]
    fn string_form_round_trips() {
        let c = Config {
            id: SpiffeId::new("spiffe://example.org/web").unwrap(),
            td: TrustDomain::new("example.org").unwrap(),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"id":"spiffe://example.org/web","td":"example.org"}"#
        );
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
    }

    #[test]
    fn deserialize_validates_strictly() {
        let e = serde_json::from_str::<Config>(r#"{"id":"spiffe://example.org/","td":"a"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("must not end with '/'"), "{e}");
        let e = serde_json::from_str::<Config>(r#"{"id":"spiffe://a/b","td":"A"}"#).unwrap_err();
        assert!(e.to_string().contains("trust domain character"), "{e}");
        assert!(serde_json::from_str::<Config>(r#"{"id":7,"td":"a"}"#).is_err());
    }
}
