//! `meshid serve agent` run as an operator runs it, and its workloads run as real processes
//! under the credentials a test gives them (included by `tests/agent.rs` with
//! `#[path = "common/workloads.rs"] mod workloads;`, beside `common/peers.rs` as `peers`).
//!
//! Workloads other than root must reach what they execute: everything they run lives in a
//! [`Scratch`] directory under `/tmp` (mode 0755, short enough for socket paths), linked
//! or copied there: the test executable ([`Scratch::exe`]) and the Python peer's venv and
//! interpreter ([`WorldPython`]), which live under `/root` (mode 0700) otherwise.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

pub const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

/// The environment variable that makes `tests/agent.rs`'s `child_fetch` a workload: the
/// agent's socket.
pub const CHILD_SOCKET: &str = "MESHID_AGENT_CHILD";
/// `fetch` (one X.509 context) or `stream` (every message until the stream ends).
pub const CHILD_MODE: &str = "MESHID_AGENT_CHILD_MODE";

#[path = "root.rs"]
mod root;
pub use root::{effective_uid, root_or_skip};

/// The lowercase hex SHA-256 of a file.
pub fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A scratch directory `/tmp/meshid-ag-<tag>-<pid>` (mode 0755: every workload may reach
/// it) with a CA for `example.org` in `ca/`; removed at the end.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Self {
        // Not $TMPDIR: it may be private to root, or long.
        let dir = PathBuf::from(format!("/tmp/meshid-ag-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        for d in [&dir, &dir.join("bin")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
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
        Self { dir }
    }

    /// The agent's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("a.sock")
    }

    /// The entries file.
    pub fn entries(&self) -> PathBuf {
        self.dir.join("entries.toml")
    }

    /// Replaces the entries file atomically: a temporary file renamed over it.
    pub fn write_entries(&self, text: &str) {
        let tmp = self.dir.join("entries.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.entries()).unwrap();
    }

    /// Rewrites the entries file in place so that the agent's poll cannot see it (same
    /// inode, same length, the modification time put back): only a SIGHUP makes the agent
    /// read it. `text` is padded with a comment to the old length.
    ///
    /// # Panics
    /// If `text` is longer than the file.
    pub fn rewrite_entries_unseen(&self, text: &str) {
        let path = self.entries();
        let before = std::fs::metadata(&path).unwrap();
        let old_len = usize::try_from(before.len()).unwrap();
        let mut padded = format!("{text}\n#");
        assert!(
            padded.len() <= old_len,
            "the new entries ({} bytes) must not be longer than the old ({old_len})",
            padded.len()
        );
        padded.extend(std::iter::repeat_n(' ', old_len - padded.len()));
        let modified: SystemTime = before.modified().unwrap();
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Overwritten from the start without truncating: the length never changes.
        std::io::Write::write_all(&mut file, padded.as_bytes()).unwrap();
        file.set_modified(modified).unwrap();
        drop(file);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (after.ino(), after.len(), after.modified().unwrap()),
            (before.ino(), before.len(), modified)
        );
    }

    /// The test executable at `bin/<name>` in here: a hard link (another path to the same
    /// file), or a copy where the file system refuses one.
    pub fn exe(&self, name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let to = self.dir.join("bin").join(name);
        if std::fs::hard_link(&exe, &to).is_err() {
            std::fs::copy(&exe, &to).unwrap();
        }
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Who a workload runs as.
#[derive(Debug, Clone)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; none unless given.
    pub groups: Vec<u32>,
}

impl Creds {
    pub fn new(uid: u32, gid: u32) -> Self {
        Self {
            uid,
            gid,
            groups: Vec::new(),
        }
    }

    #[must_use]
    pub fn groups(mut self, groups: &[u32]) -> Self {
        self.groups = groups.to_vec();
        self
    }

    /// What the workloads print about themselves (`who ...`), sorted groups.
    pub fn who(&self) -> String {
        let mut groups = self.groups.clone();
        groups.sort_unstable();
        let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        format!(
            "who uid={} gid={} groups={}",
            self.uid,
            self.gid,
            groups.join(",")
        )
    }
}

/// Sets `creds` on `cmd`. Without supplementary groups: `CommandExt::{uid, gid}` (the
/// standard library drops root's supplementary groups). With some: through the Python
/// peer, run as root, which calls `setgroups`, `setgid` and `setuid` and then executes the
/// program (`CommandExt::groups` is unstable).
pub fn command_as(creds: &Creds, program: &Path) -> Command {
    if creds.groups.is_empty() {
        let mut cmd = Command::new(program);
        cmd.uid(creds.uid).gid(creds.gid);
        return cmd;
    }
    let python = crate::peers::peer("python").join("bin/python");
    let groups: Vec<String> = creds.groups.iter().map(u32::to_string).collect();
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import os, sys\n\
         os.setgroups([int(g) for g in sys.argv[3].split(',')])\n\
         os.setgid(int(sys.argv[2]))\n\
         os.setuid(int(sys.argv[1]))\n\
         os.execv(sys.argv[4], sys.argv[4:])",
        &creds.uid.to_string(),
        &creds.gid.to_string(),
        &groups.join(","),
    ])
    .arg(program);
    cmd
}

/// A running process whose output is collected line by line; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

fn collect(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            {
                let mut text = into.lock().unwrap_or_else(PoisonError::into_inner);
                text.push_str(&line);
                text.push('\n');
            }
            if let Some(tx) = &tx {
                let _ = tx.send(line);
            }
        }
    });
}

impl Proc {
    /// Starts `cmd` (stdin closed, stdout and stderr collected).
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Self {
        let name = name.into();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), Arc::clone(&stdout), Some(tx));
        collect(child.stderr.take().unwrap(), Arc::clone(&stderr), None);
        Self {
            name,
            child,
            lines,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed so far, and how it exited if it did.
    pub fn transcript(&self) -> String {
        let lock = |m: &Mutex<String>| m.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let status = self.status.map_or_else(
            || "running (or not waited for)".to_owned(),
            |s| s.to_string(),
        );
        format!(
            "=== {} (pid {}): {status}\n--- stdout\n{}--- stderr\n{}",
            self.name,
            self.child.id(),
            lock(&self.stdout),
            lock(&self.stderr)
        )
    }

    /// The next line it prints within `limit` (`None`: none came, or it closed stdout).
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// The next line it prints within `limit`, which must be `expected`.
    ///
    /// # Panics
    /// Otherwise, with its transcript and those of `others`.
    pub fn expect_line(&self, expected: &str, limit: Duration, others: &[&Proc]) {
        let got = self.next_line(limit);
        assert!(
            got.as_deref() == Some(expected),
            "{}: expected the line {expected:?} within {limit:?}, got {got:?}\n{}",
            self.name,
            transcripts(self, others)
        );
    }

    /// The next line it prints within `limit`, which must satisfy `check`; returned.
    ///
    /// # Panics
    /// Otherwise, with its transcript and those of `others`.
    pub fn expect_line_that(
        &self,
        what: &str,
        check: impl Fn(&str) -> bool,
        limit: Duration,
        others: &[&Proc],
    ) -> String {
        match self.next_line(limit) {
            Some(line) if check(&line) => line,
            got => panic!(
                "{}: expected a line {what} within {limit:?}, got {got:?}\n{}",
                self.name,
                transcripts(self, others)
            ),
        }
    }

    /// Waits (at most `limit`) for it to exit, killing it at the deadline (`None`).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `limit`) for it to exit and for its stdout to close, and returns its
    /// stdout lines that it had not read yet.
    ///
    /// # Panics
    /// If it does not exit in time, or fails; with its transcript and those of `others`.
    pub fn finish(&mut self, limit: Duration, others: &[&Proc]) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let status = self.wait(limit);
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(deadline.saturating_duration_since(Instant::now())) {
            rest.push(line);
        }
        match status {
            Some(s) if s.success() => rest,
            _ => panic!(
                "{}: did not exit successfully within {limit:?}\n{}",
                self.name,
                transcripts(self, others)
            ),
        }
    }

    /// Sends it a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.child.id());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The transcripts of `first` and `others`, for a failure message.
pub fn transcripts(first: &Proc, others: &[&Proc]) -> String {
    std::iter::once(first)
        .chain(others.iter().copied())
        .map(Proc::transcript)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A process this test did not start directly (a grandchild), killed by PID when dropped
/// unless it is known to have exited.
pub struct Stray(pub Option<u32>);

impl Drop for Stray {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// How long the agent takes at most to start, or to act on a changed entries file (it
/// polls every second).
pub const AGENT_WAIT: Duration = Duration::from_secs(20);

/// Starts `meshid serve agent` on the scratch directory's socket, entries and CA, and
/// waits until it serves (`issued N entries from ...`, `serving ... on SOCKET`, the
/// socket exists). It logs at debug level (each attestation) to its stderr.
pub fn start_agent(scratch: &Scratch, entries: usize) -> Proc {
    let socket = scratch.socket();
    let mut cmd = Command::new(MESHID);
    cmd.current_dir(&scratch.dir)
        .args(["serve", "agent", "--socket"])
        .arg(&socket)
        .arg("--entries")
        .arg(scratch.entries())
        .args(["--ca", "ca"])
        .env("RUST_LOG", "meshid=debug");
    let agent = Proc::spawn("meshid serve agent", cmd);
    let issued = format!(
        "issued {entries} entries from {}",
        scratch.entries().display()
    );
    agent.expect_line(&issued, AGENT_WAIT, &[]);
    let serving = format!(
        "serving the Workload API and SDS for {entries} entries on {}",
        socket.display()
    );
    agent.expect_line(&serving, AGENT_WAIT, &[]);
    let deadline = Instant::now() + AGENT_WAIT;
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no socket after {AGENT_WAIT:?}\n{}",
            agent.transcript()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    agent
}

/// The Python peer's venv and interpreter made reachable by every user: hard links (or
/// copies) in the scratch directory of the venv, of the interpreter's executable, shared
/// library and standard library (not its site-packages), with the venv pointed at that
/// interpreter. Checked: another user's Python finds the venv's packages.
pub struct WorldPython {
    /// The venv's `bin/python`.
    pub python: PathBuf,
    /// The interpreter's `lib` (its shared library: `LD_LIBRARY_PATH`).
    pub lib: PathBuf,
    /// Copies of `tests/python/*.py`.
    pub scripts: PathBuf,
}

/// `cp -al SOURCES... DEST` (hard links), or `cp -a` where links cannot be made.
fn link_tree(sources: &[PathBuf], dest: &Path) {
    if sources.is_empty() {
        return;
    }
    let cp = |flags: &str| {
        Command::new("cp")
            .arg(flags)
            .args(sources)
            .arg(dest)
            .output()
            .unwrap()
    };
    if cp("-al").status.success() {
        return;
    }
    let out = cp("-a");
    assert!(
        out.status.success(),
        "cp -a {sources:?} {}: {}",
        dest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The paths in `dir` whose file names `keep` accepts.
fn listing(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect()
}

/// Links (or copies) into `base` what the interpreter of the venv `venv` runs from: its
/// executable (`bin/pythonX.Y`), shared library (`lib/libpython*`) and standard library
/// (`lib/pythonX.Y`, without its site-packages). Returns `base` and `X.Y`.
fn link_interpreter(venv: &Path, base: &Path) -> (PathBuf, String) {
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import os, sys\n\
             print(sys.base_prefix)\n\
             print(os.path.realpath(sys._base_executable))\n\
             print('%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let info: Vec<&str> = text.lines().collect();
    assert!(
        out.status.success() && info.len() == 3,
        "asking the Python peer about itself: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base_prefix, base_exe, version) = (Path::new(info[0]), Path::new(info[1]), info[2]);
    let stdlib_name = format!("python{version}");
    let stdlib = base.join("lib").join(&stdlib_name);
    std::fs::create_dir_all(base.join("bin")).unwrap();
    std::fs::create_dir_all(&stdlib).unwrap();
    link_tree(
        &[base_exe.to_path_buf()],
        &base.join("bin").join(&stdlib_name),
    );
    let base_lib = base_prefix.join("lib");
    link_tree(
        &listing(&base_lib, |n| n.starts_with("libpython")),
        &base.join("lib"),
    );
    link_tree(
        &listing(&base_lib.join(&stdlib_name), |n| {
            n != "site-packages" && n != "dist-packages"
        }),
        &stdlib,
    );
    (base.to_path_buf(), version.to_owned())
}

impl WorldPython {
    pub fn new(scratch: &Scratch) -> Self {
        let started = Instant::now();
        let venv = crate::peers::peer("python");
        let root = scratch.dir.join("py");
        let (base, version) = link_interpreter(&venv, &root.join("base"));
        let interpreter = base.join("bin").join(format!("python{version}"));

        let env = root.join("venv");
        link_tree(&[venv], &env);
        // Links share the originals' inodes: what changes is replaced, never written to.
        for name in [
            "python".to_owned(),
            "python3".to_owned(),
            format!("python{version}"),
        ] {
            let link = env.join("bin").join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&interpreter, &link).unwrap();
        }
        let cfg = env.join("pyvenv.cfg");
        std::fs::remove_file(&cfg).unwrap();
        std::fs::write(
            &cfg,
            format!(
                "home = {}\ninclude-system-site-packages = false\n",
                base.join("bin").display()
            ),
        )
        .unwrap();
        let scripts = root.join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        link_tree(
            &listing(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python"),
                |n| Path::new(n).extension().is_some_and(|e| e == "py"),
            ),
            &scripts,
        );
        for d in [&root, &base, &env, &scripts] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        let world = Self {
            python: env.join("bin/python"),
            lib: base.join("lib"),
            scripts,
        };
        // Another user's Python: the venv's prefix, and its packages.
        let mut check = world.command(&Creds::new(65534, 65534), None);
        check.args([
            "-c",
            "import sys, grpc, h2, spiffe.svid.x509_svid; print(sys.prefix)",
        ]);
        let out = check.output().unwrap();
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).trim() == env.to_string_lossy(),
            "the world-readable Python in {} does not work as uid 65534: {}{}",
            root.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "world-readable Python peer in {} made and checked in {:?}",
            root.display(),
            started.elapsed()
        );
        world
    }

    /// Python as `creds`, running `tests/python/<script>` (its copy) if given, in a clean
    /// environment.
    pub fn command(&self, creds: &Creds, script: Option<&str>) -> Command {
        let mut cmd = command_as(creds, &self.python);
        if let Some(script) = script {
            cmd.arg(self.scripts.join(script));
        }
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LD_LIBRARY_PATH", &self.lib)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONNOUSERSITE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(self.scripts.parent().unwrap());
        cmd
    }
}
