//! `meshid`: the operator CLI, a thin shell over the meshid library.
//!
//! Exit codes: 0 success, 1 a refusal or failed check (the message names the rule),
//! 2 a usage or I/O error.

mod check;
mod files;
mod id;
mod lines;
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
    /// Run a local certificate authority.
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
}

fn main() -> ExitCode {
    // clap prints usage errors and exits with 2, help and version with 0.
    let cli = Cli::parse();
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("meshid: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
