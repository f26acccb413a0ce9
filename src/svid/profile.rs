//! The X509-SVID certificate profile ([X509-SVID §4, §5]), one small check per rule.
//!
//! These checks judge a certificate's *content*; signatures, validity and path building are
//! the path-validation layer's job (`crate::verify`). Both the SVID loader and the verifier
//! run them, so a certificate that breaks the profile is refused on every path.
//!
//! [X509-SVID §4, §5]: https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md

use std::time::SystemTime;

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use der::oid::AssociatedOid;
use der::{Decode, Sequence};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::time::Time;
use x509_cert::Certificate;

use super::SvidError;
use crate::SpiffeId;

/// `id-kp-serverAuth`.
const SERVER_AUTH: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// `id-kp-clientAuth`.
const CLIENT_AUTH: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// Parses one DER certificate fully, refusing trailing bytes.
pub(crate) fn parse_certificate(der: &[u8], index: usize) -> Result<Certificate, SvidError> {
    Certificate::from_der(der).map_err(|_| SvidError::MalformedCertificate { index })
}

/// One extension, borrowed.
struct Ext<'a> {
    oid: ObjectIdentifier,
    value: &'a [u8],
}

/// What the profile reads of a certificate: its extensions and its notAfter, borrowed
/// from its DER.
pub(crate) struct CertView<'a> {
    exts: Vec<Ext<'a>>,
    not_before: SystemTime,
    not_after: SystemTime,
    index: usize,
}

impl<'a> CertView<'a> {
    /// The view of a fully parsed certificate.
    pub(crate) fn of(cert: &'a Certificate, index: usize) -> Self {
        let tbs = cert.tbs_certificate();
        Self {
            exts: tbs
                .extensions()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|e| Ext {
                    oid: e.extn_id,
                    value: e.extn_value.as_bytes(),
                })
                .collect(),
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
            index,
        }
    }

    /// A minimal decode for the verifier's hot path: the certificate's structure is
    /// checked down to its fields, but names and keys are left as opaque DER (webpki reads
    /// them) and extension values are read only when a check asks for them.
    pub(crate) fn parse(der: &'a [u8], index: usize) -> Result<Self, SvidError> {
        let cert = LiteCertificate::from_der(der)
            .map_err(|_| SvidError::MalformedCertificate { index })?;
        Ok(Self {
            exts: cert
                .tbs
                .extensions
                .unwrap_or_default()
                .into_iter()
                .map(|e| Ext {
                    oid: e.extn_id,
                    value: e.extn_value.as_bytes(),
                })
                .collect(),
            not_before: cert.tbs.validity.not_before.to_system_time(),
            not_after: cert.tbs.validity.not_after.to_system_time(),
            index,
        })
    }

    #[cfg(feature = "ca")]
    /// The subject `Name` of a certificate, exactly as it is encoded there (issued
    /// certificates must repeat it byte for byte as their issuer).
    pub(crate) fn raw_subject(der: &'a [u8]) -> Option<Vec<u8>> {
        LiteCertificate::from_der(der)
            .ok()
            .and_then(|c| der::Encode::to_der(&c.tbs.subject).ok())
    }

    /// The certificate's notBefore.
    pub(crate) fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The certificate's notAfter.
    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The one extension of type `T`; an error when it is malformed or repeated
    /// (RFC 5280 §4.2: an extension appears at most once).
    fn get<T: Decode<'a> + AssociatedOid>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, SvidError> {
        let bad = || SvidError::MalformedExtension {
            index: self.index,
            extension: name,
        };
        let mut found = self.exts.iter().filter(|e| e.oid == T::OID);
        let Some(first) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(bad());
        }
        T::from_der(first.value).map(Some).map_err(|_| bad())
    }
}

/// `Certificate`, decoded only as deep as the profile needs.
#[derive(Sequence)]
struct LiteCertificate<'a> {
    tbs: LiteTbs<'a>,
    signature_algorithm: AnyRef<'a>,
    signature: BitStringRef<'a>,
}

/// `TBSCertificate` (RFC 5280 §4.1) with opaque names and key.
#[derive(Sequence)]
struct LiteTbs<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<u8>,
    serial_number: AnyRef<'a>,
    signature: AnyRef<'a>,
    issuer: AnyRef<'a>,
    validity: LiteValidity,
    subject: AnyRef<'a>,
    subject_public_key_info: AnyRef<'a>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    issuer_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    subject_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<LiteExtension<'a>>>,
}

#[derive(Sequence)]
struct LiteValidity {
    not_before: Time,
    not_after: Time,
}

#[derive(Sequence)]
struct LiteExtension<'a> {
    extn_id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    critical: bool,
    extn_value: &'a OctetStringRef,
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
    let index = cert.index;
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
    let bc = root.get::<BasicConstraints>("basicConstraints");
    let ku = root.get::<KeyUsage>("keyUsage");
    let fault = match (&bc, &ku) {
        (Err(_) | Ok(Some(BasicConstraints { ca: false, .. })), _) => Some(RootFault::NotCa),
        (_, Err(_)) => Some(RootFault::NoKeyCertSign),
        (_, Ok(Some(ku))) if !ku.key_cert_sign() => Some(RootFault::NoKeyCertSign),
        _ => match uri_sans(root) {
            Err(_) => Some(RootFault::IdHasPath),
            Ok(uris) => uris
                .iter()
                .filter_map(|u| SpiffeId::from_bytes(u).ok())
                .any(|id| !id.is_trust_domain_id())
                .then_some(RootFault::IdHasPath),
        },
    };
    let path_len = bc.ok().flatten().and_then(|bc| bc.path_len_constraint);
    (fault, path_len)
}

/// Whether an issuing certificate's keyUsage, when present, allows certificate signing
/// (RFC 5280 §6.1.4 (n)); webpki does not check this on intermediates.
pub(crate) fn may_sign_certificates(cert: &CertView<'_>) -> bool {
    match cert.get::<KeyUsage>("keyUsage") {
        Ok(Some(ku)) => ku.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Rule (X509-SVID §2, §4.1): exactly one URI SAN, a valid SPIFFE ID with a path.
pub(crate) fn leaf_spiffe_id(leaf: &CertView<'_>) -> Result<SpiffeId, SvidError> {
    let uris = uri_sans(leaf)?;
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
    match leaf.get::<BasicConstraints>("basicConstraints")? {
        Some(bc) if bc.ca => Err(SvidError::LeafIsCa),
        _ => Ok(()),
    }
}

/// Rule (X509-SVID §4.3): a leaf's key usage holds digitalSignature and neither
/// keyCertSign nor cRLSign.
fn leaf_key_usage(leaf: &CertView<'_>) -> Result<(), SvidError> {
    // The order of go-spiffe, so a certificate with several faults gets the same verdict.
    let ku = leaf
        .get::<KeyUsage>("keyUsage")?
        .ok_or(SvidError::LeafNoKeyUsage)?;
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
    let Some(ExtendedKeyUsage(oids)) = leaf.get::<ExtendedKeyUsage>("extendedKeyUsage")? else {
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
fn signing_is_ca(cert: &CertView<'_>, index: usize) -> Result<(), SvidError> {
    match cert.get::<BasicConstraints>("basicConstraints")? {
        Some(bc) if bc.ca => Ok(()),
        _ => Err(SvidError::SigningNotCa { index }),
    }
}

/// Rule (X509-SVID §4.3): a signing certificate's key usage holds keyCertSign.
fn signing_key_cert_sign(cert: &CertView<'_>, index: usize) -> Result<(), SvidError> {
    match cert.get::<KeyUsage>("keyUsage")? {
        Some(ku) if ku.key_cert_sign() => Ok(()),
        _ => Err(SvidError::SigningNoKeyCertSign { index }),
    }
}

/// Rule (X509-SVID §4.1): a signing certificate's SPIFFE ID, if any, has no path.
fn signing_id_has_no_path(cert: &CertView<'_>, index: usize) -> Result<(), SvidError> {
    for uri in uri_sans(cert)? {
        if let Ok(id) = SpiffeId::from_bytes(&uri) {
            if !id.is_trust_domain_id() {
                return Err(SvidError::SigningIdHasPath { index, id });
            }
        }
    }
    Ok(())
}

/// The URI SANs of a certificate, as raw bytes, in order.
pub(crate) fn uri_sans(cert: &CertView<'_>) -> Result<Vec<Vec<u8>>, SvidError> {
    let Some(SubjectAltName(names)) = cert.get::<SubjectAltName>("subjectAltName")? else {
        return Ok(Vec::new());
    };
    Ok(names
        .into_iter()
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_bytes().to_vec()),
            _ => None,
        })
        .collect())
}
