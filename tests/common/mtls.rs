//! A TLS server and client for mTLS checks between two identities: the server answers
//! each connection's first line with the client's SPIFFE ID, and the client reports
//! "<client id> -> <server id>" as each side authenticated the other.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use meshid::tls;
use rustls::pki_types::ServerName;

/// A TLS server answering each connection's first line with the client's SPIFFE ID.
pub fn echo_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut line = String::new();
                if BufReader::new(&mut tls).read_line(&mut line).is_err() {
                    return;
                }
                let peer = tls::peer_id(tls.conn).map(|p| p.to_string());
                let _ = writeln!(tls, "{}", peer.unwrap_or_default());
                let _ = tls.flush();
            });
        }
    });
    addr
}

/// One mTLS request: "<client id> -> <server id>" as each side saw the other.
pub fn request(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<String, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("backend").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"hello\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(&mut tls)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    let server = tls::peer_id(tls.conn).ok_or("no server ID")?;
    Ok(format!("{} -> {server}", answer.trim()))
}
