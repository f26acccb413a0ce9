//! `meshid ca ...`, `meshid csr`, `meshid issue`: thin shells over `meshid::Authority`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use meshid::time::parse_duration;
use meshid::{
    Authority, Csr, CsrBuilder, JwtKey, KeyPair, KeyType, SpiffeId, SvidDir, SvidRequest,
    TrustDomain,
};
use rustls_pki_types::CertificateDer;

use crate::files::{self, Failure, Mode};
use crate::jwt;

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a self-signed root CA: writes DIR/ca.pem, DIR/ca.key (mode 0600), a JWT-SVID
    /// signing key DIR/jwt/0001.KID.key (P-256, mode 0600), and DIR/bundle.json, the trust
    /// domain's SPIFFE bundle (the root and the JWT key).
    ///
    /// DIR is created with mode 0700; an existing DIR that other users may write is refused.
    /// The files are published exclusively, the key last: an existing CA is never
    /// overwritten, and of two runs into one DIR only one succeeds.
    Init {
        /// The trust domain, such as example.org.
        #[arg(long)]
        trust_domain: TrustDomain,
        /// The directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The CA's lifetime.
        /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "365d")]
        ttl: Duration,
        /// The CA's key type.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::P256)]
        key_type: KeyTypeArg,
    },
    /// Create an intermediate CA below `--ca PARENT`: DIR/ca.pem holds the chain up to,
    /// not including, the root; DIR/bundle.pem the root; DIR/ca.key its key (mode 0600).
    ///
    /// DIR (`--out`) is created and published as by `ca init`. An intermediate holds no JWT key and
    /// writes no bundle.json: JWT-SVIDs are minted with the root directory's keys, which
    /// its bundle.json publishes.
    Intermediate {
        /// The parent CA's directory.
        #[arg(long, value_name = "PARENT")]
        ca: PathBuf,
        /// The directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The intermediate's lifetime (capped at the parent's).
        /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30d")]
        ttl: Duration,
        /// The intermediate's key type.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::P256)]
        key_type: KeyTypeArg,
    },
    /// Sign a CSR: writes the chain (leaf first, root excluded) to the file --out names.
    ///
    /// The CA decides what it issues: the SPIFFE ID is --id or the CSR's (checked), and the
    /// certificate carries the DNS names given with --dns and no others. DNS names the CSR
    /// asks for are not granted (they are listed on standard error); wildcards such as
    /// *.example.org are refused unless --allow-wildcard-dns is given.
    Sign {
        /// The CA's directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The PKCS#10 request (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the chain (PEM).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The SVID's lifetime (capped at the CA's).
        /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
        ttl: Duration,
        /// Issue for this ID instead of the CSR's (the CSR's is used, after the authority's
        /// checks, when this is absent).
        #[arg(long, value_name = "ID")]
        id: Option<SpiffeId>,
        /// A DNS SAN to put in the certificate (repeatable); the CSR's own DNS names are
        /// never granted without it.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Allow wildcard DNS names (*.example.org) in --dns; refused without it.
        #[arg(long)]
        allow_wildcard_dns: bool,
    },
    /// Manage a root CA's JWT-SVID signing keys.
    #[command(subcommand, name = "jwt-key")]
    JwtKey(JwtKeyCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum JwtKeyCommand {
    /// Add a JWT-SVID signing key: DIR/jwt/NNNN.KID.key (mode 0600), numbered after the
    /// others; it mints from now on, and DIR/bundle.json is rewritten to publish every key
    /// (older ones stay published, so tokens they signed still validate).
    Add {
        /// The root CA's directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The key type: p256 signs ES256, p384 ES384.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::P256)]
        key_type: KeyTypeArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyTypeArg {
    P256,
    P384,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::P256 => KeyType::P256,
            KeyTypeArg::P384 => KeyType::P384,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct CsrArgs {
    /// The SPIFFE ID to request.
    #[arg(long)]
    id: SpiffeId,
    /// Where to write the new private key (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    key_out: PathBuf,
    /// Where to write the CSR (PEM).
    #[arg(long)]
    out: PathBuf,
    /// A DNS SAN to request (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    dns: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// The CA's directory.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// The SPIFFE ID to issue.
    #[arg(long)]
    id: SpiffeId,
    /// Where to write svid.pem, svid.key (mode 0600) and bundle.pem, replaced together (a
    /// new version directory and one symlink swap). Created with mode 0700; an existing
    /// directory that other users may write is refused. Renewing the SVID DIR already
    /// holds (the same SPIFFE ID) replaces it; DIR holding any other SVID or key is refused
    /// unless --force.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// The SVID's lifetime (capped at the CA's).
    /// DURATION is a whole number and one unit: s, m, h or d (30s, 5m, 1h, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
    /// Replace what --out-dir holds even when it is another SPIFFE ID's SVID, or a key
    /// meshid cannot read as an SVID.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run_ca(cmd: CaCommand) -> Result<(), Failure> {
    match cmd {
        CaCommand::Init {
            trust_domain,
            out,
            ttl,
            key_type,
        } => {
            let key = KeyPair::generate(key_type.into()).map_err(Failure::refused)?;
            let jwt_pair = KeyPair::generate(KeyType::P256).map_err(Failure::refused)?;
            let jwt_key =
                JwtKey::with_random_id(Arc::new(jwt_pair.clone())).map_err(Failure::refused)?;
            let jwt_name = jwt::key_file_name(1, jwt_key.key_id());
            let ca = Authority::new_root_with_signer(trust_domain, ttl, Arc::new(key.clone()))
                .map_err(Failure::refused)?
                .with_jwt_key(jwt_key);
            save_ca(&out, &ca, &key, Some((&jwt_name, &jwt_pair)))?;
            println!(
                "root CA for {} written to {}",
                ca.trust_domain(),
                out.display()
            );
            Ok(())
        }
        CaCommand::Intermediate {
            ca,
            out,
            ttl,
            key_type,
        } => {
            let parent = load_ca(&ca)?;
            let key = KeyPair::generate(key_type.into()).map_err(Failure::refused)?;
            let child = parent
                .new_intermediate_with_signer(ttl, Arc::new(key.clone()))
                .map_err(Failure::refused)?;
            save_ca(&out, &child, &key, None)?;
            note_capped(ttl, child.certificate(), &parent, "intermediate's");
            println!(
                "intermediate CA for {} written to {}",
                child.trust_domain(),
                out.display()
            );
            Ok(())
        }
        CaCommand::Sign {
            ca,
            csr,
            out,
            ttl,
            id,
            dns,
            allow_wildcard_dns,
        } => {
            let authority = load_ca(&ca)?;
            let data = files::read(&csr)?;
            let request = Csr::load(&data)
                .map_err(|e| Failure::refused(format!("{}: {e}", csr.display())))?;
            // The operator signing here decides: the DNS names are --dns, never the CSR's.
            let mut svid_request = SvidRequest::new()
                .ttl(ttl)
                .allow_wildcard_dns(allow_wildcard_dns);
            for name in &dns {
                svid_request = svid_request.dns_name(name.clone());
            }
            if let Some(id) = id {
                svid_request = svid_request.id(id);
            }
            let chain = authority
                .sign_csr(&request, &svid_request)
                .map_err(|e| match e {
                    meshid::CaError::WildcardDnsName { name } => Failure::refused(format!(
                        "wildcard DNS name {name:?} refused: give --allow-wildcard-dns to issue wildcards"
                    )),
                    e => Failure::refused(e),
                })?;
            let ungranted: Vec<&str> = request
                .dns_names()
                .iter()
                .filter(|n| !dns.contains(n))
                .map(String::as_str)
                .collect();
            if !ungranted.is_empty() {
                eprintln!(
                    "meshid: not granted: DNS names the CSR asked for ({}); name them with --dns",
                    ungranted.join(", ").escape_debug()
                );
            }
            files::write(&out, chain_pem(&chain).as_bytes(), Mode::Public)?;
            if let Some(leaf) = chain.first() {
                note_capped(ttl, leaf, &authority, "SVID's");
            }
            println!(
                "signed: chain of {} written to {}",
                chain.len(),
                out.display()
            );
            Ok(())
        }
        CaCommand::JwtKey(JwtKeyCommand::Add { ca, key_type }) => {
            jwt::add_key(&ca, key_type.into())
        }
    }
}

pub(crate) fn run_csr(args: &CsrArgs) -> Result<(), Failure> {
    let key = KeyPair::generate(KeyType::P256).map_err(Failure::refused)?;
    let mut builder = CsrBuilder::new(args.id.clone());
    for dns in &args.dns {
        builder = builder.dns_name(dns.clone());
    }
    let csr = builder.build(&key).map_err(Failure::refused)?;
    files::write(&args.key_out, key.to_pkcs8_pem().as_bytes(), Mode::Secret)?;
    files::write(&args.out, csr.to_pem().as_bytes(), Mode::Public)?;
    println!("CSR for {} written to {}", args.id, args.out.display());
    Ok(())
}

pub(crate) fn run_issue(args: &IssueArgs) -> Result<(), Failure> {
    let ca = load_ca(&args.ca)?;
    let root = ca.root().cloned().ok_or_else(|| {
        Failure::refused(format!(
            "{}: the root is unknown (no bundle.pem beside ca.pem), so bundle.pem cannot be written",
            args.ca.display()
        ))
    })?;
    if !args.force {
        refuse_foreign_svid(&args.out_dir, &args.id)?;
    }
    let svid = ca.issue(&args.id, args.ttl).map_err(Failure::refused)?;
    SvidDir::new(&args.out_dir)
        .write(&svid, &[root])
        .map_err(files::dir_failure)?;
    note_capped(args.ttl, svid.leaf(), &ca, "SVID's");
    println!("issued {} to {}", svid.id(), args.out_dir.display());
    Ok(())
}

/// `issue` renews the SVID an out-dir holds (the same SPIFFE ID: what a cron job or an
/// operator re-running it wants, the version before kept by [`SvidDir`]); it refuses,
/// unless `--force`, to replace another SPIFFE ID's SVID or a key it cannot read as an
/// SVID, as `ca init` refuses to replace a CA.
fn refuse_foreign_svid(dir: &Path, id: &SpiffeId) -> Result<(), Failure> {
    let holds = ["svid.key", "svid.pem"]
        .iter()
        .any(|name| std::fs::symlink_metadata(dir.join(name)).is_ok());
    if !holds {
        return Ok(());
    }
    let held = SvidDir::new(dir).read().map(|(svid, _)| svid.id().clone());
    match held {
        Ok(held) if held == *id => Ok(()),
        Ok(held) => Err(Failure::refused(format!(
            "{} already holds an SVID for {held}; refusing to replace it with {id}'s (give --force, or another --out-dir)",
            dir.display()
        ))),
        Err(e) => Err(Failure::refused(format!(
            "{} already holds svid.key or svid.pem that is not a readable SVID ({e}); refusing to replace it (give --force, or another --out-dir)",
            dir.display()
        ))),
    }
}

/// Says on stderr when the lifetime granted to `cert` is shorter than the `asked` TTL
/// because the issuing CA expires first (the library caps it at the CA's NotAfter).
fn note_capped(asked: Duration, cert: &CertificateDer<'_>, ca: &Authority, what: &str) {
    let Ok(info) = meshid::CertificateInfo::from_der(cert) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let asked_end = now.checked_add(asked);
    if info.not_after() < ca.not_after() || asked_end.is_some_and(|end| end <= ca.not_after()) {
        return;
    }
    let granted = info.not_after().duration_since(now).unwrap_or_default();
    eprintln!(
        "meshid: --ttl {} is past the CA's expiry: the {what} lifetime is capped at {} (until {})",
        files::format_duration(asked),
        files::format_duration(granted),
        info.not_after_rfc3339()
    );
}

/// Loads DIR/ca.pem + DIR/ca.key, and DIR/bundle.pem (the root) when present.
pub(crate) fn load_ca(dir: &Path) -> Result<Authority, Failure> {
    let mut chain = files::read(&dir.join("ca.pem"))?;
    let bundle = dir.join("bundle.pem");
    if bundle.exists() {
        chain.extend(files::read(&bundle)?);
    }
    let key = zeroize::Zeroizing::new(files::read(&dir.join("ca.key"))?);
    Authority::from_pem(&chain, &key, None)
        .map_err(|e| Failure::refused(format!("{}: {e}", dir.display())))
}

/// Writes DIR/ca.pem (this CA and its issuers, root excluded unless this is the root),
/// DIR/bundle.pem (the root) for an intermediate, with `jwt_key` (a root's) its file
/// DIR/jwt/NAME and DIR/bundle.json, and DIR/ca.key last. DIR is private (0700, refused
/// when others may write it). The files are published exclusively: a CA is never
/// overwritten, of two runs into one DIR exactly one succeeds, and a failed run leaves
/// nothing behind.
fn save_ca(
    dir: &Path,
    ca: &Authority,
    key: &KeyPair,
    jwt_key: Option<(&str, &KeyPair)>,
) -> Result<(), Failure> {
    let refuse = |path: &Path| {
        let partial = !dir.join("ca.key").exists();
        Failure::refused(if partial {
            format!(
                "{} already exists without ca.key (an interrupted or concurrent run?); refusing to overwrite a CA (remove it or choose another --out)",
                path.display()
            )
        } else {
            format!(
                "{} already exists; refusing to overwrite a CA (choose another --out)",
                path.display()
            )
        })
    };
    for name in ["ca.key", "ca.pem", "bundle.pem", "bundle.json"] {
        if dir.join(name).exists() {
            return Err(refuse(&dir.join(name)));
        }
    }
    let jwt_dir = dir.join(jwt::JWT_DIR);
    if std::fs::read_dir(&jwt_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(refuse(&jwt_dir));
    }
    files::private_dir(dir)?;
    let own: Vec<CertificateDer<'static>> = if ca.chain().is_empty() {
        vec![ca.certificate().clone()]
    } else {
        ca.chain()
    };
    let own = chain_pem(&own);
    let bundle = match (ca.chain().is_empty(), ca.root()) {
        (false, Some(root)) => Some(chain_pem(std::slice::from_ref(root))),
        _ => None,
    };
    let key = key.to_pkcs8_pem();
    let bundle_json = jwt::bundle_json(ca);
    let jwt_pem = jwt_key.map(|(name, pair)| (name, pair.to_pkcs8_pem()));
    let mut set: Vec<(&str, &[u8], Mode)> = vec![("ca.pem", own.as_bytes(), Mode::Public)];
    if let Some(bundle) = &bundle {
        set.push(("bundle.pem", bundle.as_bytes(), Mode::Public));
    }
    if let Some((name, pem)) = &jwt_pem {
        set.push(("bundle.json", bundle_json.as_bytes(), Mode::Public));
        set.push((name, pem.as_bytes(), Mode::Secret));
    }
    set.push(("ca.key", key.as_bytes(), Mode::Secret));
    files::publish_new(dir, &set).map_err(|e| match e {
        files::Publish::Exists(path) => refuse(&path),
        files::Publish::Failed(failure) => failure,
    })
}

fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    meshid::certificates_to_pem(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: CaCommand,
    }

    fn ttl_of(ttl: &str) -> Result<Duration, String> {
        use clap::Parser;
        let ttl = format!("--ttl={ttl}");
        let args = [
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "ca",
            &ttl,
        ];
        match Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        {
            CaCommand::Init { ttl, .. } => Ok(ttl),
            other => panic!("{other:?}"),
        }
    }

    /// Durations are `meshid::time::parse_duration`'s, refusals with its message.
    #[test]
    fn durations() {
        assert_eq!(ttl_of("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(ttl_of("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "10", "1h30m", "-1h", "0s", "99999999999999999999d"] {
            let err = ttl_of(bad).unwrap_err();
            let reason = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains(&reason), "{bad:?}: {err}");
        }
    }
}
