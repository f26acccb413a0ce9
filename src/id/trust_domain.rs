//! Trust domains ([SPIFFE-ID §2.1]).
//!
//! [SPIFFE-ID §2.1]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#21-trust-domain

use std::sync::Arc;

use super::{parse, string_like, IdError, SpiffeId, SCHEME};

/// A validated trust-domain name such as `example.org`: `[a-z0-9._-]`, 1 to 255 bytes.
///
/// It displays as its name. Like [`SpiffeId`], it shares its text: cloning it and taking its
/// [`id`](Self::id) copy no bytes. Equality, ordering and hashing are those of the name, so
/// a map keyed by `TrustDomain` can be searched with a `&str` name.
///
/// ```
/// use meshid::TrustDomain;
///
/// let td = TrustDomain::new("example.org")?;
/// assert_eq!(td.to_string(), "example.org");
/// assert_eq!(td.id().as_str(), "spiffe://example.org");
/// // The trust domain's own SPIFFE ID is accepted too, but not an ID with a path.
/// assert_eq!(TrustDomain::new("spiffe://example.org")?, td);
/// assert!(TrustDomain::new("spiffe://example.org/web").is_err());
/// # Ok::<(), meshid::IdError>(())
/// ```
#[derive(Clone)]
pub struct TrustDomain {
    /// `spiffe://<name>`, possibly followed by the path of the ID this was taken from.
    buf: Arc<str>,
    /// End of `spiffe://<name>` in `buf`.
    end: u16,
}

impl TrustDomain {
    /// Parses a trust domain given by name (`example.org`) or as its SPIFFE ID
    /// (`spiffe://example.org`), strictly: it must already be lowercase.
    pub fn new(name_or_id: &str) -> Result<Self, IdError> {
        Self::parse(name_or_id.as_bytes())
    }

    /// Like [`TrustDomain::new`] after lowercasing the name (and scheme) in ASCII.
    pub fn normalize(name_or_id: impl AsRef<[u8]>) -> Result<Self, IdError> {
        Self::parse(&name_or_id.as_ref().to_ascii_lowercase())
    }

    fn parse(input: &[u8]) -> Result<Self, IdError> {
        if parse::has_scheme_any_case(input) {
            let id = SpiffeId::from_bytes(input).map_err(|e| match e {
                // A path is the wrong thing to give, whatever is wrong inside it.
                IdError::EmptySegment { .. }
                | IdError::DotSegment { .. }
                | IdError::TrailingSlash
                | IdError::BadPathChar { .. } => path_error(input),
                e => e,
            })?;
            return if id.is_trust_domain_id() {
                Ok(id.trust_domain())
            } else {
                Err(path_error(input))
            };
        }
        if input.windows(3).any(|w| w == b"://") || starts_with_any_case(input, b"spiffe:") {
            // `https://example.org` or `spiffe:/x` is neither a name nor a SPIFFE ID.
            return Err(IdError::BadScheme);
        }
        parse::validate_trust_domain_name(input)?;
        let mut text = String::with_capacity(SCHEME.len() + input.len());
        text.push_str(SCHEME);
        text.push_str(&String::from_utf8_lossy(input));
        let end = u16::try_from(text.len()).expect("validated: at most 264 bytes");
        Ok(Self {
            buf: Arc::from(text),
            end,
        })
    }

    pub(super) fn from_shared(buf: Arc<str>, end: u16) -> Self {
        Self { buf, end }
    }

    /// The name, such as `example.org`.
    pub fn name(&self) -> &str {
        &self.buf[SCHEME.len()..usize::from(self.end)]
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>` (no allocation).
    pub fn id(&self) -> SpiffeId {
        SpiffeId::from_shared(Arc::clone(&self.buf), self.end, self.end)
    }
}

string_like!(TrustDomain, name);

/// The error for a SPIFFE ID given where a trust domain was expected: it points at the
/// first `/` after the scheme.
fn path_error(input: &[u8]) -> IdError {
    let offset = input[SCHEME.len()..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(input.len(), |p| p + SCHEME.len());
    IdError::PathInTrustDomain { offset }
}

fn starts_with_any_case(input: &[u8], prefix: &[u8]) -> bool {
    input
        .get(..prefix.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
}

impl TryFrom<String> for TrustDomain {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_and_ids() {
        let td = TrustDomain::new("example.org").unwrap();
        assert_eq!(td.name(), "example.org");
        assert_eq!(td.id(), "spiffe://example.org");
        assert!(td.id().is_trust_domain_id());
        assert_eq!(TrustDomain::new("spiffe://example.org").unwrap(), td);
        assert_eq!(format!("{td:?}"), "TrustDomain(\"example.org\")");
    }

    #[test]
    fn refusals_name_the_rule() {
        assert_eq!(TrustDomain::new(""), Err(IdError::EmptyTrustDomain));
        assert_eq!(
            TrustDomain::new("spiffe://"),
            Err(IdError::EmptyTrustDomain)
        );
        assert_eq!(
            TrustDomain::new("Example.org"),
            Err(IdError::BadTrustDomainChar {
                byte: b'E',
                offset: 0
            })
        );
        assert_eq!(
            TrustDomain::new("example.org:443"),
            Err(IdError::PortOrUserinfo {
                byte: b':',
                offset: 11
            })
        );
        assert_eq!(
            TrustDomain::new("example.org/a"),
            Err(IdError::BadTrustDomainChar {
                byte: b'/',
                offset: 11
            })
        );
        assert_eq!(
            TrustDomain::new("spiffe://example.org/a"),
            Err(IdError::PathInTrustDomain { offset: 20 })
        );
        assert_eq!(
            TrustDomain::new("https://example.org"),
            Err(IdError::BadScheme)
        );
        assert_eq!(
            TrustDomain::new("SPIFFE://example.org"),
            Err(IdError::SchemeNotLowercase)
        );
        assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
        assert_eq!(
            TrustDomain::new(&"a".repeat(256)),
            Err(IdError::TrustDomainTooLong { len: 256 })
        );
    }

    #[test]
    fn normalize_lowercases() {
        assert_eq!(
            TrustDomain::normalize("Example.ORG").unwrap().name(),
            "example.org"
        );
        assert_eq!(
            TrustDomain::normalize("SPIFFE://Example.ORG")
                .unwrap()
                .name(),
            "example.org"
        );
    }

    #[test]
    fn map_lookup_by_name() {
        let mut m = HashMap::new();
        m.insert(TrustDomain::new("a.org").unwrap(), 1);
        assert_eq!(m.get("a.org"), Some(&1));
        let from_id = SpiffeId::new("spiffe://a.org/x/y").unwrap().trust_domain();
        assert_eq!(m.get(&from_id), Some(&1));
    }
}
