//! Accepting connections: within the server's connection cap (and a small cap of its own
//! for callers that admission will refuse, so they cannot crowd out the workloads it
//! serves), pausing after an accept error (such as running out of file descriptors)
//! instead of spinning on it.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tokio_stream::Stream;

use super::conn::{self, Conn};

/// How many connections callers outside `allow_uids` may hold at once: enough for them
/// to hear `PermissionDenied`, too few to use up the server's cap.
const STRANGER_SLOTS: usize = 4;
/// How long accepting pauses after an accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A bound listener.
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Decides which accepted sockets become connections.
pub(crate) struct Admission {
    pub(crate) name: &'static str,
    pub(crate) slots: Arc<Semaphore>,
    /// The uids admission lets in, and the slots everyone else shares.
    pub(crate) allowed: Option<(Arc<BTreeSet<u32>>, Arc<Semaphore>)>,
    pub(crate) timeouts: conn::Timeouts,
    pub(crate) forced: watch::Receiver<bool>,
    refused: AtomicU64,
}

impl Admission {
    pub(crate) fn new(
        name: &'static str,
        max_connections: usize,
        allowed_uids: Option<Arc<BTreeSet<u32>>>,
        timeouts: conn::Timeouts,
        forced: watch::Receiver<bool>,
    ) -> Self {
        Self {
            name,
            slots: Arc::new(Semaphore::new(max_connections)),
            allowed: allowed_uids.map(|uids| (uids, Arc::new(Semaphore::new(STRANGER_SLOTS)))),
            timeouts,
            forced,
            refused: AtomicU64::new(0),
        }
    }

    /// The connection for `stream`, or `None` (the socket is dropped: closed at once)
    /// when its cap is full.
    fn admit(&self, stream: conn::Stream) -> Option<Conn> {
        let slots = match &self.allowed {
            Some((uids, strangers))
                if !stream
                    .peer_cred()
                    .is_some_and(|cred| uids.contains(&cred.uid())) =>
            {
                strangers
            }
            _ => &self.slots,
        };
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Some(Conn::new(
                stream,
                self.forced.clone(),
                self.timeouts,
                permit,
            ));
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // Counted always, logged at warn the first time and every 1,000th (a flood must
        // not flood the logs).
        if refused == 1 || refused % 1000 == 0 {
            tracing::warn!(
                refused,
                "{} server at its connection cap: closed a new connection",
                self.name
            );
        } else {
            tracing::debug!(
                refused,
                "{} server at its connection cap: closed a new connection",
                self.name
            );
        }
        None
    }
}

/// The stream of admitted connections.
pub(crate) struct Incoming {
    listener: Listener,
    admission: Admission,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub(crate) fn new(listener: Listener, admission: Admission) -> Self {
        Self {
            listener,
            admission,
            pause: None,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            let accepted = match &this.listener {
                Listener::Unix(l) => ready!(l.poll_accept(cx)).map(|(s, _)| conn::Stream::Unix(s)),
                Listener::Tcp(l) => ready!(l.poll_accept(cx)).map(|(s, _)| conn::Stream::Tcp(s)),
            };
            match accepted {
                Ok(stream) => {
                    if let Some(conn) = this.admission.admit(stream) {
                        return Poll::Ready(Some(Ok(conn)));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{}: accepting a connection failed; pausing", this.admission.name);
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                }
            }
        }
    }
}
