//! Every case of the go-spiffe-derived table (`tests/data/spiffeid-cases.tsv`, 543 cases)
//! gives the expected verdict, and every refusal names the same rule go-spiffe names.

mod common;

use common::{load_cases, Case};
use meshid::{IdError, SpiffeId};

/// The rule go-spiffe's message names, mapped to the `IdError` variants that name the same
/// rule. meshid is finer-grained for bad characters: a `:` in a trust domain is a port, a
/// `%` is percent-encoding, `?`/`#` a query or fragment, each with its own variant.
fn same_rule(go_error: &str, ours: &IdError, case: &Case) -> bool {
    use IdError as E;
    match go_error {
        "cannot be empty" => *ours == E::Empty,
        "scheme is missing or invalid" => {
            matches!(ours, E::BadScheme | E::SchemeNotLowercase)
        }
        "trust domain is missing" => *ours == E::EmptyTrustDomain,
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores" => {
            matches!(
                ours,
                E::BadTrustDomainChar { .. }
                    | E::PortOrUserinfo { .. }
                    | E::QueryOrFragment { .. }
                    | E::PercentEncoding { .. }
            ) && offset_in_trust_domain(ours, &case.input)
        }
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores" => {
            matches!(
                ours,
                E::BadPathChar { .. } | E::QueryOrFragment { .. } | E::PercentEncoding { .. }
            ) && !offset_in_trust_domain(ours, &case.input)
        }
        "path cannot contain dot segments" => matches!(ours, E::DotSegment { .. }),
        "path cannot contain empty segments" => matches!(ours, E::EmptySegment { .. }),
        "path cannot have a trailing slash" => *ours == E::TrailingSlash,
        // go-spiffe accepts these; they are over the spec's length limits.
        "" => matches!(ours, E::TooLong { .. } | E::TrustDomainTooLong { .. }),
        other => panic!("unmapped go-spiffe error {other:?}"),
    }
}

/// Whether the error's offset falls inside the trust domain (between `spiffe://` and the
/// first `/` after it).
fn offset_in_trust_domain(e: &IdError, input: &[u8]) -> bool {
    let offset = match e {
        IdError::BadTrustDomainChar { offset, .. }
        | IdError::PortOrUserinfo { offset, .. }
        | IdError::QueryOrFragment { offset, .. }
        | IdError::PercentEncoding { offset }
        | IdError::BadPathChar { offset, .. } => *offset,
        _ => return false,
    };
    let td_end = input[9..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(input.len(), |p| p + 9);
    (9..td_end).contains(&offset)
}

#[test]
fn the_table_has_all_543_cases() {
    assert_eq!(load_cases().len(), 543);
}

#[test]
fn every_case_gives_the_expected_verdict_and_rule() {
    let mut failures = Vec::new();
    for case in load_cases() {
        let got = SpiffeId::from_bytes(&case.input);
        match (&got, case.expected_ok) {
            (Ok(id), true) => {
                if id.as_str().as_bytes() != case.input.as_slice() {
                    failures.push(format!("{case}: accepted but changed to {id}"));
                }
            }
            (Err(e), false) => {
                if !same_rule(&case.go_error, e, &case) {
                    failures.push(format!("{case}: refused for another rule: {e}"));
                }
            }
            (Ok(id), false) => failures.push(format!("{case}: accepted as {id}")),
            (Err(e), true) => failures.push(format!("{case}: refused: {e}")),
        }
        // The &str entry point agrees with the byte entry point.
        if let Ok(s) = std::str::from_utf8(&case.input) {
            assert_eq!(SpiffeId::new(s), got, "{case}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
