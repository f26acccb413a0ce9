//! A Workload API client: one connection, every method of the API.

use std::time::Duration;
use std::time::SystemTime;

use std::future::Future as _;
use std::task::{Context, Poll};

use tokio_stream::{Stream, StreamExt};
use tonic::client::Grpc;
use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;
use tonic_prost::ProstCodec;

use super::accept::check_bundles_agree;
use super::proto::{
    self, JwtBundlesRequest, JwtBundlesResponse, JwtSvidRequest, JwtSvidResponse,
    ValidateJwtSvidRequest, ValidateJwtSvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509SvidRequest, X509SvidResponse,
};
use super::{bundles_from_message, Endpoint, WorkloadApiError, X509Context};
use crate::jwt::{JwtBundles, JwtSvid, JwtValidator};
use crate::{BundleSet, SpiffeBundle, SpiffeId, TrustDomain};
use rustls_pki_types::SignatureVerificationAlgorithm;

/// How long the client waits, by default, for a call's answer, for its first message, and
/// for each later message from its first byte to its last
/// ([`WorkloadApiClient::with_message_timeout`]). The wait *between* messages of a stream
/// is not bounded: an agent sends an update only when something changes.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest message the client decodes (a generous bound for many SVIDs and bundles;
/// larger messages are refused with `OutOfRange`, never buffered without limit).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// A connection to a Workload API endpoint. Every call carries the
/// `workload.spiffe.io: true` header.
///
/// ```no_run
/// # async fn demo() -> Result<(), meshid::workload::WorkloadApiError> {
/// use meshid::workload::{Endpoint, WorkloadApiClient};
/// let mut client = WorkloadApiClient::connect(&Endpoint::from_env()?).await?;
/// let context = client.fetch_x509_context().await?;
/// println!("I am {}", context.default_svid().id());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WorkloadApiClient {
    channel: Channel,
    message_timeout: Duration,
    grpc: Grpc<Guarded>,
}

/// A connect timeout, and HTTP/2 keepalive so that a stopped or vanished agent is noticed
/// on an idle stream (and the source reconnects) instead of being waited for forever.
fn with_timeouts(endpoint: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
}

fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(proto::SECURITY_HEADER, MetadataValue::from_static("true"));
    request
}

impl WorkloadApiClient {
    /// Connects to `endpoint`.
    pub async fn connect(endpoint: &Endpoint) -> Result<Self, WorkloadApiError> {
        let connect_error = |source| WorkloadApiError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let channel = match endpoint {
            Endpoint::Unix(path) => {
                let path = path.clone();
                with_timeouts(tonic::transport::Endpoint::from_static(
                    "http://workload-api.invalid",
                ))
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(connect_error)?
            }
            Endpoint::Tcp(addr) => with_timeouts(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(connect_error)?,
            )
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .connect()
            .await
            .map_err(connect_error)?,
        };
        Ok(Self::on(channel, MESSAGE_TIMEOUT))
    }

    fn on(channel: Channel, message_timeout: Duration) -> Self {
        let guarded = Guarded {
            channel: channel.clone(),
            message_timeout,
        };
        Self {
            channel,
            message_timeout,
            grpc: Grpc::new(guarded).max_decoding_message_size(MAX_MESSAGE),
        }
    }

    /// Bounds every wait of a call by `timeout` (default [`MESSAGE_TIMEOUT`]): the answer
    /// to the call, its first message, and each later message from its first byte to its
    /// last. A server that stalls (while it may still answer HTTP/2 PINGs) fails the call
    /// or ends the stream with [`WorkloadApiError::Stalled`].
    #[must_use]
    pub fn with_message_timeout(self, timeout: Duration) -> Self {
        Self::on(self.channel, timeout)
    }

    async fn ready(&mut self) -> Result<(), WorkloadApiError> {
        self.grpc.ready().await.map_err(WorkloadApiError::Transport)
    }

    async fn stream<Req, Resp>(
        &mut self,
        path: &'static str,
        message: Req,
    ) -> Result<tonic::Streaming<Resp>, WorkloadApiError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let limit = self.message_timeout;
        let call = async {
            self.ready().await?;
            let codec = ProstCodec::<Req, Resp>::default();
            self.grpc
                .server_streaming(request(message), PathAndQuery::from_static(path), codec)
                .await
                .map_err(status_error)
        };
        within(limit, call).await.map(tonic::Response::into_inner)
    }

    async fn unary<Req, Resp>(
        &mut self,
        path: &'static str,
        message: Req,
    ) -> Result<Resp, WorkloadApiError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let limit = self.message_timeout;
        let call = async {
            self.ready().await?;
            let codec = ProstCodec::<Req, Resp>::default();
            self.grpc
                .unary(request(message), PathAndQuery::from_static(path), codec)
                .await
                .map_err(status_error)
        };
        within(limit, call).await.map(tonic::Response::into_inner)
    }

    /// The workload's SVIDs and bundles now: the first message of `FetchX509SVID`.
    pub async fn fetch_x509_context(&mut self) -> Result<X509Context, WorkloadApiError> {
        let mut updates = self.watch_x509_contexts().await?;
        updates
            .next()
            .await
            .unwrap_or(Err(WorkloadApiError::StreamEnded))
    }

    /// Every `FetchX509SVID` message as it arrives, decoded and checked (including that
    /// two SVIDs of one trust domain carry the same bundle). A message that does not decode
    /// is an `Err` item and the stream goes on; a gRPC status, a transport failure or a
    /// stalled message ([`WorkloadApiError::Stalled`]) is the last item.
    pub async fn watch_x509_contexts(
        &mut self,
    ) -> Result<
        impl Stream<Item = Result<X509Context, WorkloadApiError>> + Send + 'static,
        WorkloadApiError,
    > {
        let stream = self
            .stream::<_, X509SvidResponse>(proto::FETCH_X509_SVID, X509SvidRequest {})
            .await?;
        Ok(stream.map(|m| {
            let m = m.map_err(status_error)?;
            let context = X509Context::from_message(&m)?;
            check_bundles_agree(&m)?;
            Ok(context)
        }))
    }

    /// Every bundle the workload may use now: the first message of `FetchX509Bundles`.
    pub async fn fetch_x509_bundles(&mut self) -> Result<BundleSet, WorkloadApiError> {
        let mut updates = self.watch_x509_bundles().await?;
        updates
            .next()
            .await
            .unwrap_or(Err(WorkloadApiError::StreamEnded))
    }

    /// Every `FetchX509Bundles` message as it arrives.
    pub async fn watch_x509_bundles(
        &mut self,
    ) -> Result<
        impl Stream<Item = Result<BundleSet, WorkloadApiError>> + Send + 'static,
        WorkloadApiError,
    > {
        let stream = self
            .stream::<_, X509BundlesResponse>(proto::FETCH_X509_BUNDLES, X509BundlesRequest {})
            .await?;
        Ok(stream.map(|m| {
            m.map_err(status_error)
                .and_then(|m| bundles_from_message(&m))
        }))
    }

    /// JWT-SVIDs for `audience` (at least one value), one per identity of the workload,
    /// or only the one for `spiffe_id`, in the server's order.
    ///
    /// Each token is read by every format rule of JWT-SVID
    /// ([`JwtSvid::parse_insecure`]: its `sub` must be the ID the answer gives) **but not
    /// validated**: the workload trusts its own Workload API for what it presents. To
    /// check the signature, key and time too, against the JWT bundles the same server
    /// publishes, use [`fetch_validated_jwt_svids`](Self::fetch_validated_jwt_svids).
    pub async fn fetch_jwt_svids(
        &mut self,
        audience: &[String],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<Vec<JwtSvid>, WorkloadApiError> {
        let message = JwtSvidRequest {
            audience: audience.to_vec(),
            spiffe_id: spiffe_id.map(ToString::to_string).unwrap_or_default(),
        };
        let response: JwtSvidResponse = self.unary(proto::FETCH_JWT_SVID, message).await?;
        if response.svids.is_empty() {
            return Err(WorkloadApiError::NoJwtSvids);
        }
        response
            .svids
            .iter()
            .enumerate()
            .map(|(index, m)| {
                let id = SpiffeId::new(&m.spiffe_id).map_err(|source| WorkloadApiError::BadId {
                    value: m.spiffe_id.chars().take(256).collect(),
                    source,
                })?;
                let svid = JwtSvid::parse_insecure(&m.svid).map_err(|source| {
                    WorkloadApiError::BadJwtSvid {
                        index,
                        id: id.clone(),
                        source,
                    }
                })?;
                if svid.id() != &id {
                    return Err(WorkloadApiError::JwtIdMismatch {
                        message: id,
                        token: svid.id().clone(),
                    });
                }
                Ok(svid)
            })
            .collect()
    }

    /// As [`fetch_jwt_svids`](Self::fetch_jwt_svids), then each token validated by every
    /// rule of [`JwtValidator`] (for the first value of `audience`, now, with
    /// `algorithms`) against the JWT bundles the server publishes now (one more call,
    /// `FetchJWTBundles`). A token that does not validate fails the call with
    /// [`WorkloadApiError::BadJwtSvid`].
    pub async fn fetch_validated_jwt_svids(
        &mut self,
        audience: &[String],
        spiffe_id: Option<&SpiffeId>,
        algorithms: &[&dyn SignatureVerificationAlgorithm],
    ) -> Result<Vec<JwtSvid>, WorkloadApiError> {
        let svids = self.fetch_jwt_svids(audience, spiffe_id).await?;
        let bundles = self.fetch_jwt_bundles().await?;
        let first = audience.first().cloned().unwrap_or_default();
        let validator = JwtValidator::new(first, algorithms);
        let now = SystemTime::now();
        svids
            .into_iter()
            .enumerate()
            .map(|(index, svid)| {
                validator
                    .validate(svid.token(), &bundles, now)
                    .map_err(|source| WorkloadApiError::BadJwtSvid {
                        index,
                        id: svid.id().clone(),
                        source,
                    })
            })
            .collect()
    }

    /// The JWT bundles now: the first message of `FetchJWTBundles`.
    pub async fn fetch_jwt_bundles(&mut self) -> Result<JwtBundles, WorkloadApiError> {
        let mut updates = self.watch_jwt_bundles().await?;
        updates
            .next()
            .await
            .unwrap_or(Err(WorkloadApiError::StreamEnded))
    }

    /// Every `FetchJWTBundles` message as it arrives: each trust domain's JWKS parsed as a
    /// SPIFFE bundle (its `jwt-svid` keys kept). A message that does not decode is an
    /// `Err` item and the stream goes on; a gRPC status, a transport failure or a stalled
    /// message is the last item.
    pub async fn watch_jwt_bundles(
        &mut self,
    ) -> Result<
        impl Stream<Item = Result<JwtBundles, WorkloadApiError>> + Send + 'static,
        WorkloadApiError,
    > {
        let stream = self
            .stream::<_, JwtBundlesResponse>(proto::FETCH_JWT_BUNDLES, JwtBundlesRequest {})
            .await?;
        Ok(stream.map(|m| {
            m.map_err(status_error)
                .and_then(|m| jwt_bundles_from_message(&m))
        }))
    }

    /// Asks the server to validate `token` for `audience`: the SPIFFE ID it is for and its
    /// claims, as the server read them. A refused token is a
    /// [`Status`](WorkloadApiError::Status) `InvalidArgument` naming the rule.
    pub async fn validate_jwt_svid(
        &mut self,
        token: &str,
        audience: &str,
    ) -> Result<(SpiffeId, prost_types::Struct), WorkloadApiError> {
        let message = ValidateJwtSvidRequest {
            audience: audience.to_owned(),
            svid: token.to_owned(),
        };
        let response: ValidateJwtSvidResponse =
            self.unary(proto::VALIDATE_JWT_SVID, message).await?;
        let id = SpiffeId::new(&response.spiffe_id).map_err(|source| WorkloadApiError::BadId {
            value: response.spiffe_id.chars().take(256).collect(),
            source,
        })?;
        Ok((id, response.claims.unwrap_or_default()))
    }
}

/// The JWT bundles of a `FetchJWTBundles` message, keyed by trust-domain ID (or name), in
/// key order; two keys naming one trust domain are refused.
pub(crate) fn jwt_bundles_from_message(
    message: &JwtBundlesResponse,
) -> Result<JwtBundles, WorkloadApiError> {
    let mut keys: Vec<&String> = message.bundles.keys().collect();
    keys.sort();
    let mut out = JwtBundles::new();
    for key in keys {
        let td = TrustDomain::new(key).map_err(|source| WorkloadApiError::BadId {
            value: key.chars().take(256).collect(),
            source,
        })?;
        let bundle =
            SpiffeBundle::parse_jwks(td.clone(), &message.bundles[key]).map_err(|source| {
                WorkloadApiError::BadBundle {
                    trust_domain: key.chars().take(256).collect(),
                    source,
                }
            })?;
        if out.insert_bundle(&bundle).is_some() {
            return Err(WorkloadApiError::DuplicateBundle {
                trust_domain: td.to_string(),
            });
        }
    }
    Ok(out)
}

/// Whether a failed call is worth retrying (SPIFFE Workload API §4.2, Connection Lifetime): `InvalidArgument` and
/// `Unimplemented` are final (the server will never answer otherwise), as is a bad
/// endpoint; everything else, `Unavailable` and `PermissionDenied` (the agent may not have
/// attested us yet) included, is retried with backoff. A malformed message is retried too:
/// the next one may be good.
pub(crate) fn retryable(error: &WorkloadApiError) -> bool {
    match error {
        WorkloadApiError::Status(status) => !matches!(
            status.code(),
            tonic::Code::InvalidArgument | tonic::Code::Unimplemented
        ),
        WorkloadApiError::InvalidEndpoint { .. } => false,
        _ => true,
    }
}

/// A status from the call, or the [`Stalled`] error of our body guard that tonic wrapped in
/// one.
/// Runs a call within the message timeout: an answer that does not come in time makes the
/// call [`WorkloadApiError::Stalled`].
async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, WorkloadApiError>>,
) -> Result<T, WorkloadApiError> {
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| WorkloadApiError::Stalled { waited: limit })?
}

fn status_error(status: tonic::Status) -> WorkloadApiError {
    match std::error::Error::source(&status).and_then(|e| e.downcast_ref::<Stalled>()) {
        Some(stalled) => WorkloadApiError::Stalled { waited: stalled.0 },
        None => WorkloadApiError::Status(status),
    }
}

/// The channel, with every response body under a [`StallGuard`].
#[derive(Debug, Clone)]
struct Guarded {
    channel: Channel,
    message_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for Guarded {
    type Response = http::Response<StallGuard>;
    type Error = tonic::transport::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.channel, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let response = tower::Service::call(&mut self.channel, request);
        let limit = self.message_timeout;
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| StallGuard::new(body, limit)))
        })
    }
}

/// The error a [`StallGuard`] ends a body with.
#[derive(Debug, thiserror::Error)]
#[error("no complete gRPC message within {0:?}: the server stalled")]
struct Stalled(Duration);

/// Where the guard is in the gRPC framing of a body (RFC: gRPC over HTTP/2, "Length-Prefixed
/// Message": a flag byte, a 4-byte big-endian length, the message).
#[derive(Debug)]
enum Framing {
    /// Reading a prefix, of which `have` bytes (in `prefix`) arrived.
    Prefix { have: usize, prefix: [u8; 5] },
    /// Reading a message, of which `left` bytes are still to come.
    Message { left: usize },
}

/// A response body that must deliver its first message within the limit of its headers,
/// and each later message within the limit of that message's first byte; between messages
/// it may idle for ever. Past a deadline it ends with [`Stalled`].
struct StallGuard {
    inner: tonic::body::Body,
    limit: Duration,
    framing: Framing,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    fn new(inner: tonic::body::Body, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            framing: Framing::Prefix {
                have: 0,
                prefix: [0; 5],
            },
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
        }
    }

    /// Follows the framing through `data`: a completed message clears the deadline, a
    /// message begun sets one (unless it is the first, still under the headers' deadline).
    fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.framing {
                Framing::Prefix { have, prefix } => {
                    let take = (5 - *have).min(data.len());
                    prefix[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have == 5 {
                        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
                        let left = usize::try_from(len).unwrap_or(usize::MAX);
                        self.framing = Framing::Message { left };
                    }
                }
                Framing::Message { left } => {
                    let take = (*left).min(data.len());
                    *left -= take;
                    data = &data[take..];
                }
            }
            if matches!(self.framing, Framing::Message { left: 0 }) {
                self.framing = Framing::Prefix {
                    have: 0,
                    prefix: [0; 5],
                };
                self.deadline = None;
            }
        }
        let between = matches!(self.framing, Framing::Prefix { have: 0, .. });
        if !between && self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.limit)));
        }
    }
}

impl http_body::Body for StallGuard {
    type Data = tonic::codegen::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.advance(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    this.deadline = None;
                    Poll::Ready(Some(Err(Box::new(Stalled(this.limit)))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> StallGuard {
        StallGuard::new(tonic::body::Body::empty(), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn the_guard_follows_grpc_framing_across_chunks() {
        let mut g = guard();
        assert!(
            g.deadline.is_some(),
            "the first message is awaited under a deadline"
        );
        // A 3-byte message split across chunks, then a complete 0-byte one.
        g.advance(&[0, 0, 0]);
        assert!(g.deadline.is_some());
        g.advance(&[0, 3, 1]);
        assert!(matches!(g.framing, Framing::Message { left: 2 }));
        g.advance(&[2, 3, 0, 0, 0, 0, 0]);
        assert!(g.deadline.is_none(), "between messages: no deadline");
        assert!(matches!(g.framing, Framing::Prefix { have: 0, .. }));
        // A message begun sets the deadline; its end clears it.
        g.advance(&[0, 0, 0, 0, 2, 9]);
        assert!(g.deadline.is_some());
        g.advance(&[9]);
        assert!(g.deadline.is_none());
        // A huge announced length is counted, never allocated.
        g.advance(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(g.framing, Framing::Message { left } if left == 0xffff_ffff));
    }
}
