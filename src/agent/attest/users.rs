//! User and group names from `/etc/passwd` and `/etc/group`, parsed here (no libc, so no
//! NSS: users known only to LDAP or sssd have no name, hence no `user` selector).

use std::io;
use std::path::{Path, PathBuf};

use super::proc::{parse_decimal, read_limited};
use super::AttestError;

/// The user database.
pub(super) const PASSWD: &str = "/etc/passwd";
/// The group database.
pub(super) const GROUP: &str = "/etc/group";
/// At most this much of either file is read; a larger one is refused.
pub(super) const NAME_DB_LIMIT: u64 = 16 * 1024 * 1024;

/// The contents of a name database (`/etc/passwd` or `/etc/group`), read once per
/// attestation.
#[derive(Debug, Default)]
pub(super) struct NameDb {
    text: Vec<u8>,
    /// Fields a line must have: 7 for `passwd`, 4 for `group`.
    fields: usize,
}

impl NameDb {
    /// `/etc/passwd`, or an empty database if there is none.
    pub fn passwd() -> Result<Self, AttestError> {
        Self::load(Path::new(PASSWD), 7)
    }

    /// `/etc/group`, or an empty database if there is none.
    pub fn group() -> Result<Self, AttestError> {
        Self::load(Path::new(GROUP), 4)
    }

    fn load(path: &Path, fields: usize) -> Result<Self, AttestError> {
        match read_limited(path, NAME_DB_LIMIT) {
            Ok(Some(text)) => Ok(Self { text, fields }),
            Ok(None) => Err(AttestError::FileTooLarge {
                path: path.to_owned(),
                limit: NAME_DB_LIMIT,
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Self {
                text: Vec::new(),
                fields,
            }),
            Err(source) => Err(AttestError::Read {
                path: PathBuf::from(path),
                source,
            }),
        }
    }

    /// A `passwd`-format database held in memory.
    #[cfg(test)]
    pub fn passwd_from(text: &str) -> Self {
        Self {
            text: text.as_bytes().to_vec(),
            fields: 7,
        }
    }

    /// A `group`-format database held in memory.
    #[cfg(test)]
    pub fn group_from(text: &str) -> Self {
        Self {
            text: text.as_bytes().to_vec(),
            fields: 4,
        }
    }

    /// The name of the first entry with ID `id` (field 3 of `name:password:id:...`).
    ///
    /// Skipped: blank lines, `#` comments, lines with too few fields, NIS compat lines
    /// (`+name`, `-name`, `+`), empty or non-UTF-8 names, and IDs that are not plain
    /// decimal numbers.
    pub fn name_of(&self, id: u32) -> Option<&str> {
        self.text
            .split(|&b| b == b'\n')
            .filter_map(|line| self.entry(line))
            .find(|&(_, entry_id)| entry_id == id)
            .map(|(name, _)| name)
    }

    /// `(name, id)` of one line, if it is a usable entry.
    fn entry<'a>(&self, line: &'a [u8]) -> Option<(&'a str, u32)> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_none_or(|&b| b == b'#') {
            return None;
        }
        let mut fields = line.split(|&b| b == b':');
        let name = std::str::from_utf8(fields.next()?).ok()?;
        let id = std::str::from_utf8(fields.nth(1)?).ok()?;
        // The name, the password and the ID are taken: the rest must be there too.
        if fields.count() + 3 < self.fields || name.is_empty() || name.starts_with(['+', '-']) {
            return None;
        }
        let id = u32::try_from(parse_decimal(id)?).ok()?;
        Some((name, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "\
# a comment: root:x:7:7:::
root:x:0:0:root:/root:/bin/bash

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
short:x:2:2
+nis:x:3:3:::
-excluded:x:4:4:::
+
:x:5:5:::
plus:x:+6:6:::
big:x:4294967296:0:::
windows:x:8:8:::/bin/sh\r
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
again:x:65534:65534:second:/:/bin/sh
";

    const GROUP_TEXT: &str = "\
root:x:0:
#wheel:x:10:
adm:x:4:syslog,me
short:x:5
+nisgroup:x:6:
  
sudo:x:27:me
nogroup:x:65534:
";

    #[test]
    fn passwd_names_by_uid() {
        let db = NameDb::passwd_from(PASSWD_TEXT);
        assert_eq!(db.name_of(0), Some("root"));
        assert_eq!(db.name_of(1), Some("daemon"));
        assert_eq!(db.name_of(8), Some("windows"));
        assert_eq!(db.name_of(65534), Some("nobody"), "the first entry wins");
        assert_eq!(db.name_of(7), None, "comments are not entries");
        assert_eq!(db.name_of(2), None, "short lines are skipped");
        assert_eq!(db.name_of(3), None, "+ entries are skipped");
        assert_eq!(db.name_of(4), None, "- entries are skipped");
        assert_eq!(db.name_of(5), None, "empty names are skipped");
        assert_eq!(db.name_of(6), None, "IDs must be plain numbers");
        assert_eq!(db.name_of(1000), None);
        assert_eq!(NameDb::default().name_of(0), None);
    }

    #[test]
    fn group_names_by_gid() {
        let db = NameDb::group_from(GROUP_TEXT);
        assert_eq!(db.name_of(0), Some("root"));
        assert_eq!(db.name_of(4), Some("adm"));
        assert_eq!(db.name_of(27), Some("sudo"));
        assert_eq!(db.name_of(65534), Some("nogroup"));
        assert_eq!(db.name_of(10), None);
        assert_eq!(db.name_of(5), None);
        assert_eq!(db.name_of(6), None);
    }

    #[test]
    fn non_utf8_lines_are_skipped_not_fatal() {
        let db = NameDb {
            text: b"bad\xff:x:1:\ngood:x:2:\n".to_vec(),
            fields: 4,
        };
        assert_eq!(db.name_of(1), None);
        assert_eq!(db.name_of(2), Some("good"));
    }

    #[test]
    fn the_system_databases_load() {
        let passwd = NameDb::passwd().unwrap();
        if Path::new(PASSWD).exists() {
            assert_eq!(passwd.name_of(0), Some("root"));
        }
        NameDb::group().unwrap();
    }
}
