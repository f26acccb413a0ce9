//! Invariants of X509-SVID, private key and certificate parsing on arbitrary input: no
//! panic; whatever is accepted re-exports to an equal SVID and fits the SPIFFE profile.
//! Shared by the `x509_svid` fuzz target and the corpus replay.

use meshid::{CertificateInfo, PrivateKey, X509Svid};
use rustls_pki_types::CertificateDer;

pub fn check(data: &[u8]) {
    // The same document as certificates and key, as a combined PEM file is read.
    if let Ok(svid) = X509Svid::parse_pem(data, data) {
        check_svid(&svid);
    }
    // Split input: certificate DER, then key DER.
    let split = data
        .first()
        .map_or(0, |b| usize::from(*b) * 4)
        .min(data.len());
    let (cert, key) = data.split_at(split);
    if let Ok(svid) = X509Svid::from_der(vec![CertificateDer::from(cert.to_vec())], key) {
        check_svid(&svid);
    }
    if let Ok(key) = PrivateKey::from_pkcs8_der(data) {
        assert_eq!(key.secret_pkcs8_der(), data);
        let again = PrivateKey::from_pkcs8_pem(key.to_pkcs8_pem().as_bytes()).unwrap();
        assert_eq!(again.key_type(), key.key_type());
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.secret_pkcs8_der())));
    }
    if let Ok(info) = CertificateInfo::from_der(data) {
        assert!(
            info.not_before_rfc3339().ends_with('Z')
                || info.not_before_rfc3339().is_empty()
                || !info.not_before_rfc3339().is_empty()
        );
        if let Some(id) = info.spiffe_id() {
            assert_eq!(info.uri_sans(), [id.as_str()]);
        }
    }
}

fn check_svid(svid: &X509Svid) {
    assert!(!svid.chain().is_empty());
    assert!(!svid.id().is_trust_domain_id());
    let again = X509Svid::parse_pem(svid.chain_pem().as_bytes(), svid.key_pem().as_bytes())
        .expect("an accepted SVID re-exports to an accepted SVID");
    assert_eq!(again.id(), svid.id());
    assert_eq!(again.chain(), svid.chain());
    assert_eq!(again.not_after(), svid.not_after());
    let info = CertificateInfo::from_der(svid.leaf()).unwrap();
    assert!(info.violations().is_empty(), "{:?}", info.violations());
    assert_eq!(info.spiffe_id(), Some(svid.id()));
}
