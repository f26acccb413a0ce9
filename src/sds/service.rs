//! The gRPC service: [`Sds`], what every stream shares (the feed, the version channel,
//! the validator option), and its `SecretDiscoveryService` implementation: `FetchSecrets`
//! answered at once, each stream run by [`stream::spawn`] in a task of its own.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::sds::delta::DeltaState;
use crate::sds::sotw::{self, StreamState};
use crate::sds::stream::{self, Pushes};
use crate::sds::{Feed, CLOSING};

/// The SDS service: what it serves from, and the version every stream follows (bumped on
/// every change of the feed; [`CLOSING`] at shutdown).
#[derive(Clone)]
pub(super) struct Sds {
    pub(super) feed: Feed,
    pub(super) version: watch::Sender<u64>,
    pub(super) spiffe_validator: bool,
}

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = Pushes<DeltaDiscoveryResponse>;
    type StreamSecretsStream = Pushes<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        let pushes = stream::spawn::<DeltaState>(self.clone(), request.into_inner());
        Ok(Response::new(pushes))
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
        stream::check_request("FetchSecrets", &request.resource_names)?;
        sotw::response(self, &request.resource_names, version, 0).map(Response::new)
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let pushes = stream::spawn::<StreamState>(self.clone(), request.into_inner());
        Ok(Response::new(pushes))
    }
}
