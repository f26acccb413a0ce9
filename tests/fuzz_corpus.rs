//! Replays every fuzz corpus under `fuzz/corpus/` through the same checks the fuzz targets
//! run, so CI exercises them on stable Rust without cargo-fuzz.

#[path = "checks/spiffe_id.rs"]
mod spiffe_id_checks;

mod common;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>/`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "corpus file {} fails", path.display());
        n += 1;
    }
    n
}

#[test]
fn spiffe_id_corpus() {
    assert!(replay("spiffe_id", spiffe_id_checks::check) >= 30);
}

#[test]
fn spiffe_id_checks_hold_on_the_case_table() {
    for case in common::load_cases() {
        spiffe_id_checks::check(&case.input);
    }
}

#[test]
fn the_reference_oracle_is_not_trivial() {
    // A checker whose oracle always agreed would prove nothing: pin it on known cases.
    use spiffe_id_checks::reference_is_valid as ok;
    assert!(ok(b"spiffe://td/a"));
    assert!(ok(b"spiffe://td"));
    assert!(!ok(b"spiffe://td/"));
    assert!(!ok(b"spiffe://Td/a"));
    assert!(!ok(b"spiffe://td/a/.."));
    assert!(!ok(b"spiffe://td//a"));
    assert!(!ok(b"spiffe://"));
    assert!(!ok(b"spiffe://td/a%20"));
}

#[path = "checks/spiffe_bundle.rs"]
mod spiffe_bundle_checks;

#[test]
fn spiffe_bundle_corpus() {
    assert!(replay("spiffe_bundle", spiffe_bundle_checks::check) >= 20);
}

#[path = "checks/x509_svid.rs"]
mod x509_svid_checks;

#[test]
fn x509_svid_corpus() {
    assert!(replay("x509_svid", x509_svid_checks::check) >= 17);
}

#[path = "checks/csr.rs"]
mod csr_checks;

#[test]
fn csr_corpus() {
    assert!(replay("csr", csr_checks::check) >= 3);
}

#[path = "checks/verify.rs"]
mod verify_checks;

#[test]
fn verify_corpus() {
    assert!(replay("verify", verify_checks::check) >= 6);
}

#[test]
fn the_verify_check_is_not_trivial() {
    // The unmutated fixture must verify, or the mutation invariant would hold vacuously.
    verify_checks::check(&[]);
    let chain = include_bytes!("data/verify-chain/chain.pem");
    let root = include_bytes!("data/verify-chain/root.pem");
    let td = meshid::TrustDomain::new("example.org").unwrap();
    let chain = meshid::X509Bundle::parse_pem(td.clone(), chain).unwrap();
    let mut set = meshid::BundleSet::new();
    set.insert(meshid::X509Bundle::parse_pem(td, root).unwrap());
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_893_456_000);
    let ok = meshid::verify_x509_svid(chain.authorities(), &set, at, webpki::ALL_VERIFICATION_ALGS);
    assert_eq!(
        ok.unwrap().id().as_str(),
        "spiffe://example.org/fuzz/target"
    );
}

// The Workload API messages (`meshid::workload`); the structured mode issues SVIDs (`ca`).
#[cfg(all(feature = "workload-api", feature = "ca"))]
#[path = "checks/workload_message.rs"]
mod workload_message_checks;

#[cfg(all(feature = "workload-api", feature = "ca"))]
#[test]
fn workload_message_corpus() {
    assert!(replay("workload_message", workload_message_checks::check) >= 280);
}

#[cfg(all(feature = "workload-api", feature = "ca"))]
#[test]
fn the_workload_message_check_is_not_trivial() {
    // The uncorrupted messages must be accepted and a corrupted key refused, or the
    // structured invariants would hold vacuously.
    use workload_message_checks::{encode_structured, structured, Field};
    for shape in [0, 1, 3, 4, 0x21, 0x47, 0xff] {
        let data = encode_structured(Field::Nothing, 0, shape, 0, &[]);
        let context = structured(&data[1..]).unwrap();
        assert_eq!(context.svids().count(), 1 + usize::from(shape & 1));
    }
    let data = encode_structured(Field::Key, 1, 0, 40, &[0x01]);
    assert!(structured(&data[1..]).is_err());
    let data = encode_structured(Field::Id, 2, 0, 0, b"spiffe://example.org/other");
    assert!(structured(&data[1..]).is_err());
    for (_, seed) in workload_message_checks::seeds() {
        workload_message_checks::check(&seed);
    }
}

/// Writes the seed corpus: `cargo test --all-features --test fuzz_corpus -- --ignored
/// generate_workload_seeds`.
#[cfg(all(feature = "workload-api", feature = "ca"))]
#[test]
#[ignore = "writes fuzz/corpus/workload_message/; run by hand"]
fn generate_workload_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/workload_message");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in workload_message_checks::seeds() {
        workload_message_checks::check(&data);
        std::fs::write(dir.join(name), data).unwrap();
    }
}

#[cfg(all(feature = "sds", feature = "ca"))]
#[path = "checks/sds_request.rs"]
mod sds_request_checks;

#[cfg(all(feature = "sds", feature = "ca"))]
#[test]
fn sds_request_corpus() {
    for (name, seed) in sds_request_checks::seeds() {
        let result = std::panic::catch_unwind(|| sds_request_checks::check(&seed));
        assert!(result.is_ok(), "seed {name} fails");
    }
    assert!(replay("sds_request", sds_request_checks::check) >= 650);
}

/// Writes the seed inputs of the `sds_request` target into its corpus directory.
#[cfg(all(feature = "sds", feature = "ca"))]
#[test]
#[ignore = "writes fuzz/corpus/sds_request/seed-*; run by hand"]
fn generate_sds_request_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sds_request");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, seed) in sds_request_checks::seeds() {
        std::fs::write(dir.join(name), seed).unwrap();
    }
}

#[cfg(any(feature = "workload-api", feature = "sds"))]
#[path = "checks/h2_authority.rs"]
mod h2_authority_checks;

#[cfg(any(feature = "workload-api", feature = "sds"))]
#[test]
fn h2_authority_corpus() {
    for (name, seed) in h2_authority_checks::seeds() {
        let result = std::panic::catch_unwind(|| h2_authority_checks::check(&seed));
        assert!(result.is_ok(), "seed {name} fails");
    }
    assert!(replay("h2_authority", h2_authority_checks::check) >= 450);
}

/// The seeds must exercise the rewrite, not stop at an early refusal: each is rewritten,
/// and its `:authority` (where it has one) comes out as `localhost`.
#[cfg(any(feature = "workload-api", feature = "sds"))]
#[test]
fn h2_authority_seeds_are_rewritten() {
    use meshid::serve::fuzzing;
    for (name, seed) in h2_authority_checks::seeds() {
        let stream = [fuzzing::PREFACE, &seed[1..]].concat();
        let out = fuzzing::rewrite(&stream, 4096).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (blocks, _) = fuzzing::split_frames(&out[fuzzing::PREFACE.len()..]).unwrap();
        assert!(!blocks.is_empty(), "{name}");
        let mut decoder = loona_hpack::Decoder::new();
        let first = decoder.decode(&blocks[0].1).unwrap();
        let authority = first.iter().find(|(n, _)| n == b":authority");
        assert_eq!(
            authority.map(|(_, v)| v.as_slice()),
            Some(fuzzing::AUTHORITY),
            "{name}"
        );
    }
}

/// Writes the seed inputs of the `h2_authority` target into its corpus directory.
#[cfg(any(feature = "workload-api", feature = "sds"))]
#[test]
#[ignore = "writes fuzz/corpus/h2_authority/seed-*; run by hand"]
fn generate_h2_authority_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/h2_authority");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, seed) in h2_authority_checks::seeds() {
        std::fs::write(dir.join(name), seed).unwrap();
    }
}

#[cfg(all(feature = "agent", unix))]
#[path = "checks/entries.rs"]
mod entries_checks;

#[cfg(all(feature = "agent", unix))]
#[test]
fn entries_corpus() {
    assert!(replay("entries", entries_checks::check) >= 8);
}

/// The corpus starts from the example file, which must stay accepted (or the invariants
/// of accepted files would hold vacuously) and stay the same as the example.
#[cfg(all(feature = "agent", unix))]
#[test]
fn the_entries_check_is_not_trivial() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read(root.join("examples/agent/entries.toml")).unwrap();
    let seed = std::fs::read(root.join("fuzz/corpus/entries/seed-example.toml")).unwrap();
    assert_eq!(
        seed, example,
        "fuzz/corpus/entries/seed-example.toml is not the example"
    );
    let td = meshid::TrustDomain::new("example.org").unwrap();
    let text = String::from_utf8(example).unwrap();
    assert!(meshid::agent::Registry::parse(&text, &td).unwrap().len() >= 5);
    entries_checks::check(text.as_bytes());
}

// JWT-SVID validation (`meshid::jwt`); the seeds are signed with meshid's `KeyPair` (`ca`)
// and ring, which the check also verifies with.
#[cfg(all(feature = "ca", feature = "ring"))]
#[path = "checks/jwt.rs"]
mod jwt_checks;

#[cfg(all(feature = "ca", feature = "ring"))]
#[test]
fn jwt_corpus() {
    assert!(replay("jwt", jwt_checks::check) >= 28);
}

/// The invariant must not hold vacuously: the valid seeds of the corpus are accepted (and
/// freshly signed ones too), the hostile ones refused.
#[cfg(all(feature = "ca", feature = "ring"))]
#[test]
fn the_jwt_check_is_not_trivial() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/jwt");
    let mut valid = 0;
    for (name, seed) in jwt_checks::seeds() {
        jwt_checks::check(&seed);
        let stored = std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = name.starts_with("seed-valid-");
        assert_eq!(jwt_checks::accepts(&seed), expected, "{name} (fresh)");
        assert_eq!(jwt_checks::accepts(&stored), expected, "{name} (corpus)");
        valid += usize::from(expected);
    }
    assert_eq!(valid, 7);
    // The independent signature check can say no.
    let der = std::fs::read(dir.join("seed-der-signature")).unwrap();
    assert!(!jwt_checks::signed_by_a_published_key(
        &String::from_utf8(der).unwrap()
    ));
    let valid = std::fs::read(dir.join("seed-valid-es256")).unwrap();
    assert!(jwt_checks::signed_by_a_published_key(
        &String::from_utf8(valid).unwrap()
    ));
}

/// Writes the seed corpus: `cargo test --test fuzz_corpus -- --ignored generate_jwt_seeds`.
#[cfg(all(feature = "ca", feature = "ring"))]
#[test]
#[ignore = "writes fuzz/corpus/jwt/; run by hand"]
fn generate_jwt_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/jwt");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, seed) in jwt_checks::seeds() {
        std::fs::write(dir.join(name), seed).unwrap();
    }
}
