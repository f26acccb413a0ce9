//! Invariants of chain verification under mutation: a valid chain with bytes changed is never
//! accepted unless the signed parts (every TBSCertificate) are byte-identical to the
//! original's; and a `VerifiedChainCache` (one for the whole run, so that it holds every
//! chain accepted before, the unmutated one first) gives the very verdict of uncached
//! verification, whether the chain is new to it or a repeat. Shared by the `verify` fuzz
//! target and the corpus replay.
//!
//! Input: pairs of bytes `(position, xor)` applied to the concatenated DER of the fixed
//! chain in `tests/data/verify-chain/` (root → intermediate → leaf, valid until 2122), plus
//! the first byte choosing whether the chain is cut short.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshid::{verify_x509_svid, BundleSet, TrustDomain, Usage, VerifiedChainCache, X509Bundle};
use rustls_pki_types::CertificateDer;

struct Fixture {
    chain: Vec<Vec<u8>>,
    tbs: Vec<Vec<u8>>,
    bundles: BundleSet,
    cache: VerifiedChainCache,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let td = TrustDomain::new("example.org").unwrap();
        let chain_pem = include_bytes!("../data/verify-chain/chain.pem");
        let root_pem = include_bytes!("../data/verify-chain/root.pem");
        let chain: Vec<Vec<u8>> = X509Bundle::parse_pem(td.clone(), chain_pem)
            .unwrap()
            .authorities()
            .iter()
            .map(|c| c.to_vec())
            .collect();
        let tbs = chain.iter().map(|c| tbs_of(c).unwrap().to_vec()).collect();
        let mut bundles = BundleSet::new();
        bundles.insert(X509Bundle::parse_pem(td, root_pem).unwrap());
        let cache = VerifiedChainCache::new(256, 1 << 20);
        let unmutated: Vec<CertificateDer<'_>> = chain
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        cache
            .verify(
                &unmutated,
                &bundles,
                at(),
                webpki::ALL_VERIFICATION_ALGS,
                Usage::ServerAuth,
            )
            .expect("the fixture verifies");
        Fixture {
            chain,
            tbs,
            bundles,
            cache,
        }
    })
}

/// The TBSCertificate bytes (header included) of a DER certificate: the first element of
/// the outer SEQUENCE. `None` when the DER is not shaped so.
fn tbs_of(cert: &[u8]) -> Option<&[u8]> {
    let (_, body) = der_element(cert)?;
    let (tbs_len, _) = der_element(body)?;
    body.get(..tbs_len)
}

/// Reads one DER TLV: returns (total length of the element, its contents).
fn der_element(input: &[u8]) -> Option<(usize, &[u8])> {
    let first_len = *input.get(1)?;
    let (header, len) = if first_len < 0x80 {
        (2, usize::from(first_len))
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (2 + n, len)
    };
    let end = header.checked_add(len)?;
    Some((end, input.get(header..end)?))
}

/// The verification time: inside every certificate's validity.
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000) // 2030-01-01
}

pub fn check(data: &[u8]) {
    let f = fixture();
    let mut certs = f.chain.clone();
    let lens: Vec<usize> = certs.iter().map(Vec::len).collect();
    let total: usize = lens.iter().sum();
    let (keep, edits) = data.split_first().map_or((certs.len(), &[][..]), |(k, e)| {
        (1 + usize::from(*k) % certs.len(), e)
    });
    certs.truncate(keep);
    for pair in edits.chunks_exact(3) {
        let pos = (usize::from(pair[0]) << 8 | usize::from(pair[1])) % total;
        let (mut i, mut p) = (0, pos);
        while p >= lens[i] {
            p -= lens[i];
            i += 1;
        }
        if let Some(byte) = certs.get_mut(i).and_then(|c| c.get_mut(p)) {
            *byte ^= pair[2];
        }
    }
    let chain: Vec<CertificateDer<'_>> = certs
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let algorithms = webpki::ALL_VERIFICATION_ALGS;
    let uncached = verify_x509_svid(&chain, &f.bundles, at(), algorithms);
    let verdict = |r: &Result<meshid::VerifiedSvid, meshid::VerifyError>| {
        r.as_ref()
            .map(|v| (v.id().clone(), v.not_after()))
            .map_err(Clone::clone)
    };
    for _ in 0..2 {
        let cached = f
            .cache
            .verify(&chain, &f.bundles, at(), algorithms, Usage::ServerAuth);
        assert_eq!(
            verdict(&cached),
            verdict(&uncached),
            "the cache changed a verdict"
        );
    }
    if let Ok(verified) = uncached {
        for (i, cert) in certs.iter().enumerate() {
            assert_eq!(
                tbs_of(cert),
                Some(f.tbs[i].as_slice()),
                "certificate {i} was accepted with changed signed bytes"
            );
        }
        assert_eq!(verified.id().as_str(), "spiffe://example.org/fuzz/target");
    }
}
