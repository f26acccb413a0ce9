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

/// A PROXY protocol v2 header for a connection from `source` to `destination` (both `None`
/// for a Unix socket: the `UNSPEC` family, no addresses), with, when the caller came over
/// TLS, a `PP2_TYPE_SSL` TLV (client certificate verified, `tls_version` such as `TLSv1.3`)
/// and the caller's SPIFFE ID as a [`PP2_TYPE_SPIFFE_ID`] TLV.
///
/// ```
/// # use meshid::SpiffeId;
/// let id = SpiffeId::new("spiffe://example.org/frontend").unwrap();
/// let header = meshid::proxy::proxy_v2_header(
///     Some("10.0.0.1:40000".parse().unwrap()),
///     Some("10.0.0.2:8443".parse().unwrap()),
///     Some((&id, "TLSv1.3")),
/// );
/// assert!(header.starts_with(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"));
/// ```
pub fn proxy_v2_header(
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    tls: Option<(&SpiffeId, &str)>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    let family = match (source, destination) {
        (Some(s), Some(d)) => match (s.ip(), d.ip()) {
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
        },
        _ => 0x00, // UNSPEC: the receiver takes the socket's own addresses
    };
    if let Some((id, version)) = tls {
        let mut ssl = vec![PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS];
        ssl.extend_from_slice(&0u32.to_be_bytes()); // verify: 0 means the certificate verified
        tlv(&mut ssl, PP2_SUBTYPE_SSL_VERSION, version.as_bytes());
        tlv(&mut body, PP2_TYPE_SSL, &ssl);
        tlv(&mut body, PP2_TYPE_SPIFFE_ID, id.as_str().as_bytes());
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
            Some((&id, "TLSv1.3")),
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
        let h = proxy_v2_header(None, None, None);
        assert_eq!(h, [&SIGNATURE[..], &[0x21, 0x00, 0, 0]].concat());
    }
}
