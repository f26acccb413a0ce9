//! Authorizers: which peer SPIFFE IDs a workload accepts once their SVID has verified.
//!
//! Verification says *who* the peer is; an [`Authorizer`] says whether that identity may
//! talk to us. Build one from the constructors here and combine them with
//! [`Authorizer::or`] and [`Authorizer::and`], or write a closure.
//!
//! ```
//! use meshid::authorize::{self, Authorizer};
//! use meshid::{SpiffeId, TrustDomain};
//!
//! // Any member of example.org, or the admin ID of ops.org.
//! let policy = authorize::member_of(TrustDomain::new("example.org")?)
//!     .or(authorize::exact(SpiffeId::new("spiffe://ops.org/admin")?));
//!
//! assert!(policy.authorize(&SpiffeId::new("spiffe://example.org/web")?).is_ok());
//! assert!(policy.authorize(&SpiffeId::new("spiffe://ops.org/admin")?).is_ok());
//! let refused = policy.authorize(&SpiffeId::new("spiffe://ops.org/intern")?).unwrap_err();
//! assert_eq!(refused.id().as_str(), "spiffe://ops.org/intern");
//! # Ok::<(), meshid::IdError>(())
//! ```

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use thiserror::Error;

use crate::{SpiffeId, TrustDomain};

/// Decides whether a verified peer identity is allowed.
///
/// Implemented by the constructors of this module, by their combinations, by
/// `Box<dyn Authorizer>` and `Arc<dyn Authorizer>`, and by any closure
/// `Fn(&SpiffeId) -> Result<(), Unauthorized> + Send + Sync`:
///
/// ```
/// use meshid::authorize::{Authorizer, Refusal, Unauthorized};
/// use meshid::SpiffeId;
///
/// let no_interns = |id: &SpiffeId| {
///     if id.segments().any(|s| s == "intern") {
///         Err(Unauthorized::new(id.clone(), Refusal::Policy("no interns".into())))
///     } else {
///         Ok(())
///     }
/// };
/// assert!(no_interns.authorize(&"spiffe://td/intern/bob".parse()?).is_err());
/// # Ok::<(), meshid::IdError>(())
/// ```
pub trait Authorizer: Send + Sync {
    /// `Ok(())` when `id` is allowed; otherwise why not.
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized>;

    /// Allows what `self` allows or what `other` allows (`other` is asked only when `self`
    /// refuses). When both refuse, the error lists both reasons.
    fn or<B: Authorizer>(self, other: B) -> Or<Self, B>
    where
        Self: Sized,
    {
        Or(self, other)
    }

    /// Allows only what both `self` and `other` allow; the first refusal is returned.
    fn and<B: Authorizer>(self, other: B) -> And<Self, B>
    where
        Self: Sized,
    {
        And(self, other)
    }
}

impl<F> Authorizer for F
where
    F: Fn(&SpiffeId) -> Result<(), Unauthorized> + Send + Sync,
{
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        self(id)
    }
}

impl Authorizer for Box<dyn Authorizer> {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        (**self).authorize(id)
    }
}

impl Authorizer for std::sync::Arc<dyn Authorizer> {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        (**self).authorize(id)
    }
}

/// A peer ID was refused: which ID, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("peer {id} is not authorized: {refusal}")]
pub struct Unauthorized {
    id: SpiffeId,
    refusal: Refusal,
}

impl Unauthorized {
    /// A refusal of `id` for `refusal`.
    pub fn new(id: SpiffeId, refusal: Refusal) -> Self {
        Self { id, refusal }
    }

    /// The refused ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// Why it was refused.
    pub fn refusal(&self) -> &Refusal {
        &self.refusal
    }
}

/// Why an authorizer refused an ID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// [`exact`]: the ID is not the one expected.
    NotExact {
        /// The only ID allowed.
        expected: SpiffeId,
    },
    /// [`one_of`]: the ID is not in the allowed set.
    NotOneOf {
        /// How many IDs the set holds.
        allowed: usize,
    },
    /// [`member_of`]: the ID belongs to another trust domain.
    NotMemberOf {
        /// The trust domain required.
        trust_domain: TrustDomain,
    },
    /// [`path_prefix`]: the ID is not the prefix nor below it on a segment boundary.
    NotUnderPrefix {
        /// The prefix required.
        prefix: SpiffeId,
    },
    /// [`member_of`] and [`path_prefix`]: the ID is a trust domain's own ID (it has no
    /// path), which names a trust domain, never a workload (X509-SVID §2).
    TrustDomainId,
    /// [`Authorizer::or`]: every alternative refused; their reasons, in order.
    NoAlternative(Vec<Refusal>),
    /// A user-defined policy (such as a closure) refused; the text names that policy.
    Policy(Cow<'static, str>),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotExact { expected } => write!(f, "only {expected} is allowed"),
            Self::NotOneOf { allowed } => write!(f, "not one of the {allowed} allowed IDs"),
            Self::NotMemberOf { trust_domain } => {
                write!(f, "not a member of trust domain {trust_domain}")
            }
            Self::NotUnderPrefix { prefix } => write!(f, "not {prefix} or below it"),
            Self::TrustDomainId => f.write_str("a trust-domain ID names no workload"),
            Self::NoAlternative(all) => {
                f.write_str("no alternative allows it (")?;
                for (i, r) in all.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{r}")?;
                }
                f.write_str(")")
            }
            Self::Policy(why) => write!(f, "refused by policy: {why}"),
        }
    }
}

/// Allows every ID. Use it only where the verified trust domain is the whole policy.
pub fn any() -> Any {
    Any
}

/// Allows exactly `id`.
pub fn exact(id: SpiffeId) -> Exact {
    Exact(id)
}

/// Allows the IDs in `ids`.
pub fn one_of<I: IntoIterator<Item = SpiffeId>>(ids: I) -> OneOf {
    OneOf(ids.into_iter().collect())
}

/// Allows every workload ID of `trust_domain` (not the trust domain's own ID).
pub fn member_of(trust_domain: TrustDomain) -> MemberOf {
    MemberOf(trust_domain)
}

/// Allows `prefix` itself and every ID below it, on segment boundaries only:
/// `spiffe://td/ns/a` allows `spiffe://td/ns/a/web` but not `spiffe://td/ns/ab`. A trust
/// domain's own ID is never allowed, even when it is the prefix.
pub fn path_prefix(prefix: SpiffeId) -> PathPrefix {
    PathPrefix(prefix)
}

/// See [`any`].
#[derive(Debug, Clone, Copy)]
pub struct Any;

/// See [`exact`].
#[derive(Debug, Clone)]
pub struct Exact(SpiffeId);

/// See [`one_of`].
#[derive(Debug, Clone)]
pub struct OneOf(BTreeSet<SpiffeId>);

/// See [`member_of`].
#[derive(Debug, Clone)]
pub struct MemberOf(TrustDomain);

/// See [`path_prefix`].
#[derive(Debug, Clone)]
pub struct PathPrefix(SpiffeId);

/// See [`Authorizer::or`].
#[derive(Debug, Clone)]
pub struct Or<A, B>(A, B);

/// See [`Authorizer::and`].
#[derive(Debug, Clone)]
pub struct And<A, B>(A, B);

fn refuse(id: &SpiffeId, refusal: Refusal) -> Result<(), Unauthorized> {
    Err(Unauthorized::new(id.clone(), refusal))
}

impl Authorizer for Any {
    fn authorize(&self, _: &SpiffeId) -> Result<(), Unauthorized> {
        Ok(())
    }
}

impl Authorizer for Exact {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        if *id == self.0 {
            return Ok(());
        }
        refuse(
            id,
            Refusal::NotExact {
                expected: self.0.clone(),
            },
        )
    }
}

impl Authorizer for OneOf {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        if self.0.contains(id) {
            return Ok(());
        }
        refuse(
            id,
            Refusal::NotOneOf {
                allowed: self.0.len(),
            },
        )
    }
}

impl Authorizer for MemberOf {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        if id.is_trust_domain_id() {
            return refuse(id, Refusal::TrustDomainId);
        }
        if id.is_member_of(&self.0) {
            return Ok(());
        }
        refuse(
            id,
            Refusal::NotMemberOf {
                trust_domain: self.0.clone(),
            },
        )
    }
}

impl Authorizer for PathPrefix {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        if id.is_trust_domain_id() {
            return refuse(id, Refusal::TrustDomainId);
        }
        // Whole-string comparison covers the trust domain too; the byte after the prefix
        // must end a segment, so `/ns/a` never matches `/ns/ab` nor `td` match `td.evil`.
        let below = id
            .as_str()
            .strip_prefix(self.0.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if below {
            return Ok(());
        }
        refuse(
            id,
            Refusal::NotUnderPrefix {
                prefix: self.0.clone(),
            },
        )
    }
}

impl<A: Authorizer, B: Authorizer> Authorizer for Or<A, B> {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        let Err(first) = self.0.authorize(id) else {
            return Ok(());
        };
        let Err(second) = self.1.authorize(id) else {
            return Ok(());
        };
        let mut all = Vec::new();
        for refusal in [first.refusal, second.refusal] {
            match refusal {
                Refusal::NoAlternative(inner) => all.extend(inner),
                other => all.push(other),
            }
        }
        refuse(id, Refusal::NoAlternative(all))
    }
}

impl<A: Authorizer, B: Authorizer> Authorizer for And<A, B> {
    fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        self.0.authorize(id)?;
        self.1.authorize(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).unwrap()
    }

    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).unwrap()
    }

    #[test]
    fn any_allows_everything() {
        assert!(any().authorize(&id("spiffe://x/y")).is_ok());
    }

    #[test]
    fn exact_and_one_of() {
        let a = exact(id("spiffe://td/a"));
        assert!(a.authorize(&id("spiffe://td/a")).is_ok());
        let e = a.authorize(&id("spiffe://td/a/b")).unwrap_err();
        assert_eq!(e.id(), &id("spiffe://td/a/b"));
        assert_eq!(
            e.refusal(),
            &Refusal::NotExact {
                expected: id("spiffe://td/a")
            }
        );
        let set = one_of([id("spiffe://td/a"), id("spiffe://td/b")]);
        assert!(set.authorize(&id("spiffe://td/b")).is_ok());
        let e = set.authorize(&id("spiffe://td/c")).unwrap_err();
        assert_eq!(e.refusal(), &Refusal::NotOneOf { allowed: 2 });
        assert!(e.to_string().contains("spiffe://td/c"), "{e}");
    }

    #[test]
    fn member_of_is_exact_on_the_trust_domain() {
        let m = member_of(td("example.org"));
        assert!(m.authorize(&id("spiffe://example.org/a")).is_ok());
        assert_eq!(
            m.authorize(&id("spiffe://example.org"))
                .unwrap_err()
                .refusal(),
            &Refusal::TrustDomainId
        );
        assert!(m.authorize(&id("spiffe://example.org.evil/a")).is_err());
        assert!(m.authorize(&id("spiffe://sub.example.org/a")).is_err());
    }

    #[test]
    fn path_prefix_matches_on_segment_boundaries_only() {
        let p = path_prefix(id("spiffe://td/ns/a"));
        assert!(p.authorize(&id("spiffe://td/ns/a")).is_ok());
        assert!(p.authorize(&id("spiffe://td/ns/a/web")).is_ok());
        assert!(p.authorize(&id("spiffe://td/ns/ab")).is_err());
        assert!(p.authorize(&id("spiffe://td/ns")).is_err());
        assert!(p.authorize(&id("spiffe://other/ns/a")).is_err());
        let whole = path_prefix(id("spiffe://td"));
        assert!(whole.authorize(&id("spiffe://td/x")).is_ok());
        assert!(whole.authorize(&id("spiffe://td.evil/x")).is_err());
        assert_eq!(
            whole.authorize(&id("spiffe://td")).unwrap_err().refusal(),
            &Refusal::TrustDomainId
        );
    }

    #[test]
    fn composition() {
        let p = member_of(td("example.org")).or(exact(id("spiffe://ops.org/admin")));
        assert!(p.authorize(&id("spiffe://example.org/web")).is_ok());
        assert!(p.authorize(&id("spiffe://ops.org/admin")).is_ok());
        let e = p.authorize(&id("spiffe://ops.org/intern")).unwrap_err();
        assert_eq!(
            e.refusal(),
            &Refusal::NoAlternative(vec![
                Refusal::NotMemberOf {
                    trust_domain: td("example.org")
                },
                Refusal::NotExact {
                    expected: id("spiffe://ops.org/admin")
                },
            ])
        );
        // Nested `or`s flatten into one list.
        let three = p.or(exact(id("spiffe://x/y")));
        let e = three.authorize(&id("spiffe://z/z")).unwrap_err();
        assert!(matches!(e.refusal(), Refusal::NoAlternative(v) if v.len() == 3));

        let both = member_of(td("td")).and(path_prefix(id("spiffe://td/ns/prod")));
        assert!(both.authorize(&id("spiffe://td/ns/prod/db")).is_ok());
        let e = both.authorize(&id("spiffe://td/ns/dev/db")).unwrap_err();
        assert!(matches!(e.refusal(), Refusal::NotUnderPrefix { .. }));
    }

    #[test]
    fn closures_and_boxes() {
        let deny = |id: &SpiffeId| refuse(id, Refusal::Policy("deny all".into()));
        let boxed: Box<dyn Authorizer> = Box::new(any().and(deny));
        let e = boxed.authorize(&id("spiffe://td/a")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer spiffe://td/a is not authorized: refused by policy: deny all"
        );
        // A shared policy is an authorizer too, and composes.
        let shared: std::sync::Arc<dyn Authorizer> =
            std::sync::Arc::new(exact(id("spiffe://td/a")));
        let either = std::sync::Arc::clone(&shared).or(exact(id("spiffe://td/b")));
        assert!(either.authorize(&id("spiffe://td/b")).is_ok());
        assert!(shared.authorize(&id("spiffe://td/b")).is_err());
    }
}
