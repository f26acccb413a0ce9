//! Property tests of SPIFFE IDs (proptest).

#[path = "checks/spiffe_id.rs"]
mod spiffe_id_checks;

use meshid::{SpiffeId, TrustDomain};
use proptest::prelude::*;

fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,16}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

fn valid_id() -> impl Strategy<Value = String> {
    (trust_domain(), prop::collection::vec(segment(), 0..8)).prop_map(|(td, segs)| {
        let mut s = format!("spiffe://{td}");
        for seg in segs {
            s.push('/');
            s.push_str(&seg);
        }
        s
    })
}

/// Randomly uppercases letters of `s` (the scheme and trust domain of an ID, say).
fn mixed_case(s: String) -> impl Strategy<Value = String> {
    let n = s.len();
    prop::collection::vec(any::<bool>(), n).prop_map(move |flips| {
        s.chars()
            .zip(flips)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// Inputs near the valid set: `spiffe://` plus bytes drawn mostly from the characters
/// that matter to the rules.
fn near_id() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => prop::sample::select(b"abcXYZ019._-/".to_vec()),
        1 => prop::sample::select(b":@?#%. \0\n\xff\xc3".to_vec()),
        1 => any::<u8>(),
    ];
    (any::<bool>(), prop::collection::vec(byte, 0..40)).prop_map(|(upper, tail)| {
        let mut v = if upper {
            b"SPIFFE://".to_vec()
        } else {
            b"spiffe://".to_vec()
        };
        v.extend(tail);
        v
    })
}

proptest! {
    #[test]
    fn display_of_parse_is_identity(s in valid_id()) {
        let id = SpiffeId::new(&s).unwrap();
        prop_assert_eq!(id.to_string(), s.clone());
        let shown = id.to_string();
        prop_assert_eq!(SpiffeId::new(&shown).unwrap(), id);
    }

    #[test]
    fn from_segments_round_trips(td in trust_domain(), segs in prop::collection::vec(segment(), 0..8)) {
        let td = TrustDomain::new(&td).unwrap();
        let id = SpiffeId::from_segments(&td, &segs).unwrap();
        prop_assert_eq!(id.segments().collect::<Vec<_>>(), segs.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(id.trust_domain(), td.clone());
        prop_assert_eq!(SpiffeId::from_segments(&td, id.segments()).unwrap(), id);
    }

    #[test]
    fn normalize_is_idempotent_and_keeps_the_path(
        (td, path, mixed) in (trust_domain(), prop::collection::vec(segment(), 0..5))
            .prop_flat_map(|(td, segs)| {
                let path: String = segs.iter().flat_map(|s| ["/", s.as_str()]).collect();
                (Just(td.clone()), Just(path), mixed_case(format!("spiffe://{td}")))
            })
    ) {
        let input = format!("{mixed}{path}");
        let n = SpiffeId::normalize(&input).unwrap();
        prop_assert_eq!(n.as_str(), format!("spiffe://{td}{path}"));
        prop_assert_eq!(SpiffeId::normalize(n.as_str()).unwrap(), n.clone());
        prop_assert_eq!(n.path(), path.as_str());
        // Strict parsing accepts the input exactly when normalization had nothing to do.
        prop_assert_eq!(SpiffeId::new(&input).is_ok(), input == n.as_str());
    }

    #[test]
    fn every_invariant_holds_near_the_valid_set(input in near_id()) {
        spiffe_id_checks::check(&input);
    }

    #[test]
    fn every_invariant_holds_on_arbitrary_bytes(
        scheme in prop::sample::select(vec![&b""[..], b"spiffe://", b"SPIFFE://", b"spiffe://td/"]),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let input = [scheme, &tail[..]].concat();
        spiffe_id_checks::check(&input);
    }
}
