//! x509-limbo conformance of the path-validation layer, [`meshid::validate_path`]
//! (`tests/data/x509-limbo/limbo.json`, origin in tests/data/SOURCES.md).
//!
//! Every testcase of the file is run. A case is *checked* (its verdict asserted: `Ok` for
//! SUCCESS, `Err` for FAILURE) unless it is listed in [`EXCLUSIONS`] with the reason its
//! verdict needs something this layer deliberately does not do: a peer-name check (SPIFFE
//! authenticates the URI SAN instead; DESIGN rule 11), revocation, a chain-depth limit,
//! key-usage rules beyond "serverAuth/clientAuth if EKU is present", or a check
//! rustls-webpki 0.103 does differently by design (DESIGN rule 12). A name-based (or CRL,
//! or depth-limited) case whose expected verdict is reached without that check stays
//! checked.
//!
//! The list cannot rot: every exclusion must match a case of the file, and excluded cases
//! are run too: one whose verdict now agrees with the file must leave the list.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshid::{validate_path, Usage, VerifyError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

const LIMBO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/x509-limbo/limbo.json"
);

/// Cases checked today; the test fails if fewer are (an exclusion too broad, a file cut).
const MIN_CHECKED: usize = 127;

/// Used when a case has no `validation_time`. Every generated certificate of those cases
/// is valid from 1970-01-01T00:00:01Z to 2969-05-03, except one intermediate that expired in
/// 1988 (`pathological::multiple-chains-expired-intermediate`, which must be routed around).
/// A fixed time keeps the run reproducible.
const DEFAULT_TIME: &str = "2025-01-01T00:00:00Z";

/// Why a case is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    /// The verdict needs `expected_peer_name` to be matched; this layer matches no name.
    PeerName,
    /// The verdict needs CRL processing; this layer does no revocation.
    Revocation,
    /// The verdict needs `max_chain_depth`; webpki exposes no depth limit.
    ChainDepth,
    /// The verdict needs a key-usage or EKU rule beyond "serverAuth (SERVER) or clientAuth
    /// (CLIENT) if EKU is present".
    KeyUsage,
    /// rustls-webpki 0.103 behaves differently here, by design or documented.
    Webpki,
}

/// One excluded case: an exact id, or an id prefix ending in `::`.
struct Exclusion {
    id: &'static str,
    why: Why,
    reason: &'static str,
}

const fn ex(id: &'static str, why: Why, reason: &'static str) -> Exclusion {
    Exclusion { id, why, reason }
}

const NAME_MISMATCH: &str = "the SAN does not match expected_peer_name (RFC 6125); only a name \
     check rejects it, and this layer performs none by design (SPIFFE authenticates the URI SAN)";
const NAME_SYNTAX: &str = "the dNSName SAN is malformed for a DNS name; webpki reads SAN syntax \
     only when matching a reference name or a name constraint, and there is neither here";
const CRL: &str = "the expected FAILURE comes from the CRL; this layer does no revocation check";
const DEPTH: &str = "the chain exceeds max_chain_depth; webpki has no configurable depth limit \
     (only its fixed maximum of 6 intermediates)";
const ANCHOR: &str = "only the root is faulty; webpki::anchor_from_trusted_cert keeps a trusted \
     certificate's subject, key and name constraints only; meshid adds the root's \
     basicConstraints, keyUsage, pathLen and validity period, but not its criticality, key \
     identifiers or EKU";
const KEY_IDS: &str = "webpki builds paths by issuer/subject name and signature; it neither \
     reads nor requires the AKI/SKI extensions (RFC 5280 4.2.1.1/4.2.1.2 CA-side MUSTs)";
const CA_AS_LEAF: &str = "webpki refuses a cA=TRUE certificate as end entity \
     (Error::CaUsedAsEndEntity); RFC 5280 allows it, limbo marks the conflict with \
     webpki::ca-as-leaf";
const SELF_ISSUED: &str = "webpki gives self-issued intermediates no RFC 5280 6.1.4 exemption: \
     they count against pathLenConstraint and are subject to name constraints (reported as the \
     signature error of the alternative path it tried)";
const NC_FAIL_CLOSED: &str = "webpki fails closed on name-constraint forms it does not \
     implement (directoryName: rustls/webpki#19; rfc822Name compared as unsupported), so a \
     permitted match is refused";
const NC_LENIENT: &str = "webpki accepts this NameConstraints extension: criticality is not \
     required (CABF allows non-critical), the extension is ignored in end entities, a leading \
     '.' in a dNSName constraint is accepted (as NSS/SChannel do, documented in dns_name.rs), \
     and constraints with no subtrees impose nothing";
const PROFILE: &str = "an issuance-profile rule (RFC 5280 / CABF) that webpki does not enforce \
     in path validation: it does not process policy constraints or AIA, parses serials \
     leniently, and does not check subject emptiness or SAN criticality";
const CN: &str = "CABF 7.1.4.3 CN/SAN consistency: webpki never reads the subject CN \
     (no CN-ID support), so a CN that is not a copy of a SAN goes unnoticed";
const EKU_PROFILE: &str = "CABF EKU profile (anyExtendedKeyUsage forbidden, EKU non-critical and \
     required): webpki's KeyUsage::server_auth only requires serverAuth if EKU is present";
const LEAF_KU: &str = "webpki ignores keyUsage (verify_cert.rs: 'For cert validation, we ignore \
     the KeyUsage extension'); the SPIFFE leaf profile of verify_x509_svid checks keyCertSign";
const SUBSCRIBER_KEY: &str = "a key policy (CABF 6.1.5/6.1.1.3) webpki does not apply: keys are \
     only judged by the signature algorithms that verify with them; a leaf key verifies nothing \
     in path validation, and ring's RSA_PKCS1_2048_8192 accepts any modulus size in that range";
const NC_DOS: &str = "webpki matches name constraints against SANs and the subject DN as a \
     whole, not against each subject emailAddress; with only DNS constraints there is no \
     quadratic work to refuse, and the chain is, per the case, technically valid";

const EXCLUSIONS: &[Exclusion] = &[
    // Peer name (DESIGN rule 11): no DNS/IP name check in this layer.
    ex(
        "webpki::san::mismatch-domain-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::mismatch-subdomain-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::mismatch-subdomain-apex-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::mismatch-apex-subdomain-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::wildcard-embedded-leftmost-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::wildcard-not-in-leftmost-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::wildcard-match-across-labels-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::wildcard-embedded-ulabel-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::unicode-emoji-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex("webpki::san::no-san", Why::PeerName, NAME_MISMATCH),
    ex(
        "webpki::san::public-suffix-wildcard-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::public-suffix-multi-label-wildcard-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::public-suffix-private-namespace-wildcard-san",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::san-wildcard-only",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex(
        "webpki::san::san-wildcard-only-tld",
        Why::PeerName,
        NAME_MISMATCH,
    ),
    ex("rfc5280::san::underscore-dns", Why::PeerName, NAME_SYNTAX),
    ex("rfc5280::san::ip-in-dns", Why::PeerName, NAME_SYNTAX),
    // Revocation.
    ex("crl::revoked-certificate-with-crl", Why::Revocation, CRL),
    ex("crl::crlnumber-missing", Why::Revocation, CRL),
    ex("crl::crlnumber-critical", Why::Revocation, CRL),
    ex("crl::issuer-missing-crlsign", Why::Revocation, CRL),
    // Chain depth.
    ex(
        "pathlen::max-chain-depth-0-exhausted",
        Why::ChainDepth,
        DEPTH,
    ),
    ex(
        "pathlen::max-chain-depth-1-exhausted",
        Why::ChainDepth,
        DEPTH,
    ),
    // Key usage / EKU beyond serverAuth/clientAuth.
    ex("webpki::eku::ee-anyeku", Why::KeyUsage, EKU_PROFILE),
    ex("webpki::eku::ee-critical-eku", Why::KeyUsage, EKU_PROFILE),
    ex("webpki::eku::ee-without-eku", Why::KeyUsage, EKU_PROFILE),
    ex("rfc5280::leaf-ku-keycertsign", Why::KeyUsage, LEAF_KU),
    // rustls-webpki 0.103.
    ex("rfc5280::aki::critical-aki", Why::Webpki, ANCHOR),
    ex("rfc5280::ski::critical-ski", Why::Webpki, ANCHOR),
    ex("rfc5280::ski::root-missing-ski", Why::Webpki, ANCHOR),
    ex(
        "rfc5280::unknown-critical-extension-root",
        Why::Webpki,
        ANCHOR,
    ),
    ex(
        "rfc5280::root-missing-basic-constraints",
        Why::Webpki,
        ANCHOR,
    ),
    ex(
        "rfc5280::root-non-critical-basic-constraints",
        Why::Webpki,
        ANCHOR,
    ),
    ex("webpki::aki::", Why::Webpki, ANCHOR),
    ex("webpki::eku::root-has-eku", Why::Webpki, ANCHOR),
    ex("rfc5280::aki::leaf-missing-aki", Why::Webpki, KEY_IDS),
    ex(
        "rfc5280::aki::intermediate-missing-aki",
        Why::Webpki,
        KEY_IDS,
    ),
    ex(
        "rfc5280::aki::cross-signed-root-missing-aki",
        Why::Webpki,
        KEY_IDS,
    ),
    ex(
        "rfc5280::ski::intermediate-missing-ski",
        Why::Webpki,
        KEY_IDS,
    ),
    ex("rfc5280::ca-as-leaf", Why::Webpki, CA_AS_LEAF),
    ex(
        "pathlen::validation-ignores-pathlen-in-leaf",
        Why::Webpki,
        CA_AS_LEAF,
    ),
    ex(
        "pathlen::self-issued-certs-pathlen",
        Why::Webpki,
        SELF_ISSUED,
    ),
    ex(
        "rfc5280::nc::permitted-self-issued",
        Why::Webpki,
        SELF_ISSUED,
    ),
    ex(
        "rfc5280::nc::permitted-dn-match",
        Why::Webpki,
        NC_FAIL_CLOSED,
    ),
    ex(
        "rfc5280::nc::nc-permits-email-exact",
        Why::Webpki,
        NC_FAIL_CLOSED,
    ),
    ex(
        "rfc5280::nc::nc-permits-email-domain",
        Why::Webpki,
        NC_FAIL_CLOSED,
    ),
    ex(
        "rfc5280::nc::nc-permits-email-literal-asterisk-exact-match",
        Why::Webpki,
        NC_FAIL_CLOSED,
    ),
    ex(
        "rfc5280::nc::nc-permits-email-literal-double-asterisk",
        Why::Webpki,
        NC_FAIL_CLOSED,
    ),
    ex(
        "rfc5280::nc::nc-permits-email-literal-mid-asterisk",
        Why::Webpki,
        NC_FAIL_CLOSED,
    ),
    ex(
        "rfc5280::nc::permitted-dns-match-noncritical",
        Why::Webpki,
        NC_LENIENT,
    ),
    ex(
        "rfc5280::nc::not-allowed-in-ee-noncritical",
        Why::Webpki,
        NC_LENIENT,
    ),
    ex(
        "rfc5280::nc::not-allowed-in-ee-critical",
        Why::Webpki,
        NC_LENIENT,
    ),
    ex(
        "rfc5280::nc::invalid-dnsname-leading-period",
        Why::Webpki,
        NC_LENIENT,
    ),
    ex(
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-null",
        Why::Webpki,
        NC_LENIENT,
    ),
    ex(
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences",
        Why::Webpki,
        NC_LENIENT,
    ),
    ex("rfc5280::pc::ica-noncritical-pc", Why::Webpki, PROFILE),
    ex(
        "rfc5280::san::noncritical-with-empty-subject",
        Why::Webpki,
        PROFILE,
    ),
    ex("rfc5280::serial::too-long", Why::Webpki, PROFILE),
    ex("rfc5280::serial::zero", Why::Webpki, PROFILE),
    ex("rfc5280::ca-empty-subject", Why::Webpki, PROFILE),
    ex(
        "webpki::san::san-critical-with-nonempty-subject",
        Why::Webpki,
        PROFILE,
    ),
    ex("webpki::malformed-aia", Why::Webpki, PROFILE),
    ex("webpki::cn::", Why::Webpki, CN),
    ex("webpki::forbidden-p192-leaf", Why::Webpki, SUBSCRIBER_KEY),
    ex("webpki::forbidden-dsa-leaf", Why::Webpki, SUBSCRIBER_KEY),
    ex(
        "webpki::forbidden-weak-rsa-in-leaf",
        Why::Webpki,
        SUBSCRIBER_KEY,
    ),
    ex(
        "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf",
        Why::Webpki,
        SUBSCRIBER_KEY,
    ),
    ex(
        "webpki::forbidden-rsa-not-divisible-by-8-in-root",
        Why::Webpki,
        SUBSCRIBER_KEY,
    ),
    ex("pathological::nc-dos-3", Why::Webpki, NC_DOS),
];

impl Exclusion {
    fn matches(&self, id: &str) -> bool {
        if self.id.ends_with("::") {
            id.starts_with(self.id)
        } else {
            id == self.id
        }
    }
}

/// RFC 3339 `date-time` (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to `SystemTime`;
/// `None` for anything else, including times before 1970.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    fn digits(s: &str, at: usize, len: usize) -> Option<i64> {
        let part = s.get(at..at + len)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    let (hour, minute, second) = (digits(s, 11, 2)?, digits(s, 14, 2)?, digits(s, 17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        for (i, d) in frac.bytes().take(9).take(len).enumerate() {
            nanos += u32::from(d - b'0') * 10u32.pow(8 - u32::try_from(i).ok()?);
        }
        rest = &frac[len..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (digits(rest, 1, 2)? * 3600 + digits(rest, 4, 2)? * 60)
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}

fn str_field<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {field} is not a string", case["id"]))
}

fn certs(case: &Value, field: &str) -> Vec<CertificateDer<'static>> {
    case[field]
        .as_array()
        .unwrap_or_else(|| panic!("{}: {field} is not an array", case["id"]))
        .iter()
        .map(|pem| cert(case, pem.as_str().expect("PEM string")))
        .collect()
}

fn cert(case: &Value, pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap_or_else(|e| panic!("{}: PEM certificate: {e:?}", case["id"]))
}

/// Runs one testcase through `validate_path`.
fn run(case: &Value, default_time: SystemTime) -> Result<(), VerifyError> {
    let leaf = cert(case, str_field(case, "peer_certificate"));
    let intermediates = certs(case, "untrusted_intermediates");
    let roots = certs(case, "trusted_certs");
    let at = match &case["validation_time"] {
        Value::Null => default_time,
        Value::String(t) => {
            parse_rfc3339(t).unwrap_or_else(|| panic!("{}: validation_time {t:?}", case["id"]))
        }
        other => panic!("{}: validation_time {other}", case["id"]),
    };
    let usage = match str_field(case, "validation_kind") {
        "SERVER" => Usage::ServerAuth,
        "CLIENT" => Usage::ClientAuth,
        other => panic!("{}: validation_kind {other}", case["id"]),
    };
    validate_path(
        &leaf,
        &intermediates,
        &roots,
        at,
        webpki::ALL_VERIFICATION_ALGS,
        usage,
    )
}

/// What a checked case carries that this layer ignores, though its verdict is reached
/// without it (so it stays checked): reported, not hidden.
fn ignored_inputs(case: &Value) -> Vec<&'static str> {
    let mut ignored = Vec::new();
    if !case["expected_peer_name"].is_null()
        || case["expected_peer_names"]
            .as_array()
            .is_some_and(|n| !n.is_empty())
    {
        ignored.push("peer name");
    }
    if case["crls"].as_array().is_some_and(|c| !c.is_empty()) {
        ignored.push("CRLs");
    }
    if !case["max_chain_depth"].is_null() {
        ignored.push("max_chain_depth");
    }
    if case["key_usage"].as_array().is_some_and(|k| !k.is_empty()) {
        ignored.push("key_usage");
    }
    if case["signature_algorithms"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        ignored.push("signature_algorithms");
    }
    let implied = match case["validation_kind"].as_str() {
        Some("CLIENT") => "clientAuth",
        _ => "serverAuth",
    };
    if case["extended_key_usage"]
        .as_array()
        .is_some_and(|e| e.iter().any(|u| u != implied))
    {
        ignored.push("extended_key_usage");
    }
    ignored
}

#[derive(Default)]
struct Tally {
    cases: usize,
    checked: usize,
    passed: usize,
    excluded: usize,
}

#[test]
fn limbo_path_validation() {
    let bytes = std::fs::read(LIMBO).unwrap_or_else(|e| panic!("{LIMBO}: {e}"));
    let doc: Value = serde_json::from_slice(&bytes).expect("limbo.json is JSON");
    assert_eq!(doc["version"], 1, "limbo schema version");
    let cases = doc["testcases"].as_array().expect("testcases");
    let default_time = parse_rfc3339(DEFAULT_TIME).unwrap();

    let mut by_namespace: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut by_why: BTreeMap<Why, usize> = BTreeMap::new();
    let mut ignored_counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut used = vec![0usize; EXCLUSIONS.len()];
    let mut wrong = Vec::new();
    let mut stale = Vec::new();

    for case in cases {
        let id = str_field(case, "id");
        let expected_ok = match str_field(case, "expected_result") {
            "SUCCESS" => true,
            "FAILURE" => false,
            other => panic!("{id}: expected_result {other}"),
        };
        let matching: Vec<usize> = (0..EXCLUSIONS.len())
            .filter(|&i| EXCLUSIONS[i].matches(id))
            .collect();
        assert!(matching.len() <= 1, "{id}: matched by several exclusions");
        let result = run(case, default_time);
        let agrees = result.is_ok() == expected_ok;
        let tally = by_namespace
            .entry(id.split("::").next().unwrap_or(id))
            .or_default();
        tally.cases += 1;
        if let Some(&i) = matching.first() {
            let exclusion = &EXCLUSIONS[i];
            used[i] += 1;
            tally.excluded += 1;
            *by_why.entry(exclusion.why).or_default() += 1;
            println!("excluded {id} ({:?}): {}", exclusion.why, exclusion.reason);
            if agrees {
                stale.push(format!("{id} (listed as {:?})", exclusion.why));
            }
            continue;
        }
        tally.checked += 1;
        for input in ignored_inputs(case) {
            *ignored_counts.entry(input).or_default() += 1;
        }
        if agrees {
            tally.passed += 1;
        } else {
            wrong.push(format!(
                "{id}: expected {}, got {result:?}",
                if expected_ok { "SUCCESS" } else { "FAILURE" }
            ));
        }
    }

    let mut total = Tally::default();
    println!("\nnamespace      cases checked passed excluded");
    for (namespace, t) in &by_namespace {
        println!(
            "{namespace:<14} {:>5} {:>7} {:>6} {:>8}",
            t.cases, t.checked, t.passed, t.excluded
        );
        total.cases += t.cases;
        total.checked += t.checked;
        total.passed += t.passed;
        total.excluded += t.excluded;
    }
    println!(
        "{:<14} {:>5} {:>7} {:>6} {:>8}",
        "total", total.cases, total.checked, total.passed, total.excluded
    );
    println!("excluded by reason: {by_why:?}");
    println!("checked although the case carries input this layer ignores: {ignored_counts:?}");

    assert_eq!(total.cases, cases.len());
    let unused: Vec<&str> = EXCLUSIONS
        .iter()
        .zip(&used)
        .filter(|(_, &n)| n == 0)
        .map(|(e, _)| e.id)
        .collect();
    assert!(
        unused.is_empty(),
        "exclusions matching no case of limbo.json: {unused:#?}"
    );
    assert!(
        stale.is_empty(),
        "excluded cases whose verdict now agrees with limbo.json (remove them from EXCLUSIONS): \
         {stale:#?}"
    );
    assert!(
        wrong.is_empty(),
        "{} checked cases disagree with limbo.json:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        total.checked >= MIN_CHECKED,
        "only {} cases checked, expected at least {MIN_CHECKED}",
        total.checked
    );
}

/// The case whose only fault is an expired root is refused for that reason, by meshid's
/// check on the anchor's validity (webpki keeps none on a trust anchor).
#[test]
fn limbo_expired_root_is_refused_as_an_expired_anchor() {
    let bytes = std::fs::read(LIMBO).unwrap_or_else(|e| panic!("{LIMBO}: {e}"));
    let doc: Value = serde_json::from_slice(&bytes).expect("limbo.json is JSON");
    let case = doc["testcases"]
        .as_array()
        .expect("testcases")
        .iter()
        .find(|c| c["id"] == "rfc5280::validity::expired-root")
        .expect("the expired-root case");
    let result = run(case, parse_rfc3339(DEFAULT_TIME).unwrap());
    assert!(
        matches!(result, Err(VerifyError::ExpiredAnchor { .. })),
        "{result:?}"
    );
}

#[test]
fn rfc3339_parser() {
    let secs = |s: &str| {
        parse_rfc3339(s)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
    };
    assert_eq!(secs("1970-01-01T00:00:03+00:00"), Duration::from_secs(3));
    assert_eq!(
        secs("2024-03-01T00:00:00+00:00"),
        Duration::from_secs(1_709_251_200)
    );
    assert_eq!(
        secs("2024-04-01T00:00:00.005+00:00"),
        Duration::new(1_711_929_600, 5_000_000)
    );
    assert_eq!(
        secs("2000-02-29T12:30:45Z"),
        Duration::from_secs(951_827_445)
    );
    assert_eq!(
        secs("2000-02-29T14:30:45+02:00"),
        Duration::from_secs(951_827_445)
    );
    assert_eq!(
        secs("2000-02-29T10:30:45.123456789123-02:00"),
        Duration::new(951_827_445, 123_456_789)
    );
    for bad in [
        "",
        "2024-03-01",
        "2024-03-01T00:00:00",
        "2024-13-01T00:00:00Z",
        "2024-03-01T00:00:00.Z",
        "2024-03-01T00:00:00+0000",
        "1969-12-31T23:59:59Z",
        "2024-03-01X00:00:00Z",
    ] {
        assert!(parse_rfc3339(bad).is_none(), "{bad:?}");
    }
}
