//! Invariants of `Registry::parse` (registration entries, feature `agent`) on arbitrary
//! text: no panic, the same verdict twice, and an accepted file keeps every rule; a
//! refusal names a line of the file.
//!
//! Shared, by `#[path]`, between the `entries` fuzz target (`fuzz/fuzz_targets/`) and
//! `tests/fuzz_corpus.rs`, which replays `fuzz/corpus/entries/`. Only meshid's public API
//! is used. It panics (fails) on any broken invariant.

#![allow(dead_code)]

use meshid::agent::{Registry, RegistryError, Selectors};
use meshid::{Authority, TrustDomain};

/// Checks every invariant on `data`, read as UTF-8 (invalid sequences replaced).
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let td = TrustDomain::new("example.org").expect("valid trust domain");
    let result = Registry::parse(&text, &td);
    assert_eq!(
        format!("{result:?}"),
        format!("{:?}", Registry::parse(&text, &td)),
        "parse is not deterministic"
    );
    let lines = text.split('\n').count();
    match result {
        Ok(registry) => check_accepted(&registry, &td, &text, lines),
        Err(e) => check_refusal(&e, lines),
    }
}

fn check_accepted(registry: &Registry, td: &TrustDomain, text: &str, lines: usize) {
    assert_eq!(registry.len(), registry.entries().len());
    assert_eq!(registry.is_empty(), registry.entries().is_empty());
    assert!(registry.len() <= Registry::MAX_ENTRIES);
    assert!(registry.matching(&Selectors::new()).next().is_none());
    let mut last_line = 0;
    for (i, entry) in registry.entries().iter().enumerate() {
        assert!(entry.spiffe_id().is_member_of(td), "{entry:?}");
        assert!(!entry.spiffe_id().is_trust_domain_id(), "{entry:?}");
        assert!(!entry.selectors().is_empty(), "{entry:?}");
        assert!(entry.selectors().iter().all(|s| s.kind() == "unix"));
        assert!(entry.ttl().is_none_or(|ttl| ttl >= Authority::MIN_SVID_TTL));
        assert!(entry.dns_names().iter().all(|n| !n.contains('*')));
        assert!(
            entry.line() > last_line && entry.line() <= lines,
            "{entry:?}"
        );
        last_line = entry.line();
        // An entry matches a caller with exactly its selectors, after every earlier entry
        // that does too; no earlier entry is the same identity for the same selectors.
        let matched: Vec<_> = registry.matching(entry.selectors()).collect();
        assert!(matched.iter().any(|e| std::ptr::eq(*e, entry)));
        for earlier in &registry.entries()[..i] {
            assert!(
                earlier.spiffe_id() != entry.spiffe_id()
                    || earlier.selectors() != entry.selectors(),
                "duplicate accepted: {earlier:?} {entry:?}"
            );
        }
    }
    // The same file for another CA is refused at its first entry's ID.
    if let Some(first) = registry.entries().first() {
        let other = TrustDomain::new("other.test").expect("valid trust domain");
        let next = registry
            .entries()
            .get(1)
            .map_or(lines, meshid::agent::Entry::line);
        match Registry::parse(text, &other) {
            Err(RegistryError::ForeignTrustDomain { line, id, .. }) => {
                assert_eq!(&id, first.spiffe_id());
                assert!((first.line()..=next).contains(&line), "{line}");
            }
            other => panic!("accepted for another trust domain: {other:?}"),
        }
    }
}

fn check_refusal(e: &RegistryError, lines: usize) {
    let message = e.to_string();
    assert!(!message.is_empty());
    if let Some(line) = e.line() {
        assert!((1..=lines).contains(&line), "line {line} of {lines}: {e:?}");
        assert!(message.starts_with(&format!("line {line}: ")), "{message}");
    }
}
