//! **meshid** gives Rust services [SPIFFE] workload identity without a sidecar.
//!
//! A SPIFFE ID such as `spiffe://example.org/ns/prod/sa/web` names a workload; the part
//! after `spiffe://` is its *trust domain*, the set of workloads that share one root of
//! trust. meshid parses and checks these IDs exactly as the standard says, and decides which
//! peers a workload accepts.
//!
//! This release holds typed IDs and authorizers; X509-SVIDs, trust bundles (PEM and SPIFFE
//! bundle JSON) and verification by the SPIFFE rules; JWT-SVIDs and their strict validation
//! ([`jwt`]); with feature `ca`, keys, CSRs and an issuing [`Authority`] (X509-SVIDs, and
//! JWT-SVIDs with a [`JwtKey`]); rotation ([`SvidStore`], [`RotationPolicy`], [`Rotator`]); and,
//! with feature `rustls`, SPIFFE mTLS whose certificates rotate under live traffic
//! ([`tls`]); with feature `workload-api`, the SPIFFE Workload API (client, live source,
//! server); with feature `sds`, an Envoy SDS v3 server (see `CHANGELOG.md`).
//!
//! `cargo run --example mesh` shows it all at work: an in-memory CA, two workloads calling
//! each other over mTLS on loopback while their SVIDs rotate every few seconds.
//!
//! # Quick start
//!
//! ```
//! use meshid::authorize::{self, Authorizer};
//! use meshid::{IdError, SpiffeId, TrustDomain};
//!
//! // Parse strictly: every rule of the standard is checked, and a refusal says which.
//! let web: SpiffeId = "spiffe://example.org/ns/prod/sa/web".parse()?;
//! assert_eq!(web.trust_domain().name(), "example.org");
//!
//! let err = "spiffe://example.org/ns//web".parse::<SpiffeId>().unwrap_err();
//! assert_eq!(err, IdError::EmptySegment { offset: 24 });
//!
//! // Build IDs from parts; every segment is validated.
//! let td = TrustDomain::new("example.org")?;
//! let db = td.id().join("ns")?.join("prod")?.join("db")?;
//!
//! // Decide which peers may connect: anyone under /ns/prod, or the ops admin.
//! let policy = authorize::path_prefix(td.id().join("ns")?.join("prod")?)
//!     .or(authorize::exact("spiffe://ops.org/admin".parse()?));
//! assert!(policy.authorize(&db).is_ok());
//! assert!(policy.authorize(&"spiffe://example.org/ns/dev/db".parse()?).is_err());
//! # Ok::<(), IdError>(())
//! ```
//!
//! # Strict parsing and normalization
//!
//! The standard calls the scheme and the trust domain case-insensitive but asks producers
//! to emit lowercase. [`SpiffeId::new`] (and `parse`, `TryFrom`) accept only the lowercase
//! form, as go-spiffe does, so two spellings of one identity never both pass a comparison.
//! Where input from people or older systems must be accepted, [`SpiffeId::normalize`]
//! lowercases the scheme and trust domain first; it never changes the path, which is
//! case-sensitive.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `serde` | no | `Serialize`/`Deserialize` for [`SpiffeId`] and [`TrustDomain`] as strings, validated strictly on input |
//! | `ca` | yes | [`KeyPair`], [`CsrBuilder`]/[`Csr`], [`Authority`] and the [`Signer`] trait (RustCrypto P-256/P-384) |
//! | `rustls` | yes | the [`tls`] module: [`tls::SvidResolver`], the SPIFFE certificate verifiers, [`tls::server_config`] / [`tls::client_config`] and [`tls::peer_id`] (rustls 0.23; the crypto provider is chosen at run time) |
//! | `ring` | yes | `ring_algorithms()` for verification, `RingKeyPair`, a ring-backed [`Signer`], and rustls's ring provider |
//! | `aws-lc-rs` | no | `aws_lc_rs_algorithms()` for verification, `AwsLcKeyPair`, an aws-lc-rs-backed [`Signer`], and rustls's aws-lc-rs provider |
//! | `workload-api` | no | the [`workload`] module: a SPIFFE Workload API client, a live `X509Source`, and a server (tokio, tonic, prost; enables `rustls`) |
//! | `sds` | no | the [`sds`] module: an Envoy SDS v3 server over any `serve::Identities` (a store, the Workload API, an agent) (adds `envoy-types`; needs Rust 1.88) |
//! | `agent` | no | the [`agent`] module: registration entries, unix workload attestation and an `Agent` serving each caller only its own identities (enables `workload-api`, `sds` and `ca`) |
//! | `metrics` | no | the `metrics` module: Prometheus metrics (prometheus-client, OpenMetrics) registered into the application's `Registry`: SVID expiry and renewals, TLS handshake verdicts, the Workload API and SDS servers, CA issuance |
//! | `cli` | no | the `meshid` operator binary (enables `ca`, `ring`, `workload-api`, `sds`, `agent` and `metrics`) |
//!
//! # Specifications
//!
//! - [SPIFFE ID](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md):
//!   the rules [`SpiffeId`] and [`TrustDomain`] enforce; each [`IdError`] variant cites
//!   its section.
//! - [X509-SVID](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md): the
//!   certificate profile [`X509Svid`] loading and [`verify_x509_svid`] check.
//! - [JWT-SVID](https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md): the token
//!   format [`JwtValidator`] enforces; each [`JwtError`] variant cites its section.
//! - [SPIFFE Trust Domain and Bundle](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md):
//!   [`SpiffeBundle`], the JSON bundle format.
//!
//! [SPIFFE]: https://spiffe.io
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(feature = "agent", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "agent")))]
pub mod agent;
pub mod authorize;
mod bundle;
#[cfg(feature = "ca")]
mod ca;
mod id;
pub mod jwt;
mod key;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod pem;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
mod rotate;
#[cfg(all(feature = "sds", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "sds")))]
pub mod sds;
#[cfg(all(any(feature = "workload-api", feature = "sds"), unix))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "workload-api", feature = "sds"))))]
pub mod serve;
mod svid;
pub mod time;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
mod verify;
pub mod watch;
#[cfg(all(feature = "workload-api", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
pub mod workload;

pub use authorize::{Authorizer, Unauthorized};
pub use bundle::{
    BundleError, BundleSet, BundleSource, JwtAuthority, JwtBundleSource, JwtBundles, SpiffeBundle,
    X509Bundle,
};
#[cfg(all(feature = "ca", feature = "aws-lc-rs"))]
pub use ca::AwsLcKeyPair;
#[cfg(all(feature = "ca", feature = "ring"))]
pub use ca::RingKeyPair;
#[cfg(feature = "ca")]
pub use ca::{
    Authority, CaError, Csr, CsrBuilder, JwtKey, JwtSvidRequest, KeyPair, LocalSvid,
    LocalSvidError, Signer, SvidRequest, DEFAULT_JWT_SVID_TTL, MIN_JWT_SVID_TTL,
};
pub use id::{IdError, SpiffeId, TrustDomain, MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN};
pub use jwt::{JwtAlgorithm, JwtError, JwtSvid, JwtValidator};
pub use key::{KeyError, KeyType, PrivateKey};
pub use pem::{certificates_to_pem, PemError};
pub use rotate::{
    Issuer, NotReady, RenewalFailure, RotationPolicy, RotationStatus, Rotator, RotatorConfig,
    SvidSource, SvidStore,
};
#[cfg(unix)]
pub use svid::{create_private_dir, DirError, SvidDir};
pub use svid::{parse_certificates, CertificateInfo, SvidError, X509Svid};
#[cfg(feature = "aws-lc-rs")]
pub use verify::aws_lc_rs_algorithms;
#[cfg(feature = "ring")]
pub use verify::ring_algorithms;
pub use verify::{
    validate_path, verify_x509_svid, verify_x509_svid_for, ChainCacheStats, Usage,
    VerifiedChainCache, VerifiedSvid, VerifyError,
};

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "ca", feature = "ring"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
