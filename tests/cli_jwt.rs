//! `meshid jwt mint`, `meshid jwt validate`, `meshid ca jwt-key add`, `meshid bundle show`
//! and the JWT half of `meshid ca init`, run as the real binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use base64ct::{Base64UrlUnpadded, Encoding};
use meshid::jwt::JwtValidator;
use meshid::{SpiffeBundle, TrustDomain};

fn meshid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshid"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn meshid_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshid"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    stdout(o)
}

/// Exit 1, with the rule (`cite`) named on standard error.
fn refused(o: &Output, cite: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(cite), "{cite:?} not in: {err}");
    assert!(o.stdout.is_empty(), "{}", text(o));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshid-cli-jwt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn init(d: &Path, td: &str, out: &str) {
    ok(&meshid(
        d,
        &["ca", "init", "--trust-domain", td, "--out", out],
    ));
}

fn mint(d: &Path, ca: &str, id: &str, extra: &[&str]) -> String {
    let mut args = vec!["jwt", "mint", "--ca", ca, "--id", id];
    args.extend_from_slice(extra);
    let out = ok(&meshid(d, &args));
    assert_eq!(out.lines().count(), 1, "{out}");
    out.trim_end().to_owned()
}

fn validate(d: &Path, bundle: &str, audience: &str, token: &str) -> Output {
    meshid(
        d,
        &[
            "jwt",
            "validate",
            "--trust-domain",
            "example.org",
            "--bundle",
            bundle,
            "--audience",
            audience,
            token,
        ],
    )
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_init_writes_the_bundle_and_a_jwt_key() {
    let d = scratch("init");
    let o = meshid(
        &d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    ok(&o);
    assert!(!text(&o).contains("PRIVATE KEY"));
    let json = std::fs::read(d.join("ca/bundle.json")).unwrap();
    let bundle = SpiffeBundle::parse(td(), &json).unwrap();
    assert_eq!(bundle.x509_authorities().len(), 1);
    assert_eq!(bundle.jwt_authorities().len(), 1);
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let uses: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["use"].as_str().unwrap())
        .collect();
    assert_eq!(uses, ["x509-svid", "jwt-svid"]);
    // The JWT key file: DIR/jwt/0001.KID.key, named by the published kid, private.
    let kid = bundle.jwt_authorities()[0].key_id();
    let key = d.join(format!("ca/jwt/0001.{kid}.key"));
    assert!(key.exists());
    #[cfg(unix)]
    {
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&d.join("ca/jwt")), 0o700);
        assert_eq!(mode(&d.join("ca/bundle.json")), 0o644);
    }
    // The root in bundle.json is ca.pem's certificate.
    let ca_pem = std::fs::read(d.join("ca/ca.pem")).unwrap();
    assert_eq!(
        meshid::parse_certificates(&ca_pem).unwrap(),
        bundle.x509_authorities()
    );
    // `bundle show` prints the same bytes.
    let shown = ok(&meshid(&d, &["bundle", "show", "--ca", "ca"]));
    assert_eq!(shown.as_bytes(), json);
    // An intermediate holds no JWT key and writes no bundle.json.
    ok(&meshid(
        &d,
        &["ca", "intermediate", "--ca", "ca", "--out", "int"],
    ));
    assert!(!d.join("int/bundle.json").exists());
    assert!(!d.join("int/jwt").exists());
    let o = meshid(
        &d,
        &[
            "jwt",
            "mint",
            "--ca",
            "int",
            "--id",
            "spiffe://example.org/w",
            "--audience",
            "a",
        ],
    );
    refused(&o, "intermediate CA holds no JWT key");
    refused(
        &meshid(&d, &["ca", "jwt-key", "add", "--ca", "int"]),
        "intermediate",
    );
    // Its bundle is still the trust domain's root.
    let shown = ok(&meshid(&d, &["bundle", "show", "--ca", "int"]));
    let int_bundle = SpiffeBundle::parse(td(), shown.as_bytes()).unwrap();
    assert_eq!(int_bundle.x509_authorities(), bundle.x509_authorities());
    // A second init into the directory is refused.
    refused(
        &meshid(
            &d,
            &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
        ),
        "refusing to overwrite",
    );
}

#[test]
fn mint_then_validate_round_trip() {
    let d = scratch("round-trip");
    init(&d, "example.org", "ca");
    let token = mint(&d, "ca", "spiffe://example.org/web", &["--audience", "api"]);
    let out = ok(&validate(&d, "ca/bundle.json", "api", &token));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "spiffe://example.org/web");
    let claims: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(claims["sub"], "spiffe://example.org/web");
    assert_eq!(claims["aud"], "api");
    let (exp, iat) = (
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 300, "the default TTL is 5 min");

    // From standard input, with the newline `echo` adds (and CRLF).
    for input in [format!("{token}\n"), format!("{token}\r\n"), token.clone()] {
        let o = meshid_stdin(
            &d,
            &[
                "jwt",
                "validate",
                "--trust-domain",
                "example.org",
                "--bundle",
                "ca/bundle.json",
                "--audience",
                "api",
                "-",
            ],
            input.as_bytes(),
        );
        assert_eq!(ok(&o), out);
    }

    // The library agrees, with the bundle file as the relying party would load it.
    let bundle =
        SpiffeBundle::parse(td(), &std::fs::read(d.join("ca/bundle.json")).unwrap()).unwrap();
    let svid = JwtValidator::new("api", meshid::ring_algorithms())
        .validate(&token, &bundle, SystemTime::now())
        .unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/web");

    // Several audiences: an array, each accepted; a TTL.
    let token = mint(
        &d,
        "ca",
        "spiffe://example.org/web",
        &["--audience", "a", "--audience", "b", "--ttl", "1m"],
    );
    for aud in ["a", "b"] {
        let out = ok(&validate(&d, "ca/bundle.json", aud, &token));
        let claims: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
        assert_eq!(claims["aud"], serde_json::json!(["a", "b"]));
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
    }
}

#[test]
fn refusals_name_the_rule() {
    let d = scratch("refusals");
    init(&d, "example.org", "ca");
    init(&d, "other.org", "other");
    let token = mint(&d, "ca", "spiffe://example.org/web", &["--audience", "api"]);
    // Wrong audience.
    refused(
        &validate(&d, "ca/bundle.json", "billing", &token),
        "JWT-SVID §3.2",
    );
    // Another trust domain's bundle: the token's sub has none here.
    let o = meshid(
        &d,
        &[
            "jwt",
            "validate",
            "--trust-domain",
            "other.org",
            "--bundle",
            "other/bundle.json",
            "--audience",
            "api",
            &token,
        ],
    );
    refused(&o, "no JWT bundle for trust domain example.org");
    // A token of other.org checked against example.org's bundle.
    let foreign = mint(
        &d,
        "other",
        "spiffe://other.org/web",
        &["--audience", "api"],
    );
    refused(
        &validate(&d, "ca/bundle.json", "api", &foreign),
        "JWT-SVID §6.2",
    );
    // Signed by another CA's key under example.org's... key ID it does not have.
    init(&d, "example.org", "impostor");
    let forged = mint(
        &d,
        "impostor",
        "spiffe://example.org/web",
        &["--audience", "api"],
    );
    refused(
        &validate(&d, "ca/bundle.json", "api", &forged),
        "no JWT authority",
    );
    // A changed claim under the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let claims = Base64UrlUnpadded::decode_vec(parts[1]).unwrap();
    let admin = String::from_utf8(claims).unwrap().replace("/web", "/admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        Base64UrlUnpadded::encode_string(admin.as_bytes()),
        parts[2]
    );
    refused(
        &validate(&d, "ca/bundle.json", "api", &tampered),
        "signature does not verify",
    );
    // alg none.
    let none = format!(
        "{}.{}.",
        Base64UrlUnpadded::encode_string(br#"{"alg":"none"}"#),
        parts[1]
    );
    refused(
        &validate(&d, "ca/bundle.json", "api", &none),
        "JWT-SVID §2.1",
    );
}

#[test]
fn format_and_minting_refusals_name_the_rule() {
    let d = scratch("format");
    init(&d, "example.org", "ca");
    // Not a compact JWS.
    refused(
        &validate(&d, "ca/bundle.json", "api", "a.b"),
        "RFC 7515 §7.1",
    );
    refused(
        &validate(&d, "ca/bundle.json", "api", r#"{"payload":"x"}"#),
        "JWT-SVID §1, §5.1",
    );
    let o = meshid_stdin(
        &d,
        &[
            "jwt",
            "validate",
            "--trust-domain",
            "example.org",
            "--bundle",
            "ca/bundle.json",
            "--audience",
            "api",
            "-",
        ],
        &[0xff, 0xfe],
    );
    refused(&o, "RFC 7515 §7.1");
    // Minting refusals: an ID outside the trust domain, an empty audience.
    let o = meshid(
        &d,
        &[
            "jwt",
            "mint",
            "--ca",
            "ca",
            "--id",
            "spiffe://other.org/w",
            "--audience",
            "a",
        ],
    );
    refused(&o, "outside trust domain");
    let o = meshid(
        &d,
        &[
            "jwt",
            "mint",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/w",
            "--audience",
            "",
        ],
    );
    refused(&o, "JWT-SVID §3.2");
}

#[test]
fn an_expired_token_is_refused() {
    let d = scratch("expired");
    init(&d, "example.org", "ca");
    let token = mint(
        &d,
        "ca",
        "spiffe://example.org/web",
        &["--audience", "api", "--ttl", "1s"],
    );
    let claims = Base64UrlUnpadded::decode_vec(token.split('.').nth(1).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    let exp = std::time::UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64().unwrap());
    // Wait until the second of `exp` has begun: from then on the token is expired.
    if let Ok(wait) = exp.duration_since(SystemTime::now()) {
        std::thread::sleep(wait + Duration::from_millis(50));
    }
    refused(
        &validate(&d, "ca/bundle.json", "api", &token),
        "JWT-SVID §3.3",
    );
}

#[test]
fn usage_errors_exit_2() {
    let d = scratch("usage");
    init(&d, "example.org", "ca");
    let token = mint(&d, "ca", "spiffe://example.org/web", &["--audience", "api"]);
    let cases: [&[&str]; 6] = [
        &[
            "jwt",
            "mint",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
        ],
        &["jwt", "mint", "--ca", "ca", "--audience", "a"],
        &[
            "jwt",
            "mint",
            "--ca",
            "ca",
            "--id",
            "not-an-id",
            "--audience",
            "a",
        ],
        &[
            "jwt",
            "mint",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--audience",
            "a",
            "--ttl",
            "5",
        ],
        &[
            "jwt",
            "validate",
            "--trust-domain",
            "example.org",
            "--bundle",
            "ca/bundle.json",
            &token,
        ],
        &[
            "jwt",
            "validate",
            "--trust-domain",
            "example.org",
            "--bundle",
            "missing.json",
            "--audience",
            "a",
            &token,
        ],
    ];
    for args in cases {
        let o = meshid(&d, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // A CA directory that is not one is an I/O error too.
    let o = meshid(
        &d,
        &[
            "jwt",
            "mint",
            "--ca",
            "nowhere",
            "--id",
            "spiffe://example.org/w",
            "--audience",
            "a",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn jwt_key_rotation_keeps_old_tokens_valid() {
    let d = scratch("rotation");
    init(&d, "example.org", "ca");
    let old = mint(&d, "ca", "spiffe://example.org/web", &["--audience", "api"]);
    let o = meshid(
        &d,
        &["ca", "jwt-key", "add", "--ca", "ca", "--key-type", "p384"],
    );
    let said = ok(&o);
    assert!(!said.contains("PRIVATE KEY"));
    let bundle =
        SpiffeBundle::parse(td(), &std::fs::read(d.join("ca/bundle.json")).unwrap()).unwrap();
    assert_eq!(bundle.jwt_authorities().len(), 2);
    let new_kid = bundle.jwt_authorities()[1].key_id().to_owned();
    assert!(said.contains(&new_kid), "{said}");
    assert!(d.join(format!("ca/jwt/0002.{new_kid}.key")).exists());
    // The new key mints (ES384); both tokens validate against the new bundle.json.
    let new = mint(&d, "ca", "spiffe://example.org/web", &["--audience", "api"]);
    let header = Base64UrlUnpadded::decode_vec(new.split('.').next().unwrap()).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["alg"], "ES384");
    assert_eq!(header["kid"], new_kid.as_str());
    assert_eq!(header["typ"], "JWT");
    for token in [&old, &new] {
        ok(&validate(&d, "ca/bundle.json", "api", token));
    }
    let shown = ok(&meshid(&d, &["bundle", "show", "--ca", "ca"]));
    assert_eq!(
        shown.as_bytes(),
        std::fs::read(d.join("ca/bundle.json")).unwrap()
    );
    // A stray file in DIR/jwt is refused, not ignored.
    std::fs::write(d.join("ca/jwt/notes.txt"), "x").unwrap();
    refused(
        &meshid(
            &d,
            &[
                "jwt",
                "mint",
                "--ca",
                "ca",
                "--id",
                "spiffe://example.org/w",
                "--audience",
                "a",
            ],
        ),
        "not a JWT key file name",
    );
}

/// Issue 15 (5): `jwt mint --ttl` says its units.
#[test]
fn jwt_mint_help_says_the_duration_units() {
    let o = meshid(Path::new("."), &["jwt", "mint", "--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let help = text(&o);
    assert!(
        help.contains("--ttl <DURATION>") && help.contains("(30s, 5m, 1h, 365d)"),
        "{help}"
    );
    assert!(help.contains("--ca <DIR>"), "{help}");
}

/// Issue 15: `jwt mint --ttl` past the CA's expiry is capped, and said so on stderr (as
/// `issue` and `ca sign` say it); a TTL within it is not.
#[test]
fn a_jwt_ttl_capped_at_the_ca_s_expiry_is_said_on_stderr() {
    let d = scratch("jwt-capped");
    let made = meshid(
        &d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "ca",
            "--ttl",
            "1h",
        ],
    );
    ok(&made);
    let capped = meshid(
        &d,
        &[
            "jwt",
            "mint",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--audience",
            "x",
            "--ttl",
            "2h",
        ],
    );
    let token = ok(&capped);
    let err = String::from_utf8_lossy(&capped.stderr);
    assert!(
        err.contains("--ttl 2h is past the CA's expiry: the token's lifetime is capped at 59m"),
        "{err}"
    );
    let svid = meshid::JwtSvid::parse_insecure(token.trim()).unwrap();
    let left = svid.expiry().duration_since(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(3600), "{left:?}");

    let within = meshid(
        &d,
        &[
            "jwt",
            "mint",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--audience",
            "x",
            "--ttl",
            "5m",
        ],
    );
    ok(&within);
    assert!(within.stderr.is_empty(), "{}", text(&within));
    let _ = std::fs::remove_dir_all(&d);
}
