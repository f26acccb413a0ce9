//! `meshid proxy inbound|outbound`: SPIFFE mTLS in front of any program, a thin shell over
//! `meshid::proxy::Proxy`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use meshid::authorize::{self, Authorizer};
use meshid::proxy::{Acceptor, Address, Connector, ForwardId, Limits, Proxy};
use meshid::time::parse_duration;
use meshid::tls::rustls::crypto::CryptoProvider;
use meshid::tls::rustls::pki_types::pem::PemObject;
use meshid::tls::rustls::pki_types::{CertificateDer, ServerName};
use meshid::tls::rustls::server::WebPkiClientVerifier;
use meshid::tls::rustls::{self, RootCertStore};
use meshid::workload::{X509Source, X509SourceOptions};
use meshid::{BundleSource, LocalSvid, SpiffeId, SvidSource, TrustDomain};

use crate::files::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum ProxyCommand {
    /// Terminate TLS from callers (SPIFFE mTLS by default) and forward the plaintext to a
    /// local program, until SIGINT/SIGTERM.
    Inbound(Box<InboundArgs>),
    /// Take a local program's plaintext and originate TLS (SPIFFE mTLS by default) to a
    /// target, until SIGINT/SIGTERM.
    Outbound(Box<OutboundArgs>),
}

/// Where our SVID and the bundles come from.
#[derive(Debug, Args)]
pub(crate) struct IdentityArgs {
    /// The Workload API to take the SVID and bundles from (`unix:///path` or an absolute
    /// path); default $SPIFFE_ENDPOINT_SOCKET. A rotated SVID is used from the next
    /// handshake on.
    #[arg(long, value_name = "ENDPOINT", conflicts_with = "ca")]
    workload_api: Option<String>,
    /// For demos and tests: issue our own SVID from this CA directory (`meshid ca init`),
    /// renewed at about half of --ttl; needs --id.
    #[arg(long, value_name = "DIR", requires = "id")]
    ca: Option<PathBuf>,
    /// With --ca: our SPIFFE ID.
    #[arg(long, value_name = "ID", requires = "ca")]
    id: Option<SpiffeId>,
    /// With --ca: the SVID's lifetime.
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
}

/// What both ways take.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Where to listen: HOST:PORT (port 0 picks one; the line `listening on ADDR` says
    /// which) or unix:/PATH.
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    listen: Address,
    /// Where to forward: HOST:PORT or unix:/PATH.
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    target: Address,
    /// The most connections relayed at once; one more is closed at once.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_conns: u32,
    /// How long connecting to the target may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    connect_timeout: Duration,
    /// How long a TLS handshake may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    handshake_timeout: Duration,
    /// Close a connection when no byte has moved either way for this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    idle_timeout: Duration,
    /// On SIGINT/SIGTERM: stop accepting, let connections finish for this long, then
    /// close them.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    shutdown_timeout: Duration,
    /// Serve Prometheus metrics (`/metrics`), `/healthz` and `/readyz` over HTTP on ADDR.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct InboundArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Admit callers with exactly this SPIFFE ID (repeatable; any --allow* rule admits).
    #[arg(long = "allow", value_name = "ID")]
    allow: Vec<SpiffeId>,
    /// Admit callers whose ID is this one or below it (`spiffe://td/ns/prod` admits
    /// `spiffe://td/ns/prod/web`).
    #[arg(long = "allow-prefix", value_name = "ID")]
    allow_prefix: Vec<SpiffeId>,
    /// Admit every caller of this trust domain.
    #[arg(long = "allow-td", value_name = "TD")]
    allow_td: Vec<TrustDomain>,
    /// spiffe: our SVID, callers' SVIDs required (default). file: a certificate from
    /// --cert/--key for callers outside the mesh (client certificates only with
    /// --client-ca).
    #[arg(long, value_enum, default_value_t = InboundTls::Spiffe)]
    tls: InboundTls,
    /// With --tls file: the certificate chain (PEM, leaf first); re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// With --tls file: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// With --tls file: require client certificates issued by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Also accept plaintext on the same port (told apart by the first bytes), for
    /// migrations; strict (TLS only) by default.
    #[arg(long)]
    permissive: bool,
    /// Permissive mode: close a client that sends nothing for this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    detect_timeout: Duration,
    /// Pass the caller's SPIFFE ID on in a PROXY protocol v2 header (TLV 0xE0).
    #[arg(long, conflicts_with = "http")]
    proxy_protocol: bool,
    /// With --http: how long a caller may take to send a request's headers, and so how
    /// long a kept-alive connection may sit idle between requests.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    header_timeout: Duration,
    /// With --http: how long the app may take to begin a response (then 504).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    response_timeout: Duration,
    /// The target speaks HTTP/1: pass the caller's SPIFFE ID on in an
    /// `x-forwarded-client-cert: URI=<id>` header on every request (one a caller sends is
    /// removed).
    #[arg(long)]
    http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InboundTls {
    /// SPIFFE mTLS.
    Spiffe,
    /// A certificate from files.
    File,
}

#[derive(Debug, Args)]
pub(crate) struct OutboundArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Accept a server with exactly this SPIFFE ID (repeatable; any --expect* rule
    /// accepts).
    #[arg(long = "expect", value_name = "ID")]
    expect: Vec<SpiffeId>,
    /// Accept a server whose ID is this one or below it.
    #[arg(long = "expect-prefix", value_name = "ID")]
    expect_prefix: Vec<SpiffeId>,
    /// Accept any server of this trust domain.
    #[arg(long = "expect-td", value_name = "TD")]
    expect_td: Vec<TrustDomain>,
    /// spiffe: the server's SVID verified (default). web: a service outside the mesh,
    /// verified by Web PKI and --server-name.
    #[arg(long, value_enum, default_value_t = OutboundTls::Spiffe)]
    tls: OutboundTls,
    /// The name to send (SNI) and, with --tls web, to verify the server's certificate for.
    #[arg(long, value_name = "HOST")]
    server_name: Option<String>,
    /// With --tls web: trust this CA file (PEM) instead of --roots.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// With --tls web and no --ca-file: system (the operating system's trust store, as
    /// SSL_CERT_FILE / SSL_CERT_DIR or the distribution's bundle) or mozilla (Mozilla's
    /// roots built in, from webpki-roots).
    #[arg(long, value_enum, default_value_t = Roots::System)]
    roots: Roots,
    /// Listen on an address other hosts can reach. Whoever can connect to an outbound
    /// proxy calls out with this workload's identity, so by default --listen must be a
    /// loopback address (or a Unix socket, made mode 0600).
    #[arg(long)]
    allow_remote: bool,
    /// With --tls web: svid offers our SVID when the server asks for a client
    /// certificate; none never does.
    #[arg(long, value_enum, default_value_t = ClientCert::None)]
    client_cert: ClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutboundTls {
    /// SPIFFE mTLS.
    Spiffe,
    /// Web PKI.
    Web,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Roots {
    /// The operating system's trust store.
    System,
    /// Mozilla's roots, built in.
    Mozilla,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientCert {
    /// Offer our SVID when asked.
    Svid,
    /// Offer none.
    None,
}

fn parse_address(text: &str) -> Result<Address, String> {
    Address::parse(text).map_err(|e| e.to_string())
}

/// Our SVID and bundles, kept current, and what keeps them so.
struct Identity {
    svid: Arc<dyn SvidSource>,
    bundles: Arc<dyn BundleSource>,
    local: Option<(Arc<meshid::Authority>, LocalSvid)>,
    source: Option<Arc<X509Source>>,
}

impl IdentityArgs {
    fn start(&self, runtime: &tokio::runtime::Runtime) -> Result<Identity, Failure> {
        if let (Some(dir), Some(id)) = (&self.ca, &self.id) {
            let ca = Arc::new(crate::pki::load_ca(dir)?);
            let local = LocalSvid::start(Arc::clone(&ca), id, self.ttl, meshid::ring_algorithms())
                .map_err(Failure::refused)?;
            return Ok(Identity {
                svid: local.store.clone(),
                bundles: Arc::new(local.bundles.clone()),
                local: Some((ca, local)),
                source: None,
            });
        }
        let endpoint = crate::workload::endpoint(self.workload_api.as_ref())?;
        let source = runtime
            .block_on(X509Source::new(endpoint, X509SourceOptions::default()))
            .map_err(Failure::refused)?;
        let source = Arc::new(source);
        Ok(Identity {
            svid: source.clone(),
            bundles: source.clone(),
            local: None,
            source: Some(source),
        })
    }
}

impl Identity {
    fn id(&self) -> String {
        self.svid
            .x509_svid()
            .map_or_else(|| "(no SVID yet)".into(), |s| s.id().to_string())
    }
}

/// The rules given, any of which admits (the library's `Authorizer::or`); `None` when
/// none is given.
fn any_of(
    exact: &[SpiffeId],
    prefixes: &[SpiffeId],
    domains: &[TrustDomain],
) -> Option<Arc<dyn Authorizer>> {
    let mut rules: Vec<Arc<dyn Authorizer>> = Vec::new();
    if !exact.is_empty() {
        rules.push(Arc::new(authorize::one_of(exact.iter().cloned())));
    }
    for prefix in prefixes {
        rules.push(Arc::new(authorize::path_prefix(prefix.clone())));
    }
    for td in domains {
        rules.push(Arc::new(authorize::member_of(td.clone())));
    }
    rules
        .into_iter()
        .reduce(|a, b| Arc::new(a.or(b)) as Arc<dyn Authorizer>)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn limits(common: &CommonArgs, detect: Duration) -> Limits {
    Limits::default()
        .max_connections(common.max_conns as usize)
        .connect_timeout(common.connect_timeout)
        .idle_timeout(Some(common.idle_timeout))
        .shutdown_timeout(common.shutdown_timeout)
        .detect_timeout(detect)
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

pub(crate) fn run(cmd: ProxyCommand) -> Result<(), Failure> {
    match cmd {
        ProxyCommand::Inbound(args) => inbound(&args),
        ProxyCommand::Outbound(args) => outbound(&args),
    }
}

fn inbound(args: &InboundArgs) -> Result<(), Failure> {
    let rules = any_of(&args.allow, &args.allow_prefix, &args.allow_td);
    let provider = provider();
    let runtime = crate::workload::runtime()?;
    let observed = start_metrics(&args.common)?;
    let (config, identity) = match args.tls {
        InboundTls::Spiffe => {
            let rules = rules.ok_or_else(|| {
                usage("say which callers to admit: --allow ID, --allow-prefix ID or --allow-td TD")
            })?;
            let identity = args.identity.start(&runtime)?;
            let verifier = meshid::tls::SpiffeClientCertVerifier::new(
                Arc::clone(&identity.bundles),
                rules,
                Arc::clone(&provider),
            );
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = Arc::new(verifier);
            let verifier = match &observed {
                Some((_, tls, _)) => tls.server_verifier(verifier),
                None => verifier,
            };
            let config = meshid::tls::server_config_with_verifier(
                Arc::clone(&provider),
                Arc::clone(&identity.svid),
                verifier,
            )
            .map_err(Failure::refused)?;
            (config, Some(identity))
        }
        InboundTls::File => {
            let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
                return Err(usage("--tls file needs --cert FILE --key FILE"));
            };
            if rules.is_some() {
                return Err(usage(
                    "--allow* rules are for SPIFFE callers (--tls spiffe); --tls file admits \
                     whoever --client-ca admits",
                ));
            }
            let files = meshid::tls::CertFiles::load(cert, key, Arc::clone(&provider))
                .map_err(Failure::refused)?;
            let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(Failure::refused)?;
            let builder = match &args.client_ca {
                Some(file) => {
                    let roots = roots_from(file)?;
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        Arc::clone(&provider),
                    )
                    .build()
                    .map_err(Failure::refused)?;
                    builder.with_client_cert_verifier(verifier)
                }
                None => builder.with_no_client_auth(),
            };
            let mut config = builder.with_cert_resolver(Arc::new(files));
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
            (config, None)
        }
    };
    let mut acceptor =
        Acceptor::new(Arc::new(config)).handshake_timeout(args.common.handshake_timeout);
    if args.tls == InboundTls::File {
        acceptor = acceptor.without_peer_id();
    }
    let forward = if args.http {
        ForwardId::Http
    } else if args.proxy_protocol {
        ForwardId::ProxyV2
    } else {
        ForwardId::None
    };
    let proxy = Proxy::inbound(acceptor, args.common.target.clone())
        .limits(
            limits(&args.common, args.detect_timeout)
                .header_timeout(args.header_timeout)
                .response_timeout(args.response_timeout),
        )
        .permissive(args.permissive)
        .forward_id(forward);
    serve(
        proxy,
        &args.common,
        identity,
        observed.as_ref(),
        &runtime,
        "inbound",
    )
}

fn outbound(args: &OutboundArgs) -> Result<(), Failure> {
    if let Address::Tcp(listen) = &args.common.listen {
        if !args.allow_remote && !loopback(listen) {
            return Err(usage(format!(
                "--listen {listen}: other hosts could call out as this workload; listen on \
                 loopback or a Unix socket, or say --allow-remote"
            )));
        }
    }
    let rules = any_of(&args.expect, &args.expect_prefix, &args.expect_td);
    let provider = provider();
    let runtime = crate::workload::runtime()?;
    let observed = start_metrics(&args.common)?;
    let (config, identity, web) = match args.tls {
        OutboundTls::Spiffe => {
            let rules = rules.ok_or_else(|| {
                usage(
                    "say which server to accept: --expect ID, --expect-prefix ID or --expect-td TD",
                )
            })?;
            let identity = args.identity.start(&runtime)?;
            let verifier = meshid::tls::SpiffeServerCertVerifier::new(
                Arc::clone(&identity.bundles),
                rules,
                Arc::clone(&provider),
            );
            let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = Arc::new(verifier);
            let verifier = match &observed {
                Some((_, tls, _)) => tls.client_verifier(verifier),
                None => verifier,
            };
            let config = meshid::tls::client_config_with_verifier(
                Arc::clone(&provider),
                Arc::clone(&identity.svid),
                verifier,
            )
            .map_err(Failure::refused)?;
            (config, Some(identity), false)
        }
        OutboundTls::Web => {
            if rules.is_some() {
                return Err(usage(
                    "--expect* rules are for SPIFFE servers (--tls spiffe); --tls web verifies \
                     --server-name",
                ));
            }
            if args.server_name.is_none() {
                return Err(usage(
                    "--tls web needs --server-name HOST (the name verified)",
                ));
            }
            let roots = match (&args.ca_file, args.roots) {
                (Some(file), _) => roots_from(file)?,
                (None, Roots::Mozilla) => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
                (None, Roots::System) => system_roots()?,
            };
            let identity = match args.client_cert {
                ClientCert::Svid => Some(args.identity.start(&runtime)?),
                ClientCert::None => None,
            };
            let config = meshid::tls::web_client_config(
                Arc::clone(&provider),
                Arc::new(roots),
                identity.as_ref().map(|i| Arc::clone(&i.svid)),
            )
            .map_err(Failure::refused)?;
            (config, identity, true)
        }
    };
    let mut connector =
        Connector::new(Arc::new(config)).handshake_timeout(args.common.handshake_timeout);
    if let Some(name) = &args.server_name {
        let name = ServerName::try_from(name.clone())
            .map_err(|e| usage(format!("--server-name {name}: {e}")))?;
        connector = connector.server_name(name);
    }
    if web {
        connector = connector.without_peer_id();
    }
    let proxy = Proxy::outbound(connector, args.common.target.clone())
        .limits(limits(&args.common, Duration::from_secs(5)));
    serve(
        proxy,
        &args.common,
        identity,
        observed.as_ref(),
        &runtime,
        "outbound",
    )
}

/// The operating system's trust store; refused when it holds no usable root.
fn system_roots() -> Result<RootCertStore, Failure> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "part of the system trust store could not be read");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Failure::refused(
            "--roots system: the system trust store holds no usable root (install \
             ca-certificates, set SSL_CERT_FILE, or use --roots mozilla or --ca-file)",
        ));
    }
    Ok(roots)
}

/// Whether every address `host_port` resolves to is a loopback one.
fn loopback(host_port: &str) -> bool {
    use std::net::ToSocketAddrs;
    host_port.to_socket_addrs().is_ok_and(|addrs| {
        let addrs: Vec<_> = addrs.collect();
        !addrs.is_empty() && addrs.iter().all(|a| a.ip().to_canonical().is_loopback())
    })
}

/// A PEM file's certificates as trust anchors.
fn roots_from(file: &Path) -> Result<RootCertStore, Failure> {
    let pem = crate::files::read(file)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| Failure::refused(format!("{}: {e}", file.display())))?;
        roots
            .add(cert)
            .map_err(|e| Failure::refused(format!("{}: {e}", file.display())))?;
    }
    if roots.is_empty() {
        return Err(Failure::refused(format!(
            "{}: no PEM CERTIFICATE in it",
            file.display()
        )));
    }
    Ok(roots)
}

type Metered = (
    crate::observe::Observed,
    meshid::metrics::TlsMetrics,
    meshid::metrics::ProxyMetrics,
);

fn start_metrics(common: &CommonArgs) -> Result<Option<Metered>, Failure> {
    let listen = PathBuf::from(common.listen.to_string());
    let started = crate::observe::start_with(common.metrics, &listen, |registry| {
        (
            meshid::metrics::TlsMetrics::register(registry),
            meshid::metrics::ProxyMetrics::register(registry),
        )
    })?;
    Ok(started.map(|(observed, (tls, proxy))| (observed, tls, proxy)))
}

fn serve(
    mut proxy: Proxy,
    common: &CommonArgs,
    identity: Option<Identity>,
    observed: Option<&Metered>,
    runtime: &tokio::runtime::Runtime,
    way: &str,
) -> Result<(), Failure> {
    if let Some((observed, _, metrics)) = observed {
        proxy = proxy.observer(metrics.observer());
        match identity.as_ref() {
            Some(Identity {
                local: Some((ca, local)),
                ..
            }) => observed.local(ca, &[local]),
            Some(Identity {
                source: Some(source),
                ..
            }) => observed.source(source),
            _ => observed.ready.check(Vec::new),
        }
    }
    // Signal handlers first: a supervisor may signal as soon as it reads `listening on`.
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _entered = runtime.enter();
        signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
            .map_err(|e| Failure::io(Path::new("signal handlers"), e))?
    };
    let listener = runtime
        .block_on(common.listen.bind())
        .map_err(|e| usage(format!("--listen {}: {e}", common.listen)))?;
    if let (Address::Unix(path), "outbound") = (&common.listen, way) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Failure::io(path, e))?;
    }
    let bound = listener
        .local_address()
        .map_err(|e| Failure::io(Path::new("listener"), e))?;
    if let Some((observed, _, _)) = observed {
        observed.listening();
    }
    match &identity {
        Some(identity) => println!("proxy {way} as {} to {}", identity.id(), common.target),
        None => println!("proxy {way} to {}", common.target),
    }
    println!("listening on {bound}");
    let (mut term, mut interrupt) = signals;
    let served = runtime.block_on(proxy.serve(listener, async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        println!("stopping");
    }));
    if let Some(Identity {
        local: Some((_, local)),
        ..
    }) = identity
    {
        local.rotator.stop();
    }
    served.map_err(|e| Failure::io(Path::new("proxy"), e))
}
