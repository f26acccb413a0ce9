//! The X509-SVID certificate profile ([X509-SVID §4, §5]), one small check per rule.
//!
//! These checks judge a certificate's *content*; signatures, validity and path building are
//! the path-validation layer's job (`crate::verify`). Both the SVID loader and the verifier
//! run them, so a certificate that breaks the profile is refused on every path.
//!
//! [X509-SVID §4, §5]: https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md

use der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

use super::SvidError;
use crate::SpiffeId;

/// `id-kp-serverAuth`.
const SERVER_AUTH: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// `id-kp-clientAuth`.
const CLIENT_AUTH: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_certificate(der: &[u8], index: usize) -> Result<Certificate, SvidError> {
    Certificate::from_der(der).map_err(|_| SvidError::MalformedCertificate { index })
}

/// Checks a leaf certificate against the X509-SVID profile; returns its SPIFFE ID.
pub(crate) fn check_leaf(leaf: &Certificate) -> Result<SpiffeId, SvidError> {
    let id = leaf_spiffe_id(leaf)?;
    leaf_is_not_ca(leaf)?;
    leaf_key_usage(leaf)?;
    leaf_extended_key_usage(leaf)?;
    Ok(id)
}

/// Checks a signing (CA) certificate of an SVID chain: `index` is its position in the chain.
pub(crate) fn check_signing(cert: &Certificate, index: usize) -> Result<(), SvidError> {
    signing_is_ca(cert, index)?;
    signing_key_cert_sign(cert, index)?;
    signing_id_has_no_path(cert, index)
}

/// Rule (X509-SVID §2, §4.1): exactly one URI SAN, a valid SPIFFE ID with a path.
pub(crate) fn leaf_spiffe_id(leaf: &Certificate) -> Result<SpiffeId, SvidError> {
    let uris = uri_sans(leaf, 0)?;
    let uri = match uris.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [one] => one,
        many => return Err(SvidError::MultipleUriSans { count: many.len() }),
    };
    let id = SpiffeId::from_bytes(uri).map_err(SvidError::BadSpiffeId)?;
    if id.is_trust_domain_id() {
        return Err(SvidError::LeafIdHasNoPath { id });
    }
    Ok(id)
}

/// Rule (X509-SVID §4.1): a leaf is no CA.
fn leaf_is_not_ca(leaf: &Certificate) -> Result<(), SvidError> {
    match basic_constraints(leaf, 0)? {
        Some(bc) if bc.ca => Err(SvidError::LeafIsCa),
        _ => Ok(()),
    }
}

/// Rule (X509-SVID §4.3): a leaf's key usage holds digitalSignature and neither
/// keyCertSign nor cRLSign.
fn leaf_key_usage(leaf: &Certificate) -> Result<(), SvidError> {
    // The order of go-spiffe, so a certificate with several faults gets the same verdict.
    let ku = key_usage(leaf, 0)?.ok_or(SvidError::LeafNoKeyUsage)?;
    if !ku.digital_signature() {
        return Err(SvidError::LeafNoDigitalSignature);
    }
    if ku.key_cert_sign() {
        return Err(SvidError::LeafKeyCertSign);
    }
    if ku.crl_sign() {
        return Err(SvidError::LeafCrlSign);
    }
    Ok(())
}

/// Rule (X509-SVID §4.4): when present, extended key usage includes both serverAuth and
/// clientAuth, so an SVID serves both ends of mTLS.
fn leaf_extended_key_usage(leaf: &Certificate) -> Result<(), SvidError> {
    let eku = leaf
        .tbs_certificate()
        .get_extension::<ExtendedKeyUsage>()
        .map_err(|_| SvidError::MalformedExtension {
            index: 0,
            extension: "extendedKeyUsage",
        })?;
    let Some((_, ExtendedKeyUsage(oids))) = eku else {
        return Ok(());
    };
    if !oids.contains(&SERVER_AUTH) {
        return Err(SvidError::LeafEkuMissing {
            purpose: "serverAuth",
        });
    }
    if !oids.contains(&CLIENT_AUTH) {
        return Err(SvidError::LeafEkuMissing {
            purpose: "clientAuth",
        });
    }
    Ok(())
}

/// Rule (X509-SVID §4.1): a signing certificate is a CA.
fn signing_is_ca(cert: &Certificate, index: usize) -> Result<(), SvidError> {
    match basic_constraints(cert, index)? {
        Some(bc) if bc.ca => Ok(()),
        _ => Err(SvidError::SigningNotCa { index }),
    }
}

/// Rule (X509-SVID §4.3): a signing certificate's key usage holds keyCertSign.
fn signing_key_cert_sign(cert: &Certificate, index: usize) -> Result<(), SvidError> {
    match key_usage(cert, index)? {
        Some(ku) if ku.key_cert_sign() => Ok(()),
        _ => Err(SvidError::SigningNoKeyCertSign { index }),
    }
}

/// Rule (X509-SVID §4.1): a signing certificate's SPIFFE ID, if any, has no path.
fn signing_id_has_no_path(cert: &Certificate, index: usize) -> Result<(), SvidError> {
    for uri in uri_sans(cert, index)? {
        if let Ok(id) = SpiffeId::from_bytes(&uri) {
            if !id.is_trust_domain_id() {
                return Err(SvidError::SigningIdHasPath { index, id });
            }
        }
    }
    Ok(())
}

/// The URI SANs of a certificate, as raw bytes, in order.
pub(crate) fn uri_sans(cert: &Certificate, index: usize) -> Result<Vec<Vec<u8>>, SvidError> {
    let mut out = Vec::new();
    for ext in cert.tbs_certificate().filter_extensions::<SubjectAltName>() {
        let (_, SubjectAltName(names)) = ext.map_err(|_| SvidError::MalformedExtension {
            index,
            extension: "subjectAltName",
        })?;
        out.extend(names.into_iter().filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_bytes().to_vec()),
            _ => None,
        }));
    }
    Ok(out)
}

fn basic_constraints(
    cert: &Certificate,
    index: usize,
) -> Result<Option<BasicConstraints>, SvidError> {
    cert.tbs_certificate()
        .get_extension::<BasicConstraints>()
        .map(|e| e.map(|(_, bc)| bc))
        .map_err(|_| SvidError::MalformedExtension {
            index,
            extension: "basicConstraints",
        })
}

fn key_usage(cert: &Certificate, index: usize) -> Result<Option<KeyUsage>, SvidError> {
    cert.tbs_certificate()
        .get_extension::<KeyUsage>()
        .map(|e| e.map(|(_, ku)| ku))
        .map_err(|_| SvidError::MalformedExtension {
            index,
            extension: "keyUsage",
        })
}
