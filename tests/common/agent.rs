//! `meshid serve agent` run as a black box, and programs run as other uids against it:
//! the tests that need root to start a caller under another uid, a binary those uids can
//! execute, and a directory they can write.
//!
//! Included with `#[path = "common/agent.rs"] mod agent;` by tests that also build the
//! `meshid` binary (feature `cli`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

#[path = "root.rs"]
mod root;
pub use root::root_or_skip;

/// A running `meshid serve agent`, killed when dropped; what it printed is kept.
pub struct ServeAgent {
    child: Child,
    /// The socket it serves the Workload API and SDS on.
    pub socket: PathBuf,
    output: Arc<Mutex<String>>,
}

impl ServeAgent {
    /// Writes `entries` to `dir/entries.toml` and starts
    /// `meshid serve agent --socket dir/agent.sock --entries entries.toml --ca ca` in `dir`
    /// (which holds the CA, see `serve_cli::Scratch`), logging at `info`; waits (at most
    /// 30 s) until it says it serves and the socket exists.
    ///
    /// # Panics
    /// If it exits or does not serve in time (with what it printed).
    pub fn start(dir: &Path, entries: &str, extra: &[&str]) -> Self {
        std::fs::write(dir.join("entries.toml"), entries).unwrap();
        let socket = dir.join("agent.sock");
        let mut child = Command::new(MESHID)
            .current_dir(dir)
            .args(["serve", "agent", "--socket"])
            .arg(&socket)
            .args(["--entries", "entries.toml", "--ca", "ca"])
            .args(extra)
            .env("RUST_LOG", "meshid=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let keep = |pipe: Box<dyn Read + Send>, output: Arc<Mutex<String>>| {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap_or_else(PoisonError::into_inner);
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        };
        keep(Box::new(child.stdout.take().unwrap()), Arc::clone(&output));
        keep(Box::new(child.stderr.take().unwrap()), Arc::clone(&output));
        let mut agent = Self {
            child,
            socket,
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let serving = format!(
            "serving the Workload API and SDS for {} entries on {}",
            entries.matches("[[entry]]").count(),
            agent.socket.display()
        );
        while !(agent.output().contains(&serving) && agent.socket.exists()) {
            if let Some(exit) = agent.child.try_wait().unwrap() {
                panic!(
                    "meshid serve agent exited ({exit}) before serving:\n{}",
                    agent.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "meshid serve agent did not serve within 30 s (expected {serving:?}):\n{}",
                agent.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// Everything it has printed so far (stdout and stderr, interleaved by line).
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for ServeAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `binary`, made executable by any uid: a hard link (no copy; the same inode, so it must
/// already be world-readable and executable) in `dir/bin`, or a copy if a link cannot be
/// made (another filesystem) or would not do. `dir` and `dir/bin` are made 0755; the link
/// goes with `dir`.
///
/// # Panics
/// If neither works.
pub fn reachable_binary(binary: &Path, dir: &Path) -> PathBuf {
    let real =
        std::fs::canonicalize(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in [dir, &bin] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let target = bin.join(real.file_name().unwrap());
    let _ = std::fs::remove_file(&target);
    let world_rx = std::fs::metadata(&real).unwrap().mode() & 0o005 == 0o005;
    let linked = world_rx && std::fs::hard_link(&real, &target).is_ok();
    if !linked {
        std::fs::copy(&real, &target)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", real.display(), target.display()));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    target
}

/// `parent/name`, created afresh, owned by `uid`:`gid` and mode 0700: where a program run
/// as that uid keeps its configuration and logs.
pub fn owned_dir(parent: &Path, name: &str, uid: u32, gid: u32) -> PathBuf {
    let dir = parent.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The real, effective, saved and filesystem uids of process `pid` (`Uid:` in
/// `/proc/PID/status`).
pub fn uids_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
