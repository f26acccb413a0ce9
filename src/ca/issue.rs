//! Certificate encoding for the issuing CA: the RFC 5280 structures and the SPIFFE issuance
//! profile (X509-SVID §4: leaf and signing certificates; RFC 5280 §4.2), extension by extension.
//!
//! Issuance is on the hot path of a busy CA, so what does not change between certificates is
//! encoded once: the issuer's name and the AKI of what it issues (per authority), the
//! constant leaf extensions (per process). Each certificate then encodes only its own parts.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use der::asn1::{AnyRef, BitString, Ia5String, OctetString};
use der::oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME, ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use der::oid::ObjectIdentifier;
use der::{Decode, Encode, Sequence};
use rustls_pki_types::CertificateDer;
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use super::signer::{sign_bits, signature_algorithm, Signer};
use super::CaError;
use crate::SpiffeId;

const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// The DER of an empty distinguished name (a leaf's subject).
pub(crate) const EMPTY_NAME: &[u8] = &[0x30, 0x00];

/// How far NotBefore is backdated, for peers whose clocks run a little behind.
pub(crate) const BACKDATE: Duration = Duration::from_secs(10);

/// `TBSCertificate` (RFC 5280 §4.1), always v3 with extensions; the parts that are already
/// DER (names, key, extensions) are spliced in as they are.
#[derive(Sequence)]
struct TbsCertificate<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: AnyRef<'a>,
    validity: Validity,
    subject: AnyRef<'a>,
    subject_public_key_info: AnyRef<'a>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    extensions: AnyRef<'a>,
}

#[derive(Sequence)]
struct Validity {
    not_before: Time,
    not_after: Time,
}

/// What is being issued: a workload leaf or a CA.
pub(crate) enum Role<'a> {
    /// A leaf for `id`, with extra DNS SANs.
    Leaf {
        id: &'a SpiffeId,
        dns_names: &'a [String],
    },
    /// A CA for a trust domain (`id` is the trust-domain ID), with an optional pathLen.
    Ca {
        id: &'a SpiffeId,
        path_len: Option<u8>,
    },
}

/// Everything needed to issue one certificate, the fixed parts already DER-encoded.
pub(crate) struct Params<'a> {
    pub(crate) role: Role<'a>,
    /// The subject's `Name`, DER.
    pub(crate) subject: &'a [u8],
    /// The subject's `SubjectPublicKeyInfo`, DER.
    pub(crate) subject_key: &'a [u8],
    /// The issuer's `Name`, DER.
    pub(crate) issuer: &'a [u8],
    /// The issuer's authorityKeyIdentifier extension for what it issues, DER (see
    /// [`aki_extension`]); `None` for a self-signed root.
    pub(crate) aki: Option<&'a [u8]>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

/// Encodes and signs a certificate.
pub(crate) fn issue(
    params: &Params<'_>,
    signer: &dyn Signer,
) -> Result<CertificateDer<'static>, CaError> {
    let algorithm = signature_algorithm(signer.key_type())?;
    let extensions = extensions(params)?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: algorithm.clone(),
        issuer: any(params.issuer)?,
        validity: Validity {
            not_before: time(params.not_before)?,
            not_after: time(params.not_after)?,
        },
        subject: any(params.subject)?,
        subject_public_key_info: any(params.subject_key)?,
        extensions: any(&extensions)?,
    };
    let tbs_der = tbs.to_der().map_err(|_| CaError::Encoding)?;
    let signature = sign_bits(signer, &tbs_der)?;
    let cert = CertificateDer::from(assemble(&tbs_der, &algorithm, &signature)?);
    // Every X509-SVID issued comes through here (`Authority::sign`). Public parts only.
    if let Role::Leaf { id, .. } = params.role {
        tracing::info!(
            spiffe_id = %id,
            serial = %hex(tbs.serial_number.as_bytes()),
            not_after = %crate::time::Rfc3339(params.not_after),
            "issued X509-SVID"
        );
    }
    Ok(cert)
}

/// Lowercase hex, as `CertificateInfo::serial_hex` shows a serial.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `SEQUENCE { tbs, signatureAlgorithm, signature }` (a Certificate, or a PKCS#10
/// CertificationRequest), with the TBS spliced in as signed rather than encoded again.
pub(crate) fn assemble(
    tbs_der: &[u8],
    algorithm: &AlgorithmIdentifierOwned,
    signature: &BitString,
) -> Result<Vec<u8>, CaError> {
    let alg = algorithm.to_der().map_err(|_| CaError::Encoding)?;
    let sig = signature.to_der().map_err(|_| CaError::Encoding)?;
    sequence(&[tbs_der, &alg, &sig])
}

/// A SEQUENCE whose contents are the given DER elements, in order.
fn sequence(parts: &[&[u8]]) -> Result<Vec<u8>, CaError> {
    let body_len: usize = parts.iter().map(|p| p.len()).sum();
    let length = der::Length::try_from(body_len).map_err(|_| CaError::Encoding)?;
    let header = der::Header::new(der::Tag::Sequence, length)
        .to_der()
        .map_err(|_| CaError::Encoding)?;
    let mut out = Vec::with_capacity(header.len() + body_len);
    out.extend_from_slice(&header);
    for part in parts {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// A DER element reused as it is.
fn any(der: &[u8]) -> Result<AnyRef<'_>, CaError> {
    AnyRef::from_der(der).map_err(|_| CaError::Encoding)
}

/// A positive serial of 126 random bits (RFC 5280 §4.1.2.2 allows up to 20 octets; the
/// CA/B Forum asks for at least 64 bits of randomness).
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| CaError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; // keep 16 octets: no leading zero to strip
    SerialNumber::new(&bytes).map_err(|_| CaError::Encoding)
}

/// A validity bound, truncated to whole seconds (RFC 5280 §4.1.2.5: no fractional
/// seconds); X.509 times end at 9999-12-31.
fn time(t: SystemTime) -> Result<Time, CaError> {
    Time::try_from(t).map_err(|_| CaError::TtlOutOfRange)
}

/// The key identifier of a DER `SubjectPublicKeyInfo`: the leftmost 160 bits of the SHA-256
/// of its subjectPublicKey bits (RFC 7093 §2 method 1).
pub(crate) fn key_id(spki_der: &[u8]) -> Result<Vec<u8>, CaError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|_| CaError::Encoding)?;
    Ok(sha2::Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec())
}

/// The authorityKeyIdentifier extension (DER) that certificates issued by the holder of
/// `issuer_key_id` carry.
pub(crate) fn aki_extension(issuer_key_id: &[u8]) -> Result<Vec<u8>, CaError> {
    ext_der(
        ID_CE_AUTHORITY_KEY_IDENTIFIER,
        false,
        &AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(issuer_key_id).map_err(|_| CaError::Encoding)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
    )
}

/// One extension, DER-encoded.
fn ext_der(oid: ObjectIdentifier, critical: bool, value: &impl Encode) -> Result<Vec<u8>, CaError> {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(|_| CaError::Encoding)?)
            .map_err(|_| CaError::Encoding)?,
    }
    .to_der()
    .map_err(|_| CaError::Encoding)
}

/// basicConstraints cA=false, keyUsage digitalSignature (both critical) and extendedKeyUsage
/// serverAuth + clientAuth: the same for every leaf, so encoded once.
fn leaf_constant_extensions() -> Result<&'static [u8], CaError> {
    static CONSTANT: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    CONSTANT
        .get_or_init(|| {
            let parts = [
                ext_der(
                    ID_CE_BASIC_CONSTRAINTS,
                    true,
                    &BasicConstraints {
                        ca: false,
                        path_len_constraint: None,
                    },
                ),
                ext_der(
                    ID_CE_KEY_USAGE,
                    true,
                    &KeyUsage(KeyUsages::DigitalSignature.into()),
                ),
                ext_der(
                    ID_CE_EXT_KEY_USAGE,
                    false,
                    &ExtendedKeyUsage(vec![SERVER_AUTH, CLIENT_AUTH]),
                ),
            ];
            let mut out = Vec::new();
            for part in parts {
                out.extend(part.ok()?);
            }
            Some(out)
        })
        .as_deref()
        .ok_or(CaError::Encoding)
}

/// The `Extensions` SEQUENCE of a certificate, by the SPIFFE issuance profile.
fn extensions(params: &Params<'_>) -> Result<Vec<u8>, CaError> {
    let uri = |id: &SpiffeId| -> Result<GeneralName, CaError> {
        Ok(GeneralName::UniformResourceIdentifier(
            Ia5String::new(id.as_str()).map_err(|_| CaError::Encoding)?,
        ))
    };
    // The SAN is critical when the subject is empty (RFC 5280 §4.2.1.6).
    let san_critical = params.subject == EMPTY_NAME;
    let (role_exts, san) = match &params.role {
        Role::Leaf { id, dns_names } => {
            let mut names = vec![uri(id)?];
            for dns in *dns_names {
                if !is_dns_name(dns) {
                    return Err(CaError::BadDnsName);
                }
                names.push(GeneralName::DnsName(
                    Ia5String::new(dns).map_err(|_| CaError::BadDnsName)?,
                ));
            }
            (
                leaf_constant_extensions()?.to_vec(),
                ext_der(ID_CE_SUBJECT_ALT_NAME, san_critical, &SubjectAltName(names))?,
            )
        }
        Role::Ca { id, path_len } => {
            let mut exts = ext_der(
                ID_CE_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: *path_len,
                },
            )?;
            exts.extend(ext_der(
                ID_CE_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            )?);
            (
                exts,
                ext_der(
                    ID_CE_SUBJECT_ALT_NAME,
                    san_critical,
                    &SubjectAltName(vec![uri(id)?]),
                )?,
            )
        }
    };
    let ski = ext_der(
        ID_CE_SUBJECT_KEY_IDENTIFIER,
        false,
        &SubjectKeyIdentifier(
            OctetString::new(key_id(params.subject_key)?).map_err(|_| CaError::Encoding)?,
        ),
    )?;
    sequence(&[&role_exts, &san, &ski, params.aki.unwrap_or_default()])
}

/// A DNS name as a SAN may carry it (RFC 5280 §4.2.1.6, RFC 1123 host names): dot-separated
/// labels of letters, digits and inner hyphens, 1 to 63 bytes each, 253 in all; the first
/// label may be the wildcard `*`.
pub(crate) fn is_dns_name(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in [
            "a",
            "web.example.org",
            "*.example.org",
            "a-b.c1",
            &"a".repeat(63),
        ] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            ".",
            "a..b",
            "-a",
            "a-",
            "*",
            "a.*.b",
            "x_y",
            "é.org",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn sequence_lengths_use_the_shortest_form() {
        assert_eq!(sequence(&[]).unwrap(), [0x30, 0x00]);
        assert_eq!(sequence(&[&[5; 0x7f]]).unwrap()[..2], [0x30, 0x7f]);
        assert_eq!(sequence(&[&[5; 0x80]]).unwrap()[..3], [0x30, 0x81, 0x80]);
        assert_eq!(
            sequence(&[&[5; 0x100]]).unwrap()[..4],
            [0x30, 0x82, 0x01, 0x00]
        );
        assert_eq!(
            sequence(&[&vec![5; 0x10000]]).unwrap()[..5],
            [0x30, 0x83, 0x01, 0x00, 0x00]
        );
        assert_eq!(sequence(&[&[1, 2], &[3]]).unwrap(), [0x30, 0x03, 1, 2, 3]);
    }
}
