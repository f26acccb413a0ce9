//! An mTLS server fed by files that `meshid issue` writes: it presents DIR/svid.pem with
//! DIR/svid.key, accepts clients whose X509-SVID verifies against DIR/bundle.pem, and
//! answers each line a client sends with the client's SPIFFE ID.
//!
//! ```text
//! meshid ca init --trust-domain example.org --out ca
//! meshid issue --ca ca --id spiffe://example.org/server --out-dir server
//! meshid issue --ca ca --id spiffe://example.org/client --out-dir client
//! cargo run --example mtls_server -- server 127.0.0.1:8443
//! cargo run --example mtls_client -- client 127.0.0.1:8443       # in another shell
//! openssl s_client -connect 127.0.0.1:8443 -cert client/svid.pem -key client/svid.key \
//!     -CAfile client/bundle.pem                                 # or openssl
//! ```
//!
//! By default any workload of the server's own trust domain is accepted;
//! `--allow SPIFFE_ID` (repeatable) admits only the IDs listed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshid::{authorize, tls, Authorizer, SpiffeId, X509Bundle, X509Svid};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: mtls_server DIR [ADDR] [--allow SPIFFE_ID]...";
    let dir = args.next().ok_or(usage)?;
    let mut addr = "127.0.0.1:8443".to_owned();
    let mut allowed = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--allow" {
            allowed.push(SpiffeId::new(&args.next().ok_or(usage)?)?);
        } else {
            addr = arg;
        }
    }
    let (svid, bundle) = load(Path::new(&dir))?;
    let authorizer: Box<dyn Authorizer> = if allowed.is_empty() {
        Box::new(authorize::member_of(svid.id().trust_domain()))
    } else {
        Box::new(authorize::one_of(allowed))
    };
    println!("serving as {} on {addr}", svid.id());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(tls::server_config(
        provider,
        Arc::new(svid),
        bundle,
        authorizer,
    )?);
    for tcp in TcpListener::bind(&addr)?.incoming().flatten() {
        let config = Arc::clone(&config);
        std::thread::spawn(move || {
            if let Err(why) = serve(config, tcp) {
                println!("connection failed: {}", explain(&*why));
            }
        });
    }
    Ok(())
}

/// DIR/svid.pem + DIR/svid.key and DIR/bundle.pem, as `meshid issue` writes them.
pub fn load(dir: &Path) -> Result<(X509Svid, X509Bundle), Error> {
    let svid = X509Svid::parse_pem(
        &std::fs::read(dir.join("svid.pem"))?,
        &std::fs::read(dir.join("svid.key"))?,
    )?;
    let bundle = X509Bundle::parse_pem(
        svid.id().trust_domain(),
        &std::fs::read(dir.join("bundle.pem"))?,
    )?;
    Ok((svid, bundle))
}

/// A refused peer's reason as meshid states it (the rule it broke, or the ID the authorizer
/// refused); other errors as they are.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let tls_error = error.downcast_ref::<rustls::Error>().or_else(|| {
        error
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    });
    match tls_error.and_then(tls::rejection) {
        Some(rejected) => format!("refused: {rejected}"),
        None => error.to_string(),
    }
}

fn serve(config: Arc<ServerConfig>, tcp: TcpStream) -> Result<(), Error> {
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = StreamOwned::new(ServerConnection::new(config)?, tcp);
    // Complete the handshake before reading, so a refusal is reported as such.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let peer = tls::peer_id(&tls.conn).ok_or("client presented no SPIFFE ID")?;
    println!("client {peer} connected");
    let mut lines = BufReader::new(&mut tls);
    let mut line = String::new();
    loop {
        match lines.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            // A client that just closes its socket (as `openssl s_client -quiet` does at
            // the end of its input) has said all it had to say.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let reply = format!("hello {peer}, you said: {}\n", line.trim_end());
        lines.get_mut().write_all(reply.as_bytes())?;
        lines.get_mut().flush()?;
        line.clear();
    }
    Ok(())
}
