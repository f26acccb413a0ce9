//! Invariants of decoding SPIFFE Workload API messages into meshid types
//! (`X509Context::from_message`, `bundles_from_message`), checked on arbitrary input: no
//! panic; an accepted message gives exactly the SVIDs and bundles it carries; a refused one
//! is refused for the first thing wrong in it, as an independent reading of its fields (with
//! other public API: `SpiffeId::new`, `X509Bundle::parse_der`, `X509Svid::from_der`) finds.
//!
//! Shared, by `#[path]`, between the `workload_message` fuzz target (`fuzz/fuzz_targets/`)
//! and `tests/fuzz_corpus.rs`, which replays `fuzz/corpus/workload_message/`. Only meshid's
//! public API, prost and rustls-pki-types are used (what the fuzz crate depends on). It
//! panics (fails) on any broken invariant.
//!
//! The first byte of the input picks the mode:
//! - `0` (mod 4): the rest is a prost-encoded `X509SvidResponse`, given to `from_message`;
//! - `1`: the rest is an `X509BundlesResponse`, given to `bundles_from_message`;
//! - `2`, `3`: structured: a valid message built from real SVIDs and bundles (issued once
//!   per process), one field of it corrupted as the rest says (see [`structured`]).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meshid::workload::proto::{X509BundlesResponse, X509SvidMessage, X509SvidResponse};
use meshid::workload::{bundles_from_message, WorkloadApiError, X509Context};
use meshid::{
    Authority, BundleError, BundleSet, IdError, KeyType, SpiffeId, SvidError, TrustDomain,
    X509Bundle, X509Svid,
};
use prost::Message;
use rustls_pki_types::CertificateDer;

/// Checks every invariant on `data`.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => match X509SvidResponse::decode(rest) {
            Ok(message) => {
                let _ = check_svid_response(&message);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        },
        1 => match X509BundlesResponse::decode(rest) {
            Ok(message) => {
                let _ = check_bundles_response(&message);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        },
        _ => {
            let _ = structured(rest);
        }
    }
}

// ---- The oracle: what the decoders must answer, worked out field by field ----

/// An expected refusal: a `WorkloadApiError` variant with the fields it must carry.
#[derive(Debug)]
pub enum Want {
    NoSvids,
    BadId {
        value: String,
        source: IdError,
    },
    BadSvid {
        index: usize,
        id: SpiffeId,
        source: SvidError,
    },
    IdMismatch {
        message: SpiffeId,
        certificate: SpiffeId,
    },
    BadBundle {
        trust_domain: String,
        source: BundleError,
    },
    DuplicateBundle {
        trust_domain: String,
    },
}

/// Whether `err` is exactly `want`.
fn is(err: &WorkloadApiError, want: &Want) -> bool {
    match (err, want) {
        (WorkloadApiError::NoSvids, Want::NoSvids) => true,
        (
            WorkloadApiError::DuplicateBundle { trust_domain },
            Want::DuplicateBundle { trust_domain: t },
        ) => trust_domain == t,
        (
            WorkloadApiError::BadId { value, source },
            Want::BadId {
                value: v,
                source: s,
            },
        ) => value == v && source == s,
        (
            WorkloadApiError::BadSvid { index, id, source },
            Want::BadSvid {
                index: i,
                id: d,
                source: s,
            },
        ) => index == i && id == d && source == s,
        (
            WorkloadApiError::IdMismatch {
                message,
                certificate,
            },
            Want::IdMismatch {
                message: m,
                certificate: c,
            },
        ) => message == m && certificate == c,
        (
            WorkloadApiError::BadBundle {
                trust_domain,
                source,
            },
            Want::BadBundle {
                trust_domain: t,
                source: s,
            },
        ) => trust_domain == t && source == s,
        _ => false,
    }
}

/// How messages quote a bad value: its first 256 characters.
fn clip(value: &str) -> String {
    value.chars().take(256).collect()
}

/// Splits concatenated DER TLVs by their headers alone; `None` if they do not tile `der`.
fn split_tlv(mut der: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let first = *der.get(1)?;
        let (header, len) = if first < 0x80 {
            (2, usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let len = der
                .get(2..2 + n)?
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (2 + n, len)
        };
        let end = header.checked_add(len)?;
        out.push(CertificateDer::from(der.get(..end)?.to_vec()));
        der = &der[end..];
    }
    Some(out)
}

/// What `from_message` must give for one SVID message at `index`: the SVID and the
/// bundle of its trust domain.
fn expect_svid(index: usize, m: &X509SvidMessage) -> Result<(X509Svid, X509Bundle), Want> {
    let id = SpiffeId::new(&m.spiffe_id).map_err(|source| Want::BadId {
        value: clip(&m.spiffe_id),
        source,
    })?;
    let td = id.trust_domain();
    // `parse_der` splits concatenated DER as the chain must be split (deduplicating,
    // which a chain must not be: the split itself is by TLV headers).
    let chain = match X509Bundle::parse_der(td.clone(), &m.x509_svid) {
        Ok(_) => split_tlv(&m.x509_svid).expect("accepted DER tiles into TLVs"),
        Err(BundleError::NoCertificates) => Vec::new(),
        Err(BundleError::BadCertificate { index: i, .. }) => {
            return Err(Want::BadSvid {
                index,
                id,
                source: SvidError::MalformedCertificate { index: i },
            })
        }
        Err(e) => panic!("parse_der on {} bytes: {e}", m.x509_svid.len()),
    };
    let svid = X509Svid::from_der(chain, &m.x509_svid_key).map_err(|source| Want::BadSvid {
        index,
        id: id.clone(),
        source,
    })?;
    if svid.id() != &id {
        return Err(Want::IdMismatch {
            message: id,
            certificate: svid.id().clone(),
        });
    }
    let bundle =
        X509Bundle::parse_der(td.clone(), &m.bundle).map_err(|source| Want::BadBundle {
            trust_domain: td.name().to_owned(),
            source,
        })?;
    Ok((svid, bundle))
}

/// The bundles of a map keyed by trust domain (name or ID), read in key order; two keys
/// naming one trust domain are an error (the first bad entry in key order is reported).
fn expect_keyed(map: &HashMap<String, Vec<u8>>) -> Result<Vec<X509Bundle>, Want> {
    let sorted: std::collections::BTreeMap<&String, &Vec<u8>> = map.iter().collect();
    let mut out: Vec<X509Bundle> = Vec::new();
    for (key, der) in sorted {
        let td = TrustDomain::new(key).map_err(|source| Want::BadId {
            value: clip(key),
            source,
        })?;
        if out.iter().any(|b| b.trust_domain() == &td) {
            return Err(Want::DuplicateBundle {
                trust_domain: td.to_string(),
            });
        }
        out.push(
            X509Bundle::parse_der(td, der).map_err(|source| Want::BadBundle {
                trust_domain: clip(key),
                source,
            })?,
        );
    }
    Ok(out)
}

/// What `from_message` must give: the SVIDs, and each trust domain's bundle (an SVID's
/// own, the last SVID's winning, else a federated one).
fn expect_svid_response(message: &X509SvidResponse) -> Result<(Vec<X509Svid>, BundleSet), Want> {
    if message.svids.is_empty() {
        return Err(Want::NoSvids);
    }
    let mut svids = Vec::with_capacity(message.svids.len());
    let mut bundles = BundleSet::new();
    for (index, m) in message.svids.iter().enumerate() {
        let (svid, bundle) = expect_svid(index, m)?;
        svids.push(svid);
        bundles.insert(bundle);
    }
    for bundle in expect_keyed(&message.federated_bundles)? {
        if bundles.get(bundle.trust_domain()).is_none() {
            bundles.insert(bundle);
        }
    }
    Ok((svids, bundles))
}

// ---- The checks ----

/// Runs `from_message` and checks its answer against the oracle and the invariants.
pub fn check_svid_response(message: &X509SvidResponse) -> Result<X509Context, WorkloadApiError> {
    let result = X509Context::from_message(message);
    match (&result, expect_svid_response(message)) {
        (Ok(context), Ok((svids, bundles))) => check_context(message, context, &svids, &bundles),
        (Err(e), Err(want)) => {
            check_error(e);
            assert!(is(e, &want), "from_message: {e:?}, expected {want:?}");
        }
        (Ok(_), Err(want)) => panic!("from_message accepted a message refused with {want:?}"),
        (Err(e), Ok(_)) => panic!("from_message refused a valid message: {e:?}"),
    }
    result
}

/// The invariants of an accepted `FetchX509SVID` message.
fn check_context(
    message: &X509SvidResponse,
    context: &X509Context,
    expected: &[X509Svid],
    bundles: &BundleSet,
) {
    let svids: Vec<&Arc<X509Svid>> = context.svids().collect();
    assert_eq!(svids.len(), message.svids.len());
    assert!(Arc::ptr_eq(context.default_svid(), svids[0]));
    for ((svid, m), want) in svids.iter().zip(&message.svids).zip(expected) {
        assert_eq!(svid.id().as_str(), m.spiffe_id);
        let der: Vec<u8> = svid
            .chain()
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect();
        assert_eq!(
            der, m.x509_svid,
            "the chain re-encodes to the message's bytes"
        );
        assert_eq!(svid.chain(), want.chain());
        assert_eq!(svid.private_key().secret_pkcs8_der(), &m.x509_svid_key[..]);
        assert_eq!(svid.not_after(), want.not_after());
        let td = svid.id().trust_domain();
        assert!(context.bundles().get(&td).is_some(), "no bundle for {td}");
        let first = svids.iter().find(|s| s.id() == svid.id()).unwrap();
        assert!(Arc::ptr_eq(context.svid_for(svid.id()).unwrap(), first));
        if !m.hint.is_empty() {
            let first = message.svids.iter().position(|o| o.hint == m.hint).unwrap();
            let found = context.svid_with_hint(&m.hint).unwrap();
            assert!(Arc::ptr_eq(found, svids[first]));
        }
    }
    assert!(context.svid_with_hint("").is_none());
    assert_eq!(context.bundles(), bundles);
    for key in message.federated_bundles.keys() {
        let td = TrustDomain::new(key).unwrap();
        assert!(context.bundles().get(&td).is_some(), "no bundle for {key}");
    }
    // Keys stay out of Debug output.
    let debug = format!("{context:?}");
    for m in &message.svids {
        assert!(!debug.contains(&format!("{:?}", m.x509_svid_key)));
    }
}

/// Runs `bundles_from_message` and checks its answer against the oracle and the invariants.
pub fn check_bundles_response(
    message: &X509BundlesResponse,
) -> Result<BundleSet, WorkloadApiError> {
    let result = bundles_from_message(message);
    match (&result, expect_keyed(&message.bundles)) {
        (Ok(set), Ok(bundles)) => {
            // One bundle per trust domain named (`td` and `spiffe://td` name the same one;
            // two such keys are refused as duplicates).
            let expected: BundleSet = bundles.into_iter().collect();
            assert_eq!(set, &expected);
            let mut names = HashSet::new();
            for (key, der) in &message.bundles {
                let td = TrustDomain::new(key).unwrap();
                assert!(key == td.name() || key == td.id().as_str(), "{key} vs {td}");
                let bundle = set
                    .get(&td)
                    .unwrap_or_else(|| panic!("no bundle for {key}"));
                assert_eq!(bundle.trust_domain(), &td);
                assert!(!bundle.is_empty());
                if names.insert(td.name().to_owned()) {
                    let other = format!("spiffe://{}", td.name());
                    let alias = if key == td.name() { &other } else { td.name() };
                    if !message.bundles.contains_key(alias) {
                        assert_eq!(bundle, &X509Bundle::parse_der(td, der).unwrap());
                    }
                }
            }
            assert_eq!(set.len(), names.len());
        }
        (Err(e), Err(want)) => {
            check_error(e);
            assert!(
                is(e, &want),
                "bundles_from_message: {e:?}, expected {want:?}"
            );
        }
        (Ok(_), Err(want)) => panic!("bundles_from_message accepted, expected {want:?}"),
        (Err(e), Ok(_)) => panic!("bundles_from_message refused a valid message: {e:?}"),
    }
    result
}

/// Every refusal explains itself.
fn check_error(e: &WorkloadApiError) {
    let text = e.to_string();
    assert!(!text.is_empty());
    match e {
        WorkloadApiError::BadId { value, .. } => {
            assert!(value.chars().count() <= 256);
            assert!(text.contains(value.as_str()));
        }
        WorkloadApiError::BadSvid { id, .. } => assert!(text.contains(id.as_str())),
        WorkloadApiError::BadBundle { trust_domain, .. } => {
            assert!(trust_domain.chars().count() <= 256);
            assert!(text.contains(trust_domain.as_str()));
        }
        _ => {}
    }
}

// ---- Structured mode: real material, one field corrupted ----

/// Valid SVID messages and federated bundles, issued once per process.
pub struct Material {
    /// `spiffe://example.org/workload` (chain: leaf and intermediate), `.../db` (leaf
    /// only) and `spiffe://other.test/api` (P-384 root; bundle of two certificates).
    pub svids: [X509SvidMessage; 3],
    /// `spiffe://fed.test` (keyed by ID) and `fed2.test` (by name, two certificates).
    pub federated: [(String, Vec<u8>); 2],
}

fn concat(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    certs.iter().flat_map(|c| c.iter().copied()).collect()
}

/// The material, made on first use.
pub fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let ttl = Duration::from_secs(86_400);
        let root = |name: &str, key_type| {
            Authority::new_root(TrustDomain::new(name).unwrap(), ttl, key_type).unwrap()
        };
        let example = root("example.org", KeyType::P256);
        let intermediate = example.new_intermediate(ttl, KeyType::P256).unwrap();
        let other = root("other.test", KeyType::P384);
        let fed = root("fed.test", KeyType::P256);
        let fed2 = root("fed2.test", KeyType::P256);
        let message = |ca: &Authority, id: &str, bundle: Vec<u8>, hint: &str| {
            let svid = ca.issue(&SpiffeId::new(id).unwrap(), ttl).unwrap();
            X509SvidMessage {
                spiffe_id: id.to_owned(),
                x509_svid: concat(svid.chain()),
                x509_svid_key: svid.private_key().secret_pkcs8_der().to_vec(),
                bundle,
                hint: hint.to_owned(),
            }
        };
        let example_bundle = example.certificate().to_vec();
        let other_bundle = concat(&[other.certificate().clone(), fed.certificate().clone()]);
        Material {
            svids: [
                message(
                    &intermediate,
                    "spiffe://example.org/workload",
                    example_bundle.clone(),
                    "internal",
                ),
                message(&example, "spiffe://example.org/db", example_bundle, ""),
                message(&other, "spiffe://other.test/api", other_bundle, "external"),
            ],
            federated: [
                ("spiffe://fed.test".to_owned(), fed.certificate().to_vec()),
                (
                    "fed2.test".to_owned(),
                    concat(&[fed2.certificate().clone(), fed.certificate().clone()]),
                ),
            ],
        }
    })
}

/// The field of the structured message that is corrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    Chain,
    Key,
    Bundle,
    Hint,
    FedKey,
    FedValue,
    Nothing,
}

const FIELDS: [Field; 8] = [
    Field::Id,
    Field::Chain,
    Field::Key,
    Field::Bundle,
    Field::Hint,
    Field::FedKey,
    Field::FedValue,
    Field::Nothing,
];

/// `orig` edited at `offset` (mod its length + 1): `how` 0 truncates there, 1 overwrites
/// with `payload` (growing if need be), 2 replaces the whole by `payload`, 3 inserts it.
fn mutate(orig: &[u8], how: u8, offset: usize, payload: &[u8]) -> Vec<u8> {
    let at = offset % (orig.len() + 1);
    let mut out = orig[..at].to_vec();
    match how {
        0 => {}
        1 => {
            out.extend_from_slice(payload);
            out.extend(orig.iter().skip(at + payload.len()));
        }
        2 => return payload.to_vec(),
        _ => {
            out.extend_from_slice(payload);
            out.extend_from_slice(&orig[at..]);
        }
    }
    out
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The structured input: `data[0]` picks the field (`% 8`, in [`FIELDS`] order) and the
/// edit (`/ 8 % 4`, see [`mutate`]); `data[1]` the message's shape: bit 0 two SVIDs, bit 1
/// corrupt the second, bit 2 with the federated bundles, bit 3 which second SVID, bit 4
/// which federated entry to corrupt, bits 5-7 which first SVID; `data[2..4]` the offset
/// (little-endian); the rest is the payload.
pub fn encode_structured(field: Field, how: u8, shape: u8, offset: u16, payload: &[u8]) -> Vec<u8> {
    let index = FIELDS.iter().position(|f| *f == field).unwrap();
    let mut data = vec![2, u8::try_from(index).unwrap() + 8 * how, shape];
    data.extend_from_slice(&offset.to_le_bytes());
    data.extend_from_slice(payload);
    data
}

/// One corrupted field of a structured message.
struct Corruption {
    field: Field,
    /// Which SVID of the message (for the SVID fields).
    target: usize,
    /// That SVID's ID before the corruption.
    id: SpiffeId,
    /// The federated entry's key before the corruption (for the federated fields).
    fed_key: &'static str,
    /// The new value of a string field.
    new_text: String,
    /// Whether the field differs from the original.
    changed: bool,
}

/// Builds the structured message `data` describes (see [`encode_structured`], without the
/// mode byte).
fn build(data: &[u8]) -> (X509SvidResponse, Corruption) {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let field = FIELDS[usize::from(byte(0) % 8)];
    let how = byte(0) / 8 % 4;
    let shape = byte(1);
    let offset = usize::from(u16::from_le_bytes([byte(2), byte(3)]));
    let payload = data.get(4..).unwrap_or_default();
    let edit = |orig: &[u8]| mutate(orig, how, offset, payload);

    let material = material();
    let first = usize::from(shape >> 5) % 3;
    let mut svids = vec![material.svids[first].clone()];
    if shape & 1 != 0 {
        svids.push(material.svids[(first + 1 + usize::from(shape >> 3 & 1)) % 3].clone());
    }
    let target = usize::from(shape & 2 != 0).min(svids.len() - 1);
    let mut federated = HashMap::new();
    if shape & 4 != 0 || matches!(field, Field::FedKey | Field::FedValue) {
        federated.extend(material.federated.iter().cloned());
    }
    let fed_key = material.federated[usize::from(shape >> 4 & 1)].0.as_str();
    let mut message = X509SvidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles: federated,
    };

    let svid = &mut message.svids[target];
    let id = SpiffeId::new(&svid.spiffe_id).unwrap();
    let mut new_text = String::new();
    let changed = match field {
        Field::Id | Field::Hint => {
            let slot = if field == Field::Id {
                &mut svid.spiffe_id
            } else {
                &mut svid.hint
            };
            new_text = text(edit(slot.as_bytes()));
            std::mem::replace(slot, new_text.clone()) != new_text
        }
        Field::Chain | Field::Key | Field::Bundle => {
            let slot = match field {
                Field::Chain => &mut svid.x509_svid,
                Field::Key => &mut svid.x509_svid_key,
                _ => &mut svid.bundle,
            };
            let new = edit(slot);
            std::mem::replace(slot, new) != *slot
        }
        Field::FedKey => {
            let der = message.federated_bundles.remove(fed_key).unwrap();
            new_text = text(edit(fed_key.as_bytes()));
            message.federated_bundles.insert(new_text.clone(), der);
            new_text != fed_key
        }
        Field::FedValue => {
            let slot = message.federated_bundles.get_mut(fed_key).unwrap();
            let new = edit(slot);
            std::mem::replace(slot, new) != *slot
        }
        Field::Nothing => false,
    };
    let corruption = Corruption {
        field,
        target,
        id,
        fed_key,
        new_text,
        changed,
    };
    (message, corruption)
}

/// Builds the structured message `data` describes (see [`encode_structured`], without the
/// mode byte), checks it like any other, and checks that the corruption is what refuses
/// it: an unchanged message is accepted, a changed field is refused with the error of that
/// field's kind (a changed ID always is). Returns the decoder's answer.
pub fn structured(data: &[u8]) -> Result<X509Context, WorkloadApiError> {
    let (message, c) = build(data);
    let result = check_svid_response(&message);
    let e = match &result {
        Err(e) if c.changed => e,
        Err(e) => panic!(
            "the unchanged message ({:?} of {data:?}) is refused: {e:?}",
            c.field
        ),
        Ok(_) => {
            assert!(
                !c.changed || c.field != Field::Id,
                "a changed SPIFFE ID {:?} was accepted",
                c.new_text
            );
            return result;
        }
    };
    let (target, id) = (c.target, &c.id);
    let named = match c.field {
        Field::Id => {
            matches!(e, WorkloadApiError::BadId { value, .. } if *value == clip(&c.new_text))
                || matches!(e, WorkloadApiError::IdMismatch { message, .. } if *message == *c.new_text)
        }
        Field::Chain => {
            matches!(e, WorkloadApiError::BadSvid { index, id: i, .. } if *index == target && i == id)
                || matches!(e, WorkloadApiError::IdMismatch { message, .. } if message == id)
        }
        Field::Key => matches!(
            e,
            WorkloadApiError::BadSvid { index, id: i, source: SvidError::Key(_) }
                if *index == target && i == id
        ),
        Field::Bundle => matches!(
            e,
            WorkloadApiError::BadBundle { trust_domain, .. } if trust_domain == id.trust_domain_name()
        ),
        Field::FedKey => {
            matches!(e, WorkloadApiError::BadId { value, .. } if *value == clip(&c.new_text))
                || matches!(e, WorkloadApiError::DuplicateBundle { .. })
        }
        Field::FedValue => matches!(
            e,
            WorkloadApiError::BadBundle { trust_domain, .. } if trust_domain == c.fed_key
        ),
        Field::Hint | Field::Nothing => false,
    };
    assert!(
        named,
        "corrupting the {:?} of SVID {target} gave {e:?}",
        c.field
    );
    result
}

// ---- Seeds ----

/// Seed inputs for every mode, named: valid messages (one, two and three SVIDs; federated
/// bundles keyed by ID and by name), broken ones, and structured corruptions.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = svid_seeds();
    seeds.extend(bundles_seeds());
    let structured = [
        ("nothing", Field::Nothing, 0, 0xff, 0, &b""[..]),
        ("chain-truncate", Field::Chain, 0, 0x01, 400, b""),
        ("chain-overwrite", Field::Chain, 1, 0x21, 200, b"\xff\x00"),
        ("key-overwrite", Field::Key, 1, 0x00, 40, b"\x01"),
        ("key-truncate", Field::Key, 0, 0x03, 60, b""),
        (
            "id-replace",
            Field::Id,
            2,
            0x00,
            0,
            b"spiffe://example.org/other",
        ),
        ("id-insert", Field::Id, 3, 0x40, 9, b"A"),
        (
            "bundle-insert",
            Field::Bundle,
            3,
            0x07,
            0,
            b"\x30\x03\x02\x01\x00",
        ),
        ("hint-replace", Field::Hint, 2, 0x23, 0, b"external"),
        ("fedkey-replace", Field::FedKey, 2, 0x04, 0, b"other.test"),
        ("fedkey-insert", Field::FedKey, 3, 0x14, 3, b"/"),
        ("fedvalue-truncate", Field::FedValue, 0, 0x14, 500, b""),
    ];
    for (name, field, how, shape, offset, payload) in structured {
        seeds.push((name, encode_structured(field, how, shape, offset, payload)));
    }
    seeds
        .into_iter()
        .map(|(n, d)| (format!("seed-{n}"), d))
        .collect()
}

fn one(key: &str, der: &[u8]) -> HashMap<String, Vec<u8>> {
    HashMap::from([(key.to_owned(), der.to_vec())])
}

/// Mode 0 seeds: prost-encoded `X509SvidResponse`s.
fn svid_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let material = material();
    let [a, b, c] = material.svids.clone();
    let fed: HashMap<String, Vec<u8>> = material.federated.iter().cloned().collect();
    let fed_der = &material.federated[0].1;
    let encode = |svids: Vec<X509SvidMessage>, federated_bundles| {
        let message = X509SvidResponse {
            svids,
            crl: Vec::new(),
            federated_bundles,
        };
        [&[0][..], &message.encode_to_vec()].concat()
    };
    let with = |f: &dyn Fn(&mut X509SvidMessage)| {
        let mut m = a.clone();
        f(&mut m);
        encode(vec![m], HashMap::new())
    };
    let mut truncated = encode(vec![a.clone()], fed.clone());
    truncated.truncate(truncated.len() / 2);
    vec![
        ("svid-one", encode(vec![a.clone()], HashMap::new())),
        (
            "svid-two-federated",
            encode(vec![a.clone(), c.clone()], fed.clone()),
        ),
        (
            "svid-same-td",
            encode(vec![b.clone(), a.clone()], HashMap::new()),
        ),
        (
            "svid-three",
            encode(
                vec![c, a.clone(), b.clone()],
                one("spiffe://fed.test", fed_der),
            ),
        ),
        (
            "svid-fed-by-name",
            encode(vec![b.clone()], one("fed.test", fed_der)),
        ),
        ("svid-empty", encode(Vec::new(), fed)),
        (
            "svid-bad-id",
            with(&|m| m.spiffe_id = "spiffe://Example.org/x".into()),
        ),
        (
            "svid-id-mismatch",
            with(&|m| m.spiffe_id = "spiffe://example.org/db".into()),
        ),
        ("svid-truncated-chain", with(&|m| m.x509_svid.truncate(300))),
        (
            "svid-wrong-key",
            with(&|m| m.x509_svid_key.clone_from(&b.x509_svid_key)),
        ),
        (
            "svid-bad-fed-key",
            encode(vec![a.clone()], one("spiffe://fed.test/path", fed_der)),
        ),
        ("svid-truncated-message", truncated),
    ]
}

/// Mode 1 seeds: prost-encoded `X509BundlesResponse`s.
fn bundles_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let material = material();
    let fed: HashMap<String, Vec<u8>> = material.federated.iter().cloned().collect();
    let fed_der = &material.federated[0].1;
    let encode = |bundles| {
        let message = X509BundlesResponse {
            crl: vec![vec![0x30, 0]],
            bundles,
        };
        [&[1][..], &message.encode_to_vec()].concat()
    };
    let alias = HashMap::from([
        ("fed.test".to_owned(), fed_der.clone()),
        (
            "spiffe://fed.test".to_owned(),
            material.svids[2].bundle.clone(),
        ),
    ]);
    vec![
        ("bundles-both", encode(fed)),
        (
            "bundles-one",
            encode(one("example.org", &material.svids[0].bundle)),
        ),
        ("bundles-empty", encode(HashMap::new())),
        ("bundles-alias", encode(alias)),
        (
            "bundles-bad-der",
            encode(one("fed.test", &fed_der[..fed_der.len() - 1])),
        ),
    ]
}
