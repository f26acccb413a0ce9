//! `meshid`: the operator CLI, a thin shell over the meshid library.
//!
//! Exit codes: 0 success, 1 a refusal or failed check (the message names the rule),
//! 2 a usage or I/O error.
//!
//! Logs (`tracing` events of the library and the CLI: issuances, rotations, refusals, SDS
//! NACKs, reconnections) go to stderr, never stdout (which carries the commands' output),
//! filtered by `--log-level` if given, else by `RUST_LOG`, else at `warn`. `--log-format
//! text` (the default) writes one line per event with untrusted text escaped like
//! everything else printed; `--log-format json` writes one JSON object per line
//! (`timestamp`, `level`, `message`, `target` and every field of the event at the top
//! level), with control and invisible characters inside strings as `\uXXXX` escapes, and
//! the final error of a failed command as such an object too. No event carries key
//! material or a JWT-SVID (`tests/cli_logs.rs` runs the whole flow at `trace` to check).

mod agent;
mod check;
mod files;
mod id;
mod jwt;
mod lines;
mod observe;
mod pki;
mod proxy;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SPIFFE workload identity tools.
#[derive(Debug, Parser)]
#[command(name = "meshid", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Which logs to write to stderr: error, warn, info, debug, trace or off, or a
    /// RUST_LOG-style filter (`meshid=debug,warn`). Overrides RUST_LOG; without either,
    /// warn.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_log_level)]
    log_level: Option<LogLevel>,
    /// How logs are written to stderr: text (one line per event, untrusted text escaped)
    /// or json (one JSON object per line: timestamp, level, message, target and the
    /// event's fields).
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One line per event, untrusted text escaped.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--log-level`: a filter `tracing_subscriber::EnvFilter` parses, checked by
/// [`parse_log_level`].
#[derive(Debug, Clone)]
struct LogLevel(String);

/// What `--log-level` accepts: a level, or comma-separated `RUST_LOG` directives each of
/// which is a level or ends in `=LEVEL`. `RUST_LOG` also takes a bare target (all its
/// levels), refused here: a mistyped level (`deubg`) would otherwise be read as a target
/// and silently log nothing.
fn parse_log_level(value: &str) -> Result<LogLevel, String> {
    const LEVELS: &str = "error, warn, info, debug, trace or off";
    if value.trim().is_empty() {
        return Err(format!("no level given (one of {LEVELS})"));
    }
    for directive in value.split(',').map(str::trim) {
        if !directive.contains('=')
            && directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
        {
            return Err(format!(
                "{} is not a level ({LEVELS}) nor a directive TARGET=LEVEL",
                directive.escape_debug()
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map_err(|e| format!("not a RUST_LOG-style filter: {e}"))?;
    Ok(LogLevel(value.to_owned()))
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
    /// SPIFFE mTLS in front of any program: terminate it (inbound) or originate it
    /// (outbound).
    #[command(subcommand)]
    Proxy(proxy::ProxyCommand),
}

/// A log writer (stderr, or a buffer in tests) that makes what it is given safe to print.
/// Text logs are escaped by [`lines::shown`], one event to a line: log fields carry text
/// from servers and certificates (status messages, IDs refused). JSON logs are JSON already
/// (serde_json escapes what is below U+0020); [`lines::json_shown`] escapes the rest that
/// could drive a terminal, inside strings, so each line stays valid JSON of the same value.
struct SafeWriter<W> {
    inner: W,
    format: LogFormat,
}

impl<W: std::io::Write> std::io::Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let out = match self.format {
            LogFormat::Json => lines::json_shown(&text),
            // One event per write, ending in a newline: a newline before that (a field
            // shown with Display) is escaped too, so no field can forge a line.
            LogFormat::Text => match text.strip_suffix('\n') {
                Some(event) => lines::shown(event) + "\n",
                None => lines::shown(&text),
            },
        };
        self.inner.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The log filter: `--log-level` if given, else `RUST_LOG` if set and valid, else `warn`.
fn log_filter(level: Option<&LogLevel>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    level
        .and_then(|LogLevel(value)| EnvFilter::builder().parse(value).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("warn"))
}

/// The subscriber writing `format` logs through `writer` (each event is one `write`).
fn log_subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: std::io::Write + Clone + Send + Sync + 'static,
{
    let make = move || SafeWriter {
        inner: writer.clone(),
        format,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => Box::new(builder.with_target(false).with_writer(make).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_writer(make)
                .finish(),
        ),
    }
}

/// stderr, for [`log_subscriber`].
#[derive(Clone)]
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Logs to stderr, as the module documentation says.
fn init_logging(cli: &Cli) {
    let filter = log_filter(cli.log_level.as_ref());
    let _ = tracing::subscriber::set_global_default(log_subscriber(filter, cli.log_format, Stderr));
}

/// The line saying why a command failed, on stderr: plain, or with `--log-format json` a
/// JSON object like the logs' (level `ERROR`, the `exit_code` a field), whatever the log
/// level, so that a JSON log reader sees it too.
fn report_failure(format: LogFormat, failure: &files::Failure) {
    match format {
        LogFormat::Text => eprintln!("meshid: {}", lines::shown(&failure.message)),
        LogFormat::Json => {
            let string = |s: String| serde_json::Value::from(s).to_string();
            let now = meshid::time::Rfc3339(std::time::SystemTime::now()).to_string();
            let line = format!(
                r#"{{"timestamp":{},"level":"ERROR","message":{},"exit_code":{}}}"#,
                string(now),
                string(format!("meshid: {}", failure.message)),
                failure.code
            );
            eprintln!("{}", lines::json_shown(&line));
        }
    }
}

fn main() -> ExitCode {
    // clap prints usage errors and exits with 2, help and version with 0.
    let cli = Cli::parse();
    init_logging(&cli);
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
        Command::Proxy(cmd) => proxy::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            report_failure(cli.log_format, &failure);
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

    #[test]
    fn log_levels_are_levels_or_directives_ending_in_a_level() {
        for ok in [
            "error",
            "WARN",
            "info",
            "debug",
            "trace",
            "off",
            "meshid=debug,warn",
            "meshid::rotate=trace",
        ] {
            assert!(super::parse_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "deubg", "meshid", "meshid=loud", "warn,verbose"] {
            assert!(super::parse_log_level(bad).is_err(), "{bad:?}");
        }
    }

    /// A buffer the subscriber writes into.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: super::LogFormat, event: impl FnOnce()) -> String {
        let captured = Captured::default();
        let filter = tracing_subscriber::EnvFilter::new("trace");
        let subscriber = super::log_subscriber(filter, format, captured.clone());
        tracing::subscriber::with_default(subscriber, event);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    const HOSTILE: &str = "line\nforged: \u{1b}[31mred\u{9b}0m \u{202e}evil";

    #[test]
    fn json_logs_are_one_valid_object_per_line_whatever_the_fields_hold() {
        let out = logged(super::LogFormat::Json, || {
            tracing::warn!(id = HOSTILE, shown = %HOSTILE, count = 3, "refused {}", "x");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out:?}");
        assert!(!lines[0].chars().any(char::is_control), "{out:?}");
        assert!(!lines[0].contains('\u{202e}'), "{out:?}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "refused x");
        assert_eq!(v["id"], HOSTILE);
        assert_eq!(v["shown"], HOSTILE);
        assert_eq!(v["count"], 3);
        assert!(v["timestamp"].as_str().is_some_and(|t| t.starts_with("20")));
    }

    #[test]
    fn text_logs_escape_what_the_fields_hold() {
        let out = logged(super::LogFormat::Text, || {
            tracing::warn!(id = HOSTILE, "refused");
            tracing::warn!(id = %HOSTILE, "refused");
        });
        assert_eq!(out.lines().count(), 2, "{out:?}");
        assert!(
            out.lines().all(|l| l.contains(" WARN refused id=")),
            "{out:?}"
        );
        assert!(out.contains("line\\nforged"), "{out:?}");
        assert!(out.contains("WARN"), "{out:?}");
        assert!(out.contains("\\u{1b}[31m"), "{out:?}");
        assert!(
            out.lines().all(|l| !l.chars().any(char::is_control)),
            "{out:?}"
        );
    }
}
