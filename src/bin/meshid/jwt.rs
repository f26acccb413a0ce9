//! `meshid jwt mint`, `meshid jwt validate`, and the JWT keys of a CA directory.
//!
//! A root CA directory holds its JWT-SVID signing keys in `DIR/jwt/`, one PKCS#8 PEM file
//! each (mode 0600, the directory 0700), named `NNNN.KID.key`: `NNNN` orders them (the
//! highest mints), `KID` is the key ID published in `DIR/bundle.json`. Keys are never
//! printed; key IDs are public.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use meshid::jwt::{JwtValidator, MAX_TOKEN_LEN};
use meshid::time::parse_duration;
use meshid::{Authority, JwtKey, JwtSvidRequest, KeyPair, SpiffeBundle, SpiffeId, TrustDomain};

use crate::files::{self, Failure, Mode};
use crate::pki::load_ca;

/// The subdirectory of a CA directory holding its JWT keys.
pub(crate) const JWT_DIR: &str = "jwt";

#[derive(Debug, Subcommand)]
pub(crate) enum JwtCommand {
    /// Mint a JWT-SVID with a local CA's newest JWT key; prints the token on one line.
    ///
    /// Header alg (ES256 or ES384, by the key), kid and typ JWT; claims sub, aud (one
    /// --audience as a string, several as an array), exp and iat.
    Mint(MintArgs),
    /// Validate a JWT-SVID by every rule of JWT-SVID.md: prints its SPIFFE ID on the first
    /// line and its claims as JSON on the second. Exit 1 names the rule broken.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct MintArgs {
    /// The CA's directory (a root made by `meshid ca init`, or one given a key with
    /// `meshid ca jwt-key add`).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// The SPIFFE ID (`sub`), in the CA's trust domain, with a path.
    #[arg(long)]
    id: SpiffeId,
    /// An audience value (`aud`); repeatable, at least one.
    #[arg(long = "audience", value_name = "AUD", required = true)]
    audience: Vec<String>,
    /// The token's lifetime (`exp` = now + TTL, capped at the CA's expiry).
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    ttl: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The trust domain whose bundle --bundle is. A token whose `sub` is in another trust
    /// domain has no bundle here and is refused.
    #[arg(long)]
    trust_domain: TrustDomain,
    /// The trust domain's SPIFFE bundle (JSON, such as DIR/bundle.json or `meshid bundle
    /// show` prints), whose `jwt-svid` keys are the ones accepted; a document with none is
    /// read as a JWK Set (as SPIRE's agent hands it out, keys without `use`).
    #[arg(long)]
    bundle: PathBuf,
    /// The audience this relying party identifies with: it must be among the token's `aud`.
    #[arg(long)]
    audience: String,
    /// The token, or `-` to read it from standard input (one trailing newline is dropped).
    #[arg(value_name = "TOKEN|-")]
    token: String,
}

pub(crate) fn run(cmd: JwtCommand) -> Result<(), Failure> {
    match cmd {
        JwtCommand::Mint(args) => mint(&args),
        JwtCommand::Validate(args) => validate(&args),
    }
}

fn mint(args: &MintArgs) -> Result<(), Failure> {
    let ca = load_ca_with_jwt(&args.ca)?;
    if ca.jwt_keys().is_empty() {
        return Err(no_jwt_key(&args.ca, &ca));
    }
    let request = JwtSvidRequest::new(args.id.clone(), args.audience.iter().cloned()).ttl(args.ttl);
    let asked_end = std::time::SystemTime::now().checked_add(args.ttl);
    let svid = ca.mint_jwt_svid_for(&request).map_err(Failure::refused)?;
    // `exp` counts whole seconds: a token ending a second or more before what was asked
    // was capped at the CA's expiry.
    if asked_end.is_some_and(|end| svid.expiry() + std::time::Duration::from_secs(1) < end) {
        let granted = svid
            .expiry()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        eprintln!(
            "meshid: --ttl {} is past the CA's expiry: the token's lifetime is capped at {} (until {})",
            crate::files::format_duration(args.ttl),
            crate::files::format_duration(granted),
            meshid::time::Rfc3339(svid.expiry())
        );
    }
    println!("{}", svid.token());
    Ok(())
}

fn validate(args: &ValidateArgs) -> Result<(), Failure> {
    let data = files::read(&args.bundle)?;
    // A SPIFFE bundle is read by its own rules (a key without `use` is ignored); only a
    // document that holds no `jwt-svid` key that way is read as a JWK Set, as SPIRE's agent
    // hands one out.
    let refused =
        |e: meshid::BundleError| Failure::refused(format!("{}: {e}", args.bundle.display()));
    let bundle = match SpiffeBundle::parse(args.trust_domain.clone(), &data) {
        Ok(bundle) if !bundle.jwt_authorities().is_empty() => bundle,
        Ok(_) | Err(_) => {
            SpiffeBundle::parse_jwks(args.trust_domain.clone(), &data).map_err(refused)?
        }
    };
    let token = if args.token == "-" {
        read_stdin_token()?
    } else {
        args.token.clone()
    };
    let token = zeroize::Zeroizing::new(token);
    let validator = JwtValidator::new(args.audience.clone(), meshid::ring_algorithms());
    let svid = validator
        .validate(&token, &bundle, SystemTime::now())
        .map_err(Failure::refused)?;
    let claims = serde_json::to_string(svid.claims()).map_err(Failure::refused)?;
    println!("{}\n{claims}", svid.id());
    Ok(())
}

/// The token on standard input: read up to just over the validator's limit (so an
/// oversized token is still refused by it, with its length), one trailing `\n` or `\r\n`
/// dropped.
fn read_stdin_token() -> Result<String, Failure> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .take(u64::try_from(MAX_TOKEN_LEN).unwrap_or(u64::MAX) * 2)
        .read_to_end(&mut data)
        .map_err(|e| Failure::io(Path::new("<stdin>"), e))?;
    if data.last() == Some(&b'\n') {
        data.pop();
        if data.last() == Some(&b'\r') {
            data.pop();
        }
    }
    String::from_utf8(data).map_err(|_| {
        Failure::refused(
            "the token is not ASCII: a JWT-SVID is base64url parts separated by '.' \
             (JWT-SVID §5.1; RFC 7515 §7.1)",
        )
    })
}

/// The refusal for a CA directory without a JWT key.
fn no_jwt_key(dir: &Path, ca: &Authority) -> Failure {
    if ca.chain().is_empty() {
        Failure::refused(format!(
            "{}: no JWT key in {}/: add one with `meshid ca jwt-key add --ca {}`",
            dir.display(),
            JWT_DIR,
            dir.display()
        ))
    } else {
        Failure::refused(format!(
            "{}: an intermediate CA holds no JWT key: JWT-SVIDs are minted with the keys of \
             the trust domain's root directory, whose bundle.json publishes them",
            dir.display()
        ))
    }
}

/// Loads DIR as [`load_ca`] does, with the JWT keys of DIR/jwt/ (oldest first).
pub(crate) fn load_ca_with_jwt(dir: &Path) -> Result<Authority, Failure> {
    let ca = load_ca(dir)?;
    Ok(read_jwt_keys(dir)?
        .into_iter()
        .fold(ca, |ca, (_, key)| ca.with_jwt_key(key)))
}

/// The JWT keys of DIR/jwt/, by sequence number (then key ID). Dot files (a run's
/// staging) are skipped; any other file that is not `NNNN.KID.key`, or a key that does not
/// load, is refused.
pub(crate) fn read_jwt_keys(dir: &Path) -> Result<Vec<(u32, JwtKey)>, Failure> {
    let jwt_dir = dir.join(JWT_DIR);
    let entries = match std::fs::read_dir(&jwt_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Failure::io(&jwt_dir, e)),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure::io(&jwt_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = jwt_dir.join(&name);
        let (seq, key_id) = parse_key_file_name(&name).ok_or_else(|| {
            Failure::refused(format!(
                "{}: not a JWT key file name (NNNN.KID.key)",
                path.display()
            ))
        })?;
        let pem = zeroize::Zeroizing::new(files::read(&path)?);
        let pair = KeyPair::from_pkcs8_pem(&pem)
            .map_err(|e| Failure::refused(format!("{}: {e}", path.display())))?;
        let key = JwtKey::new(key_id, Arc::new(pair))
            .map_err(|e| Failure::refused(format!("{}: {e}", path.display())))?;
        keys.push((seq, key));
    }
    keys.sort_by(|(a, ka), (b, kb)| a.cmp(b).then_with(|| ka.key_id().cmp(kb.key_id())));
    Ok(keys)
}

/// `NNNN.KID.key` → (NNNN, KID), with KID non-empty base64url characters.
fn parse_key_file_name(name: &str) -> Option<(u32, &str)> {
    let (seq, rest) = name.split_once('.')?;
    let key_id = rest.strip_suffix(".key")?;
    let digits = !seq.is_empty() && seq.len() <= 9 && seq.bytes().all(|b| b.is_ascii_digit());
    let id_ok = !key_id.is_empty()
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (digits && id_ok)
        .then(|| seq.parse().ok())
        .flatten()
        .map(|s| (s, key_id))
}

/// The file name of the JWT key numbered `seq` with ID `key_id`, inside DIR.
pub(crate) fn key_file_name(seq: u32, key_id: &str) -> String {
    format!("{JWT_DIR}/{seq:04}.{key_id}.key")
}

/// The bundle.json text of `ca`: its SPIFFE bundle, one line.
pub(crate) fn bundle_json(ca: &Authority) -> String {
    let mut json = ca.spiffe_bundle().to_json();
    json.push('\n');
    json
}

/// `meshid ca jwt-key add`: a new key numbered after the others, published exclusively
/// (mode 0600), then DIR/bundle.json rewritten from every key on disk.
pub(crate) fn add_key(dir: &Path, key_type: meshid::KeyType) -> Result<(), Failure> {
    let ca = load_ca_with_jwt(dir)?;
    if !ca.chain().is_empty() {
        return Err(no_jwt_key(dir, &ca));
    }
    let seq = read_jwt_keys(dir)?
        .last()
        .map_or(1, |(seq, _)| seq.saturating_add(1));
    let pair = KeyPair::generate(key_type).map_err(Failure::refused)?;
    let key = JwtKey::with_random_id(Arc::new(pair.clone())).map_err(Failure::refused)?;
    let name = key_file_name(seq, key.key_id());
    let pem = pair.to_pkcs8_pem();
    files::publish_new(dir, &[(name.as_str(), pem.as_bytes(), Mode::Secret)]).map_err(
        |e| match e {
            files::Publish::Exists(path) => Failure::refused(format!(
                "{} already exists (another run adding a key?); retry",
                path.display()
            )),
            files::Publish::Failed(failure) => failure,
        },
    )?;
    // Every key on disk, this one included, so that a run that raced ours is published too.
    let ca = load_ca_with_jwt(dir)?;
    files::write(
        &dir.join("bundle.json"),
        bundle_json(&ca).as_bytes(),
        Mode::Public,
    )?;
    println!(
        "JWT key {} ({}) added to {}; {} now publishes {} JWT keys",
        key.key_id(),
        key.algorithm(),
        dir.display(),
        dir.join("bundle.json").display(),
        ca.jwt_keys().len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_names() {
        assert_eq!(parse_key_file_name("0001.abc_-9.key"), Some((1, "abc_-9")));
        assert_eq!(parse_key_file_name("12.x.key"), Some((12, "x")));
        for bad in [
            "abc.key",
            "1.key",
            ".1.a.key",
            "1.a.pem",
            "1.a.b.key",
            "x1.a.key",
            "1.a/b.key",
            "1234567890.a.key",
        ] {
            assert_eq!(parse_key_file_name(bad), None, "{bad}");
        }
        assert_eq!(key_file_name(3, "kid"), "jwt/0003.kid.key");
    }
}
