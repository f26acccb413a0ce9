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
    pub fn normalize(name_or_id: &str) -> Result<Self, IdError> {
        Self::parse(&name_or_id.to_ascii_lowercase().into_bytes())
    }

    fn parse(input: &[u8]) -> Result<Self, IdError> {
        if input.is_empty() {
            return Err(IdError::EmptyTrustDomain);
        }
        if input.len() >= SCHEME.len()
            && input[..SCHEME.len()].eq_ignore_ascii_case(SCHEME.as_bytes())
        {
            let id = SpiffeId::from_bytes(input)?;
            return if id.is_trust_domain_id() {
                Ok(id.trust_domain())
            } else {
                Err(IdError::PathInTrustDomain {
                    offset: id.as_str().len() - id.path().len(),
                })
            };
        }
        if input.windows(3).any(|w| w == b"://") {
            // Some other scheme: `https://example.org` is not a trust-domain name.
            return Err(IdError::BadScheme);
        }
        let end = parse::scan_trust_domain(input, 0)?;
        if end != input.len() {
            return Err(IdError::BadTrustDomainChar {
                byte: input[end],
                offset: end,
            });
        }
        let mut text = String::with_capacity(SCHEME.len() + input.len());
        text.push_str(SCHEME);
        text.push_str(&String::from_utf8_lossy(input));
        let end = u16::try_from(text.len()).unwrap_or(u16::MAX);
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
