//! Reading `/proc/PID/stat` and `/proc/PID/status`: bounded reads, the few fields the
//! attestor needs, and "the process is gone" told apart from other failures.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::AttestError;

/// At most this much of `/proc/PID/stat` or `/proc/PID/status` is read. `stat` is well
/// under 1 KiB; `status` is about 1.5 KiB plus 6 or so bytes per supplementary group, so
/// this allows some 9000 groups. A larger file is refused, not cut short.
pub(super) const PROC_FILE_LIMIT: u64 = 64 * 1024;

/// `ESRCH`: reading a `/proc/PID` file of a process that exited after it was opened.
const ESRCH: i32 = 3;

/// The whole of `path` if it holds at most `limit` bytes, `None` if it holds more.
pub(super) fn read_limited(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)?;
    let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
    Ok((len <= limit).then_some(buf))
}

/// What a failure to read `path` (a file of process `pid`) means: the process is gone if
/// the file is (`ENOENT`, `ESRCH`), anything else is a read error.
pub(super) fn proc_error(pid: i32, path: PathBuf, err: io::Error) -> AttestError {
    if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(ESRCH) {
        AttestError::ProcessGone { pid }
    } else {
        AttestError::Read { path, source: err }
    }
}

/// The text of `/proc/PID/<name>`, bounded by [`PROC_FILE_LIMIT`]. Not UTF-8 is taken
/// lossily: the fields read from it are numbers and a state letter, and a replaced
/// character can only make them fail to parse.
fn read_proc_file(pid: i32, name: &str) -> Result<(PathBuf, String), AttestError> {
    let path = PathBuf::from(format!("/proc/{pid}/{name}"));
    match read_limited(&path, PROC_FILE_LIMIT) {
        Ok(Some(bytes)) => Ok((path, String::from_utf8_lossy(&bytes).into_owned())),
        Ok(None) => Err(AttestError::FileTooLarge {
            path,
            limit: PROC_FILE_LIMIT,
        }),
        Err(err) => Err(proc_error(pid, path, err)),
    }
}

/// The fields of `/proc/PID/stat` the race check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// Field 3, the state letter (`R`, `S`, `Z`...).
    pub state: char,
    /// Field 22, the start time in clock ticks since boot.
    pub start_time: u64,
}

impl Stat {
    /// Whether the process has exited: a zombie (`Z`) or dead (`X`, or `x` on older
    /// kernels). Its PID is not reused until it is reaped, but it is not the caller any
    /// more and its credentials no longer mean anything. (A process whose main thread
    /// alone has exited shows `Z` too; it is refused as well, failing closed.)
    pub fn is_gone(self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses a `/proc/PID/stat` line. The second field (the command name, in parentheses)
/// may hold spaces and parentheses itself: the fields after it are counted from its last
/// `)`.
pub(super) fn parse_stat(stat: &str) -> Result<Stat, &'static str> {
    let rest = stat.rfind(')').map(|end| &stat[end + 1..]).ok_or("comm")?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 (state) is the first after the name; field 22 (starttime) the 20th.
    let mut state = fields.next().ok_or("state")?.chars();
    let (Some(state), None) = (state.next(), state.next()) else {
        return Err("state");
    };
    let start_time = fields.nth(18).and_then(parse_decimal).ok_or("starttime")?;
    Ok(Stat { state, start_time })
}

/// `/proc/PID/stat` of `pid`, parsed.
pub(super) fn read_stat(pid: i32) -> Result<Stat, AttestError> {
    let (path, text) = read_proc_file(pid, "stat")?;
    parse_stat(&text).map_err(|field| AttestError::Malformed { path, field })
}

/// The credentials in `/proc/PID/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Status {
    /// The effective user ID (the second of the `Uid:` line).
    pub uid: u32,
    /// The effective group ID (the second of the `Gid:` line).
    pub gid: u32,
    /// The supplementary group IDs (the `Groups:` line), in the kernel's order.
    pub groups: Vec<u32>,
}

/// Parses `/proc/PID/status`: the `Uid:`, `Gid:` and `Groups:` lines (the first of each;
/// the kernel escapes newlines in the one line a process controls, `Name:`, so no line
/// is forged).
///
/// `Uid:` and `Gid:` list the real, effective, saved and filesystem IDs; the effective
/// one is taken, as SPIRE does (the second value, or the only one if there is one).
pub(super) fn parse_status(status: &str) -> Result<Status, &'static str> {
    let (mut uid, mut gid, mut groups) = (None, None, None);
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Uid" if uid.is_none() => uid = Some(effective_id(value).ok_or("Uid")?),
            "Gid" if gid.is_none() => gid = Some(effective_id(value).ok_or("Gid")?),
            "Groups" if groups.is_none() => groups = Some(id_list(value).ok_or("Groups")?),
            _ => {}
        }
    }
    Ok(Status {
        uid: uid.ok_or("Uid")?,
        gid: gid.ok_or("Gid")?,
        groups: groups.ok_or("Groups")?,
    })
}

/// `/proc/PID/status` of `pid`, parsed.
pub(super) fn read_status(pid: i32) -> Result<Status, AttestError> {
    let (path, text) = read_proc_file(pid, "status")?;
    parse_status(&text).map_err(|field| AttestError::Malformed { path, field })
}

/// The effective ID of a `Uid:`/`Gid:` value: the second of the list, or the only one.
fn effective_id(value: &str) -> Option<u32> {
    let ids = id_list(value)?;
    match ids.as_slice() {
        [] => None,
        [only] => Some(*only),
        [_, effective, ..] => Some(*effective),
    }
}

/// Whitespace-separated decimal IDs; `None` if any does not parse.
fn id_list(value: &str) -> Option<Vec<u32>> {
    value
        .split_ascii_whitespace()
        .map(|id| parse_decimal(id).and_then(|id| u32::try_from(id).ok()))
        .collect()
}

/// ASCII digits only (`str::parse` would take a leading `+`).
pub(super) fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
        Pid:\t4242\nPPid:\t1\nUid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\n\
        FDSize:\t64\nGroups:\t4 24 27 1000 \nNStgid:\t4242\n";

    #[test]
    fn status_gives_the_effective_ids_and_the_groups() {
        let status = parse_status(STATUS).unwrap();
        assert_eq!(status.uid, 1001);
        assert_eq!(status.gid, 2001);
        assert_eq!(status.groups, [4, 24, 27, 1000]);
    }

    #[test]
    fn status_with_no_groups_or_a_single_id() {
        let status = parse_status("Uid:\t7\nGid:\t8\t9\t9\t9\nGroups:\t\n").unwrap();
        assert_eq!((status.uid, status.gid), (7, 9));
        assert!(status.groups.is_empty());
        let status = parse_status("Uid:\t7\nGid:\t8\nGroups:").unwrap();
        assert!(status.groups.is_empty());
    }

    #[test]
    fn status_lines_that_do_not_parse_are_refused() {
        let ok = "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\t1\n";
        assert!(parse_status(ok).is_ok());
        assert_eq!(parse_status("Gid:\t1\nGroups:\t\n"), Err("Uid"));
        assert_eq!(parse_status("Uid:\t1\nGroups:\t\n"), Err("Gid"));
        assert_eq!(parse_status("Uid:\t1\nGid:\t1\n"), Err("Groups"));
        assert_eq!(parse_status("Uid:\t\nGid:\t1\nGroups:\n"), Err("Uid"));
        assert_eq!(parse_status("Uid:\t+1\nGid:\t1\nGroups:\n"), Err("Uid"));
        assert_eq!(parse_status("Uid:\t1\nGid:\t-1\nGroups:\n"), Err("Gid"));
        assert_eq!(
            parse_status("Uid:\t1\nGid:\t1\nGroups:\t4 x\n"),
            Err("Groups")
        );
        assert_eq!(
            parse_status("Uid:\t1\t4294967296\nGid:\t1\nGroups:\n"),
            Err("Uid")
        );
        // Only exact keys count, and the first of each.
        let status = parse_status(
            "Name:\tUid:\t0\nUid:\t5\t6\nGid:\t1\nGroups:\t\nUid:\t0\t0\nGroups:\t0\n",
        )
        .unwrap();
        assert_eq!(status.uid, 6);
        assert!(status.groups.is_empty());
    }

    #[test]
    fn stat_gives_the_state_and_start_time_even_with_odd_command_names() {
        let line = "4242 (a) b (c) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(
            parse_stat(line),
            Ok(Stat {
                state: 'S',
                start_time: 987_654
            })
        );
        let zombie = "7 (z) Z 1 7 7 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55 0 0";
        assert!(parse_stat(zombie).unwrap().is_gone());
        assert!(!parse_stat(line).unwrap().is_gone());
        assert_eq!(parse_stat("4242 (x) S 1"), Err("starttime"));
        assert_eq!(parse_stat("4242 (x) SS 1"), Err("state"));
        assert_eq!(parse_stat("4242 (x)"), Err("state"));
        assert_eq!(parse_stat("no parenthesis"), Err("comm"));
    }

    #[test]
    fn our_own_files_parse() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let stat = read_stat(pid).unwrap();
        // The main thread's state: it may be running or waiting for the test threads.
        assert!(!stat.is_gone());
        assert_eq!(
            Some(stat.start_time),
            crate::serve::Caller::unix(pid, 0, 0).start_time
        );
        let status = read_status(pid).unwrap();
        let me = std::fs::metadata("/proc/self").unwrap();
        assert_eq!(
            (status.uid, status.gid),
            (
                std::os::unix::fs::MetadataExt::uid(&me),
                std::os::unix::fs::MetadataExt::gid(&me)
            )
        );
    }

    #[test]
    fn reads_are_bounded() {
        let dir = std::env::temp_dir().join(format!("meshid-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_limited(&file, 5).unwrap().unwrap(), b"12345");
        assert_eq!(read_limited(&file, 4).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            read_stat(i32::MAX),
            Err(AttestError::ProcessGone { pid: i32::MAX })
        ));
    }
}
