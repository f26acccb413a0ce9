//! Workload attestation: from a caller's peer credentials to the [`Selectors`] that
//! describe it. [`Attestor`] is the one-method trait; [`UnixAttestor`] implements SPIRE's
//! `unix` selectors from `SO_PEERCRED` and `/proc`.
//!
//! Files: `unix.rs` is the attestor and its race check, `proc.rs` reads and parses
//! `/proc/PID/{stat,status}`, `users.rs` looks names up in `/etc/passwd` and `/etc/group`,
//! `exe.rs` hashes executables (with its cache).

mod exe;
mod proc;
mod unix;
mod users;

pub use unix::UnixAttestor;

use std::path::PathBuf;

use thiserror::Error;

use crate::agent::Selectors;
use crate::serve::Caller;

/// Works out who a caller is: peer credentials in, selectors out. The agent asks on every
/// call (and again before every push on a stream), so a caller that exited or changed is
/// not served as what it was.
///
/// Implement it for other platforms (container or Kubernetes attestors) and hand it to
/// the agent; the servers do not change.
pub trait Attestor: Send + Sync {
    /// The selectors describing `caller`, or why it cannot be attested (the call is then
    /// refused).
    fn attest(&self, caller: &Caller) -> Result<Selectors, AttestError>;
}

/// Why a caller could not be attested. Every variant is a refusal: the caller gets no
/// identity.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The connection carries no peer credentials (TCP).
    #[error("the caller has no Unix peer credentials (not a Unix socket connection)")]
    NoCredentials,
    /// The peer credentials name no process visible here: `SO_PEERCRED` gives PID 0 when
    /// the caller lives in a PID namespace this process cannot see into.
    #[error("peer PID {pid} names no process visible in this PID namespace")]
    PidNotVisible {
        /// The PID the kernel gave.
        pid: i32,
    },
    /// The start time of the caller's process could not be read when it connected (it had
    /// already exited, or `/proc` is not mounted), so a later PID reuse could not be told
    /// apart from the caller.
    #[error("process {pid}: its start time was not read when it connected (it had already exited, or there is no /proc)")]
    NoStartTime {
        /// The caller's PID.
        pid: i32,
    },
    /// The caller's process has exited (or is a zombie) since it connected.
    #[error("process {pid} has exited (or is a zombie) since it connected")]
    ProcessGone {
        /// The caller's PID.
        pid: i32,
    },
    /// The caller's PID now belongs to another process: its start time is not the one
    /// read when the caller connected.
    #[error(
        "process {pid} is not the one that connected: its start time differs (the PID was reused)"
    )]
    PidReused {
        /// The caller's PID.
        pid: i32,
    },
    /// The process's effective user ID is not the one the kernel recorded when it
    /// connected (it changed its credentials, e.g. by executing a set-user-ID program).
    #[error("process {pid}: effective uid is {now}, but it connected as uid {connected}")]
    UidChanged {
        /// The caller's PID.
        pid: i32,
        /// The uid from `SO_PEERCRED`.
        connected: u32,
        /// The effective uid in `/proc/PID/status` now.
        now: u32,
    },
    /// The process's effective group ID is not the one the kernel recorded when it
    /// connected.
    #[error("process {pid}: effective gid is {now}, but it connected as gid {connected}")]
    GidChanged {
        /// The caller's PID.
        pid: i32,
        /// The gid from `SO_PEERCRED`.
        connected: u32,
        /// The effective gid in `/proc/PID/status` now.
        now: u32,
    },
    /// Reading a file under `/proc` or `/etc` failed for another reason than the process
    /// being gone (permissions, I/O).
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file under `/proc` or `/etc` is larger than the attestor reads.
    #[error("{}: larger than the {limit} bytes the attestor reads", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A `/proc` file lacks a field or holds one that does not parse.
    #[error("{}: no valid `{field}` field", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The field (`Uid`, `Gid`, `Groups`, `state`, `starttime`).
        field: &'static str,
    },
    /// The executable's path (`/proc/PID/exe`) is not UTF-8, so no `path` selector can
    /// name it exactly.
    #[error("process {pid}: executable path {} is not UTF-8", path.display())]
    NonUtf8Path {
        /// The caller's PID.
        pid: i32,
        /// The path.
        path: PathBuf,
    },
    /// The executable is larger than the attestor hashes.
    #[error("process {pid}: executable is {size} bytes, more than the {limit} bytes the attestor hashes")]
    ExecutableTooLarge {
        /// The caller's PID.
        pid: i32,
        /// Its size in bytes (at least; it may have grown while being read).
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The executable changed (inode, size, or modification or change time) while it was
    /// being hashed.
    #[error("process {pid}: executable changed while it was being hashed")]
    ExecutableChanged {
        /// The caller's PID.
        pid: i32,
    },
}
