//! What both protocols share: one loop runs every stream ([`spawn`]), over a small
//! [`Protocol`] trait that state of the world ([`StreamState`](crate::sds::sotw::StreamState))
//! and incremental ([`DeltaState`](crate::sds::delta::DeltaState)) implement, and one reading
//! of ACKs and NACKs ([`Ack`]).

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Status, Streaming};

use crate::sds::service::{Sds, Wipe};
use crate::sds::SECRET_TYPE_URL;

/// What a stream sends its client.
pub(super) type Pushes<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// One stream's protocol: its messages, and what the stream has asked for and been sent.
pub(super) trait Protocol: Default + Send + 'static {
    /// How logs name the protocol.
    const NAME: &'static str;
    /// What the client sends.
    type Request: Send + 'static;
    /// What the server pushes (wiped of its secrets once encoded, or dropped unsent).
    type Response: Wipe + Default + Send + 'static;

    /// Takes a request; whether it calls for a push now, and what it says of the last
    /// response. An `Err` is a refusal (a request over the bounds on names,
    /// [`check_name`]), and ends the stream.
    fn on_request(&mut self, request: Self::Request) -> Result<(bool, Ack), Status>;

    /// The kind of stream, as observers count it.
    const KIND: crate::serve::StreamKind;

    /// The response bringing this stream up to `version`, if any. `push`: a request
    /// called for one; after a version bump it is false and the stream decides whether it
    /// has something new to send. An `Err` is a refusal, and ends the stream.
    fn update(
        &mut self,
        sds: &Sds,
        push: bool,
        version: u64,
    ) -> Option<Result<Self::Response, Status>>;
}

/// Runs one stream of protocol `P` in a task of its own, until the client leaves, a
/// refusal is sent or the server closes; what it pushes goes to the returned stream.
pub(super) fn spawn<P: Protocol>(
    mut sds: Sds,
    mut incoming: Streaming<P::Request>,
) -> Pushes<P::Response> {
    let (tx, rx) = mpsc::channel(4);
    let mut closed = sds.closed.clone();
    tokio::spawn(async move {
        let seen_by = sds.observer.stream(P::KIND);
        let mut stream = P::default();
        // A caller that cannot be looked at (an agent cannot attest it) is refused at once.
        let subscribed = crate::serve::blocking(sds.identities.may_block(), || sds.subscribe());
        let refusal = match subscribed {
            Ok(mine) => {
                run(
                    &mut sds,
                    &mut incoming,
                    &mut closed,
                    &tx,
                    &seen_by,
                    mine,
                    &mut stream,
                )
                .await
            }
            Err(status) => {
                seen_by
                    .observer()
                    .refused_call("sds", crate::serve::Refusal::NoIdentity);
                Some(status)
            }
        };
        // A refusal ends the stream: the request side is dropped first, so h2 resets the
        // stream right after the status goes out (some clients, grpclib, surface the status
        // only on that reset while they are still sending; a reset that came late would
        // leave them with a stream ended under their feet).
        drop(incoming);
        if let Some(status) = refusal {
            let _ = tx.send(Err(status)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx).map(|pushed| pushed.map(Unsent::into_inner)))
}

/// The loop of one stream, subscribed as `mine`: answers requests and pushes what changes
/// until the client leaves or the server closes (`None`), or the stream is refused (the
/// status to end it with).
async fn run<P: Protocol>(
    sds: &mut Sds,
    incoming: &mut Streaming<P::Request>,
    closed: &mut tokio::sync::watch::Receiver<bool>,
    tx: &mpsc::Sender<Result<Unsent<P::Response>, Status>>,
    seen_by: &crate::serve::StreamSeen,
    mut mine: Arc<crate::watch::Changes>,
    stream: &mut P,
) -> Option<Status> {
    // The stream's own version of what it serves: one more on every change that may
    // concern its caller. The generations are read before anything is looked up (the
    // caller subscribed just before), so a change in between is seen.
    let mut version = 1u64;
    let mut seen = sds.bundles.changes().generation();
    loop {
        let push = tokio::select! {
            message = incoming.message() => match message {
                Ok(Some(request)) => match stream.on_request(request) {
                    Ok((push, answer)) => {
                        if answer != Ack::Unrelated {
                            seen_by.observer().sds_answer(answer == Ack::Accepted);
                        }
                        push
                    }
                    Err(status) => {
                        tracing::info!(protocol = P::NAME, code = ?status.code(), reason = status.message(), "stream refused");
                        seen_by
                            .observer()
                            .refused_call("sds", crate::serve::Refusal::BadRequest);
                        return Some(status);
                    }
                },
                Ok(None) => return None,
                Err(status) => {
                    tracing::debug!(protocol = P::NAME, %status, "stream ended by the client");
                    return None;
                }
            },
            _ = mine.changed(0) => false,
            _ = sds.bundles.changes().changed(seen) => false,
            () = crate::serve::closing(closed) => return None,
        };
        if *closed.borrow_and_update() {
            return None;
        }
        // Whatever woke the stream, a change is a new version (a request arriving together
        // with a change must not swallow the push).
        let changed = mine.generation() != 0 || sds.bundles.changes().generation() != seen;
        let changed_at = if changed {
            crate::serve::changed_at(&[&mine, sds.bundles.changes()])
        } else {
            None
        };
        if changed {
            version += 1;
            seen = sds.bundles.changes().generation();
            mine = match crate::serve::blocking(sds.identities.may_block(), || sds.subscribe()) {
                Ok(mine) => mine,
                Err(status) => return Some(status),
            };
        }
        // `update` sends only what is new.
        let Some(response) = crate::serve::blocking(sds.identities.may_block(), || {
            stream.update(sds, push, version)
        }) else {
            continue;
        };
        match response {
            Ok(response) => {
                if tx.send(Ok(Unsent(response))).await.is_err() {
                    return None;
                }
            }
            // Names the caller holds no secret for, or no identity at all.
            Err(status) => {
                seen_by
                    .observer()
                    .refused_call("sds", crate::serve::Refusal::NoIdentity);
                return Some(status);
            }
        }
        seen_by.observer().pushed(P::KIND, changed_at);
    }
}

/// A response on its way to tonic, whose encoder wipes it; wiped on drop if it never gets
/// there (the client left with responses still queued).
struct Unsent<T: Wipe + Default>(T);

impl<T: Wipe + Default> Unsent<T> {
    fn into_inner(mut self) -> T {
        std::mem::take(&mut self.0)
    }
}

impl<T: Wipe + Default> Drop for Unsent<T> {
    fn drop(&mut self) {
        self.0.wipe();
    }
}

/// Whether a request is for another type than secrets (logged; the request is ignored).
pub(super) fn other_type(protocol: &str, type_url: &str) -> bool {
    let other = !type_url.is_empty() && type_url != SECRET_TYPE_URL;
    if other {
        tracing::warn!(protocol, %type_url, "request for another type ignored");
    }
    other
}

// The bounds on the names a stream (or a `FetchSecrets` call) may ask for: a request over
// them is refused and ends only its own stream. A name is at most `MAX_NAME_LEN` bytes
// (`InvalidArgument`); a stream holds at most `MAX_NAMES` names and `MAX_NAME_BYTES` bytes
// of names (`ResourceExhausted`). What a stream holds, and the work one request costs,
// stay bounded however many requests it sends.

/// The longest secret name: a SPIFFE ID's maximum (SPIFFE-ID §2.3); the other names
/// (`default`, `ROOTCA`, `ALL`, `spiffe://td`) are shorter, so a longer name can never
/// name a secret.
pub(super) const MAX_NAME_LEN: usize = crate::id::MAX_ID_LEN;
/// The most secret names one stream may ask for (Envoy needs a handful).
pub(super) const MAX_NAMES: usize = 1024;
/// The most bytes of names one stream may hold (32 SPIFFE IDs of the maximum length, or
/// a thousand of 64 bytes).
pub(super) const MAX_NAME_BYTES: usize = 64 * 1024;

/// Refuses a name longer than [`MAX_NAME_LEN`] with `InvalidArgument`.
pub(super) fn check_name(protocol: &str, name: &str) -> Result<(), Status> {
    if name.len() > MAX_NAME_LEN {
        let len = name.len();
        return Err(Status::invalid_argument(format!(
            "{protocol}: a secret name of {len} bytes, over the {MAX_NAME_LEN}-byte maximum \
             (a SPIFFE ID's)"
        )));
    }
    Ok(())
}

/// Refuses `count` names of `bytes` bytes in all when over [`MAX_NAMES`] or
/// [`MAX_NAME_BYTES`], with `ResourceExhausted`.
pub(super) fn check_total(protocol: &str, count: usize, bytes: usize) -> Result<(), Status> {
    if count > MAX_NAMES || bytes > MAX_NAME_BYTES {
        return Err(Status::resource_exhausted(format!(
            "{protocol}: over {MAX_NAMES} secret names or {MAX_NAME_BYTES} bytes of names on \
             one stream"
        )));
    }
    Ok(())
}

/// Refuses the names of one state-of-the-world request (or `FetchSecrets` call) over the
/// bounds; checked before anything else is done with them (counted first: a 4 MiB request
/// can carry a million short names), so the work stays bounded by the request.
pub(super) fn check_request(protocol: &str, names: &[String]) -> Result<(), Status> {
    check_total(protocol, names.len(), 0)?;
    let mut bytes = 0;
    for name in names {
        check_name(protocol, name)?;
        bytes += name.len();
    }
    check_total(protocol, names.len(), bytes)
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
    /// or a NACK. `answered` is the last nonce answered: a request answering it again (a
    /// state-of-the-world request changing only its names carries the last nonce too) is
    /// no new answer, so each response is ACKed or NACKed once.
    pub(super) fn of(
        protocol: &str,
        (nonce, answered): (u64, &mut u64),
        version: Option<u64>,
        response_nonce: &str,
        error_detail: Option<&RpcStatus>,
    ) -> Self {
        if response_nonce.is_empty() || response_nonce != nonce.to_string() || *answered == nonce {
            return Self::Unrelated;
        }
        *answered = nonce;
        if let Some(error) = error_detail {
            tracing::warn!(protocol, ?version, nonce, code = error.code, detail = %error.message, "Envoy rejected the secrets (NACK); not resending until they change");
            Self::Rejected
        } else {
            tracing::debug!(protocol, ?version, nonce, "ACK");
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
        let fresh = || 0u64;
        assert_eq!(
            Ack::of("SDS", (2, &mut fresh()), Some(1), "2", None),
            Ack::Accepted
        );
        assert_eq!(
            Ack::of("SDS", (2, &mut fresh()), Some(1), "2", Some(&nack)),
            Ack::Rejected
        );
        // The first request, and stale ones (answering an older nonce), are neither.
        assert_eq!(
            Ack::of("SDS", (0, &mut fresh()), None, "", None),
            Ack::Unrelated
        );
        assert_eq!(
            Ack::of("SDS", (0, &mut fresh()), None, "", Some(&nack)),
            Ack::Unrelated
        );
        assert_eq!(
            Ack::of("SDS", (2, &mut fresh()), Some(1), "1", Some(&nack)),
            Ack::Unrelated
        );
        assert_eq!(
            Ack::of("SDS", (2, &mut fresh()), Some(1), "02", None),
            Ack::Unrelated
        );
        // A response is answered once: the same nonce again (a request changing only its
        // names) is neither, be it an ACK or a NACK.
        let mut answered = 0;
        assert_eq!(
            Ack::of("SDS", (3, &mut answered), Some(2), "3", None),
            Ack::Accepted
        );
        assert_eq!(
            Ack::of("SDS", (3, &mut answered), Some(2), "3", None),
            Ack::Unrelated
        );
        let mut answered = 0;
        assert_eq!(
            Ack::of("SDS", (4, &mut answered), Some(3), "4", Some(&nack)),
            Ack::Rejected
        );
        assert_eq!(
            Ack::of("SDS", (4, &mut answered), Some(3), "4", Some(&nack)),
            Ack::Unrelated
        );
        assert_eq!(
            Ack::of("SDS", (5, &mut answered), Some(4), "5", None),
            Ack::Accepted
        );
        assert!(!other_type("SDS", ""));
        assert!(!other_type("SDS", SECRET_TYPE_URL));
        assert!(other_type(
            "SDS",
            "type.googleapis.com/envoy.config.cluster.v3.Cluster"
        ));
    }
}
