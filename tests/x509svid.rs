//! The go-spiffe X509-SVID vectors (`tests/data/go-spiffe/x509svid/`), each with the verdict
//! go-spiffe's `svid/x509svid/svid_test.go` asserts (listed in tests/data/SOURCES.md).
//! All of these certificates have expired: they test the SVID profile and key handling,
//! not path validation.

use meshid::{KeyError, KeyType, PemError, SvidError, X509Svid};

fn data(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/go-spiffe/x509svid/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(certs: &str, key: &str) -> Result<X509Svid, SvidError> {
    X509Svid::parse_pem(&data(certs), &data(key))
}

#[test]
fn good_leaf_only_with_rsa_key() {
    let svid = load("good-leaf-only.pem", "key-pkcs8-rsa.pem").unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/workload-1");
    assert_eq!(svid.chain().len(), 1);
    assert!(matches!(
        svid.private_key().key_type(),
        KeyType::Rsa { bits: 2048 }
    ));
}

#[test]
fn good_leaf_and_intermediate_with_ecdsa_key() {
    let svid = load("good-leaf-and-intermediate.pem", "key-pkcs8-ecdsa.pem").unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/workload-1");
    assert_eq!(svid.chain().len(), 2);
    assert_eq!(svid.private_key().key_type(), KeyType::P256);
}

#[test]
fn key_and_certificates_in_one_file_in_either_order() {
    for file in ["good-key-and-cert.pem", "good-cert-and-key.pem"] {
        let svid = load(file, file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(svid.id().as_str(), "spiffe://example.org/workload-1");
    }
}

#[test]
fn missing_parts() {
    // go-spiffe: "no certificates found"
    assert_eq!(
        load("key-pkcs8-rsa.pem", "key-pkcs8-rsa.pem").unwrap_err(),
        SvidError::NoCertificates
    );
    // go-spiffe: "no private key found"
    assert_eq!(
        load("good-leaf-only.pem", "good-leaf-only.pem").unwrap_err(),
        SvidError::Key(KeyError::NoPrivateKey)
    );
    // go-spiffe: "no PEM blocks found"
    assert_eq!(
        load("good-leaf-only.pem", "not-pem").unwrap_err(),
        SvidError::Key(KeyError::Pem(PemError::NoBlocks))
    );
    assert_eq!(
        load("not-pem", "key-pkcs8-ecdsa.pem").unwrap_err(),
        SvidError::Pem(PemError::NoBlocks)
    );
}

#[test]
fn corrupt_inputs() {
    // go-spiffe: "cannot parse PEM encoded private key: asn1: structure error"
    assert_eq!(
        load("good-leaf-only.pem", "corrupt-key.pem").unwrap_err(),
        SvidError::Key(KeyError::MalformedPrivateKey)
    );
    // go-spiffe: "cannot parse PEM encoded certificate: x509: malformed certificate"
    assert_eq!(
        load("corrupt-cert.pem", "key-pkcs8-rsa.pem").unwrap_err(),
        SvidError::MalformedCertificate { index: 0 }
    );
}

#[test]
fn key_mismatch() {
    // go-spiffe: "leaf certificate does not match private key"
    assert_eq!(
        load("good-leaf-and-intermediate.pem", "key-pkcs8-rsa.pem").unwrap_err(),
        SvidError::Key(KeyError::Mismatch)
    );
    assert_eq!(
        load("good-leaf-only.pem", "key-pkcs8-ecdsa.pem").unwrap_err(),
        SvidError::Key(KeyError::Mismatch)
    );
}

#[test]
fn profile_violations() {
    let cases = [
        // go-spiffe: "certificate contains no URI SAN"
        ("wrong-leaf-empty-id.pem", SvidError::NoUriSan),
        // go-spiffe: "leaf certificate must not have CA flag set to true"
        ("wrong-leaf-ca-true.pem", SvidError::LeafIsCa),
        // go-spiffe: "leaf certificate must have 'digitalSignature' set as key usage"
        (
            "wrong-leaf-no-digital-signature.pem",
            SvidError::LeafNoDigitalSignature,
        ),
        // go-spiffe: "leaf certificate must not have 'keyCertSign' set as key usage"
        ("wrong-leaf-cert-sign.pem", SvidError::LeafKeyCertSign),
        // go-spiffe: "leaf certificate must not have 'cRLSign' set as key usage"
        ("wrong-leaf-crl-sign.pem", SvidError::LeafCrlSign),
        // go-spiffe: "signing certificate must have CA flag set to true"
        (
            "wrong-intermediate-no-ca.pem",
            SvidError::SigningNotCa { index: 1 },
        ),
        // go-spiffe: "signing certificate must have 'keyCertSign' set as key usage"
        (
            "wrong-intermediate-no-key-cert-sign.pem",
            SvidError::SigningNoKeyCertSign { index: 1 },
        ),
    ];
    for (file, want) in cases {
        for key in ["key-pkcs8-ecdsa.pem", "key-pkcs8-rsa.pem"] {
            assert_eq!(load(file, key).unwrap_err(), want, "{file} with {key}");
        }
    }
}

#[test]
fn pem_export_round_trips_and_debug_hides_the_key() {
    let svid = load("good-leaf-and-intermediate.pem", "key-pkcs8-ecdsa.pem").unwrap();
    let again =
        X509Svid::parse_pem(svid.chain_pem().as_bytes(), svid.key_pem().as_bytes()).unwrap();
    assert_eq!(again.chain(), svid.chain());
    assert_eq!(
        again.private_key().secret_pkcs8_der(),
        svid.private_key().secret_pkcs8_der()
    );
    let shown = format!("{svid:?}");
    assert!(
        shown.contains("redacted") && shown.contains("workload-1"),
        "{shown}"
    );
    let key_b64 = &svid.key_pem()[28..60];
    assert!(!shown.contains(key_b64));
}

#[test]
fn truncated_and_oversized_inputs_are_typed_errors() {
    let good = data("good-cert-and-key.pem");
    for cut in (0..good.len()).step_by(37) {
        let part = &good[..cut];
        // Any outcome but a panic; an accepted SVID must still be the right one.
        if let Ok(svid) = X509Svid::parse_pem(part, part) {
            assert_eq!(svid.id().as_str(), "spiffe://example.org/workload-1");
        }
    }
    let mut big = good.clone();
    big.extend(std::iter::repeat_n(b'A', 1 << 20));
    assert!(X509Svid::parse_pem(&big, &big).is_ok());
    let garbage = vec![0x30u8; 1 << 20];
    assert!(X509Svid::parse_pem(&garbage, &garbage).is_err());
}
