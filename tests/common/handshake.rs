//! An in-memory rustls handshake between a client and a server configuration, and what
//! each side ended with.
//!
//! Included with `#[path = "common/handshake.rs"] mod handshake;`.

#![allow(dead_code)]

use std::sync::Arc;

use meshid::tls::{self, PeerRejected};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// The name every client connects with; the SPIFFE verifiers never check it.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("ignored.example").unwrap()
}

/// What an in-memory handshake ended with on each side.
pub struct Outcome {
    pub client: ClientConnection,
    pub server: ServerConnection,
    pub client_error: Option<rustls::Error>,
    pub server_error: Option<rustls::Error>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.client_error.is_none()
            && self.server_error.is_none()
            && !self.client.is_handshaking()
            && !self.server.is_handshaking()
    }

    pub fn server_rejection(&self) -> &PeerRejected {
        let err = self.server_error.as_ref().expect("the server refused");
        tls::rejection(err).unwrap_or_else(|| panic!("not a PeerRejected: {err:?}"))
    }

    pub fn client_rejection(&self) -> &PeerRejected {
        let err = self.client_error.as_ref().expect("the client refused");
        tls::rejection(err).unwrap_or_else(|| panic!("not a PeerRejected: {err:?}"))
    }
}

/// Moves TLS records from `from` to `to`; the receiver's error, if processing failed.
pub fn transfer(from: &mut Connection, to: &mut Connection) -> Option<rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = buf.as_slice();
    while !rd.is_empty() {
        if let Err(e) = to.read_tls(&mut rd) {
            panic!("read_tls: {e}");
        }
        if let Err(e) = to.process_new_packets() {
            return Some(e);
        }
    }
    None
}

/// A full handshake in memory, then one more exchange (to deliver session tickets).
pub fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Outcome {
    handshake_to(server_name(), client, server)
}

/// [`handshake`], the client connecting to `name`.
pub fn handshake_to(
    name: ServerName<'static>,
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
) -> Outcome {
    let mut c = Connection::Client(ClientConnection::new(Arc::clone(client), name).unwrap());
    let mut s = Connection::Server(ServerConnection::new(Arc::clone(server)).unwrap());
    let (mut client_error, mut server_error) = (None, None);
    for _ in 0..10 {
        if server_error.is_none() {
            server_error = transfer(&mut c, &mut s);
        }
        if client_error.is_none() {
            client_error = transfer(&mut s, &mut c);
        }
        // Deliver the alert a failing side queued.
        if server_error.is_some() && client_error.is_none() {
            client_error = transfer(&mut s, &mut c);
        }
        if client_error.is_some() && server_error.is_none() {
            server_error = transfer(&mut c, &mut s);
        }
        if client_error.is_some() || server_error.is_some() {
            break;
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            break;
        }
    }
    let (Connection::Client(client), Connection::Server(server)) = (c, s) else {
        unreachable!()
    };
    Outcome {
        client,
        server,
        client_error,
        server_error,
    }
}
