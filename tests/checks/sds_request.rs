//! Invariants of an SDS stream's request handling (state of the world and delta), on
//! arbitrary request sequences: no panic; responses only carry secrets of the subscribed
//! names, each a decodable `Secret` of the right type and name; nonces strictly increase;
//! a NACKed version is never resent; delta responses never repeat a resource version the
//! stream already holds; a request is refused (ending its stream) exactly when its names
//! break the bounds (a name too long, too many names or bytes of names on the stream).
//!
//! Shared, by `#[path]`, between the `sds_request` fuzz target and `tests/fuzz_corpus.rs`.
//! Input: a sequence of `[op, len_hi, len_lo, bytes...]`: op % 3 == 0 a prost-encoded
//! `DiscoveryRequest`, 1 a `DeltaDiscoveryRequest`, 2 a rotation (no bytes).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryResponse,
};
use meshid::sds::fuzzing::FuzzStreams;
use meshid::sds::SECRET_TYPE_URL;
use meshid::{Authority, BundleSet, KeyType, SpiffeId, TrustDomain, X509Bundle, X509Svid};
use prost::Message as _;

fn material() -> &'static (Vec<X509Svid>, BundleSet) {
    static M: OnceLock<(Vec<X509Svid>, BundleSet)> = OnceLock::new();
    M.get_or_init(|| {
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap();
        let id = SpiffeId::new("spiffe://example.org/envoy").unwrap();
        let svids = (0..3)
            .map(|_| ca.issue(&id, Duration::from_secs(600)).unwrap())
            .collect();
        let other = TrustDomain::new("other.org").unwrap();
        let other_ca =
            Authority::new_root(other.clone(), Duration::from_secs(3600), KeyType::P256).unwrap();
        let bundles = [
            X509Bundle::from_authorities(td, ca.root().cloned()).unwrap(),
            X509Bundle::from_authorities(other, other_ca.root().cloned()).unwrap(),
        ]
        .into_iter()
        .collect();
        (svids, bundles)
    })
}

/// What the checker tracks across one input.
#[derive(Default)]
struct Seen {
    sotw_nonce: u64,
    sotw_nacked: Option<String>,
    sotw_last: Option<(String, String)>,
    delta_nonce: u64,
    delta_subscribed: BTreeSet<String>,
    delta_held: BTreeMap<String, String>,
}

fn check_secret(any_type: &str, bytes: &[u8], expected_name: Option<&str>) -> Secret {
    assert_eq!(any_type, SECRET_TYPE_URL);
    let secret = Secret::decode(bytes).expect("a pushed resource decodes as a Secret");
    assert!(secret.r#type.is_some(), "a secret without content");
    if let Some(name) = expected_name {
        assert_eq!(secret.name, name);
    }
    secret
}

fn check_sotw(seen: &mut Seen, names: &[String], response: &DiscoveryResponse) {
    let nonce: u64 = response.nonce.parse().expect("numeric nonce");
    assert!(nonce > seen.sotw_nonce, "nonces strictly increase");
    seen.sotw_nonce = nonce;
    assert_eq!(response.type_url, SECRET_TYPE_URL);
    assert!(
        seen.sotw_nacked.as_deref() != Some(response.version_info.as_str()),
        "a NACKed version was resent"
    );
    // No names asks for every secret; otherwise only the names asked for.
    assert!(names.is_empty() || response.resources.len() <= names.len());
    for any in &response.resources {
        let secret = check_secret(&any.type_url, &any.value, None);
        assert!(
            names.is_empty() || names.contains(&secret.name),
            "unsubscribed secret {}",
            secret.name
        );
    }
    seen.sotw_last = Some((response.version_info.clone(), response.nonce.clone()));
}

fn check_delta(seen: &mut Seen, response: &DeltaDiscoveryResponse) {
    let nonce: u64 = response.nonce.parse().expect("numeric nonce");
    assert!(nonce > seen.delta_nonce, "nonces strictly increase");
    seen.delta_nonce = nonce;
    let mut names = BTreeSet::new();
    for r in &response.resources {
        assert!(
            names.insert(r.name.clone()),
            "a resource twice in one response"
        );
        assert!(
            seen.delta_subscribed.contains(&r.name),
            "unsubscribed {}",
            r.name
        );
        assert_ne!(
            seen.delta_held.get(&r.name),
            Some(&r.version),
            "resent a version the stream holds"
        );
        let any = r.resource.as_ref().expect("resource body");
        check_secret(&any.type_url, &any.value, Some(&r.name));
        seen.delta_held.insert(r.name.clone(), r.version.clone());
    }
    for name in &response.removed_resources {
        assert!(
            seen.delta_held.remove(name).is_some(),
            "removed what was never sent"
        );
    }
}

/// A state-of-the-world answer: a good response, or a refusal naming the rule (a name the
/// server holds no secret for), which ends the stream.
fn check_answer(seen: &mut Seen, names: &[String], answer: Result<DiscoveryResponse, String>) {
    match answer {
        Ok(response) => check_sotw(seen, names, &response),
        Err(message) => assert!(
            message.contains("not authorized for the requested identities"),
            "unexpected refusal: {message}"
        ),
    }
}

/// Whether `names` (one state-of-the-world request) break the bounds on names.
fn over_bounds(names: &[String]) -> bool {
    let (max_len, max_names, max_bytes) = FuzzStreams::NAME_BOUNDS;
    names.len() > max_names
        || names.iter().any(|n| n.len() > max_len)
        || names.iter().map(String::len).sum::<usize>() > max_bytes
}

/// A refusal for breaking the bounds on names.
fn check_bounds_refusal(message: &str) {
    assert!(
        message.contains("-byte maximum") || message.contains("bytes of names on one stream"),
        "unexpected refusal: {message}"
    );
}

/// Follows a (typed) delta request in `seen`: what the stream subscribes to and holds;
/// whether the server must refuse it (a name too long, too many names or bytes of them).
fn model_delta(seen: &mut Seen, request: &DeltaDiscoveryRequest) -> bool {
    // What a stream holds: announced once at its start, then what we sent, only for names
    // it is subscribed to.
    if request.response_nonce.is_empty() && seen.delta_nonce == 0 && seen.delta_held.is_empty() {
        seen.delta_held
            .extend(request.initial_resource_versions.clone());
    }
    let (max_len, max_names, max_bytes) = FuzzStreams::NAME_BOUNDS;
    for name in &request.resource_names_subscribe {
        if name.len() > max_len {
            return true;
        }
        if seen.delta_subscribed.contains(name) {
            continue;
        }
        let bytes: usize = seen.delta_subscribed.iter().map(String::len).sum();
        if seen.delta_subscribed.len() + 1 > max_names || bytes + name.len() > max_bytes {
            return true;
        }
        seen.delta_subscribed.insert(name.clone());
    }
    for n in &request.resource_names_unsubscribe {
        seen.delta_subscribed.remove(n);
    }
    let subscribed = &seen.delta_subscribed;
    seen.delta_held.retain(|name, _| subscribed.contains(name));
    false
}

/// Runs `data` through one SotW and one delta stream, checking every response.
pub fn check(data: &[u8]) {
    let started = Instant::now();
    let (svids, bundles) = material();
    let mut streams = FuzzStreams::new(svids.clone(), bundles.clone());
    let mut seen = Seen::default();
    let mut rest = data;
    while let [op, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        rest = after;
        match op % 3 {
            0 => {
                let names_before = streams.sotw_names().to_vec();
                if let Some((request, response)) = streams.sotw(bytes) {
                    let typed = request.type_url.is_empty() || request.type_url == SECRET_TYPE_URL;
                    if typed && over_bounds(&request.resource_names) {
                        match response {
                            Some(Err(message)) => check_bounds_refusal(&message),
                            other => panic!("names over the bounds not refused: {other:?}"),
                        }
                        continue;
                    }
                    if typed
                        && request.error_detail.is_some()
                        && seen
                            .sotw_last
                            .as_ref()
                            .is_some_and(|(_, n)| *n == request.response_nonce)
                    {
                        seen.sotw_nacked = seen.sotw_last.as_ref().map(|(v, _)| v.clone());
                    }
                    if streams.sotw_names() != names_before.as_slice() {
                        // New names are answered even at a rejected version.
                        seen.sotw_nacked = None;
                    }
                    if let Some(answer) = response {
                        let names = streams.sotw_names().to_vec();
                        check_answer(&mut seen, &names, answer);
                    }
                }
            }
            1 => {
                if let Some((request, response)) = streams.delta(bytes) {
                    let typed = request.type_url.is_empty() || request.type_url == SECRET_TYPE_URL;
                    let refused = typed && model_delta(&mut seen, &request);
                    match response {
                        Some(Err(message)) => {
                            assert!(refused, "an unexpected refusal: {message}");
                            check_bounds_refusal(&message);
                        }
                        Some(Ok(response)) => {
                            assert!(!refused, "names over the bounds not refused");
                            check_delta(&mut seen, &response);
                        }
                        None => assert!(!refused, "names over the bounds not refused"),
                    }
                }
            }
            _ => {
                let (sotw, delta) = streams.rotate();
                // A rotation is new content: a NACKed version is in the past.
                seen.sotw_nacked = None;
                if let Some(answer) = sotw {
                    let names = streams.sotw_names().to_vec();
                    check_answer(&mut seen, &names, answer);
                }
                if let Some(response) = delta {
                    check_delta(&mut seen, &response);
                }
            }
        }
    }
    assert!(started.elapsed() < FuzzStreams::BUDGET * 10, "too slow");
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// Seed inputs: typical Envoy conversations, and requests over the bounds on names.
#[allow(clippy::too_many_lines)] // a table of conversations
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::google::rpc::Status;
    let op = |code: u8, bytes: Vec<u8>| {
        let [hi, lo] = u16::try_from(bytes.len())
            .expect("seed op under 64 KiB")
            .to_be_bytes();
        let mut v = vec![code, hi, lo];
        v.extend(bytes);
        v
    };
    let sotw = |names: &[&str], nonce: &str, nack: bool| {
        DiscoveryRequest {
            resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
            type_url: SECRET_TYPE_URL.into(),
            response_nonce: nonce.into(),
            error_detail: nack.then(|| Status {
                code: 3,
                message: "rejected".into(),
                details: vec![],
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let delta = |sub: &[&str], unsub: &[&str], nonce: &str| {
        DeltaDiscoveryRequest {
            resource_names_subscribe: sub.iter().map(|n| (*n).to_owned()).collect(),
            resource_names_unsubscribe: unsub.iter().map(|n| (*n).to_owned()).collect(),
            type_url: SECRET_TYPE_URL.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let rotate = op(2, vec![]);
    let long_names = |range: std::ops::Range<usize>| -> Vec<String> {
        range
            .map(|i| format!("{i:04}{}", "x".repeat(2044)))
            .collect()
    };
    let short_names: Vec<String> = (0..1025).map(|i| format!("n{i}")).collect();
    vec![
        (
            "seed-sotw-ack-rotate",
            [
                op(0, sotw(&["default", "ROOTCA"], "", false)),
                op(0, sotw(&["default", "ROOTCA"], "1", false)),
                rotate.clone(),
            ]
            .concat(),
        ),
        (
            "seed-sotw-nack",
            [
                op(0, sotw(&["default"], "", false)),
                op(0, sotw(&["default"], "1", true)),
                op(0, sotw(&["default"], "1", false)),
                rotate.clone(),
            ]
            .concat(),
        ),
        (
            "seed-sotw-names",
            [
                op(
                    0,
                    sotw(
                        &[
                            "ALL",
                            "spiffe://other.org",
                            "nonsense",
                            "spiffe://example.org/envoy",
                        ],
                        "",
                        false,
                    ),
                ),
                op(0, sotw(&["default"], "1", false)),
            ]
            .concat(),
        ),
        (
            // Refused: a name longer than a SPIFFE ID may be (then the stream is over).
            "seed-delta-long-name",
            [
                op(1, delta(&["default", &"x".repeat(2049)], &[], "")),
                op(1, delta(&["ROOTCA"], &[], "")),
            ]
            .concat(),
        ),
        (
            // Refused: more bytes of names than a delta stream may hold (over two
            // requests), and more names than a state-of-the-world request may carry.
            "seed-bounds",
            [
                op(1, delta(&refs(&long_names(0..20)), &[], "")),
                op(1, delta(&refs(&long_names(20..40)), &[], "")),
                op(0, sotw(&refs(&short_names), "", false)),
            ]
            .concat(),
        ),
        (
            "seed-delta",
            [
                op(1, delta(&["default", "ROOTCA"], &[], "")),
                rotate.clone(),
                op(1, delta(&[], &["ROOTCA"], "2")),
                rotate,
            ]
            .concat(),
        ),
    ]
}
