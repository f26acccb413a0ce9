//! An Envoy SDS v3 server (feature `sds`): Envoy sidecars and gateways get their SVID and
//! trust bundles over the Secret Discovery Service, pushed again on every rotation.
//!
//! Secret names, as SPIRE's agent answers them:
//!
//! | name | secret |
//! | --- | --- |
//! | `default`, or the SVID's SPIFFE ID | `tls_certificate`: the chain and key |
//! | `ROOTCA` | `validation_context`: the bundle of the SVID's trust domain |
//! | `ALL` | `validation_context`: every bundle |
//! | `spiffe://td` | `validation_context`: the bundle of trust domain `td` |
//!
//! As SPIRE's agent does, a request with no names gets every secret (each SVID under its
//! SPIFFE ID, each bundle under `spiffe://td`), and a state-of-the-world request naming a
//! secret the server does not hold is refused with `InvalidArgument` ("workload is not
//! authorized for the requested identities"); incremental streams simply do not send
//! absent names. With [`SdsServer::spiffe_validator`], `ROOTCA` and `spiffe://td` carry
//! that one trust domain and `ALL` every trust domain, as Envoy's SPIFFE validator.
//!
//! Both protocols are served: state of the world (`StreamSecrets`, `FetchSecrets`) and
//! incremental (`DeltaSecrets`: per-secret versions, only changed secrets pushed), which
//! neither SPIRE nor Istio offers.
//!
//! What a client may ask for is bounded, in both protocols: a secret name is at most 2,048
//! bytes (a SPIFFE ID's maximum: no secret has a longer name), refused with
//! `InvalidArgument`; a stream (or a `FetchSecrets` call) asks for at most 1,024 names and
//! 64 KiB of names, refused with `ResourceExhausted`. A refusal ends only its own stream.
//! A request costs work in proportion to itself: a delta request looks up only the names
//! it subscribes to.
//!
//! What each caller gets comes from an [`Identities`](crate::serve::Identities) and a
//! [`Bundles`](crate::serve::Bundles): an [`SvidStore`](crate::SvidStore) kept fresh by a
//! [`Rotator`](crate::Rotator) ([`SdsServer::for_store`]), a Workload API `X509Source`
//! (feature `workload-api`), so meshid can bridge SPIRE to Envoy, or an agent's registry
//! that attests each caller, so an Envoy gets only its own identities: `default` is the
//! caller's first, an SVID's SPIFFE ID names only the caller's own, and a name the caller
//! is not entitled to is refused exactly as an unknown name is. A caller with no identity
//! gets no certificate (bundles are still served); one the identities refuse outright (an
//! agent that cannot attest it) gets `PermissionDenied`. Sockets, caller admission and
//! shutdown come from the serving layer every meshid server shares
//! ([`serve`](crate::serve)), which also lets Envoy's `google_grpc` (gRPC C-core) in.

// Here: what the other files share. `server`: `SdsServer` and its listener; `service`:
// the gRPC service; `stream`: the one stream loop and the ACK/NACK reading; `sotw` and
// `delta`: the two protocols; `secrets`: secret names to secrets.
mod delta;
#[doc(hidden)]
pub mod fuzzing;
mod secrets;
mod server;
mod service;
mod sotw;
mod stream;

pub use server::SdsServer;
pub(crate) use service::{Sds as Service, SERVICE as SERVICE_PATH};

/// The type URL of an SDS `Secret`.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
