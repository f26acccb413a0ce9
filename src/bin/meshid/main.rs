//! `meshid`: the operator CLI, a thin shell over the meshid library.
//!
//! Exit codes: 0 success, 1 a refusal or failed check (the message names the rule),
//! 2 a usage or I/O error.

mod id;
mod lines;

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
}

fn main() -> ExitCode {
    // clap prints usage errors and exits with 2, help and version with 0.
    let cli = Cli::parse();
    match cli.command {
        Command::Id(cmd) => id::run(cmd),
    }
}
