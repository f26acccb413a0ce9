//! `meshid serve workload-api` and `meshid serve sds`, run as an operator runs them, against
//! the Python gRPC stacks of the Python test peer (installed on first use by
//! `tests/peers/python.sh`), over their Unix sockets:
//!
//! - py-spiffe (PyPI `spiffe`, over grpcio, i.e. gRPC C-core) fetches the X509-SVID, the
//!   X.509 context and the bundles, checked against the CA (`tests/python/workload_pyspiffe.py`);
//! - py-spiffe fetches JWT-SVIDs and the JWT bundles (the `jwt-svid` keys of the CA's
//!   `bundle.json`), verifies a token itself, has the server validate it (a wrong audience
//!   and a tampered signature refused), and runs its `JwtSource`
//!   (`tests/python/workload_pyspiffe_jwt.py`);
//! - plain grpcio: the Workload API's security header is required (`INVALID_ARGUMENT`
//!   without it), an SVID comes with it (`tests/python/workload_grpcio.py`);
//! - an SDS client on grpcio: `FetchSecrets`, and `StreamSecrets` with an ACK, a NACK not
//!   answered with the same secrets again, and a stream that stays open
//!   (`tests/python/sds_grpcio.py`);
//! - raw HTTP/2 (the `h2` package) with each form of `:authority` a client may send: none,
//!   `localhost`, the socket path percent-encoded with and without its leading slash (gRPC
//!   C-core's form), the raw path, and 16 KiB of random octets; two requests per
//!   connection, Huffman-coded then plain, the second indexing the first's HPACK dynamic
//!   table entries (`tests/python/h2_raw.py`).
//!
//! gRPC C-core derives `:authority` from a `unix:` target as the percent-encoded socket
//! path. The grpcio checks run twice: with that default, and with `localhost` as the
//! authority (`grpc.default_authority`), which sets the authority apart from everything
//! else the client does.

#![cfg(unix)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/peers.rs"]
mod peers;

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");
const ID: &str = "spiffe://example.org/web";

/// A scratch directory (short: socket paths stay far below the 108-byte limit) with a CA,
/// removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-gpy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(MESHID)
            .current_dir(&dir)
            .args(["ca", "init", "--trust-domain", "example.org", "--out", "ca"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "meshid ca init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which `meshid serve` to run.
#[derive(Clone, Copy)]
enum Server {
    WorkloadApi,
    Sds,
}

/// A running `meshid serve ...`, killed on every path out of a test; its output goes to
/// `server.log` in the scratch directory.
struct Serving {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Serving {
    fn start(scratch: &Scratch, server: Server) -> Self {
        let socket = scratch.0.join("api.sock");
        let log = scratch.0.join("server.log");
        let kind = match server {
            Server::WorkloadApi => "workload-api",
            Server::Sds => "sds",
        };
        let output = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(MESHID)
            .current_dir(&scratch.0)
            .args(["serve", kind, "--socket"])
            .arg(&socket)
            .args(["--ca", "ca", "--id", ID, "--ttl", "1h"])
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "meshid serve {kind} exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "no {kind} socket after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, socket, log }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a script that overstays, on every path out of a test.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tests/python/<script>` with the peer's Python; asserts it succeeded within 60 s and
/// printed exactly `expected` (one line each, then `done`).
fn run_script(serving: &Serving, script: &str, args: &[&str], expected: &[&str]) {
    let python = peers::peer("python").join("bin/python");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut child = Script(
        Command::new(&python)
            .arg(&path)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display())),
    );
    let (mut stdout, mut stderr) = (
        child.0.stdout.take().unwrap(),
        child.0.stderr.take().unwrap(),
    );
    let (out, err, status) = std::thread::scope(|scope| {
        let out = scope.spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let err = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.0.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (out.join().unwrap(), err.join().unwrap(), status)
    });
    let lines: Vec<&str> = out.lines().collect();
    let mut want: Vec<&str> = expected.to_vec();
    want.push("done");
    let server_log = std::fs::read_to_string(&serving.log).unwrap_or_default();
    let context = format!(
        "{script} {args:?}\n--- stdout\n{out}--- stderr\n{err}--- server log\n{server_log}"
    );
    let status = status.unwrap_or_else(|| panic!("still running after 60 s: {context}"));
    assert!(status.success(), "failed ({status}): {context}");
    assert_eq!(lines, want, "{context}");
}

fn socket_arg(serving: &Serving) -> &str {
    serving.socket.to_str().unwrap()
}

#[test]
fn py_spiffe_fetches_the_svid_context_and_bundles_from_serve_workload_api() {
    let scratch = Scratch::new("pyspiffe");
    let serving = Serving::start(&scratch, Server::WorkloadApi);
    let ca = scratch.0.join("ca/ca.pem");
    run_script(
        &serving,
        "workload_pyspiffe.py",
        &[socket_arg(&serving), ID, ca.to_str().unwrap()],
        &["ok x509-svid", "ok x509-context", "ok x509-bundles"],
    );
}

#[test]
fn py_spiffe_fetches_and_validates_jwt_svids_from_serve_workload_api() {
    let scratch = Scratch::new("pyspiffe-jwt");
    let serving = Serving::start(&scratch, Server::WorkloadApi);
    // `meshid ca init` wrote the trust domain's bundle, JWT keys included.
    let bundle = scratch.0.join("ca/bundle.json");
    run_script(
        &serving,
        "workload_pyspiffe_jwt.py",
        &[socket_arg(&serving), ID, bundle.to_str().unwrap()],
        &[
            "ok jwt-svid",
            "ok jwt-svids",
            "ok other-subject-refused",
            "ok jwt-bundles",
            "ok validated-by-py-spiffe",
            "ok validate",
            "ok wrong-audience-refused",
            "ok tampered-refused",
            "ok jwt-source",
        ],
    );
}

const WORKLOAD_GRPCIO: &[&str] = &["ok no-header-invalid-argument", "ok header-svid"];

#[test]
fn grpcio_needs_the_security_header_for_an_svid() {
    let scratch = Scratch::new("wl-grpcio");
    let serving = Serving::start(&scratch, Server::WorkloadApi);
    let socket = socket_arg(&serving);
    run_script(
        &serving,
        "workload_grpcio.py",
        &[socket, ID],
        WORKLOAD_GRPCIO,
    );
}

#[test]
fn grpcio_needs_the_security_header_for_an_svid_with_authority_localhost() {
    let scratch = Scratch::new("wl-grpcio-lh");
    let serving = Serving::start(&scratch, Server::WorkloadApi);
    let socket = socket_arg(&serving);
    run_script(
        &serving,
        "workload_grpcio.py",
        &[socket, ID, "localhost"],
        WORKLOAD_GRPCIO,
    );
}

const SDS_GRPCIO: &[&str] = &[
    "ok fetch-secrets",
    "ok stream-first-push",
    "ok ack-is-quiet",
    "ok nack-not-resent",
    "ok open-after-nack",
    "ok half-close-ends-ok",
];

#[test]
fn a_grpcio_sds_client_fetches_acks_and_nacks() {
    let scratch = Scratch::new("sds-grpcio");
    let serving = Serving::start(&scratch, Server::Sds);
    let socket = socket_arg(&serving);
    run_script(&serving, "sds_grpcio.py", &[socket, ID], SDS_GRPCIO);
}

#[test]
fn a_grpcio_sds_client_fetches_acks_and_nacks_with_authority_localhost() {
    let scratch = Scratch::new("sds-grpcio-lh");
    let serving = Serving::start(&scratch, Server::Sds);
    let socket = socket_arg(&serving);
    run_script(
        &serving,
        "sds_grpcio.py",
        &[socket, ID, "localhost"],
        SDS_GRPCIO,
    );
}

/// Two raw HTTP/2 gRPC requests on one connection with `:authority` in the given form.
fn raw_h2(server: Server, form: &str) {
    let (kind, short) = match server {
        Server::WorkloadApi => ("workload", "wl"),
        Server::Sds => ("sds", "sds"),
    };
    let scratch = Scratch::new(&format!("h2-{short}-{form}"));
    let serving = Serving::start(&scratch, server);
    let socket = socket_arg(&serving);
    run_script(
        &serving,
        "h2_raw.py",
        &[socket, kind, form],
        &["ok request 1", "ok request 2"],
    );
}

macro_rules! raw_h2_tests {
    ($($name:ident: $server:ident, $form:literal;)*) => {
        $(
            #[test]
            fn $name() {
                raw_h2(Server::$server, $form);
            }
        )*
    };
}

raw_h2_tests! {
    h2_workload_api_authority_localhost: WorkloadApi, "localhost";
    h2_workload_api_authority_absent: WorkloadApi, "absent";
    h2_workload_api_authority_percent_encoded_path: WorkloadApi, "encoded";
    h2_workload_api_authority_percent_encoded_path_with_slash: WorkloadApi, "encoded-slash";
    h2_workload_api_authority_raw_path: WorkloadApi, "raw-path";
    h2_workload_api_authority_16k_garbage: WorkloadApi, "garbage";
    h2_sds_authority_localhost: Sds, "localhost";
    h2_sds_authority_absent: Sds, "absent";
    h2_sds_authority_percent_encoded_path: Sds, "encoded";
    h2_sds_authority_percent_encoded_path_with_slash: Sds, "encoded-slash";
    h2_sds_authority_raw_path: Sds, "raw-path";
    h2_sds_authority_16k_garbage: Sds, "garbage";
}
