//! A Workload API client: one connection, every method of the API.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;
use tonic_prost::ProstCodec;

use super::proto::{
    self, JwtBundlesRequest, JwtBundlesResponse, JwtSvidRequest, JwtSvidResponse,
    ValidateJwtSvidRequest, ValidateJwtSvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509SvidRequest, X509SvidResponse,
};
use super::{bundles_from_message, Endpoint, WorkloadApiError, X509Context};
use crate::{BundleSet, SpiffeId, TrustDomain};

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
    grpc: Grpc<Channel>,
}

/// A JWT-SVID as the Workload API returns it: the token is data here (meshid does not
/// parse or verify JWTs yet).
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSvid {
    id: SpiffeId,
    token: String,
    hint: String,
}

impl JwtSvid {
    /// The SPIFFE ID the token is for.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }
    /// The compact JWT.
    pub fn token(&self) -> &str {
        &self.token
    }
    /// The server's hint for this identity (empty if none).
    pub fn hint(&self) -> &str {
        &self.hint
    }
}

impl fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A bearer token: never in logs.
        f.debug_struct("JwtSvid")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("hint", &self.hint)
            .finish()
    }
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
        Ok(Self {
            grpc: Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE),
        })
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
        self.ready().await?;
        let codec = ProstCodec::<Req, Resp>::default();
        let response = self
            .grpc
            .server_streaming(request(message), PathAndQuery::from_static(path), codec)
            .await
            .map_err(WorkloadApiError::Status)?;
        Ok(response.into_inner())
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
        self.ready().await?;
        let codec = ProstCodec::<Req, Resp>::default();
        let response = self
            .grpc
            .unary(request(message), PathAndQuery::from_static(path), codec)
            .await
            .map_err(WorkloadApiError::Status)?;
        Ok(response.into_inner())
    }

    /// The workload's SVIDs and bundles now: the first message of `FetchX509SVID`.
    pub async fn fetch_x509_context(&mut self) -> Result<X509Context, WorkloadApiError> {
        let mut updates = self.watch_x509_contexts().await?;
        updates
            .next()
            .await
            .unwrap_or(Err(WorkloadApiError::StreamEnded))
    }

    /// Every `FetchX509SVID` message as it arrives, decoded and checked; the stream ends
    /// with the first error.
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
            m.map_err(WorkloadApiError::Status)
                .and_then(|m| X509Context::from_message(&m))
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
            m.map_err(WorkloadApiError::Status)
                .and_then(|m| bundles_from_message(&m))
        }))
    }

    /// JWT-SVIDs for `audience`, for every identity of the workload or only `id`.
    pub async fn fetch_jwt_svids(
        &mut self,
        audience: &[&str],
        id: Option<&SpiffeId>,
    ) -> Result<Vec<JwtSvid>, WorkloadApiError> {
        let message = JwtSvidRequest {
            audience: audience.iter().map(|a| (*a).to_owned()).collect(),
            spiffe_id: id.map(ToString::to_string).unwrap_or_default(),
        };
        let response: JwtSvidResponse = self.unary(proto::FETCH_JWT_SVID, message).await?;
        response
            .svids
            .into_iter()
            .map(|m| {
                let id = SpiffeId::new(&m.spiffe_id).map_err(|source| WorkloadApiError::BadId {
                    value: m.spiffe_id.chars().take(256).collect(),
                    source,
                })?;
                Ok(JwtSvid {
                    id,
                    token: m.svid,
                    hint: m.hint,
                })
            })
            .collect()
    }

    /// The JWT bundles (JWKS documents, as bytes) by trust domain: the first message of
    /// `FetchJWTBundles`.
    pub async fn fetch_jwt_bundles(
        &mut self,
    ) -> Result<BTreeMap<TrustDomain, Vec<u8>>, WorkloadApiError> {
        let mut stream = self
            .stream::<_, JwtBundlesResponse>(proto::FETCH_JWT_BUNDLES, JwtBundlesRequest {})
            .await?;
        let message = stream
            .next()
            .await
            .ok_or(WorkloadApiError::StreamEnded)?
            .map_err(WorkloadApiError::Status)?;
        message
            .bundles
            .into_iter()
            .map(|(key, jwks)| {
                let td = TrustDomain::new(&key).map_err(|source| WorkloadApiError::BadId {
                    value: key.chars().take(256).collect(),
                    source,
                })?;
                Ok((td, jwks))
            })
            .collect()
    }

    /// Asks the server to validate a JWT-SVID for `audience`: the SPIFFE ID it is for, and
    /// its claims.
    pub async fn validate_jwt_svid(
        &mut self,
        audience: &str,
        token: &str,
    ) -> Result<(SpiffeId, Option<prost_types::Struct>), WorkloadApiError> {
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
        Ok((id, response.claims))
    }
}

/// Whether a failed call is worth retrying (DESIGN rule 17): `InvalidArgument` and
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
