//! [`Caller`]: who is on the other end of a call, as the kernel said when the connection
//! was accepted.

/// Who is calling a server: the Unix peer credentials (`SO_PEERCRED`) the kernel recorded
/// when the caller connected, and the start time of the process they name, read when the
/// connection was accepted. Over TCP every field is `None`.
///
/// Servers hand it to their [`Identities`](super::Identities), which decide what the caller
/// gets (an agent attests it: see [`agent`](crate::agent)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Caller {
    /// The process that connected (`SO_PEERCRED`).
    pub pid: Option<i32>,
    /// Its effective user ID when it connected.
    pub uid: Option<u32>,
    /// Its effective group ID when it connected.
    pub gid: Option<u32>,
    /// The start time of process `pid` (clock ticks since boot, field 22 of
    /// `/proc/PID/stat`), read when the connection was accepted: `None` if it could not
    /// be read (the process had already exited, or no `/proc`). An attestor compares it
    /// with the start time it reads later, so a PID reused by another process is not
    /// taken for the caller.
    pub start_time: Option<u64>,
}

impl Caller {
    /// A caller with these peer credentials; the start time of `pid` is read now.
    pub fn unix(pid: i32, uid: u32, gid: u32) -> Self {
        Self {
            pid: Some(pid),
            uid: Some(uid),
            gid: Some(gid),
            start_time: process_start_time(pid),
        }
    }

    /// A caller with no credentials (a TCP connection).
    pub fn unknown() -> Self {
        Self::default()
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` if the process is gone or `/proc` cannot be read.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. The second field (the command name, in
/// parentheses) may hold spaces and parentheses itself: the fields after it are counted
/// from its last `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; field 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_with_odd_command_names() {
        let line = "4242 (a) b (c) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(line), Some(987_654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
    }

    #[test]
    fn our_own_start_time_is_read_and_stable() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let first = process_start_time(pid);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(first.is_some());
        }
        assert_eq!(first, process_start_time(pid));
        assert_eq!(process_start_time(0), None);
        assert_eq!(process_start_time(-1), None);
    }
}
