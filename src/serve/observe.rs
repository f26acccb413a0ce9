//! What a server reports as it serves: one small trait ([`ServeObserver`]) and the events
//! it receives. `meshid::metrics` implements it (feature `metrics`); a server without an
//! observer pays nothing but a branch.
//!
//! Every label an event carries comes from a closed set (a server, a stream kind, a
//! refusal reason), never from what a caller sent, so whatever counts them stays bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::watch::Changes;

/// Receives a server's events. Called on the serving path: keep it cheap and never block.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use meshid::serve::{ServeEvent, ServeObserver};
///
/// #[derive(Default)]
/// struct Pushes(AtomicU64);
///
/// impl ServeObserver for Pushes {
///     fn observe(&self, event: ServeEvent) {
///         if let ServeEvent::Pushed { .. } = event {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait ServeObserver: Send + Sync {
    /// One event.
    fn observe(&self, event: ServeEvent);
}

/// One thing a server did.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ServeEvent {
    /// The server is listening (its socket bound, with its final mode).
    #[non_exhaustive]
    Listening {
        /// Which server: `workload_api`, `sds` or `workload_api_and_sds`.
        server: &'static str,
    },
    /// The server stopped listening (its socket removed, if it still was its own).
    #[non_exhaustive]
    Stopped {
        /// As in `Listening`.
        server: &'static str,
    },
    /// A connection was admitted.
    #[non_exhaustive]
    ConnectionOpened {
        /// Which server: `workload_api`, `sds` or `workload_api_and_sds` (one socket).
        server: &'static str,
    },
    /// An admitted connection closed.
    #[non_exhaustive]
    ConnectionClosed {
        /// As in `ConnectionOpened`.
        server: &'static str,
    },
    /// A connection or a call was refused.
    #[non_exhaustive]
    Refused {
        /// The server (for a call: the API of the stream refused, `workload_api` or
        /// `sds`).
        server: &'static str,
        /// Why.
        reason: Refusal,
    },
    /// A stream began.
    StreamOpened(StreamKind),
    /// A stream ended.
    StreamClosed(StreamKind),
    /// A message was handed to the transport.
    #[non_exhaustive]
    Pushed {
        /// On which kind of stream.
        stream: StreamKind,
        /// For a push caused by a change (a rotation, a new bundle): the time from that
        /// change to the push. `None` for a stream's first message or an answer to a
        /// request.
        since_change: Option<Duration>,
    },
    /// Envoy answered a pushed SDS response.
    #[non_exhaustive]
    SdsAnswer {
        /// `true`: an ACK; `false`: a NACK (Envoy rejected what it was sent).
        accepted: bool,
    },
}

/// Why a server refused a connection or a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The caller's uid is not among the allowed ones (`PermissionDenied`).
    UidNotAllowed,
    /// The server's connection cap, or the caller's uid's, was full (closed at once).
    ConnectionCap,
    /// The caller is entitled to no identity (unattested, no entry, or none issued), or
    /// to none of those it asked for (an SDS secret name, a JWT-SVID's SPIFFE ID).
    NoIdentity,
    /// The request broke the protocol (the Workload API's security header missing, an
    /// SDS request over the bounds on names).
    BadRequest,
}

impl Refusal {
    /// A short lower-case name: a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UidNotAllowed => "uid_not_allowed",
            Self::ConnectionCap => "too_many_connections",
            Self::NoIdentity => "no_identity",
            Self::BadRequest => "bad_request",
        }
    }
}

/// The kinds of stream the servers push on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamKind {
    /// Workload API `FetchX509SVID`.
    X509Svid,
    /// Workload API `FetchX509Bundles`.
    X509Bundles,
    /// Workload API `FetchJWTBundles`.
    JwtBundles,
    /// SDS `StreamSecrets` (state of the world).
    Sds,
    /// SDS `DeltaSecrets` (incremental).
    SdsDelta,
}

impl StreamKind {
    /// A short lower-case name: a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X509Svid => "x509_svid",
            Self::X509Bundles => "x509_bundles",
            Self::JwtBundles => "jwt_bundles",
            Self::Sds => "sds",
            Self::SdsDelta => "sds_delta",
        }
    }

    /// The API the stream belongs to: `workload_api` or `sds`.
    pub fn api(self) -> &'static str {
        match self {
            Self::X509Svid | Self::X509Bundles | Self::JwtBundles => "workload_api",
            Self::Sds | Self::SdsDelta => "sds",
        }
    }
}

/// A server's observer, if it has one, and the label of the server it reports for.
#[derive(Clone, Default)]
pub(crate) struct Observer {
    server: &'static str,
    inner: Option<Arc<dyn ServeObserver>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("server", &self.server)
            .field("set", &self.inner.is_some())
            .finish()
    }
}

impl Observer {
    pub(crate) fn new(server: &'static str, inner: Option<Arc<dyn ServeObserver>>) -> Self {
        Self { server, inner }
    }

    fn emit(&self, event: ServeEvent) {
        if let Some(inner) = &self.inner {
            inner.observe(event);
        }
    }

    /// The server listens until the returned guard drops.
    pub(crate) fn listening(&self) -> ListeningSeen {
        self.emit(ServeEvent::Listening {
            server: self.server,
        });
        ListeningSeen(self.clone())
    }

    /// A connection of this server, reported closed when the returned guard drops.
    pub(crate) fn connection(&self) -> Option<ConnectionSeen> {
        self.inner.as_ref()?;
        self.emit(ServeEvent::ConnectionOpened {
            server: self.server,
        });
        Some(ConnectionSeen(self.clone()))
    }

    /// A refused connection.
    pub(crate) fn refused(&self, reason: Refusal) {
        self.emit(ServeEvent::Refused {
            server: self.server,
            reason,
        });
    }

    /// A refused call of `api` (`workload_api` or `sds`).
    pub(crate) fn refused_call(&self, api: &'static str, reason: Refusal) {
        self.emit(ServeEvent::Refused {
            server: api,
            reason,
        });
    }

    /// A stream of `kind`, reported closed when the returned guard drops.
    pub(crate) fn stream(&self, kind: StreamKind) -> StreamSeen {
        self.emit(ServeEvent::StreamOpened(kind));
        StreamSeen(self.clone(), kind)
    }

    /// A push on a `stream`; `changed_at`: when the change that caused it happened (see
    /// [`changed_at`]), `None` for a first message or an answer to a request.
    pub(crate) fn pushed(&self, stream: StreamKind, changed_at: Option<Instant>) {
        if self.inner.is_none() {
            return;
        }
        let since_change = changed_at.map(|at| Instant::now().saturating_duration_since(at));
        self.emit(ServeEvent::Pushed {
            stream,
            since_change,
        });
    }

    /// Envoy's answer to a pushed SDS response.
    pub(crate) fn sds_answer(&self, accepted: bool) {
        self.emit(ServeEvent::SdsAnswer { accepted });
    }
}

/// When the latest of `woke` (the changes a stream was woken by) moved: read as soon as
/// the stream wakes, so a change arriving while it builds and sends its message does not
/// shorten the delay measured.
pub(crate) fn changed_at(woke: &[&Changes]) -> Option<Instant> {
    woke.iter().filter_map(|c| c.last_change()).max()
}

/// See [`Observer::listening`].
pub(crate) struct ListeningSeen(Observer);

impl Drop for ListeningSeen {
    fn drop(&mut self) {
        self.0.emit(ServeEvent::Stopped {
            server: self.0.server,
        });
    }
}

/// See [`Observer::connection`].
pub(crate) struct ConnectionSeen(Observer);

impl Drop for ConnectionSeen {
    fn drop(&mut self) {
        self.0.emit(ServeEvent::ConnectionClosed {
            server: self.0.server,
        });
    }
}

/// See [`Observer::stream`].
pub(crate) struct StreamSeen(Observer, StreamKind);

impl StreamSeen {
    pub(crate) fn observer(&self) -> &Observer {
        &self.0
    }
}

impl Drop for StreamSeen {
    fn drop(&mut self) {
        self.0.emit(ServeEvent::StreamClosed(self.1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<ServeEvent>>);

    impl ServeObserver for Log {
        fn observe(&self, event: ServeEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[test]
    fn guards_report_the_end_of_what_they_opened() {
        let log = Arc::new(Log::default());
        let observer = Observer::new("sds", Some(log.clone()));
        let conn = observer.connection();
        let stream = observer.stream(StreamKind::Sds);
        observer.refused_call("workload_api", Refusal::NoIdentity);
        drop(stream);
        drop(conn);
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                ServeEvent::ConnectionOpened { server: "sds" },
                ServeEvent::StreamOpened(StreamKind::Sds),
                ServeEvent::Refused {
                    server: "workload_api",
                    reason: Refusal::NoIdentity
                },
                ServeEvent::StreamClosed(StreamKind::Sds),
                ServeEvent::ConnectionClosed { server: "sds" },
            ]
        );
    }

    #[test]
    fn a_push_after_a_change_reports_its_delay_and_a_first_push_none() {
        let log = Arc::new(Log::default());
        let observer = Observer::new("workload_api", Some(log.clone()));
        let changes = Changes::new();
        observer.pushed(StreamKind::X509Svid, changed_at(&[&changes]));
        changes.notify();
        let at = changed_at(&[&changes]);
        std::thread::sleep(Duration::from_millis(20));
        // A later change does not move what the push was caused by.
        changes.notify();
        observer.pushed(StreamKind::X509Svid, at);
        let log = log.0.lock().unwrap();
        assert!(matches!(
            log[0],
            ServeEvent::Pushed {
                since_change: None,
                ..
            }
        ));
        let ServeEvent::Pushed {
            since_change: Some(delay),
            ..
        } = log[1]
        else {
            panic!("{:?}", log[1]);
        };
        assert!(delay >= Duration::from_millis(20), "{delay:?}");
    }

    #[test]
    fn without_an_observer_nothing_is_built() {
        let observer = Observer::default();
        assert!(observer.connection().is_none());
        observer.pushed(StreamKind::Sds, None);
    }
}
