//! Differential test against the `spiffe` crate 0.19 on the whole case table.
//!
//! The two libraries differ by design on letter case: `spiffe` lowercases an uppercase
//! scheme or trust domain silently, meshid's strict parser refuses it and its explicit
//! [`SpiffeId::normalize`] accepts it. So the contract checked here is:
//!
//! 1. `meshid::SpiffeId::normalize` and `spiffe::SpiffeId::new` agree on every input,
//!    verdict and canonical string;
//! 2. where meshid's strict parser disagrees with `spiffe`, the input has an uppercase
//!    scheme or trust domain, and strict meshid names exactly that.
//!
//! One more difference shows in the table and is asserted as such: `spiffe` 0.19 does not
//! enforce the 2048-byte SPIFFE ID maximum when parsing (only when building from segments),
//! while meshid refuses a 2049-byte ID (SPIFFE-ID §2.3).

mod common;

use meshid::{IdError, SpiffeId};

#[derive(Debug, Default)]
struct Tally {
    agree: usize,
    case_choice: usize,
    length_limit: usize,
    not_utf8: usize,
}

fn is_case_refusal(e: &IdError) -> bool {
    match e {
        IdError::SchemeNotLowercase => true,
        IdError::BadTrustDomainChar { byte, .. } => byte.is_ascii_uppercase(),
        _ => false,
    }
}

fn compare(input: &[u8], tally: &mut Tally) -> Result<(), String> {
    let Ok(s) = std::str::from_utf8(input) else {
        // `spiffe` takes only `&str`; meshid must refuse such input on its own.
        tally.not_utf8 += 1;
        return match SpiffeId::from_bytes(input) {
            Err(_) => Ok(()),
            Ok(id) => Err(format!("meshid accepted non-UTF-8 input as {id}")),
        };
    };
    let theirs = spiffe::SpiffeId::new(s).map(|id| id.to_string());
    let strict = SpiffeId::new(s);
    let normalized = SpiffeId::normalize(s);

    match (&theirs, &normalized) {
        (Ok(t), Ok(n)) if t == n.as_str() => {}
        (Err(_), Err(_)) => {}
        (Ok(_), Err(IdError::TooLong { .. })) => {
            tally.length_limit += 1;
            return Ok(());
        }
        _ => {
            return Err(format!(
                "normalize disagrees with spiffe: spiffe={theirs:?} meshid={normalized:?}"
            ))
        }
    }
    match (&theirs, &strict) {
        (Ok(t), Ok(m)) if t == m.as_str() => tally.agree += 1,
        (Err(_), Err(_)) => tally.agree += 1,
        (Ok(_), Err(e)) if is_case_refusal(e) => tally.case_choice += 1,
        _ => {
            return Err(format!(
            "strict meshid disagrees with spiffe beyond case: spiffe={theirs:?} meshid={strict:?}"
        ))
        }
    }
    Ok(())
}

#[test]
fn whole_table_differs_only_by_the_documented_choices() {
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for case in common::load_cases() {
        if let Err(why) = compare(&case.input, &mut tally) {
            failures.push(format!("{case}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{tally:?}");
    // The case-handling cases: the 26 uppercase trust-domain characters (A-Z) and the two
    // rows with a non-lowercase `spiffe://` scheme.
    assert_eq!(tally.case_choice, 28, "{tally:?}");
    // The 2049-byte ID.
    assert_eq!(tally.length_limit, 1, "{tally:?}");
    assert_eq!(
        tally.agree + tally.case_choice + tally.length_limit + tally.not_utf8,
        543
    );
}

#[test]
fn uppercase_scheme_and_trust_domain_are_the_case_choice() {
    let mut tally = Tally::default();
    for input in [
        "SPIFFE://example.org/a",
        "Spiffe://Example.Org/Keep/Path",
        "spiffe://EXAMPLE.ORG",
        "spiffe://example.org/UPPER/path/is/fine",
    ] {
        compare(input.as_bytes(), &mut tally).unwrap();
    }
    assert_eq!(tally.case_choice, 3, "{tally:?}");
    assert_eq!(tally.agree, 1, "{tally:?}");
}
