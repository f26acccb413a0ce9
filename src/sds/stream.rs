//! What both protocols' streams share: one reading of ACKs and NACKs ([`Ack`]) and of
//! requests for other types ([`other_type`]).

use envoy_types::pb::google::rpc::Status as RpcStatus;

use crate::sds::SECRET_TYPE_URL;

/// Whether a request is for another type than secrets (logged; the request is ignored).
pub(super) fn other_type(protocol: &str, type_url: &str) -> bool {
    let other = !type_url.is_empty() && type_url != SECRET_TYPE_URL;
    if other {
        tracing::warn!(%type_url, "{protocol}: request for another type ignored");
    }
    other
}

/// What a request says of the last response sent on its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ack {
    /// Neither: the request answers no response, or an older one (it is stale).
    Unrelated,
    /// An ACK: the client took the last response.
    Accepted,
    /// A NACK: the client rejected the last response (the request carries an
    /// `error_detail`).
    Rejected,
}

impl Ack {
    /// Reads a request with `response_nonce` and `error_detail` on a `protocol` stream
    /// whose last response carried `nonce` (and `version`, if it has one), and logs an ACK
    /// or a NACK.
    pub(super) fn of(
        protocol: &str,
        nonce: u64,
        version: Option<u64>,
        response_nonce: &str,
        error_detail: Option<&RpcStatus>,
    ) -> Self {
        if response_nonce.is_empty() || response_nonce != nonce.to_string() {
            return Self::Unrelated;
        }
        if let Some(error) = error_detail {
            tracing::warn!(?version, code = error.code, message = %error.message, "Envoy rejected the secrets ({protocol} NACK); not resending until they change");
            Self::Rejected
        } else {
            tracing::debug!(?version, "{protocol} ACK");
            Self::Accepted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_to_the_last_nonce_is_an_ack_or_a_nack() {
        let nack = RpcStatus {
            code: 3,
            message: "bad secret".into(),
            details: Vec::new(),
        };
        assert_eq!(Ack::of("SDS", 2, Some(1), "2", None), Ack::Accepted);
        assert_eq!(Ack::of("SDS", 2, Some(1), "2", Some(&nack)), Ack::Rejected);
        // The first request, and stale ones (answering an older nonce), are neither.
        assert_eq!(Ack::of("SDS", 0, None, "", None), Ack::Unrelated);
        assert_eq!(Ack::of("SDS", 0, None, "", Some(&nack)), Ack::Unrelated);
        assert_eq!(Ack::of("SDS", 2, Some(1), "1", Some(&nack)), Ack::Unrelated);
        assert_eq!(Ack::of("SDS", 2, Some(1), "02", None), Ack::Unrelated);
        assert!(!other_type("SDS", ""));
        assert!(!other_type("SDS", SECRET_TYPE_URL));
        assert!(other_type(
            "SDS",
            "type.googleapis.com/envoy.config.cluster.v3.Cluster"
        ));
    }
}
