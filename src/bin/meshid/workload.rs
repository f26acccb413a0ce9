//! `meshid serve workload-api` and `meshid fetch x509`: the Workload API from the shell.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use meshid::sds::SdsServer;
use meshid::time::parse_duration;
use meshid::workload::{
    accept_x509_context, AcceptedX509Context, Endpoint, Reconnect, WorkloadApiClient,
    WorkloadApiError, WorkloadApiServer, X509Context, X509Source, X509SourceOptions,
};
use meshid::{CertificateInfo, JwtBundles, LocalSvid, LocalSvidError, SpiffeId};
use tokio_stream::StreamExt;

use crate::files::{self, Failure};
use crate::jwt::load_ca_with_jwt;
use crate::lines::shown;
use crate::pki::load_ca;

#[derive(Debug, Subcommand)]
pub(crate) enum ServeCommand {
    /// Serve X509-SVIDs from a local CA over the SPIFFE Workload API until SIGINT/SIGTERM.
    WorkloadApi(ServeArgs),
    /// Serve Envoy SDS v3 from a local CA or a Workload API until SIGINT/SIGTERM.
    Sds(SdsArgs),
    /// A node agent: the Workload API and SDS on one socket, each caller attested and
    /// handed only the identities its registration entries give it.
    Agent(crate::agent::AgentArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["ca", "workload_api"])))]
#[command(group(clap::ArgGroup::new("what").args(["id", "entries"])))]
pub(crate) struct SdsArgs {
    /// The Unix socket to listen on (created mode 0600, 0666 with --entries; removed on
    /// exit).
    #[arg(long)]
    socket: PathBuf,
    /// Issue from this CA directory (with --id or --entries).
    #[arg(long, value_name = "DIR", requires = "what")]
    ca: Option<PathBuf>,
    /// The SPIFFE ID to serve (with --ca).
    #[arg(long)]
    id: Option<SpiffeId>,
    /// Serve registration entries (with --ca): each caller attested and given only its
    /// own; re-read on SIGHUP and when the file changes.
    #[arg(long, requires = "ca")]
    entries: Option<PathBuf>,
    #[command(flatten)]
    agent: crate::agent::AgentOptions,
    /// Each SVID's lifetime (with --ca); renewed at about half of it.
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
    /// Bridge from this Workload API endpoint, e.g. SPIRE's agent: `unix:///path`,
    /// `tcp://IP:port`, or an absolute socket path.
    #[arg(long, value_name = "ENDPOINT", conflicts_with = "ca")]
    workload_api: Option<String>,
    /// Serve validation contexts as Envoy's SPIFFE certificate validator listing every
    /// trust domain's bundle.
    #[arg(long)]
    spiffe_validator: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The Unix socket to listen on (created mode 0600, 0666 with --entries; removed on
    /// exit).
    #[arg(long)]
    socket: PathBuf,
    /// The CA's directory (ca.pem, ca.key, and bundle.pem for an intermediate).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// A SPIFFE ID to serve an SVID for to every caller (repeat for several; the first is
    /// the default).
    #[arg(
        long = "id",
        value_name = "ID",
        required_unless_present = "entries",
        conflicts_with = "entries"
    )]
    ids: Vec<SpiffeId>,
    /// Serve registration entries instead: each caller attested and given only its own;
    /// re-read on SIGHUP and when the file changes.
    #[arg(long)]
    entries: Option<PathBuf>,
    #[command(flatten)]
    agent: crate::agent::AgentOptions,
    /// Each SVID's lifetime; renewed at about half of it.
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FetchCommand {
    /// Fetch the X509-SVIDs and bundles from a Workload API; only updates whose every SVID
    /// verifies against its bundle (the whole chain valid now) are taken.
    X509(FetchArgs),
    /// Fetch JWT-SVIDs from a Workload API: prints each token on a line of its own (in the
    /// server's order; bearer credentials: whoever reads them can present them). Each is
    /// validated against the JWT bundles the same server publishes before it is printed.
    Jwt(FetchJwtArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FetchJwtArgs {
    /// The endpoint: `unix:///path`, `tcp://IP:port`, or an absolute socket path (as
    /// `serve --socket` takes it); default: $SPIFFE_ENDPOINT_SOCKET.
    #[arg(long, value_name = "ENDPOINT")]
    socket: Option<String>,
    /// An audience value (`aud`); repeatable, at least one (unless --bundles alone).
    #[arg(
        long = "audience",
        value_name = "AUD",
        required_unless_present = "bundles"
    )]
    audience: Vec<String>,
    /// Only the token for this SPIFFE ID (one of the workload's).
    #[arg(long)]
    spiffe_id: Option<SpiffeId>,
    /// Print the JWT bundles instead (with --audience: after the tokens): one line per
    /// trust domain, its ID, a space, and its bundle as JSON.
    #[arg(long)]
    bundles: bool,
    /// Give up (exit 1) if no answer arrives within this time.
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The endpoint: `unix:///path`, `tcp://IP:port`, or an absolute socket path (as
    /// `serve --socket` takes it); default: $SPIFFE_ENDPOINT_SOCKET.
    #[arg(long, value_name = "ENDPOINT")]
    socket: Option<String>,
    /// Write svid.pem, svid.key (mode 0600) and bundle.pem of the default SVID (or of
    /// --id's) to DIR.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// With --out-dir: write the SVID for this SPIFFE ID instead of the default (the first
    /// the server sends); an update without it is refused, naming the IDs served.
    #[arg(long, value_name = "ID", requires = "out_dir")]
    id: Option<SpiffeId>,
    /// Keep printing (and writing) every accepted update until interrupted; a refused
    /// update is logged and the last good kept, a lost or stalled stream reconnected.
    #[arg(long)]
    watch: bool,
    /// Without --watch: give up (exit 1) if no answer arrives within this time.
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Give up on a server that does not complete a message within this time (it stalled),
    /// and with --watch reconnect.
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    message_timeout: Duration,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::io(Path::new("tokio runtime"), e))
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

pub(crate) fn run_serve(cmd: ServeCommand) -> Result<(), Failure> {
    let args = match cmd {
        ServeCommand::WorkloadApi(args) => args,
        ServeCommand::Sds(args) => return run_sds(&args),
        ServeCommand::Agent(args) => return crate::agent::run(&args),
    };
    let observed = crate::observe::start(args.agent.metrics, &args.socket)?;
    if let Some(entries) = &args.entries {
        let running = crate::agent::start(&args.ca, entries, &args.agent)?;
        let agent = Arc::new(running.agent.clone());
        let server = with_jwt(
            WorkloadApiServer::from_sources(agent.clone(), agent),
            &running.ca,
            &args.ca,
        )
        .socket_mode(0o666)
        .limits(args.agent.limits());
        let server = running.observe(observed.as_ref(), server, WorkloadApiServer::observer);
        let server = match args.agent.allow_uids.as_slice() {
            [] => server,
            uids => server.allow_uids(uids.iter().copied()),
        };
        println!(
            "serving the Workload API for {} entries on {}",
            running.agent.entries().len(),
            args.socket.display()
        );
        return running.serve(|until| server.serve(&args.socket, until));
    }
    let ca = Arc::new(load_ca_with_jwt(&args.ca)?);
    let mut locals = Vec::new();
    for id in &args.ids {
        locals.push(local_svid(&args.ca, Arc::clone(&ca), id, args.ttl)?);
    }
    let Some(first) = locals.first() else {
        return Err(Failure::refused("no --id given"));
    };
    let mut api = with_jwt(WorkloadApiServer::new(first.bundles.clone()), &ca, &args.ca)
        .limits(args.agent.owner_limits());
    for local in &locals {
        api = api.with_svid(Arc::clone(&local.store));
    }
    if let Some(observed) = &observed {
        observed.local(&ca, &locals.iter().collect::<Vec<_>>());
        api = api.observer(observed.observer());
    }
    if !args.agent.allow_uids.is_empty() {
        api = api.allow_uids(args.agent.allow_uids.iter().copied());
    }
    println!(
        "serving {} on {}",
        args.ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        args.socket.display()
    );
    let served = runtime()?.block_on(api.serve(&args.socket, async {
        interrupted().await;
        println!("stopping");
    }));
    for local in locals {
        local.rotator.stop();
    }
    served.map_err(Failure::refused)
}

/// `server` serving JWT-SVIDs minted with `ca`'s JWT keys (DIR/jwt/) and publishing its
/// bundle's JWT authorities; unchanged (the JWT methods answer `Unimplemented`, said once
/// in the log) when the directory holds no JWT key, as an intermediate's does not.
pub(crate) fn with_jwt(
    server: WorkloadApiServer,
    ca: &Arc<meshid::Authority>,
    dir: &Path,
) -> WorkloadApiServer {
    if ca.jwt_keys().is_empty() {
        tracing::warn!(
            ca = %dir.display(),
            "no JWT key in the CA directory (an intermediate holds none): the JWT-SVID \
             methods answer Unimplemented"
        );
        return server;
    }
    let bundles: JwtBundles = std::iter::once(ca.spiffe_bundle()).collect();
    server.with_jwt(ca.clone(), Arc::new(bundles))
}

/// A CA directory's rotating SVID for `id` (the library's [`LocalSvid`]), its failures
/// worded for the operator.
fn local_svid(
    dir: &Path,
    ca: Arc<meshid::Authority>,
    id: &SpiffeId,
    ttl: Duration,
) -> Result<LocalSvid, Failure> {
    LocalSvid::start(ca, id, ttl, meshid::ring_algorithms()).map_err(|e| match e {
        LocalSvidError::UnknownRoot => Failure::refused(format!(
            "{}: the root is unknown (no bundle.pem beside ca.pem)",
            dir.display()
        )),
        e => Failure::refused(e),
    })
}

fn run_sds(args: &SdsArgs) -> Result<(), Failure> {
    let observed = crate::observe::start(args.agent.metrics, &args.socket)?;
    if let (Some(dir), Some(entries)) = (&args.ca, &args.entries) {
        let running = crate::agent::start(dir, entries, &args.agent)?;
        let agent = Arc::new(running.agent.clone());
        let sds = SdsServer::new(agent.clone(), agent)
            .spiffe_validator(args.spiffe_validator)
            .trust_domain(running.agent.trust_domain().clone())
            .socket_mode(0o666)
            .limits(args.agent.limits());
        let sds = running.observe(observed.as_ref(), sds, SdsServer::observer);
        let sds = match args.agent.allow_uids.as_slice() {
            [] => sds,
            uids => sds.allow_uids(uids.iter().copied()),
        };
        println!(
            "serving SDS for {} entries on {}",
            running.agent.entries().len(),
            args.socket.display()
        );
        return running.serve(|until| sds.serve(&args.socket, until));
    }
    let runtime = runtime()?;
    let mut rotator = None;
    let mut bridged = None;
    let sds = match (&args.ca, &args.id, &args.workload_api) {
        (Some(dir), Some(id), None) => {
            let ca = Arc::new(load_ca(dir)?);
            let local = local_svid(dir, Arc::clone(&ca), id, args.ttl)?;
            if let Some(observed) = &observed {
                observed.local(&ca, &[&local]);
            }
            rotator = Some(local.rotator);
            println!("serving SDS for {id} on {}", args.socket.display());
            SdsServer::for_store(local.store, local.bundles)
        }
        (None, _, Some(endpoint)) => {
            let endpoint = self::endpoint(Some(endpoint))?;
            let source = runtime
                .block_on(X509Source::new(
                    endpoint.clone(),
                    X509SourceOptions::default(),
                ))
                .map_err(Failure::refused)?;
            println!("serving SDS from {endpoint} on {}", args.socket.display());
            let source = Arc::new(source);
            if let Some(observed) = &observed {
                observed.source(&source);
            }
            bridged = Some(Arc::clone(&source));
            SdsServer::new(source.clone(), source)
        }
        _ => {
            return Err(Failure {
                code: 2,
                message: "give either --ca DIR --id ID, or --workload-api ENDPOINT".into(),
            })
        }
    };
    let mut sds = sds
        .spiffe_validator(args.spiffe_validator)
        .limits(args.agent.owner_limits());
    if let Some(observed) = &observed {
        sds = sds.observer(observed.observer());
    }
    if !args.agent.allow_uids.is_empty() {
        sds = sds.allow_uids(args.agent.allow_uids.iter().copied());
    }
    // A bridged Workload API that stops for good (it answered InvalidArgument or
    // Unimplemented) ends the server with exit 1, so a supervisor restarts or alerts,
    // instead of serving nothing once the held SVID expires.
    let source_stopped = async {
        match &bridged {
            Some(source) => source.stopped().await,
            None => std::future::pending::<String>().await,
        }
    };
    let lost = std::sync::Mutex::new(None);
    let served = runtime.block_on(sds.serve(&args.socket, async {
        tokio::select! {
            () = interrupted() => println!("stopping"),
            why = source_stopped => {
                tracing::error!(reason = %why, "the Workload API source stopped; stopping SDS");
                *lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
            }
        }
    }));
    if let Some(r) = rotator {
        r.stop();
    }
    served.map_err(Failure::refused)?;
    match lost
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(why) => Err(Failure::refused(format!(
            "the Workload API source stopped: {why}"
        ))),
        None => Ok(()),
    }
}

/// `--socket` as given, or $SPIFFE_ENDPOINT_SOCKET. The library's [`Endpoint::parse`]
/// stays as strict as the Workload Endpoint standard (a URI); the CLI also takes an
/// absolute path, as `serve --socket` does, meaning `unix://PATH`. The environment
/// variable is the standard's, so it stays a URI.
pub(crate) fn endpoint(socket: Option<&String>) -> Result<Endpoint, Failure> {
    match socket {
        Some(s) if s.starts_with('/') => Ok(Endpoint::Unix(PathBuf::from(s))),
        Some(s) => Endpoint::parse(s),
        None => Endpoint::from_env(),
    }
    .map_err(|e| Failure {
        code: 2,
        message: e.to_string(),
    })
}

pub(crate) fn run_fetch(cmd: FetchCommand) -> Result<(), Failure> {
    let args = match cmd {
        FetchCommand::X509(args) => args,
        FetchCommand::Jwt(args) => return fetch_jwt(&args),
    };
    let endpoint = endpoint(args.socket.as_ref())?;
    let runtime = runtime()?;
    if args.watch {
        runtime.block_on(watch(&endpoint, &args))
    } else {
        runtime.block_on(fetch_once(&endpoint, &args))
    }
}

/// `meshid fetch jwt`: the tokens (validated against the server's JWT bundles), and/or
/// the JWT bundles.
fn fetch_jwt(args: &FetchJwtArgs) -> Result<(), Failure> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let endpoint = endpoint(args.socket.as_ref())?;
    let runtime = runtime()?;
    let timeout = args.timeout;
    let out = runtime.block_on(async {
        let work = async {
            let mut client = WorkloadApiClient::connect(&endpoint)
                .await
                .map_err(|e| Failure::refused_with_causes(&e))?
                .with_message_timeout(timeout);
            let mut out = String::new();
            if !args.audience.is_empty() {
                let svids = client
                    .fetch_validated_jwt_svids(
                        &args.audience,
                        args.spiffe_id.as_ref(),
                        meshid::ring_algorithms(),
                    )
                    .await
                    .map_err(|e| Failure::refused_with_causes(&e))?;
                for svid in &svids {
                    // A token is base64url and dots only: nothing to escape.
                    let _ = writeln!(out, "{}", svid.token());
                }
            }
            if args.bundles {
                let bundles = client
                    .fetch_jwt_bundles()
                    .await
                    .map_err(|e| Failure::refused_with_causes(&e))?;
                for (td, authorities) in bundles.iter() {
                    let bundle = authorities
                        .iter()
                        .fold(meshid::SpiffeBundle::new(td.clone()), |b, a| {
                            b.with_jwt_authority(a.clone())
                        });
                    let _ = writeln!(out, "{} {}", td.id(), bundle.to_json());
                }
            }
            Ok::<_, Failure>(out)
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            Failure::refused(format!("no answer from {endpoint} within {timeout:?}"))
        })?
    })?;
    let out = zeroize::Zeroizing::new(out);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::io(Path::new("stdout"), e)),
    }
}

/// The first message, accepted by the library's rule or refused with exit 1.
async fn fetch_once(endpoint: &Endpoint, args: &FetchArgs) -> Result<(), Failure> {
    let timeout = args.timeout;
    let first = async {
        let mut client = WorkloadApiClient::connect(endpoint)
            .await
            .map_err(|e| Failure::refused_with_causes(&e))?
            .with_message_timeout(args.message_timeout);
        let mut updates = client
            .watch_x509_contexts()
            .await
            .map_err(|e| Failure::refused_with_causes(&e))?;
        Ok::<_, Failure>(updates.next().await)
    };
    let next = tokio::time::timeout(timeout, first)
        .await
        .map_err(|_| Failure::refused(format!("no answer from {endpoint} within {timeout:?}")))??;
    let context = next
        .ok_or_else(|| Failure::refused("the Workload API stream ended"))?
        .map_err(|e| Failure::refused_with_causes(&e))?;
    let accepted = accept(&context).map_err(|e| {
        Failure::refused(format!(
            "refused the Workload API update (verify before accepting): {e}"
        ))
    })?;
    if show(&accepted, false)? {
        if let Some(dir) = &args.out_dir {
            write(dir, args.id.as_ref(), accepted.context())?;
        }
    }
    Ok(())
}

fn accept(context: &X509Context) -> Result<AcceptedX509Context, WorkloadApiError> {
    accept_x509_context(context, SystemTime::now(), meshid::ring_algorithms())
}

/// How a watched stream ended.
enum Ended {
    /// The connection or stream failed: reconnect, unless the error is final.
    Lost(WorkloadApiError),
    /// stdout is gone: stop quietly.
    Quit,
}

/// Every accepted update printed (and written), until interrupted. A refused update is
/// logged and leaves what was printed and written; a lost, failed or stalled stream is
/// reconnected with backoff (capped by the life left of the SVID on disk), except after
/// `InvalidArgument` or `Unimplemented` (exit 1).
async fn watch(endpoint: &Endpoint, args: &FetchArgs) -> Result<(), Failure> {
    // One signal listener for the whole run, so no SIGINT is lost between updates.
    let interrupted = interrupted();
    tokio::pin!(interrupted);
    let mut reconnect = Reconnect::new(X509SourceOptions::default().backoff);
    let mut held: Option<SystemTime> = None;
    loop {
        let ended = tokio::select! {
            ended = watch_stream(endpoint, args, &mut reconnect, &mut held) => ended?,
            () = &mut interrupted => return Ok(()),
        };
        let error = match ended {
            Ended::Quit => return Ok(()),
            Ended::Lost(error) => error,
        };
        if !error.is_retryable() {
            return Err(Failure::refused(format!(
                "the Workload API refused for good: {}",
                files::with_causes(&error)
            )));
        }
        let now = SystemTime::now();
        if held.is_some_and(|until| until <= now) {
            tracing::error!(%endpoint, "the SVID last written has expired and no acceptable update replaced it");
            held = None;
        }
        let delay = reconnect.next_delay(held);
        let error = files::with_causes(&error);
        tracing::warn!(%endpoint, %error, retry_in = ?delay, "Workload API stream lost; keeping the last good SVID and reconnecting");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut interrupted => return Ok(()),
        }
    }
}

/// One connection of `fetch --watch`.
async fn watch_stream(
    endpoint: &Endpoint,
    args: &FetchArgs,
    reconnect: &mut Reconnect,
    held: &mut Option<SystemTime>,
) -> Result<Ended, Failure> {
    let mut client = match WorkloadApiClient::connect(endpoint).await {
        Ok(client) => client.with_message_timeout(args.message_timeout),
        Err(e) => return Ok(Ended::Lost(e)),
    };
    let mut updates = match client.watch_x509_contexts().await {
        Ok(updates) => updates,
        Err(e) => return Ok(Ended::Lost(e)),
    };
    loop {
        let context = match updates.next().await {
            None => return Ok(Ended::Lost(WorkloadApiError::StreamEnded)),
            Some(Err(
                e @ (WorkloadApiError::Status(_)
                | WorkloadApiError::Transport(_)
                | WorkloadApiError::Stalled { .. }),
            )) => return Ok(Ended::Lost(e)),
            Some(Err(error)) => {
                tracing::warn!(%endpoint, %error, "Workload API update refused; keeping the last good one");
                continue;
            }
            Some(Ok(context)) => context,
        };
        let accepted = match accept(&context) {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%endpoint, %error, "Workload API update refused; keeping the last good one");
                continue;
            }
        };
        reconnect.reset();
        if !show(&accepted, true)? {
            return Ok(Ended::Quit);
        }
        let Some(dir) = &args.out_dir else {
            *held = Some(accepted.default_valid_until());
            continue;
        };
        match pick(args.id.as_ref(), accepted.context()) {
            Ok(svid) => {
                write_svid(dir, svid, accepted.context())?;
                *held = accepted.valid_until(svid);
            }
            // The files on disk stay the last good ones.
            Err(failure) => tracing::warn!(%endpoint, error = %failure.message, "not written"),
        }
    }
}

/// One block per update: each SVID's ID, chain length and expiry, then the bundles.
/// With `--watch` (`watching`), each block starts with `update TIME` (when it was
/// accepted, RFC 3339) and each SVID's lines end with its `serial`. `Ok(false)` when
/// stdout is gone (a closed pipe): stop quietly. What the server sent is escaped.
fn show(accepted: &AcceptedX509Context, watching: bool) -> Result<bool, Failure> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let context = accepted.context();
    let mut out = String::new();
    if watching {
        let _ = writeln!(out, "update {}", meshid::time::Rfc3339(SystemTime::now()));
    }
    for svid in context.svids() {
        let info = CertificateInfo::from_der(svid.leaf()).ok();
        let not_after = info
            .as_ref()
            .map(|i| i.not_after_rfc3339().to_owned())
            .unwrap_or_default();
        let _ = write!(
            out,
            "svid {}\n  chain_length {}\n  not_after {}\n",
            shown(svid.id().as_str()),
            svid.chain().len(),
            shown(&not_after),
        );
        if watching {
            let serial = info.as_ref().map_or("-", CertificateInfo::serial_hex);
            let _ = writeln!(out, "  serial {}", shown(serial));
        }
    }
    let tds: Vec<String> = context
        .bundles()
        .iter()
        .map(|b| shown(b.trust_domain().as_ref()))
        .collect();
    let _ = writeln!(out, "bundles {}", tds.join(" "));
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::io(Path::new("stdout"), e)),
    }
}

/// The SVID `--id` names, or the default one; a refusal naming the IDs served when the
/// update holds no SVID for `--id`.
fn pick<'a>(
    id: Option<&SpiffeId>,
    context: &'a X509Context,
) -> Result<&'a Arc<meshid::X509Svid>, Failure> {
    let Some(id) = id else {
        return Ok(context.default_svid());
    };
    context.svid_for(id).ok_or_else(|| {
        let served: Vec<String> = context
            .svids()
            .map(|svid| shown(svid.id().as_str()))
            .collect();
        Failure::refused(format!(
            "no SVID for {id} among those served ({}); nothing written",
            served.join(", ")
        ))
    })
}

fn write(dir: &Path, id: Option<&SpiffeId>, context: &X509Context) -> Result<(), Failure> {
    write_svid(dir, pick(id, context)?, context)
}

fn write_svid(dir: &Path, svid: &meshid::X509Svid, context: &X509Context) -> Result<(), Failure> {
    let roots = context
        .bundles()
        .get(&svid.id().trust_domain())
        .map(|b| b.authorities().to_vec())
        .unwrap_or_default();
    meshid::SvidDir::new(dir)
        .write(svid, &roots)
        .map_err(files::dir_failure)?;
    println!("wrote {}", dir.display());
    Ok(())
}
