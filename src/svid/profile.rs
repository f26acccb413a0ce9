//! The X509-SVID certificate profile ([X509-SVID §4, §5]), one small check per rule.
//!
//! These checks judge a certificate's *content*; signatures, validity and path building are
//! the path-validation layer's job (`crate::verify`). Both the SVID loader and the verifier
//! run them, so a certificate that breaks the profile is refused on every path.
//!
//! [X509-SVID §4, §5]: https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md

use der::Decode;
use x509_cert::Certificate;

pub(crate) use super::view::CertView;
use super::SvidError;
use crate::SpiffeId;

/// Parses one DER certificate fully, refusing trailing bytes.
pub(crate) fn parse_certificate(der: &[u8], index: usize) -> Result<Certificate, SvidError> {
    Certificate::from_der(der).map_err(|_| SvidError::MalformedCertificate { index })
}

/// Checks a leaf certificate against the X509-SVID profile; returns its SPIFFE ID.
pub(crate) fn check_leaf(leaf: &CertView<'_>) -> Result<SpiffeId, SvidError> {
    let id = leaf_spiffe_id(leaf)?;
    leaf_is_not_ca(leaf)?;
    leaf_key_usage(leaf)?;
    leaf_extended_key_usage(leaf)?;
    Ok(id)
}

/// Checks a signing (CA) certificate of an SVID chain: `index` is its position in the chain.
pub(crate) fn check_signing(cert: &CertView<'_>) -> Result<(), SvidError> {
    let index = cert.index();
    signing_is_ca(cert, index)?;
    signing_key_cert_sign(cert, index)?;
    signing_id_has_no_path(cert, index)
}

/// What a trust anchor must not say, since path validation keeps only its name and key
/// (X509-SVID §4.1, §4.3; RFC 5280 §4.2.1.3, §4.2.1.9): basicConstraints, when present,
/// says CA; keyUsage, when present, holds keyCertSign; a SPIFFE ID, when present, has no
/// path. Absent extensions are accepted, as for old self-signed roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootFault {
    NotCa,
    NoKeyCertSign,
    IdHasPath,
}

/// The root-specific facts path validation needs: its fault, if any, and its pathLen.
pub(crate) fn root_facts(root: &CertView<'_>) -> (Option<RootFault>, Option<u8>) {
    let bc = root.basic_constraints();
    let ku = root.key_usage();
    let fault = match (&bc, &ku) {
        (Err(_) | Ok(Some((false, _))), _) => Some(RootFault::NotCa),
        (_, Err(_)) => Some(RootFault::NoKeyCertSign),
        (_, Ok(Some(ku))) if !ku.key_cert_sign() => Some(RootFault::NoKeyCertSign),
        _ => match root.uri_sans() {
            Err(_) => Some(RootFault::IdHasPath),
            Ok(uris) => uris
                .iter()
                .filter_map(|u| SpiffeId::from_bytes(u).ok())
                .any(|id| !id.is_trust_domain_id())
                .then_some(RootFault::IdHasPath),
        },
    };
    let path_len = bc.ok().flatten().and_then(|(_, path_len)| path_len);
    (fault, path_len)
}

/// Whether an issuing certificate's keyUsage, when present, allows certificate signing
/// (RFC 5280 §6.1.4 (n)); webpki does not check this on intermediates.
pub(crate) fn may_sign_certificates(cert: &CertView<'_>) -> bool {
    match cert.key_usage() {
        Ok(Some(ku)) => ku.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Rule (X509-SVID §2, §4.1): exactly one URI SAN, a valid SPIFFE ID with a path.
pub(crate) fn leaf_spiffe_id(leaf: &CertView<'_>) -> Result<SpiffeId, SvidError> {
    let uris = leaf.uri_sans()?;
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
fn leaf_is_not_ca(leaf: &CertView<'_>) -> Result<(), SvidError> {
    match leaf.basic_constraints()? {
        Some((true, _)) => Err(SvidError::LeafIsCa),
        _ => Ok(()),
    }
}

/// Rule (X509-SVID §4.3): a leaf's key usage holds digitalSignature and neither
/// keyCertSign nor cRLSign.
fn leaf_key_usage(leaf: &CertView<'_>) -> Result<(), SvidError> {
    // The order of go-spiffe, so a certificate with several faults gets the same verdict.
    let ku = leaf.key_usage()?.ok_or(SvidError::LeafNoKeyUsage)?;
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
fn leaf_extended_key_usage(leaf: &CertView<'_>) -> Result<(), SvidError> {
    let Some((server_auth, client_auth)) = leaf.extended_key_usage()? else {
        return Ok(());
    };
    if !server_auth {
        return Err(SvidError::LeafEkuMissing {
            purpose: "serverAuth",
        });
    }
    if !client_auth {
        return Err(SvidError::LeafEkuMissing {
            purpose: "clientAuth",
        });
    }
    Ok(())
}

/// Rule (X509-SVID §4.1): a signing certificate is a CA.
fn signing_is_ca(cert: &CertView<'_>, index: usize) -> Result<(), SvidError> {
    match cert.basic_constraints()? {
        Some((true, _)) => Ok(()),
        _ => Err(SvidError::SigningNotCa { index }),
    }
}

/// Rule (X509-SVID §4.3): a signing certificate's key usage holds keyCertSign.
fn signing_key_cert_sign(cert: &CertView<'_>, index: usize) -> Result<(), SvidError> {
    match cert.key_usage()? {
        Some(ku) if ku.key_cert_sign() => Ok(()),
        _ => Err(SvidError::SigningNoKeyCertSign { index }),
    }
}

/// Rule (X509-SVID §4.1): a signing certificate's SPIFFE ID, if any, has no path.
fn signing_id_has_no_path(cert: &CertView<'_>, index: usize) -> Result<(), SvidError> {
    for uri in cert.uri_sans()? {
        if let Ok(id) = SpiffeId::from_bytes(uri) {
            if !id.is_trust_domain_id() {
                return Err(SvidError::SigningIdHasPath { index, id });
            }
        }
    }
    Ok(())
}
