//! `meshid id ...`

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use meshid::{IdError, SpiffeId};

use crate::lines::CappedLines;

#[derive(Debug, Subcommand)]
pub(crate) enum IdCommand {
    /// Check SPIFFE IDs: prints `ok <canonical-id>` or `err <reason>` per input, in order.
    ///
    /// With no ID arguments, reads one ID per line from standard input. Exits 0 when every
    /// input is valid, 1 otherwise.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Lowercase the scheme and trust domain before checking (the path is kept as given).
    #[arg(long)]
    normalize: bool,
    /// IDs to check; standard input is read when none is given.
    ids: Vec<OsString>,
}

pub(crate) fn run(cmd: IdCommand) -> ExitCode {
    match cmd {
        IdCommand::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let mut out = BufWriter::new(io::stdout().lock());
    match check_all(args, &mut out).and_then(|ok| out.flush().map(|()| ok)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("meshid: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Checks every input, writing one line each; `Ok(true)` when all were valid.
fn check_all(args: &CheckArgs, out: &mut impl Write) -> io::Result<bool> {
    let mut all_ok = true;
    if args.ids.is_empty() {
        let mut lines = CappedLines::new(io::stdin().lock());
        while let Some(line) = lines.next_line()? {
            all_ok &= report(out, args.normalize, line.kept, line.overflow_len())?;
        }
    } else {
        for arg in &args.ids {
            all_ok &= report(out, args.normalize, &os_bytes(arg), None)?;
        }
    }
    Ok(all_ok)
}

/// Writes the verdict on one input; `Ok(true)` when it is a valid ID.
fn report(
    out: &mut impl Write,
    normalize: bool,
    input: &[u8],
    overflow_len: Option<usize>,
) -> io::Result<bool> {
    let verdict = if normalize {
        SpiffeId::normalize(input)
    } else {
        SpiffeId::from_bytes(input)
    };
    match verdict {
        Ok(id) => writeln!(out, "ok {id}").map(|()| true),
        // A line longer than the reader keeps is refused by the library for its length on
        // the kept prefix; report the line's real length.
        Err(IdError::TooLong { .. }) if overflow_len.is_some() => {
            let len = overflow_len.unwrap_or_default();
            writeln!(out, "err {}", IdError::TooLong { len }).map(|()| false)
        }
        Err(e) => writeln!(out, "err {e}").map(|()| false),
    }
}

/// The bytes of an argument as the OS gave them, so invalid UTF-8 reaches the parser (and is
/// refused there as a bad character) instead of failing argument parsing.
#[cfg(unix)]
fn os_bytes(s: &OsString) -> std::borrow::Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    std::borrow::Cow::Borrowed(s.as_bytes())
}

#[cfg(not(unix))]
fn os_bytes(s: &OsString) -> std::borrow::Cow<'_, [u8]> {
    match s.to_string_lossy() {
        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
    }
}
