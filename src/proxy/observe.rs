//! What a proxy reports as it works: one small trait and its events, every label from a
//! closed set (`meshid::metrics::ProxyMetrics` counts them, feature `metrics`).

/// Receives a proxy's events. Called on the connection path: keep it cheap, never block.
pub trait ProxyObserver: Send + Sync {
    /// One event.
    fn observe(&self, event: ProxyEvent);
}

/// Which way a proxy carries connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// Terminates TLS from callers and forwards plaintext to the local application.
    Inbound,
    /// Takes the local application's plaintext and originates TLS to the target.
    Outbound,
}

impl Way {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// What a connection's secure side turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// TLS with a verified peer X509-SVID.
    Mtls,
    /// TLS without a peer SPIFFE ID (one-way TLS, or a Web PKI peer).
    Tls,
    /// Plaintext (permissive mode only).
    Plaintext,
}

impl Kind {
    /// `mtls`, `tls` or `plaintext`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mtls => "mtls",
            Self::Tls => "tls",
            Self::Plaintext => "plaintext",
        }
    }
}

/// Why a connection was refused or failed before it could be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer's certificate or SPIFFE ID was refused ([`ProxyError::Rejected`](super::ProxyError::Rejected)).
    Rejected,
    /// The TLS handshake failed otherwise.
    Handshake,
    /// The TLS handshake timed out.
    Timeout,
    /// The peer presented no X509-SVID.
    NoPeerId,
    /// The target could not be reached (or not in time).
    Connect,
    /// Permissive mode: the client sent nothing in time.
    DetectTimeout,
    /// An I/O error before relaying.
    Io,
    /// The connection limit was reached.
    MaxConns,
}

impl Refusal {
    /// Every reason, in a fixed order.
    pub const ALL: &'static [Self] = &[
        Self::Rejected,
        Self::Handshake,
        Self::Timeout,
        Self::NoPeerId,
        Self::Connect,
        Self::DetectTimeout,
        Self::Io,
        Self::MaxConns,
    ];

    /// `rejected`, `handshake`, `timeout`, `no_peer_id`, `connect`, `detect_timeout`, `io`
    /// or `max_conns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Handshake => "handshake",
            Self::Timeout => "timeout",
            Self::NoPeerId => "no_peer_id",
            Self::Connect => "connect",
            Self::DetectTimeout => "detect_timeout",
            Self::Io => "io",
            Self::MaxConns => "max_conns",
        }
    }
}

/// One thing a proxy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyEvent {
    /// A connection was set up (handshake done, target connected) and is being relayed.
    Opened {
        /// The proxy's way.
        way: Way,
        /// What it is.
        kind: Kind,
    },
    /// A relayed connection ended.
    Closed {
        /// The proxy's way.
        way: Way,
        /// What it was.
        kind: Kind,
    },
    /// A connection was refused or failed before it could be relayed.
    Refused {
        /// The proxy's way.
        way: Way,
        /// Why.
        reason: Refusal,
    },
    /// Bytes went through.
    Bytes {
        /// The proxy's way.
        way: Way,
        /// `true`: from the caller towards the target; `false`: back to the caller.
        to_target: bool,
        /// How many.
        bytes: u64,
    },
}
