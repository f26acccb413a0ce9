//! Test-time certificates built with rcgen: CAs and leaves that follow the X509-SVID profile
//! by default, so a test can break exactly one rule by changing one field.
//!
//! Included with `#[path = "common/certs.rs"] mod certs;`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

/// The curve of an rcgen key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// A fresh key on `curve`.
pub fn key(curve: Curve) -> KeyPair {
    let alg = match curve {
        Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    KeyPair::generate_for(alg).expect("generate key")
}

/// A subject no other test certificate has: webpki chains by subject/issuer names.
fn unique_name(label: &str) -> DistinguishedName {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "SPIFFE");
    dn.push(
        DnType::CommonName,
        format!("{label} {n} {}", std::process::id()),
    );
    dn
}

/// A URI SAN.
pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().expect("IA5 URI"))
}

/// A DNS SAN.
pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().expect("IA5 DNS name"))
}

/// A signing certificate by the profile (X509-SVID §4.1, §4.3): cA=true, keyCertSign and
/// cRLSign, the trust-domain ID `uri` as its only URI SAN.
pub fn ca_params(uri_san: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = unique_name("ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.subject_alt_names = vec![uri(uri_san)];
    p
}

/// A leaf by the profile (X509-SVID §4): cA=false, digitalSignature, EKU serverAuth and
/// clientAuth, `id` as its only URI SAN.
pub fn leaf_params(id: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = unique_name("leaf");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.subject_alt_names = vec![uri(id)];
    p.use_authority_key_identifier_extension = true;
    p
}

/// An extension with a private OID, marked critical: no verifier knows it.
pub fn unknown_critical_extension() -> CustomExtension {
    // 1.3.6.1.4.1.55555.1 (a private-enterprise arc), value NULL.
    let mut ext =
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![0x05, 0x00]);
    ext.set_criticality(true);
    ext
}

/// A critical NameConstraints extension (RFC 5280 §4.2.1.10) with one URI subtree `host`,
/// permitted (`excluded == false`) or excluded.
pub fn uri_name_constraint(host: &str, excluded: bool) -> CustomExtension {
    // GeneralSubtree ::= SEQUENCE { base GeneralName }, uniformResourceIdentifier [6] IA5String
    let subtree = tlv(0x30, &tlv(0x86, host.as_bytes()));
    let subtrees = tlv(if excluded { 0xa1 } else { 0xa0 }, &subtree);
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 30], tlv(0x30, &subtrees));
    ext.set_criticality(true);
    ext
}

/// One DER TLV.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap());
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap());
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A CA made with rcgen: its parameters and key (to sign more), its certificate, and its
/// chain up to and including the root.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: CertificateDer<'static>,
    /// This CA's certificate, then its issuers, the root last.
    pub chain: Vec<CertificateDer<'static>>,
}

impl Ca {
    /// A self-signed root from `params` with a fresh key on `curve`.
    pub fn root_with(params: CertificateParams, curve: Curve) -> Self {
        let key = key(curve);
        let der = params.self_signed(&key).expect("self-sign").der().clone();
        Self {
            chain: vec![der.clone()],
            params,
            key,
            der,
        }
    }

    /// A P-256 root for `trust_domain` (a name such as `example.org`), by the profile.
    pub fn root(trust_domain: &str) -> Self {
        Self::root_with(ca_params(&format!("spiffe://{trust_domain}")), Curve::P256)
    }

    /// Signs `params` for `subject_key`.
    pub fn sign(
        &self,
        params: &CertificateParams,
        subject_key: &KeyPair,
    ) -> CertificateDer<'static> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        params
            .signed_by(subject_key, &issuer)
            .expect("sign")
            .der()
            .clone()
    }

    /// A CA below this one from `params`, with a fresh key on `curve`.
    pub fn intermediate_with(&self, params: CertificateParams, curve: Curve) -> Self {
        let key = key(curve);
        let der = self.sign(&params, &key);
        let mut chain = vec![der.clone()];
        chain.extend(self.chain.iter().cloned());
        Self {
            params,
            key,
            der,
            chain,
        }
    }

    /// A P-256 CA below this one from `params`.
    pub fn intermediate(&self, params: CertificateParams) -> Self {
        self.intermediate_with(params, Curve::P256)
    }

    /// A leaf from `params` with a fresh P-256 key.
    pub fn leaf(&self, params: &CertificateParams) -> CertificateDer<'static> {
        self.sign(params, &key(Curve::P256))
    }

    /// The root of this CA's chain.
    pub fn root_der(&self) -> &CertificateDer<'static> {
        self.chain.last().expect("chain holds the root")
    }

    /// What a leaf of this CA is presented with: this CA and its issuers, root excluded.
    pub fn presented(&self) -> Vec<CertificateDer<'static>> {
        self.chain[..self.chain.len() - 1].to_vec()
    }

    /// This CA as a meshid [`Authority`](meshid::Authority), sharing its key and certificate,
    /// so our issuer and rcgen sign under the same name.
    pub fn authority(&self) -> meshid::Authority {
        let signer =
            meshid::KeyPair::from_pkcs8_der(&self.key.serialize_der()).expect("PKCS#8 key");
        meshid::Authority::from_parts(&self.chain, Arc::new(signer), None)
            .expect("rcgen CA loads as an Authority")
    }
}
