//! ECDSA signatures in their two encodings: JWS's fixed-width `R || S` (RFC 7518 §3.4) and
//! the DER `Ecdsa-Sig-Value` (RFC 3279 §2.2.3) that `rustls_pki_types` verification
//! algorithms and meshid's `Signer`s use.

/// `R || S` (each `width` bytes, big-endian) as a DER `SEQUENCE { r INTEGER, s INTEGER }`.
/// `None` if `raw` is not `2 * width` bytes.
pub(crate) fn raw_to_der(raw: &[u8], width: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * width {
        return None;
    }
    let (r, s) = raw.split_at(width);
    let mut body = Vec::with_capacity(2 * width + 8);
    integer(&mut body, r);
    integer(&mut body, s);
    let mut der = Vec::with_capacity(body.len() + 3);
    der.push(0x30);
    length(&mut der, body.len());
    der.extend_from_slice(&body);
    Some(der)
}

/// A DER INTEGER holding the unsigned big-endian `value`: minimal, with a leading zero
/// byte when the top bit is set.
fn integer(out: &mut Vec<u8>, value: &[u8]) {
    let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let value = &value[start..];
    let pad = value.first().is_none_or(|&b| b & 0x80 != 0);
    out.push(0x02);
    length(out, value.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(value);
}

/// A DER length (short form under 128, else long form); lengths here stay under 64 KiB.
fn length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else if len <= 0xff {
        out.push(0x81);
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        out.push(0x82);
        out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    }
}

/// A DER `Ecdsa-Sig-Value` as `R || S`, each left-padded to `width` bytes. `None` if it is
/// not such a value or an integer does not fit in `width` bytes.
#[cfg(feature = "ca")]
pub(crate) fn der_to_raw(der: &[u8], width: usize) -> Option<Vec<u8>> {
    use der::asn1::UintRef;
    use der::{Decode, Reader, SliceReader};
    let mut reader = SliceReader::new(der).ok()?;
    let (r, s) = reader
        .sequence(|r| Ok::<_, der::Error>((UintRef::decode(r)?, UintRef::decode(r)?)))
        .ok()?;
    if !reader.is_finished() {
        return None;
    }
    let mut raw = vec![0u8; 2 * width];
    for (i, value) in [r.as_bytes(), s.as_bytes()].into_iter().enumerate() {
        if value.len() > width {
            return None;
        }
        let end = (i + 1) * width;
        raw[end - value.len()..end].copy_from_slice(value);
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_positive() {
        let der = raw_to_der(&[0, 0, 0x7f, 0x80, 0x00, 0x01], 3).unwrap();
        assert_eq!(
            der,
            [0x30, 0x09, 0x02, 0x01, 0x7f, 0x02, 0x04, 0x00, 0x80, 0x00, 0x01]
        );
        // Zero encodes as one zero byte.
        let der = raw_to_der(&[0, 0, 0, 1], 2).unwrap();
        assert_eq!(der, [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]);
        assert_eq!(raw_to_der(&[1, 2, 3], 2), None);
    }

    #[test]
    fn p521_needs_the_long_length_form() {
        let raw = [0xffu8; 132];
        let der = raw_to_der(&raw, 66).unwrap();
        assert_eq!(&der[..3], &[0x30, 0x81, 138]);
        #[cfg(feature = "ca")]
        assert_eq!(der_to_raw(&der, 66).unwrap(), raw);
    }

    #[cfg(feature = "ca")]
    #[test]
    fn round_trips() {
        for raw in [[0u8; 64], [0x80; 64], [1; 64]] {
            let der = raw_to_der(&raw, 32).unwrap();
            assert_eq!(der_to_raw(&der, 32).unwrap(), raw);
        }
        let der = raw_to_der(&[0x80; 64], 32).unwrap();
        assert_eq!(der_to_raw(&der, 31), None);
        assert_eq!(der_to_raw(b"junk", 32), None);
    }
}
