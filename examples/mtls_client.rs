//! An mTLS client fed by files that `meshid issue` writes: it presents DIR/svid.pem with
//! DIR/svid.key, accepts a server whose X509-SVID verifies against DIR/bundle.pem, prints
//! the server's SPIFFE ID, sends one line and prints the answer. See `mtls_server.rs` for the
//! commands that make the files.
//!
//! ```text
//! cargo run --example mtls_client -- client 127.0.0.1:8443 [--expect SPIFFE_ID] [MESSAGE]
//! ```
//!
//! By default any server of the client's own trust domain is accepted;
//! `--expect SPIFFE_ID` accepts that ID only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshid::{authorize, tls, Authorizer, SpiffeId, X509Bundle, X509Svid};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: mtls_client DIR ADDR [--expect SPIFFE_ID] [MESSAGE]";
    let dir = args.next().ok_or(usage)?;
    let addr = args.next().ok_or(usage)?;
    let mut expect = None;
    let mut message = "ping".to_owned();
    while let Some(arg) = args.next() {
        if arg == "--expect" {
            expect = Some(SpiffeId::new(&args.next().ok_or(usage)?)?);
        } else {
            message = arg;
        }
    }
    let dir = Path::new(&dir);
    let svid = X509Svid::parse_pem(
        &std::fs::read(dir.join("svid.pem"))?,
        &std::fs::read(dir.join("svid.key"))?,
    )?;
    let bundle = X509Bundle::parse_pem(
        svid.id().trust_domain(),
        &std::fs::read(dir.join("bundle.pem"))?,
    )?;
    let authorizer: Box<dyn Authorizer> = match expect {
        Some(id) => Box::new(authorize::exact(id)),
        None => Box::new(authorize::member_of(svid.id().trust_domain())),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = tls::client_config(provider, Arc::new(svid), bundle, authorizer)?;

    let tcp = TcpStream::connect(&addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    // SPIFFE checks the server's ID, not its name; rustls only needs a syntactically valid one.
    let name = ServerName::try_from("spiffe-peer")?;
    let mut tls = StreamOwned::new(ClientConnection::new(Arc::new(config), name)?, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let peer = tls::peer_id(&tls.conn).ok_or("server presented no SPIFFE ID")?;
    println!("server is {peer}");
    let mut reply = String::new();
    let exchanged = writeln!(tls, "{message}")
        .and_then(|()| tls.flush())
        .and_then(|()| BufReader::new(&mut tls).read_line(&mut reply));
    if let Err(error) = exchanged {
        // With TLS 1.3 the server checks our certificate after our side of the handshake
        // is done; a refusal then arrives as an alert on the next read.
        return Err(format!("the server ended the connection: {error}").into());
    }
    print!("{reply}");
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}
