//! `verify_x509_svid`: every rule of DESIGN §2 rules 7-12 (X509-SVID §4, §5), one test each,
//! on chains built at test time (our `Authority`, rcgen for certificates that break the
//! profile on purpose, and the `openssl` CLI for interop), plus hostile input.

#[path = "common/certs.rs"]
mod certs;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use certs::{ca_params, dns, leaf_params, uri, Ca, Curve};
use meshid::{
    validate_path, verify_x509_svid, Authority, BundleSet, BundleSource, IdError, KeyType,
    SpiffeId, SvidError, TrustDomain, Usage, VerifiedSvid, VerifyError, X509Bundle,
};
use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);
const TD: &str = "example.org";
const WEB: &str = "spiffe://example.org/web";

/// Every algorithm ring offers webpki: a chain is never refused for want of one.
static ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn bundle<'a>(
    trust_domain: &str,
    roots: impl IntoIterator<Item = &'a CertificateDer<'static>>,
) -> X509Bundle {
    X509Bundle::from_authorities(td(trust_domain), roots.into_iter().cloned()).unwrap()
}

fn root_of(authority: &Authority) -> &CertificateDer<'static> {
    authority.root().expect("authority knows its root")
}

fn verify_at(
    chain: &[CertificateDer<'_>],
    bundles: &impl BundleSource,
    at: SystemTime,
) -> Result<VerifiedSvid, VerifyError> {
    verify_x509_svid(chain, bundles, at, ALGS)
}

fn verify(
    chain: &[CertificateDer<'_>],
    bundles: &impl BundleSource,
) -> Result<VerifiedSvid, VerifyError> {
    verify_at(chain, bundles, SystemTime::now())
}

/// The error for a chain that must be refused; a panic or an `Ok` fails the test.
fn refused(chain: &[CertificateDer<'_>], bundles: &impl BundleSource, what: &str) -> VerifyError {
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| verify(chain, bundles)));
    match run {
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|m| (*m).to_owned()));
            panic!("{what}: the verifier panicked: {message:?}")
        }
        Ok(Ok(v)) => panic!("{what}: accepted as {}", v.id()),
        Ok(Err(e)) => e,
    }
}

/// An rcgen root for example.org and the bundle holding it.
fn rcgen_root() -> (Ca, X509Bundle) {
    let root = Ca::root(TD);
    let b = bundle(TD, [&root.der]);
    (root, b)
}

/// Verifies a leaf made from `params`, signed directly by an rcgen root of example.org.
fn verify_rcgen_leaf(params: &rcgen::CertificateParams) -> Result<VerifiedSvid, VerifyError> {
    let (root, b) = rcgen_root();
    verify(&[root.leaf(params)], &b)
}

/// Verifies a good leaf under an intermediate made from `params` below an rcgen root.
fn verify_rcgen_intermediate(
    params: rcgen::CertificateParams,
) -> Result<VerifiedSvid, VerifyError> {
    let (root, b) = rcgen_root();
    let int = root.intermediate(params);
    let leaf = int.leaf(&leaf_params(WEB));
    verify(&[leaf, int.der], &b)
}

// ---------------------------------------------------------------------------------------
// 1. Positive: what our Authority issues verifies.
// ---------------------------------------------------------------------------------------

fn assert_verifies(authority: &Authority, path: &str) {
    let svid = authority.issue(&id(path), HOUR).unwrap();
    let b = bundle(TD, [root_of(authority)]);
    let verified = verify(svid.chain(), &b).unwrap();
    assert_eq!(verified.id(), &id(path));
    assert_eq!(verified.id(), svid.id());
    assert_eq!(verified.chain(), svid.chain());
    assert!(verified.not_after() <= svid.not_after());
}

#[test]
fn svid_from_p256_root_verifies() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    assert_verifies(&root, "spiffe://example.org/web");
}

#[test]
fn svid_from_p384_root_verifies() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P384).unwrap();
    assert_verifies(&root, "spiffe://example.org/ns/prod/sa/db");
}

#[test]
fn svid_from_root_then_intermediate_verifies() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let int = root.new_intermediate(DAY, KeyType::P384).unwrap();
    assert_eq!(int.issue(&id(WEB), HOUR).unwrap().chain().len(), 2);
    assert_verifies(&int, WEB);
}

#[test]
fn svid_from_root_then_two_intermediates_verifies() {
    for (r, a, b) in [
        (KeyType::P256, KeyType::P256, KeyType::P256),
        (KeyType::P384, KeyType::P384, KeyType::P384),
        (KeyType::P384, KeyType::P256, KeyType::P384),
    ] {
        let root = Authority::new_root(td(TD), DAY, r).unwrap();
        let int2 = root
            .new_intermediate(DAY, a)
            .unwrap()
            .new_intermediate(DAY, b)
            .unwrap();
        assert_eq!(int2.issue(&id(WEB), HOUR).unwrap().chain().len(), 3);
        assert_verifies(&int2, WEB);
    }
}

#[test]
fn not_after_is_the_earliest_of_the_chain() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let int = root.new_intermediate(2 * HOUR, KeyType::P256).unwrap();
    let svid = int.issue(&id(WEB), DAY).unwrap(); // capped at the intermediate's NotAfter
    let verified = verify(svid.chain(), &bundle(TD, [root_of(&root)])).unwrap();
    assert_eq!(verified.not_after(), svid.not_after());
    let short = int.issue(&id(WEB), Duration::from_secs(60)).unwrap();
    let verified = verify(short.chain(), &bundle(TD, [root_of(&root)])).unwrap();
    assert_eq!(verified.not_after(), short.not_after());
}

#[test]
fn chain_that_also_carries_the_root_verifies() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let int = root.new_intermediate(DAY, KeyType::P256).unwrap();
    let svid = int.issue(&id(WEB), HOUR).unwrap();
    let mut chain = svid.chain().to_vec();
    chain.push(root_of(&root).clone());
    let verified = verify(&chain, &bundle(TD, [root_of(&root)])).unwrap();
    assert_eq!(verified.id(), &id(WEB));
}

#[test]
fn bundle_with_several_roots_accepts_each() {
    let a = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let b = Authority::new_root(td(TD), DAY, KeyType::P384).unwrap();
    let both = bundle(TD, [root_of(&a), root_of(&b)]);
    for authority in [&a, &b] {
        let svid = authority.issue(&id(WEB), HOUR).unwrap();
        assert_eq!(verify(svid.chain(), &both).unwrap().id(), &id(WEB));
    }
}

#[test]
fn bundle_set_picks_the_leaf_trust_domain() {
    let names = ["a.test", "b.test", "c.test"];
    let authorities: Vec<Authority> = names
        .iter()
        .map(|n| Authority::new_root(td(n), DAY, KeyType::P256).unwrap())
        .collect();
    let set: BundleSet = names
        .iter()
        .zip(&authorities)
        .map(|(n, a)| bundle(n, [root_of(a)]))
        .collect();
    for (n, a) in names.iter().zip(&authorities) {
        let wanted = id(&format!("spiffe://{n}/workload"));
        let svid = a.issue(&wanted, HOUR).unwrap();
        assert_eq!(verify(svid.chain(), &set).unwrap().id(), &wanted);
    }
}

#[test]
fn rcgen_root_loaded_as_authority_issues_verifiable_svids() {
    let (root, b) = rcgen_root();
    let svid = root.authority().issue(&id(WEB), HOUR).unwrap();
    assert_eq!(verify(svid.chain(), &b).unwrap().id(), &id(WEB));
}

#[test]
fn rcgen_profile_leaf_verifies() {
    // The baseline every rcgen negative test changes in exactly one field.
    assert_eq!(verify_rcgen_leaf(&leaf_params(WEB)).unwrap().id(), &id(WEB));
}

#[test]
fn rcgen_profile_intermediate_verifies() {
    let v = verify_rcgen_intermediate(ca_params("spiffe://example.org")).unwrap();
    assert_eq!(v.id(), &id(WEB));
}

#[test]
fn intermediate_without_spiffe_id_verifies() {
    // Rule 9: a signing certificate's SPIFFE ID is optional.
    let mut p = ca_params("spiffe://example.org");
    p.subject_alt_names.clear();
    assert_eq!(verify_rcgen_intermediate(p).unwrap().id(), &id(WEB));
}

#[test]
fn leaf_with_other_san_types_verifies() {
    // Rule 7: exactly one URI SAN; other SAN types may be present.
    let mut p = leaf_params(WEB);
    p.subject_alt_names = vec![dns("web.example.org"), uri(WEB), dns("web")];
    assert_eq!(verify_rcgen_leaf(&p).unwrap().id(), &id(WEB));
}

#[test]
fn leaf_without_eku_verifies() {
    // Rule 8: EKU is optional.
    let mut p = leaf_params(WEB);
    p.extended_key_usages.clear();
    assert_eq!(verify_rcgen_leaf(&p).unwrap().id(), &id(WEB));
}

#[test]
fn leaf_without_basic_constraints_verifies() {
    // Rule 8 forbids cA=true; an absent extension means not a CA.
    let mut p = leaf_params(WEB);
    p.is_ca = IsCa::NoCa;
    assert_eq!(verify_rcgen_leaf(&p).unwrap().id(), &id(WEB));
}

#[test]
fn intermediate_with_path_len_zero_may_sign_a_leaf() {
    let mut p = ca_params("spiffe://example.org");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    assert_eq!(verify_rcgen_intermediate(p).unwrap().id(), &id(WEB));
}

// ---------------------------------------------------------------------------------------
// 2. Negative: one test per rule, with the exact error.
// ---------------------------------------------------------------------------------------

fn leaf_error(params: &rcgen::CertificateParams) -> VerifyError {
    verify_rcgen_leaf(params).expect_err("leaf must be refused")
}

fn intermediate_error(params: rcgen::CertificateParams) -> VerifyError {
    verify_rcgen_intermediate(params).expect_err("chain must be refused")
}

// Rule 8: the leaf.

#[test]
fn leaf_that_is_a_ca_is_refused() {
    let mut p = leaf_params(WEB);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    assert_eq!(leaf_error(&p), VerifyError::Profile(SvidError::LeafIsCa));
}

#[test]
fn leaf_with_key_cert_sign_is_refused() {
    let mut p = leaf_params(WEB);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::LeafKeyCertSign)
    );
}

#[test]
fn leaf_with_crl_sign_is_refused() {
    let mut p = leaf_params(WEB);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    assert_eq!(leaf_error(&p), VerifyError::Profile(SvidError::LeafCrlSign));
}

#[test]
fn leaf_without_digital_signature_is_refused() {
    let mut p = leaf_params(WEB);
    p.key_usages = vec![KeyUsagePurpose::KeyAgreement];
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::LeafNoDigitalSignature)
    );
}

#[test]
fn leaf_without_key_usage_is_refused() {
    let mut p = leaf_params(WEB);
    p.key_usages.clear();
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::LeafNoKeyUsage)
    );
}

#[test]
fn leaf_eku_without_client_auth_is_refused() {
    let mut p = leaf_params(WEB);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::LeafEkuMissing {
            purpose: "clientAuth"
        })
    );
}

#[test]
fn leaf_eku_without_server_auth_is_refused() {
    let mut p = leaf_params(WEB);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::LeafEkuMissing {
            purpose: "serverAuth"
        })
    );
}

// Rule 7: the leaf's SPIFFE ID.

#[test]
fn leaf_without_uri_san_is_refused() {
    let mut p = leaf_params(WEB);
    p.subject_alt_names = vec![dns("web.example.org")];
    assert_eq!(leaf_error(&p), VerifyError::Profile(SvidError::NoUriSan));
    p.subject_alt_names.clear();
    assert_eq!(leaf_error(&p), VerifyError::Profile(SvidError::NoUriSan));
}

#[test]
fn leaf_with_two_uri_sans_is_refused() {
    let mut p = leaf_params(WEB);
    p.subject_alt_names = vec![uri(WEB), uri("spiffe://example.org/db")];
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::MultipleUriSans { count: 2 })
    );
}

#[test]
fn leaf_with_pathless_id_is_refused() {
    let p = leaf_params("spiffe://example.org");
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::LeafIdHasNoPath {
            id: id("spiffe://example.org")
        })
    );
}

#[test]
fn leaf_uri_san_that_is_no_spiffe_id_is_refused() {
    let p = leaf_params("https://example.org/web");
    assert_eq!(
        leaf_error(&p),
        VerifyError::Profile(SvidError::BadSpiffeId(IdError::BadScheme))
    );
}

// Rule 9: signing certificates.

#[test]
fn intermediate_that_is_no_ca_is_refused() {
    let mut p = ca_params("spiffe://example.org");
    p.is_ca = IsCa::ExplicitNoCa;
    assert_eq!(
        intermediate_error(p),
        VerifyError::Profile(SvidError::SigningNotCa { index: 1 })
    );
}

#[test]
fn intermediate_without_basic_constraints_is_refused() {
    let mut p = ca_params("spiffe://example.org");
    p.is_ca = IsCa::NoCa;
    assert_eq!(
        intermediate_error(p),
        VerifyError::Profile(SvidError::SigningNotCa { index: 1 })
    );
}

#[test]
fn intermediate_without_key_cert_sign_is_refused() {
    let mut p = ca_params("spiffe://example.org");
    p.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    assert_eq!(
        intermediate_error(p),
        VerifyError::Profile(SvidError::SigningNoKeyCertSign { index: 1 })
    );
}

#[test]
fn intermediate_without_key_usage_is_refused() {
    let mut p = ca_params("spiffe://example.org");
    p.key_usages.clear();
    assert_eq!(
        intermediate_error(p),
        VerifyError::Profile(SvidError::SigningNoKeyCertSign { index: 1 })
    );
}

#[test]
fn intermediate_whose_spiffe_id_has_a_path_is_refused() {
    let p = ca_params("spiffe://example.org/ca");
    assert_eq!(
        intermediate_error(p),
        VerifyError::Profile(SvidError::SigningIdHasPath {
            index: 1,
            id: id("spiffe://example.org/ca")
        })
    );
}

#[test]
fn second_intermediate_is_reported_at_its_index() {
    let (root, b) = rcgen_root();
    let mut p = ca_params("spiffe://example.org");
    p.is_ca = IsCa::ExplicitNoCa;
    let bad = root.intermediate(p);
    let good = bad.intermediate(ca_params("spiffe://example.org"));
    let leaf = good.leaf(&leaf_params(WEB));
    assert_eq!(
        refused(&[leaf, good.der, bad.der], &b, "non-CA second intermediate"),
        VerifyError::Profile(SvidError::SigningNotCa { index: 2 })
    );
}

// Rule 11: validity, signatures, unknown roots, pathLen, critical extensions.

#[test]
fn expired_leaf_is_refused() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id(WEB), Duration::from_secs(60)).unwrap();
    let at = svid.not_after() + HOUR;
    assert_eq!(
        verify_at(svid.chain(), &bundle(TD, [root_of(&root)]), at).unwrap_err(),
        VerifyError::Expired {
            at,
            not_after: svid.not_after()
        }
    );
}

#[test]
fn leaf_not_yet_valid_is_refused() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id(WEB), HOUR).unwrap();
    let at = svid.not_before() - HOUR;
    assert_eq!(
        verify_at(svid.chain(), &bundle(TD, [root_of(&root)]), at).unwrap_err(),
        VerifyError::NotYetValid {
            at,
            not_before: svid.not_before()
        }
    );
}

#[test]
fn expired_intermediate_is_refused() {
    let (root, b) = rcgen_root();
    let mut p = ca_params("spiffe://example.org");
    let now = SystemTime::now();
    let not_after = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            (now - DAY)
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    p.not_after = not_after.into();
    let int = root.intermediate(p);
    let leaf = int.leaf(&leaf_params(WEB));
    let err = refused(&[leaf, int.der], &b, "expired intermediate");
    assert!(
        matches!(err, VerifyError::Expired { not_after: n, .. } if n == not_after),
        "{err:?}"
    );
}

#[test]
fn leaf_under_unknown_root_of_same_trust_domain_is_refused() {
    let ours = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let theirs = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let svid = theirs.issue(&id(WEB), HOUR).unwrap();
    assert_eq!(
        refused(svid.chain(), &bundle(TD, [root_of(&ours)]), "foreign root"),
        VerifyError::UnknownIssuer
    );
}

#[test]
fn leaf_with_flipped_signature_byte_is_refused() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id(WEB), HOUR).unwrap();
    let mut der = svid.leaf().to_vec();
    *der.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        refused(
            &[CertificateDer::from(der)],
            &bundle(TD, [root_of(&root)]),
            "flipped signature"
        ),
        VerifyError::BadSignature
    );
}

#[test]
fn intermediate_with_flipped_signature_byte_is_refused() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let int = root.new_intermediate(DAY, KeyType::P384).unwrap();
    let svid = int.issue(&id(WEB), HOUR).unwrap();
    let mut chain = svid.chain().to_vec();
    let mut der = chain[1].to_vec();
    *der.last_mut().unwrap() ^= 0x01;
    chain[1] = CertificateDer::from(der);
    assert_eq!(
        refused(&chain, &bundle(TD, [root_of(&root)]), "flipped signature"),
        VerifyError::BadSignature
    );
}

#[test]
fn root_path_len_zero_above_intermediate_is_refused() {
    let mut p = ca_params("spiffe://example.org");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let root = Ca::root_with(p, Curve::P256);
    let int = root.intermediate(ca_params("spiffe://example.org"));
    let leaf = int.leaf(&leaf_params(WEB));
    assert_eq!(
        refused(&[leaf, int.der], &bundle(TD, [&root.der]), "root pathLen 0"),
        VerifyError::PathLenExceeded
    );
}

#[test]
fn intermediate_path_len_zero_above_intermediate_is_refused() {
    let (root, b) = rcgen_root();
    let mut p = ca_params("spiffe://example.org");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let upper = root.intermediate(p);
    let lower = upper.intermediate(ca_params("spiffe://example.org"));
    let leaf = lower.leaf(&leaf_params(WEB));
    assert_eq!(
        refused(&[leaf, lower.der, upper.der], &b, "intermediate pathLen 0"),
        VerifyError::PathLenExceeded
    );
}

#[test]
fn leaf_with_unknown_critical_extension_is_refused() {
    let mut p = leaf_params(WEB);
    p.custom_extensions = vec![certs::unknown_critical_extension()];
    assert_eq!(leaf_error(&p), VerifyError::UnsupportedCriticalExtension);
}

#[test]
fn intermediate_with_unknown_critical_extension_is_refused() {
    let mut p = ca_params("spiffe://example.org");
    p.custom_extensions = vec![certs::unknown_critical_extension()];
    assert_eq!(
        intermediate_error(p),
        VerifyError::UnsupportedCriticalExtension
    );
}

#[test]
fn signature_algorithm_not_allowed_is_refused() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P384).unwrap();
    let svid = root.issue(&id(WEB), HOUR).unwrap();
    let only_p256: &[&dyn SignatureVerificationAlgorithm] = &[webpki::ring::ECDSA_P256_SHA256];
    let err = verify_x509_svid(
        svid.chain(),
        &bundle(TD, [root_of(&root)]),
        SystemTime::now(),
        only_p256,
    )
    .unwrap_err();
    assert_eq!(err, VerifyError::UnsupportedSignatureAlgorithm);
}

// Rule 10: roots chosen by the leaf's trust domain.

#[test]
fn bundle_only_for_another_trust_domain_is_no_bundle() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let other = Authority::new_root(td("other.org"), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id(WEB), HOUR).unwrap();
    let expected = VerifyError::NoBundle {
        trust_domain: td(TD),
    };
    // Even a bundle of the other trust domain that holds our very root is not used.
    let single = bundle("other.org", [root_of(&root)]);
    assert_eq!(refused(svid.chain(), &single, "other td"), expected);
    let set: BundleSet = [bundle("other.org", [root_of(&other)])]
        .into_iter()
        .collect();
    assert_eq!(refused(svid.chain(), &set, "other td in set"), expected);
    assert_eq!(
        refused(svid.chain(), &BundleSet::new(), "empty set"),
        expected
    );
}

#[test]
fn bundles_of_different_trust_domains_are_never_merged() {
    // a.test's CA signs a leaf claiming b.test: b.test's roots must not include a.test's.
    let a = Ca::root("a.test");
    let b = Ca::root("b.test");
    let leaf = a.leaf(&leaf_params("spiffe://b.test/intruder"));
    let set: BundleSet = [bundle("a.test", [&a.der]), bundle("b.test", [&b.der])]
        .into_iter()
        .collect();
    assert_eq!(
        refused(&[leaf], &set, "cross-domain leaf"),
        VerifyError::UnknownIssuer
    );
}

#[test]
fn empty_bundle_of_the_trust_domain_is_refused() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id(WEB), HOUR).unwrap();
    assert_eq!(
        refused(svid.chain(), &X509Bundle::new(td(TD)), "empty bundle"),
        VerifyError::UnknownIssuer
    );
}

// Rule 12: URI name constraints fail closed.

#[test]
fn permitted_uri_name_constraint_on_root_fails_closed() {
    let mut p = ca_params("spiffe://example.org");
    p.custom_extensions = vec![certs::uri_name_constraint(TD, false)];
    let root = Ca::root_with(p, Curve::P256);
    let leaf = root.leaf(&leaf_params(WEB));
    assert_eq!(
        refused(&[leaf], &bundle(TD, [&root.der]), "URI NC on root"),
        VerifyError::NameConstraints
    );
}

#[test]
fn permitted_uri_name_constraint_on_intermediate_fails_closed() {
    let mut p = ca_params("spiffe://example.org");
    p.custom_extensions = vec![certs::uri_name_constraint(TD, false)];
    assert_eq!(intermediate_error(p), VerifyError::NameConstraints);
}

#[test]
fn excluded_uri_name_constraint_on_intermediate_fails_closed() {
    let mut p = ca_params("spiffe://example.org");
    p.custom_extensions = vec![certs::uri_name_constraint("other.org", true)];
    assert_eq!(intermediate_error(p), VerifyError::NameConstraints);
}

// Malformed or missing input.

#[test]
fn empty_chain_is_refused() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    assert_eq!(
        refused(&[], &bundle(TD, [root_of(&root)]), "empty chain"),
        VerifyError::EmptyChain
    );
}

#[test]
fn garbage_leaf_is_malformed_at_index_0() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let garbage = CertificateDer::from(b"\xde\xad\xbe\xef not a certificate".to_vec());
    assert_eq!(
        refused(&[garbage], &bundle(TD, [root_of(&root)]), "garbage leaf"),
        VerifyError::Profile(SvidError::MalformedCertificate { index: 0 })
    );
}

#[test]
fn garbage_intermediate_is_malformed_at_its_index() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id(WEB), HOUR).unwrap();
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    let chain = [svid.leaf().clone(), garbage];
    assert_eq!(
        refused(
            &chain,
            &bundle(TD, [root_of(&root)]),
            "garbage intermediate"
        ),
        VerifyError::Profile(SvidError::MalformedCertificate { index: 1 })
    );
}

// validate_path: the path-validation layer alone.

#[test]
fn validate_path_accepts_a_good_chain_for_both_usages() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let int = root.new_intermediate(DAY, KeyType::P384).unwrap();
    let svid = int.issue(&id(WEB), HOUR).unwrap();
    for usage in [Usage::ServerAuth, Usage::ClientAuth] {
        validate_path(
            svid.leaf(),
            &svid.chain()[1..],
            std::slice::from_ref(root_of(&root)),
            SystemTime::now(),
            ALGS,
            usage,
        )
        .unwrap();
    }
}

#[test]
fn validate_path_refuses_an_unknown_root() {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let other = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id(WEB), HOUR).unwrap();
    let err = validate_path(
        svid.leaf(),
        &[],
        std::slice::from_ref(root_of(&other)),
        SystemTime::now(),
        ALGS,
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert_eq!(err, VerifyError::UnknownIssuer);
}

#[test]
fn validate_path_checks_eku_for_the_usage() {
    let (root, _) = rcgen_root();
    let mut p = leaf_params(WEB);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = root.leaf(&p);
    let roots = std::slice::from_ref(&root.der);
    let now = SystemTime::now();
    validate_path(&leaf, &[], roots, now, ALGS, Usage::ServerAuth).unwrap();
    assert_eq!(
        validate_path(&leaf, &[], roots, now, ALGS, Usage::ClientAuth).unwrap_err(),
        VerifyError::ExtendedKeyUsage
    );
}

// ---------------------------------------------------------------------------------------
// 3. Interop: chains built by the openssl CLI to the SPIFFE profile.
// ---------------------------------------------------------------------------------------

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = req_dn
string_mask = utf8only
[req_dn]
[v3_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
subjectAltName = URI:spiffe://example.org
[v3_int]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = URI:spiffe://example.org
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = URI:spiffe://example.org/openssl
";

#[derive(Clone, Copy)]
enum OsslKey {
    Rsa2048,
    P256,
    P384,
}

impl OsslKey {
    fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            Self::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Self::P256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Self::P384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        }
    }

    /// The digest this key signs with.
    fn digest(self) -> &'static str {
        match self {
            Self::Rsa2048 | Self::P256 => "-sha256",
            Self::P384 => "-sha384",
        }
    }
}

/// A scratch directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-verify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl args…` in `dir`, failing the test with openssl's stderr.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (is it on PATH?)");
    assert!(
        out.status.success(),
        "openssl {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_cert(path: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

/// The openssl commands of one chain, run in a scratch directory.
struct Openssl<'a> {
    scratch: &'a Scratch,
    cnf: String,
}

impl<'a> Openssl<'a> {
    fn new(scratch: &'a Scratch) -> Self {
        let cnf = scratch.path("spiffe.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).unwrap();
        Self { scratch, cnf }
    }

    fn run(&self, args: &[&str]) {
        openssl(&self.scratch.0, args);
    }

    /// Writes `{name}.key` and a CSR `{name}.csr` for `subject`.
    fn key_and_csr(&self, name: &str, key: OsslKey, subject: &str) {
        let (k, csr) = (format!("{name}.key"), format!("{name}.csr"));
        let mut args = vec!["genpkey"];
        args.extend(key.genpkey_args());
        args.extend(["-out", &k]);
        self.run(&args);
        self.run(&[
            "req", "-new", "-config", &self.cnf, "-key", &k, "-subj", subject, "-out", &csr,
        ]);
    }

    /// Self-signs `{name}.csr` with `{name}.key` into `{name}.pem`.
    fn self_sign(&self, name: &str, key: OsslKey) {
        let (k, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-key",
            &k,
            "-days",
            "2",
            "-extfile",
            &self.cnf,
            "-extensions",
            "v3_root",
            key.digest(),
            "-out",
            &pem,
        ]);
    }

    /// Signs `{name}.csr` with CA `{ca}` (key type `by`) into `{name}.pem`.
    fn sign(&self, name: &str, ca: &str, by: OsslKey, extensions: &str, serial: usize) {
        let (csr, pem) = (format!("{name}.csr"), format!("{name}.pem"));
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let serial = format!("0x{serial:04x}{:08x}", std::process::id());
        self.run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "1",
            "-extfile",
            &self.cnf,
            "-extensions",
            extensions,
            by.digest(),
            "-out",
            &pem,
        ]);
    }

    fn cert(&self, name: &str) -> CertificateDer<'static> {
        read_cert(&self.scratch.path(&format!("{name}.pem")))
    }
}

/// Builds root → CAs → P-256 leaf with openssl; checks that `openssl verify -x509_strict`
/// accepts it; returns (root, presented chain leaf first).
fn openssl_chain(
    scratch: &Scratch,
    root_key: OsslKey,
    intermediate_keys: &[OsslKey],
) -> (CertificateDer<'static>, Vec<CertificateDer<'static>>) {
    let ossl = Openssl::new(scratch);
    ossl.key_and_csr("ca0", root_key, "/O=SPIFFE/CN=openssl root");
    ossl.self_sign("ca0", root_key);
    let mut signer = ("ca0".to_owned(), root_key);
    for (i, key) in intermediate_keys.iter().enumerate() {
        let name = format!("ca{}", i + 1);
        let subject = format!("/O=SPIFFE/CN=openssl intermediate {}", i + 1);
        ossl.key_and_csr(&name, *key, &subject);
        ossl.sign(&name, &signer.0, signer.1, "v3_int", i + 1);
        signer = (name, *key);
    }
    ossl.key_and_csr("leaf", OsslKey::P256, "/O=SPIFFE/CN=openssl leaf");
    ossl.sign("leaf", &signer.0, signer.1, "v3_leaf", 0xff);

    // openssl itself accepts what it built.
    let intermediates: Vec<String> = (1..=intermediate_keys.len())
        .map(|n| format!("ca{n}"))
        .collect();
    let untrusted: String = intermediates
        .iter()
        .map(|n| std::fs::read_to_string(scratch.path(&format!("{n}.pem"))).unwrap())
        .collect();
    std::fs::write(scratch.path("untrusted.pem"), untrusted).unwrap();
    let mut verify_args = vec!["verify", "-x509_strict", "-CAfile", "ca0.pem"];
    if !intermediates.is_empty() {
        verify_args.extend(["-untrusted", "untrusted.pem"]);
    }
    verify_args.push("leaf.pem");
    ossl.run(&verify_args);

    let mut presented = vec![ossl.cert("leaf")];
    presented.extend(intermediates.iter().rev().map(|n| ossl.cert(n)));
    (ossl.cert("ca0"), presented)
}

fn assert_openssl_chain_verifies(name: &str, root_key: OsslKey, intermediates: &[OsslKey]) {
    let scratch = Scratch::new(name);
    let (root, presented) = openssl_chain(&scratch, root_key, intermediates);
    let verified = verify(&presented, &bundle(TD, [&root])).unwrap();
    assert_eq!(verified.id(), &id("spiffe://example.org/openssl"));
    assert_eq!(verified.chain().len(), 1 + intermediates.len());
}

#[test]
fn openssl_rsa2048_root_p384_intermediate_p256_leaf_verifies() {
    assert_openssl_chain_verifies("rsa-p384", OsslKey::Rsa2048, &[OsslKey::P384]);
}

#[test]
fn openssl_rsa2048_root_p256_leaf_verifies() {
    assert_openssl_chain_verifies("rsa", OsslKey::Rsa2048, &[]);
}

#[test]
fn openssl_p384_root_p256_leaf_verifies() {
    assert_openssl_chain_verifies("p384", OsslKey::P384, &[]);
}

#[test]
fn openssl_p384_root_p384_intermediate_p256_leaf_verifies() {
    assert_openssl_chain_verifies("p384-p384", OsslKey::P384, &[OsslKey::P384]);
}

#[test]
fn openssl_chain_under_another_root_is_refused() {
    let scratch = Scratch::new("foreign");
    let (_, presented) = openssl_chain(&scratch, OsslKey::P384, &[OsslKey::P384]);
    let ours = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    assert_eq!(
        refused(&presented, &bundle(TD, [root_of(&ours)]), "openssl chain"),
        VerifyError::UnknownIssuer
    );
}

// ---------------------------------------------------------------------------------------
// 4. Bad input in every position: an error, never a panic, never Ok.
// ---------------------------------------------------------------------------------------

/// A good leaf → intermediate → intermediate chain and its bundle.
fn three_position_chain() -> (Vec<CertificateDer<'static>>, X509Bundle) {
    let root = Authority::new_root(td(TD), DAY, KeyType::P256).unwrap();
    let int2 = root
        .new_intermediate(DAY, KeyType::P384)
        .unwrap()
        .new_intermediate(DAY, KeyType::P256)
        .unwrap();
    let svid = int2.issue(&id(WEB), HOUR).unwrap();
    let b = bundle(TD, [root_of(&root)]);
    verify(svid.chain(), &b).expect("baseline verifies");
    (svid.chain().to_vec(), b)
}

fn with_replaced(
    chain: &[CertificateDer<'static>],
    position: usize,
    der: Vec<u8>,
) -> Vec<CertificateDer<'static>> {
    let mut c = chain.to_vec();
    c[position] = CertificateDer::from(der);
    c
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

#[test]
fn truncated_certificate_in_each_position_is_malformed() {
    let (chain, b) = three_position_chain();
    for position in 0..chain.len() {
        for len in 0..chain[position].len() {
            let bad = with_replaced(&chain, position, chain[position][..len].to_vec());
            let what = format!("position {position} truncated to {len} bytes");
            assert_eq!(
                refused(&bad, &b, &what),
                VerifyError::Profile(SvidError::MalformedCertificate { index: position }),
                "{what}"
            );
        }
    }
}

#[test]
fn oversized_certificate_in_each_position_is_malformed() {
    const MIB: usize = 1 << 20;
    let (chain, b) = three_position_chain();
    for position in 0..chain.len() {
        // A good certificate followed by 1 MiB of trailing bytes.
        let mut trailing = chain[position].to_vec();
        trailing.resize(trailing.len() + MIB, 0);
        // One 1 MiB SEQUENCE.
        let huge = certs::tlv(0x30, &vec![0x30; MIB]);
        // A good certificate's TBS padded inside the outer SEQUENCE to over 1 MiB.
        let mut inner = chain[position][4..].to_vec();
        inner.extend(certs::tlv(0x04, &vec![0xaa; MIB]));
        let padded = certs::tlv(0x30, &inner);
        for (kind, der) in [("trailing", trailing), ("huge", huge), ("padded", padded)] {
            assert!(der.len() >= MIB);
            let what = format!("position {position} {kind}");
            assert_eq!(
                refused(&with_replaced(&chain, position, der), &b, &what),
                VerifyError::Profile(SvidError::MalformedCertificate { index: position }),
                "{what}"
            );
        }
    }
}

#[test]
fn random_der_in_each_position_is_refused() {
    let (chain, b) = three_position_chain();
    let mut rng = Rng(0x6d65_7368_6964_0001);
    for position in 0..chain.len() {
        for round in 0..300 {
            let len = rng.below(1500);
            let body = rng.bytes(len);
            // Half the inputs look like a SEQUENCE of the right length, to get past the
            // outermost header.
            let der = if round % 2 == 0 {
                certs::tlv(0x30, &body)
            } else {
                body
            };
            let what = format!("position {position} round {round}: {der:02x?}");
            refused(&with_replaced(&chain, position, der), &b, &what);
        }
    }
}

#[test]
fn any_byte_flipped_in_any_position_is_refused() {
    let (chain, b) = three_position_chain();
    for position in 0..chain.len() {
        for i in 0..chain[position].len() {
            for mask in [0x01, 0x80] {
                let mut der = chain[position].to_vec();
                der[i] ^= mask;
                let what = format!("position {position} byte {i} ^ {mask:#04x}");
                refused(&with_replaced(&chain, position, der), &b, &what);
            }
        }
    }
}

#[test]
fn bad_bundle_authorities_are_refused_or_unused() {
    let (chain, _) = three_position_chain();
    let mut rng = Rng(0x6d65_7368_6964_0002);
    let mut bad_roots: Vec<Vec<u8>> = vec![Vec::new(), vec![0x30, 0x00], rng.bytes(700)];
    bad_roots.push(certs::tlv(0x30, &vec![0; 1 << 20]));
    for der in &bad_roots {
        let cert = CertificateDer::from(der.clone());
        // The bundle loader refuses it ...
        assert!(X509Bundle::from_authorities(td(TD), [cert.clone()]).is_err());
        // ... and the path layer, given it as a root anyway, finds no anchor in it.
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            validate_path(
                &chain[0],
                &chain[1..],
                std::slice::from_ref(&cert),
                SystemTime::now(),
                ALGS,
                Usage::ServerAuth,
            )
        }));
        assert_eq!(run.expect("no panic"), Err(VerifyError::UnknownIssuer));
    }
}

// The trust anchor's own profile: webpki keeps only its name and key, so meshid checks
// what the root says about itself (X509-SVID §4.1, §4.3).

#[test]
fn root_without_key_cert_sign_is_refused() {
    let mut p = ca_params("spiffe://example.org");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let root = Ca::root_with(p, Curve::P256);
    let leaf = root.leaf(&leaf_params(WEB));
    assert_eq!(
        refused(
            &[leaf],
            &bundle(TD, [&root.der]),
            "root without keyCertSign"
        ),
        VerifyError::RootNoKeyCertSign
    );
}

#[test]
fn root_with_a_pathful_spiffe_id_is_refused() {
    let root = Ca::root_with(ca_params("spiffe://example.org/not-a-ca"), Curve::P256);
    let leaf = root.leaf(&leaf_params(WEB));
    assert_eq!(
        refused(&[leaf], &bundle(TD, [&root.der]), "root with a path"),
        VerifyError::RootIdHasPath
    );
}

#[test]
fn validate_path_refuses_an_intermediate_without_key_cert_sign() {
    let root = Ca::root_with(ca_params("spiffe://example.org"), Curve::P256);
    let mut p = ca_params("spiffe://example.org");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let int = root.intermediate(p);
    let leaf = int.leaf(&leaf_params(WEB));
    let err = meshid::validate_path(
        &leaf,
        std::slice::from_ref(&int.der),
        std::slice::from_ref(&root.der),
        std::time::SystemTime::now(),
        webpki::ALL_VERIFICATION_ALGS,
        meshid::Usage::ServerAuth,
    )
    .unwrap_err();
    assert_eq!(err, VerifyError::IntermediateNoKeyCertSign);
}

#[test]
fn a_faulty_root_does_not_hide_a_good_one() {
    // A bundle holding a faulty root and a good one: the good one's chain still verifies.
    let mut p = ca_params("spiffe://example.org");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let faulty = Ca::root_with(p, Curve::P256);
    let good = Ca::root_with(ca_params("spiffe://example.org"), Curve::P256);
    let leaf = good.leaf(&leaf_params(WEB));
    let verified = meshid::verify_x509_svid(
        &[leaf],
        &bundle(TD, [&faulty.der, &good.der]),
        std::time::SystemTime::now(),
        webpki::ALL_VERIFICATION_ALGS,
    )
    .unwrap();
    assert_eq!(verified.id().as_str(), WEB);
}

// The trust anchor's validity: webpki keeps no validity on a trust anchor, so meshid checks
// it (as Go's crypto/x509, and so go-spiffe, do): a chain ending at an expired or not yet
// valid bundle root is refused, and `not_after()` counts the anchor.

/// `t` truncated to whole seconds, as X.509 times are.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// An rcgen root for example.org valid from `not_before` to `not_after`.
fn root_valid(not_before: SystemTime, not_after: SystemTime) -> Ca {
    let mut p = ca_params("spiffe://example.org");
    p.not_before = not_before.into();
    p.not_after = not_after.into();
    Ca::root_with(p, Curve::P256)
}

/// A profile leaf for WEB under `ca`, valid from an hour ago to `not_after`.
fn leaf_until(ca: &Ca, not_after: SystemTime) -> CertificateDer<'static> {
    let mut p = leaf_params(WEB);
    p.not_before = (SystemTime::now() - HOUR).into();
    p.not_after = not_after.into();
    ca.leaf(&p)
}

#[test]
fn chain_under_an_expired_root_is_refused() {
    let now = whole_seconds(SystemTime::now());
    let not_after = now - DAY;
    let root = root_valid(now - 30 * DAY, not_after);
    // The leaf itself is valid now: only the anchor has expired.
    let leaf = leaf_until(&root, now + DAY);
    assert_eq!(
        verify_at(&[leaf], &bundle(TD, [&root.der]), now).unwrap_err(),
        VerifyError::ExpiredAnchor { at: now, not_after }
    );
}

#[test]
fn chain_under_an_expired_root_through_an_intermediate_is_refused() {
    let now = whole_seconds(SystemTime::now());
    let not_after = now - HOUR;
    let root = root_valid(now - 30 * DAY, not_after);
    let int = root.intermediate(ca_params("spiffe://example.org"));
    let leaf = leaf_until(&int, now + DAY);
    let err = refused(
        &[leaf, int.der.clone()],
        &bundle(TD, [&root.der]),
        "expired root",
    );
    assert!(
        matches!(err, VerifyError::ExpiredAnchor { not_after: n, .. } if n == not_after),
        "{err:?}"
    );
    // The path-validation layer alone refuses it too.
    let leaf = leaf_until(&int, now + DAY);
    assert!(matches!(
        validate_path(
            &leaf,
            std::slice::from_ref(&int.der),
            std::slice::from_ref(&root.der),
            now,
            ALGS,
            Usage::ServerAuth
        ),
        Err(VerifyError::ExpiredAnchor { .. })
    ));
}

#[test]
fn chain_under_a_root_not_yet_valid_is_refused() {
    let now = whole_seconds(SystemTime::now());
    let not_before = now + HOUR;
    let root = root_valid(not_before, now + 30 * DAY);
    let leaf = leaf_until(&root, now + DAY);
    assert_eq!(
        verify_at(&[leaf], &bundle(TD, [&root.der]), now).unwrap_err(),
        VerifyError::AnchorNotYetValid {
            at: now,
            not_before
        }
    );
}

#[test]
fn an_expired_root_does_not_hide_its_renewal_with_the_same_key() {
    // A root renewed with the same key and name (as CAs often are): both are in the bundle,
    // the expired one first. They make the same webpki trust anchor; the chain is valid
    // through the renewed one, and ends when the renewed one does.
    let now = whole_seconds(SystemTime::now());
    let old = root_valid(now - 30 * DAY, now - DAY);
    let mut p = old.params.clone();
    p.not_before = (now - DAY).into();
    let renewed_until = now + 2 * HOUR;
    p.not_after = renewed_until.into();
    let renewed = p.self_signed(&old.key).unwrap().der().clone();
    let leaf = leaf_until(&old, now + DAY);
    let verified = verify_at(&[leaf], &bundle(TD, [&old.der, &renewed]), now).unwrap();
    assert_eq!(verified.id(), &id(WEB));
    assert_eq!(verified.not_after(), renewed_until);
}

#[test]
fn not_after_counts_the_root_when_it_expires_first() {
    let now = whole_seconds(SystemTime::now());
    let root_until = now + 2 * HOUR;
    let root = root_valid(now - DAY, root_until);
    let leaf = leaf_until(&root, now + DAY);
    let verified = verify_at(&[leaf], &bundle(TD, [&root.der]), now).unwrap();
    assert_eq!(verified.not_after(), root_until);
    // Our Authority caps what it issues at its own NotAfter, the root's included.
    let root = Authority::new_root(td(TD), 2 * HOUR, KeyType::P256).unwrap();
    let int = root.new_intermediate(DAY, KeyType::P256).unwrap();
    let svid = int.issue(&id(WEB), DAY).unwrap();
    let verified = verify(svid.chain(), &bundle(TD, [root_of(&root)])).unwrap();
    assert_eq!(verified.not_after(), svid.not_after());
}

#[test]
fn not_after_counts_only_the_path_not_extra_certificates() {
    // A presented certificate that is on no path (here an unrelated, shorter-lived CA of the
    // trust domain) does not shorten how long the verification holds.
    let now = whole_seconds(SystemTime::now());
    let root = root_valid(now - DAY, now + 30 * DAY);
    let mut p = ca_params("spiffe://example.org");
    p.not_after = (now + HOUR).into();
    let stray = root.intermediate(p);
    let leaf_until_time = now + DAY;
    let leaf = leaf_until(&root, leaf_until_time);
    let verified = verify_at(&[leaf, stray.der], &bundle(TD, [&root.der]), now).unwrap();
    assert_eq!(verified.not_after(), leaf_until_time);
}
