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
//! The server is fed by any [`Feed`]: an [`SvidStore`] kept fresh by a
//! [`Rotator`](crate::Rotator), or (with feature `workload-api`) the Workload API's
//! `X509Source`, so meshid can bridge SPIRE to Envoy. Sockets, caller admission and
//! shutdown come from the serving layer every meshid server shares
//! ([`serve`](crate::serve)), which also lets Envoy's `google_grpc` (gRPC C-core) in.

use std::sync::Arc;

use tokio::sync::watch;

// Here: the feed and what the other files share. `server`: `SdsServer` and its listener;
// `service`: the gRPC service; `stream`: the one stream loop and the ACK/NACK reading;
// `sotw` and `delta`: the two protocols; `secrets`: secret names to secrets.
mod delta;
#[doc(hidden)]
pub mod fuzzing;
mod secrets;
mod server;
mod service;
mod sotw;
mod stream;

pub use server::SdsServer;

#[cfg(feature = "workload-api")]
use crate::workload::X509Source;
use crate::{BundleSet, SvidSource, SvidStore, X509Svid};

/// The type URL of an SDS `Secret`.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// A version that never occurs: the server is closing, streams end.
const CLOSING: u64 = u64::MAX;

/// Where an [`SdsServer`] gets the SVID and bundles it serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Feed {
    /// A local store (kept fresh by a `Rotator`) and a fixed bundle set.
    Store(Arc<SvidStore>, BundleSet),
    /// A live Workload API source (for example SPIRE's agent); feature `workload-api`.
    #[cfg(feature = "workload-api")]
    Source(Arc<X509Source>),
}

impl Feed {
    fn svid(&self) -> Option<Arc<X509Svid>> {
        match self {
            Self::Store(store, _) => store.x509_svid(),
            #[cfg(feature = "workload-api")]
            Self::Source(source) => source.x509_svid(),
        }
    }

    fn bundles(&self) -> BundleSet {
        match self {
            Self::Store(_, bundles) => bundles.clone(),
            #[cfg(feature = "workload-api")]
            Self::Source(source) => source.bundles().map(|b| (*b).clone()).unwrap_or_default(),
        }
    }

    /// Bumps `version` on every change of the feed, until aborted.
    async fn follow(self, version: watch::Sender<u64>) {
        let bump = || {
            version.send_if_modified(|v| {
                if *v == CLOSING {
                    return false;
                }
                *v += 1;
                true
            })
        };
        match self {
            Self::Store(store, _) => {
                let mut seen = store.generation();
                loop {
                    seen = store.changed(seen).await;
                    bump();
                }
            }
            #[cfg(feature = "workload-api")]
            Self::Source(source) => {
                let mut updates = source.updated();
                while updates.changed().await.is_ok() {
                    bump();
                }
            }
        }
    }
}
