//! `--metrics ADDR` on the `serve` commands: `/metrics` (OpenMetrics), `/healthz` and
//! `/readyz` on a small HTTP/1.1 server of its own (nothing on the workload socket).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use meshid::metrics::{CaMetrics, ServeMetrics, SvidMetrics};
use meshid::serve::{ServeEvent, ServeObserver};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::files::Failure;

/// Connections the metrics server serves at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// How long one connection may take, its one request and answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the process is not ready now (empty: ready).
type Check = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// What decides readiness: the checks added as the server starts, and whether its
/// server is listening on its socket (told by the server itself).
#[derive(Clone)]
pub(crate) struct Readiness {
    checks: Arc<Mutex<Vec<Check>>>,
    socket: PathBuf,
    bound: Arc<AtomicBool>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    fn new(socket: &Path) -> Self {
        Self {
            checks: Arc::default(),
            socket: socket.to_path_buf(),
            bound: Arc::default(),
        }
    }

    /// Adds a check: what it returns are reasons not to be ready.
    pub(crate) fn check(&self, check: impl Fn() -> Vec<String> + Send + Sync + 'static) {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(check));
    }

    /// Why not ready (empty: ready).
    fn reasons(&self) -> Vec<String> {
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reasons: Vec<String> = if checks.is_empty() {
            vec!["starting: no X509-SVID yet".into()]
        } else {
            checks.iter().flat_map(|check| check()).collect()
        };
        if !self.bound.load(Ordering::Acquire) {
            reasons.push(format!("socket {} not bound", self.socket.display()));
        }
        reasons
    }
}

/// The servers' observer in the CLI: the metrics, and whether the server listens.
struct CliObserver {
    metrics: ServeMetrics,
    bound: Arc<AtomicBool>,
}

impl ServeObserver for CliObserver {
    fn observe(&self, event: ServeEvent) {
        match event {
            ServeEvent::Listening { .. } => self.bound.store(true, Ordering::Release),
            ServeEvent::Stopped { .. } => self.bound.store(false, Ordering::Release),
            _ => {}
        }
        self.metrics.observe(event);
    }
}

/// `meshid_ready`: 1 while `/readyz` answers 200.
#[derive(Debug)]
struct ReadyGauge(Readiness);

impl Collector for ReadyGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let ready = i64::from(self.0.reasons().is_empty());
        let metric = encoder.encode_descriptor(
            "meshid_ready",
            "1 while the server holds a valid X509-SVID and its socket is bound (as /readyz).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(ready).encode(metric)
    }
}

/// The metrics of a `serve` command with `--metrics` (a CLI server does no TLS of its
/// own: no handshake metrics), and what decides its readiness.
pub(crate) struct Observed {
    pub(crate) metrics: CliMetrics,
    pub(crate) ready: Readiness,
}

/// The metric families a `serve` command registers.
pub(crate) struct CliMetrics {
    pub(crate) svid: SvidMetrics,
    pub(crate) ca: CaMetrics,
    pub(crate) serve: ServeMetrics,
}

impl Observed {
    /// The observer to give the server: its metrics, and its readiness's socket.
    pub(crate) fn observer(&self) -> Arc<dyn ServeObserver> {
        Arc::new(CliObserver {
            metrics: self.metrics.serve.clone(),
            bound: Arc::clone(&self.ready.bound),
        })
    }

    /// The server is listening (for servers that do not report it as an event).
    pub(crate) fn listening(&self) {
        self.ready.bound.store(true, Ordering::Release);
    }

    /// Observes SVIDs kept by `locals` from `ca`: their renewals, the CA's issuance, the
    /// root's expiry; ready while each holds a valid SVID.
    pub(crate) fn local(&self, ca: &Arc<meshid::Authority>, locals: &[&meshid::LocalSvid]) {
        self.metrics.ca.watch(ca);
        let mut stores = Vec::new();
        for local in locals {
            self.metrics.svid.watch_rotator(&local.rotator);
            self.metrics.svid.watch_bundle_set(local.bundles.clone());
            stores.push((local.rotator.id().clone(), Arc::clone(&local.store)));
        }
        self.ready.check(stores_hold_svids(stores));
    }

    /// Observes the SVID and bundles of a Workload API `source`; ready while it holds a
    /// valid SVID.
    pub(crate) fn source(&self, source: &Arc<meshid::workload::X509Source>) {
        self.metrics.svid.watch_x509_source(source);
        self.ready.check(source_holds_svid(Arc::clone(source)));
    }
}

/// Binds `addr` (so a bad address fails before anything is issued) and starts serving
/// on a thread of its own; `None` without `--metrics`.
pub(crate) fn start(addr: Option<SocketAddr>, socket: &Path) -> Result<Option<Observed>, Failure> {
    Ok(start_with(addr, socket, |_| ())?.map(|(observed, ())| observed))
}

/// [`start`], with more metric families registered by `extra` (the proxy's).
pub(crate) fn start_with<T>(
    addr: Option<SocketAddr>,
    socket: &Path,
    extra: impl FnOnce(&mut Registry) -> T,
) -> Result<Option<(Observed, T)>, Failure> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let mut registry = Registry::default();
    let extra = extra(&mut registry);
    let metrics = CliMetrics {
        svid: SvidMetrics::register(&mut registry),
        ca: CaMetrics::register(&mut registry),
        serve: ServeMetrics::register(&mut registry),
    };
    let ready = Readiness::new(socket);
    registry.register_collector(Box::new(ReadyGauge(ready.clone())));
    let listener = std::net::TcpListener::bind(addr).map_err(|e| Failure {
        code: 2,
        message: format!("--metrics {addr}: {e}"),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::io(Path::new("--metrics"), e))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let state = Arc::new((registry, ready.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::io(Path::new("tokio runtime"), e))?;
    std::thread::Builder::new()
        .name("meshid-metrics".into())
        .spawn(move || runtime.block_on(serve(listener, state)))
        .map_err(|e| Failure::io(Path::new("metrics thread"), e))?;
    println!("metrics on http://{bound}/metrics");
    tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    Ok(Some((Observed { metrics, ready }, extra)))
}

async fn serve(listener: std::net::TcpListener, state: Arc<(Registry, Readiness)>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        tracing::error!("the metrics listener cannot be used; no metrics served");
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics server: accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&req, &state.0, &state.1)) }
            });
            // One request per connection (a scrape or a probe is one small request): a
            // connection never outlives its request, so the timeout below never cuts a
            // kept-alive connection in the middle of a later scrape.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
            drop(permit);
        });
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// The answer to one request.
fn answer<B>(req: &Request<B>, registry: &Registry, ready: &Readiness) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding the metrics failed\n".into(),
                );
            }
            // OpenMetrics for whoever asks for it (Prometheus does); the classic text
            // format (0.0.4) otherwise, for older scrapers, promtool and curl.
            let openmetrics = req
                .headers()
                .get_all(hyper::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            if openmetrics {
                respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            } else {
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    classic_text(&text),
                )
            }
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let reasons = ready.reasons();
            let status = if reasons.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::json!({ "ready": reasons.is_empty(), "reasons": reasons });
            respond(status, "application/json", format!("{body}\n"))
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

/// OpenMetrics text as the classic Prometheus text format (0.0.4): a counter family is
/// named with its `_total` suffix there, and the `# UNIT` and `# EOF` lines do not exist.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(described.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// A readiness check over SVID stores: one reason per store holding no valid SVID.
fn stores_hold_svids(
    stores: Vec<(meshid::SpiffeId, Arc<meshid::SvidStore>)>,
) -> impl Fn() -> Vec<String> + Send + Sync + 'static {
    move || {
        stores
            .iter()
            .filter(|(_, store)| meshid::SvidSource::x509_svid(store.as_ref()).is_none())
            .map(|(id, _)| format!("no valid X509-SVID for {id}"))
            .collect()
    }
}

/// A readiness check over an agent: one reason per entry holding no valid SVID, and one
/// if it has no entry.
pub(crate) fn agent_holds_svids(
    agent: meshid::agent::Agent,
) -> impl Fn() -> Vec<String> + Send + Sync + 'static {
    move || {
        let status = agent.status();
        if status.is_empty() {
            return vec!["no registration entry".into()];
        }
        let now = std::time::SystemTime::now();
        status
            .iter()
            .filter(|(_, s)| s.not_after.is_none_or(|t| now >= t))
            .map(|(entry, _)| format!("no valid X509-SVID for {}", entry.spiffe_id()))
            .collect()
    }
}

/// A readiness check over a Workload API source.
fn source_holds_svid(
    source: Arc<meshid::workload::X509Source>,
) -> impl Fn() -> Vec<String> + Send + Sync + 'static {
    move || {
        if meshid::SvidSource::x509_svid(source.as_ref()).is_some() {
            Vec::new()
        } else {
            vec!["no valid X509-SVID from the Workload API".into()]
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_classic_format_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let om = "# HELP a_seconds A.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds 1.0\n\
                  # HELP b B b.\n# TYPE b counter\nb_total{x=\"y\"} 2\n# EOF\n";
        assert_eq!(
            super::classic_text(om),
            "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.0\n\
             # HELP b_total B b.\n# TYPE b_total counter\nb_total{x=\"y\"} 2\n"
        );
    }
}
