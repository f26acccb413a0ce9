//! Bundles against the go-spiffe reference vectors (`tests/data/go-spiffe/{x509bundle,
//! spiffebundle}/`, verdicts from upstream `bundle/x509bundle/bundle_test.go` and
//! `bundle/spiffebundle/bundle_test.go`), DESIGN rule 16 negative cases, round trips,
//! and hostile inputs.

use std::time::Duration;

use der::Decode;
use meshid::{
    BundleError, BundleSet, BundleSource, PemError, SpiffeBundle, TrustDomain, X509Bundle,
};
use rustls_pki_types::CertificateDer;

const X509_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/go-spiffe/x509bundle"
);
const SPIFFE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/go-spiffe/spiffebundle"
);

fn x509_vector(name: &str) -> Vec<u8> {
    std::fs::read(format!("{X509_DIR}/{name}")).unwrap()
}

fn spiffe_vector(name: &str) -> Vec<u8> {
    std::fs::read(format!("{SPIFFE_DIR}/{name}")).unwrap()
}

fn td() -> TrustDomain {
    TrustDomain::new("domain.test").unwrap()
}

fn parse(json: &str) -> Result<SpiffeBundle, BundleError> {
    SpiffeBundle::parse(td(), json.as_bytes())
}

// ---------------------------------------------------------------------------------------
// go-spiffe x509bundle vectors (upstream TestParse / TestLoad / TestMarshal)
// ---------------------------------------------------------------------------------------

#[test]
fn x509bundle_vectors_match_go_spiffe() {
    // Both entry points must give the upstream verdict: `parse_pem` and `load` (PEM or DER).
    type Loader = fn(TrustDomain, &[u8]) -> Result<X509Bundle, BundleError>;
    let loaders: [(&str, Loader); 2] = [
        ("parse_pem", X509Bundle::parse_pem),
        ("load", X509Bundle::load),
    ];
    for (name, load) in loaders {
        let ok = |file: &str| {
            load(td(), &x509_vector(file)).unwrap_or_else(|e| panic!("{name} {file}: {e}"))
        };
        let err = |file: &str| load(td(), &x509_vector(file)).unwrap_err();

        // upstream: "Parse multiple certificates should succeed", 2 authorities.
        assert_eq!(ok("certs.pem").authorities().len(), 2, "{name}");
        // upstream: "Parse single certificate should succeed", 1 authority.
        assert_eq!(ok("cert.pem").authorities().len(), 1, "{name}");
        // upstream: "Parse empty bytes should fail": "x509bundle: no certificates found".
        assert_eq!(err("empty.pem"), BundleError::NoCertificates, "{name}");
        // upstream: "Parse non-PEM bytes should fail": "cannot parse certificate: no PEM
        // data found while decoding block".
        assert_eq!(
            err("not-pem.pem"),
            BundleError::Pem(PemError::NoBlocks),
            "{name}"
        );
        // upstream: "Parse should fail if no certificate block is found": "x509bundle: no
        // certificates found". Refused here too, naming the block that is not one.
        assert_eq!(
            err("key.pem"),
            BundleError::UnexpectedPemBlock {
                index: 0,
                label: "PRIVATE KEY".into()
            },
            "{name}"
        );
        // upstream: "Parse a corrupted certificate should fail": "x509bundle: cannot parse
        // certificate".
        assert!(
            matches!(
                err("corrupted.pem"),
                BundleError::BadCertificate { index: 0, .. }
            ),
            "{name}"
        );
    }
}

#[test]
fn x509bundle_marshal_gives_the_file_back() {
    // upstream TestMarshal: Marshal of certs.pem equals the file's bytes.
    let bytes = x509_vector("certs.pem");
    let bundle = X509Bundle::load(td(), &bytes).unwrap();
    assert_eq!(bundle.to_pem().as_bytes(), &bytes[..]);
    // DER round trip too.
    let der: Vec<u8> = bundle
        .authorities()
        .iter()
        .flat_map(|c| c.to_vec())
        .collect();
    assert_eq!(X509Bundle::parse_der(td(), &der).unwrap(), bundle);
    assert_eq!(X509Bundle::load(td(), &der).unwrap(), bundle);
}

#[test]
fn x509bundle_authorities_and_equality() {
    // upstream TestX509AuthorityCRUD: certs.pem holds cert.pem's certificate (first).
    let one = X509Bundle::load(td(), &x509_vector("cert.pem")).unwrap();
    let two = X509Bundle::load(td(), &x509_vector("certs.pem")).unwrap();
    assert!(two.contains(&one.authorities()[0]));
    assert_eq!(two.authorities()[0], one.authorities()[0]);
    assert!(!one.contains(&two.authorities()[1]));
    // Adding an authority already present keeps one copy (upstream AddX509Authority).
    let again = X509Bundle::from_authorities(
        td(),
        [
            two.authorities()[1].clone(),
            two.authorities()[0].clone(),
            two.authorities()[1].clone(),
        ],
    )
    .unwrap();
    assert_eq!(again.authorities().len(), 2);
    // upstream TestEqual: same trust domain and authorities are equal; others are not.
    assert_eq!(X509Bundle::new(td()), X509Bundle::new(td()));
    assert_ne!(
        X509Bundle::new(td()),
        X509Bundle::new(TrustDomain::new("domain2.test").unwrap())
    );
    assert_ne!(one, two);
    assert_ne!(X509Bundle::new(td()), one);
    // Every authority is a certificate.
    for cert in two.authorities() {
        x509_cert::Certificate::from_der(cert.as_ref()).unwrap();
    }
    // upstream TestGetX509BundleForTrustDomain: only its own trust domain.
    assert_eq!(two.x509_bundle(&td()), Some(two.clone()));
    assert_eq!(
        two.x509_bundle(&TrustDomain::new("another-td.org").unwrap()),
        None
    );
}

// ---------------------------------------------------------------------------------------
// go-spiffe spiffebundle vectors (upstream TestParse with checkBundleProperties)
// ---------------------------------------------------------------------------------------

#[test]
fn spiffebundle_vectors_match_go_spiffe() {
    let read = |file: &str| SpiffeBundle::parse(td(), &spiffe_vector(file));

    // upstream: valid_1, keysCount 1 (JWT authorities), no hint or sequence checked.
    let b = read("spiffebundle_valid_1.json").unwrap();
    assert_eq!(b.jwt_authorities().len(), 1);
    assert_eq!(
        b.jwt_authorities()[0].key_id(),
        "C6vs25welZOx6WksNYfbMfiw9l96pMnD"
    );
    assert_eq!(b.x509_authorities().len(), 1);
    assert_eq!((b.sequence(), b.refresh_hint()), (None, None));

    // upstream: valid_2, keysCount 6, refreshHint 60 s, sequenceNumber 1.
    let b = read("spiffebundle_valid_2.json").unwrap();
    assert_eq!(b.jwt_authorities().len(), 6);
    assert_eq!(b.x509_authorities().len(), 1);
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(60)));
    assert_eq!(b.sequence(), Some(1));

    // upstream: missing_kid, "spiffebundle: error adding authority 1 of JWKS: keyID cannot
    // be empty".
    assert_eq!(
        read("spiffebundle_missing_kid.json"),
        Err(BundleError::MissingKeyId { index: 1 })
    );

    // upstream: no_keys, "spiffebundle: no authorities found" (`keys` MUST be present).
    assert_eq!(
        read("spiffebundle_no_keys.json"),
        Err(BundleError::MissingKeys)
    );

    // upstream: multiple_x509, "spiffebundle: expected a single certificate in x509-svid
    // entry 0; got 2".
    assert_eq!(
        read("spiffebundle_multiple_x509.json"),
        Err(BundleError::X5cCount { index: 0, count: 2 })
    );

    // upstream: valid_with_wit, keysCount 2, witKeysCount 2, refreshHint 60 s, sequence 1.
    // meshid reads no WIT authorities: `wit-svid` is an unknown use here, and entries of an
    // unknown use are ignored (SPIFFE Trust Domain and Bundle §4.2.2). The JWT count, the
    // hint and the sequence match.
    let b = read("spiffebundle_valid_with_wit.json").unwrap();
    assert_eq!(b.jwt_authorities().len(), 2);
    assert_eq!(b.x509_authorities().len(), 1);
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(60)));
    assert_eq!(b.sequence(), Some(1));

    // upstream TestParse on a missing file (empty bytes): "unable to parse JWKS: unexpected
    // end of JSON input".
    assert!(matches!(
        SpiffeBundle::parse(td(), b""),
        Err(BundleError::JsonTruncated { .. })
    ));
}

#[test]
fn spiffebundle_json_round_trips() {
    // upstream TestMarshal: Parse(Marshal(b)) equals b.
    for file in [
        "spiffebundle_valid_1.json",
        "spiffebundle_valid_2.json",
        "spiffebundle_valid_with_wit.json",
    ] {
        let b = SpiffeBundle::parse(td(), &spiffe_vector(file)).unwrap();
        let json = b.to_json();
        let again = SpiffeBundle::parse(td(), json.as_bytes()).unwrap();
        assert_eq!(again, b, "{file}");
        assert_eq!(again.to_json(), json, "{file}");
        assert_eq!(again.sequence(), b.sequence());
        assert_eq!(again.refresh_hint(), b.refresh_hint());
    }
}

#[test]
fn spiffebundle_and_x509bundle_convert() {
    // upstream TestFromX509Bundle / TestX509Bundle.
    let x = X509Bundle::load(td(), &x509_vector("certs.pem")).unwrap();
    let s = SpiffeBundle::from_x509_bundle(&x);
    assert_eq!(s.x509_authorities(), x.authorities());
    assert_eq!(s.to_x509_bundle(), x);
    let again = SpiffeBundle::parse(td(), s.to_json().as_bytes()).unwrap();
    assert_eq!(again.to_x509_bundle(), x);
    // The RSA authorities are written with their JWK key members.
    assert!(s.to_json().contains(r#""kty":"RSA""#));
    assert!(s.to_json().contains(r#""e":"AQAB""#));
    // upstream TestGetX509BundleForTrustDomain.
    assert_eq!(s.x509_bundle(&td()), Some(x));
    assert_eq!(
        s.x509_bundle(&TrustDomain::new("domain2.test").unwrap()),
        None
    );
}

// ---------------------------------------------------------------------------------------
// BundleSet
// ---------------------------------------------------------------------------------------

#[test]
fn bundle_set_is_keyed_by_trust_domain() {
    let a = TrustDomain::new("a.test").unwrap();
    let b = TrustDomain::new("b.test").unwrap();
    let one = X509Bundle::load(a.clone(), &x509_vector("cert.pem")).unwrap();
    let two = X509Bundle::load(b.clone(), &x509_vector("certs.pem")).unwrap();
    let set: BundleSet = [one.clone(), two.clone()].into_iter().collect();
    assert_eq!(set.len(), 2);
    // Each trust domain gets exactly its own roots: the set never merges them.
    let source: &dyn BundleSource = &set;
    assert_eq!(source.x509_bundle(&a).unwrap().authorities().len(), 1);
    assert_eq!(source.x509_bundle(&b).unwrap().authorities().len(), 2);
    assert_eq!(
        source.x509_bundle(&TrustDomain::new("c.test").unwrap()),
        None
    );
    // The same certificates under another trust domain are another bundle.
    let mut set = set;
    let replaced = set.insert(X509Bundle::load(a.clone(), &x509_vector("certs.pem")).unwrap());
    assert_eq!(replaced, Some(one));
    assert_eq!(set.len(), 2);
    assert_eq!(set.get(&a).unwrap().authorities(), two.authorities());
    assert_ne!(set.get(&a), set.get(&b));
    assert_eq!(set.iter().count(), 2);
    // A later bundle of the same trust domain replaces the earlier one when collecting.
    let set: BundleSet = [two.clone(), X509Bundle::new(b.clone())]
        .into_iter()
        .collect();
    assert!(set.get(&b).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// DESIGN rule 16 and SPIFFE Trust Domain and Bundle §4, built inline
// ---------------------------------------------------------------------------------------

fn ec_cert_b64() -> String {
    let doc: serde_json::Value =
        serde_json::from_slice(&spiffe_vector("spiffebundle_valid_1.json")).unwrap();
    doc["keys"][0]["x5c"][0].as_str().unwrap().to_owned()
}

const JWT_EC: &str = r#""use":"jwt-svid","kty":"EC","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM""#;

fn one_key(entry: &str) -> Result<SpiffeBundle, BundleError> {
    parse(&format!(r#"{{"keys":[{entry}]}}"#))
}

#[test]
fn keys_is_required_but_may_be_empty() {
    assert!(parse(r#"{"keys":[]}"#).unwrap().is_empty());
    assert_eq!(parse("{}"), Err(BundleError::MissingKeys));
    assert_eq!(parse(r#"{"keys":null}"#), Err(BundleError::MissingKeys));
    assert_eq!(parse(r#"{"keys":"x"}"#), Err(BundleError::KeysNotArray));
    assert_eq!(parse(r#"{"keys":{}}"#), Err(BundleError::KeysNotArray));
    assert_eq!(
        parse(r#"{"keys":[1]}"#),
        Err(BundleError::KeyNotObject { index: 0 })
    );
    assert_eq!(parse(r#""keys""#), Err(BundleError::NotAnObject));
}

#[test]
fn x509_entries_hold_exactly_one_certificate() {
    let cert = ec_cert_b64();
    let x509 = |x5c: &str| one_key(&format!(r#"{{"use":"x509-svid","kty":"EC","x5c":{x5c}}}"#));
    assert_eq!(
        x509(&format!(r#"["{cert}"]"#))
            .unwrap()
            .x509_authorities()
            .len(),
        1
    );
    assert_eq!(
        x509("[]"),
        Err(BundleError::X5cCount { index: 0, count: 0 })
    );
    assert_eq!(
        x509("null"),
        Err(BundleError::X5cCount { index: 0, count: 0 })
    );
    assert_eq!(
        one_key(r#"{"use":"x509-svid","kty":"EC"}"#),
        Err(BundleError::X5cCount { index: 0, count: 0 })
    );
    assert_eq!(
        x509(&format!(r#"["{cert}","{cert}"]"#)),
        Err(BundleError::X5cCount { index: 0, count: 2 })
    );
    assert_eq!(
        x509(&format!(r#""{cert}""#)),
        Err(BundleError::WrongType {
            index: 0,
            member: "x5c"
        })
    );
    assert_eq!(
        x509("[7]"),
        Err(BundleError::WrongType {
            index: 0,
            member: "x5c"
        })
    );
    // Standard padded base64 only: not base64url, not unpadded, no whitespace.
    let url = cert.replace('+', "-").replace('/', "_");
    assert_ne!(url, cert);
    assert_eq!(
        x509(&format!(r#"["{url}"]"#)),
        Err(BundleError::BadX5cBase64 { index: 0 })
    );
    let unpadded = cert.trim_end_matches('=');
    assert_ne!(unpadded, cert);
    assert_eq!(
        x509(&format!(r#"["{unpadded}"]"#)),
        Err(BundleError::BadX5cBase64 { index: 0 })
    );
    assert_eq!(
        x509(r#"["!!!!"]"#),
        Err(BundleError::BadX5cBase64 { index: 0 })
    );
    // Base64 of something that is not a certificate.
    assert!(matches!(
        x509(r#"["MAMCAQA="]"#),
        Err(BundleError::BadX5cCertificate { index: 0, .. })
    ));
    // A repeated authority is kept once; order of entries is kept.
    let doc = format!(
        r#"{{"keys":[{{"use":"x509-svid","x5c":["{cert}"]}},{{"use":"x509-svid","x5c":["{cert}"]}}]}}"#
    );
    assert_eq!(parse(&doc).unwrap().x509_authorities().len(), 1);
}

#[test]
fn jwt_entries_need_a_unique_kid() {
    let jwt = |extra: &str| one_key(&format!("{{{JWT_EC}{extra}}}"));
    let ok = jwt(r#","kid":"k1""#).unwrap();
    assert_eq!(ok.jwt_authorities()[0].key_id(), "k1");
    assert_eq!(ok.jwt_authorities()[0].key_type(), "EC");
    assert_eq!(jwt(""), Err(BundleError::MissingKeyId { index: 0 }));
    assert_eq!(
        jwt(r#","kid":"""#),
        Err(BundleError::MissingKeyId { index: 0 })
    );
    assert_eq!(
        jwt(r#","kid":null"#),
        Err(BundleError::MissingKeyId { index: 0 })
    );
    assert_eq!(
        jwt(r#","kid":1"#),
        Err(BundleError::WrongType {
            index: 0,
            member: "kid"
        })
    );
    assert_eq!(
        one_key(r#"{"use":"jwt-svid","kid":"k"}"#),
        Err(BundleError::MissingKeyType { index: 0 })
    );

    // Key IDs are unique.
    assert!(matches!(
        parse(&format!(
            r#"{{"keys":[{{{JWT_EC},"kid":"k"}},{{{JWT_EC},"kid":"k"}}]}}"#
        )),
        Err(BundleError::DuplicateKeyId {
            first: 0,
            index: 1,
            ..
        })
    ));
}

#[test]
fn jwt_entries_need_a_valid_public_key() {
    let jwt = |extra: &str| one_key(&format!("{{{JWT_EC}{extra}}}"));
    let bad = |entry: &str, param| {
        assert_eq!(
            one_key(entry),
            Err(BundleError::BadJwk { index: 0, param }),
            "{entry}"
        );
    };
    let b64u = |n: usize| "A".repeat(n * 4 / 3 + usize::from(n % 3 != 0));
    // EC: coordinates must have the curve's length.
    bad(
        &format!(
            r#"{{"use":"jwt-svid","kid":"k","kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
            b64u(31),
            b64u(32)
        ),
        "x",
    );
    bad(
        &format!(
            r#"{{"use":"jwt-svid","kid":"k","kty":"EC","crv":"P-384","x":"{}","y":"{}"}}"#,
            b64u(32),
            b64u(32)
        ),
        "x",
    );
    bad(
        &format!(
            r#"{{"use":"jwt-svid","kid":"k","kty":"EC","crv":"P-256","x":"{}"}}"#,
            b64u(32)
        ),
        "y",
    );
    bad(
        &format!(
            r#"{{"use":"jwt-svid","kid":"k","kty":"EC","crv":"secp256k1","x":"{0}","y":"{0}"}}"#,
            b64u(32)
        ),
        "crv",
    );
    bad(
        r#"{"use":"jwt-svid","kid":"k","kty":"EC","x":"AA","y":"AA"}"#,
        "crv",
    );
    // Padded or standard-alphabet base64 is not base64url.
    bad(
        &format!(
            r#"{{"use":"jwt-svid","kid":"k","kty":"EC","crv":"P-256","x":"{0}=","y":"{0}="}}"#,
            b64u(32)
        ),
        "x",
    );
    // RSA: n and e.
    assert!(one_key(r#"{"use":"jwt-svid","kid":"k","kty":"RSA","n":"xQ","e":"AQAB"}"#).is_ok());
    bad(r#"{"use":"jwt-svid","kid":"k","kty":"RSA","n":"xQ"}"#, "e");
    bad(
        r#"{"use":"jwt-svid","kid":"k","kty":"RSA","n":"","e":"AQAB"}"#,
        "n",
    );
    bad(
        r#"{"use":"jwt-svid","kid":"k","kty":"RSA","n":"x+","e":"AQAB"}"#,
        "n",
    );
    // OKP: Ed25519 with a 32-byte x.
    let ed = format!(
        r#"{{"use":"jwt-svid","kid":"k","kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
        b64u(32)
    );
    assert_eq!(
        one_key(&ed).unwrap().jwt_authorities()[0].curve(),
        Some("Ed25519")
    );
    bad(
        &format!(
            r#"{{"use":"jwt-svid","kid":"k","kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            b64u(31)
        ),
        "x",
    );
    bad(
        &format!(
            r#"{{"use":"jwt-svid","kid":"k","kty":"OKP","crv":"X25519","x":"{}"}}"#,
            b64u(32)
        ),
        "crv",
    );
    // Private keys never belong in a bundle.
    assert_eq!(
        jwt(r#","kid":"k","d":"AAAA""#),
        Err(BundleError::PrivateKeyMaterial {
            index: 0,
            param: "d"
        })
    );
}

#[test]
fn unknown_use_or_key_type_is_ignored() {
    let cert = ec_cert_b64();
    let doc = format!(
        r#"{{"keys":[
            {{"use":"wit-svid","kty":"EC","kid":"w"}},
            {{"use":"JWT-SVID","kty":"EC"}},
            {{"kty":"EC","crv":"P-256"}},
            {{"use":"jwt-svid","kty":"oct","k":"AAAA"}},
            {{"use":"jwt-svid","kty":"ec","kid":"k"}},
            {{"use":"x509-svid","kty":"XYZ","x5c":["not even base64"]}},
            {{"use":"x509-svid","x5c":["{cert}"]}},
            {{{JWT_EC},"kid":"k"}}
        ]}}"#
    );
    let b = parse(&doc).unwrap();
    assert_eq!(b.x509_authorities().len(), 1);
    assert_eq!(b.jwt_authorities().len(), 1);
    // Ignored entries are not written back.
    assert!(!b.to_json().contains("wit-svid"));
    // But a known use with a member of the wrong type is an error, not "unknown".
    assert_eq!(
        one_key(r#"{"use":5}"#),
        Err(BundleError::WrongType {
            index: 0,
            member: "use"
        })
    );
    assert_eq!(
        one_key(r#"{"use":"jwt-svid","kty":["EC"]}"#),
        Err(BundleError::WrongType {
            index: 0,
            member: "kty"
        })
    );
}

#[test]
fn sequence_and_refresh_hint_are_optional_integers() {
    let b = parse(r#"{"keys":[],"spiffe_sequence":18446744073709551615,"spiffe_refresh_hint":0}"#)
        .unwrap();
    assert_eq!(b.sequence(), Some(u64::MAX));
    assert_eq!(b.refresh_hint(), Some(Duration::ZERO));
    let b = parse(r#"{"keys":[],"spiffe_sequence":null,"spiffe_refresh_hint":null}"#).unwrap();
    assert_eq!((b.sequence(), b.refresh_hint()), (None, None));
    for bad in [
        "-1",
        "1.0",
        "1e2",
        "\"1\"",
        "true",
        "[]",
        "18446744073709551616",
    ] {
        assert_eq!(
            parse(&format!(r#"{{"keys":[],"spiffe_sequence":{bad}}}"#)),
            Err(BundleError::BadSequence),
            "{bad}"
        );
        assert_eq!(
            parse(&format!(r#"{{"keys":[],"spiffe_refresh_hint":{bad}}}"#)),
            Err(BundleError::BadRefreshHint),
            "{bad}"
        );
    }
    // Builders, and the round trip of both values.
    let b = SpiffeBundle::new(td())
        .with_sequence(9)
        .with_refresh_hint(Duration::from_millis(300));
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(1)));
    let again = parse(&b.to_json()).unwrap();
    assert_eq!(again, b);
    assert_eq!(again.sequence(), Some(9));
}

// ---------------------------------------------------------------------------------------
// Truncated, oversized and malformed input
// ---------------------------------------------------------------------------------------

#[test]
fn every_truncation_is_a_typed_error_or_the_whole() {
    let json = spiffe_vector("spiffebundle_valid_2.json");
    let whole = SpiffeBundle::parse(td(), &json).unwrap();
    let last_brace = json.iter().rposition(|&b| b == b'}').unwrap();
    for end in 0..json.len() {
        match SpiffeBundle::parse(td(), &json[..end]) {
            Ok(b) => {
                assert!(end > last_brace, "prefix {end} accepted");
                assert_eq!(b, whole);
            }
            Err(e) => assert!(end <= last_brace, "prefix {end}: {e}"),
        }
    }
    let pem = x509_vector("certs.pem");
    for end in 0..pem.len() {
        // A prefix holds whole certificates (then it loads) or is refused; never panics.
        if let Ok(b) = X509Bundle::load(td(), &pem[..end]) {
            assert!(b.authorities().len() <= 2);
        }
    }
    let der: Vec<u8> = X509Bundle::load(td(), &pem)
        .unwrap()
        .authorities()
        .iter()
        .flat_map(|c| c.to_vec())
        .collect();
    for end in 1..der.len() {
        if let Ok(b) = X509Bundle::parse_der(td(), &der[..end]) {
            assert_eq!(b.authorities().len(), 1, "prefix {end}");
        }
    }
}

#[test]
fn malformed_json_gives_positions() {
    assert_eq!(
        parse("{\n  \"keys\": [,]\n}"),
        Err(BundleError::JsonSyntax {
            line: 2,
            column: 12
        })
    );
    assert!(matches!(
        parse(r#"{"keys":["#),
        Err(BundleError::JsonTruncated { .. })
    ));
    assert!(matches!(
        parse("{} trailing"),
        Err(BundleError::JsonSyntax { .. })
    ));
    assert!(matches!(
        SpiffeBundle::parse(td(), b"{\"keys\":[],\"a\":\"\xff\"}"),
        Err(BundleError::JsonSyntax { .. })
    ));
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    for depth in [33, 200, 1 << 20] {
        let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            parse(&doc),
            Err(BundleError::TooDeep { limit: 32 }),
            "{depth}"
        );
    }
    // Within the limit, nesting inside an ignored member is fine.
    let inner = 28;
    let doc = format!(
        r#"{{"keys":[{{"use":"other","a":{}{}}}]}}"#,
        "[".repeat(inner),
        "]".repeat(inner)
    );
    assert!(parse(&doc).unwrap().is_empty());
    // Brackets inside strings do not count.
    let doc = format!(r#"{{"keys":[],"a":"{}"}}"#, "[".repeat(1000));
    assert!(parse(&doc).is_ok());
}

#[test]
fn large_inputs_are_bounded() {
    // 1 MiB inputs: valid results or typed errors.
    let mib = 1 << 20;
    let doc = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(mib));
    assert!(parse(&doc).unwrap().is_empty());
    assert!(matches!(
        SpiffeBundle::parse(td(), &vec![b'x'; mib]),
        Err(BundleError::JsonSyntax { .. })
    ));
    assert_eq!(
        X509Bundle::load(td(), &vec![b'x'; mib]),
        Err(BundleError::Pem(PemError::NoBlocks))
    );
    assert!(matches!(
        X509Bundle::load(td(), &vec![0x30; mib]),
        Err(BundleError::BadCertificate { index: 0, .. })
    ));
    let many: Vec<u8> = x509_vector("certs.pem").repeat(mib / 1076);
    assert_eq!(
        X509Bundle::load(td(), &many).unwrap().authorities().len(),
        2
    );

    // Many repeated authorities: kept once, found in one pass (no pairwise comparison).
    let cert = ec_cert_b64();
    let entry = format!(r#"{{"use":"x509-svid","x5c":["{cert}"]}}"#);
    let doc = format!(r#"{{"keys":[{}]}}"#, vec![entry; 5000].join(","));
    assert_eq!(parse(&doc).unwrap().x509_authorities().len(), 1);

    // Over 16 MiB: refused up front.
    let huge = vec![b' '; SpiffeBundle::MAX_INPUT_LEN + 1];
    let too_large = BundleError::TooLarge { len: huge.len() };
    assert_eq!(SpiffeBundle::parse(td(), &huge), Err(too_large.clone()));
    assert_eq!(X509Bundle::parse_pem(td(), &huge), Err(too_large.clone()));
    assert_eq!(X509Bundle::parse_der(td(), &huge), Err(too_large.clone()));
    assert_eq!(X509Bundle::load(td(), &huge), Err(too_large));
}

#[test]
fn x509_loaders_refuse_what_is_not_a_bundle() {
    let cert = x509_vector("cert.pem");
    let key = x509_vector("key.pem");
    // A key next to certificates is named, wherever it is.
    let mixed = [cert.clone(), key.clone()].concat();
    assert_eq!(
        X509Bundle::parse_pem(td(), &mixed),
        Err(BundleError::UnexpectedPemBlock {
            index: 1,
            label: "PRIVATE KEY".into()
        })
    );
    // Broken PEM is a PEM error.
    let unterminated = &cert[..cert.len() - 10];
    assert!(matches!(
        X509Bundle::parse_pem(td(), unterminated),
        Err(BundleError::Pem(PemError::Unterminated { index: 0, .. }))
    ));
    // from_authorities checks each certificate.
    assert!(matches!(
        X509Bundle::from_authorities(td(), [CertificateDer::from(vec![0x30, 0x00])]),
        Err(BundleError::BadCertificate { index: 0, .. })
    ));
    assert!(X509Bundle::from_authorities(td(), []).unwrap().is_empty());
}

#[test]
fn load_reads_der_that_happens_to_hold_a_begin_line() {
    // Found by the fuzzer: a DER certificate whose bytes contain "-----BEGIN " is still
    // DER. (The certificate is cert.pem's with part of its signature overwritten; it is
    // still well-formed.)
    let der = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/spiffe_bundle/regress_der_holding_begin_line.der"
    ))
    .unwrap();
    assert!(der.windows(11).any(|w| w == b"-----BEGIN "));
    let bundle = X509Bundle::load(td(), &der).unwrap();
    assert_eq!(bundle.authorities()[0].as_ref(), &der[..]);
    assert_eq!(X509Bundle::parse_der(td(), &der).unwrap(), bundle);
    // PEM text that starts with the byte '0' (0x30) is still read as PEM.
    let pem = [b"0 leading note\n".as_slice(), &x509_vector("cert.pem")].concat();
    assert_eq!(X509Bundle::load(td(), &pem).unwrap().authorities().len(), 1);
}

#[test]
fn errors_cite_their_rule() {
    let cert = ec_cert_b64();
    let cases = [
        parse("{}").unwrap_err(),
        parse(r#"{"keys":[],"spiffe_sequence":-1}"#).unwrap_err(),
        parse(r#"{"keys":[],"spiffe_refresh_hint":-1}"#).unwrap_err(),
        one_key(&format!(
            r#"{{"use":"x509-svid","x5c":["{cert}","{cert}"]}}"#
        ))
        .unwrap_err(),
        one_key(&format!("{{{JWT_EC}}}")).unwrap_err(),
        X509Bundle::load(td(), b"").unwrap_err(),
    ];
    for e in cases {
        let text = e.to_string();
        assert!(text.contains('§'), "{text}");
    }
    assert_eq!(
        SpiffeBundle::parse(td(), &spiffe_vector("spiffebundle_missing_kid.json"))
            .unwrap_err()
            .to_string(),
        "jwt-svid entry keys[1] has no `kid`: it MUST be set (JWT-SVID §6.1)"
    );
}
