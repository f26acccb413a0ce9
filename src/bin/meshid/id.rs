//! `meshid id ...`

use std::ffi::OsString;
use std::io::{self, LineWriter, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use meshid::{IdError, SpiffeId};

use crate::lines::CappedLines;

#[derive(Debug, Subcommand)]
pub(crate) enum IdCommand {
    /// Check SPIFFE IDs: prints `ok <canonical-id>` or `err <reason>` per input, in order.
    ///
    /// With no ID arguments, reads one ID per line from standard input (a `\r` before the
    /// `\n` is dropped, as for CRLF files). Exit status: 0 when every input is valid, 1 when
    /// any is not, 2 on a usage error, an I/O error, or no input at all.
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
    // Line-buffered, so a pipeline sees each verdict as soon as its input line is read.
    let mut out = LineWriter::new(io::stdout().lock());
    match check_all(args, &mut out).and_then(|tally| out.flush().map(|()| tally)) {
        Ok(Tally { inputs: 0, .. }) => {
            eprintln!("meshid: no SPIFFE ID given, as argument or on standard input");
            ExitCode::from(2)
        }
        Ok(Tally { invalid: 0, .. }) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        // The reader of our output has gone: nobody is left to tell.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(2),
        Err(e) => {
            eprintln!("meshid: {e}");
            ExitCode::from(2)
        }
    }
}

#[derive(Default)]
struct Tally {
    inputs: usize,
    invalid: usize,
}

/// Checks every input, writing one line each.
fn check_all(args: &CheckArgs, out: &mut impl Write) -> io::Result<Tally> {
    let mut tally = Tally::default();
    let mut one = |input: &[u8], overflow_len: Option<usize>| -> io::Result<()> {
        tally.inputs += 1;
        if !report(out, args.normalize, input, overflow_len)? {
            tally.invalid += 1;
        }
        Ok(())
    };
    if args.ids.is_empty() {
        let mut lines = CappedLines::new(io::stdin().lock());
        while let Some(line) = lines.next_line()? {
            one(line.kept, line.overflow_len())?;
        }
    } else {
        for arg in &args.ids {
            one(&os_bytes(arg), None)?;
        }
    }
    Ok(tally)
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
    match (verdict, overflow_len) {
        (Ok(id), _) => writeln!(out, "ok {id}").map(|()| true),
        // A line longer than the reader keeps is refused by the library for its length on
        // the kept prefix; report the line's real length.
        (Err(IdError::TooLong { .. }), Some(len)) => {
            writeln!(out, "err {}", IdError::TooLong { len }).map(|()| false)
        }
        (Err(e), _) => writeln!(out, "err {e}").map(|()| false),
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
