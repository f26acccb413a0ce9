//! PKCS#10 certificate signing requests (RFC 2986) carrying a SPIFFE ID.

use std::str::FromStr;

use der::asn1::{Ia5String, OctetString, SetOfVec};
use der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
use der::oid::ObjectIdentifier;
use der::{Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::Digest;
use spki::DecodePublicKey;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

use super::signer::{public_key_info, sign_bits, signature_algorithm, Signer};
use super::CaError;
use crate::{KeyType, SpiffeId};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const EXTENSION_REQUEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// Builds a CSR whose only URI SAN is a SPIFFE ID.
///
/// ```
/// use meshid::{Csr, CsrBuilder, KeyPair, KeyType, SpiffeId};
///
/// let key = KeyPair::generate(KeyType::P256)?;
/// let id = SpiffeId::new("spiffe://example.org/web").unwrap();
/// let csr = CsrBuilder::new(id.clone()).dns_name("web.internal").build(&key)?;
/// let parsed = Csr::from_pem(csr.to_pem().as_bytes())?;
/// assert_eq!(parsed.spiffe_id(), Some(&id));
/// assert_eq!(parsed.dns_names(), ["web.internal"]);
/// # Ok::<(), meshid::CaError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CsrBuilder {
    id: SpiffeId,
    dns_names: Vec<String>,
    subject: Option<String>,
}

impl CsrBuilder {
    /// A request for `id`.
    pub fn new(id: SpiffeId) -> Self {
        Self {
            id,
            dns_names: Vec::new(),
            subject: None,
        }
    }

    /// Adds a DNS SAN to the request. The CA decides what it signs:
    /// [`Authority::sign_csr`](crate::Authority::sign_csr) puts only the DNS names of its
    /// [`SvidRequest`](crate::SvidRequest) in the certificate, never the CSR's own.
    #[must_use]
    pub fn dns_name(mut self, name: impl Into<String>) -> Self {
        self.dns_names.push(name.into());
        self
    }

    /// Sets the subject, as an RFC 4514 string such as `CN=web,O=Example`.
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Signs the request with `key`.
    pub fn build(&self, key: &dyn Signer) -> Result<Csr, CaError> {
        let subject = match &self.subject {
            Some(s) => Name::from_str(s).map_err(|_| CaError::BadSubject)?,
            None => Name::default(),
        };
        let mut names = vec![GeneralName::UniformResourceIdentifier(
            Ia5String::new(self.id.as_str()).map_err(|_| CaError::Encoding)?,
        )];
        for dns in &self.dns_names {
            if !super::issue::is_dns_name(dns) {
                return Err(CaError::BadDnsName);
            }
            let dns = Ia5String::new(dns).map_err(|_| CaError::BadDnsName)?;
            names.push(GeneralName::DnsName(dns));
        }
        let san = Extension {
            extn_id: ID_CE_SUBJECT_ALT_NAME,
            critical: false,
            extn_value: OctetString::new(
                SubjectAltName(names)
                    .to_der()
                    .map_err(|_| CaError::Encoding)?,
            )
            .map_err(|_| CaError::Encoding)?,
        };
        let request: Attribute = ExtensionReq(vec![san])
            .try_into()
            .map_err(|_| CaError::Encoding)?;
        let mut attributes = SetOfVec::new();
        attributes.insert(request).map_err(|_| CaError::Encoding)?;
        let info = CertReqInfo {
            version: Version::V1,
            subject,
            public_key: public_key_info(key)?,
            attributes,
        };
        let tbs = info.to_der().map_err(|_| CaError::Encoding)?;
        let algorithm = signature_algorithm(key.key_type())?;
        let signature = sign_bits(key, &tbs)?;
        // A CertificationRequest has the shape of a Certificate: info, algorithm, signature.
        let der = super::issue::assemble(&tbs, &algorithm, &signature)?;
        // Built from parts we just checked: no need to parse and verify our own signature.
        Ok(Csr {
            der,
            id: Some(self.id.clone()),
            uri_sans: vec![self.id.to_string()],
            dns_names: self.dns_names.clone(),
            public_key_der: key.public_key_der(),
            key_type: key.key_type(),
        })
    }
}

/// A PKCS#10 request: either parsed, with its self-signature verified (there is no way to
/// parse one that fails that check), or just built and signed by [`CsrBuilder`].
#[derive(Debug, Clone)]
pub struct Csr {
    der: Vec<u8>,
    id: Option<SpiffeId>,
    uri_sans: Vec<String>,
    dns_names: Vec<String>,
    public_key_der: Vec<u8>,
    key_type: KeyType,
}

impl Csr {
    /// Parses a DER request and verifies its self-signature (ECDSA P-256 or P-384, with
    /// SHA-256 or SHA-384).
    pub fn from_der(der: &[u8]) -> Result<Self, CaError> {
        let req = CertReq::from_der(der).map_err(|_| CaError::MalformedCsr)?;
        let public_key_der = req
            .info
            .public_key
            .to_der()
            .map_err(|_| CaError::MalformedCsr)?;
        let key_type = csr_key_type(&req)?;
        // The signature covers the request info as received; a re-encoding could differ
        // (a decoded SET OF is sorted), so take those bytes as they are.
        let tbs = RawRequest::from_der(der)
            .and_then(|raw| raw.info.to_der())
            .map_err(|_| CaError::MalformedCsr)?;
        let signature = req
            .signature
            .as_bytes()
            .ok_or(CaError::CsrSignatureInvalid)?;
        verify_signature(
            key_type,
            &public_key_der,
            &req.algorithm.oid,
            &tbs,
            signature,
        )?;
        let (uri_sans, dns_names) = requested_names(&req)?;
        let id = match uri_sans.as_slice() {
            [one] => SpiffeId::new(one).ok(),
            _ => None,
        };
        Ok(Self {
            der: der.to_vec(),
            id,
            uri_sans,
            dns_names,
            public_key_der,
            key_type,
        })
    }

    /// Parses the first `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`) PEM block.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CaError> {
        let blocks = crate::pem::parse(pem)?;
        let block = blocks
            .iter()
            .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
            .ok_or(CaError::MalformedCsr)?;
        Self::from_der(&block.der)
    }

    /// Parses a request given as PEM or DER.
    pub fn load(input: &[u8]) -> Result<Self, CaError> {
        if crate::pem::is_pem(input) {
            Self::from_pem(input)
        } else {
            Self::from_der(input)
        }
    }

    /// The request, DER-encoded.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// The request as a `CERTIFICATE REQUEST` PEM block.
    pub fn to_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE REQUEST", &self.der)
    }

    /// The requested SPIFFE ID: the only URI SAN, when there is exactly one and it is a
    /// valid SPIFFE ID. An authority decides for itself whether to grant it.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.id.as_ref()
    }

    /// Every URI SAN requested, as given.
    pub fn uri_sans(&self) -> &[String] {
        &self.uri_sans
    }

    /// The DNS SANs requested.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// The requested public key, as a DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    /// The requested key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
}

/// A `CertificationRequest` with its info left as received.
#[derive(der::Sequence)]
struct RawRequest<'a> {
    info: der::asn1::AnyRef<'a>,
    algorithm: der::asn1::AnyRef<'a>,
    signature: der::asn1::BitStringRef<'a>,
}

fn csr_key_type(req: &CertReq) -> Result<KeyType, CaError> {
    let alg = &req.info.public_key.algorithm;
    if alg.oid != EC_PUBLIC_KEY {
        return Err(CaError::UnsupportedKeyAlgorithm { oid: alg.oid });
    }
    let curve = alg
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .ok_or(CaError::MalformedCsr)?;
    match curve {
        P256 => Ok(KeyType::P256),
        P384 => Ok(KeyType::P384),
        oid => Err(CaError::UnsupportedKeyAlgorithm { oid }),
    }
}

fn verify_signature(
    key_type: KeyType,
    spki: &[u8],
    algorithm: &ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CaError> {
    let digest: Vec<u8> = match *algorithm {
        ECDSA_SHA256 => sha2::Sha256::digest(message).to_vec(),
        ECDSA_SHA384 => sha2::Sha384::digest(message).to_vec(),
        oid => return Err(CaError::UnsupportedSignatureAlgorithm { oid }),
    };
    let ok = match key_type {
        KeyType::P256 => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki)
                .map_err(|_| CaError::MalformedCsr)?;
            p256::ecdsa::DerSignature::from_bytes(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok())
        }
        KeyType::P384 => {
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki)
                .map_err(|_| CaError::MalformedCsr)?;
            p384::ecdsa::DerSignature::from_bytes(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok())
        }
        other => return Err(CaError::UnsupportedKeyType(other)),
    };
    if ok {
        Ok(())
    } else {
        Err(CaError::CsrSignatureInvalid)
    }
}

/// The URI and DNS SANs of the request's `extensionRequest` attribute.
fn requested_names(req: &CertReq) -> Result<(Vec<String>, Vec<String>), CaError> {
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for attr in req
        .info
        .attributes
        .iter()
        .filter(|a| a.oid == EXTENSION_REQUEST)
    {
        for value in attr.values.iter() {
            let extensions: Vec<Extension> =
                value.decode_as().map_err(|_| CaError::MalformedCsr)?;
            for ext in extensions
                .iter()
                .filter(|e| e.extn_id == ID_CE_SUBJECT_ALT_NAME)
            {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|_| CaError::MalformedCsr)?;
                for name in san.0 {
                    match name {
                        GeneralName::UniformResourceIdentifier(u) => uris.push(u.to_string()),
                        GeneralName::DnsName(d) => dns.push(d.to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok((uris, dns))
}
