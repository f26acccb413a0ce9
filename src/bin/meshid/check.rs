//! `meshid verify`, `meshid inspect`, `meshid bundle convert`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::{Args, Subcommand};
use meshid::{BundleSet, CertificateInfo, SpiffeBundle, TrustDomain, X509Bundle};
use rustls_pki_types::CertificateDer;

use crate::files::{self, Failure, Mode};
use crate::lines::shown;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// A trust domain's bundle, as TD=FILE (PEM certificates or SPIFFE bundle JSON);
    /// repeatable, one per trust domain.
    #[arg(long = "bundle", value_name = "TD=FILE", value_parser = parse_bundle_arg, required = true)]
    bundles: Vec<(TrustDomain, PathBuf)>,
    /// The chain to verify (PEM, leaf first).
    chain: PathBuf,
    /// Verify at this time (RFC 3339) instead of now.
    #[arg(long, value_parser = meshid::time::parse_rfc3339)]
    at: Option<SystemTime>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A certificate or chain (PEM or DER); every certificate in it is shown.
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Convert between PEM (.pem, .crt) and SPIFFE bundle JSON (.json), by file extension.
    Convert {
        /// The trust domain the bundle belongs to.
        #[arg(long)]
        trust_domain: TrustDomain,
        /// The input bundle.
        input: PathBuf,
        /// The output bundle.
        output: PathBuf,
    },
    /// Print a CA directory's SPIFFE bundle JSON, as DIR/bundle.json holds it: the root
    /// (X.509 authority) and the JWT keys of DIR/jwt/ (JWT authorities).
    Show {
        /// The CA's directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
    },
}

fn parse_bundle_arg(s: &str) -> Result<(TrustDomain, PathBuf), String> {
    let (td, file) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected TD=FILE"))?;
    let td = TrustDomain::new(td).map_err(|e| format!("{td:?}: {e}"))?;
    Ok((td, PathBuf::from(file)))
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Reads a bundle file: SPIFFE bundle JSON when it parses as JSON, else PEM or DER.
fn read_bundle(td: &TrustDomain, path: &Path) -> Result<X509Bundle, Failure> {
    let data = files::read(path)?;
    let trimmed = data.iter().find(|b| !b.is_ascii_whitespace());
    let bundle = if trimmed == Some(&b'{') {
        SpiffeBundle::parse(td.clone(), &data).map(|b| b.to_x509_bundle())
    } else {
        X509Bundle::load(td.clone(), &data)
    };
    bundle.map_err(|e| Failure::refused(format!("{}: {e}", path.display())))
}

/// Reads every certificate of a PEM or DER file. A PEM private key (`PRIVATE KEY`, `EC
/// PRIVATE KEY`, ...) among no certificates is named as such, for `command` (never a byte of
/// it printed).
fn read_certificates(path: &Path, command: &str) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let data = zeroize::Zeroizing::new(files::read(path)?);
    meshid::parse_certificates(&data).map_err(|e| {
        if holds_private_key(&data) {
            Failure::refused(format!(
                "{}: this is a private key; {command} reads certificates",
                path.display()
            ))
        } else {
            Failure::refused(format!("{}: {e}", path.display()))
        }
    })
}

/// Whether `data` has a PEM block labelled `... PRIVATE KEY` (PKCS#8, SEC1, PKCS#1,
/// encrypted).
fn holds_private_key(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii();
        line.starts_with(b"-----BEGIN ") && line.ends_with(b"PRIVATE KEY-----")
    })
}

pub(crate) fn run_verify(args: &VerifyArgs) -> Result<(), Failure> {
    let mut set = BundleSet::new();
    for (td, path) in &args.bundles {
        set.insert(read_bundle(td, path)?);
    }
    let chain = read_certificates(&args.chain, "verify")?;
    let at = args.at.unwrap_or_else(SystemTime::now);
    let verified = meshid::verify_x509_svid(&chain, &set, at, meshid::ring_algorithms())
        .map_err(|e| Failure::refused(format!("{}: {e}", args.chain.display())))?;
    println!("{}", verified.id());
    Ok(())
}

pub(crate) fn run_inspect(args: &InspectArgs) -> Result<(), Failure> {
    let certs = read_certificates(&args.file, "inspect")?;
    let mut infos = Vec::new();
    for der in &certs {
        infos.push(CertificateInfo::from_der(der).map_err(Failure::refused)?);
    }
    if args.json {
        let all: Vec<serde_json::Value> = infos.iter().map(to_json).collect();
        let text = if all.len() == 1 {
            serde_json::to_string_pretty(&all[0])
        } else {
            serde_json::to_string_pretty(&all)
        };
        println!("{}", text.map_err(Failure::refused)?);
        return Ok(());
    }
    for (i, info) in infos.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_text(info);
    }
    Ok(())
}

fn print_text(info: &CertificateInfo) {
    let none = "-".to_owned();
    println!(
        "spiffe_id:    {}",
        info.spiffe_id().map_or(none.clone(), ToString::to_string)
    );
    println!(
        "trust_domain: {}",
        info.spiffe_id()
            .map_or(none.clone(), |id| id.trust_domain().to_string())
    );
    println!("is_ca:        {}", info.is_ca());
    println!("not_before:   {}", info.not_before_rfc3339());
    println!("not_after:    {}", info.not_after_rfc3339());
    println!("lifetime:     {}", lifetime(info));
    println!(
        "key_type:     {}",
        info.key_type().map_or(none.clone(), |k| k.to_string())
    );
    println!("serial:       {}", info.serial_hex());
    println!("issuer:       {}", shown(info.issuer()));
    if info.subject().is_empty() {
        println!("subject:      (empty, as SPIFFE leaves it)");
    } else {
        println!("subject:      {}", shown(info.subject()));
    }
    for uri in info.uri_sans() {
        println!("uri:          {}", shown(uri));
    }
    for dns in info.dns_names() {
        println!("dns:          {}", shown(dns));
    }
    for v in info.violations() {
        println!("warning:      {v}");
    }
}

/// NotBefore to NotAfter. meshid's CA backdates NotBefore 10 s (`src/ca/issue.rs`) for peers
/// whose clocks run behind, so a lifetime of whole minutes and 10 s is shown as the time from
/// issuance (the TTL, or less when the CA's expiry capped it) plus the backdating: "1h10s
/// (1h from issuance + 10s backdated for clock skew)".
fn lifetime(info: &CertificateInfo) -> String {
    const BACKDATE: u64 = 10;
    let secs = info
        .not_after()
        .duration_since(info.not_before())
        .map_or(0, |d| d.as_secs());
    let total = files::format_duration(std::time::Duration::from_secs(secs));
    if secs > 60 && secs % 60 == BACKDATE {
        let issued = files::format_duration(std::time::Duration::from_secs(secs - BACKDATE));
        format!("{total} ({issued} from issuance + {BACKDATE}s backdated for clock skew)")
    } else {
        total
    }
}

fn to_json(info: &CertificateInfo) -> serde_json::Value {
    serde_json::json!({
        "spiffe_id": info.spiffe_id().map(ToString::to_string),
        "trust_domain": info.spiffe_id().map(|id| id.trust_domain().to_string()),
        "uri_sans": info.uri_sans(),
        "dns_names": info.dns_names(),
        "is_ca": info.is_ca(),
        "not_before": info.not_before_rfc3339(),
        "not_after": info.not_after_rfc3339(),
        "key_type": info.key_type().map(|k| k.to_string()),
        "serial": info.serial_hex(),
        "issuer": info.issuer(),
        "subject": info.subject(),
        "warnings": info.violations().iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

pub(crate) fn run_bundle(cmd: &BundleCommand) -> Result<(), Failure> {
    let (trust_domain, input, output) = match cmd {
        BundleCommand::Convert {
            trust_domain,
            input,
            output,
        } => (trust_domain, input, output),
        BundleCommand::Show { ca } => return show_bundle(ca),
    };
    let bundle = read_bundle(trust_domain, input)?;
    let text = if is_json(output) {
        SpiffeBundle::from_x509_bundle(&bundle).to_json()
    } else {
        bundle.to_pem()
    };
    files::write(output, text.as_bytes(), Mode::Public)?;
    println!(
        "{} authorities of {} written to {}",
        bundle.authorities().len(),
        trust_domain,
        output.display()
    );
    Ok(())
}

/// `bundle show --ca DIR`: the bundle of the CA's trust domain, from its files.
fn show_bundle(dir: &Path) -> Result<(), Failure> {
    let ca = crate::jwt::load_ca_with_jwt(dir)?;
    if ca.root().is_none() {
        return Err(Failure::refused(format!(
            "{}: the root is unknown (no bundle.pem beside ca.pem), so the bundle cannot be shown",
            dir.display()
        )));
    }
    print!("{}", crate::jwt::bundle_json(&ca));
    Ok(())
}
