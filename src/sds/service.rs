//! The gRPC service: [`Sds`], what every stream shares (the identities and bundles, the
//! closing signal, the validator option) and who calls, and the `SecretDiscoveryService` it serves: `FetchSecrets`
//! answered at once, each stream run by [`stream::spawn`] in a task of its own. Responses
//! are encoded by [`WipingCodec`], which zeroizes the secrets they carry once encoded.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::server::Grpc;
use tonic::{Request, Response, Status, Streaming};
use zeroize::Zeroize as _;

use crate::sds::delta::DeltaState;
use crate::sds::sotw::{self, StreamState};
use crate::sds::stream;
use crate::serve::{Bundles, Caller, Identities, Identity, Observer};

/// The SDS service: what it serves from, the signal that ends every stream at shutdown,
/// and (set per request) who calls.
#[derive(Clone)]
pub(crate) struct Sds {
    pub(super) identities: Arc<dyn Identities>,
    pub(super) bundles: Arc<dyn Bundles>,
    /// True once the server is closing.
    pub(super) closed: watch::Receiver<bool>,
    pub(super) spiffe_validator: bool,
    /// Whose bundle `ROOTCA` is (else the caller's default SVID's trust domain).
    pub(super) trust_domain: Option<crate::TrustDomain>,
    /// The caller of the request being served.
    pub(super) caller: Caller,
    /// On a stream: the caller's identities as last subscribed (looked at once per change,
    /// not per request); `None`: look now.
    pub(super) held: Option<Arc<Vec<Identity>>>,
    /// Who hears of streams, pushes, refusals, ACKs and NACKs.
    pub(super) observer: Observer,
}

/// The gRPC path of the service's methods, up to the method name.
pub(crate) const SERVICE: &str = "/envoy.service.secret.v3.SecretDiscoveryService/";

impl Sds {
    /// The version of what is served: it moves whenever the identities or the bundles
    /// may have changed.
    pub(super) fn version(&self) -> u64 {
        self.identities
            .changes()
            .generation()
            .wrapping_add(self.bundles.changes().generation())
    }

    /// `FetchSecrets`: the current secrets for the request's names (or its refusal).
    fn fetch(&self, request: &DiscoveryRequest) -> Result<DiscoveryResponse, Status> {
        if *self.closed.borrow() {
            return Err(Status::unavailable("the SDS server is shutting down"));
        }
        stream::check_request("FetchSecrets", &request.resource_names).inspect_err(|_| {
            self.observer
                .refused_call("sds", crate::serve::Refusal::BadRequest);
        })?;
        sotw::response(self, &request.resource_names, self.version(), 0).inspect_err(|_| {
            self.observer
                .refused_call("sds", crate::serve::Refusal::NoIdentity);
        })
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The `SecretDiscoveryService` (as the generated `SecretDiscoveryServiceServer` routes
/// it, with [`WipingCodec`] in place of prost's codec).
impl tower::Service<http::Request<Body>> for Sds {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let mut sds = self.clone();
        if let Some(peer) = req.extensions().get::<crate::serve::Peer>() {
            sds.caller = peer.caller;
        }
        match req.uri().path().strip_prefix(SERVICE) {
            Some("DeltaSecrets") => Box::pin(async move {
                let handler =
                    tower::service_fn(move |r: Request<Streaming<DeltaDiscoveryRequest>>| {
                        let pushes = stream::spawn::<DeltaState>(sds.clone(), r.into_inner());
                        async move { Ok::<_, Status>(Response::new(pushes)) }
                    });
                Ok(Grpc::new(WipingCodec::default())
                    .streaming(handler, req)
                    .await)
            }),
            Some("StreamSecrets") => Box::pin(async move {
                let handler = tower::service_fn(move |r: Request<Streaming<DiscoveryRequest>>| {
                    let pushes = stream::spawn::<StreamState>(sds.clone(), r.into_inner());
                    async move { Ok::<_, Status>(Response::new(pushes)) }
                });
                Ok(Grpc::new(WipingCodec::default())
                    .streaming(handler, req)
                    .await)
            }),
            Some("FetchSecrets") => Box::pin(async move {
                let handler = tower::service_fn(move |r: Request<DiscoveryRequest>| {
                    let answer = crate::serve::blocking(sds.identities.may_block(), || {
                        sds.fetch(r.get_ref())
                    })
                    .map(Response::new);
                    async move { answer }
                });
                Ok(Grpc::new(WipingCodec::default()).unary(handler, req).await)
            }),
            _ => {
                let status = Status::unimplemented(format!(
                    "unknown method {}",
                    req.uri().path().chars().take(128).collect::<String>()
                ));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// A response whose secrets can be zeroized once encoded.
pub(super) trait Wipe {
    /// Zeroizes the encoded secrets (the `Any` values) the response carries.
    fn wipe(&mut self);
}

impl Wipe for DiscoveryResponse {
    fn wipe(&mut self) {
        for any in &mut self.resources {
            any.value.zeroize();
        }
    }
}

impl Wipe for DeltaDiscoveryResponse {
    fn wipe(&mut self) {
        for any in self
            .resources
            .iter_mut()
            .filter_map(|r| r.resource.as_mut())
        {
            any.value.zeroize();
        }
    }
}

/// Prost's codec, except that a response is [wiped](Wipe) as soon as it is encoded: the
/// copies of the SVID's key that meshid builds into every pushed message are zeroized
/// (and a response still queued when its stream ends is wiped on drop).
/// What is out of meshid's hands stays as it is: the encoded frame in tonic's, hyper's and
/// h2's buffers (freed, not zeroized, once written), the kernel's socket buffers and the
/// client's copies.
pub(super) struct WipingCodec<T, U>(PhantomData<fn(T) -> U>);

impl<T, U> Default for WipingCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for WipingCodec<T, U>
where
    T: Message + Wipe + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = WipingEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        WipingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

/// Encodes a response, then wipes it.
pub(super) struct WipingEncoder<T>(PhantomData<fn(T)>);

impl<T: Message + Wipe> Encoder for WipingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, mut item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let encoded = item
            .encode(buf)
            .map_err(|e| Status::internal(format!("encoding an SDS response: {e}")));
        item.wipe();
        encoded
    }
}

/// Decodes a request, as prost's codec does.
pub(super) struct ProstDecoder<U>(PhantomData<fn() -> U>);

impl<U: Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sds::secrets::fixture;
    use crate::sds::stream::Protocol as _;

    /// The PEM key of the fixture's SVID, and whether `bytes` hold it.
    fn holds_key(sds: &Sds, bytes: &[u8]) -> bool {
        let Some(svid) = sds
            .identities
            .x509_svids(&sds.caller)
            .unwrap()
            .first()
            .map(|i| Arc::clone(&i.svid))
        else {
            return false;
        };
        let pem = svid.key_pem();
        bytes.windows(pem.len()).any(|w| w == pem.as_bytes())
    }

    #[test]
    fn responses_are_wiped_of_their_secrets_once_encoded() {
        let sds = fixture();
        let names = ["default".to_owned(), "ROOTCA".to_owned()];
        let mut response = sotw::response(&sds, &names, 1, 1).unwrap();
        assert!(holds_key(&sds, &response.encode_to_vec()));
        assert!(holds_key(&sds, &response.resources[0].value));
        response.wipe();
        assert!(response.resources.iter().all(|a| a.value.is_empty()));

        let mut delta = DeltaState::default();
        let request = DeltaDiscoveryRequest {
            resource_names_subscribe: names.to_vec(),
            ..Default::default()
        };
        assert!(delta.on_request(request).unwrap().0);
        let mut response = delta.update(&sds, true, 1).unwrap().unwrap();
        assert!(holds_key(&sds, &response.encode_to_vec()));
        response.wipe();
        assert!(response
            .resources
            .iter()
            .all(|r| r.resource.as_ref().unwrap().value.is_empty()));
        assert!(!holds_key(&sds, &response.encode_to_vec()));
    }
}
