//! `meshid serve agent`, and `--entries` on `serve workload-api` and `serve sds`: a node
//! agent that attests its callers and hands each only the identities registered for it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;
use meshid::agent::{Agent, AgentError, Registry, UnixAttestor};
use meshid::sds::SdsServer;
use meshid::serve::ServeLimits;
use meshid::workload::WorkloadApiServer;
use meshid::Authority;

use meshid::time::parse_duration;

use crate::files::Failure;

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The Unix socket to serve the Workload API and SDS on (created mode 0666: any local
    /// process may connect, attestation decides what it gets; removed on exit).
    #[arg(long)]
    socket: PathBuf,
    /// The registration entries (TOML); re-read on SIGHUP and when it changes on disk.
    #[arg(long)]
    entries: PathBuf,
    /// The CA's directory (ca.pem, ca.key, and bundle.pem for an intermediate).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    #[command(flatten)]
    options: AgentOptions,
    /// Serve SDS validation contexts as Envoy's SPIFFE certificate validator.
    #[arg(long)]
    spiffe_validator: bool,
}

/// What every command serving registration entries takes.
#[derive(Debug, Args)]
pub(crate) struct AgentOptions {
    /// With entries: the lifetime of the SVIDs of entries that name no ttl; renewed at
    /// about half of it.
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub(crate) entry_ttl: Duration,
    /// Admit only callers running as this uid (repeat for several); others are refused
    /// before they are attested.
    #[arg(long = "allow-uid", value_name = "UID")]
    pub(crate) allow_uids: Vec<u32>,
    /// The most connections the server holds at once (each costs a file descriptor: raise
    /// `ulimit -n` past 1,024 for more than about 1,000); one accepted beyond it is closed.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_conns: u32,
    /// With entries: the most connections the callers of one uid may hold at once (the
    /// socket is open to every local user; the server holds --max-conns in all).
    #[arg(long, default_value_t = 64)]
    pub(crate) max_conns_per_uid: usize,
    /// With entries: hash callers' executables (up to this many MiB) for `unix:sha256`
    /// selectors; on (256 MiB) when the entries at start use one.
    #[arg(long)]
    pub(crate) hash_executables: Option<u64>,
    /// Serve Prometheus metrics (`/metrics`, OpenMetrics), liveness (`/healthz`) and
    /// readiness (`/readyz`: 200 only while every SVID served is valid and the socket is
    /// bound, else 503 with the reasons as JSON) over HTTP on ADDR, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

impl AgentOptions {
    /// The connection limits of a server whose socket only its owner may open: the
    /// `--max-conns` cap, no cap per uid.
    pub(crate) fn owner_limits(&self) -> ServeLimits {
        ServeLimits::default().max_connections(self.max_conns as usize)
    }

    /// The connection limits of a server whose socket every local user may open.
    pub(crate) fn limits(&self) -> ServeLimits {
        self.owner_limits()
            .max_connections_per_uid(self.max_conns_per_uid)
    }
}

/// A running agent and what reloads its entries.
pub(crate) struct Running {
    pub(crate) agent: Agent,
    /// The authority issuing, with the CA directory's JWT keys (if any).
    pub(crate) ca: Arc<Authority>,
    entries: PathBuf,
    /// Whether callers' executables are looked up (`unix:path`) and hashed (`unix:sha256`).
    paths: bool,
    hashes: bool,
}

/// Whether an entry of `registry` has a `unix` selector starting with `key`.
fn uses(registry: &Registry, key: &str) -> bool {
    registry
        .entries()
        .iter()
        .flat_map(|e| e.selectors().iter())
        .any(|s| s.kind() == "unix" && s.value().starts_with(key))
}

/// Loads the CA and the entries and starts issuing them.
pub(crate) fn start(
    ca_dir: &Path,
    entries: &Path,
    options: &AgentOptions,
) -> Result<Running, Failure> {
    let ca = Arc::new(crate::jwt::load_ca_with_jwt(ca_dir)?);
    let registry = load(entries, &ca)?;
    let uses_sha256 = uses(&registry, "sha256:");
    // Reading other users' /proc/PID/exe needs root (or CAP_SYS_PTRACE): the path is
    // looked up only when an entry asks for it, so an unprivileged agent serving uid
    // entries attests every caller.
    let needs_path = uses_sha256 || uses(&registry, "path:") || options.hash_executables.is_some();
    let mut attestor = UnixAttestor::new().discover_path(needs_path);
    let hashes = match options.hash_executables {
        Some(mib) => {
            attestor = attestor.hash_executables(mib.saturating_mul(1 << 20));
            true
        }
        None if uses_sha256 => {
            attestor = attestor.hash_executables(256 << 20);
            true
        }
        None => false,
    };
    let count = registry.len();
    let agent = Agent::start_with_ttl(
        Arc::clone(&ca),
        &registry,
        Arc::new(attestor),
        meshid::ring_algorithms(),
        options.entry_ttl,
    )
    .map_err(|e| match e {
        AgentError::UnknownRoot => Failure::refused(format!(
            "{}: the root is unknown (no bundle.pem beside ca.pem)",
            ca_dir.display()
        )),
        e => Failure::refused(e),
    })?;
    println!("issued {count} entries from {}", entries.display());
    Ok(Running {
        agent,
        ca,
        entries: entries.to_path_buf(),
        paths: needs_path,
        hashes,
    })
}

fn load(path: &Path, ca: &Authority) -> Result<Registry, Failure> {
    Registry::load(path, ca.trust_domain())
        .map_err(|e| Failure::refused(format!("{}: {e}", path.display())))
}

/// What identifies a version of the entries file on disk.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

impl Running {
    /// Re-reads the entries on SIGHUP and whenever the file changes on disk (checked every
    /// second), until dropped; a bad file is refused and logged, the entries in force stay.
    pub(crate) async fn follow_entries(&self) {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = fingerprint(&self.entries);
        loop {
            let why = tokio::select! {
                () = async {
                    match hup.as_mut() {
                        Some(hup) => { hup.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => "SIGHUP",
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    let now = fingerprint(&self.entries);
                    if now == seen {
                        continue;
                    }
                    "changed on disk"
                }
            };
            seen = fingerprint(&self.entries);
            // Reloading starts rotators and joins removed ones: not on a runtime worker.
            tokio::task::block_in_place(|| self.reload(why));
        }
    }

    fn reload(&self, why: &str) {
        let path = self.entries.display();
        let registry = match Registry::load(&self.entries, self.agent.trust_domain()) {
            Ok(registry) => registry,
            Err(e) => {
                tracing::error!(entries = %path, reason = %e, trigger = why, "registration entries refused; the entries in force stay");
                println!("entries refused ({why}): {path}: {e}");
                return;
            }
        };
        for (key, looked_up) in [("path:", self.paths), ("sha256:", self.hashes)] {
            if !looked_up && uses(&registry, key) {
                tracing::warn!(
                    entries = %path,
                    selector = %format_args!("unix:{key}"),
                    "entries with this selector match no caller: this agent started without \
                     them (restart it, or give --hash-executables)"
                );
            }
        }
        match self.agent.reload(&registry) {
            Ok(r) => println!(
                "entries reloaded ({why}): {} added, {} removed, {} kept",
                r.added, r.removed, r.kept
            ),
            Err(e) => {
                tracing::error!(entries = %path, reason = %e, trigger = why, "registration entries refused; the entries in force stay");
                println!("entries refused ({why}): {path}: {e}");
            }
        }
    }
}

impl Running {
    /// With `--metrics`: the agent's SVIDs, its CA and `server` observed, readiness
    /// decided by the entries' SVIDs.
    pub(crate) fn observe<S>(
        &self,
        observed: Option<&crate::observe::Observed>,
        server: S,
        with_observer: fn(S, Arc<dyn meshid::serve::ServeObserver>) -> S,
    ) -> S {
        let Some(observed) = observed else {
            return server;
        };
        observed.metrics.svid.watch_agent(&self.agent);
        observed.metrics.ca.watch(&self.ca);
        observed
            .ready
            .check(crate::observe::agent_holds_svids(self.agent.clone()));
        with_observer(server, observed.observer())
    }

    /// Runs `serve` (a server serving until the future it is given completes) until
    /// SIGINT or SIGTERM, following the entries file meanwhile; then stops the rotators.
    // The lifetime ties the shutdown future to `self` for the closure's result.
    #[allow(clippy::needless_lifetimes)]
    pub(crate) fn serve<'a, F>(
        &'a self,
        serve: impl FnOnce(Pin<Box<dyn Future<Output = ()> + Send + 'a>>) -> F,
    ) -> Result<(), Failure>
    where
        F: Future<Output = Result<(), meshid::serve::ServeError>>,
    {
        let runtime = crate::workload::runtime()?;
        let result = runtime.block_on(serve(Box::pin(async {
            tokio::select! {
                () = crate::workload::interrupted() => println!("stopping"),
                () = self.follow_entries() => {}
            }
        })));
        self.agent.stop();
        result.map_err(Failure::refused)
    }
}

/// `meshid serve agent`.
pub(crate) fn run(args: &AgentArgs) -> Result<(), Failure> {
    let observed = crate::observe::start(args.options.metrics, &args.socket)?;
    let running = start(&args.ca, &args.entries, &args.options)?;
    let agent = Arc::new(running.agent.clone());
    let sds = SdsServer::new(agent.clone(), agent.clone())
        .spiffe_validator(args.spiffe_validator)
        .trust_domain(running.agent.trust_domain().clone());
    let server = crate::workload::with_jwt(
        WorkloadApiServer::from_sources(agent.clone(), agent),
        &running.ca,
        &args.ca,
    )
    .with_sds(sds)
    .socket_mode(0o666)
    .limits(args.options.limits());
    let server = running.observe(observed.as_ref(), server, WorkloadApiServer::observer);
    let server = match args.options.allow_uids.as_slice() {
        [] => server,
        uids => server.allow_uids(uids.iter().copied()),
    };
    println!(
        "serving the Workload API and SDS for {} entries on {}",
        running.agent.entries().len(),
        args.socket.display()
    );
    running.serve(|until| server.serve(&args.socket, until))
}
