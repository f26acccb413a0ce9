//! What a certificate says, for people and tools (`meshid inspect`), with the SPIFFE rules it
//! breaks listed rather than refused.

use std::time::SystemTime;

use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, SubjectAltName};

use super::{profile, SvidError};
use crate::time::Rfc3339;
use crate::{KeyType, SpiffeId};

/// The fields of one certificate that matter for SPIFFE, read without judging it.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    spiffe_id: Option<SpiffeId>,
    uri_sans: Vec<String>,
    dns_names: Vec<String>,
    is_ca: bool,
    not_before: SystemTime,
    not_after: SystemTime,
    not_before_text: String,
    not_after_text: String,
    key_type: Option<KeyType>,
    serial_hex: String,
    issuer: String,
    subject: String,
    violations: Vec<SvidError>,
}

impl CertificateInfo {
    /// Reads a DER certificate. Only malformed DER is an error; SPIFFE rule violations are
    /// listed by [`violations`](Self::violations).
    pub fn from_der(der: &[u8]) -> Result<Self, SvidError> {
        let cert = profile::parse_certificate(der, 0)?;
        let tbs = cert.tbs_certificate();
        let mut uri_sans = Vec::new();
        let mut dns_names = Vec::new();
        for (_, SubjectAltName(names)) in tbs.filter_extensions::<SubjectAltName>().flatten() {
            for name in names {
                match name {
                    GeneralName::UniformResourceIdentifier(u) => uri_sans.push(u.to_string()),
                    GeneralName::DnsName(d) => dns_names.push(d.to_string()),
                    _ => {}
                }
            }
        }
        let is_ca = matches!(
            tbs.get_extension::<BasicConstraints>(),
            Ok(Some((_, BasicConstraints { ca: true, .. })))
        );
        let spiffe_id = match uri_sans.as_slice() {
            [one] => SpiffeId::new(one).ok(),
            _ => None,
        };
        // A certificate naming a workload (an ID with a path) is judged as the leaf it
        // claims to be, even when it (wrongly) says it is a CA.
        let as_leaf = !is_ca
            || spiffe_id
                .as_ref()
                .is_some_and(|id| !id.is_trust_domain_id());
        let check = if as_leaf {
            profile::check_leaf(&profile::CertView::of(&cert, 0)).err()
        } else {
            profile::check_signing(&profile::CertView::of(&cert, 0)).err()
        };
        let validity = tbs.validity();
        let not_before = validity.not_before.to_system_time();
        let not_after = validity.not_after.to_system_time();
        Ok(Self {
            spiffe_id,
            uri_sans,
            dns_names,
            is_ca,
            not_before,
            not_after,
            not_before_text: Rfc3339(not_before).to_string(),
            not_after_text: Rfc3339(not_after).to_string(),
            key_type: KeyType::of_spki(tbs.subject_public_key_info()),
            serial_hex: hex(tbs.serial_number().as_bytes()),
            issuer: tbs.issuer().to_string(),
            subject: tbs.subject().to_string(),
            violations: check.into_iter().collect(),
        })
    }

    /// The SPIFFE ID, when the certificate has exactly one URI SAN and it is valid.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.spiffe_id.as_ref()
    }

    /// Every URI SAN, as written.
    pub fn uri_sans(&self) -> &[String] {
        &self.uri_sans
    }

    /// Every DNS SAN.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// Whether BasicConstraints says cA=true.
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Start of validity, as the certificate writes it (RFC 3339, UTC).
    pub fn not_before_rfc3339(&self) -> &str {
        &self.not_before_text
    }

    /// End of validity, as the certificate writes it (RFC 3339, UTC).
    pub fn not_after_rfc3339(&self) -> &str {
        &self.not_after_text
    }

    /// The subject key's type, when meshid knows it.
    pub fn key_type(&self) -> Option<KeyType> {
        self.key_type
    }

    /// The serial number, hexadecimal.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }

    /// The issuer's distinguished name (RFC 4514).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject's distinguished name (RFC 4514).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The first SPIFFE rule the certificate breaks, as a leaf (or as a signing certificate
    /// when it is a CA and names no workload), in the order verification checks them.
    /// Empty when it fits the profile.
    pub fn violations(&self) -> &[SvidError] {
        &self.violations
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
