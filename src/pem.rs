//! A small, lenient PEM reader shared by every loader (SVIDs, keys, bundles, CSRs).
//!
//! It finds `-----BEGIN <label>-----` ... `-----END <label>-----` blocks anywhere in the
//! input, ignores text between blocks (OpenSSL's "Bag Attributes", comments), accepts any
//! line width and CRLF, and decodes the body as padded standard base64. Every failure is a
//! typed [`PemError`]; nothing here panics on any input.

use base64ct::{Base64, Encoding};
use thiserror::Error;
use zeroize::Zeroizing;

/// Why a PEM document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PemError {
    /// The input holds no `-----BEGIN ...-----` line at all.
    #[error("no PEM blocks found")]
    NoBlocks,
    /// A block was opened and never closed by its matching `-----END <label>-----` line.
    #[error("PEM block {index} ({label}) has no matching END line")]
    Unterminated {
        /// Position of the block in the input, from 0.
        index: usize,
        /// The block's label.
        label: String,
    },
    /// A block's BEGIN line is malformed (bad label characters or no closing dashes).
    #[error("PEM block {index} has a malformed BEGIN line")]
    BadBeginLine {
        /// Position of the block in the input, from 0.
        index: usize,
    },
    /// A block's body is not valid base64.
    #[error("PEM block {index} ({label}) is not valid base64")]
    BadBase64 {
        /// Position of the block in the input, from 0.
        index: usize,
        /// The block's label.
        label: String,
    },
}

/// One decoded PEM block. The bytes are wiped when dropped, since a block may hold a key.
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";

/// Whether the input looks like PEM (holds a BEGIN line). Loaders use this to choose
/// between PEM and DER.
pub(crate) fn is_pem(input: &[u8]) -> bool {
    find(input, BEGIN).is_some()
}

/// Decodes every PEM block of `input`, in order.
pub(crate) fn parse(input: &[u8]) -> Result<Vec<PemBlock>, PemError> {
    let mut blocks = Vec::new();
    let mut rest = input;
    while let Some(start) = find(rest, BEGIN) {
        let index = blocks.len();
        let after_begin = &rest[start + BEGIN.len()..];
        let label_end = find(after_begin, DASHES).ok_or(PemError::BadBeginLine { index })?;
        let label = &after_begin[..label_end];
        if !label.iter().all(|&b| b.is_ascii_graphic() || b == b' ') {
            return Err(PemError::BadBeginLine { index });
        }
        let label = String::from_utf8_lossy(label).into_owned();
        let body_start = label_end + DASHES.len();
        let mut end_line = END.to_vec();
        end_line.extend_from_slice(label.as_bytes());
        end_line.extend_from_slice(DASHES);
        let body_len =
            find(&after_begin[body_start..], &end_line).ok_or_else(|| PemError::Unterminated {
                index,
                label: label.clone(),
            })?;
        let body = &after_begin[body_start..body_start + body_len];
        let der = decode_body(body).ok_or_else(|| PemError::BadBase64 {
            index,
            label: label.clone(),
        })?;
        blocks.push(PemBlock { label, der });
        rest = &after_begin[body_start + body_len + end_line.len()..];
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlocks);
    }
    Ok(blocks)
}

/// Decodes a block body: base64 with any whitespace between characters. RFC 1421 headers
/// (`Proc-Type:` ... blank line) mark an encrypted legacy key, which is refused as bad
/// base64 because `:` is no base64 character.
fn decode_body(body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        body.iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    Base64::decode_vec(std::str::from_utf8(&compact).ok()?)
        .ok()
        .map(Zeroizing::new)
}

/// Encodes one block with 64-character lines, as OpenSSL writes them.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = Base64::encode_string(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Encodes certificates as PEM `CERTIFICATE` blocks, in order, as OpenSSL writes them.
///
/// ```
/// # let der = rustls_pki_types::CertificateDer::from(vec![0x30, 0x00]);
/// let pem = meshid::certificates_to_pem(&[der]);
/// assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
/// ```
pub fn certificates_to_pem(certs: &[rustls_pki_types::CertificateDer<'_>]) -> String {
    certs.iter().map(|c| encode("CERTIFICATE", c)).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_leniency() {
        let a = encode(
            "CERTIFICATE",
            b"hello world, this is more than forty-eight bytes long........",
        );
        let b = encode("PRIVATE KEY", &[0u8, 1, 2, 255]);
        let doc = format!(
            "Bag Attributes\n  friendlyName: x\n{a}junk between\r\n{}",
            b.replace('\n', "\r\n")
        );
        let blocks = parse(doc.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(
            &blocks[0].der[..],
            b"hello world, this is more than forty-eight bytes long........"
        );
        assert_eq!(blocks[1].label, "PRIVATE KEY");
        assert_eq!(&blocks[1].der[..], &[0u8, 1, 2, 255]);
        assert!(is_pem(doc.as_bytes()));
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(parse(b""), Err(PemError::NoBlocks)));
        assert!(matches!(parse(b"not pem at all"), Err(PemError::NoBlocks)));
        assert!(matches!(
            parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            Err(PemError::Unterminated { index: 0, .. })
        ));
        assert!(matches!(
            parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(PemError::Unterminated { .. })
        ));
        assert!(matches!(
            parse(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            Err(PemError::BadBase64 { .. })
        ));
        assert!(matches!(
            parse(b"-----BEGIN CERT\xffIFICATE-----\nAAAA\n-----END CERT\xffIFICATE-----\n"),
            Err(PemError::BadBeginLine { index: 0 })
        ));
        assert!(matches!(
            parse(b"-----BEGIN "),
            Err(PemError::BadBeginLine { .. })
        ));
    }
}
