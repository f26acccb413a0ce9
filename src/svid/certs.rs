//! Reading certificates from PEM or DER without judging them.

use rustls_pki_types::CertificateDer;

use super::SvidError;

/// Reads every certificate of `input`, in order, keeping repeats: the `CERTIFICATE` blocks
/// of a PEM document (other blocks, such as a key, are skipped), or concatenated DER
/// certificates. Each is checked to be well-formed DER X.509 and nothing more: no SPIFFE
/// rule and no signature is checked (see [`X509Svid`](crate::X509Svid),
/// [`CertificateInfo`](crate::CertificateInfo) and
/// [`verify_x509_svid`](crate::verify_x509_svid) for that).
///
/// Input that parses whole as DER is DER (DER bytes may happen to hold a PEM `BEGIN` line);
/// otherwise input holding a `BEGIN` line is PEM.
///
/// ```
/// let pem = include_bytes!("../../tests/data/go-spiffe/x509svid/good-cert-and-key.pem");
/// let certs = meshid::parse_certificates(pem)?;
/// assert_eq!(certs.len(), 1); // the key block is skipped
/// let der: Vec<u8> = certs.iter().flat_map(|c| c.to_vec()).collect();
/// assert_eq!(meshid::parse_certificates(&der)?, certs);
/// assert!(meshid::parse_certificates(b"not a certificate").is_err());
/// # Ok::<(), meshid::SvidError>(())
/// ```
pub fn parse_certificates(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, SvidError> {
    if input.first() == Some(&0x30) {
        match crate::bundle::split_der(input) {
            Ok(certs) if !certs.is_empty() => return Ok(certs),
            Err((index, _)) if !crate::pem::is_pem(input) => {
                return Err(SvidError::MalformedCertificate { index });
            }
            // Not DER after all: PEM whose bytes happen to start as a SEQUENCE would.
            Ok(_) | Err(_) => {}
        }
    }
    if !crate::pem::is_pem(input) {
        return Err(if input.iter().all(u8::is_ascii_whitespace) {
            SvidError::NoCertificates
        } else {
            crate::PemError::NoBlocks.into()
        });
    }
    let mut certs = Vec::new();
    for block in crate::pem::parse(input)?
        .iter()
        .filter(|b| b.label == "CERTIFICATE")
    {
        let index = certs.len();
        super::profile::parse_certificate(&block.der, index)?;
        certs.push(CertificateDer::from(block.der.to_vec()));
    }
    if certs.is_empty() {
        return Err(SvidError::NoCertificates);
    }
    Ok(certs)
}
