//! [`UnixAttestor`]: SPIRE's `unix` workload attestor selectors, from `/proc`, with the
//! caller's start time checked around every read so a reused PID is not attested as the
//! caller. The type's documentation (rendered, unlike this module's) explains the
//! selectors, the race check and the attacker it stops.

use std::fmt;
use std::path::PathBuf;

use super::exe::ExeHasher;
use super::proc::{proc_error, read_stat, read_status, Status};
use super::users::NameDb;
use super::{AttestError, Attestor};
use crate::agent::{Selector, Selectors};
use crate::serve::Caller;

/// The selector type of every selector made here.
const KIND: &str = "unix";

/// SPIRE's `unix` workload attestor: who a caller of a Unix socket is, from `/proc`
/// (Linux).
///
/// # Selectors
///
/// The same as SPIRE's, so registration entries carry over unchanged:
///
/// | Selector | From |
/// |----------|------|
/// | `unix:uid:N` | the effective user ID (`Uid:` in `/proc/PID/status`, second value) |
/// | `unix:user:NAME` | its name in `/etc/passwd`, if it has one |
/// | `unix:gid:N` | the effective group ID (`Gid:`, second value) |
/// | `unix:group:NAME` | its name in `/etc/group`, if it has one |
/// | `unix:supplementary_gid:N` | each supplementary group (`Groups:`) |
/// | `unix:supplementary_group:NAME` | each one's name, where it has one |
/// | `unix:path:/abs/exe` | the executable (`readlink /proc/PID/exe`); on by default, see [`discover_path`](Self::discover_path) |
/// | `unix:sha256:HEX` | the lowercase hex SHA-256 of the executable; off by default, see [`hash_executables`](Self::hash_executables) |
///
/// The IDs are the *effective* ones, as SPIRE takes them, and the ones `SO_PEERCRED`
/// records at connect. A process whose effective uid or gid is no longer the one it
/// connected with (it executed a set-user-ID program, or dropped privileges) is refused
/// ([`AttestError::UidChanged`], [`AttestError::GidChanged`]) rather than attested as what
/// it has become.
///
/// Names come from this host's `/etc/passwd` and `/etc/group`, parsed directly (no NSS:
/// users known only to LDAP or sssd get no `user` selector, as a uid with no entry gets
/// none). The path is the target of the `/proc/PID/exe` link as the kernel writes it: a
/// deleted executable's ends in ` (deleted)` and matches no entry written for the
/// original path. The path is given only for callers in the agent's own mount namespace:
/// inside a container a path names whatever the container put there, so a containerised
/// caller gets no `path` selector (its `sha256` names the content, wherever it lives).
///
/// With SPIRE, `path` needs `discover_workload_path = true`; here it is on by default.
/// Reading `/proc/PID/exe` of another user's process needs root or `CAP_SYS_PTRACE`: an
/// agent with neither must turn it off to serve other users, or their attestations fail
/// ([`AttestError::Read`]).
///
/// # The race check
///
/// A PID names a process only while that process lives. The attacker this guards against
/// connects to the agent, exits, and waits for its PID to be reused by a more privileged
/// process: an attestor that looks up the PID then describes the newcomer, and the
/// attacker's connection receives the newcomer's identities. So the start time of the
/// process (field 22 of `/proc/PID/stat`, in clock ticks since boot), read when the
/// connection was accepted ([`Caller::start_time`]), is read again before anything else
/// and again after the last read of `/proc`; the caller is attested only if all three are
/// equal and the process is not a zombie. Otherwise it is refused:
/// [`AttestError::NoStartTime`] (nothing read at accept), [`AttestError::ProcessGone`]
/// (exited, or a zombie: its PID is not reused yet, but it is not the caller any more), or
/// [`AttestError::PidReused`]. Two processes with the same PID and start time would need
/// the kernel's PID counter to wrap around within one clock tick (10 ms).
///
/// The one gap: the start time is read when the agent *accepts* the connection, not when
/// the caller connected. A caller that connects, hands its socket to a child and exits,
/// and whose PID is reused before the agent accepts (the kernel's PID counter wrapping
/// around within that moment), would be recorded with the newcomer's start time. Closing
/// it needs `SO_PEERPIDFD` (Linux 6.5), which meshid does not use yet.
///
/// What this does not catch: a caller that *executes* another program keeps its PID and
/// start time, so `path` and `sha256` describe what runs under the PID now. The uid
/// check above stops that from gaining privileges through a set-user-ID program; entries
/// that rely on `path` or `sha256` alone trust every user who may run that executable.
///
/// # Limits
///
/// `/proc/PID/stat` and `/proc/PID/status` are read up to 64 KiB (enough for some 9000
/// supplementary groups), `/etc/passwd` and `/etc/group` up to 16 MiB; larger files are
/// refused ([`AttestError::FileTooLarge`]). Executables are hashed only up to the size
/// given to [`hash_executables`](Self::hash_executables). Hashes are cached, for up to
/// 256 executables, by device, inode, size, and modification and change times, so a
/// long-running workload is hashed once and not at every call.
///
/// # Example
///
/// Attest the current process, as a server would a caller:
///
/// ```
/// use std::os::unix::fs::MetadataExt;
///
/// use meshid::agent::{Attestor, Selector, UnixAttestor};
/// use meshid::serve::Caller;
///
/// // Our effective uid and gid, as SO_PEERCRED would give them: /proc/self's owner.
/// let me = std::fs::metadata("/proc/self")?;
/// let caller = Caller::unix(i32::try_from(std::process::id())?, me.uid(), me.gid());
///
/// let attestor = UnixAttestor::new().hash_executables(1 << 30);
/// let selectors = attestor.attest(&caller)?;
///
/// assert!(selectors.contains(&Selector::new("unix", format!("uid:{}", me.uid()))));
/// let exe = std::env::current_exe()?;
/// let path = format!("path:{}", exe.display());
/// assert!(selectors.contains(&Selector::new("unix", path)));
/// assert!(selectors.iter().any(|s| s.value().starts_with("sha256:")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnixAttestor {
    path: bool,
    hasher: Option<ExeHasher>,
}

impl UnixAttestor {
    /// The uid, user, gid, group, supplementary_gid, supplementary_group and path
    /// selectors; no sha256.
    pub fn new() -> Self {
        Self {
            path: true,
            hasher: None,
        }
    }

    /// Whether to give the `path` selector (and `sha256`, if hashing is on), which needs
    /// `/proc/PID/exe` of callers to be readable (default: `true`). Without it, neither is
    /// given, as SPIRE's `discover_workload_path = false`.
    #[must_use]
    pub fn discover_path(mut self, on: bool) -> Self {
        self.path = on;
        self
    }

    /// Give the `sha256` selector too: the SHA-256 of the caller's executable, read
    /// through `/proc/PID/exe` (so the file the process runs, even if its path was
    /// replaced since). An executable larger than `max_size` bytes is refused
    /// ([`AttestError::ExecutableTooLarge`]). Off by default; given only with the path
    /// (as SPIRE's `workload_size_limit`, which needs `discover_workload_path`).
    #[must_use]
    pub fn hash_executables(mut self, max_size: u64) -> Self {
        self.hasher = Some(ExeHasher::new(max_size));
        self
    }

    /// What `pid` is, read from `/proc`; `connected` holds the IDs it connected with.
    fn read_process(&self, pid: i32, connected: &Caller) -> Result<Process, AttestError> {
        let status = read_status(pid)?;
        if let Some(uid) = connected.uid.filter(|&uid| uid != status.uid) {
            return Err(AttestError::UidChanged {
                pid,
                connected: uid,
                now: status.uid,
            });
        }
        if let Some(gid) = connected.gid.filter(|&gid| gid != status.gid) {
            return Err(AttestError::GidChanged {
                pid,
                connected: gid,
                now: status.gid,
            });
        }
        let (mut path, mut sha256) = (None, None);
        if self.path {
            let exe = exe_path(pid)?;
            // A path names a file only in the caller's mount namespace: a process in a
            // container could put anything at `/usr/bin/trusted`. The path is given only
            // for callers that see the agent's files; the hash names the content wherever
            // it lives.
            if same_mount_namespace(pid) {
                path = Some(exe);
            }
            if let Some(hasher) = &self.hasher {
                sha256 = Some(hasher.sha256_hex(pid)?);
            }
        }
        Ok(Process {
            status,
            path,
            sha256,
        })
    }
}

impl Default for UnixAttestor {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for UnixAttestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixAttestor")
            .field("discover_path", &self.path)
            .field("hash_limit", &self.hasher.as_ref().map(ExeHasher::limit))
            .finish()
    }
}

impl Attestor for UnixAttestor {
    fn attest(&self, caller: &Caller) -> Result<Selectors, AttestError> {
        let pid = caller.pid.ok_or(AttestError::NoCredentials)?;
        if pid <= 0 {
            return Err(AttestError::PidNotVisible { pid });
        }
        let connected = caller.start_time.ok_or(AttestError::NoStartTime { pid })?;
        still_the_caller(pid, connected)?;
        let process = self.read_process(pid, caller)?;
        still_the_caller(pid, connected)?;
        process.selectors()
    }
}

/// Refuses unless process `pid` is alive and started at `connected` (clock ticks since
/// boot): otherwise the caller has exited, or its PID now names another process.
fn still_the_caller(pid: i32, connected: u64) -> Result<(), AttestError> {
    let stat = read_stat(pid)?;
    if stat.is_gone() {
        Err(AttestError::ProcessGone { pid })
    } else if stat.start_time != connected {
        Err(AttestError::PidReused { pid })
    } else {
        Ok(())
    }
}

/// Whether process `pid` is in this process's mount namespace (so a path means the same
/// file to both); `false` when either cannot be read.
fn same_mount_namespace(pid: i32) -> bool {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt"));
    let ours = std::fs::read_link("/proc/self/ns/mnt");
    matches!((theirs, ours), (Ok(a), Ok(b)) if a == b)
}

/// The executable of `pid`: the target of `/proc/PID/exe`. A zombie has none.
fn exe_path(pid: i32) -> Result<String, AttestError> {
    let link = PathBuf::from(format!("/proc/{pid}/exe"));
    let path = std::fs::read_link(&link).map_err(|err| proc_error(pid, link, err))?;
    path.into_os_string()
        .into_string()
        .map_err(|path| AttestError::NonUtf8Path {
            pid,
            path: path.into(),
        })
}

/// What was read about a process.
#[derive(Debug)]
struct Process {
    status: Status,
    path: Option<String>,
    sha256: Option<String>,
}

impl Process {
    /// The selectors, names looked up.
    fn selectors(&self) -> Result<Selectors, AttestError> {
        let users = NameDb::passwd()?;
        let groups = NameDb::group()?;
        let Status { uid, gid, .. } = self.status;
        let mut out = Selectors::new();
        let mut add = |name: &str, value: &dyn fmt::Display| {
            out.insert(Selector::new(KIND, format!("{name}:{value}")));
        };
        add("uid", &uid);
        if let Some(user) = users.name_of(uid) {
            add("user", &user);
        }
        add("gid", &gid);
        if let Some(group) = groups.name_of(gid) {
            add("group", &group);
        }
        for &supplementary in &self.status.groups {
            add("supplementary_gid", &supplementary);
            if let Some(group) = groups.name_of(supplementary) {
                add("supplementary_group", &group);
            }
        }
        if let Some(path) = &self.path {
            add("path", path);
        }
        if let Some(sha256) = &self.sha256 {
            add("sha256", sha256);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use sha2::{Digest, Sha256};

    use super::*;

    fn unix(value: impl Into<String>) -> Selector {
        Selector::new(KIND, value)
    }

    fn sha256_of(path: &Path) -> String {
        super::super::exe::hex(&Sha256::digest(std::fs::read(path).unwrap()))
    }

    fn pid_of(child: &Child) -> i32 {
        i32::try_from(child.id()).unwrap()
    }

    /// The current process as a server would see it calling.
    fn me() -> (Caller, u32, u32) {
        let meta = std::fs::metadata("/proc/self").unwrap();
        let pid = i32::try_from(std::process::id()).unwrap();
        (
            Caller::unix(pid, meta.uid(), meta.gid()),
            meta.uid(),
            meta.gid(),
        )
    }

    /// An executable from coreutils, by its canonical path.
    fn coreutil(name: &str) -> PathBuf {
        ["/usr/bin", "/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.exists())
            .map_or_else(
                || panic!("no {name} in /usr/bin or /bin"),
                |p| std::fs::canonicalize(p).unwrap(),
            )
    }

    #[test]
    fn the_current_process_is_attested_with_ids_path_and_hash() {
        let (caller, uid, gid) = me();
        let selectors = UnixAttestor::new()
            .hash_executables(1 << 30)
            .attest(&caller)
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        assert!(
            selectors.contains(&unix(format!("uid:{uid}"))),
            "{selectors}"
        );
        assert!(
            selectors.contains(&unix(format!("gid:{gid}"))),
            "{selectors}"
        );
        assert!(selectors.contains(&unix(format!("path:{}", exe.display()))));
        assert!(selectors.contains(&unix(format!("sha256:{}", sha256_of(&exe)))));
        if uid == 0 && NameDb::passwd().unwrap().name_of(0) == Some("root") {
            assert!(selectors.contains(&unix("user:root")), "{selectors}");
        }
        let status = read_status(caller.pid.unwrap()).unwrap();
        for group in status.groups {
            assert!(selectors.contains(&unix(format!("supplementary_gid:{group}"))));
        }
        assert!(selectors.iter().all(|s| s.kind() == "unix"));

        // Without the path, no path nor hash.
        let selectors = UnixAttestor::new()
            .discover_path(false)
            .hash_executables(1 << 30)
            .attest(&caller)
            .unwrap();
        assert!(selectors.contains(&unix(format!("uid:{uid}"))));
        assert!(!selectors
            .iter()
            .any(|s| s.value().starts_with("path:") || s.value().starts_with("sha256:")));
        // And no hash unless asked for.
        let selectors = UnixAttestor::default().attest(&caller).unwrap();
        assert!(selectors.iter().any(|s| s.value().starts_with("path:")));
        assert!(!selectors.iter().any(|s| s.value().starts_with("sha256:")));
    }

    #[test]
    fn a_start_time_that_differs_is_a_reused_pid() {
        let (caller, ..) = me();
        let other = Caller {
            start_time: caller.start_time.map(|t| t + 1),
            ..caller
        };
        assert!(matches!(
            UnixAttestor::new().attest(&other),
            Err(AttestError::PidReused { pid }) if Some(pid) == caller.pid
        ));
    }

    #[test]
    fn callers_without_a_usable_pid_or_start_time_are_refused() {
        let (caller, ..) = me();
        let attestor = UnixAttestor::new();
        assert!(matches!(
            attestor.attest(&Caller::unknown()),
            Err(AttestError::NoCredentials)
        ));
        let no_pid = Caller {
            pid: Some(0),
            ..caller
        };
        assert!(matches!(
            attestor.attest(&no_pid),
            Err(AttestError::PidNotVisible { pid: 0 })
        ));
        let no_start = Caller {
            start_time: None,
            ..caller
        };
        assert!(matches!(
            attestor.attest(&no_start),
            Err(AttestError::NoStartTime { .. })
        ));
        // Above the largest pid_max (2^22): no such process.
        let missing = Caller {
            pid: Some(i32::MAX),
            ..caller
        };
        assert!(matches!(
            attestor.attest(&missing),
            Err(AttestError::ProcessGone { pid: i32::MAX })
        ));
    }

    #[test]
    fn changed_credentials_are_refused() {
        let (caller, uid, gid) = me();
        let attestor = UnixAttestor::new();
        let uid_now = Caller {
            uid: Some(uid.wrapping_add(1)),
            ..caller
        };
        assert!(matches!(
            attestor.attest(&uid_now),
            Err(AttestError::UidChanged { now, .. }) if now == uid
        ));
        let gid_now = Caller {
            gid: Some(gid.wrapping_add(1)),
            ..caller
        };
        assert!(matches!(
            attestor.attest(&gid_now),
            Err(AttestError::GidChanged { now, .. }) if now == gid
        ));
    }

    #[test]
    fn an_exited_child_is_refused_zombie_or_reaped() {
        let (_, uid, gid) = me();
        let attestor = UnixAttestor::new();
        let mut child = Command::new(coreutil("true")).spawn().unwrap();
        let caller = Caller::unix(pid_of(&child), uid, gid);
        // Not reaped yet, so its /proc entry is there: a zombie once it has exited.
        assert!(caller.start_time.is_some());
        let deadline = Instant::now() + Duration::from_secs(10);
        while read_stat(pid_of(&child)).is_ok_and(|stat| !stat.is_gone()) {
            assert!(Instant::now() < deadline, "`true` did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        let refused = attestor.attest(&caller).unwrap_err();
        assert!(
            matches!(
                refused,
                AttestError::ProcessGone { pid } if Some(pid) == caller.pid
            ),
            "{refused}"
        );
        child.wait().unwrap();
        let refused = attestor.attest(&caller).unwrap_err();
        assert!(
            matches!(
                refused,
                AttestError::ProcessGone { pid } if Some(pid) == caller.pid
            ),
            "{refused}"
        );
    }

    #[test]
    fn a_child_running_as_nobody_is_attested_as_nobody() {
        let (_, uid, _) = me();
        if uid != 0 {
            eprintln!("skipped: changing a child's uid needs root");
            return;
        }
        let sleep = coreutil("sleep");
        let mut child = Command::new(&sleep)
            .arg("5")
            .uid(65534)
            .gid(65534)
            .spawn()
            .unwrap();
        let caller = Caller::unix(pid_of(&child), 65534, 65534);
        let attested = UnixAttestor::new()
            .hash_executables(1 << 30)
            .attest(&caller);
        child.kill().unwrap();
        child.wait().unwrap();
        let selectors = attested.unwrap();

        let mut expected: Selectors = [
            unix("uid:65534"),
            unix("gid:65534"),
            unix(format!("path:{}", sleep.display())),
            unix(format!("sha256:{}", sha256_of(&sleep))),
        ]
        .into_iter()
        .collect();
        if let Some(user) = NameDb::passwd().unwrap().name_of(65534) {
            expected.insert(unix(format!("user:{user}")));
        }
        if let Some(group) = NameDb::group().unwrap().name_of(65534) {
            expected.insert(unix(format!("group:{group}")));
        }
        // std drops supplementary groups when it sets the uid: none.
        assert_eq!(selectors, expected);
        let passwd = std::fs::read_to_string(super::super::users::PASSWD).unwrap_or_default();
        if passwd.lines().any(|l| l.starts_with("nobody:x:65534:")) {
            assert!(selectors.contains(&unix("user:nobody")));
        }
    }

    #[test]
    fn a_caller_in_another_mount_namespace_gets_no_path_but_its_hash() {
        let (_, uid, _) = me();
        let unshare = ["/usr/bin/unshare", "/bin/unshare"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists());
        let (0, Some(unshare)) = (uid, unshare) else {
            eprintln!("skipped: needs root and unshare(1)");
            return;
        };
        let sleep = coreutil("sleep");
        let mut child = Command::new(unshare)
            .arg("-m")
            .arg(&sleep)
            .arg("5")
            .spawn()
            .unwrap();
        let pid = pid_of(&child);
        // unshare runs first, then executes sleep in its new namespace.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .as_deref()
            != Some(&sleep)
        {
            assert!(Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        let caller = Caller::unix(pid, 0, 0);
        let attested = UnixAttestor::new()
            .hash_executables(1 << 30)
            .attest(&caller);
        child.kill().unwrap();
        child.wait().unwrap();
        let selectors = attested.unwrap();
        assert!(selectors.contains(&unix("uid:0")));
        assert!(
            !selectors.iter().any(|s| s.value().starts_with("path:")),
            "{selectors}"
        );
        assert!(selectors.contains(&unix(format!("sha256:{}", sha256_of(&sleep)))));
    }
}
