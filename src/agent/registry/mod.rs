//! [`Registry`]: the registration entries, read from a TOML file, that say which
//! identities a caller receives.

mod error;
mod parse;
#[cfg(test)]
mod tests;

pub use error::RegistryError;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::agent::Selectors;
use crate::{SpiffeId, TrustDomain};

/// One registration entry: the identity a caller receives when it has every one of the
/// entry's selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    spiffe_id: SpiffeId,
    selectors: Selectors,
    ttl: Option<Duration>,
    dns_names: Vec<String>,
    hint: Option<String>,
    line: usize,
}

impl Entry {
    /// The identity issued: in the CA's trust domain, with a path.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// What a caller must have, every one of them, to receive this identity (never empty).
    pub fn selectors(&self) -> &Selectors {
        &self.selectors
    }

    /// The SVID lifetime asked for (at least
    /// [`Authority::MIN_SVID_TTL`](crate::Authority::MIN_SVID_TTL)); `None`: the agent's
    /// default.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// DNS SANs for the SVID (host names, no wildcards), in file order.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// The SVID's hint, to tell a workload's identities apart (the Workload API's `hint`).
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The 1-based line of the file the entry starts on.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// The registration entries of a node agent, checked and in file order.
///
/// An entry matches a caller when every selector of the entry is among the caller's (as
/// in SPIRE); a caller receives every entry that matches it, in file order, and the first
/// is its default identity.
///
/// The file holds one `[[entry]]` table per entry:
///
/// ```toml
/// [[entry]]
/// spiffe_id = "spiffe://example.org/web"   # in the CA's trust domain, with a path
/// selectors = ["unix:uid:1000"]             # at least one
/// ttl = "1h"                                # optional, at least 5s
/// dns_names = ["web.example.org"]           # optional, no wildcards
/// hint = "web"                              # optional
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// The largest entries file read (4 MiB).
    pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
    /// The most entries a file may hold.
    pub const MAX_ENTRIES: usize = 100_000;

    /// Reads and checks an entries file's text; IDs must belong to `trust_domain`, the
    /// CA's. A refusal names its rule and the line.
    ///
    /// ```
    /// use meshid::agent::{Registry, RegistryError, Selector, Selectors};
    /// use meshid::TrustDomain;
    ///
    /// let td = TrustDomain::new("example.org")?;
    /// let registry = Registry::parse(
    ///     r#"
    /// [[entry]]
    /// spiffe_id = "spiffe://example.org/web"
    /// selectors = ["unix:uid:1000"]
    ///
    /// [[entry]]
    /// spiffe_id = "spiffe://example.org/web-admin"
    /// selectors = ["unix:uid:1000", "unix:group:admin"]
    /// "#,
    ///     &td,
    /// )?;
    /// let caller: Selectors = [Selector::new("unix", "uid:1000"), Selector::new("unix", "gid:1000")]
    ///     .into_iter()
    ///     .collect();
    /// let ids: Vec<_> = registry.matching(&caller).map(|e| e.spiffe_id().as_str()).collect();
    /// assert_eq!(ids, ["spiffe://example.org/web"]);
    ///
    /// let err = Registry::parse("[[entry]]\nspiffe_id = \"spiffe://example.org/x\"\nselectors = [\"k8s:ns:prod\"]", &td)
    ///     .unwrap_err();
    /// assert!(matches!(err, RegistryError::UnknownSelectorType { line: 3, .. }));
    /// assert_eq!(err.to_string(), "line 3: unknown selector type \"k8s\" (known: unix)");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(text: &str, trust_domain: &TrustDomain) -> Result<Self, RegistryError> {
        parse::parse(text, trust_domain).map(|entries| Self { entries })
    }

    /// Reads the entries file at `path` and [`parse`](Self::parse)s it. A file over
    /// [`MAX_FILE_BYTES`](Self::MAX_FILE_BYTES) is refused before it is read whole (also
    /// one that grows while read).
    pub fn load(path: impl AsRef<Path>, trust_domain: &TrustDomain) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let io = |source| RegistryError::Io {
            path: path.to_owned(),
            source,
        };
        let too_large = RegistryError::TooLarge {
            max: Self::MAX_FILE_BYTES,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.len() > Self::MAX_FILE_BYTES {
            return Err(too_large);
        }
        let mut data = Vec::new();
        file.take(Self::MAX_FILE_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(io)?;
        if data.len() as u64 > Self::MAX_FILE_BYTES {
            return Err(too_large);
        }
        let text = String::from_utf8(data).map_err(|e| RegistryError::NotUtf8 {
            line: parse::Lines::new(e.as_bytes()).line(e.utf8_error().valid_up_to()),
        })?;
        Self::parse(&text, trust_domain)
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries for a caller with `caller`'s selectors: those whose every selector is
    /// among the caller's, in file order (the first is the caller's default identity).
    pub fn matching<'a>(&'a self, caller: &'a Selectors) -> impl Iterator<Item = &'a Entry> {
        self.entries
            .iter()
            .filter(move |entry| caller.includes(&entry.selectors))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
