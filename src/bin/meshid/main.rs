//! `meshid`: the operator CLI, a thin shell over the meshid library.
//!
//! Exit codes: 0 success, 1 a refusal or failed check (the message names the rule),
//! 2 a usage or I/O error.
//!
//! Logs (`tracing` events of the library and the CLI: refused updates, reconnections,
//! rotations) go to stderr, filtered by `RUST_LOG` (default `warn`), with untrusted text
//! escaped like everything else printed.

mod agent;
mod check;
mod files;
mod id;
mod jwt;
mod lines;
mod observe;
mod pki;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SPIFFE workload identity tools.
#[derive(Debug, Parser)]
#[command(name = "meshid", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with SPIFFE IDs.
    #[command(subcommand)]
    Id(id::IdCommand),
    /// Create and use a local certificate authority kept in files: make a root or an
    /// intermediate, sign CSRs, add JWT keys (`serve` serves from one).
    #[command(subcommand)]
    Ca(pki::CaCommand),
    /// Make a new key and a CSR for a SPIFFE ID.
    Csr(pki::CsrArgs),
    /// Issue an X509-SVID from a local CA: writes svid.pem, svid.key and bundle.pem.
    Issue(pki::IssueArgs),
    /// Verify an X509-SVID chain by the SPIFFE rules; prints its SPIFFE ID.
    Verify(check::VerifyArgs),
    /// Show what a certificate says, with warnings where it breaks a SPIFFE rule.
    Inspect(check::InspectArgs),
    /// Work with trust bundles.
    #[command(subcommand)]
    Bundle(check::BundleCommand),
    /// Run a server.
    #[command(subcommand)]
    Serve(workload::ServeCommand),
    /// Fetch from a Workload API.
    #[command(subcommand)]
    Fetch(workload::FetchCommand),
    /// Mint and validate JWT-SVIDs.
    #[command(subcommand)]
    Jwt(jwt::JwtCommand),
}

/// stderr, with every line escaped by [`lines::shown`]: log fields carry text from servers
/// and certificates (status messages, IDs refused).
struct EscapedStderr;

impl std::io::Write for EscapedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut out = String::with_capacity(buf.len() + 1);
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&lines::shown(line));
        }
        std::io::stderr().lock().write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings and errors).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| EscapedStderr)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    // clap prints usage errors and exits with 2, help and version with 0.
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Id(cmd) => return id::run(cmd),
        Command::Ca(cmd) => pki::run_ca(cmd),
        Command::Csr(args) => pki::run_csr(&args),
        Command::Issue(args) => pki::run_issue(&args),
        Command::Verify(args) => check::run_verify(&args),
        Command::Inspect(args) => check::run_inspect(&args),
        Command::Bundle(cmd) => check::run_bundle(&cmd),
        Command::Serve(cmd) => workload::run_serve(cmd),
        Command::Fetch(cmd) => workload::run_fetch(cmd),
        Command::Jwt(cmd) => jwt::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("meshid: {}", lines::shown(&failure.message));
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn every_subcommand_s_arguments_are_consistent() {
        super::Cli::command().debug_assert();
    }
}
