//! The one-pass validator behind every SPIFFE ID constructor.
//!
//! It works on bytes, so it needs no UTF-8 check of its own: every allowed byte is ASCII,
//! and the first non-ASCII byte of any input is reported as a bad character.

use super::{IdError, MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN, SCHEME};

/// Allowed in a trust-domain name: `[a-z0-9._-]`.
const TD: u8 = 1;
/// Allowed in a path segment: `[a-zA-Z0-9._-]`.
const SEG: u8 = 2;

// `b` runs over 0..256, so the cast to u8 is exact (`From` is not usable in const context).
#[allow(clippy::cast_possible_truncation)]
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => TD | SEG,
            b'A'..=b'Z' => SEG,
            _ => 0,
        };
        b += 1;
    }
    t
};

#[inline]
pub(super) fn is_td_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & TD != 0
}

#[inline]
pub(super) fn is_segment_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & SEG != 0
}

/// Validates a whole SPIFFE ID and returns the byte offset where its trust domain ends
/// (the length of `spiffe://<td>`).
pub(super) fn validate_id(input: &[u8]) -> Result<usize, IdError> {
    if input.is_empty() {
        return Err(IdError::Empty);
    }
    check_scheme(input)?;
    if input.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: input.len() });
    }
    let td_end = scan_trust_domain(input, SCHEME.len())?;
    validate_path(input, td_end)?;
    Ok(td_end)
}

fn check_scheme(input: &[u8]) -> Result<(), IdError> {
    if input.starts_with(SCHEME.as_bytes()) {
        Ok(())
    } else if has_scheme_any_case(input) {
        Err(IdError::SchemeNotLowercase)
    } else {
        Err(IdError::BadScheme)
    }
}

/// Whether `input` starts with `spiffe://` in any letter case.
pub(super) fn has_scheme_any_case(input: &[u8]) -> bool {
    input
        .get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME.as_bytes()))
}

/// Scans the trust domain starting at `start`; returns the offset of the first byte after
/// it (a `/` or the end of the input).
pub(super) fn scan_trust_domain(input: &[u8], start: usize) -> Result<usize, IdError> {
    let mut end = input.len();
    for (i, &b) in input.iter().enumerate().skip(start) {
        if is_td_byte(b) {
            continue;
        }
        if b == b'/' {
            end = i;
            break;
        }
        return Err(bad_byte(b, i, Part::TrustDomain));
    }
    check_trust_domain_len(end - start)?;
    Ok(end)
}

/// Validates a bare trust-domain name (no scheme): every byte, `/` included, must be a
/// trust-domain character.
pub(super) fn validate_trust_domain_name(name: &[u8]) -> Result<(), IdError> {
    if let Some(i) = name.iter().position(|&b| !is_td_byte(b)) {
        return Err(bad_byte(name[i], i, Part::TrustDomain));
    }
    check_trust_domain_len(name.len())
}

fn check_trust_domain_len(len: usize) -> Result<(), IdError> {
    match len {
        0 => Err(IdError::EmptyTrustDomain),
        len if len > MAX_TRUST_DOMAIN_LEN => Err(IdError::TrustDomainTooLong { len }),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum Part {
    TrustDomain,
    Path,
}

/// The error for a byte not allowed where it stands: the characters with a meaning of
/// their own in a URI get the rule that forbids that meaning.
fn bad_byte(byte: u8, offset: usize, part: Part) -> IdError {
    match (byte, part) {
        (b'?' | b'#', _) => IdError::QueryOrFragment { byte, offset },
        (b'%', _) => IdError::PercentEncoding { offset },
        (b':' | b'@', Part::TrustDomain) => IdError::PortOrUserinfo { byte, offset },
        (_, Part::TrustDomain) => IdError::BadTrustDomainChar { byte, offset },
        (_, Part::Path) => IdError::BadPathChar { byte, offset },
    }
}

/// Validates `input[start..]` as a SPIFFE path: empty, or `/seg(/seg)*`.
fn validate_path(input: &[u8], start: usize) -> Result<(), IdError> {
    if start == input.len() {
        return Ok(());
    }
    // The trust-domain scan stopped at a '/', so input[start] == b'/'.
    let mut seg_start = start + 1;
    for (i, &b) in input.iter().enumerate().skip(seg_start) {
        if is_segment_byte(b) {
            continue;
        }
        if b != b'/' {
            return Err(bad_byte(b, i, Part::Path));
        }
        check_segment(&input[seg_start..i], seg_start)?;
        seg_start = i + 1;
    }
    if seg_start == input.len() {
        return Err(IdError::TrailingSlash);
    }
    check_segment(&input[seg_start..], seg_start)
}

/// Checks one segment whose bytes are already known to be segment characters.
#[inline]
fn check_segment(seg: &[u8], offset: usize) -> Result<(), IdError> {
    match seg {
        [] => Err(IdError::EmptySegment { offset }),
        b"." | b".." => Err(IdError::DotSegment { offset }),
        _ => Ok(()),
    }
}

/// Validates one path segment given on its own (for `join` and `from_segments`) that is to
/// follow `id_len` bytes of ID and a `/`. The length is checked first, before anything is
/// allocated for it; errors point into the resulting ID.
pub(super) fn validate_segment(seg: &[u8], id_len: usize) -> Result<(), IdError> {
    let offset = id_len + 1;
    let len = offset.saturating_add(seg.len());
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong { len });
    }
    if let Some(i) = seg.iter().position(|&b| !is_segment_byte(b)) {
        return Err(bad_byte(seg[i], offset + i, Part::Path));
    }
    check_segment(seg, offset)
}

/// Lowercases the scheme and the trust domain of `input` (ASCII only), leaving the path
/// untouched. Input that does not start with a case-insensitive `spiffe://` is returned as
/// it is, for the strict validator to refuse.
pub(super) fn normalize(input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let scheme = SCHEME.len();
    if has_scheme_any_case(&out) {
        let td_end = out[scheme..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(out.len(), |p| p + scheme);
        out[..td_end].make_ascii_lowercase();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> IdError {
        validate_id(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn rule_scheme() {
        assert_eq!(err("http://example.org/a"), IdError::BadScheme);
        assert_eq!(err("spiffe:/example.org"), IdError::BadScheme);
        assert_eq!(err("spiffe"), IdError::BadScheme);
        assert_eq!(err("SPIFFE://example.org"), IdError::SchemeNotLowercase);
        assert_eq!(err("Spiffe://example.org"), IdError::SchemeNotLowercase);
        assert_eq!(err(""), IdError::Empty);
    }

    #[test]
    fn rule_trust_domain() {
        assert_eq!(err("spiffe://"), IdError::EmptyTrustDomain);
        assert_eq!(err("spiffe:///path"), IdError::EmptyTrustDomain);
        assert_eq!(
            err("spiffe://Example.org"),
            IdError::BadTrustDomainChar {
                byte: b'E',
                offset: 9
            }
        );
        assert_eq!(
            err("spiffe://example.org:8080/a"),
            IdError::PortOrUserinfo {
                byte: b':',
                offset: 20
            }
        );
        assert_eq!(
            err("spiffe://user@example.org/a"),
            IdError::PortOrUserinfo {
                byte: b'@',
                offset: 13
            }
        );
        assert_eq!(
            err("spiffe://ex%41mple.org"),
            IdError::PercentEncoding { offset: 11 }
        );
        assert_eq!(
            err("spiffe://[::1]/a"),
            IdError::BadTrustDomainChar {
                byte: b'[',
                offset: 9
            }
        );
        assert!(validate_id(b"spiffe://a-b_c.9").is_ok());
    }

    #[test]
    fn rule_query_fragment() {
        assert_eq!(
            err("spiffe://example.org?x=1"),
            IdError::QueryOrFragment {
                byte: b'?',
                offset: 20
            }
        );
        assert_eq!(
            err("spiffe://example.org/a#frag"),
            IdError::QueryOrFragment {
                byte: b'#',
                offset: 22
            }
        );
    }

    #[test]
    fn rule_path() {
        assert_eq!(err("spiffe://td/"), IdError::TrailingSlash);
        assert_eq!(err("spiffe://td/a/"), IdError::TrailingSlash);
        assert_eq!(err("spiffe://td//a"), IdError::EmptySegment { offset: 12 });
        assert_eq!(
            err("spiffe://td/a//b"),
            IdError::EmptySegment { offset: 14 }
        );
        assert_eq!(err("spiffe://td/./a"), IdError::DotSegment { offset: 12 });
        assert_eq!(err("spiffe://td/a/.."), IdError::DotSegment { offset: 14 });
        assert_eq!(
            err("spiffe://td/a%2Fb"),
            IdError::PercentEncoding { offset: 13 }
        );
        assert_eq!(
            err("spiffe://td/a b"),
            IdError::BadPathChar {
                byte: b' ',
                offset: 13
            }
        );
        assert!(validate_id(b"spiffe://td/.../A-z_0.9").is_ok());
        assert!(validate_id(b"spiffe://td/.a/a./..b").is_ok());
    }

    #[test]
    fn non_ascii_and_control_bytes_are_bad_characters() {
        assert_eq!(
            validate_id(b"spiffe://td/\xff"),
            Err(IdError::BadPathChar {
                byte: 0xff,
                offset: 12
            })
        );
        assert_eq!(
            validate_id(b"spiffe://t\xc3\xa9"),
            Err(IdError::BadTrustDomainChar {
                byte: 0xc3,
                offset: 10
            })
        );
        assert_eq!(
            validate_id(b"spiffe://td/a\0"),
            Err(IdError::BadPathChar {
                byte: 0,
                offset: 13
            })
        );
    }

    #[test]
    fn rule_lengths() {
        let td = "a".repeat(255);
        assert_eq!(validate_id(format!("spiffe://{td}").as_bytes()), Ok(264));
        assert_eq!(
            err(&format!("spiffe://{td}a")),
            IdError::TrustDomainTooLong { len: 256 }
        );
        let max = format!("spiffe://td/{}", "p".repeat(MAX_ID_LEN - 12));
        assert_eq!(max.len(), MAX_ID_LEN);
        assert!(validate_id(max.as_bytes()).is_ok());
        assert_eq!(
            err(&format!("{max}p")),
            IdError::TooLong {
                len: MAX_ID_LEN + 1
            }
        );
        // 1 MiB of input is refused by its length without being scanned.
        let huge = format!("spiffe://td/{}", "p".repeat(1 << 20));
        assert!(matches!(err(&huge), IdError::TooLong { .. }));
    }

    #[test]
    fn normalize_touches_scheme_and_trust_domain_only() {
        assert_eq!(
            normalize(b"SPIFFE://Example.ORG/Path/X"),
            b"spiffe://example.org/Path/X"
        );
        assert_eq!(normalize(b"SpIfFe://TD"), b"spiffe://td");
        assert_eq!(normalize(b"HTTP://TD/A"), b"HTTP://TD/A");
        assert_eq!(normalize(b"SPIFF"), b"SPIFF");
    }
}
