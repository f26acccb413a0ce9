//! Interop of `meshid::tls` with the `openssl` command-line tool (OpenSSL 3): our rustls
//! server against `openssl s_client`, our rustls client against `openssl s_server`. Every
//! SVID is issued by an intermediate CA (root -> intermediate -> leaf), so each side must
//! send its intermediate and the other must build the path to the bundle's root.
//!
//! The `openssl` binary must be on PATH (CI installs it); without it these tests fail, they
//! are never skipped.

#![cfg(all(feature = "ca", feature = "rustls", feature = "ring"))]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use meshid::tls::{self, PeerRejected};
use meshid::{
    authorize, Authority, Authorizer, KeyType, SpiffeId, TrustDomain, VerifyError, X509Bundle,
    X509Svid,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, ServerConfig, ServerConnection};

/// Timeout of every socket read and write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an `openssl` process, or our server waiting for a connection, may take.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);
/// Lifetime of the CAs and SVIDs.
const TTL: Duration = Duration::from_secs(3600);

const SERVER_ID: &str = "spiffe://example.org/server";
const CLIENT_ID: &str = "spiffe://example.org/client";

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------------------
// Scratch files

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshid-tls-openssl-{}-{}-{test}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Self(dir)
    }

    /// Writes `contents` to `name` and returns its path, as openssl takes it.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        path.to_str().expect("UTF-8 temp path").to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A trust domain: a root, an intermediate under it that issues every SVID, and the bundle
/// (the root only).
struct Pki {
    intermediate: Authority,
    bundle: X509Bundle,
}

impl Pki {
    fn new(trust_domain: &str) -> Self {
        let td = TrustDomain::new(trust_domain).unwrap();
        let root = Authority::new_root(td.clone(), TTL, KeyType::P256).unwrap();
        let intermediate = root.new_intermediate(TTL, KeyType::P256).unwrap();
        let bundle = X509Bundle::from_authorities(td, root.root().cloned()).unwrap();
        Self {
            intermediate,
            bundle,
        }
    }

    /// An SVID whose chain is leaf + intermediate.
    fn issue(&self, spiffe_id: &str) -> X509Svid {
        let svid = self.intermediate.issue(&id(spiffe_id), TTL).unwrap();
        assert_eq!(svid.chain().len(), 2, "leaf + intermediate");
        svid
    }
}

/// An SVID as openssl takes it: the leaf, the rest of the chain, the PKCS#8 key.
struct SvidFiles {
    leaf: String,
    rest: String,
    key: String,
}

fn write_svid(dir: &Scratch, name: &str, svid: &X509Svid) -> SvidFiles {
    let (leaf, rest) = svid.chain().split_first().unwrap();
    assert!(
        !rest.is_empty(),
        "{name}: the chain must carry its intermediate"
    );
    SvidFiles {
        leaf: dir.write(
            &format!("{name}.pem"),
            &meshid::certificates_to_pem(std::slice::from_ref(leaf)),
        ),
        rest: dir.write(
            &format!("{name}-chain.pem"),
            &meshid::certificates_to_pem(rest),
        ),
        key: dir.write(&format!("{name}.key"), &svid.key_pem()),
    }
}

// ---------------------------------------------------------------------------------------
// openssl processes

/// A running `openssl`, killed and reaped on drop whatever happens; its stdout and stderr
/// are collected as they come.
struct Openssl {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

/// What an `openssl` run ended with.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Openssl {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `openssl` ({e}): these tests need the OpenSSL 3 command-line \
                     tool on PATH (CI installs it)"
                )
            });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Self {
            what: format!("openssl {}", args.join(" ")),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Writes `input` to the process's stdin. A process that has already exited (an
    /// `s_client` whose handshake failed at once, say) gives `BrokenPipe`: the caller's
    /// checks of its exit and output then tell what happened.
    fn send(&mut self, input: &str) -> io::Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(input.as_bytes())?;
        stdin.flush()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on openssl")
    }

    /// Waits for the process to exit on its own and its output to be read, at most
    /// [`PROCESS_TIMEOUT`]; past that it panics (and the process is killed on drop).
    ///
    /// Stdin stays open: `s_server` ends its connection as soon as it reads EOF there, data
    /// from the client still unread, and `s_client -quiet` ignores EOF anyway.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not exit within {PROCESS_TIMEOUT:?}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.what,
                self.stdout(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        };
        while !self.readers.iter().all(JoinHandle::is_finished) {
            assert!(
                Instant::now() < deadline,
                "`{}` exited but its output did not end",
                self.what
            );
            thread::sleep(Duration::from_millis(10));
        }
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Openssl {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `openssl s_client` against 127.0.0.1:`port` with `input` on its stdin.
fn s_client(port: u16, args: &[&str], input: &str) -> Finished {
    let connect = format!("127.0.0.1:{port}");
    let mut all = vec!["s_client", "-connect", &connect];
    all.extend_from_slice(args);
    let mut client = Openssl::spawn(&all);
    match client.send(input) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => panic!("writing to s_client: {e}"),
        _ => client.finish(),
    }
}

/// s_client arguments for mTLS with `svid`, verifying the server against `ca_file`.
fn s_client_mtls<'a>(svid: &'a SvidFiles, ca_file: &'a str) -> Vec<&'a str> {
    vec![
        "-cert",
        &svid.leaf,
        "-cert_chain",
        &svid.rest,
        "-key",
        &svid.key,
        "-CAfile",
        ca_file,
        "-verify_return_error",
        "-x509_strict",
        "-quiet",
    ]
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `openssl s_server` for one connection, presenting `svid` and requiring a client
/// certificate that verifies against `ca_file`; returns once it listens. A port taken
/// between [`free_port`] and openssl's bind is retried with another.
fn s_server(svid: &SvidFiles, ca_file: &str) -> (Openssl, u16) {
    for _ in 0..5 {
        let port = free_port();
        let port_arg = port.to_string();
        let mut server = Openssl::spawn(&[
            "s_server",
            "-accept",
            &port_arg,
            "-naccept",
            "1",
            "-cert",
            &svid.leaf,
            "-cert_chain",
            &svid.rest,
            "-key",
            &svid.key,
            "-CAfile",
            ca_file,
            "-Verify",
            "1",
            "-verify_return_error",
            "-x509_strict",
        ]);
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if server.stdout().contains("ACCEPT") {
                return (server, port);
            }
            if server.exited().is_some() {
                let stderr = server.stderr();
                assert!(
                    stderr.contains("ddress already in use") || stderr.contains("bind"),
                    "s_server exited before listening:\n{stderr}"
                );
                break; // port taken: try another
            }
            assert!(
                Instant::now() < deadline,
                "s_server did not listen within {PROCESS_TIMEOUT:?}\n{}",
                server.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("s_server could not bind a port in 5 attempts");
}

// ---------------------------------------------------------------------------------------
// Our side

/// What our server got from one connection that completed its handshake.
#[derive(Debug)]
struct Served {
    peer: SpiffeId,
    version: Option<ProtocolVersion>,
    line: String,
}

/// Our server on 127.0.0.1 and a free port: accepts `connections` connections one after
/// the other and, for each, completes the handshake, reads a line, answers `peer=<ID>` and
/// closes with close_notify. Each connection's outcome goes to the receiver.
fn our_server(
    config: ServerConfig,
    connections: usize,
) -> (u16, mpsc::Receiver<io::Result<Served>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Arc::new(config);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..connections {
            // Never wait forever: a test that failed before connecting leaves no thread.
            let deadline = Instant::now() + PROCESS_TIMEOUT;
            let tcp = loop {
                match listener.accept() {
                    Ok((tcp, _)) => break tcp,
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                    {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            };
            if tx.send(serve(&config, tcp)).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

fn serve(config: &Arc<ServerConfig>, tcp: TcpStream) -> io::Result<Served> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let served = exchange(&mut tls);
    // Whatever happened (complete_io has sent the alert of a failed handshake), let the
    // client close first: closing here with its data unread would reset the connection,
    // and the client might lose our answer or our alert.
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    let _ = io::copy(&mut tls.sock, &mut io::sink());
    served
}

/// Handshake, one line in, `peer=<ID>` out, close_notify.
fn exchange(tls: &mut rustls::StreamOwned<ServerConnection, TcpStream>) -> io::Result<Served> {
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let peer = tls::peer_id(&tls.conn)
        .ok_or_else(|| io::Error::other("handshake completed without a client SPIFFE ID"))?;
    let version = tls.conn.protocol_version();
    let mut line = String::new();
    BufReader::new(&mut *tls).read_line(&mut line)?;
    tls.write_all(format!("peer={peer}\n").as_bytes())?;
    tls.conn.send_close_notify();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock)?;
    }
    Ok(Served {
        peer,
        version,
        line,
    })
}

/// Waits for our server's outcome of the next connection.
fn next_outcome(outcomes: &mpsc::Receiver<io::Result<Served>>) -> io::Result<Served> {
    outcomes
        .recv_timeout(PROCESS_TIMEOUT + IO_TIMEOUT)
        .expect("our server reported no outcome for the connection")
}

/// The rustls error inside an I/O error from `complete_io`.
fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn server_config(
    svid: X509Svid,
    bundle: &X509Bundle,
    authorizer: impl Authorizer + 'static,
) -> ServerConfig {
    tls::server_config(provider(), Arc::new(svid), bundle.clone(), authorizer).unwrap()
}

fn client_config(
    svid: X509Svid,
    bundle: &X509Bundle,
    authorizer: impl Authorizer + 'static,
) -> ClientConfig {
    tls::client_config(provider(), Arc::new(svid), bundle.clone(), authorizer).unwrap()
}

/// Our client connected to 127.0.0.1:`port` with the handshake done (or its error).
fn our_client(
    config: ClientConfig,
    port: u16,
) -> io::Result<rustls::StreamOwned<ClientConnection, TcpStream>> {
    let tcp =
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), IO_TIMEOUT)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    // SPIFFE checks the server's ID, not its name; rustls only needs a valid one.
    let name = ServerName::try_from("spiffe-peer").unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn openssl_s_client_against_our_server() {
    let dir = Scratch::new("s-client");
    let pki = Pki::new("example.org");
    let bundle_pem = dir.write("bundle.pem", &pki.bundle.to_pem());
    let client = write_svid(&dir, "client", &pki.issue(CLIENT_ID));
    // A bundle openssl must not accept our server with: its root is not ours.
    let stranger_pem = dir.write("stranger.pem", &Pki::new("example.org").bundle.to_pem());

    for (version_arg, version) in [
        (None, ProtocolVersion::TLSv1_3),
        (Some("-tls1_2"), ProtocolVersion::TLSv1_2),
    ] {
        let config = server_config(
            pki.issue(SERVER_ID),
            &pki.bundle,
            authorize::exact(id(CLIENT_ID)),
        );
        let (port, outcomes) = our_server(config, 2);

        let mut args = s_client_mtls(&client, &bundle_pem);
        args.extend(version_arg);
        let run = s_client(port, &args, "hello from openssl\n");
        let served = next_outcome(&outcomes)
            .unwrap_or_else(|e| panic!("{version:?}: our server failed: {e}\ns_client: {run}"));
        // -verify_return_error: exit 0 means openssl verified our leaf + intermediate to
        // the bundle's root.
        assert!(run.status.success(), "{version:?}: s_client failed: {run}");
        assert!(
            run.stdout.contains(&format!("peer={CLIENT_ID}")),
            "{version:?}: {run}"
        );
        assert!(!run.stderr.contains("verify error"), "{version:?}: {run}");
        assert_eq!(served.peer, id(CLIENT_ID), "{version:?}");
        assert_eq!(served.line, "hello from openssl\n", "{version:?}");
        assert_eq!(served.version, Some(version));

        // The control: the same s_client refuses our server when the bundle it is given
        // does not hold our root, so the success above is openssl's verification.
        let mut args = s_client_mtls(&client, &stranger_pem);
        args.extend(version_arg);
        let run = s_client(port, &args, "hello from openssl\n");
        assert!(!run.status.success(), "{version:?}: {run}");
        assert!(run.stderr.contains("verify error"), "{version:?}: {run}");
        assert!(!run.stdout.contains("peer="), "{version:?}: {run}");
        let refused = next_outcome(&outcomes).expect_err("openssl aborted the handshake");
        assert!(
            matches!(tls_error(&refused), Some(rustls::Error::AlertReceived(_))),
            "{version:?}: {refused:?}"
        );
    }
}

#[test]
fn openssl_s_client_without_certificate_is_refused() {
    let dir = Scratch::new("no-cert");
    let pki = Pki::new("example.org");
    let bundle_pem = dir.write("bundle.pem", &pki.bundle.to_pem());
    let client = write_svid(&dir, "client", &pki.issue(CLIENT_ID));
    let config = server_config(
        pki.issue(SERVER_ID),
        &pki.bundle,
        authorize::exact(id(CLIENT_ID)),
    );
    let (port, outcomes) = our_server(config, 2);

    let run = s_client(
        port,
        &["-CAfile", &bundle_pem, "-verify_return_error", "-quiet"],
        "hello without a certificate\n",
    );
    let refused = next_outcome(&outcomes).expect_err("a client without certificate is refused");
    assert!(
        matches!(
            tls_error(&refused),
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "{refused:?}"
    );
    assert!(!run.status.success(), "{run}");
    assert!(!run.stdout.contains("peer="), "{run}");
    assert!(run.stderr.contains("alert certificate required"), "{run}");

    // The server goes on serving: a proper client is served next.
    let run = s_client(port, &s_client_mtls(&client, &bundle_pem), "hello again\n");
    let served = next_outcome(&outcomes).unwrap_or_else(|e| panic!("{e}\ns_client: {run}"));
    assert!(run.status.success(), "{run}");
    assert!(run.stdout.contains(&format!("peer={CLIENT_ID}")), "{run}");
    assert_eq!(served.peer, id(CLIENT_ID));
}

#[test]
fn openssl_s_client_from_other_trust_domain_is_refused() {
    let dir = Scratch::new("other-td");
    let pki = Pki::new("example.org");
    let other = Pki::new("other.org");
    let bundle_pem = dir.write("bundle.pem", &pki.bundle.to_pem());
    let stranger = write_svid(&dir, "stranger", &other.issue("spiffe://other.org/client"));
    let config = server_config(
        pki.issue(SERVER_ID),
        &pki.bundle,
        authorize::exact(id(CLIENT_ID)),
    );
    let (port, outcomes) = our_server(config, 1);

    let run = s_client(
        port,
        &s_client_mtls(&stranger, &bundle_pem),
        "hello from other.org\n",
    );
    let refused = next_outcome(&outcomes).expect_err("a client of another trust domain is refused");
    let error = tls_error(&refused).unwrap_or_else(|| panic!("not a rustls error: {refused:?}"));
    assert!(
        matches!(
            tls::rejection(error),
            Some(PeerRejected::Verify(VerifyError::NoBundle { trust_domain }))
                if trust_domain.name() == "other.org"
        ),
        "{error:?}"
    );
    assert!(!run.status.success(), "{run}");
    assert!(!run.stdout.contains("peer="), "{run}");
}

#[test]
fn our_client_against_openssl_s_server() {
    let dir = Scratch::new("s-server");
    let pki = Pki::new("example.org");
    let bundle_pem = dir.write("bundle.pem", &pki.bundle.to_pem());
    let server_files = write_svid(&dir, "server", &pki.issue(SERVER_ID));
    let (mut server, port) = s_server(&server_files, &bundle_pem);
    // s_server sends what it reads on stdin to the client once connected.
    server.send("hello from openssl\n").unwrap();

    let config = client_config(
        pki.issue(CLIENT_ID),
        &pki.bundle,
        authorize::exact(id(SERVER_ID)),
    );
    let mut tls = our_client(config, port)
        .unwrap_or_else(|e| panic!("handshake with s_server failed: {e}\n{}", server.stderr()));
    assert_eq!(tls::peer_id(&tls.conn), Some(id(SERVER_ID)));
    assert_eq!(tls.conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    tls.write_all(b"hello from meshid\n").unwrap();
    tls.flush().unwrap();
    let mut reply = String::new();
    BufReader::new(&mut tls)
        .read_line(&mut reply)
        .unwrap_or_else(|e| panic!("reading from s_server: {e}\n{}", server.stderr()));
    assert_eq!(reply, "hello from openssl\n");
    tls.conn.send_close_notify();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock).unwrap();
    }

    // -verify_return_error: s_server would have aborted on a client chain it could not
    // verify; it printed what we sent, so it verified leaf + intermediate to its root.
    let run = server.finish();
    assert!(run.stdout.contains("hello from meshid"), "{run}");
    assert!(!run.stderr.contains("verify error"), "{run}");
    assert!(run.stderr.contains("verify return:1"), "{run}");
}

#[test]
fn our_client_refuses_openssl_server_with_wrong_id() {
    let dir = Scratch::new("impostor");
    let pki = Pki::new("example.org");
    let bundle_pem = dir.write("bundle.pem", &pki.bundle.to_pem());
    let impostor = write_svid(
        &dir,
        "impostor",
        &pki.issue("spiffe://example.org/impostor"),
    );
    let (server, port) = s_server(&impostor, &bundle_pem);

    let config = client_config(
        pki.issue(CLIENT_ID),
        &pki.bundle,
        authorize::exact(id(SERVER_ID)),
    );
    let Err(refused) = our_client(config, port) else {
        panic!("our client accepted spiffe://example.org/impostor");
    };
    let error = tls_error(&refused).unwrap_or_else(|| panic!("not a rustls error: {refused:?}"));
    match tls::rejection(error) {
        Some(PeerRejected::Unauthorized(why)) => {
            assert_eq!(why.id(), &id("spiffe://example.org/impostor"));
        }
        other => panic!("expected Unauthorized, got {other:?} from {error:?}"),
    }
    // s_server saw the handshake fail on our alert and took no data.
    let run = server.finish();
    assert!(run.stderr.contains("alert"), "{run}");
    assert!(!run.stdout.contains("hello"), "{run}");
}
