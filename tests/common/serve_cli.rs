//! `meshid serve workload-api` run as a black box for foreign Workload API clients (the
//! gRPC peers in `tests/peers/`), and running those clients with a bound on their time.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

/// A scratch directory holding a fresh CA for `example.org` (`ca/`), removed at the end.
/// Short, so that socket paths in it stay far below the 108-byte limit.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(MESHID)
            .current_dir(&dir)
            .args(["ca", "init", "--trust-domain", "example.org", "--out", "ca"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", Ran::from_output(&out));
        Self(dir)
    }

    /// The SHA-256 (lower-case hex) of the CA certificate's DER, as a peer sees it in the
    /// bundle.
    pub fn ca_sha256(&self) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, &self.ca_der()).as_ref())
    }

    /// The CA certificate's DER.
    pub fn ca_der(&self) -> Vec<u8> {
        let pem = std::fs::read(self.0.join("ca/ca.pem")).unwrap();
        let (label, der) = der::pem::decode_vec(&pem).unwrap();
        assert_eq!(label, "CERTIFICATE");
        der
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A running `meshid serve workload-api`, killed when dropped.
pub struct Serving {
    child: Child,
    pub socket: PathBuf,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `meshid serve workload-api --socket <dir>/api.sock --ca ca --id <ids...> --ttl <ttl>`
/// and waits (at most 20 s) for its socket.
pub fn serve(scratch: &Scratch, ids: &[&str], ttl: &str) -> Serving {
    let socket = scratch.0.join("api.sock");
    let mut cmd = Command::new(MESHID);
    cmd.current_dir(&scratch.0)
        .args(["serve", "workload-api", "--socket"])
        .arg(&socket)
        .args(["--ca", "ca", "--ttl", ttl]);
    for id in ids {
        cmd.args(["--id", id]);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        if let Some(exit) = child.try_wait().unwrap() {
            panic!("meshid serve workload-api exited early: {exit}");
        }
        assert!(Instant::now() < deadline, "the socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    Serving { child, socket }
}

/// What a bounded run of a peer did.
pub struct Ran {
    /// `None` if it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from_output(out: &std::process::Output) -> Self {
        Self {
            status: Some(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => writeln!(f, "exit: {status}")?,
            None => writeln!(f, "exit: none, killed at the deadline")?,
        }
        write!(f, "--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `program args...` and kills it if it has not exited within `limit`.
pub fn run_within(program: &Path, args: &[&str], limit: Duration) -> Ran {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `meshid fetch x509` (meshid's own client) against `socket`: the `not_after` of each SVID,
/// in order, to compare a peer's view with.
pub fn meshid_not_afters(socket: &Path) -> Vec<String> {
    let endpoint = format!("unix://{}", socket.display());
    let ran = run_within(
        Path::new(MESHID),
        &["fetch", "x509", "--socket", &endpoint],
        Duration::from_secs(20),
    );
    assert!(ran.success(), "{ran}");
    ran.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  not_after "))
        .map(str::to_owned)
        .collect()
}
