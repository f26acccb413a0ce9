//! JWT-SVIDs between `meshid jwt` and PyJWT over `cryptography` (the Python test peer,
//! installed on first use by `tests/peers/python.sh`), with `tests/python/jwt_interop.py`:
//!
//! - tokens PyJWT mints (ES256, ES384, RS256/384/512, PS256/384/512, each with a `kid`)
//!   validate in `meshid jwt validate`, which prints the `sub` and the claims back;
//! - a table of hostile tokens built in Python, never by meshid (`alg: none`, HS256 keyed
//!   with the public key, `alg`/key mismatches, unknown and foreign `kid`s, a `sub` in
//!   another trust domain, expired by 1 s, `nbf`/`iat` ahead, missing `aud`/`exp`/`sub`,
//!   forbidden JOSE headers, JWS JSON, 2/4/5 parts, bad base64url, oversized, an RSA-1024
//!   key, bad signatures, duplicate members, ...): each refused with exit 1 and a message
//!   naming the broken rule. Every mismatch is listed at once, so one run shows every
//!   wording to fix (the words are `RULES` in the script);
//! - tokens `meshid jwt mint` signs validate in PyJWT against the JWKS of the `bundle.json`
//!   `meshid ca init` writes; a wrong audience, another CA's bundle and a tampered token
//!   are refused there (the negative controls).

#![cfg(unix)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "common/peers.rs"]
mod peers;

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");
const TRUST_DOMAIN: &str = "example.org";
const ID: &str = "spiffe://example.org/web";
/// How long one `meshid` or Python run may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Tokens longer than this go on standard input (`-`): Linux refuses a single argument
/// over 128 KiB (`MAX_ARG_STRLEN`).
const ARG_MAX_TOKEN: usize = 100 * 1024;
/// The refusal table's size floor (issue 13).
const MIN_REFUSALS: usize = 30;

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-jwtpy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child killed and reaped on every path out of a test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a finished run left.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `command` with `stdin` as its standard input; panics if it is still running after
/// `TIMEOUT` (it is killed first), naming `what`.
fn run(mut command: Command, stdin: &[u8], what: &str) -> Ran {
    let mut child = Reaped(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
    );
    let mut input = child.0.stdin.take().unwrap();
    let (mut stdout, mut stderr) = (
        child.0.stdout.take().unwrap(),
        child.0.stderr.take().unwrap(),
    );
    let (out, err, status) = std::thread::scope(|scope| {
        // A child that refuses early closes its input: the write then fails, which is fine.
        scope.spawn(move || {
            let _ = input.write_all(stdin);
        });
        let out = scope.spawn(move || {
            let mut text = Vec::new();
            let _ = stdout.read_to_end(&mut text);
            text
        });
        let err = scope.spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            text
        });
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // Killing it closes its pipes, so the reader threads end too.
                let _ = child.0.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        (out.join().unwrap(), err.join().unwrap(), status)
    });
    let stdout = String::from_utf8_lossy(&out).into_owned();
    let stderr = String::from_utf8_lossy(&err).into_owned();
    let status = status.unwrap_or_else(|| {
        panic!("{what}: still running after {TIMEOUT:?}\n--- stdout\n{stdout}--- stderr\n{stderr}")
    });
    Ran {
        status,
        stdout,
        stderr,
    }
}

fn meshid(dir: &Path, args: &[&str], stdin: &[u8]) -> Ran {
    let mut command = Command::new(MESHID);
    command.current_dir(dir).args(args);
    run(command, stdin, &format!("meshid {}", args.join(" ")))
}

/// Runs `tests/python/jwt_interop.py ARGS` with the Python peer.
fn interop(args: &[&str], stdin: &[u8]) -> Ran {
    let python = peers::peer("python").join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/jwt_interop.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run(
        command,
        stdin,
        &format!("jwt_interop.py {}", args.join(" ")),
    )
}

fn ok(ran: &Ran, what: &str) {
    assert!(
        ran.status.success(),
        "{what} failed ({})\n--- stdout\n{}--- stderr\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
}

/// `meshid jwt validate` of `token` against `bundle` for `audience`: as an argument, or on
/// standard input (`-`) when `stdin` is set.
fn validate(dir: &Path, bundle: &Path, audience: &str, token: &str, stdin: bool) -> Ran {
    let bundle = bundle.to_str().unwrap();
    let mut args = vec![
        "jwt",
        "validate",
        "--trust-domain",
        TRUST_DOMAIN,
        "--bundle",
        bundle,
        "--audience",
        audience,
    ];
    if stdin {
        args.push("-");
        meshid(dir, &args, token.as_bytes())
    } else {
        args.push(token);
        meshid(dir, &args, b"")
    }
}

/// What is wrong with meshid's answer to an `accept` case, if anything.
fn check_accepted(ran: &Ran, claims: &Value) -> Option<String> {
    if ran.code() != Some(0) {
        return Some(format!(
            "refused (exit {:?}): {}",
            ran.code(),
            ran.stderr.trim()
        ));
    }
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let sub = claims["sub"].as_str().unwrap();
    if lines.len() != 2 || lines[0] != sub {
        return Some(format!(
            "accepted, but printed {:?}: want 2 lines, `{sub}` then the claims",
            ran.stdout
        ));
    }
    match serde_json::from_str::<Value>(lines[1]) {
        Ok(printed) if &printed == claims => None,
        Ok(printed) => Some(format!(
            "accepted, but the claims printed are {printed}, not {claims}"
        )),
        Err(e) => Some(format!(
            "accepted, but line 2 is not JSON ({e}): {}",
            lines[1]
        )),
    }
}

/// What is wrong with meshid's answer to a `refuse` case, if anything.
/// (`variant` is the `JwtError` expected, `rule` words of its message.)
fn check_refused(ran: &Ran, variant: &str, rule: &str) -> Option<String> {
    let message = ran.stderr.trim();
    if ran.code() != Some(1) {
        return Some(format!(
            "want exit 1 with {variant} ({rule:?}), got exit {:?}; stdout {:?}; stderr {message:?}",
            ran.code(),
            ran.stdout
        ));
    }
    if !ran.stdout.is_empty() {
        return Some(format!("refused, but printed {:?}", ran.stdout));
    }
    if !message.to_lowercase().contains(&rule.to_lowercase()) {
        return Some(format!(
            "want {variant} ({rule:?}), refused with {message:?}"
        ));
    }
    None
}

#[test]
fn pyjwt_tokens_validate_and_the_hostile_table_is_refused_by_meshid_jwt_validate() {
    let scratch = Scratch::new("table");
    let forged = scratch.path("forged");
    ok(
        &interop(&["forge", forged.to_str().unwrap()], b""),
        "jwt_interop.py forge",
    );
    let bundle = forged.join("bundle.json");
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(forged.join("cases.json")).unwrap()).unwrap();

    let mut failures = Vec::new();
    let (mut accepts, mut refusals) = (Vec::new(), 0);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let audience = case["audience"].as_str().unwrap();
        let stdin = token.len() > ARG_MAX_TOKEN;
        let ran = validate(&scratch.0, &bundle, audience, token, stdin);
        let problem = match case["expect"].as_str().unwrap() {
            "accept" => {
                accepts.push(name);
                let claims = &case["claims"];
                // The same token on standard input, too.
                check_accepted(&ran, claims).or_else(|| {
                    check_accepted(
                        &validate(&scratch.0, &bundle, audience, token, true),
                        claims,
                    )
                    .map(|p| format!("on standard input: {p}"))
                })
            }
            "refuse" => {
                refusals += 1;
                check_refused(
                    &ran,
                    case["variant"].as_str().unwrap(),
                    case["rule"].as_str().unwrap(),
                )
            }
            other => panic!("{name}: unknown expectation {other}"),
        };
        if let Some(problem) = problem {
            failures.push(format!("{name}: {problem}"));
        }
    }

    assert!(
        refusals >= MIN_REFUSALS,
        "only {refusals} hostile tokens (want {MIN_REFUSALS})"
    );
    for alg in ["es256", "es384", "rs256", "ps256"] {
        assert!(
            accepts.contains(&format!("pyjwt-{alg}").as_str()),
            "no valid {alg} token among {accepts:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases ({} accept, {refusals} refuse) went wrong in meshid jwt validate:\n{}",
        failures.len(),
        cases.len(),
        accepts.len(),
        failures.join("\n")
    );
}

/// `meshid jwt mint` with `args` after `--ca ca --id ID`; the token it printed.
fn mint(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["jwt", "mint", "--ca", "ca", "--id", ID];
    all.extend_from_slice(args);
    let ran = meshid(dir, &all, b"");
    ok(&ran, &format!("meshid {}", all.join(" ")));
    let token = ran.stdout.trim();
    assert_eq!(
        token.lines().count(),
        1,
        "meshid jwt mint printed more than the token: {:?}",
        ran.stdout
    );
    assert_eq!(token.split('.').count(), 3, "not a compact JWS: {token}");
    token.to_owned()
}

/// PyJWT's verdict on `token` against `bundle` for `audience`: the claims, or the refusal.
fn pyjwt(bundle: &Path, audience: &str, token: &str) -> Result<Value, String> {
    let ran = interop(
        &["validate", bundle.to_str().unwrap(), audience, "-"],
        token.as_bytes(),
    );
    match ran.code() {
        Some(0) => Ok(serde_json::from_str(ran.stdout.trim())
            .unwrap_or_else(|e| panic!("PyJWT printed no JSON ({e}): {}", ran.stdout))),
        Some(1) => Err(ran.stderr),
        _ => panic!(
            "jwt_interop.py validate failed ({})\n--- stdout\n{}--- stderr\n{}",
            ran.status, ran.stdout, ran.stderr
        ),
    }
}

fn seconds(claims: &Value, name: &str) -> i64 {
    claims[name]
        .as_i64()
        .unwrap_or_else(|| panic!("`{name}` is not an integer in {claims}"))
}

#[test]
fn meshid_minted_tokens_validate_in_pyjwt_against_the_bundle_ca_init_writes() {
    let scratch = Scratch::new("mint");
    for (out, td) in [("ca", TRUST_DOMAIN), ("other-ca", "other.org")] {
        ok(
            &meshid(
                &scratch.0,
                &["ca", "init", "--trust-domain", td, "--out", out],
                b"",
            ),
            "meshid ca init",
        );
    }
    let bundle = scratch.path("ca/bundle.json");
    assert!(bundle.exists(), "meshid ca init wrote no bundle.json");

    // Two audiences, the default TTL (5 minutes).
    let token = mint(
        &scratch.0,
        &["--audience", "billing", "--audience", "audit"],
    );
    for audience in ["billing", "audit"] {
        let claims = pyjwt(&bundle, audience, &token)
            .unwrap_or_else(|e| panic!("PyJWT refused meshid's token for {audience}: {e}"));
        assert_eq!(claims["sub"], ID, "{claims}");
        assert_eq!(
            claims["aud"],
            serde_json::json!(["billing", "audit"]),
            "{claims}"
        );
        assert_eq!(
            seconds(&claims, "exp") - seconds(&claims, "iat"),
            300,
            "the default TTL: {claims}"
        );
    }

    // The negative controls: PyJWT refuses what it should.
    let refused = pyjwt(&bundle, "someone-else", &token)
        .expect_err("PyJWT accepted meshid's token for an audience it does not name");
    assert!(refused.contains("Audience"), "{refused}");
    let foreign = scratch.path("other-ca/bundle.json");
    let refused = pyjwt(&foreign, "billing", &token)
        .expect_err("PyJWT accepted meshid's token against another CA's bundle");
    assert!(refused.contains("kid"), "{refused}");
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
    let refused = pyjwt(&bundle, "billing", &tampered)
        .expect_err("PyJWT accepted meshid's token with its signature changed");
    assert!(refused.contains("Signature"), "{refused}");

    // --ttl.
    let token = mint(&scratch.0, &["--audience", "billing", "--ttl", "1m"]);
    let claims = pyjwt(&bundle, "billing", &token).unwrap_or_else(|e| panic!("PyJWT refused: {e}"));
    // One audience: a string or a one-element array (RFC 7519 §4.1.3 allows either).
    assert!(
        claims["aud"] == "billing" || claims["aud"] == serde_json::json!(["billing"]),
        "{claims}"
    );
    assert_eq!(
        seconds(&claims, "exp") - seconds(&claims, "iat"),
        60,
        "--ttl 1m: {claims}"
    );
}

#[test]
fn meshid_jwt_usage_errors_exit_2() {
    let scratch = Scratch::new("usage");
    let bundle = scratch.path("bundle.json");
    std::fs::write(&bundle, r#"{"keys":[]}"#).unwrap();
    let bundle = bundle.to_str().unwrap();
    for args in [
        // No audience.
        &[
            "jwt",
            "validate",
            "--trust-domain",
            TRUST_DOMAIN,
            "--bundle",
            bundle,
            "x.y.z",
        ][..],
        // No token.
        &[
            "jwt",
            "validate",
            "--trust-domain",
            TRUST_DOMAIN,
            "--bundle",
            bundle,
            "--audience",
            "a",
        ][..],
        // No audience to mint for.
        &["jwt", "mint", "--ca", "ca", "--id", ID][..],
    ] {
        let ran = meshid(&scratch.0, args, b"");
        // An exit 2 for a `jwt` that does not exist would prove nothing.
        assert!(
            !ran.stderr.contains("unrecognized subcommand"),
            "meshid has no `jwt` command: {}",
            ran.stderr
        );
        assert_eq!(
            ran.code(),
            Some(2),
            "meshid {}: want exit 2\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            ran.stdout,
            ran.stderr
        );
    }
}
