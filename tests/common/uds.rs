//! A tonic channel to a gRPC server on a Unix socket, for the tests and benches that call
//! meshid's servers with tonic (included with `#[path = "common/uds.rs"] mod uds;`).

#![allow(dead_code)]

use std::path::Path;

/// Connects a tonic channel to the Unix socket at `socket` (tonic sends `:authority`
/// from the URI given here, which the socket ignores).
///
/// # Panics
/// If the connection fails.
pub async fn unix_channel(socket: &Path) -> tonic::transport::Channel {
    let socket = socket.to_path_buf();
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap()
}
