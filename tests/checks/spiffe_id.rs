//! Invariants of SPIFFE ID parsing, checked on arbitrary input.
//!
//! Shared, by `#[path]`, between the `spiffe_id` fuzz target (`fuzz/fuzz_targets/`) and the
//! tests that replay its corpus and run it under proptest, so the fuzzer and `cargo test`
//! check the same things.
//! It panics (fails) on any broken invariant.

use meshid::authorize::{self, Authorizer, Refusal};
use meshid::{IdError, SpiffeId, TrustDomain, MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN};

/// A deliberately naive reading of SPIFFE-ID §2, written apart from the library's one-pass
/// validator: split the text, then test each part against the rules as worded.
pub fn reference_is_valid(input: &[u8]) -> bool {
    let Some(rest) = input.strip_prefix(b"spiffe://") else {
        return false;
    };
    if input.len() > MAX_ID_LEN {
        return false;
    }
    let (td, path) = match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, &rest[rest.len()..]),
    };
    let td_ok = !td.is_empty()
        && td.len() <= MAX_TRUST_DOMAIN_LEN
        && td
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(b));
    if !td_ok {
        return false;
    }
    if path.is_empty() {
        return true;
    }
    path[1..].split(|&b| b == b'/').all(|seg| {
        !seg.is_empty()
            && seg != b"."
            && seg != b".."
            && seg
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(b))
    })
}

/// Checks every invariant on `data`.
pub fn check(data: &[u8]) {
    let strict = SpiffeId::from_bytes(data);

    // The library agrees with the naive reading of the standard.
    assert_eq!(
        strict.is_ok(),
        reference_is_valid(data),
        "verdict differs from the reference on {data:?}: {strict:?}"
    );
    // The &str entry point agrees with the byte entry point.
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(SpiffeId::new(s), strict);
        assert_eq!(s.parse::<SpiffeId>(), strict);
    }

    match &strict {
        Ok(id) => {
            check_valid(data, id);
            check_authorizers(id);
        }
        Err(e) => check_error(data, e),
    }
    check_normalize(data, strict.as_ref().ok());
    check_trust_domain(data);
}

fn check_valid(data: &[u8], id: &SpiffeId) {
    // Strict parsing accepts only canonical text, so display is the input itself...
    assert_eq!(id.as_str().as_bytes(), data);
    assert_eq!(id.to_string().as_bytes(), data);
    // ... and parsing the display gives the same ID back.
    assert_eq!(&SpiffeId::new(id.as_str()).unwrap(), id);
    assert!(id.as_str().len() <= MAX_ID_LEN);

    // The parts put back together are the whole.
    let td = id.trust_domain();
    assert_eq!(td.name(), id.trust_domain_name());
    assert!(td.name().len() <= MAX_TRUST_DOMAIN_LEN);
    assert_eq!(format!("spiffe://{}{}", td.name(), id.path()), id.as_str());
    assert!(id.is_member_of(&td));
    assert_eq!(TrustDomain::new(td.name()).unwrap(), td);
    assert_eq!(td.id().as_str(), format!("spiffe://{}", td.name()));
    assert!(td.id().is_trust_domain_id());

    // from_segments round-trips, and so does joining one segment at a time.
    let segs: Vec<&str> = id.segments().collect();
    assert_eq!(id.is_trust_domain_id(), segs.is_empty());
    assert_eq!(&SpiffeId::from_segments(&td, &segs).unwrap(), id);
    let mut joined = td.id();
    for s in &segs {
        joined = joined.join(s).unwrap();
    }
    assert_eq!(&joined, id);
}

fn check_error(data: &[u8], e: &IdError) {
    // Offsets point into the input, at a byte that really breaks the rule named.
    match *e {
        IdError::BadTrustDomainChar { byte, offset }
        | IdError::BadPathChar { byte, offset }
        | IdError::PortOrUserinfo { byte, offset }
        | IdError::QueryOrFragment { byte, offset } => {
            assert_eq!(data.get(offset), Some(&byte), "{e:?} on {data:?}");
        }
        IdError::PercentEncoding { offset } => assert_eq!(data.get(offset), Some(&b'%')),
        IdError::EmptySegment { offset } => assert_eq!(data.get(offset), Some(&b'/')),
        IdError::DotSegment { offset } => assert_eq!(data.get(offset), Some(&b'.')),
        IdError::TrailingSlash => assert_eq!(data.last(), Some(&b'/')),
        IdError::TooLong { len } => assert!(len == data.len() && len > MAX_ID_LEN),
        IdError::Empty => assert!(data.is_empty()),
        IdError::BadScheme => assert!(!has_scheme_any_case(data)),
        IdError::SchemeNotLowercase => {
            assert!(has_scheme_any_case(data) && !data.starts_with(b"spiffe://"));
        }
        IdError::EmptyTrustDomain => assert!(matches!(data.get(9), None | Some(b'/'))),
        IdError::TrustDomainTooLong { len } => {
            assert!(len > MAX_TRUST_DOMAIN_LEN);
            assert_eq!(
                data.get(9..9 + len).map(|td| td.contains(&b'/')),
                Some(false)
            );
        }
        // Only trust-domain constructors say this, never a SPIFFE ID parser.
        IdError::PathInTrustDomain { .. } => panic!("{e:?} from a SPIFFE ID parser"),
        _ => panic!("unexpected {e:?}"),
    }
    // The message is one printable line.
    let msg = e.to_string();
    assert!(
        !msg.is_empty() && !msg.chars().any(char::is_control),
        "{msg:?}"
    );
}

fn has_scheme_any_case(data: &[u8]) -> bool {
    data.get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"spiffe://"))
}

/// The authorizers agree with the ID's own structure.
fn check_authorizers(id: &SpiffeId) {
    let td = id.trust_domain();
    assert!(authorize::any().authorize(id).is_ok());
    assert!(authorize::exact(id.clone()).authorize(id).is_ok());
    assert!(authorize::one_of([id.clone()]).authorize(id).is_ok());
    let member = authorize::member_of(td.clone()).authorize(id);
    let prefix = authorize::path_prefix(id.clone()).authorize(id);
    if id.is_trust_domain_id() {
        // A trust domain's own ID is never taken for a workload.
        assert_eq!(member.unwrap_err().refusal(), &Refusal::TrustDomainId);
        assert_eq!(prefix.unwrap_err().refusal(), &Refusal::TrustDomainId);
        return;
    }
    assert!(member.is_ok());
    assert!(prefix.is_ok());
    // Below the ID on a segment boundary: allowed; a sibling that merely shares the text as
    // a prefix: refused.
    if let Ok(child) = id.join("x") {
        assert!(authorize::path_prefix(id.clone()).authorize(&child).is_ok());
        assert!(authorize::exact(id.clone()).authorize(&child).is_err());
    }
    if let Ok(sibling) = SpiffeId::new(&format!("{id}x")) {
        assert!(authorize::path_prefix(id.clone())
            .authorize(&sibling)
            .is_err());
    }
    // Another trust domain is never a member.
    if let Ok(other) = SpiffeId::new(&format!("spiffe://{}x{}", td.name(), id.path())) {
        assert!(authorize::member_of(td).authorize(&other).is_err());
        assert!(authorize::path_prefix(id.clone())
            .authorize(&other)
            .is_err());
    }
}

fn check_normalize(data: &[u8], strict: Option<&SpiffeId>) {
    let Ok(n) = SpiffeId::normalize(data) else {
        // Whatever strict parsing accepts, normalization accepts too.
        assert!(
            strict.is_none(),
            "normalize refused what strict parsing accepted"
        );
        return;
    };
    // Normalization is idempotent and its output is strictly valid.
    assert_eq!(SpiffeId::normalize(n.as_str()).unwrap(), n);
    assert_eq!(SpiffeId::new(n.as_str()).unwrap(), n);
    // It agrees with strict parsing wherever that succeeds.
    if let Some(s) = strict {
        assert_eq!(s, &n);
    }
    // It changes only the letter case of the scheme and trust domain: same length, same
    // path bytes, and the same text ignoring ASCII case.
    assert_eq!(n.as_str().len(), data.len());
    assert!(n.as_str().as_bytes().eq_ignore_ascii_case(data));
    assert!(data.ends_with(n.path().as_bytes()));
}

fn check_trust_domain(data: &[u8]) {
    // Normalizing a trust domain lowercases it and then parses it strictly.
    let normalized = TrustDomain::normalize(data);
    assert_eq!(
        normalized.as_ref().ok(),
        std::str::from_utf8(&data.to_ascii_lowercase())
            .ok()
            .and_then(|s| TrustDomain::new(s).ok())
            .as_ref()
    );
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(td) = TrustDomain::new(s) {
        // Either a bare name or a trust-domain ID, and round-trips through both forms.
        assert!(s == td.name() || s == td.id().as_str(), "{s:?} -> {td:?}");
        let shown = td.to_string();
        assert_eq!(TrustDomain::new(&shown).unwrap(), td);
        assert_eq!(TrustDomain::new(td.id().as_str()).unwrap(), td);
    }
}
