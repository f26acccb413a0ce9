//! The issuing CA: profile of what it issues, its refusals, and interop with `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use meshid::{
    Authority, CaError, Csr, CsrBuilder, KeyPair, KeyType, SpiffeId, SvidRequest, TrustDomain,
    X509Svid,
};
use rustls_pki_types::CertificateDer;

const DAY: Duration = Duration::from_secs(86_400);

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn pem(certs: &[CertificateDer<'_>]) -> String {
    meshid::certificates_to_pem(certs)
}

/// A scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshid-ca-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, data: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_string_lossy().into_owned()
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (.ci/run installs it)")
}

#[test]
fn issued_leaf_is_a_valid_svid_with_the_profile() {
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let svid = root
        .issue(&id("spiffe://example.org/web"), Duration::from_secs(600))
        .unwrap();
    assert_eq!(svid.id(), &id("spiffe://example.org/web"));
    assert_eq!(svid.chain().len(), 1);
    let life = svid.not_after().duration_since(svid.not_before()).unwrap();
    assert_eq!(life, Duration::from_secs(610), "10 s backdate + TTL");
    // The loader re-checks the whole profile and the key.
    let again =
        X509Svid::parse_pem(svid.chain_pem().as_bytes(), svid.key_pem().as_bytes()).unwrap();
    assert_eq!(again.id(), svid.id());
}

#[test]
fn ttl_is_capped_at_the_issuer() {
    let root = Authority::new_root(td("td"), Duration::from_secs(120), KeyType::P256).unwrap();
    let svid = root.issue(&id("spiffe://td/a"), DAY).unwrap();
    assert!(svid.not_after() <= root.not_after());
}

#[test]
fn intermediate_chain() {
    let root = Authority::new_root(td("td"), DAY, KeyType::P384).unwrap();
    let inter = root.new_intermediate(DAY, KeyType::P256).unwrap();
    let inter2 = inter.new_intermediate(DAY, KeyType::P256).unwrap();
    assert_eq!(inter.chain().len(), 1);
    assert_eq!(inter2.chain().len(), 2);
    let svid = inter2.issue(&id("spiffe://td/w"), DAY).unwrap();
    assert_eq!(svid.chain().len(), 3);
    assert_eq!(inter2.root(), root.root());
}

#[test]
fn refusals_each_have_their_own_error() {
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    assert!(matches!(
        root.issue(&id("spiffe://other.org/web"), DAY),
        Err(CaError::IdOutsideTrustDomain { .. })
    ));
    assert!(matches!(
        root.issue(&id("spiffe://example.org"), DAY),
        Err(CaError::PathlessId { .. })
    ));
    let key = KeyPair::generate(KeyType::P256).unwrap();
    let csr = CsrBuilder::new(id("spiffe://other.org/x"))
        .build(&key)
        .unwrap();
    assert!(matches!(
        root.sign_csr(&csr, &SvidRequest::new()),
        Err(CaError::IdOutsideTrustDomain { .. })
    ));
    // The authority's own decision wins over the CSR's ID.
    let chain = root
        .sign_csr(
            &csr,
            &SvidRequest::new().id(id("spiffe://example.org/decided")),
        )
        .unwrap();
    let svid = X509Svid::new(chain, key.to_private_key().unwrap()).unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/decided");
    // A flipped signature byte: the CSR is refused when parsed.
    let mut der = csr.to_der().to_vec();
    let last = der.len() - 2;
    der[last] ^= 0x01;
    assert_eq!(
        Csr::from_der(&der).unwrap_err(),
        CaError::CsrSignatureInvalid
    );
}

#[test]
fn openssl_verify_x509_strict_accepts_our_chains() {
    let dir = scratch("verify");
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let inter = root.new_intermediate(DAY, KeyType::P256).unwrap();
    for (name, ca) in [("root", &root), ("inter", &inter)] {
        let svid = ca.issue(&id("spiffe://example.org/web"), DAY).unwrap();
        let root_pem = write(
            &dir,
            &format!("{name}-root.pem"),
            &pem(&[root.root().unwrap().clone()]),
        );
        let leaf = write(&dir, &format!("{name}-leaf.pem"), &pem(&svid.chain()[..1]));
        let mut args = vec!["verify", "-x509_strict", "-CAfile", &root_pem];
        let untrusted;
        if svid.chain().len() > 1 {
            untrusted = write(
                &dir,
                &format!("{name}-untrusted.pem"),
                &pem(&svid.chain()[1..]),
            );
            args.extend(["-untrusted", &untrusted]);
        }
        args.push(&leaf);
        let out = openssl(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains(": OK"),
            "{name}: {text}"
        );
    }
}

#[test]
fn openssl_req_verify_accepts_our_csrs() {
    let dir = scratch("req");
    for key_type in [KeyType::P256, KeyType::P384] {
        let key = KeyPair::generate(key_type).unwrap();
        let csr = CsrBuilder::new(id("spiffe://example.org/web"))
            .dns_name("web.example.org")
            .subject("CN=web,O=Example")
            .build(&key)
            .unwrap();
        let path = write(&dir, "csr.pem", &csr.to_pem());
        let out = openssl(&["req", "-verify", "-noout", "-in", &path]);
        // openssl exits 0 even when the signature is bad: read what it says.
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("verify OK"), "{key_type}: {text}");
        assert!(!text.contains("fail"), "{key_type}: {text}");
    }
}

#[test]
fn we_sign_csrs_made_by_openssl_and_load_openssl_keys() {
    let dir = scratch("osslcsr");
    let key = dir.join("key.pem").to_string_lossy().into_owned();
    let csr = dir.join("csr.pem").to_string_lossy().into_owned();
    let out = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=web",
        "-addext",
        "subjectAltName=URI:spiffe://example.org/from-openssl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = Csr::from_pem(&std::fs::read(&csr).unwrap()).unwrap();
    assert_eq!(
        parsed.spiffe_id(),
        Some(&id("spiffe://example.org/from-openssl"))
    );
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let chain = root.sign_csr(&parsed, &SvidRequest::new()).unwrap();
    let key_pem = std::fs::read(&key).unwrap();
    let svid = X509Svid::parse_pem(pem(&chain).as_bytes(), &key_pem).unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/from-openssl");
    // The openssl key loads as a signing key too.
    KeyPair::from_pkcs8_pem(&key_pem).unwrap();

    // Two URI SANs: refused.
    let out = openssl(&[
        "req",
        "-new",
        "-key",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=web",
        "-addext",
        "subjectAltName=URI:spiffe://example.org/a,URI:spiffe://example.org/b",
    ]);
    assert!(out.status.success());
    let two = Csr::from_pem(&std::fs::read(&csr).unwrap()).unwrap();
    assert_eq!(
        root.sign_csr(&two, &SvidRequest::new()).unwrap_err(),
        CaError::CsrMultipleUriSans { count: 2 }
    );
}

#[test]
fn loads_a_ca_made_by_openssl_and_by_us() {
    let dir = scratch("load");
    let key = dir.join("ca.key").to_string_lossy().into_owned();
    let cert = dir.join("ca.pem").to_string_lossy().into_owned();
    let out = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "2",
        "-subj",
        "/O=SPIFFE/CN=openssl root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectAltName=URI:spiffe://example.org",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = Authority::from_pem(
        &std::fs::read(&cert).unwrap(),
        &std::fs::read(&key).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(ca.trust_domain(), &td("example.org"));
    assert_eq!(ca.key_type(), KeyType::P384);
    let svid = ca.issue(&id("spiffe://example.org/x"), DAY).unwrap();
    let root_pem = write(&dir, "root.pem", &pem(&[ca.root().unwrap().clone()]));
    let leaf = write(&dir, "leaf.pem", &pem(svid.chain()));
    let out = openssl(&["verify", "-x509_strict", "-CAfile", &root_pem, &leaf]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A key that is not the CA's is refused.
    let root = Authority::new_root(td("td"), DAY, KeyType::P256).unwrap();
    let key = KeyPair::generate(KeyType::P256).unwrap();
    let wrong = Authority::from_pem(
        pem(&[root.certificate().clone()]).as_bytes(),
        key.to_pkcs8_pem().as_bytes(),
        None,
    );
    assert_eq!(wrong.unwrap_err(), CaError::CaKeyMismatch);
}

#[test]
fn the_spiffe_crate_accepts_our_svids() {
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let inter = root.new_intermediate(DAY, KeyType::P384).unwrap();
    for ca in [&root, &inter] {
        let svid = ca
            .issue(&id("spiffe://example.org/ns/prod/web"), DAY)
            .unwrap();
        let chain: Vec<u8> = svid.chain().iter().flat_map(|c| c.to_vec()).collect();
        let theirs =
            spiffe::X509Svid::parse_from_der(&chain, svid.private_key().secret_pkcs8_der())
                .unwrap_or_else(|e| panic!("spiffe refused our SVID: {e}"));
        assert_eq!(
            theirs.spiffe_id().to_string(),
            "spiffe://example.org/ns/prod/web"
        );
        assert_eq!(theirs.cert_chain().len(), svid.chain().len());
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(u8::try_from(n).unwrap()),
        n if n < 0x100 => out.extend([0x81, u8::try_from(n).unwrap()]),
        n => out.extend([
            0x82,
            u8::try_from(n >> 8).unwrap(),
            u8::try_from(n & 0xff).unwrap(),
        ]),
    }
    out.extend_from_slice(content);
    out
}

#[test]
fn a_csr_is_verified_over_its_bytes_as_received() {
    // Attributes in a SET OF that is not in DER's sorted order: a decoder that sorts and
    // re-encodes would check the signature over other bytes. openssl accepts this CSR.
    use meshid::Signer;
    let key = KeyPair::generate(KeyType::P256).unwrap();
    let san = tlv(
        0x30,
        &[
            tlv(0x06, &[0x55, 0x1d, 0x11]),
            tlv(0x04, &tlv(0x30, &tlv(0x86, b"spiffe://example.org/web"))),
        ]
        .concat(),
    );
    let ext_req = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e],
            ),
            tlv(0x31, &tlv(0x30, &san)),
        ]
        .concat(),
    );
    let challenge = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07],
            ),
            tlv(0x31, &tlv(0x0c, b"x")),
        ]
        .concat(),
    );
    let info = tlv(
        0x30,
        &[
            vec![2, 1, 0],
            tlv(0x30, &[]),
            key.public_key_der(),
            tlv(0xa0, &[ext_req, challenge].concat()),
        ]
        .concat(),
    );
    let sig = key.sign(&info).unwrap();
    let alg = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let der = tlv(
        0x30,
        &[info, alg, tlv(0x03, &[vec![0], sig].concat())].concat(),
    );
    let csr = Csr::from_der(&der).unwrap();
    assert_eq!(csr.spiffe_id(), Some(&id("spiffe://example.org/web")));
}

#[test]
fn huge_ttls_are_errors_or_capped_never_panics() {
    assert_eq!(
        Authority::new_root(td("td"), Duration::MAX, KeyType::P256).unwrap_err(),
        CaError::TtlOutOfRange
    );
    assert_eq!(
        Authority::new_root(
            td("td"),
            Duration::from_secs(9000 * 365 * 86_400),
            KeyType::P256
        )
        .unwrap_err(),
        CaError::TtlOutOfRange
    );
    let root = Authority::new_root(td("td"), DAY, KeyType::P256).unwrap();
    let svid = root.issue(&id("spiffe://td/w"), Duration::MAX).unwrap();
    assert!(svid.not_after() <= root.not_after());
}

#[test]
fn dns_sans_are_validated() {
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let key = KeyPair::generate(KeyType::P256).unwrap();
    let csr = CsrBuilder::new(id("spiffe://example.org/web"))
        .build(&key)
        .unwrap();
    for bad in ["", "a b", "-x.org", "a..b"] {
        assert_eq!(
            root.sign_csr(&csr, &SvidRequest::new().dns_name(bad))
                .unwrap_err(),
            CaError::BadDnsName,
            "{bad:?}"
        );
        assert_eq!(
            CsrBuilder::new(id("spiffe://example.org/web"))
                .dns_name(bad)
                .build(&key)
                .unwrap_err(),
            CaError::BadDnsName
        );
    }
    let chain = root
        .sign_csr(&csr, &SvidRequest::new().dns_name("web.example.org"))
        .unwrap();
    assert_eq!(
        meshid::CertificateInfo::from_der(&chain[0])
            .unwrap()
            .dns_names(),
        ["web.example.org"]
    );
}

/// Reads the extensions of a certificate: (critical, DER value) by OID.
fn extensions(der: &[u8]) -> std::collections::HashMap<String, (bool, Vec<u8>)> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    cert.tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e.extn_id.to_string(),
                (e.critical, e.extn_value.as_bytes().to_vec()),
            )
        })
        .collect()
}

const BC: &str = "2.5.29.19";
const KU: &str = "2.5.29.15";
const EKU: &str = "2.5.29.37";
const SAN: &str = "2.5.29.17";
const SKI: &str = "2.5.29.14";
const AKI: &str = "2.5.29.35";

#[test]
fn issued_certificates_follow_the_issuance_profile() {
    use der::Decode;
    use x509_cert::ext::pkix::{
        AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
    };
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let inter = root.new_intermediate(DAY, KeyType::P256).unwrap();
    let svid = inter
        .issue(&id("spiffe://example.org/web"), Duration::from_secs(600))
        .unwrap();
    let (leaf, ica) = (&svid.chain()[0], &svid.chain()[1]);

    // Rule 13, the leaf.
    let x = extensions(leaf);
    let (crit, bc) = &x[BC];
    assert!(*crit && !BasicConstraints::from_der(bc).unwrap().ca);
    let (crit, ku) = &x[KU];
    let ku = KeyUsage::from_der(ku).unwrap();
    assert!(*crit && ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
    let eku = ExtendedKeyUsage::from_der(&x[EKU].1).unwrap();
    assert_eq!(eku.0.len(), 2);
    assert!(x[SAN].0, "the SAN is critical when the subject is empty");
    let cert = x509_cert::Certificate::from_der(leaf).unwrap();
    assert!(cert.tbs_certificate().subject().is_empty());
    let serial = cert.tbs_certificate().serial_number().as_bytes();
    assert!(
        serial.len() >= 8 && serial[0] & 0x80 == 0,
        "serial ≥ 64 bits, positive"
    );
    let validity = cert.tbs_certificate().validity();
    let life = validity
        .not_after
        .to_unix_duration()
        .checked_sub(validity.not_before.to_unix_duration())
        .unwrap();
    assert_eq!(life, Duration::from_secs(610), "NotBefore backdated 10 s");
    // The leaf's AKI is its issuer's SKI.
    let leaf_aki = AuthorityKeyIdentifier::from_der(&x[AKI].1).unwrap();
    let y = extensions(ica);
    let ica_ski = SubjectKeyIdentifier::from_der(&y[SKI].1).unwrap();
    assert_eq!(leaf_aki.key_identifier.unwrap(), ica_ski.0);
    assert!(x.contains_key(SKI));

    // Rule 14, the intermediate (and the root).
    let (crit, bc) = &y[BC];
    assert!(*crit && BasicConstraints::from_der(bc).unwrap().ca);
    let (crit, ku) = &y[KU];
    let ku = KeyUsage::from_der(ku).unwrap();
    assert!(*crit && ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let ica_info = meshid::CertificateInfo::from_der(ica).unwrap();
    assert_eq!(ica_info.uri_sans(), ["spiffe://example.org"]);
    assert!(!x509_cert::Certificate::from_der(ica)
        .unwrap()
        .tbs_certificate()
        .subject()
        .is_empty());
    let root_x = extensions(root.root().unwrap());
    let intermediate_aki = AuthorityKeyIdentifier::from_der(&y[AKI].1).unwrap();
    assert_eq!(
        intermediate_aki.key_identifier.unwrap(),
        SubjectKeyIdentifier::from_der(&root_x[SKI].1).unwrap().0
    );
    assert!(
        !root_x.contains_key(AKI),
        "a self-signed root carries no AKI"
    );
}

#[test]
fn keys_written_by_openssl_genpkey_load_and_sign() {
    let dir = scratch("genpkey");
    for (curve, key_type) in [("P-256", KeyType::P256), ("P-384", KeyType::P384)] {
        let path = dir
            .join(format!("{curve}.pem"))
            .to_string_lossy()
            .into_owned();
        let out = openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            &path,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read(&path).unwrap();
        let key = KeyPair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(meshid::Signer::key_type(&key), key_type);
        // The key round-trips and signs a CSR openssl accepts.
        let again = KeyPair::from_pkcs8_der(&key.to_pkcs8_der()).unwrap();
        let csr = CsrBuilder::new(id("spiffe://example.org/k"))
            .build(&again)
            .unwrap();
        let csr_path = write(&dir, "k.csr", &csr.to_pem());
        let out = openssl(&["req", "-verify", "-noout", "-in", &csr_path]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("verify OK"), "{curve}: {text}");
        assert!(format!("{key:?}").contains("redacted"));
    }
}

#[test]
fn svid_ttls_under_the_minimum_are_refused_on_every_issuing_path() {
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let int = root.new_intermediate(DAY, KeyType::P256).unwrap();
    let min = Authority::MIN_SVID_TTL;
    assert_eq!(min, Duration::from_secs(5));
    let web = id("spiffe://example.org/web");
    let key = KeyPair::generate(KeyType::P256).unwrap();
    let csr = CsrBuilder::new(web.clone()).build(&key).unwrap();
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(4),
        Duration::from_nanos(4_999_999_999),
    ] {
        let expected = CaError::TtlTooShort { ttl, min };
        for ca in [&root, &int] {
            assert_eq!(ca.issue(&web, ttl).unwrap_err(), expected);
            assert_eq!(
                ca.sign_csr(&csr, &SvidRequest::new().ttl(ttl)).unwrap_err(),
                expected
            );
        }
    }
    assert!(CaError::TtlTooShort {
        ttl: Duration::from_secs(1),
        min
    }
    .to_string()
    .contains("under the minimum"));
    // The minimum itself is served: NotAfter, truncated to whole seconds, is between
    // `min - 1 s` and `min` from issuance (plus the time issuance took).
    let before = std::time::SystemTime::now();
    let svid = root.issue(&web, min).unwrap();
    let lives = svid.not_after().duration_since(before).unwrap();
    assert!(
        lives > Duration::from_secs(4) && lives <= min + Duration::from_millis(500),
        "{lives:?}"
    );
    let chain = int.sign_csr(&csr, &SvidRequest::new().ttl(min)).unwrap();
    assert_eq!(chain.len(), 2);
}

/// A wildcard anywhere in a DNS name (leading, or a partial label such as `w*.x`) is
/// granted only when the request allows wildcards.
#[test]
fn wildcard_dns_names_anywhere_need_an_explicit_allow() {
    let root = Authority::new_root(td("example.org"), DAY, KeyType::P256).unwrap();
    let key = KeyPair::generate(KeyType::P256).unwrap();
    let csr = CsrBuilder::new(id("spiffe://example.org/web"))
        .build(&key)
        .unwrap();
    for name in ["*.example.org", "w*.example.org"] {
        let refused = root
            .sign_csr(&csr, &SvidRequest::new().dns_name(name))
            .unwrap_err();
        assert!(
            matches!(&refused, CaError::WildcardDnsName { name: n } if n == name),
            "{name}: {refused:?}"
        );
    }
    assert!(root
        .sign_csr(
            &csr,
            &SvidRequest::new()
                .dns_name("*.example.org")
                .allow_wildcard_dns(true)
        )
        .is_ok());
}
