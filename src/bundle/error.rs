//! The one error type of the bundle loaders.

use thiserror::Error;

use crate::PemError;

/// Why an X.509 bundle or a SPIFFE bundle document was refused.
///
/// Each variant names the rule the input broke and cites it. `index` fields are positions
/// from 0: of a PEM block or DER certificate in the input for [`X509Bundle`] loaders, of
/// the JWK in the `keys` array for [`SpiffeBundle::parse`].
///
/// [`X509Bundle`]: crate::X509Bundle
/// [`SpiffeBundle::parse`]: crate::SpiffeBundle::parse
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The input is longer than the 16 MiB any bundle loader accepts.
    #[error("bundle input of {len} bytes is over the 16 MiB limit")]
    TooLarge {
        /// The input's length in bytes.
        len: usize,
    },

    // ---- X.509 bundles (PEM or DER) ----
    /// The PEM input could not be read.
    #[error("bundle PEM: {0}")]
    Pem(#[from] PemError),
    /// The input holds no certificate at all.
    #[error(
        "no certificates found: an X.509 bundle holds one or more CA certificates (X509-SVID §6)"
    )]
    NoCertificates,
    /// A PEM block is something other than a `CERTIFICATE` (a key, a CSR, ...).
    #[error("PEM block {index} is `{label}`, not `CERTIFICATE`: an X.509 bundle holds CA certificates only (X509-SVID §6)")]
    UnexpectedPemBlock {
        /// Position of the block in the input, from 0.
        index: usize,
        /// The block's label.
        label: String,
    },
    /// A certificate is not a well-formed DER X.509 certificate (RFC 5280 §4.1), or is
    /// followed by bytes that belong to none.
    #[error(
        "certificate {index} is not a well-formed DER X.509 certificate (RFC 5280 §4.1): {source}"
    )]
    BadCertificate {
        /// Position of the certificate in the input, from 0.
        index: usize,
        /// What the DER decoder found.
        source: der::Error,
    },

    // ---- SPIFFE bundle documents (JWK Sets) ----
    /// The document nests arrays and objects deeper than meshid reads.
    #[error("bundle JSON nests deeper than {limit} levels (SPIFFE Trust Domain and Bundle §4)")]
    TooDeep {
        /// The deepest nesting accepted.
        limit: usize,
    },
    /// The document is not valid JSON (RFC 8259).
    #[error("bundle is not valid JSON: syntax error at line {line}, column {column} (RFC 8259; SPIFFE Trust Domain and Bundle §4)")]
    JsonSyntax {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
    },
    /// The document ends in the middle of a JSON value (truncated, or empty).
    #[error("bundle JSON ends early at line {line}, column {column} (RFC 8259; SPIFFE Trust Domain and Bundle §4)")]
    JsonTruncated {
        /// Line where the input ended, from 1.
        line: usize,
        /// Column where the input ended.
        column: usize,
    },
    /// The document is JSON but not an object.
    #[error("a SPIFFE bundle is a JWK Set, a JSON object (SPIFFE Trust Domain and Bundle §4; RFC 7517 §5)")]
    NotAnObject,
    /// The `keys` member is missing (or `null`).
    #[error("the `keys` member MUST be present (SPIFFE Trust Domain and Bundle §4.1.3)")]
    MissingKeys,
    /// The `keys` member is not an array.
    #[error("the `keys` member must be an array of JWKs (SPIFFE Trust Domain and Bundle §4.1.3; RFC 7517 §5.1)")]
    KeysNotArray,
    /// An element of `keys` is not a JSON object.
    #[error("keys[{index}] is not a JSON object (RFC 7517 §4)")]
    KeyNotObject {
        /// Position of the JWK in `keys`.
        index: usize,
    },
    /// A JWK member (`use`, `kty`, `kid`, `x5c` or an element of it) has the wrong JSON type.
    #[error("keys[{index}].{member} has the wrong JSON type (RFC 7517 §4)")]
    WrongType {
        /// Position of the JWK in `keys`.
        index: usize,
        /// The member's name.
        member: &'static str,
    },
    /// A `jwt-svid` entry has no `kty`. (An `x509-svid` entry may omit it: its key is the
    /// certificate's.)
    #[error("keys[{index}] has no `kty` (SPIFFE Trust Domain and Bundle §4.2.1)")]
    MissingKeyType {
        /// Position of the JWK in `keys`.
        index: usize,
    },
    /// An `x509-svid` entry whose `x5c` does not hold exactly one certificate.
    #[error("x509-svid entry keys[{index}] must hold exactly one certificate in `x5c`, found {count} (X509-SVID §6.1)")]
    X5cCount {
        /// Position of the JWK in `keys`.
        index: usize,
        /// How many `x5c` values it has.
        count: usize,
    },
    /// The `x5c` value is not padded standard base64.
    #[error("x509-svid entry keys[{index}]: `x5c` is not standard base64 (RFC 7517 §4.7)")]
    BadX5cBase64 {
        /// Position of the JWK in `keys`.
        index: usize,
    },
    /// The `x5c` value decodes, but not to a well-formed DER X.509 certificate.
    #[error("x509-svid entry keys[{index}]: `x5c` is not a well-formed DER X.509 certificate (X509-SVID §6.1; RFC 5280 §4.1): {source}")]
    BadX5cCertificate {
        /// Position of the JWK in `keys`.
        index: usize,
        /// What the DER decoder found.
        source: der::Error,
    },
    /// A `jwt-svid` entry has no `kid`, or an empty one.
    #[error("jwt-svid entry keys[{index}] has no `kid`: it MUST be set (JWT-SVID §6.1)")]
    MissingKeyId {
        /// Position of the JWK in `keys`.
        index: usize,
    },
    /// Two `jwt-svid` entries share a `kid`, so a token could not name its key unambiguously.
    #[error("jwt-svid entries keys[{first}] and keys[{index}] share the key ID {key_id:?} (JWT-SVID §6.1; RFC 7517 §4.5)")]
    DuplicateKeyId {
        /// Position of the earlier entry.
        first: usize,
        /// Position of the later entry.
        index: usize,
        /// The shared key ID.
        key_id: String,
    },
    /// A `jwt-svid` entry is not a valid public JWK: the named parameter is missing, not
    /// unpadded base64url, of the wrong length for the curve, or (for `crv`) a curve
    /// meshid does not accept.
    #[error("jwt-svid entry keys[{index}] is not a valid public JWK: bad or missing `{param}` (RFC 7518 §6; RFC 8037 §2)")]
    BadJwk {
        /// Position of the JWK in `keys`.
        index: usize,
        /// The parameter at fault.
        param: &'static str,
    },
    /// An entry carries private-key members (`d`, `p`, `q`, ...): a bundle publishes
    /// public keys only.
    #[error("keys[{index}] carries the private-key member `{param}`: a bundle holds public keys only (SPIFFE Trust Domain and Bundle §3; RFC 7518 §6)")]
    PrivateKeyMaterial {
        /// Position of the JWK in `keys`.
        index: usize,
        /// The private member found.
        param: &'static str,
    },
    /// A `jwt-svid` JWK holds a number that is not an integer (or is out of the 64-bit
    /// range). meshid keeps JWT authorities verbatim, and such a number could not be
    /// written back exactly.
    #[error("jwt-svid entry keys[{index}] holds a non-integer number; JWK members are strings (RFC 7517 §4)")]
    InexactNumber {
        /// Position of the JWK in `keys`.
        index: usize,
    },
    /// A JWT authority was given an empty key ID ([`JwtAuthority::new`]).
    ///
    /// [`JwtAuthority::new`]: crate::JwtAuthority::new
    #[error("a JWT authority's `kid` MUST be set (JWT-SVID §6.1)")]
    EmptyKeyId,
    /// A JWT authority was given a public key that is not EC P-256, P-384 or P-521, RSA or
    /// Ed25519, or is malformed ([`JwtAuthority::new`]).
    ///
    /// [`JwtAuthority::new`]: crate::JwtAuthority::new
    #[error("a JWT authority's key must be EC (P-256, P-384, P-521), RSA or Ed25519 (RFC 7518 §6; RFC 8037 §2)")]
    UnsupportedPublicKey,
    /// `spiffe_sequence` is not a non-negative integer that fits in 64 bits.
    #[error("`spiffe_sequence` must be a non-negative 64-bit integer (SPIFFE Trust Domain and Bundle §4.1.1)")]
    BadSequence,
    /// `spiffe_refresh_hint` is not a non-negative integer number of seconds.
    #[error("`spiffe_refresh_hint` must be a non-negative integer number of seconds (SPIFFE Trust Domain and Bundle §4.1.2)")]
    BadRefreshHint,
}
