//! What an [`Authority`](super::Authority) issued and refused: a few atomic counters,
//! shared by its clones, that `meshid::metrics` reads on each scrape.

use std::sync::atomic::{AtomicU64, Ordering};

use super::CaError;

/// Why an authority refused, as a closed set (a metric label stays bounded).
pub(crate) const REFUSALS: [&str; 6] =
    ["ttl", "request", "csr", "expired_ca", "no_key", "internal"];

/// Issued and refused counts for X509-SVIDs (`x509`) and JWT-SVIDs (`jwt`).
#[derive(Debug, Default)]
pub(crate) struct IssueCounts {
    x509: Kind,
    jwt: Kind,
}

#[derive(Debug, Default)]
struct Kind {
    issued: AtomicU64,
    refused: [AtomicU64; REFUSALS.len()],
}

impl Kind {
    fn count<T>(&self, result: Result<T, CaError>) -> Result<T, CaError> {
        match &result {
            Ok(_) => self.issued.fetch_add(1, Ordering::Relaxed),
            Err(e) => self.refused[refusal(e)].fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    #[cfg(any(feature = "metrics", test))]
    fn read(&self) -> (u64, [u64; REFUSALS.len()]) {
        (
            self.issued.load(Ordering::Relaxed),
            std::array::from_fn(|i| self.refused[i].load(Ordering::Relaxed)),
        )
    }
}

impl IssueCounts {
    /// Runs an X.509 issuance and counts its result.
    pub(crate) fn x509<T>(&self, f: impl FnOnce() -> Result<T, CaError>) -> Result<T, CaError> {
        self.x509.count(f())
    }

    /// Runs a JWT-SVID minting and counts its result.
    pub(crate) fn jwt<T>(&self, f: impl FnOnce() -> Result<T, CaError>) -> Result<T, CaError> {
        self.jwt.count(f())
    }

    /// X.509: issued, and refused by [`REFUSALS`].
    #[cfg(any(feature = "metrics", test))]
    pub(crate) fn x509_counts(&self) -> (u64, [u64; REFUSALS.len()]) {
        self.x509.read()
    }

    /// JWT: issued, and refused by [`REFUSALS`].
    #[cfg(any(feature = "metrics", test))]
    pub(crate) fn jwt_counts(&self) -> (u64, [u64; REFUSALS.len()]) {
        self.jwt.read()
    }
}

/// The index in [`REFUSALS`] of why `e` refused.
fn refusal(e: &CaError) -> usize {
    match e {
        CaError::TtlTooShort { .. } | CaError::JwtTtlTooShort { .. } | CaError::TtlOutOfRange => 0,
        CaError::IdOutsideTrustDomain { .. }
        | CaError::PathlessId { .. }
        | CaError::NoSpiffeId
        | CaError::BadDnsName
        | CaError::WildcardDnsName { .. }
        | CaError::EmptyAudience
        | CaError::BadSubject => 1,
        CaError::MalformedCsr
        | CaError::CsrSignatureInvalid
        | CaError::CsrMultipleUriSans { .. } => 2,
        CaError::AuthorityExpired => 3,
        CaError::NoJwtKey | CaError::UnknownJwtKey { .. } => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Authority, KeyType, SpiffeId, TrustDomain};

    #[test]
    fn issuance_and_refusals_are_counted_by_reason_across_clones() {
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Authority::new_root(td, Duration::from_secs(60), KeyType::P256).unwrap();
        let clone = ca.clone();
        let id = SpiffeId::new("spiffe://example.org/a").unwrap();
        ca.issue(&id, Duration::from_secs(30)).unwrap();
        clone.issue(&id, Duration::from_secs(30)).unwrap();
        clone.issue(&id, Duration::from_secs(1)).unwrap_err();
        let other = SpiffeId::new("spiffe://other.org/a").unwrap();
        ca.issue(&other, Duration::from_secs(30)).unwrap_err();
        ca.mint_jwt_svid(&id, &["x"], Duration::from_secs(60))
            .unwrap_err();
        let (issued, refused) = ca.counts().x509_counts();
        assert_eq!(issued, 2);
        assert_eq!(refused, [1, 1, 0, 0, 0, 0]);
        assert_eq!(ca.counts().jwt_counts(), (0, [0, 0, 0, 0, 1, 0]));
    }
}
