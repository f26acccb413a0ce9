//! Certificate encoding for the issuing CA: the RFC 5280 structures and the SPIFFE issuance
//! profile (DESIGN rules 13 and 14), extension by extension.

use std::time::{Duration, SystemTime};

use der::asn1::{BitString, Ia5String, OctetString};
use der::oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME, ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use der::oid::ObjectIdentifier;
use der::{Encode, Sequence};
use rustls_pki_types::CertificateDer;
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use super::signer::{sign_bits, signature_algorithm, Signer};
use super::CaError;
use crate::SpiffeId;

const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// How far NotBefore is backdated, for peers whose clocks run a little behind.
pub(crate) const BACKDATE: Duration = Duration::from_secs(10);

/// `TBSCertificate` (RFC 5280 §4.1), always v3 with extensions.
#[derive(Sequence)]
struct TbsCertificate {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    extensions: Vec<Extension>,
}

#[derive(Sequence)]
struct Validity {
    not_before: Time,
    not_after: Time,
}

// Field names follow RFC 5280's ASN.1.
#[allow(clippy::struct_field_names)]
#[derive(Sequence)]
struct Certificate {
    tbs_certificate: TbsCertificate,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
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

/// Everything needed to issue one certificate.
pub(crate) struct Params<'a> {
    pub(crate) role: Role<'a>,
    pub(crate) subject: Name,
    pub(crate) subject_key: SubjectPublicKeyInfoOwned,
    pub(crate) issuer: Name,
    /// The issuer's SKI, for the AKI; `None` for a self-signed root.
    pub(crate) issuer_key_id: Option<Vec<u8>>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

/// Encodes and signs a certificate.
pub(crate) fn issue(
    params: &Params<'_>,
    signer: &dyn Signer,
) -> Result<CertificateDer<'static>, CaError> {
    let algorithm = signature_algorithm(signer.key_type())?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: algorithm.clone(),
        issuer: params.issuer.clone(),
        validity: Validity {
            not_before: time(params.not_before)?,
            not_after: time(params.not_after)?,
        },
        subject: params.subject.clone(),
        subject_public_key_info: params.subject_key.clone(),
        extensions: extensions(params)?,
    };
    let tbs_der = tbs.to_der().map_err(|_| CaError::Encoding)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: sign_bits(signer, &tbs_der)?,
    };
    Ok(CertificateDer::from(
        cert.to_der().map_err(|_| CaError::Encoding)?,
    ))
}

/// A positive serial of 127 random bits (RFC 5280 §4.1.2.2 allows up to 20 octets; the
/// CA/B Forum asks for at least 64 bits of randomness).
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| CaError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; // keep 16 octets: no leading zero to strip
    SerialNumber::new(&bytes).map_err(|_| CaError::Encoding)
}

fn time(t: SystemTime) -> Result<Time, CaError> {
    Time::try_from(t).map_err(|_| CaError::Encoding)
}

/// The key identifier of a public key: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey bits (RFC 7093 §2 method 1).
pub(crate) fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    sha2::Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

fn ext(oid: ObjectIdentifier, critical: bool, value: &impl Encode) -> Result<Extension, CaError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(|_| CaError::Encoding)?)
            .map_err(|_| CaError::Encoding)?,
    })
}

fn extensions(params: &Params<'_>) -> Result<Vec<Extension>, CaError> {
    let uri = |id: &SpiffeId| -> Result<GeneralName, CaError> {
        Ok(GeneralName::UniformResourceIdentifier(
            Ia5String::new(id.as_str()).map_err(|_| CaError::Encoding)?,
        ))
    };
    let subject_empty = params.subject.is_empty();
    let mut out = Vec::with_capacity(6);
    match &params.role {
        Role::Leaf { id, dns_names } => {
            out.push(ext(
                ID_CE_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )?);
            out.push(ext(
                ID_CE_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::DigitalSignature.into()),
            )?);
            out.push(ext(
                ID_CE_EXT_KEY_USAGE,
                false,
                &ExtendedKeyUsage(vec![SERVER_AUTH, CLIENT_AUTH]),
            )?);
            let mut names = vec![uri(id)?];
            for dns in *dns_names {
                names.push(GeneralName::DnsName(
                    Ia5String::new(dns).map_err(|_| CaError::BadDnsName)?,
                ));
            }
            out.push(ext(
                ID_CE_SUBJECT_ALT_NAME,
                subject_empty,
                &SubjectAltName(names),
            )?);
        }
        Role::Ca { id, path_len } => {
            out.push(ext(
                ID_CE_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: *path_len,
                },
            )?);
            out.push(ext(
                ID_CE_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            )?);
            out.push(ext(
                ID_CE_SUBJECT_ALT_NAME,
                subject_empty,
                &SubjectAltName(vec![uri(id)?]),
            )?);
        }
    }
    out.push(ext(
        ID_CE_SUBJECT_KEY_IDENTIFIER,
        false,
        &SubjectKeyIdentifier(
            OctetString::new(key_id(&params.subject_key)).map_err(|_| CaError::Encoding)?,
        ),
    )?);
    if let Some(issuer_key_id) = &params.issuer_key_id {
        out.push(ext(
            ID_CE_AUTHORITY_KEY_IDENTIFIER,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(
                    OctetString::new(issuer_key_id.clone()).map_err(|_| CaError::Encoding)?,
                ),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?);
    }
    Ok(out)
}
