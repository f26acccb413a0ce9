//! [`CertView`]: what the X509-SVID profile reads of a certificate, decoded in one pass over
//! its DER without copying or allocating: the validity period and the four extensions the
//! profile judges (basicConstraints, keyUsage, extendedKeyUsage, subjectAltName), borrowed.
//!
//! Names and keys are left as opaque TLVs: path validation (`rustls-webpki`) reads them
//! itself. The structure is still checked field by field (RFC 5280 §4.1), in DER: definite
//! minimal lengths, the tags of every field, nothing trailing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_cert::Certificate;

use super::SvidError;
use crate::time::{days_from_civil, days_in_month};

const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// `id-kp-serverAuth` (1.3.6.1.5.5.7.3.1), DER content octets.
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// `id-kp-clientAuth` (1.3.6.1.5.5.7.3.2).
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BOOLEAN: u8 = 0x01;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One extension the profile reads: its value, or that it appeared more than once.
#[derive(Clone, Copy, Default)]
enum Ext<'a> {
    #[default]
    Absent,
    Once(&'a [u8]),
    /// RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a
    /// particular extension."
    Repeated,
}

impl<'a> Ext<'a> {
    fn add(&mut self, value: &'a [u8]) {
        *self = match self {
            Self::Absent => Self::Once(value),
            _ => Self::Repeated,
        };
    }
}

/// A certificate's validity and the extensions the profile judges, borrowed from its DER.
pub(crate) struct CertView<'a> {
    basic_constraints: Ext<'a>,
    key_usage: Ext<'a>,
    extended_key_usage: Ext<'a>,
    subject_alt_name: Ext<'a>,
    not_before: SystemTime,
    not_after: SystemTime,
    /// The certificate's position in its chain, for errors.
    index: usize,
}

/// A certificate's keyUsage bits (RFC 5280 §4.2.1.3), bit 0 first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyUsageBits(u16);

impl KeyUsageBits {
    pub(crate) fn digital_signature(self) -> bool {
        self.0 & 1 != 0
    }
    pub(crate) fn key_cert_sign(self) -> bool {
        self.0 & (1 << 5) != 0
    }
    pub(crate) fn crl_sign(self) -> bool {
        self.0 & (1 << 6) != 0
    }
}

impl<'a> CertView<'a> {
    /// The view of a certificate x509-cert has already parsed in full.
    pub(crate) fn of(cert: &'a Certificate, index: usize) -> Self {
        let tbs = cert.tbs_certificate();
        let mut view = Self::empty(index);
        for e in tbs.extensions().map_or(&[][..], Vec::as_slice) {
            view.add_extension(e.extn_id.as_bytes(), e.extn_value.as_bytes());
        }
        view.not_before = tbs.validity().not_before.to_system_time();
        view.not_after = tbs.validity().not_after.to_system_time();
        view
    }

    /// Decodes a DER certificate as deep as the profile needs, refusing anything that is
    /// not one well-formed certificate.
    pub(crate) fn parse(der: &'a [u8], index: usize) -> Result<Self, SvidError> {
        Self::decode(der, index).ok_or(SvidError::MalformedCertificate { index })
    }

    /// The subject `Name` of a certificate, exactly as it is encoded there (issued
    /// certificates must repeat it byte for byte as their issuer).
    #[cfg(feature = "ca")]
    pub(crate) fn raw_subject(der: &'a [u8]) -> Option<Vec<u8>> {
        let mut cert = Reader::new(Reader::new(der).only(SEQUENCE)?);
        let mut tbs = Reader::new(cert.expect(SEQUENCE)?);
        if tbs.peek(0xa0) {
            tbs.any()?;
        }
        for _ in 0..4 {
            tbs.any()?; // serial, signature, issuer, validity
        }
        let (tag, _, whole) = tbs.any_whole()?;
        (tag == SEQUENCE).then(|| whole.to_vec())
    }

    fn empty(index: usize) -> Self {
        Self {
            basic_constraints: Ext::Absent,
            key_usage: Ext::Absent,
            extended_key_usage: Ext::Absent,
            subject_alt_name: Ext::Absent,
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
            index,
        }
    }

    fn add_extension(&mut self, oid: &[u8], value: &'a [u8]) {
        let slot = match oid {
            BASIC_CONSTRAINTS => &mut self.basic_constraints,
            KEY_USAGE => &mut self.key_usage,
            EXTENDED_KEY_USAGE => &mut self.extended_key_usage,
            SUBJECT_ALT_NAME => &mut self.subject_alt_name,
            _ => return,
        };
        slot.add(value);
    }

    /// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }.
    fn decode(der: &'a [u8], index: usize) -> Option<Self> {
        let mut cert = Reader::new(Reader::new(der).only(SEQUENCE)?);
        let tbs = cert.expect(SEQUENCE)?;
        cert.expect(SEQUENCE)?; // signatureAlgorithm
        bit_string(cert.expect(BIT_STRING)?)?;
        cert.end()?;

        let mut view = Self::empty(index);
        let mut tbs = Reader::new(tbs);
        if tbs.peek(0xa0) {
            let version = Reader::new(tbs.any()?).only(INTEGER)?;
            small_unsigned(version)?;
        }
        tbs.any()?; // serialNumber
        tbs.any()?; // signature
        tbs.any()?; // issuer
        let mut validity = Reader::new(tbs.expect(SEQUENCE)?);
        view.not_before = time(&mut validity)?;
        view.not_after = time(&mut validity)?;
        validity.end()?;
        tbs.any()?; // subject
        tbs.any()?; // subjectPublicKeyInfo
        for unique_id in [0x81, 0x82] {
            if tbs.peek(unique_id) {
                bit_string(tbs.any()?)?;
            }
        }
        if tbs.peek(0xa3) {
            let mut list = Reader::new(Reader::new(tbs.any()?).only(SEQUENCE)?);
            while !list.is_empty() {
                let mut ext = Reader::new(list.expect(SEQUENCE)?);
                let oid = ext.expect(OID)?;
                valid_oid(oid)?;
                if ext.peek(BOOLEAN) {
                    boolean(ext.any()?)?;
                }
                let value = ext.expect(OCTET_STRING)?;
                ext.end()?;
                view.add_extension(oid, value);
            }
        }
        tbs.end()?;
        Some(view)
    }

    /// The certificate's notBefore.
    pub(crate) fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The certificate's notAfter.
    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificate's position in its chain.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    fn value(&self, ext: Ext<'a>, name: &'static str) -> Result<Option<&'a [u8]>, SvidError> {
        match ext {
            Ext::Absent => Ok(None),
            Ext::Once(value) => Ok(Some(value)),
            Ext::Repeated => Err(self.malformed(name)),
        }
    }

    fn malformed(&self, extension: &'static str) -> SvidError {
        SvidError::MalformedExtension {
            index: self.index,
            extension,
        }
    }

    /// basicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER
    /// (0..MAX) OPTIONAL }: `(cA, pathLen)`, a pathLen over 255 refused as malformed.
    pub(crate) fn basic_constraints(&self) -> Result<Option<(bool, Option<u8>)>, SvidError> {
        const NAME: &str = "basicConstraints";
        let Some(value) = self.value(self.basic_constraints, NAME)? else {
            return Ok(None);
        };
        let decode = || {
            let mut seq = Reader::new(Reader::new(value).only(SEQUENCE)?);
            let ca = seq.peek(BOOLEAN) && boolean(seq.any()?)?;
            let path_len = if seq.peek(INTEGER) {
                Some(u8::try_from(small_unsigned(seq.any()?)?).ok()?)
            } else {
                None
            };
            seq.end()?;
            Some((ca, path_len))
        };
        decode().map(Some).ok_or_else(|| self.malformed(NAME))
    }

    /// keyUsage ::= BIT STRING: its bits; more than 16 bits are refused as malformed.
    pub(crate) fn key_usage(&self) -> Result<Option<KeyUsageBits>, SvidError> {
        const NAME: &str = "keyUsage";
        let Some(value) = self.value(self.key_usage, NAME)? else {
            return Ok(None);
        };
        let decode = || {
            let bytes = bit_string(Reader::new(value).only(BIT_STRING)?)?;
            // At most 16 bits, as x509-cert read them; those past decipherOnly (8) mean
            // nothing and are ignored.
            if bytes.len() > 2 {
                return None;
            }
            let mut bits = 0_u16;
            for (i, byte) in bytes.iter().enumerate() {
                for j in 0..8 {
                    if byte & (0x80 >> j) != 0 {
                        bits |= 1 << (i * 8 + j);
                    }
                }
            }
            Some(KeyUsageBits(bits & 0x01ff))
        };
        decode().map(Some).ok_or_else(|| self.malformed(NAME))
    }

    /// extKeyUsage ::= SEQUENCE OF KeyPurposeId: whether it holds `(serverAuth,
    /// clientAuth)`.
    pub(crate) fn extended_key_usage(&self) -> Result<Option<(bool, bool)>, SvidError> {
        const NAME: &str = "extendedKeyUsage";
        let Some(value) = self.value(self.extended_key_usage, NAME)? else {
            return Ok(None);
        };
        let decode = || {
            let mut seq = Reader::new(Reader::new(value).only(SEQUENCE)?);
            let (mut server, mut client) = (false, false);
            while !seq.is_empty() {
                let oid = seq.expect(OID)?;
                valid_oid(oid)?;
                server |= oid == SERVER_AUTH;
                client |= oid == CLIENT_AUTH;
            }
            Some((server, client))
        };
        decode().map(Some).ok_or_else(|| self.malformed(NAME))
    }

    /// The URI SANs (GeneralName `[6] IA5String`), in order, as raw bytes; every other
    /// GeneralName is checked to be one and skipped.
    pub(crate) fn uri_sans(&self) -> Result<Vec<&'a [u8]>, SvidError> {
        const NAME: &str = "subjectAltName";
        let Some(value) = self.value(self.subject_alt_name, NAME)? else {
            return Ok(Vec::new());
        };
        let decode = || {
            let mut seq = Reader::new(Reader::new(value).only(SEQUENCE)?);
            let mut uris = Vec::new();
            while !seq.is_empty() {
                let (tag, content) = seq.read()?;
                match tag {
                    // rfc822Name, dNSName, uniformResourceIdentifier: IA5String.
                    0x81 | 0x82 | 0x86 => {
                        if !content.is_ascii() {
                            return None;
                        }
                        if tag == 0x86 {
                            uris.push(content);
                        }
                    }
                    // registeredID OBJECT IDENTIFIER.
                    0x88 => valid_oid(content)?,
                    // iPAddress OCTET STRING; otherName, x400Address, directoryName,
                    // ediPartyName: constructed.
                    0x87 | 0xa0 | 0xa3 | 0xa4 | 0xa5 => {}
                    _ => return None,
                }
            }
            Some(uris)
        };
        decode().ok_or_else(|| self.malformed(NAME))
    }
}

/// A DER reader over borrowed bytes: one TLV at a time, low tag numbers only, definite
/// minimal lengths.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn end(&self) -> Option<()> {
        self.is_empty().then_some(())
    }

    /// The next TLV: its tag, its content, and the whole encoding.
    fn any_whole(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let start = self.rest;
        let (&tag, rest) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // high tag numbers: none in a certificate's structure
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = match first {
            0..=0x7f => usize::from(first),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                if rest.len() < n || rest[0] == 0 {
                    return None;
                }
                let len = rest[..n]
                    .iter()
                    .fold(0_usize, |a, b| (a << 8) | usize::from(*b));
                rest = &rest[n..];
                // DER: the shortest form.
                if len < 0x80 {
                    return None;
                }
                len
            }
            _ => return None, // indefinite or over 4 GiB
        };
        if rest.len() < len {
            return None;
        }
        let (content, after) = rest.split_at(len);
        self.rest = after;
        Some((tag, content, &start[..start.len() - after.len()]))
    }

    fn read(&mut self) -> Option<(u8, &'a [u8])> {
        self.any_whole().map(|(tag, content, _)| (tag, content))
    }

    fn any(&mut self) -> Option<&'a [u8]> {
        self.read().map(|(_, content)| content)
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.read()? {
            (t, content) if t == tag => Some(content),
            _ => None,
        }
    }

    /// Whether the next TLV has `tag`.
    fn peek(&self, tag: u8) -> bool {
        self.rest.first() == Some(&tag)
    }

    /// The content of the one TLV these bytes hold.
    fn only(mut self, tag: u8) -> Option<&'a [u8]> {
        let content = self.expect(tag)?;
        self.end()?;
        Some(content)
    }
}

/// BOOLEAN content: 0x00 or 0xFF (DER).
fn boolean(content: &[u8]) -> Option<bool> {
    match content {
        [0x00] => Some(false),
        [0xff] => Some(true),
        _ => None,
    }
}

/// A non-negative INTEGER of at most 32 bits, minimally encoded.
fn small_unsigned(content: &[u8]) -> Option<u32> {
    match content {
        [] => None,
        [b, ..] if b & 0x80 != 0 => None,          // negative
        [0, next, ..] if next & 0x80 == 0 => None, // not minimal
        _ if content.len() > 5 || (content.len() == 5 && content[0] != 0) => None,
        _ => Some(content.iter().fold(0_u32, |a, b| (a << 8) | u32::from(*b))),
    }
}

/// BIT STRING content: the bytes after the unused-bits count, which is at most 7, zero
/// for an empty string, and whose unused bits are zero (DER).
fn bit_string(content: &[u8]) -> Option<&[u8]> {
    let (&unused, bytes) = content.split_first()?;
    match bytes.last() {
        None if unused == 0 => Some(bytes),
        Some(last) if unused < 8 && last & ((1_u8 << unused) - 1) == 0 => Some(bytes),
        _ => None,
    }
}

/// OBJECT IDENTIFIER content: at least one arc, each subidentifier minimally encoded.
fn valid_oid(content: &[u8]) -> Option<()> {
    let last = content.last()?;
    if last & 0x80 != 0 {
        return None;
    }
    let mut start = true;
    for &b in content {
        if start && b == 0x80 {
            return None;
        }
        start = b & 0x80 == 0;
    }
    Some(())
}

/// Time ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }, in the DER forms of
/// RFC 5280 §4.1.2.5 (`YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`), years 1970 to 9999.
fn time(reader: &mut Reader<'_>) -> Option<SystemTime> {
    let (tag, content) = reader.read()?;
    let (year, rest) = match (tag, content.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&content[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &content[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&content[..4])?, &content[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    let (y, m, d) = (i64::from(year), i64::from(month), i64::from(day));
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || d == 0
        || d > days_in_month(y, m)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // From 1970 on, the day count is not negative.
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    let secs = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn digits(ascii: &[u8]) -> Option<u32> {
    ascii.iter().try_fold(0, |a, b| {
        b.is_ascii_digit().then(|| a * 10 + u32::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    #[test]
    fn times_match_x509_cert() {
        for (tag, text) in [
            (UTC_TIME, "700101000000Z"),
            (UTC_TIME, "491231235959Z"),
            (UTC_TIME, "000229120000Z"),
            (GENERALIZED_TIME, "20500101000000Z"),
            (GENERALIZED_TIME, "99991231235959Z"),
            (GENERALIZED_TIME, "21000228000000Z"),
            (GENERALIZED_TIME, "24000229000000Z"),
        ] {
            let mut der = vec![tag, 13 + 2 * u8::from(tag == GENERALIZED_TIME)];
            der.extend_from_slice(text.as_bytes());
            let ours = time(&mut Reader::new(&der)).unwrap();
            let theirs = x509_cert::time::Time::from_der(&der)
                .unwrap()
                .to_system_time();
            assert_eq!(ours, theirs, "{text}");
        }
        for (tag, text) in [
            (UTC_TIME, "690101000000Z"), // 1969
            (UTC_TIME, "700230000000Z"),
            (UTC_TIME, "701301000000Z"),
            (UTC_TIME, "700101240000Z"),
            (UTC_TIME, "700101006000Z"),
            (UTC_TIME, "700101000060Z"),
            (UTC_TIME, "700101000000+"),
            (GENERALIZED_TIME, "21000229000000Z"),
            (GENERALIZED_TIME, "2000022900000aZ"),
        ] {
            let len = u8::try_from(text.len()).unwrap();
            let mut der = vec![tag, len];
            der.extend_from_slice(text.as_bytes());
            assert!(time(&mut Reader::new(&der)).is_none(), "{text}");
        }
    }

    #[test]
    fn lengths_are_definite_and_minimal() {
        assert_eq!(Reader::new(&[0x04, 0x01, 0xaa]).any(), Some(&[0xaa][..]));
        assert!(Reader::new(&[0x04, 0x81, 0x01, 0xaa]).any().is_none()); // not minimal
        assert!(Reader::new(&[0x04, 0x82, 0x00, 0x81]).any().is_none()); // leading zero
        assert!(Reader::new(&[0x30, 0x80, 0x00, 0x00]).any().is_none()); // indefinite
        assert!(Reader::new(&[0x04, 0x02, 0xaa]).any().is_none()); // short
        assert!(Reader::new(&[0x1f, 0x01, 0x00]).any().is_none()); // high tag
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0; 0x80]);
        assert_eq!(Reader::new(&long).any().map(<[u8]>::len), Some(0x80));
    }

    #[test]
    fn small_integers_and_bit_strings_are_der() {
        assert_eq!(small_unsigned(&[0x00]), Some(0));
        assert_eq!(small_unsigned(&[0x00, 0x80]), Some(128));
        assert_eq!(small_unsigned(&[0x00, 0x7f]), None);
        assert_eq!(small_unsigned(&[0x80]), None);
        assert_eq!(small_unsigned(&[]), None);
        assert_eq!(bit_string(&[0x00]), Some(&[][..]));
        assert_eq!(bit_string(&[0x01, 0x86]), Some(&[0x86][..]));
        assert_eq!(bit_string(&[0x01, 0x87]), None); // an unused bit set
        assert_eq!(bit_string(&[0x08, 0x00]), None);
        assert_eq!(bit_string(&[0x01]), None);
    }
}
