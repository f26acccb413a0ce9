//! [`Selector`] and [`Selectors`]: how callers and registration entries are described.

use std::collections::BTreeSet;
use std::fmt;

/// One fact about a caller, as SPIRE writes it: a type and a value, `type:value` in text
/// (`unix:uid:1000`: type `unix`, value `uid:1000`).
///
/// ```
/// use meshid::agent::Selector;
///
/// let s = Selector::new("unix", "uid:1000");
/// assert_eq!(s.to_string(), "unix:uid:1000");
/// assert_eq!(s.kind(), "unix");
/// assert_eq!(s.value(), "uid:1000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    kind: String,
    value: String,
}

impl Selector {
    /// A selector of type `kind` (`unix`) with `value` (`uid:1000`). Checking that the
    /// pair means something is the registry's job.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }

    /// The type: which attestor produces it (`unix`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The value (`uid:1000`).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// A set of selectors: what an attestor found out about a caller, or what a registration
/// entry requires of one.
///
/// ```
/// use meshid::agent::{Selector, Selectors};
///
/// let caller: Selectors = [Selector::new("unix", "uid:1000"), Selector::new("unix", "gid:1000")]
///     .into_iter()
///     .collect();
/// let entry: Selectors = [Selector::new("unix", "uid:1000")].into_iter().collect();
/// assert!(caller.includes(&entry)); // every selector of the entry is the caller's
/// assert!(!entry.includes(&caller));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selectors(BTreeSet<Selector>);

impl Selectors {
    /// No selectors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one; whether it was new.
    pub fn insert(&mut self, selector: Selector) -> bool {
        self.0.insert(selector)
    }

    /// Whether `selector` is among these.
    pub fn contains(&self, selector: &Selector) -> bool {
        self.0.contains(selector)
    }

    /// Whether every selector of `required` is among these (SPIRE's matching: an entry
    /// matches a caller whose selectors include all of the entry's).
    pub fn includes(&self, required: &Selectors) -> bool {
        required.0.is_subset(&self.0)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In order (by type, then value).
    pub fn iter(&self) -> impl Iterator<Item = &Selector> {
        self.0.iter()
    }
}

impl FromIterator<Selector> for Selectors {
    fn from_iter<I: IntoIterator<Item = Selector>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Extend<Selector> for Selectors {
    fn extend<I: IntoIterator<Item = Selector>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl<'a> IntoIterator for &'a Selectors {
    type Item = &'a Selector;
    type IntoIter = std::collections::btree_set::Iter<'a, Selector>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Selectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{s}")?;
        }
        f.write_str("]")
    }
}
