//! What can go wrong on a proxied connection.

use std::io;
use std::time::Duration;

use super::Refusal;
use crate::tls::PeerRejected;

/// Why a connection could not be set up (the TLS handshake, the connection to the target, the
/// detection of its protocol). The I/O errors of a relay already set up are plain
/// [`io::Error`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The peer's certificate was refused: not a valid X509-SVID of a trust domain we hold a
    /// bundle for, or an ID the authorizer refuses (the reason is inside).
    #[error("peer refused: {0}")]
    Rejected(PeerRejected),
    /// The TLS handshake failed for another reason (the peer's alert, a protocol error, a
    /// Web PKI certificate or host name that does not verify, the connection closed).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The TLS handshake did not complete in time.
    #[error("TLS handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// The handshake completed but the peer presented no X509-SVID, where one is required.
    #[error("the peer presented no X509-SVID (RFC 5246/8446 client or server certificate)")]
    NoPeerId,
    /// The target could not be reached.
    #[error("connecting to {target}: {source}")]
    Connect {
        /// The target, as configured.
        target: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Connecting to the target did not complete in time.
    #[error("connecting to {target} did not complete within {timeout:?}")]
    ConnectTimeout {
        /// The target, as configured.
        target: String,
        /// The limit.
        timeout: Duration,
    },
    /// Permissive mode: the client sent nothing to tell TLS from plaintext in time.
    #[error(
        "the client sent nothing within {0:?} (permissive mode cannot tell TLS from plaintext)"
    )]
    DetectTimeout(Duration),
    /// Reading the first bytes, or writing a PROXY protocol header, failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

impl ProxyError {
    /// A handshake's I/O error, with a refused peer told apart.
    pub(crate) fn handshake(error: io::Error) -> Self {
        match crate::tls::io_rejection(&error) {
            Some(rejected) => Self::Rejected(rejected.clone()),
            None => Self::Handshake(error),
        }
    }

    /// Which kind of refusal this is, for counting.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Rejected(_) => Refusal::Rejected,
            Self::Handshake(_) => Refusal::Handshake,
            Self::HandshakeTimeout(_) => Refusal::Timeout,
            Self::NoPeerId => Refusal::NoPeerId,
            Self::Connect { .. } | Self::ConnectTimeout { .. } => Refusal::Connect,
            Self::DetectTimeout(_) => Refusal::DetectTimeout,
            Self::Io(_) => Refusal::Io,
        }
    }
}
