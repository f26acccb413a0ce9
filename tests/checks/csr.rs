//! Invariants of CSR parsing on arbitrary input: no panic; an accepted CSR (its
//! self-signature verified) re-encodes to itself, and its SPIFFE ID is its only URI SAN.
//! Shared by the `csr` fuzz target and the corpus replay.

use meshid::Csr;

pub fn check(data: &[u8]) {
    for parsed in [Csr::from_der(data), Csr::from_pem(data)] {
        let Ok(csr) = parsed else { continue };
        let again = Csr::from_der(csr.to_der()).expect("an accepted CSR parses again");
        assert_eq!(again.to_der(), csr.to_der());
        let from_pem = Csr::from_pem(csr.to_pem().as_bytes()).expect("PEM round trip");
        assert_eq!(from_pem.to_der(), csr.to_der());
        match csr.spiffe_id() {
            Some(id) => assert_eq!(csr.uri_sans(), [id.as_str()]),
            None => assert!(
                csr.uri_sans().len() != 1 || meshid::SpiffeId::new(&csr.uri_sans()[0]).is_err()
            ),
        }
    }
}
