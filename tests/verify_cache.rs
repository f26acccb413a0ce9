//! `VerifiedChainCache`: a cached chain is refused as soon as the bundle changes or any
//! certificate of it expires, a chain differing in one byte is never a hit, the cache stays
//! within its bounds, and cached and uncached verification give the same verdict for every
//! input, bundle and time step (a property test).
//!
//! The authorizer being asked again on a hit is a handshake matter: `tests/tls_cache.rs`.

#[path = "common/certs.rs"]
mod certs;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certs::{ca_params, leaf_params, Ca, Curve};
use meshid::{
    verify_x509_svid_for, BundleSet, BundleSource, TrustDomain, Usage, VerifiedChainCache,
    VerifiedSvid, VerifyError, X509Bundle,
};
use proptest::prelude::*;
use rcgen::date_time_ymd;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};

static ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
];

const TD: &str = "example.org";
const SECOND: Duration = Duration::from_secs(1);

/// Midnight UTC of a date, as rcgen's `date_time_ymd` writes it into a certificate.
fn day(year: i32, month: u8, d: u8) -> SystemTime {
    let t = date_time_ymd(year, month, d).unix_timestamp();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap())
}

/// A CA certificate valid from `from` to `to` (dates as `(y, m, d)`).
fn ca_valid(from: (i32, u8, u8), to: (i32, u8, u8)) -> rcgen::CertificateParams {
    let mut p = ca_params(&format!("spiffe://{TD}"));
    p.not_before = date_time_ymd(from.0, from.1, from.2);
    p.not_after = date_time_ymd(to.0, to.1, to.2);
    p
}

fn leaf_valid(path: &str, from: (i32, u8, u8), to: (i32, u8, u8)) -> rcgen::CertificateParams {
    let mut p = leaf_params(&format!("spiffe://{TD}/{path}"));
    p.not_before = date_time_ymd(from.0, from.1, from.2);
    p.not_after = date_time_ymd(to.0, to.1, to.2);
    p
}

fn bundle_of(roots: &[&CertificateDer<'static>]) -> X509Bundle {
    X509Bundle::from_authorities(
        TrustDomain::new(TD).unwrap(),
        roots.iter().map(|r| (*r).clone()),
    )
    .unwrap()
}

/// A bundle source whose bundle a test swaps, as a Workload API source's changes.
#[derive(Default)]
struct Swappable(RwLock<BundleSet>);

impl Swappable {
    fn set(&self, bundle: Option<X509Bundle>) {
        *self.0.write().unwrap() = bundle.into_iter().collect();
    }
}

impl BundleSource for Swappable {
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        self.0.read().unwrap().x509_bundle(trust_domain)
    }
}

fn uncached(
    chain: &[CertificateDer<'_>],
    bundles: &impl BundleSource,
    at: SystemTime,
) -> Result<VerifiedSvid, VerifyError> {
    verify_x509_svid_for(chain, bundles, at, ALGS, Usage::ClientAuth)
}

fn cached(
    cache: &VerifiedChainCache,
    chain: &[CertificateDer<'_>],
    bundles: &impl BundleSource,
    at: SystemTime,
) -> Result<VerifiedSvid, VerifyError> {
    cache.verify(chain, bundles, at, ALGS, Usage::ClientAuth)
}

/// The verdict, comparable: the ID and validity end, or the error.
fn verdict(r: &Result<VerifiedSvid, VerifyError>) -> Result<(String, SystemTime), VerifyError> {
    r.as_ref()
        .map(|v| (v.id().to_string(), v.not_after()))
        .map_err(Clone::clone)
}

/// Root 2020-2040, intermediate 2024-2030, leaf 2025-2028: the leaf expires first.
struct Fixture {
    root: Ca,
    chain: Vec<CertificateDer<'static>>,
}

impl Fixture {
    fn new(intermediate_to: (i32, u8, u8), leaf_to: (i32, u8, u8), root_to: (i32, u8, u8)) -> Self {
        let root = Ca::root_with(ca_valid((2020, 1, 1), root_to), Curve::P256);
        let intermediate = root.intermediate(ca_valid((2024, 1, 1), intermediate_to));
        let leaf = intermediate.leaf(&leaf_valid("web", (2025, 1, 1), leaf_to));
        let mut chain = vec![leaf];
        chain.extend(intermediate.presented());
        Self { root, chain }
    }
}

#[test]
fn a_repeat_chain_is_a_hit_with_the_same_verdict() {
    let f = Fixture::new((2030, 1, 1), (2028, 1, 1), (2040, 1, 1));
    let bundle = bundle_of(&[f.root.root_der()]);
    let cache = VerifiedChainCache::default();
    let at = day(2026, 6, 1);
    let first = cached(&cache, &f.chain, &bundle, at);
    let again = cached(&cache, &f.chain, &bundle, at + Duration::from_secs(3600));
    assert_eq!(verdict(&first), verdict(&uncached(&f.chain, &bundle, at)));
    assert_eq!(verdict(&again), verdict(&first));
    assert_eq!(again.unwrap().chain(), &f.chain[..]);
    let s = cache.stats();
    assert_eq!((s.misses, s.hits, s.entries), (1, 1, 1), "{s:?}");
    assert_eq!(first.unwrap().not_after(), day(2028, 1, 1));
}

#[test]
fn a_cached_chain_is_refused_as_soon_as_the_bundle_changes() {
    let f = Fixture::new((2030, 1, 1), (2028, 1, 1), (2040, 1, 1));
    let other = Ca::root(TD);
    let source = Swappable::default();
    source.set(Some(bundle_of(&[f.root.root_der(), other.root_der()])));
    let cache = VerifiedChainCache::default();
    let at = day(2026, 6, 1);
    cached(&cache, &f.chain, &source, at).unwrap();
    cached(&cache, &f.chain, &source, at).unwrap();
    assert_eq!(cache.stats().hits, 1);

    // The root removed (a rotation that retired it, or a revocation): refused at once.
    source.set(Some(bundle_of(&[other.root_der()])));
    let err = cached(&cache, &f.chain, &source, at).unwrap_err();
    assert_eq!(err, VerifyError::UnknownIssuer);
    assert_eq!(cache.stats().hits, 1, "no hit once the bundle changed");

    // No bundle for the trust domain at all.
    source.set(None);
    assert!(matches!(
        cached(&cache, &f.chain, &source, at),
        Err(VerifyError::NoBundle { .. })
    ));

    // The same content again is a new bundle: verified in full once, then cached again.
    source.set(Some(bundle_of(&[f.root.root_der()])));
    cached(&cache, &f.chain, &source, at).unwrap();
    cached(&cache, &f.chain, &source, at).unwrap();
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (2, 4), "{s:?}");
}

/// Verifies at `ok` (cached), then checks that one second past `end` the cached chain is
/// refused with `expect`, exactly as without the cache.
fn expires_at(f: &Fixture, end: SystemTime, expect: fn(&VerifyError) -> bool) {
    let bundle = bundle_of(&[f.root.root_der()]);
    let cache = VerifiedChainCache::default();
    cached(&cache, &f.chain, &bundle, day(2026, 1, 1)).unwrap();
    // Still valid at the very second it ends (RFC 5280: the bound is inclusive): a hit.
    cached(&cache, &f.chain, &bundle, end).unwrap();
    assert_eq!(cache.stats().hits, 1);
    let late = end + SECOND;
    let err = cached(&cache, &f.chain, &bundle, late).unwrap_err();
    assert!(expect(&err), "{err:?}");
    assert_eq!(Err(err), verdict(&uncached(&f.chain, &bundle, late)));
    assert_eq!(cache.stats().hits, 1);
    // Before the latest notBefore: refused too (a clock set back).
    let early = day(2025, 1, 1) - SECOND;
    let err = cached(&cache, &f.chain, &bundle, early).unwrap_err();
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err:?}");
}

#[test]
fn a_cached_chain_is_refused_as_soon_as_its_leaf_expires() {
    let f = Fixture::new((2030, 1, 1), (2028, 1, 1), (2040, 1, 1));
    expires_at(
        &f,
        day(2028, 1, 1),
        |e| matches!(e, VerifyError::Expired { not_after, .. } if *not_after == day(2028, 1, 1)),
    );
}

#[test]
fn a_cached_chain_is_refused_as_soon_as_its_intermediate_expires() {
    let f = Fixture::new((2027, 3, 1), (2028, 1, 1), (2040, 1, 1));
    expires_at(
        &f,
        day(2027, 3, 1),
        |e| matches!(e, VerifyError::Expired { not_after, .. } if *not_after == day(2027, 3, 1)),
    );
}

#[test]
fn a_cached_chain_is_refused_as_soon_as_its_bundle_authority_expires() {
    let f = Fixture::new((2030, 1, 1), (2028, 1, 1), (2026, 9, 1));
    expires_at(&f, day(2026, 9, 1), |e| {
        matches!(e, VerifyError::ExpiredAnchor { .. })
    });
}

#[test]
fn a_chain_differing_in_one_byte_is_never_a_hit() {
    let f = Fixture::new((2030, 1, 1), (2028, 1, 1), (2040, 1, 1));
    let bundle = bundle_of(&[f.root.root_der()]);
    let cache = VerifiedChainCache::default();
    let at = day(2026, 6, 1);
    cached(&cache, &f.chain, &bundle, at).unwrap();
    let mut accepted = 0;
    for cert in 0..f.chain.len() {
        for i in 0..f.chain[cert].len() {
            let mut chain = f.chain.clone();
            let mut bytes = chain[cert].to_vec();
            bytes[i] ^= 0x01;
            chain[cert] = CertificateDer::from(bytes);
            let hits = cache.stats().hits;
            let with = cached(&cache, &chain, &bundle, at);
            assert_eq!(
                cache.stats().hits,
                hits,
                "certificate {cert}, byte {i}: a hit"
            );
            assert_eq!(verdict(&with), verdict(&uncached(&chain, &bundle, at)));
            accepted += usize::from(with.is_ok());
        }
    }
    // Only bytes no signature covers can change and still verify (none in these chains
    // but, possibly, the unused bits of an outer field): each such chain is its own entry.
    assert!(accepted < 8, "{accepted} one-byte variants verified");
    // And the original is still a hit.
    cached(&cache, &f.chain, &bundle, at).unwrap();
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn another_usage_or_algorithm_set_is_another_entry() {
    let f = Fixture::new((2030, 1, 1), (2028, 1, 1), (2040, 1, 1));
    let bundle = bundle_of(&[f.root.root_der()]);
    let cache = VerifiedChainCache::default();
    let at = day(2026, 6, 1);
    cache
        .verify(&f.chain, &bundle, at, ALGS, Usage::ClientAuth)
        .unwrap();
    cache
        .verify(&f.chain, &bundle, at, ALGS, Usage::ServerAuth)
        .unwrap();
    // P-384 only: the P-256 chain is refused, never answered from the P-256 entries.
    let p384: &[&dyn SignatureVerificationAlgorithm] = &[webpki::ring::ECDSA_P384_SHA384];
    let err = cache
        .verify(&f.chain, &bundle, at, p384, Usage::ClientAuth)
        .unwrap_err();
    assert_eq!(err, VerifyError::UnsupportedSignatureAlgorithm);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 3, 2), "{s:?}");
}

#[test]
fn real_chains_stay_within_a_small_cache_s_bounds() {
    let root = Ca::root(TD);
    let intermediate = root.intermediate(ca_params(&format!("spiffe://{TD}")));
    let bundle = bundle_of(&[root.root_der()]);
    let cache = VerifiedChainCache::new(32, 1 << 20);
    let at = SystemTime::now();
    for n in 0..200 {
        let leaf = intermediate.leaf(&leaf_params(&format!("spiffe://{TD}/w{n}")));
        let mut chain = vec![leaf];
        chain.extend(intermediate.presented());
        cached(&cache, &chain, &bundle, at).unwrap();
        let s = cache.stats();
        assert!(s.entries <= 32, "{s:?}");
    }
    let s = cache.stats();
    assert_eq!(s.misses, 200);
    assert_eq!(s.evictions, 200 - s.entries as u64, "{s:?}");
}

/// The chains of the property test: valid ones with different windows, a chain under
/// another root, one of another trust domain, one broken in a byte, and no chain at all.
struct World {
    chains: Vec<Vec<CertificateDer<'static>>>,
    bundles: Vec<Option<X509Bundle>>,
    times: Vec<SystemTime>,
}

fn world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let a = Fixture::new((2030, 1, 1), (2028, 1, 1), (2040, 1, 1));
        let short_intermediate = Fixture::new((2027, 3, 1), (2028, 1, 1), (2040, 1, 1));
        let short_root = Fixture::new((2030, 1, 1), (2028, 1, 1), (2026, 9, 1));
        let other_td = Ca::root("other.org");
        let other_leaf = other_td.leaf(&leaf_params("spiffe://other.org/web"));
        let mut broken = a.chain.clone();
        let mut bytes = broken[0].to_vec();
        let n = bytes.len();
        bytes[n - 10] ^= 0x40;
        broken[0] = CertificateDer::from(bytes);
        // The same leaf with its intermediate presented twice (a path webpki still builds).
        let mut doubled = a.chain.clone();
        doubled.push(a.chain[1].clone());
        let chains = vec![
            a.chain.clone(),
            short_intermediate.chain.clone(),
            short_root.chain.clone(),
            vec![other_leaf],
            broken,
            doubled,
            a.chain[..1].to_vec(), // the leaf without its intermediate
            Vec::new(),
        ];
        let bundles = vec![
            Some(bundle_of(&[a.root.root_der()])),
            Some(bundle_of(&[
                a.root.root_der(),
                short_intermediate.root.root_der(),
                short_root.root.root_der(),
            ])),
            Some(bundle_of(&[
                short_root.root.root_der(),
                short_intermediate.root.root_der(),
            ])),
            Some(bundle_of(&[other_td.root_der()])),
            None,
        ];
        // Every edge of every window, half a second and a second either side, and times
        // between them.
        let mut times = vec![
            day(2019, 6, 1),
            day(2026, 1, 1),
            day(2029, 1, 1),
            day(2045, 1, 1),
        ];
        for edge in [
            day(2024, 1, 1),
            day(2025, 1, 1),
            day(2026, 9, 1),
            day(2027, 3, 1),
            day(2028, 1, 1),
        ] {
            let half = Duration::from_millis(500);
            times.extend([edge - SECOND, edge - half, edge, edge + half, edge + SECOND]);
        }
        World {
            chains,
            bundles,
            times,
        }
    })
}

#[derive(Debug, Clone)]
enum Step {
    Verify {
        chain: usize,
        time: usize,
    },
    /// A new bundle (fresh instance) from the list, as a source's update.
    Swap {
        bundle: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..8_usize, 0..29_usize).prop_map(|(chain, time)| Step::Verify { chain, time }),
        1 => (0..5_usize).prop_map(|bundle| Step::Swap { bundle }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// For every sequence of verifications at any time and bundle swaps, the cache's verdict
    /// is the uncached one.
    #[test]
    fn cached_and_uncached_verification_always_agree(steps in prop::collection::vec(step(), 1..40)) {
        let w = world();
        let source = Swappable::default();
        source.set(w.bundles[0].clone());
        // Small, so evictions happen within a run too.
        let cache = Arc::new(VerifiedChainCache::new(16, 1 << 20));
        for s in steps {
            match s {
                Step::Verify { chain, time } => {
                    let (chain, at) = (&w.chains[chain], w.times[time]);
                    let with = verdict(&cached(&cache, chain, &source, at));
                    let without = verdict(&uncached(chain, &source, at));
                    prop_assert_eq!(with, without);
                }
                Step::Swap { bundle } => {
                    // A fresh instance every time, even of the same content.
                    let fresh = w.bundles[bundle].as_ref().map(|b| {
                        X509Bundle::from_authorities(b.trust_domain().clone(), b.authorities().iter().cloned()).unwrap()
                    });
                    source.set(fresh);
                }
            }
        }
    }
}
