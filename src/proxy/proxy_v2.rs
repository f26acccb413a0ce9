//! The PROXY protocol version 2 header (HAProxy's "The PROXY protocol", section 2.2): tells
//! the application behind the proxy who connected, and which SPIFFE ID that caller proved.

use std::net::{IpAddr, SocketAddr};

use crate::SpiffeId;

/// The type of the TLV carrying the peer's SPIFFE ID (UTF-8, as `spiffe://...`): the first of
/// the range the PROXY protocol keeps for applications (`PP2_TYPE_MIN_CUSTOM`, 0xE0).
pub const PP2_TYPE_SPIFFE_ID: u8 = 0xE0;

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// What a PROXY protocol v2 header says of the caller's TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo<'a> {
    /// The TLS version agreed.
    pub version: rustls::ProtocolVersion,
    /// The caller's SPIFFE ID, verified by a SPIFFE verifier; `None` when the caller
    /// presented no X509-SVID that was verified as one.
    pub peer_id: Option<&'a SpiffeId>,
}

impl<'a> TlsInfo<'a> {
    /// TLS at `version`, from a caller verified as `peer_id` (if any).
    pub fn new(version: rustls::ProtocolVersion, peer_id: Option<&'a SpiffeId>) -> Self {
        Self { version, peer_id }
    }
}

/// A PROXY protocol v2 header for a connection from `source` to `destination` (TCP; both
/// `None` for a Unix socket: the `AF_UNIX` family with empty paths, since the caller of a
/// Unix socket has no address) and, when the caller came over TLS, a `PP2_TYPE_SSL` TLV
/// (`PP2_CLIENT_SSL`; with a verified caller also `PP2_CLIENT_CERT_CONN` and
/// `PP2_CLIENT_CERT_SESS` and `verify` 0; the version as `PP2_SUBTYPE_SSL_VERSION`) and the
/// caller's SPIFFE ID as a [`PP2_TYPE_SPIFFE_ID`] TLV.
///
/// ```
/// # use meshid::SpiffeId;
/// use meshid::proxy::TlsInfo;
/// use meshid::tls::rustls::ProtocolVersion;
/// let id = SpiffeId::new("spiffe://example.org/frontend").unwrap();
/// let header = meshid::proxy::proxy_v2_header(
///     Some("10.0.0.1:40000".parse().unwrap()),
///     Some("10.0.0.2:8443".parse().unwrap()),
///     Some(TlsInfo::new(ProtocolVersion::TLSv1_3, Some(&id))),
/// );
/// assert!(header.starts_with(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"));
/// ```
pub fn proxy_v2_header(
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    tls: Option<TlsInfo<'_>>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    let family = if let (Some(s), Some(d)) = (source, destination) {
        match (s.ip().to_canonical(), d.ip().to_canonical()) {
            (IpAddr::V4(si), IpAddr::V4(di)) => {
                body.extend_from_slice(&si.octets());
                body.extend_from_slice(&di.octets());
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
                0x11 // TCP over IPv4
            }
            (si, di) => {
                body.extend_from_slice(&v6(si).octets());
                body.extend_from_slice(&v6(di).octets());
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
                0x21 // TCP over IPv6
            }
        }
    } else {
        // UNIX stream: two 108-byte paths, empty (receivers such as nginx parse TLVs only
        // after a family they know, so UNSPEC would lose the ID).
        body.resize(216, 0);
        0x31
    };
    if let Some(tls) = tls {
        let verified = tls.peer_id.is_some();
        let mut ssl = vec![if verified {
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
        } else {
            PP2_CLIENT_SSL
        }];
        // verify: 0 when a client certificate was presented and verified.
        ssl.extend_from_slice(&u32::from(!verified).to_be_bytes());
        let version = match tls.version {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            _ => "TLS",
        };
        tlv(&mut ssl, PP2_SUBTYPE_SSL_VERSION, version.as_bytes());
        tlv(&mut body, PP2_TYPE_SSL, &ssl);
        if let Some(id) = tls.peer_id {
            tlv(&mut body, PP2_TYPE_SPIFFE_ID, id.as_str().as_bytes());
        }
    }
    let mut header = Vec::with_capacity(16 + body.len());
    header.extend_from_slice(&SIGNATURE);
    header.push(0x21); // version 2, command PROXY
    header.push(family);
    // A SPIFFE ID is at most 2048 bytes, so the body always fits the 16-bit length.
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&body);
    header
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads TLVs back, as a receiver would.
    fn tlvs(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 3 {
            let len = usize::from(u16::from_be_bytes([bytes[1], bytes[2]]));
            out.push((bytes[0], bytes[3..3 + len].to_vec()));
            bytes = &bytes[3 + len..];
        }
        assert!(bytes.is_empty(), "trailing bytes after the TLVs");
        out
    }

    #[test]
    fn ipv4_with_the_spiffe_id() {
        let id = SpiffeId::new("spiffe://example.org/frontend").unwrap();
        let h = proxy_v2_header(
            Some("10.0.0.1:40000".parse().unwrap()),
            Some("10.0.0.2:8443".parse().unwrap()),
            Some(TlsInfo::new(rustls::ProtocolVersion::TLSv1_3, Some(&id))),
        );
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
        assert_eq!(h.len(), 16 + len);
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert_eq!(&h[20..24], &[10, 0, 0, 2]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 40000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 8443);
        let tlvs = tlvs(&h[28..]);
        assert_eq!(tlvs[0].0, PP2_TYPE_SSL);
        assert_eq!(tlvs[0].1[0], 0x07);
        assert_eq!(&tlvs[0].1[1..5], &[0, 0, 0, 0]);
        assert_eq!(
            self::tlvs(&tlvs[0].1[5..]),
            vec![(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3".to_vec())]
        );
        assert_eq!(
            tlvs[1],
            (
                PP2_TYPE_SPIFFE_ID,
                b"spiffe://example.org/frontend".to_vec()
            )
        );
    }

    #[test]
    fn ipv6_mixed_and_unix() {
        let h = proxy_v2_header(
            Some("10.0.0.1:1".parse().unwrap()),
            Some("[::1]:2".parse().unwrap()),
            None,
        );
        assert_eq!(h[13], 0x21);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 36);
        assert_eq!(
            &h[16..32],
            &"::ffff:10.0.0.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        // A v4-mapped pair is sent as IPv4.
        let h = proxy_v2_header(
            Some("[::ffff:10.0.0.1]:1".parse().unwrap()),
            Some("[::ffff:10.0.0.2]:2".parse().unwrap()),
            None,
        );
        assert_eq!(h[13], 0x11);
        // Unix: AF_UNIX with empty paths, then the TLVs.
        let h = proxy_v2_header(None, None, None);
        assert_eq!(h[..14], [&SIGNATURE[..], &[0x21, 0x31]].concat());
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 216);
        assert!(h[16..].iter().all(|b| *b == 0));
    }

    #[test]
    fn tls_without_a_verified_caller_says_so_and_carries_no_id() {
        let h = proxy_v2_header(
            Some("10.0.0.1:1".parse().unwrap()),
            Some("10.0.0.2:2".parse().unwrap()),
            Some(TlsInfo::new(rustls::ProtocolVersion::TLSv1_2, None)),
        );
        let tlvs = tlvs(&h[28..]);
        assert_eq!(tlvs.len(), 1, "no ID TLV");
        assert_eq!(tlvs[0].0, PP2_TYPE_SSL);
        assert_eq!(tlvs[0].1[0], PP2_CLIENT_SSL);
        assert_eq!(&tlvs[0].1[1..5], &[0, 0, 0, 1], "verify is non-zero");
        assert_eq!(
            self::tlvs(&tlvs[0].1[5..]),
            vec![(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.2".to_vec())]
        );
    }
}
