//! PKI costs against peers in the same run: `cargo bench --features ring --bench pki`.
//! Compare lines within a group (ratios); absolute times drift on shared machines.
//!
//! - `issue`: one leaf from an already-parsed CSR. meshid `Authority::sign_csr` with the
//!   ring signer vs rcgen `CertificateParams::signed_by` on ring (same backend); meshid with
//!   the pure-Rust p256 signer vs a bare p256 signature over a TBS of the same size.
//! - `verify_3_cert_chain`: root → intermediate → leaf. meshid `verify_x509_svid` (SPIFFE
//!   rules + webpki, no cache) vs bare `rustls-webpki` `verify_for_usage` with its anchors
//!   built once.
//! - `verify_repeat_chain`: the same chain again through a `VerifiedChainCache` (a repeat
//!   peer) vs bare webpki; `verify_new_chain`: 6,000 distinct chains in turn, more than the
//!   cache holds, so every lookup misses (asserted) vs bare webpki on the same chains.
//! - `keygen`, `csr`: P-256 key generation and CSR build, meshid's two backends vs rcgen.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use meshid::{
    Authority, BundleSet, CsrBuilder, KeyPair, KeyType, RingKeyPair, SpiffeId, SvidRequest,
    TrustDomain, Usage, VerifiedChainCache, X509Bundle,
};
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::Generate as _;
use rustls_pki_types::CertificateDer;

const DAY: Duration = Duration::from_secs(86_400);

fn issue(c: &mut Criterion) {
    let td = TrustDomain::new("example.org").unwrap();
    let id = SpiffeId::new("spiffe://example.org/ns/default/sa/web").unwrap();
    let leaf_key = KeyPair::generate(KeyType::P256).unwrap();
    let csr = CsrBuilder::new(id.clone()).build(&leaf_key).unwrap();
    let request = SvidRequest::new();

    let ring_ca = Authority::new_root_with_signer(
        td.clone(),
        DAY,
        Arc::new(RingKeyPair::generate(KeyType::P256).unwrap()),
    )
    .unwrap();
    let p256_ca = Authority::new_root(td, DAY, KeyType::P256).unwrap();

    // rcgen: a CA on ring and the same leaf profile (URI SAN, KU, EKU, key ids).
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let rcgen_ca_key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::new(ca_params, rcgen_ca_key);
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![rcgen::SanType::URI(id.as_str().try_into().unwrap())];
    leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.use_authority_key_identifier_extension = true;
    let rcgen_leaf_key = rcgen::KeyPair::generate().unwrap();

    let tbs_len = p256_ca.sign_csr(&csr, &request).unwrap()[0].len() - 72;
    let bare_key = p256::ecdsa::SigningKey::try_generate().unwrap();
    let tbs = vec![0x5a_u8; tbs_len];

    let mut g = c.benchmark_group("issue");
    g.bench_function("meshid_ring", |b| {
        b.iter(|| ring_ca.sign_csr(black_box(&csr), &request).unwrap());
    });
    g.bench_function("rcgen_ring", |b| {
        b.iter(|| leaf.signed_by(black_box(&rcgen_leaf_key), &issuer).unwrap());
    });
    #[cfg(feature = "aws-lc-rs")]
    {
        let aws_ca = Authority::new_root_with_signer(
            TrustDomain::new("example.org").unwrap(),
            DAY,
            Arc::new(meshid::AwsLcKeyPair::generate(KeyType::P256).unwrap()),
        )
        .unwrap();
        g.bench_function("meshid_aws_lc", |b| {
            b.iter(|| aws_ca.sign_csr(black_box(&csr), &request).unwrap());
        });
    }
    g.bench_function("meshid_p256", |b| {
        b.iter(|| p256_ca.sign_csr(black_box(&csr), &request).unwrap());
    });
    g.bench_function("bare_p256_signature", |b| {
        b.iter(|| -> p256::ecdsa::DerSignature { bare_key.sign(black_box(&tbs)) });
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let td = TrustDomain::new("example.org").unwrap();
    let root = Authority::new_root(td.clone(), DAY, KeyType::P256).unwrap();
    let inter = root.new_intermediate(DAY, KeyType::P256).unwrap();
    let svid = inter
        .issue(&SpiffeId::new("spiffe://example.org/web").unwrap(), DAY)
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = svid.chain().to_vec();
    let roots = vec![root.root().unwrap().clone()];
    let mut set = BundleSet::new();
    set.insert(X509Bundle::from_authorities(td, roots.clone()).unwrap());
    let algs = meshid::ring_algorithms();
    let now = SystemTime::now();
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).unwrap())
        .collect();
    let time = rustls_pki_types::UnixTime::now();

    let bare_at = |chain: &[CertificateDer<'static>], time: rustls_pki_types::UnixTime| {
        let ee = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
        ee.verify_for_usage(
            algs,
            &anchors,
            &chain[1..],
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
        .unwrap();
    };
    let bare = |chain: &[CertificateDer<'static>]| bare_at(chain, time);

    // Full verification every time (no cache): the SPIFFE checks' own cost.
    let mut g = c.benchmark_group("verify_3_cert_chain");
    g.bench_function("meshid", |b| {
        b.iter(|| meshid::verify_x509_svid(black_box(&chain), &set, now, algs).unwrap());
    });
    g.bench_function("bare_webpki", |b| b.iter(|| bare(black_box(&chain))));
    g.finish();

    // A repeat peer: the same chain again, through the verified-chain cache.
    let cache = VerifiedChainCache::default();
    let mut g = c.benchmark_group("verify_repeat_chain");
    let mut repeat_ran = false; // not when filtered out
    g.bench_function("meshid_cached", |b| {
        repeat_ran = true;
        b.iter(|| {
            cache
                .verify(black_box(&chain), &set, now, algs, Usage::ServerAuth)
                .unwrap()
        });
    });
    g.bench_function("bare_webpki", |b| b.iter(|| bare(black_box(&chain))));
    g.finish();
    let repeat = cache.stats();
    assert!(
        !repeat_ran || (repeat.misses == 1 && repeat.hits > 0),
        "{repeat:?}"
    );

    // Every chain new: more distinct chains than the cache holds, taken in turn, so each
    // lookup misses (checked below) and each verification pays hashing and insertion too.
    let pool: Vec<Vec<CertificateDer<'static>>> = (0..6000)
        .map(|n| {
            let id = SpiffeId::new(&format!("spiffe://example.org/w/{n}")).unwrap();
            inter.issue(&id, DAY).unwrap().chain().to_vec()
        })
        .collect();
    // The pool's leaves are valid from their issuance, after `now`.
    let (now, time) = (SystemTime::now(), rustls_pki_types::UnixTime::now());
    let cold = VerifiedChainCache::default();
    let mut g = c.benchmark_group("verify_new_chain");
    let mut next = 0;
    let mut cold_ran = false;
    g.bench_function("meshid_cached", |b| {
        cold_ran = true;
        b.iter(|| {
            next = (next + 1) % pool.len();
            cold.verify(black_box(&pool[next]), &set, now, algs, Usage::ServerAuth)
                .unwrap()
        });
    });
    g.bench_function("bare_webpki", |b| {
        b.iter(|| {
            next = (next + 1) % pool.len();
            bare_at(black_box(&pool[next]), time);
        });
    });
    g.finish();
    let cold = cold.stats();
    assert!(!cold_ran || (cold.hits == 0 && cold.misses > 0), "{cold:?}");
    eprintln!("verify_repeat_chain: {repeat:?}\nverify_new_chain: {cold:?}");
}

fn keygen_and_csr(c: &mut Criterion) {
    let mut g = c.benchmark_group("keygen_p256");
    g.bench_function("meshid_p256", |b| {
        b.iter(|| KeyPair::generate(KeyType::P256).unwrap());
    });
    g.bench_function("meshid_ring", |b| {
        b.iter(|| RingKeyPair::generate(KeyType::P256).unwrap());
    });
    g.bench_function("rcgen_ring", |b| {
        b.iter(|| rcgen::KeyPair::generate().unwrap());
    });
    g.finish();

    let id = SpiffeId::new("spiffe://example.org/web").unwrap();
    let p256_key = KeyPair::generate(KeyType::P256).unwrap();
    let ring_key = RingKeyPair::generate(KeyType::P256).unwrap();
    let rcgen_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.as_str().try_into().unwrap())];
    let mut g = c.benchmark_group("csr_build");
    g.bench_function("meshid_p256", |b| {
        b.iter(|| CsrBuilder::new(id.clone()).build(&p256_key).unwrap());
    });
    g.bench_function("meshid_ring", |b| {
        b.iter(|| CsrBuilder::new(id.clone()).build(&ring_key).unwrap());
    });
    g.bench_function("rcgen_ring", |b| {
        b.iter(|| params.serialize_request(&rcgen_key).unwrap());
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = issue, verify, keygen_and_csr
}
criterion_main!(benches);
