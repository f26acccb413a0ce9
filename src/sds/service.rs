//! The gRPC service: [`Sds`], what every stream shares (the feed, the version channel,
//! the validator option), and its `SecretDiscoveryService` implementation, which runs each
//! stream in a task of its own.

use std::pin::Pin;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::sds::{delta, sotw, Feed, CLOSING};

/// The SDS service: what it serves from, and the version every stream follows (bumped on
/// every change of the feed; [`CLOSING`] at shutdown).
pub(super) struct Sds {
    pub(super) feed: Feed,
    pub(super) version: watch::Sender<u64>,
    pub(super) spiffe_validator: bool,
}

type Pushes<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = Pushes<DeltaDiscoveryResponse>;
    type StreamSecretsStream = Pushes<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let sds = Sds {
            feed: self.feed.clone(),
            version: self.version.clone(),
            spiffe_validator: self.spiffe_validator,
        };
        let mut changes = self.version.subscribe();
        tokio::spawn(async move {
            let mut stream = delta::DeltaState::default();
            loop {
                tokio::select! {
                    message = incoming.message() => match message {
                        Ok(Some(request)) => {
                            stream.on_request(request);
                        }
                        Ok(None) | Err(_) => break,
                    },
                    moved = changes.changed() => {
                        if moved.is_err() {
                            break;
                        }
                    }
                };
                let version = *changes.borrow_and_update();
                if version == CLOSING {
                    break;
                }
                // Always bring the stream up to date (`update` sends only what changed for
                // it): a request arriving with a version bump must not swallow the push.
                if let Some(response) = stream.update(&sds, version) {
                    if tx.send(Ok(response)).await.is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let request = request.into_inner();
        let version = *self.version.borrow();
        if version == CLOSING {
            return Err(Status::unavailable("the SDS server is shutting down"));
        }
        sotw::response(self, &request.resource_names, version, 0).map(Response::new)
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let sds = Sds {
            feed: self.feed.clone(),
            version: self.version.clone(),
            spiffe_validator: self.spiffe_validator,
        };
        let mut changes = self.version.subscribe();
        tokio::spawn(async move {
            let mut stream = sotw::StreamState::default();
            loop {
                let push = tokio::select! {
                    message = incoming.message() => match message {
                        Ok(Some(request)) => stream.on_request(request),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%status, "SDS stream ended by the client");
                            break;
                        }
                    },
                    moved = changes.changed() => {
                        if moved.is_err() || *changes.borrow() == CLOSING {
                            break;
                        }
                        stream.subscribed()
                    }
                };
                let version = *changes.borrow_and_update();
                if version == CLOSING {
                    break;
                }
                let Some(response) = stream.update(&sds, push, version) else {
                    continue;
                };
                let refused = response.is_err();
                if tx.send(response).await.is_err() || refused {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
