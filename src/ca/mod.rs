//! Issuing identities (feature `ca`): keys, CSRs, and the [`Authority`] that signs
//! X509-SVIDs by the SPIFFE profile.

mod authority;
#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
mod backend_signer;
pub(crate) mod counts;
mod csr;
mod issue;
mod jwt;
mod local;
mod signer;

pub use authority::{Authority, SvidRequest};
#[cfg(feature = "aws-lc-rs")]
pub use backend_signer::AwsLcKeyPair;
#[cfg(feature = "ring")]
pub use backend_signer::RingKeyPair;
pub use csr::{Csr, CsrBuilder};
#[cfg(feature = "agent")]
pub(crate) use issue::is_dns_name;
pub use jwt::{JwtKey, JwtSvidRequest, DEFAULT_JWT_SVID_TTL, MIN_JWT_SVID_TTL};
pub use local::{LocalSvid, LocalSvidError};
pub use signer::{KeyPair, Signer};

use der::oid::ObjectIdentifier;
use thiserror::Error;

use crate::{KeyError, KeyType, PemError, SpiffeId, SvidError, TrustDomain};

/// Why a key, CSR or issuance was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CaError {
    /// A PEM input could not be read.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A certificate of a loaded CA chain is malformed or breaks the SPIFFE profile.
    #[error(transparent)]
    Certificate(#[from] SvidError),
    /// This key type cannot sign here (only ECDSA P-256 and P-384 do).
    #[error("unsupported key type {0} for signing (ECDSA P-256 or P-384 required)")]
    UnsupportedKeyType(KeyType),
    /// A public key algorithm or curve meshid does not handle.
    #[error("unsupported key algorithm {oid} (ECDSA P-256 or P-384 required)")]
    UnsupportedKeyAlgorithm {
        /// The algorithm or curve OID.
        oid: ObjectIdentifier,
    },
    /// A signature algorithm meshid does not verify.
    #[error("unsupported signature algorithm {oid}")]
    UnsupportedSignatureAlgorithm {
        /// The algorithm OID.
        oid: ObjectIdentifier,
    },
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// The signer failed to sign.
    #[error("signing failed")]
    Signing,
    /// A value could not be DER-encoded (a bug or an out-of-range value).
    #[error("DER encoding failed")]
    Encoding,
    /// The subject is not a valid RFC 4514 distinguished name.
    #[error("subject is not a valid RFC 4514 distinguished name")]
    BadSubject,
    /// A DNS name is not a valid host name.
    #[error("DNS name is not a valid host name (RFC 5280 §4.2.1.6, RFC 1123)")]
    BadDnsName,
    /// A wildcard DNS SAN was asked for and the request does not allow wildcards.
    #[error(
        "wildcard DNS name {name:?} refused: wildcards are issued only when explicitly allowed"
    )]
    WildcardDnsName {
        /// The name refused.
        name: String,
    },
    /// The CSR is not valid DER PKCS#10 (RFC 2986), or holds no request.
    #[error("CSR is malformed (not DER PKCS#10, RFC 2986)")]
    MalformedCsr,
    /// The CSR's self-signature does not verify.
    #[error("CSR signature is invalid (RFC 2986 §3: proof of possession failed)")]
    CsrSignatureInvalid,
    /// The CSR asks for more than one URI SAN.
    #[error("CSR requests {count} URI SANs; an X509-SVID has exactly one (X509-SVID §2)")]
    CsrMultipleUriSans {
        /// How many.
        count: usize,
    },
    /// Neither the request nor the CSR names a valid SPIFFE ID.
    #[error("no SPIFFE ID to issue: the CSR has no valid SPIFFE ID URI SAN and none was given")]
    NoSpiffeId,
    /// The ID belongs to another trust domain than the authority's.
    #[error("{id} is outside trust domain {trust_domain} of this authority (X509-SVID §5.2)")]
    IdOutsideTrustDomain {
        /// The ID refused.
        id: SpiffeId,
        /// The authority's trust domain.
        trust_domain: TrustDomain,
    },
    /// A workload SVID for a trust domain's own ID, which has no path.
    #[error("{id} has no path; a workload SVID needs one (X509-SVID §2)")]
    PathlessId {
        /// The ID refused.
        id: SpiffeId,
    },
    /// An X509-SVID lifetime under [`Authority::MIN_SVID_TTL`]: too short to renew the SVID
    /// and hand over to the next one before it expires.
    #[error(
        "TTL {ttl:?} is under the minimum {min:?} for an X509-SVID: it cannot be renewed before \
         it expires (NotAfter is whole seconds, RFC 5280 §4.1.2.5)"
    )]
    TtlTooShort {
        /// The TTL asked for.
        ttl: std::time::Duration,
        /// The shortest TTL issued ([`Authority::MIN_SVID_TTL`]).
        min: std::time::Duration,
    },
    /// A JWT-SVID lifetime under [`MIN_JWT_SVID_TTL`] (1 s).
    #[error("TTL {ttl:?} is under the minimum {min:?} for a JWT-SVID (`exp` counts whole seconds, RFC 7519 §2)")]
    JwtTtlTooShort {
        /// The TTL asked for.
        ttl: std::time::Duration,
        /// The shortest TTL minted.
        min: std::time::Duration,
    },
    /// A JWT-SVID was asked for with no audience, or an empty audience value.
    #[error(
        "a JWT-SVID's `aud` MUST contain one or more values, none of them empty (JWT-SVID §3.2)"
    )]
    EmptyAudience,
    /// A JWT key was given an empty key ID.
    #[error("a JWT key's `kid` MUST be set (JWT-SVID §6.1)")]
    EmptyJwtKeyId,
    /// A JWT-SVID was asked of an authority that holds no JWT key.
    #[error(
        "this authority holds no JWT key: it mints no JWT-SVIDs (see Authority::with_jwt_key)"
    )]
    NoJwtKey,
    /// A JWT-SVID was asked for with a key ID the authority does not hold.
    #[error("this authority holds no JWT key with the key ID {key_id:?}")]
    UnknownJwtKey {
        /// The key ID asked for.
        key_id: String,
    },
    /// A lifetime reaches past what X.509 time can express (year 9999).
    #[error("TTL is out of range: X.509 validity ends at 9999-12-31")]
    TtlOutOfRange,
    /// The authority's certificate has expired or would expire at once.
    #[error("the authority's certificate has expired")]
    AuthorityExpired,
    /// A loaded CA chain is empty.
    #[error("no CA certificate found")]
    NoCertificate,
    /// The first certificate of a loaded chain is not a CA that may sign certificates.
    #[error("certificate is not a CA with keyCertSign (X509-SVID §4.1, §4.3)")]
    NotACa,
    /// The key does not belong to the CA certificate.
    #[error("CA certificate does not match its private key")]
    CaKeyMismatch,
    /// The CA certificate names no trust domain and none was given.
    #[error("CA certificate has no SPIFFE trust-domain URI SAN; give the trust domain")]
    NoTrustDomain,
    /// The trust domain given differs from the CA certificate's.
    #[error("CA certificate is for trust domain {found}, not {expected}")]
    TrustDomainMismatch {
        /// The trust domain given.
        expected: TrustDomain,
        /// The trust domain in the certificate.
        found: TrustDomain,
    },
}
