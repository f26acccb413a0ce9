//! A hostile (or buggy) Workload API agent for tests: on each `FetchX509SVID` call it sends
//! what the test scripts, byte for byte if need be — crafted messages, gRPC statuses with
//! any text, a message cut short and then silence (while HTTP/2 PINGs are still answered).
//! And SVIDs that break one rule each, built with rcgen: expired, not yet valid, signed
//! by a CA outside the bundle, under an expired (or soon expiring) intermediate.
//!
//! Included with `#[path = "common/hostile.rs"] mod hostile;` (it needs `certs` beside it:
//! `#[path = "common/certs.rs"] mod certs;`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use meshid::workload::proto::{X509SvidMessage, X509SvidResponse};
use prost::Message as _;
use rustls_pki_types::CertificateDer;
use tonic::codegen::http;
use tonic::codegen::Bytes;

use crate::certs::{self, Ca, Curve};

/// One thing the agent does on a stream.
#[derive(Clone)]
pub enum Step {
    /// Send this message.
    Message(X509SvidResponse),
    /// Send these bytes as they are (a gRPC prefix announcing more than follows, say).
    Raw(Vec<u8>),
    /// End the stream with this status (code, message; the message may hold anything).
    Status(tonic::Code, String),
    /// Wait this long before the next step.
    Sleep(Duration),
}

/// What the agent does on call number `n` (0 for the first). After the last step the
/// stream is held open and silent.
pub type Script = Arc<dyn Fn(usize) -> Vec<Step> + Send + Sync>;

/// A running hostile agent; counts the calls it got.
pub struct Hostile {
    pub path: PathBuf,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Serves `script` on a Unix socket at `path` (on the current tokio runtime).
    pub fn start(path: &Path, script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static) -> Self {
        let _ = std::fs::remove_file(path);
        let calls = Arc::new(AtomicUsize::new(0));
        let service = Agent {
            script: Arc::new(script),
            calls: Arc::clone(&calls),
        };
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(service, incoming)
                .await;
        });
        Self {
            path: path.to_path_buf(),
            calls,
            task,
        }
    }

    /// `unix:///path`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// How many `FetchX509SVID` calls arrived so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone)]
struct Agent {
    script: Script,
    calls: Arc<AtomicUsize>,
}

impl tower::Service<http::Request<tonic::body::Body>> for Agent {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let steps = (self.script)(n);
        Box::pin(async move {
            let body = Scripted {
                steps: steps.into_iter().collect(),
                sleeping: None,
            };
            Ok(http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(tonic::body::Body::new(body))
                .unwrap())
        })
    }
}

/// A response body that plays the steps, then stays open for ever.
struct Scripted {
    steps: std::collections::VecDeque<Step>,
    sleeping: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn framed(message: &X509SvidResponse) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl http_body::Body for Scripted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        loop {
            if let Some(sleep) = &mut self.sleeping {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleeping = None;
            }
            let Some(step) = self.steps.pop_front() else {
                return Poll::Pending;
            };
            match step {
                Step::Message(m) => {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(framed(&m))))))
                }
                Step::Raw(bytes) => {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(bytes)))))
                }
                Step::Status(code, message) => {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", (code as i32).to_string().parse().unwrap());
                    trailers.insert("grpc-message", percent_encoded(&message).parse().unwrap());
                    return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
                }
                Step::Sleep(d) => self.sleeping = Some(Box::pin(tokio::time::sleep(d))),
            }
        }
    }
}

use std::future::Future as _;

/// A trust domain's root (rcgen), its bundle bytes, and SVIDs under it breaking one rule
/// each.
pub struct Pki {
    pub root: Ca,
}

/// An SVID as the wire carries it: chain (leaf first) and PKCS#8 key.
pub struct Wire {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Vec<u8>,
}

/// `t` to the second (what a certificate holds).
pub fn at(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

impl Pki {
    pub fn new() -> Self {
        Self {
            root: Ca::root("example.org"),
        }
    }

    /// The bundle: the root, DER.
    pub fn bundle(&self) -> Vec<u8> {
        self.root.root_der().to_vec()
    }

    fn leaf_under(ca: &Ca, id: &str, tweak: impl FnOnce(&mut rcgen::CertificateParams)) -> Wire {
        let mut p = certs::leaf_params(id);
        p.not_before = at(SystemTime::now() - Duration::from_secs(3600)).into();
        p.not_after = at(SystemTime::now() + Duration::from_secs(3600)).into();
        tweak(&mut p);
        let key = certs::key(Curve::P256);
        let leaf = ca.sign(&p, &key);
        let mut chain = vec![leaf];
        chain.extend(ca.presented());
        Wire {
            chain,
            key: key.serialize_der(),
        }
    }

    /// A good SVID for `id`, valid an hour either side of now.
    pub fn good(&self, id: &str) -> Wire {
        Self::leaf_under(&self.root, id, |_| {})
    }

    /// A good SVID whose leaf expires at `until`.
    pub fn good_until(&self, id: &str, until: SystemTime) -> Wire {
        Self::leaf_under(&self.root, id, |p| p.not_after = at(until).into())
    }

    /// Expired a minute ago.
    pub fn expired(&self, id: &str) -> Wire {
        Self::leaf_under(&self.root, id, |p| {
            p.not_after = at(SystemTime::now() - Duration::from_secs(60)).into();
        })
    }

    /// Valid only from an hour from now.
    pub fn not_yet_valid(&self, id: &str) -> Wire {
        Self::leaf_under(&self.root, id, |p| {
            p.not_before = at(SystemTime::now() + Duration::from_secs(3600)).into();
            p.not_after = at(SystemTime::now() + Duration::from_secs(7200)).into();
        })
    }

    /// Signed by another CA of the same trust domain, not in the bundle.
    #[allow(clippy::unused_self)]
    pub fn foreign(&self, id: &str) -> Wire {
        Self::leaf_under(&Ca::root("example.org"), id, |_| {})
    }

    /// A good leaf under an intermediate that expires at `until`.
    pub fn under_intermediate_until(&self, id: &str, until: SystemTime) -> Wire {
        let mut p = certs::ca_params("spiffe://example.org");
        p.not_before = at(SystemTime::now() - Duration::from_secs(3600)).into();
        p.not_after = at(until).into();
        let int = self.root.intermediate(p);
        Self::leaf_under(&int, id, |_| {})
    }

    /// The message carrying `svids` (the first is the default), each with the bundle.
    pub fn message(&self, svids: &[(&str, &Wire)]) -> X509SvidResponse {
        X509SvidResponse {
            svids: svids
                .iter()
                .map(|(id, w)| X509SvidMessage {
                    spiffe_id: (*id).to_owned(),
                    x509_svid: w.chain.iter().flat_map(|c| c.iter().copied()).collect(),
                    x509_svid_key: w.key.clone(),
                    bundle: self.bundle(),
                    hint: String::new(),
                })
                .collect(),
            ..Default::default()
        }
    }
}
