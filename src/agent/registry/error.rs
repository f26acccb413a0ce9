//! [`RegistryError`]: why an entries file was refused.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::time::TimeError;
use crate::{IdError, SpiffeId, TrustDomain};

/// Why an entries file was refused: one variant per rule, with the 1-based line it broke
/// on wherever there is one ([`line`](Self::line)).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is larger than [`Registry::MAX_FILE_BYTES`](super::Registry::MAX_FILE_BYTES);
    /// refused before it is read whole.
    #[error("the entries file is over the {max}-byte limit")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8 (TOML is).
    #[error("line {line}: not UTF-8")]
    NotUtf8 {
        /// The line of the first byte that is not.
        line: usize,
    },
    /// The file is not valid TOML (or repeats a key).
    #[error("{}invalid TOML: {message}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Toml {
        /// Where the TOML parser stopped, when it says.
        line: Option<usize>,
        /// What the TOML parser said.
        message: String,
    },
    /// A key that has no meaning here: at the top level only `[[entry]]` tables are
    /// allowed, and an entry has only the keys listed in `allowed`.
    #[error("line {line}: unknown key {key:?} (allowed: {allowed})")]
    UnknownKey {
        /// The key's line.
        line: usize,
        /// The key.
        key: String,
        /// The keys allowed there.
        allowed: &'static str,
    },
    /// A value of the wrong TOML type (`selectors = "unix:uid:0"`, `ttl = 3600`).
    #[error("line {line}: {key} must be {expected}")]
    WrongType {
        /// The value's line.
        line: usize,
        /// The key it was given for.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The entry has no `spiffe_id`.
    #[error("line {line}: the entry has no spiffe_id")]
    MissingSpiffeId {
        /// The entry's line.
        line: usize,
    },
    /// The `spiffe_id` is not a valid SPIFFE ID.
    #[error("line {line}: invalid spiffe_id {id:?}: {source}")]
    InvalidSpiffeId {
        /// The value's line.
        line: usize,
        /// The text given.
        id: String,
        /// The rule it breaks.
        source: IdError,
    },
    /// The `spiffe_id` belongs to another trust domain than the CA's.
    #[error("line {line}: {id} is outside the trust domain {trust_domain}")]
    ForeignTrustDomain {
        /// The value's line.
        line: usize,
        /// The ID.
        id: SpiffeId,
        /// The CA's trust domain.
        trust_domain: TrustDomain,
    },
    /// The `spiffe_id` has no path: it names the trust domain, not a workload.
    #[error("line {line}: {id} names the trust domain, not a workload (the ID needs a path)")]
    TrustDomainId {
        /// The value's line.
        line: usize,
        /// The ID.
        id: SpiffeId,
    },
    /// The entry has no selectors (missing or empty): it would match every caller.
    #[error("line {line}: the entry has no selectors (at least one is required)")]
    NoSelectors {
        /// The line of the entry or of its empty list.
        line: usize,
    },
    /// A selector without `:` between its type and value.
    #[error("line {line}: malformed selector {selector:?} (type:value, as unix:uid:1000)")]
    MalformedSelector {
        /// The selector's line.
        line: usize,
        /// The text given.
        selector: String,
    },
    /// A selector type no attestor here produces.
    #[error("line {line}: unknown selector type {kind:?} (known: unix)")]
    UnknownSelectorType {
        /// The selector's line.
        line: usize,
        /// The type given.
        kind: String,
    },
    /// A `unix` selector the unix attestor does not produce.
    #[error(
        "line {line}: unknown unix selector {key:?} (known: uid, user, gid, group, supplementary_gid, supplementary_group, path, sha256)"
    )]
    UnknownUnixKey {
        /// The selector's line.
        line: usize,
        /// The key given (`unix:KEY:value`).
        key: String,
    },
    /// A `unix` selector whose value can never be what the attestor reports.
    #[error("line {line}: bad selector {selector:?}: {reason}")]
    BadSelectorValue {
        /// The selector's line.
        line: usize,
        /// The selector.
        selector: String,
        /// What the value must be.
        reason: &'static str,
    },
    /// The `ttl` is not a duration such as `1h`.
    #[error("line {line}: bad ttl: {source}")]
    BadTtl {
        /// The value's line.
        line: usize,
        /// Why it is not a duration.
        source: TimeError,
    },
    /// The `ttl` is under [`Authority::MIN_SVID_TTL`](crate::Authority::MIN_SVID_TTL).
    #[error("line {line}: ttl {}s is under the minimum of {}s", ttl.as_secs(), min.as_secs())]
    TtlTooShort {
        /// The value's line.
        line: usize,
        /// The ttl given.
        ttl: Duration,
        /// The minimum.
        min: Duration,
    },
    /// A `dns_names` element that is not a DNS host name (or is a wildcard).
    #[error(
        "line {line}: bad DNS name {name:?} (letters, digits and inner hyphens in dot-separated labels of at most 63 bytes, 253 in all; no wildcard)"
    )]
    BadDnsName {
        /// The name's line.
        line: usize,
        /// The name.
        name: String,
    },
    /// An entry with the same `spiffe_id` and the same selectors as an earlier one.
    #[error(
        "line {line}: duplicate entry: the entry on line {first_line} has the same spiffe_id ({id}) and selectors"
    )]
    Duplicate {
        /// The later entry's line.
        line: usize,
        /// The earlier entry's line.
        first_line: usize,
        /// Their ID.
        id: SpiffeId,
    },
    /// More entries than [`Registry::MAX_ENTRIES`](super::Registry::MAX_ENTRIES).
    #[error("line {line}: more than {max} entries")]
    TooManyEntries {
        /// The line of the first entry over the limit.
        line: usize,
        /// The limit.
        max: usize,
    },
}

impl RegistryError {
    /// The 1-based line of the file the refusal is about, where there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Io { .. } | Self::TooLarge { .. } => None,
            Self::Toml { line, .. } => *line,
            Self::NotUtf8 { line }
            | Self::UnknownKey { line, .. }
            | Self::WrongType { line, .. }
            | Self::MissingSpiffeId { line }
            | Self::InvalidSpiffeId { line, .. }
            | Self::ForeignTrustDomain { line, .. }
            | Self::TrustDomainId { line, .. }
            | Self::NoSelectors { line }
            | Self::MalformedSelector { line, .. }
            | Self::UnknownSelectorType { line, .. }
            | Self::UnknownUnixKey { line, .. }
            | Self::BadSelectorValue { line, .. }
            | Self::BadTtl { line, .. }
            | Self::TtlTooShort { line, .. }
            | Self::BadDnsName { line, .. }
            | Self::Duplicate { line, .. }
            | Self::TooManyEntries { line, .. } => Some(*line),
        }
    }
}
