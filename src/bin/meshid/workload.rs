//! `meshid serve workload-api` and `meshid fetch x509`: the Workload API from the shell.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use meshid::sds::{Feed, SdsServer};
use meshid::workload::{
    Endpoint, WorkloadApiClient, WorkloadApiServer, X509Context, X509Source, X509SourceOptions,
};
use meshid::{
    BundleSet, CertificateInfo, RotationPolicy, Rotator, RotatorConfig, SpiffeId, SvidStore,
    X509Bundle,
};
use tokio_stream::StreamExt;

use crate::files::{self, parse_duration, Failure};
use crate::pki::load_ca;

#[derive(Debug, Subcommand)]
pub(crate) enum ServeCommand {
    /// Serve X509-SVIDs from a local CA over the SPIFFE Workload API until SIGINT/SIGTERM.
    WorkloadApi(ServeArgs),
    /// Serve Envoy SDS v3 from a local CA or a Workload API until SIGINT/SIGTERM.
    Sds(SdsArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["ca", "workload_api"])))]
pub(crate) struct SdsArgs {
    /// The Unix socket to listen on (created mode 0600; removed on exit).
    #[arg(long)]
    socket: PathBuf,
    /// Issue from this CA directory (with --id).
    #[arg(long, requires = "id")]
    ca: Option<PathBuf>,
    /// The SPIFFE ID to serve (with --ca).
    #[arg(long)]
    id: Option<SpiffeId>,
    /// Each SVID's lifetime (with --ca); renewed at about half of it.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
    /// Bridge from this Workload API endpoint (`unix:///path`), e.g. SPIRE's agent.
    #[arg(long, conflicts_with = "ca")]
    workload_api: Option<String>,
    /// Serve validation contexts as Envoy's SPIFFE certificate validator listing every
    /// trust domain's bundle.
    #[arg(long)]
    spiffe_validator: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The Unix socket to listen on (created mode 0600; removed on exit).
    #[arg(long)]
    socket: PathBuf,
    /// The CA's directory (ca.pem, ca.key, and bundle.pem for an intermediate).
    #[arg(long)]
    ca: PathBuf,
    /// A SPIFFE ID to serve an SVID for (repeat for several; the first is the default).
    #[arg(long = "id", required = true)]
    ids: Vec<SpiffeId>,
    /// Each SVID's lifetime; renewed at about half of it.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FetchCommand {
    /// Fetch the X509-SVIDs and bundles from a Workload API.
    X509(FetchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The endpoint (`unix:///path` or `tcp://IP:port`); default: $SPIFFE_ENDPOINT_SOCKET.
    #[arg(long)]
    socket: Option<String>,
    /// Write svid.pem, svid.key (mode 0600) and bundle.pem of the default SVID here.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Keep printing (and writing) every update until interrupted.
    #[arg(long)]
    watch: bool,
    /// Without --watch: give up (exit 1) if no answer arrives within this time.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::io(Path::new("tokio runtime"), e))
}

/// Completes on SIGINT or SIGTERM.
async fn interrupted() {
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
    };
    let ca = Arc::new(load_ca(&args.ca)?);
    let td = ca.trust_domain().clone();
    let root = ca.root().cloned().ok_or_else(|| {
        Failure::refused(format!(
            "{}: the root is unknown (no bundle.pem beside ca.pem)",
            args.ca.display()
        ))
    })?;
    let bundle = X509Bundle::from_authorities(td, [root]).map_err(Failure::refused)?;
    let bundles: BundleSet = [bundle].into_iter().collect();
    let mut api = WorkloadApiServer::new(bundles.clone());
    let mut rotators = Vec::new();
    for id in &args.ids {
        let store = Arc::new(SvidStore::new());
        rotators.push(Rotator::start(RotatorConfig {
            id: id.clone(),
            ttl: args.ttl,
            policy: RotationPolicy::default(),
            issuer: ca.clone(),
            bundles: Arc::new(bundles.clone()),
            algorithms: meshid::ring_algorithms(),
            store: Arc::clone(&store),
        }));
        if store.wait_for_change(0, Duration::from_secs(10)) == 0 {
            return Err(Failure::refused(format!("{id}: no SVID could be issued")));
        }
        api = api.with_svid(store);
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
    for r in rotators {
        r.stop();
    }
    served.map_err(Failure::refused)
}

/// A CA directory's rotating SVID for `id`, and its bundle set.
fn local_svid(
    dir: &Path,
    id: &SpiffeId,
    ttl: Duration,
) -> Result<(Arc<SvidStore>, BundleSet, Rotator), Failure> {
    let ca = Arc::new(load_ca(dir)?);
    let root = ca.root().cloned().ok_or_else(|| {
        Failure::refused(format!(
            "{}: the root is unknown (no bundle.pem beside ca.pem)",
            dir.display()
        ))
    })?;
    let bundle = X509Bundle::from_authorities(ca.trust_domain().clone(), [root])
        .map_err(Failure::refused)?;
    let bundles: BundleSet = [bundle].into_iter().collect();
    let store = Arc::new(SvidStore::new());
    let rotator = Rotator::start(RotatorConfig {
        id: id.clone(),
        ttl,
        policy: RotationPolicy::default(),
        issuer: ca,
        bundles: Arc::new(bundles.clone()),
        algorithms: meshid::ring_algorithms(),
        store: Arc::clone(&store),
    });
    if store.wait_for_change(0, Duration::from_secs(10)) == 0 {
        return Err(Failure::refused(format!("{id}: no SVID could be issued")));
    }
    Ok((store, bundles, rotator))
}

fn run_sds(args: &SdsArgs) -> Result<(), Failure> {
    let runtime = runtime()?;
    let mut rotator = None;
    let mut bridged = None;
    let feed = match (&args.ca, &args.id, &args.workload_api) {
        (Some(dir), Some(id), None) => {
            let (store, bundles, r) = local_svid(dir, id, args.ttl)?;
            rotator = Some(r);
            println!("serving SDS for {id} on {}", args.socket.display());
            Feed::Store(store, bundles)
        }
        (None, _, Some(endpoint)) => {
            let endpoint = Endpoint::parse(endpoint).map_err(|e| Failure {
                code: 2,
                message: e.to_string(),
            })?;
            let source = runtime
                .block_on(X509Source::new(
                    endpoint.clone(),
                    X509SourceOptions::default(),
                ))
                .map_err(Failure::refused)?;
            println!("serving SDS from {endpoint} on {}", args.socket.display());
            let source = Arc::new(source);
            bridged = Some(Arc::clone(&source));
            Feed::Source(source)
        }
        _ => {
            return Err(Failure {
                code: 2,
                message: "give either --ca DIR --id ID, or --workload-api ENDPOINT".into(),
            })
        }
    };
    let sds = SdsServer::new(feed).spiffe_validator(args.spiffe_validator);
    // A bridged Workload API that stops for good (it answered InvalidArgument or
    // Unimplemented) ends the server with exit 1, so a supervisor restarts or alerts,
    // instead of serving nothing once the held SVID expires.
    let source_stopped = async {
        let Some(source) = &bridged else {
            return std::future::pending::<String>().await;
        };
        let mut updates = source.updated();
        loop {
            let status = source.status();
            if status.stopped {
                return status.last_error.unwrap_or_default();
            }
            if updates.changed().await.is_err() {
                return "the Workload API source ended".to_owned();
            }
        }
    };
    let lost = std::sync::Mutex::new(None);
    let served = runtime.block_on(sds.serve(&args.socket, async {
        tokio::select! {
            () = interrupted() => println!("stopping"),
            why = source_stopped => {
                eprintln!("meshid: the Workload API source stopped: {why}");
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

pub(crate) fn run_fetch(cmd: FetchCommand) -> Result<(), Failure> {
    let FetchCommand::X509(args) = cmd;
    let endpoint = match &args.socket {
        Some(s) => Endpoint::parse(s),
        None => Endpoint::from_env(),
    }
    .map_err(|e| Failure {
        code: 2,
        message: e.to_string(),
    })?;
    let timeout = args.timeout;
    let watch = args.watch;
    runtime()?.block_on(async {
        // One signal listener for the whole run, so no SIGINT is lost between updates.
        let interrupted = interrupted();
        tokio::pin!(interrupted);
        let first = async {
            let mut client = WorkloadApiClient::connect(&endpoint)
                .await
                .map_err(Failure::refused)?;
            client.watch_x509_contexts().await.map_err(Failure::refused)
        };
        let mut updates = if watch {
            tokio::select! {
                updates = first => updates?,
                () = &mut interrupted => return Ok(()),
            }
        } else {
            tokio::time::timeout(timeout, first).await.map_err(|_| {
                Failure::refused(format!("no answer from {endpoint} within {timeout:?}"))
            })??
        };
        loop {
            let next = if watch {
                tokio::select! {
                    next = updates.next() => next,
                    () = &mut interrupted => return Ok(()),
                }
            } else {
                tokio::time::timeout(timeout, updates.next())
                    .await
                    .map_err(|_| {
                        Failure::refused(format!("no answer from {endpoint} within {timeout:?}"))
                    })?
            };
            let context = next
                .ok_or_else(|| Failure::refused("the Workload API stream ended"))?
                .map_err(Failure::refused)?;
            if !show(&context)? {
                return Ok(());
            }
            if let Some(dir) = &args.out_dir {
                write(dir, &context)?;
            }
            if !watch {
                return Ok(());
            }
        }
    })
}

/// One block per update: each SVID's ID, chain length and expiry, then the bundles.
/// `Ok(false)` when stdout is gone (a closed pipe): stop quietly.
fn show(context: &X509Context) -> Result<bool, Failure> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut out = String::new();
    for svid in context.svids() {
        let not_after = CertificateInfo::from_der(svid.leaf())
            .map(|i| i.not_after_rfc3339().to_owned())
            .unwrap_or_default();
        let _ = write!(
            out,
            "svid {}\n  chain_length {}\n  not_after {not_after}\n",
            svid.id(),
            svid.chain().len()
        );
    }
    let tds: Vec<String> = context
        .bundles()
        .iter()
        .map(|b| b.trust_domain().to_string())
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

fn write(dir: &Path, context: &X509Context) -> Result<(), Failure> {
    let svid = context.default_svid();
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
