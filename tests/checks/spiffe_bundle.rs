//! Invariants of the bundle loaders (`SpiffeBundle::{parse, parse_jwks}`, `X509Bundle::{parse_pem,
//! parse_der, load}`), checked on arbitrary input.
//!
//! Shared, by `#[path]`, between the `spiffe_bundle` fuzz target (`fuzz/fuzz_targets/`)
//! and `tests/fuzz_corpus.rs`, which replays its corpus, so the fuzzer and `cargo test`
//! check the same things. Only meshid's public API is used (the fuzz crate depends on
//! nothing else). It panics (fails) on any broken invariant.

#![allow(dead_code)]

use meshid::{BundleError, BundleSource, SpiffeBundle, TrustDomain, X509Bundle};

/// Checks every invariant on `data`, read both as a SPIFFE bundle document and as an
/// X.509 bundle.
pub fn check(data: &[u8]) {
    let td = TrustDomain::new("domain.test").expect("valid trust domain");
    check_spiffe_bundle(&td, data);
    check_jwks(&td, data);
    check_x509_bundle(&td, data);
}

/// Invariants of `SpiffeBundle::parse_jwks` (the Workload API's JWK Sets, `use`
/// optional): no X.509 authority; where `parse` accepts the document too, every JWT
/// authority `parse` read is there; what it reads, written out, is a SPIFFE bundle `parse`
/// reads back unchanged.
pub fn check_jwks(td: &TrustDomain, data: &[u8]) {
    let jwks = SpiffeBundle::parse_jwks(td.clone(), data);
    if let (Ok(strict), Ok(jwks)) = (SpiffeBundle::parse(td.clone(), data), &jwks) {
        for a in strict.jwt_authorities() {
            assert!(jwks.jwt_authority(a.key_id()) == Some(a), "{a:?} lost");
        }
    }
    let bundle = match jwks {
        Ok(bundle) => bundle,
        Err(e) => return check_error(&e),
    };
    assert!(bundle.x509_authorities().is_empty());
    let json = bundle.to_json();
    let again = SpiffeBundle::parse(td.clone(), json.as_bytes())
        .unwrap_or_else(|e| panic!("own output refused ({e}): {json}"));
    assert_eq!(again, bundle);
}

/// Invariants of `SpiffeBundle::parse` on `data`.
pub fn check_spiffe_bundle(td: &TrustDomain, data: &[u8]) {
    let result = SpiffeBundle::parse(td.clone(), data);
    assert_eq!(
        SpiffeBundle::parse(td.clone(), data),
        result,
        "parse is not deterministic"
    );
    let bundle = match result {
        Ok(bundle) => bundle,
        Err(e) => return check_error(&e),
    };
    assert_eq!(bundle.trust_domain(), td);

    // Writing the bundle and reading it back gives the same bundle, field by field.
    let json = bundle.to_json();
    let again = SpiffeBundle::parse(td.clone(), json.as_bytes())
        .unwrap_or_else(|e| panic!("own output refused ({e}): {json}"));
    assert_eq!(again.x509_authorities(), bundle.x509_authorities());
    assert_eq!(again.jwt_authorities(), bundle.jwt_authorities());
    assert_eq!(again.sequence(), bundle.sequence());
    assert_eq!(again.refresh_hint(), bundle.refresh_hint());
    assert_eq!(again, bundle);
    // ... and the output is a fixed point.
    assert_eq!(again.to_json(), json);

    // The refresh hint is whole seconds (the document counts seconds).
    if let Some(hint) = bundle.refresh_hint() {
        assert_eq!(hint.subsec_nanos(), 0);
    }

    // JWT authorities: key IDs non-empty and unique, known key types, JWK re-readable.
    for (i, a) in bundle.jwt_authorities().iter().enumerate() {
        assert!(!a.key_id().is_empty());
        assert!(["EC", "RSA", "OKP"].contains(&a.key_type()), "{a:?}");
        assert!(a.to_json().contains("\"use\":\"jwt-svid\""), "{a:?}");
        assert!(
            bundle.jwt_authorities()[..i]
                .iter()
                .all(|b| b.key_id() != a.key_id()),
            "duplicate kid {a:?}"
        );
        assert_eq!(bundle.jwt_authority(a.key_id()), Some(a));
        let doc = format!("{{\"keys\":[{}]}}", a.to_json());
        let alone = SpiffeBundle::parse(td.clone(), doc.as_bytes()).expect("JWK alone");
        assert_eq!(alone.jwt_authorities(), std::slice::from_ref(a));
    }

    // Every X.509 authority is a well-formed certificate, and the X.509 part survives
    // PEM, DER and the trip through X509Bundle.
    let x509 = bundle.to_x509_bundle();
    assert_eq!(x509.authorities(), bundle.x509_authorities());
    let checked = X509Bundle::from_authorities(td.clone(), bundle.x509_authorities().to_vec())
        .unwrap_or_else(|e| panic!("authority is not a certificate: {e}"));
    assert_eq!(checked, x509);
    check_x509_round_trips(td, &x509);
    let back = SpiffeBundle::from_x509_bundle(&x509);
    assert_eq!(back.x509_authorities(), bundle.x509_authorities());
    assert!(back.jwt_authorities().is_empty());

    // As a source, the bundle answers for its own trust domain only.
    assert_eq!(bundle.x509_bundle(td), Some(x509));
    let other = TrustDomain::new("other.test").expect("valid trust domain");
    assert_eq!(bundle.x509_bundle(&other), None);
}

/// Invariants of the X.509 bundle loaders on `data`.
pub fn check_x509_bundle(td: &TrustDomain, data: &[u8]) {
    let pem = X509Bundle::parse_pem(td.clone(), data);
    let der = X509Bundle::parse_der(td.clone(), data);
    let load = X509Bundle::load(td.clone(), data);
    for result in [&pem, &der, &load] {
        match result {
            Ok(bundle) => {
                assert!(!bundle.is_empty(), "a loaded bundle has certificates");
                assert_eq!(bundle.trust_domain(), td);
                check_x509_round_trips(td, bundle);
            }
            Err(e) => check_error(e),
        }
    }
    // `load` is PEM or DER: when it accepts, one of the two gives the same bundle.
    if let Ok(loaded) = &load {
        assert!(
            pem.as_ref() == Ok(loaded) || der.as_ref() == Ok(loaded),
            "load accepted what neither parse_pem nor parse_der gives"
        );
    }
}

/// PEM, DER and SPIFFE-bundle round trips of an X.509 bundle.
fn check_x509_round_trips(td: &TrustDomain, bundle: &X509Bundle) {
    let pem = bundle.to_pem();
    let der: Vec<u8> = bundle
        .authorities()
        .iter()
        .flat_map(|c| c.to_vec())
        .collect();
    if bundle.is_empty() {
        assert!(pem.is_empty());
        assert_eq!(
            X509Bundle::parse_pem(td.clone(), pem.as_bytes()),
            Err(BundleError::NoCertificates)
        );
        assert_eq!(
            X509Bundle::parse_der(td.clone(), &der),
            Err(BundleError::NoCertificates)
        );
    } else {
        assert_eq!(
            X509Bundle::parse_pem(td.clone(), pem.as_bytes()).as_ref(),
            Ok(bundle)
        );
        assert_eq!(
            X509Bundle::load(td.clone(), pem.as_bytes()).as_ref(),
            Ok(bundle)
        );
        assert_eq!(X509Bundle::parse_der(td.clone(), &der).as_ref(), Ok(bundle));
        assert_eq!(X509Bundle::load(td.clone(), &der).as_ref(), Ok(bundle));
    }
    for cert in bundle.authorities() {
        assert!(bundle.contains(cert));
    }
    let json = SpiffeBundle::from_x509_bundle(bundle).to_json();
    let spiffe = SpiffeBundle::parse(td.clone(), json.as_bytes())
        .unwrap_or_else(|e| panic!("own output refused ({e}): {json}"));
    assert_eq!(&spiffe.to_x509_bundle(), bundle);
}

/// Every refusal explains itself, and counts what it says it counts.
fn check_error(e: &BundleError) {
    assert!(!e.to_string().is_empty());
    match e {
        BundleError::X5cCount { count, .. } => assert_ne!(*count, 1),
        BundleError::TooLarge { len } => assert!(*len > SpiffeBundle::MAX_INPUT_LEN),
        BundleError::DuplicateKeyId { first, index, .. } => assert!(first < index),
        _ => {}
    }
}
