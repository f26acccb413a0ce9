//! Reading an entries file: the TOML tree (with byte spans) walked by hand, so every
//! refusal can name its rule and its line.

use std::collections::HashMap;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Entry, Registry, RegistryError};
use crate::agent::{Selector, Selectors};
use crate::{Authority, SpiffeId, TrustDomain};

/// The keys an entry may have.
const ENTRY_KEYS: &str = "spiffe_id, selectors, ttl, dns_names, hint";

/// Line numbers of byte offsets.
pub(super) struct Lines(Vec<usize>);

impl Lines {
    pub(super) fn new(text: &[u8]) -> Self {
        let starts = std::iter::once(0)
            .chain(
                text.iter()
                    .enumerate()
                    .filter(|&(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Self(starts)
    }

    /// The 1-based line holding byte `offset`.
    pub(super) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }

    fn of<T>(&self, spanned: &Spanned<T>) -> usize {
        self.line(spanned.span().start)
    }
}

pub(super) fn parse(text: &str, trust_domain: &TrustDomain) -> Result<Vec<Entry>, RegistryError> {
    if text.len() as u64 > Registry::MAX_FILE_BYTES {
        return Err(RegistryError::TooLarge {
            max: Registry::MAX_FILE_BYTES,
        });
    }
    let lines = Lines::new(text.as_bytes());
    let doc = DeTable::parse(text).map_err(|e| RegistryError::Toml {
        line: e.span().map(|span| lines.line(span.start)),
        message: e.message().to_owned(),
    })?;
    let doc = doc.get_ref();
    if let Some((key, _)) = doc.iter().find(|(key, _)| key.get_ref() != "entry") {
        return Err(RegistryError::UnknownKey {
            line: lines.of(key),
            key: key.get_ref().to_string(),
            allowed: "[[entry]] tables only",
        });
    }
    let Some(list) = doc.get("entry") else {
        return Ok(Vec::new());
    };
    let DeValue::Array(items) = list.get_ref() else {
        return Err(RegistryError::WrongType {
            line: lines.of(list),
            key: "entry",
            expected: "an array of tables ([[entry]])",
        });
    };
    if let Some(over) = items.get(Registry::MAX_ENTRIES) {
        return Err(RegistryError::TooManyEntries {
            line: lines.of(over),
            max: Registry::MAX_ENTRIES,
        });
    }
    let reader = Reader {
        lines: &lines,
        trust_domain,
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
    let mut seen: HashMap<(SpiffeId, Selectors), usize> = HashMap::with_capacity(items.len());
    for item in items {
        let entry = reader.entry(item)?;
        let key = (entry.spiffe_id.clone(), entry.selectors.clone());
        if let Some(&first_line) = seen.get(&key) {
            return Err(RegistryError::Duplicate {
                line: entry.line,
                first_line,
                id: entry.spiffe_id,
            });
        }
        seen.insert(key, entry.line);
        entries.push(entry);
    }
    Ok(entries)
}

struct Reader<'a> {
    lines: &'a Lines,
    trust_domain: &'a TrustDomain,
}

impl Reader<'_> {
    fn entry(&self, item: &Spanned<DeValue<'_>>) -> Result<Entry, RegistryError> {
        let line = self.lines.of(item);
        let DeValue::Table(table) = item.get_ref() else {
            return Err(RegistryError::WrongType {
                line,
                key: "entry",
                expected: "a table",
            });
        };
        // A misspelt key first: "no selectors" would be a poor answer to `selector = [...]`.
        if let Some((key, _)) = table.iter().find(|(key, _)| {
            !matches!(
                key.get_ref().as_ref(),
                "spiffe_id" | "selectors" | "ttl" | "dns_names" | "hint"
            )
        }) {
            return Err(RegistryError::UnknownKey {
                line: self.lines.of(key),
                key: key.get_ref().to_string(),
                allowed: ENTRY_KEYS,
            });
        }
        let spiffe_id = match table.get("spiffe_id") {
            Some(value) => self.spiffe_id(value)?,
            None => return Err(RegistryError::MissingSpiffeId { line }),
        };
        let selectors = match table.get("selectors") {
            Some(value) => self.selectors(value)?,
            None => return Err(RegistryError::NoSelectors { line }),
        };
        let ttl = table.get("ttl").map(|value| self.ttl(value)).transpose()?;
        let dns_names = match table.get("dns_names") {
            Some(value) => self.dns_names(value)?,
            None => Vec::new(),
        };
        let hint = table
            .get("hint")
            .map(|value| self.string(value, "hint", "a string").map(str::to_owned))
            .transpose()?;
        Ok(Entry {
            spiffe_id,
            selectors,
            ttl,
            dns_names,
            hint,
            line,
        })
    }

    fn string<'v>(
        &self,
        value: &'v Spanned<DeValue<'_>>,
        key: &'static str,
        expected: &'static str,
    ) -> Result<&'v str, RegistryError> {
        match value.get_ref() {
            DeValue::String(s) => Ok(s),
            _ => Err(RegistryError::WrongType {
                line: self.lines.of(value),
                key,
                expected,
            }),
        }
    }

    /// The elements of an array of strings, each with its line.
    fn strings<'v>(
        &self,
        value: &'v Spanned<DeValue<'_>>,
        key: &'static str,
    ) -> Result<Vec<(usize, &'v str)>, RegistryError> {
        let expected = "an array of strings";
        let DeValue::Array(items) = value.get_ref() else {
            return Err(RegistryError::WrongType {
                line: self.lines.of(value),
                key,
                expected,
            });
        };
        items
            .iter()
            .map(|item| Ok((self.lines.of(item), self.string(item, key, expected)?)))
            .collect()
    }

    fn spiffe_id(&self, value: &Spanned<DeValue<'_>>) -> Result<SpiffeId, RegistryError> {
        let line = self.lines.of(value);
        let text = self.string(value, "spiffe_id", "a string")?;
        let id = SpiffeId::new(text).map_err(|source| RegistryError::InvalidSpiffeId {
            line,
            id: text.to_owned(),
            source,
        })?;
        if !id.is_member_of(self.trust_domain) {
            return Err(RegistryError::ForeignTrustDomain {
                line,
                id,
                trust_domain: self.trust_domain.clone(),
            });
        }
        if id.is_trust_domain_id() {
            return Err(RegistryError::TrustDomainId { line, id });
        }
        Ok(id)
    }

    fn selectors(&self, value: &Spanned<DeValue<'_>>) -> Result<Selectors, RegistryError> {
        let items = self.strings(value, "selectors")?;
        if items.is_empty() {
            return Err(RegistryError::NoSelectors {
                line: self.lines.of(value),
            });
        }
        items
            .into_iter()
            .map(|(line, text)| selector(line, text))
            .collect()
    }

    fn ttl(&self, value: &Spanned<DeValue<'_>>) -> Result<Duration, RegistryError> {
        let line = self.lines.of(value);
        let text = self.string(value, "ttl", "a string such as \"1h\"")?;
        let ttl = crate::time::parse_duration(text)
            .map_err(|source| RegistryError::BadTtl { line, source })?;
        if ttl < Authority::MIN_SVID_TTL {
            return Err(RegistryError::TtlTooShort {
                line,
                ttl,
                min: Authority::MIN_SVID_TTL,
            });
        }
        Ok(ttl)
    }

    fn dns_names(&self, value: &Spanned<DeValue<'_>>) -> Result<Vec<String>, RegistryError> {
        self.strings(value, "dns_names")?
            .into_iter()
            .map(|(line, name)| {
                if name.contains('*') || !crate::ca::is_dns_name(name) {
                    return Err(RegistryError::BadDnsName {
                        line,
                        name: name.to_owned(),
                    });
                }
                Ok(name.to_owned())
            })
            .collect()
    }
}

/// Reads and checks one selector: `unix:KEY:VALUE`, with a value the unix attestor can
/// report for KEY.
pub(super) fn selector(line: usize, text: &str) -> Result<Selector, RegistryError> {
    let malformed = || RegistryError::MalformedSelector {
        line,
        selector: text.to_owned(),
    };
    let (kind, value) = text.split_once(':').ok_or_else(malformed)?;
    if kind.is_empty() {
        return Err(malformed());
    }
    if kind != "unix" {
        return Err(RegistryError::UnknownSelectorType {
            line,
            kind: kind.to_owned(),
        });
    }
    let (key, arg) = match value.split_once(':') {
        Some((key, arg)) => (key, Some(arg)),
        None => (value, None),
    };
    let check: fn(&str) -> Result<(), &'static str> = match key {
        "uid" | "gid" | "supplementary_gid" => id_number,
        "user" | "group" | "supplementary_group" => name,
        "path" => path,
        "sha256" => sha256,
        _ => {
            return Err(RegistryError::UnknownUnixKey {
                line,
                key: key.to_owned(),
            })
        }
    };
    let bad = |reason| RegistryError::BadSelectorValue {
        line,
        selector: text.to_owned(),
        reason,
    };
    let arg = arg.ok_or_else(|| bad("no value (unix selectors are unix:KEY:VALUE)"))?;
    check(arg).map_err(bad)?;
    Ok(Selector::new(kind, value))
}

fn id_number(arg: &str) -> Result<(), &'static str> {
    let canonical = arg.bytes().all(|b| b.is_ascii_digit())
        && (arg == "0" || !arg.starts_with('0'))
        && arg.parse::<u32>().is_ok();
    if canonical {
        Ok(())
    } else {
        Err("a uid or gid is a decimal number from 0 to 4294967295, without sign or leading zeros")
    }
}

fn name(arg: &str) -> Result<(), &'static str> {
    if arg.is_empty() || arg.chars().any(char::is_control) {
        Err("a user or group name is not empty and has no control characters")
    } else {
        Ok(())
    }
}

fn path(arg: &str) -> Result<(), &'static str> {
    let Some(rest) = arg.strip_prefix('/') else {
        return Err("the path must be absolute");
    };
    if arg.contains('\0')
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(
            "the path must be normal, as the kernel reports it: no `.`, `..` or empty components, no trailing /",
        );
    }
    Ok(())
}

fn sha256(arg: &str) -> Result<(), &'static str> {
    if arg.len() != 64 || !arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        Err("a sha256 is 64 hex digits")
    } else if arg.bytes().any(|b| b.is_ascii_uppercase()) {
        Err("a sha256 is written in lowercase hex, as sha256sum prints it (uppercase is refused, not converted)")
    } else {
        Ok(())
    }
}
