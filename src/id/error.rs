//! The error every SPIFFE ID and trust-domain constructor returns.

use thiserror::Error;

use super::{MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN};

/// Why a string is not a valid SPIFFE ID or trust domain.
///
/// Each variant names the rule of the
/// [SPIFFE ID standard](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md)
/// that the input broke. Offsets are byte offsets into the input as given (for a trust
/// domain given by name, into the name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input is empty.
    #[error("empty: a SPIFFE ID is `spiffe://<trust-domain>[/<path>]` (SPIFFE-ID §2)")]
    Empty,
    /// The input does not start with the `spiffe://` scheme.
    #[error("scheme must be `spiffe://` (SPIFFE-ID §2)")]
    BadScheme,
    /// The scheme is `spiffe://` in another letter case. Strict parsing refuses it; the
    /// normalizing constructors accept it and lowercase it.
    #[error(
        "scheme must be lowercase `spiffe://` (SPIFFE-ID §2; normalize to accept other cases)"
    )]
    SchemeNotLowercase,
    /// Nothing between `spiffe://` and the path.
    #[error("trust domain is empty (SPIFFE-ID §2.1)")]
    EmptyTrustDomain,
    /// A trust-domain byte outside `[a-z0-9._-]`.
    #[error(
        "trust domain character {} at byte {offset} is not allowed: only [a-z0-9._-]{} (SPIFFE-ID §2.1)",
        ByteDisplay(*byte),
        if byte.is_ascii_uppercase() { ", uppercase must be normalized" } else { "" }
    )]
    BadTrustDomainChar {
        /// The offending byte.
        byte: u8,
        /// Its byte offset in the input.
        offset: usize,
    },
    /// A `:` (port) or `@` (userinfo) in the trust domain.
    #[error(
        "trust domain must not carry a {} ({} at byte {offset}) (SPIFFE-ID §2.1)",
        if *byte == b'@' { "userinfo" } else { "port" },
        ByteDisplay(*byte)
    )]
    PortOrUserinfo {
        /// The offending byte, `:` or `@`.
        byte: u8,
        /// Its byte offset in the input.
        offset: usize,
    },
    /// A `?` (query) or `#` (fragment).
    #[error("query and fragment are not allowed ({} at byte {offset}) (SPIFFE-ID §2)", ByteDisplay(*byte))]
    QueryOrFragment {
        /// The offending byte, `?` or `#`.
        byte: u8,
        /// Its byte offset in the input.
        offset: usize,
    },
    /// A `%`: percent-encoding is not allowed anywhere in a SPIFFE ID.
    #[error("percent-encoding is not allowed ('%' at byte {offset}) (SPIFFE-ID §2.1, §2.2)")]
    PercentEncoding {
        /// The byte offset of the `%`.
        offset: usize,
    },
    /// Two consecutive `/` in the path (an empty segment).
    #[error("path has an empty segment at byte {offset} (SPIFFE-ID §2.2)")]
    EmptySegment {
        /// The byte offset where the empty segment starts.
        offset: usize,
    },
    /// A `.` or `..` path segment.
    #[error("path has a '.' or '..' segment at byte {offset} (SPIFFE-ID §2.2)")]
    DotSegment {
        /// The byte offset where the segment starts.
        offset: usize,
    },
    /// The path ends with `/`.
    #[error("path must not end with '/' (SPIFFE-ID §2.2)")]
    TrailingSlash,
    /// A path byte outside `[a-zA-Z0-9._-]` (or a `/` inside a single segment).
    #[error(
        "path character {} at byte {offset} is not allowed: only [a-zA-Z0-9._-] (SPIFFE-ID §2.2)",
        ByteDisplay(*byte)
    )]
    BadPathChar {
        /// The offending byte.
        byte: u8,
        /// Its byte offset in the input.
        offset: usize,
    },
    /// The trust-domain name is longer than 255 bytes.
    #[error("trust domain is {len} bytes, over the {MAX_TRUST_DOMAIN_LEN}-byte maximum (SPIFFE-ID §2.3)")]
    TrustDomainTooLong {
        /// The length of the trust-domain name in bytes.
        len: usize,
    },
    /// The SPIFFE ID is longer than 2048 bytes.
    #[error("SPIFFE ID is {len} bytes, over the {MAX_ID_LEN}-byte maximum (SPIFFE-ID §2.3)")]
    TooLong {
        /// The length of the input in bytes.
        len: usize,
    },
    /// A trust domain was expected, but the input is a SPIFFE ID with a path.
    #[error(
        "expected a trust domain, found a SPIFFE ID with a path at byte {offset} (SPIFFE-ID §2.1)"
    )]
    PathInTrustDomain {
        /// The byte offset where the path starts.
        offset: usize,
    },
}

/// Prints a byte as `'c'` when it is printable ASCII and as `0xNN` otherwise, so an error
/// message never carries control characters or invalid UTF-8 to a terminal or log.
struct ByteDisplay(u8);

impl std::fmt::Display for ByteDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}' (0x{:02x})", char::from(self.0), self.0)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_rule_and_never_echo_control_bytes() {
        let e = IdError::BadTrustDomainChar {
            byte: b'\n',
            offset: 12,
        };
        let m = e.to_string();
        assert!(
            m.contains("0x0a") && m.contains("byte 12") && m.contains("§2.1"),
            "{m}"
        );
        assert!(!m.contains('\n'));
        let e = IdError::BadTrustDomainChar {
            byte: b'E',
            offset: 9,
        };
        assert!(e.to_string().contains("uppercase"), "{e}");
        let e = IdError::PortOrUserinfo {
            byte: b'@',
            offset: 13,
        };
        assert!(e.to_string().contains("userinfo"), "{e}");
        let e = IdError::PortOrUserinfo {
            byte: b':',
            offset: 13,
        };
        assert!(e.to_string().contains("port"), "{e}");
        assert!(IdError::TooLong { len: 2049 }.to_string().contains("2048"));
    }
}
