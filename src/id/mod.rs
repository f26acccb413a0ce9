//! SPIFFE IDs and trust domains ([SPIFFE-ID §2]).
//!
//! [SPIFFE-ID §2]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#2-spiffe-identity

mod error;
mod parse;
#[cfg(feature = "serde")]
mod serde;
mod trust_domain;

use std::sync::Arc;

pub use error::IdError;
pub use trust_domain::TrustDomain;

/// The URI scheme of every SPIFFE ID, with its separator.
pub(crate) const SCHEME: &str = "spiffe://";
/// The longest SPIFFE ID accepted, in bytes ([SPIFFE-ID §2.3]).
///
/// [SPIFFE-ID §2.3]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#23-maximum-spiffe-id-length
pub const MAX_ID_LEN: usize = 2048;
/// The longest trust-domain name accepted, in bytes ([SPIFFE-ID §2.3]).
///
/// [SPIFFE-ID §2.3]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#23-maximum-spiffe-id-length
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// The traits both ID types share, all defined by one string view (`$text`), so that
/// `Eq`, `Ord`, `Hash` and `Borrow<str>` can never disagree with each other.
macro_rules! string_like {
    ($ty:ident, $text:ident) => {
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.$text())
            }
        }

        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.$text()).finish()
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.$text() == other.$text()
            }
        }

        impl Eq for $ty {}

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.$text() == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.$text() == *other
            }
        }

        impl PartialOrd for $ty {
            fn partial_cmp(&self, other: &Self) -> Option<::std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $ty {
            fn cmp(&self, other: &Self) -> ::std::cmp::Ordering {
                self.$text().cmp(other.$text())
            }
        }

        impl ::std::hash::Hash for $ty {
            fn hash<H: ::std::hash::Hasher>(&self, state: &mut H) {
                self.$text().hash(state);
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.$text()
            }
        }

        impl ::std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                self.$text()
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = IdError;

            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}
pub(crate) use string_like;

/// A validated SPIFFE ID: `spiffe://<trust-domain>[/<segment>...]`.
///
/// Parsing is strict: the scheme and trust domain must already be lowercase, as in
/// go-spiffe. [`SpiffeId::normalize`] is the explicit way to accept other letter cases
/// (the standard calls scheme and trust domain case-insensitive); it never touches the path,
/// which is case-sensitive.
///
/// A `SpiffeId` holds its text in one shared allocation: cloning it, taking its
/// [`trust_domain`](Self::trust_domain) and that trust domain's [`id`](TrustDomain::id)
/// copy no bytes. Equality, ordering and hashing are those of the string.
///
/// ```
/// use meshid::SpiffeId;
///
/// let id: SpiffeId = "spiffe://example.org/ns/default/sa/web".parse()?;
/// assert_eq!(id.trust_domain().name(), "example.org");
/// assert_eq!(id.path(), "/ns/default/sa/web");
/// assert_eq!(id.segments().collect::<Vec<_>>(), ["ns", "default", "sa", "web"]);
///
/// // Strict by default; normalization is explicit and leaves the path alone.
/// assert!("SPIFFE://Example.org/Web".parse::<SpiffeId>().is_err());
/// let id = SpiffeId::normalize("SPIFFE://Example.org/Web")?;
/// assert_eq!(id, "spiffe://example.org/Web");
/// # Ok::<(), meshid::IdError>(())
/// ```
#[derive(Clone)]
pub struct SpiffeId {
    /// The text; it may extend past `end` when this ID is a view of a longer one.
    buf: Arc<str>,
    /// End of `spiffe://<td>` in `buf`.
    td_end: u16,
    /// End of this ID in `buf`.
    end: u16,
}

impl SpiffeId {
    /// Parses a SPIFFE ID strictly (scheme and trust domain must be lowercase).
    pub fn new(id: &str) -> Result<Self, IdError> {
        let td_end = parse::validate_id(id.as_bytes())?;
        Ok(Self::from_validated(Arc::from(id), td_end))
    }

    /// Parses a SPIFFE ID strictly from bytes that need not be UTF-8: anything that is not
    /// ASCII is refused as a bad character at its offset.
    pub fn from_bytes(id: &[u8]) -> Result<Self, IdError> {
        let td_end = parse::validate_id(id)?;
        Ok(Self::from_validated(validated_ascii(id), td_end))
    }

    /// Parses a SPIFFE ID after lowercasing its scheme and trust domain (ASCII only). The
    /// path is kept as given. Every other rule applies as in [`SpiffeId::new`].
    ///
    /// ```
    /// # use meshid::SpiffeId;
    /// let id = SpiffeId::normalize("Spiffe://EXAMPLE.org/Billing/API")?;
    /// assert_eq!(id.as_str(), "spiffe://example.org/Billing/API");
    /// # Ok::<(), meshid::IdError>(())
    /// ```
    pub fn normalize(id: impl AsRef<[u8]>) -> Result<Self, IdError> {
        let lowered = parse::normalize(id.as_ref());
        let td_end = parse::validate_id(&lowered)?;
        Ok(Self::from_validated(validated_ascii(&lowered), td_end))
    }

    /// Builds `spiffe://<td>/<seg1>/<seg2>...`, validating each segment; no segment may
    /// contain `/`. With no segments it is the trust domain's own ID.
    ///
    /// ```
    /// # use meshid::{SpiffeId, TrustDomain};
    /// let td = TrustDomain::new("example.org")?;
    /// let id = SpiffeId::from_segments(&td, ["ns", "prod", "sa", "db"])?;
    /// assert_eq!(id, "spiffe://example.org/ns/prod/sa/db");
    /// assert!(SpiffeId::from_segments(&td, ["a/b"]).is_err());
    /// # Ok::<(), meshid::IdError>(())
    /// ```
    pub fn from_segments<I>(trust_domain: &TrustDomain, segments: I) -> Result<Self, IdError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut out = String::from(trust_domain.id().as_str());
        for seg in segments {
            push_segment(&mut out, seg.as_ref())?;
        }
        Self::from_built(out)
    }

    /// This ID with one more path segment, which is validated on its own (it may not contain
    /// `/`, be empty, or be `.`/`..`).
    ///
    /// ```
    /// # use meshid::SpiffeId;
    /// let ns: SpiffeId = "spiffe://example.org/ns/prod".parse()?;
    /// assert_eq!(ns.join("web")?, "spiffe://example.org/ns/prod/web");
    /// assert!(ns.join("..").is_err());
    /// # Ok::<(), meshid::IdError>(())
    /// ```
    pub fn join(&self, segment: &str) -> Result<Self, IdError> {
        parse::validate_segment(segment.as_bytes(), self.as_str().len())?;
        let mut out = String::with_capacity(self.as_str().len() + 1 + segment.len());
        out.push_str(self.as_str());
        out.push('/');
        out.push_str(segment);
        Self::from_built(out)
    }

    /// The ID as a string, in canonical form.
    pub fn as_str(&self) -> &str {
        &self.buf[..usize::from(self.end)]
    }

    /// The trust domain this ID belongs to (no allocation).
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain::from_shared(Arc::clone(&self.buf), self.td_end)
    }

    /// The trust-domain name, such as `example.org`.
    pub fn trust_domain_name(&self) -> &str {
        &self.buf[SCHEME.len()..usize::from(self.td_end)]
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.buf[usize::from(self.td_end)..usize::from(self.end)]
    }

    /// The path segments, in order; none for a trust-domain ID.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.path().split('/').skip(1)
    }

    /// Whether the path is empty, that is, this is the ID of a trust domain itself. Such an
    /// ID names a trust domain (and its CAs), never a workload.
    pub fn is_trust_domain_id(&self) -> bool {
        self.td_end == self.end
    }

    /// Whether this ID belongs to `trust_domain`.
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain_name() == trust_domain.name()
    }

    fn from_validated(buf: Arc<str>, td_end: usize) -> Self {
        let end = u16::try_from(buf.len()).expect("validated: at most MAX_ID_LEN bytes");
        let td_end = u16::try_from(td_end).expect("validated: at most MAX_ID_LEN bytes");
        Self { buf, td_end, end }
    }

    pub(crate) fn from_shared(buf: Arc<str>, td_end: u16, end: u16) -> Self {
        Self { buf, td_end, end }
    }

    /// Validates a string built from already-checked parts (a second line of defence: the
    /// whole ID passes the same validator as parsed input).
    fn from_built(out: String) -> Result<Self, IdError> {
        let td_end = parse::validate_id(out.as_bytes())?;
        Ok(Self::from_validated(Arc::from(out), td_end))
    }
}

fn push_segment(out: &mut String, seg: &str) -> Result<(), IdError> {
    parse::validate_segment(seg.as_bytes(), out.len())?;
    out.push('/');
    out.push_str(seg);
    Ok(())
}

/// Turns validated bytes (all ASCII) into shared text. The lossy conversion borrows valid
/// UTF-8 as it is, so it copies nothing extra and has no failure path.
fn validated_ascii(bytes: &[u8]) -> Arc<str> {
    Arc::from(&*String::from_utf8_lossy(bytes))
}

string_like!(SpiffeId, as_str);

impl TryFrom<String> for SpiffeId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, IdError> {
        Self::from_built(s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).unwrap()
    }

    #[test]
    fn accessors() {
        let x = id("spiffe://example.org/ns/default/sa/web");
        assert_eq!(x.as_str(), "spiffe://example.org/ns/default/sa/web");
        assert_eq!(x.trust_domain_name(), "example.org");
        assert_eq!(x.trust_domain(), TrustDomain::new("example.org").unwrap());
        assert_eq!(x.path(), "/ns/default/sa/web");
        assert_eq!(
            x.segments().collect::<Vec<_>>(),
            ["ns", "default", "sa", "web"]
        );
        assert!(!x.is_trust_domain_id());
        let root = id("spiffe://example.org");
        assert_eq!(root.path(), "");
        assert_eq!(root.segments().count(), 0);
        assert!(root.is_trust_domain_id());
        assert_eq!(x.trust_domain().id(), root);
    }

    #[test]
    fn views_compare_hash_and_display_as_their_own_text() {
        let x = id("spiffe://example.org/a/b");
        let td_id = x.trust_domain().id();
        assert_eq!(td_id.as_str(), "spiffe://example.org");
        assert_eq!(td_id.to_string(), "spiffe://example.org");
        assert_eq!(format!("{td_id:?}"), "SpiffeId(\"spiffe://example.org\")");
        let mut set = HashSet::new();
        set.insert(td_id.clone());
        assert!(set.contains(&id("spiffe://example.org")));
        assert!(set.contains("spiffe://example.org"));
        assert_eq!(td_id.join("a").unwrap().join("b").unwrap(), x);
        assert!(td_id < x);
    }

    #[test]
    fn membership() {
        let td = TrustDomain::new("example.org").unwrap();
        assert!(id("spiffe://example.org/a").is_member_of(&td));
        assert!(id("spiffe://example.org").is_member_of(&td));
        assert!(!id("spiffe://example.org.evil/a").is_member_of(&td));
        assert!(!id("spiffe://other.org/a").is_member_of(&td));
    }

    #[test]
    fn from_segments_and_join_validate_each_segment() {
        let td = TrustDomain::new("td").unwrap();
        assert_eq!(
            SpiffeId::from_segments(&td, Vec::<String>::new()).unwrap(),
            "spiffe://td"
        );
        assert_eq!(
            SpiffeId::from_segments(&td, ["a", "B"]).unwrap(),
            "spiffe://td/a/B"
        );
        assert_eq!(
            SpiffeId::from_segments(&td, ["a", "b/c"]),
            Err(IdError::BadPathChar {
                byte: b'/',
                offset: 15
            })
        );
        assert_eq!(
            SpiffeId::from_segments(&td, ["a", ""]),
            Err(IdError::EmptySegment { offset: 14 })
        );
        assert_eq!(
            SpiffeId::from_segments(&td, [".."]),
            Err(IdError::DotSegment { offset: 12 })
        );
        // The length is checked before the characters and before any allocation.
        let long = format!("{} ", "x".repeat(5000));
        assert_eq!(
            id("spiffe://td").join(&long),
            Err(IdError::TooLong { len: 5013 })
        );
        let fits = "x".repeat(MAX_ID_LEN - 12);
        assert_eq!(
            id("spiffe://td").join(&fits).unwrap().as_str().len(),
            MAX_ID_LEN
        );
        assert!(SpiffeId::from_segments(&TrustDomain::new("td").unwrap(), [&fits, "y"]).is_err());
        assert_eq!(
            id("spiffe://td/a").join("%41"),
            Err(IdError::PercentEncoding { offset: 14 })
        );
    }

    #[test]
    fn bytes_and_normalize() {
        assert_eq!(
            SpiffeId::from_bytes(b"spiffe://td/a").unwrap(),
            "spiffe://td/a"
        );
        assert!(SpiffeId::from_bytes(b"spiffe://td/\x80").is_err());
        let n = SpiffeId::normalize("SPIFFE://TD.Org/Keep/Case").unwrap();
        assert_eq!(n, "spiffe://td.org/Keep/Case");
        assert_eq!(SpiffeId::normalize(n.as_str()).unwrap(), n);
        assert_eq!(SpiffeId::normalize("HTTP://td/a"), Err(IdError::BadScheme));
        assert_eq!(
            SpiffeId::normalize("spiffe://T D/a"),
            Err(IdError::BadTrustDomainChar {
                byte: b' ',
                offset: 10
            })
        );
    }

    #[test]
    fn conversions() {
        let a: SpiffeId = "spiffe://td/a".parse().unwrap();
        let b = SpiffeId::try_from("spiffe://td/a").unwrap();
        let c = SpiffeId::try_from(String::from("spiffe://td/a")).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(String::from(c), "spiffe://td/a");
        let r: &str = a.as_ref();
        assert_eq!(r, "spiffe://td/a");
    }
}
