//! Decide which peers a service accepts.
//!
//! ```text
//! cargo run --example authorize -- spiffe://example.org/ns/prod/web spiffe://ops.org/admin spiffe://evil.org/x
//! ```
//!
//! Each argument is parsed as a SPIFFE ID and judged by the policy "any workload under
//! `/ns/prod` of example.org, or the admin of ops.org"; the verdict says why. Without
//! arguments it judges a few sample IDs. Exits 1 if any given argument was invalid or
//! refused.

use std::process::ExitCode;

use meshid::authorize::{self, Authorizer};
use meshid::{IdError, SpiffeId, TrustDomain};

fn policy() -> Result<impl Authorizer, IdError> {
    let example = TrustDomain::new("example.org")?;
    let prod = SpiffeId::from_segments(&example, ["ns", "prod"])?;
    Ok(authorize::path_prefix(prod).or(authorize::exact(SpiffeId::new("spiffe://ops.org/admin")?)))
}

fn main() -> ExitCode {
    let policy = match policy() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bad policy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let demo = args.is_empty();
    if demo {
        args = [
            "spiffe://example.org/ns/prod/web",
            "spiffe://example.org/ns/production/web",
            "spiffe://ops.org/admin",
            "spiffe://example.org/ns//web",
        ]
        .map(String::from)
        .to_vec();
    }
    let mut ok = true;
    for arg in &args {
        let verdict = SpiffeId::new(arg)
            .map_err(|e| format!("invalid: {e}"))
            .and_then(|id| policy.authorize(&id).map_err(|e| e.to_string()));
        match verdict {
            Ok(()) => println!("allowed  {arg}"),
            Err(why) => {
                ok = false;
                println!("refused  {arg}: {why}");
            }
        }
    }
    if ok || demo {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
