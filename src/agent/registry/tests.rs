use std::time::Duration;

use proptest::prelude::*;

use super::parse::Lines;
use super::*;
use crate::agent::Selector;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn parse(text: &str) -> Result<Registry, RegistryError> {
    Registry::parse(text, &td())
}

/// The refusal of `text`, which must be refused.
fn refusal(text: &str) -> RegistryError {
    match parse(text) {
        Ok(r) => panic!("accepted: {r:?}\n{text}"),
        Err(e) => {
            // Every message starts with the line when there is one.
            if let Some(line) = e.line() {
                assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
            }
            e
        }
    }
}

/// A one-entry file (the entry on line 1) with `selectors` and more lines after them.
fn one(selectors: &str, more: &str) -> String {
    format!("[[entry]]\nspiffe_id = \"spiffe://example.org/web\"\nselectors = {selectors}\n{more}")
}

fn caller(selectors: &[&str]) -> Selectors {
    selectors
        .iter()
        .map(|s| {
            let (kind, value) = s.split_once(':').unwrap();
            Selector::new(kind, value)
        })
        .collect()
}

fn ids<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<&'a str> {
    entries.map(|e| e.spiffe_id().as_str()).collect()
}

#[test]
fn lines_of_offsets() {
    let lines = Lines::new(b"ab\ncd\n\nx");
    assert_eq!(
        [0, 2, 3, 5, 6, 7, 8, 100].map(|o| lines.line(o)),
        [1, 1, 2, 2, 3, 4, 4, 4]
    );
}

#[test]
fn reads_every_field() {
    let text = r#"
# a comment
[[entry]]
spiffe_id = "spiffe://example.org/ns/prod/web"
selectors = ["unix:uid:1000", "unix:path:/usr/bin/web", "unix:uid:1000"]
ttl = "10m"
dns_names = ["web.example.org", "web"]
hint = "external"

[[entry]]
selectors = [
  "unix:gid:0",
]
spiffe_id = "spiffe://example.org/root"
"#;
    let registry = parse(text).unwrap();
    assert_eq!(registry.len(), 2);
    assert!(!registry.is_empty());
    let [web, root] = registry.entries() else {
        panic!()
    };
    assert_eq!(web.spiffe_id(), "spiffe://example.org/ns/prod/web");
    assert_eq!(
        web.selectors(),
        &caller(&["unix:uid:1000", "unix:path:/usr/bin/web"])
    );
    assert_eq!(web.ttl(), Some(Duration::from_secs(600)));
    assert_eq!(web.dns_names(), ["web.example.org", "web"]);
    assert_eq!(web.hint(), Some("external"));
    assert_eq!(web.line(), 3);
    assert_eq!(root.spiffe_id(), "spiffe://example.org/root");
    assert_eq!(root.ttl(), None);
    assert!(root.dns_names().is_empty());
    assert_eq!(root.hint(), None);
    assert_eq!(root.line(), 10);

    // Inline tables are entries too.
    let inline = parse(
        "entry = [\n  { spiffe_id = \"spiffe://example.org/a\", selectors = [\"unix:uid:1\"] },\n]",
    )
    .unwrap();
    assert_eq!(inline.entries()[0].line(), 2);
}

#[test]
fn an_empty_file_has_no_entries() {
    for text in ["", "\n# nothing yet\n", "entry = []"] {
        let registry = parse(text).unwrap();
        assert!(registry.is_empty());
        assert_eq!(registry.matching(&caller(&["unix:uid:0"])).count(), 0);
    }
}

#[test]
fn every_unix_selector_is_known() {
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for selector in [
        "unix:uid:0".to_owned(),
        "unix:uid:4294967295".to_owned(),
        "unix:user:www-data".to_owned(),
        "unix:gid:33".to_owned(),
        "unix:group:www-data".to_owned(),
        "unix:supplementary_gid:27".to_owned(),
        "unix:supplementary_group:docker".to_owned(),
        "unix:path:/usr/local/bin/envoy".to_owned(),
        "unix:path:/opt/a:b/run".to_owned(),
        format!("unix:sha256:{hash}"),
    ] {
        let registry = parse(&one(&format!("[{selector:?}]"), "")).unwrap();
        let got = registry.entries()[0].selectors().iter().next().unwrap();
        assert_eq!(got.to_string(), selector);
        assert_eq!(got.kind(), "unix");
    }
}

#[test]
fn refuses_bad_toml() {
    // An unclosed array is reported where it opens.
    let e = refusal("[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = [\n\n");
    assert!(
        matches!(e, RegistryError::Toml { line: Some(3), .. }),
        "{e:?}"
    );
    let e = refusal("[[entry]]\n\nspiffe_id = = 1\n");
    assert!(
        matches!(e, RegistryError::Toml { line: Some(3), .. }),
        "{e:?}"
    );
    let e = refusal("[[entry]]\nspiffe_id = 'x'\nspiffe_id = 'y'\n");
    assert!(
        matches!(e, RegistryError::Toml { line: Some(3), .. }),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("line 3: invalid TOML: "), "{e}");
}

#[test]
fn refuses_unknown_keys() {
    let e = refusal("title = \"x\"\n[[entry]]\n");
    assert!(
        matches!(&e, RegistryError::UnknownKey { line: 1, key, .. } if key == "title"),
        "{e:?}"
    );
    let e = refusal("[[entry]]\n\n[[entries]]\n");
    assert!(
        matches!(&e, RegistryError::UnknownKey { line: 3, key, .. } if key == "entries"),
        "{e:?}"
    );
    // A misspelt key is named even though a required one is then missing.
    let e =
        refusal("[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselector = [\"unix:uid:1\"]\n");
    assert!(
        matches!(&e, RegistryError::UnknownKey { line: 3, key, .. } if key == "selector"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "line 3: unknown key \"selector\" (allowed: spiffe_id, selectors, ttl, dns_names, hint)"
    );
}

#[test]
fn refuses_wrong_types() {
    for (text, line, key) in [
        ("[entry]\nspiffe_id = 'x'\n".to_owned(), 1, "entry"),
        ("entry = [1]\n".to_owned(), 1, "entry"),
        ("[[entry]]\nspiffe_id = 7\n".to_owned(), 2, "spiffe_id"),
        (one("\"unix:uid:1\"", ""), 3, "selectors"),
        (one("[\n  \"unix:uid:1\",\n  2,\n]", ""), 5, "selectors"),
        (one("['unix:uid:1']", "ttl = 3600"), 4, "ttl"),
        (
            one("['unix:uid:1']", "dns_names = 'a.example'"),
            4,
            "dns_names",
        ),
        (one("['unix:uid:1']", "dns_names = [['a']]"), 4, "dns_names"),
        (one("['unix:uid:1']", "hint = true"), 4, "hint"),
    ] {
        let e = refusal(&text);
        assert!(
            matches!(&e, RegistryError::WrongType { line: l, key: k, .. } if *l == line && *k == key),
            "{text}: {e:?}"
        );
    }
}

#[test]
fn refuses_missing_or_bad_ids() {
    let e =
        refusal("[[entry]]\nselectors = ['unix:uid:1']\n\n[[entry]]\nselectors = ['unix:uid:2']\n");
    assert!(
        matches!(e, RegistryError::MissingSpiffeId { line: 1 }),
        "{e:?}"
    );

    let e = refusal(
        "\n[[entry]]\nspiffe_id = \"spiffe://example.org/a//b\"\nselectors = ['unix:uid:1']\n",
    );
    let RegistryError::InvalidSpiffeId {
        line: 3,
        id,
        source,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(id, "spiffe://example.org/a//b");
    assert_eq!(source, &crate::IdError::EmptySegment { offset: 23 });
    assert!(std::error::Error::source(&e).is_some());

    let e =
        refusal("[[entry]]\nspiffe_id = \"spiffe://other.org/a\"\nselectors = ['unix:uid:1']\n");
    assert!(
        matches!(e, RegistryError::ForeignTrustDomain { line: 2, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "line 2: spiffe://other.org/a is outside the trust domain example.org"
    );

    let e =
        refusal("[[entry]]\nspiffe_id = \"spiffe://example.org\"\nselectors = ['unix:uid:1']\n");
    assert!(
        matches!(e, RegistryError::TrustDomainId { line: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn refuses_entries_without_selectors() {
    let e = refusal("[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\n");
    assert!(matches!(e, RegistryError::NoSelectors { line: 1 }), "{e:?}");
    let e = refusal(&one("[]", ""));
    assert!(matches!(e, RegistryError::NoSelectors { line: 3 }), "{e:?}");
}

#[test]
fn refuses_bad_selectors() {
    for (selector, expect) in [
        ("uid1000", "malformed"),
        (":uid:1000", "malformed"),
        ("", "malformed"),
        ("k8s:ns:prod", "type"),
        ("Unix:uid:1", "type"),
        ("unix:pid:1", "key"),
        ("unix:", "key"),
        ("unix:uid", "value"),
        ("unix:uid:", "value"),
        ("unix:uid:abc", "value"),
        ("unix:uid:-1", "value"),
        ("unix:uid:+1", "value"),
        ("unix:uid:01", "value"),
        ("unix:gid:4294967296", "value"),
        ("unix:supplementary_gid:1.5", "value"),
        ("unix:user:", "value"),
        ("unix:group:a\tb", "value"),
        ("unix:path:usr/bin/web", "value"),
        ("unix:path:/usr/bin/../bin/web", "value"),
        ("unix:path:/usr//bin", "value"),
        ("unix:path:/usr/bin/", "value"),
        ("unix:path:/", "value"),
        ("unix:sha256:abc", "value"),
        (
            "unix:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0g",
            "value",
        ),
        (
            "unix:sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
            "uppercase",
        ),
    ] {
        let text = one(&format!("[\n  'unix:uid:1',\n  {selector:?},\n]"), "");
        let e = refusal(&text);
        let ok = match expect {
            "malformed" => {
                matches!(&e, RegistryError::MalformedSelector { line: 5, selector: s } if s == selector)
            }
            "type" => matches!(&e, RegistryError::UnknownSelectorType { line: 5, .. }),
            "key" => matches!(&e, RegistryError::UnknownUnixKey { line: 5, .. }),
            "value" => {
                matches!(&e, RegistryError::BadSelectorValue { line: 5, selector: s, .. } if s == selector)
            }
            "uppercase" => {
                matches!(&e, RegistryError::BadSelectorValue { line: 5, reason, .. } if reason.contains("lowercase"))
            }
            _ => unreachable!(),
        };
        assert!(ok, "{selector:?}: {e:?}");
    }
    let e = refusal(&one("['k8s:ns:prod']", ""));
    assert_eq!(
        e.to_string(),
        "line 3: unknown selector type \"k8s\" (known: unix)"
    );
    let e = refusal(&one("['unix:pid:1']", ""));
    assert_eq!(
        e.to_string(),
        "line 3: unknown unix selector \"pid\" (known: uid, user, gid, group, supplementary_gid, supplementary_group, path, sha256)"
    );
}

#[test]
fn refuses_bad_ttls() {
    for ttl in [
        "1h30m",
        "",
        "1.5h",
        "-1h",
        "1H",
        "0s",
        "99999999999999999999d",
    ] {
        let e = refusal(&one("['unix:uid:1']", &format!("ttl = {ttl:?}")));
        assert!(
            matches!(e, RegistryError::BadTtl { line: 4, .. }),
            "{ttl}: {e:?}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
    let e = refusal(&one("['unix:uid:1']", "ttl = \"4s\""));
    assert!(
        matches!(e, RegistryError::TtlTooShort { line: 4, ttl, min } if ttl == Duration::from_secs(4) && min == crate::Authority::MIN_SVID_TTL),
        "{e:?}"
    );
    let five = parse(&one("['unix:uid:1']", "ttl = \"5s\"")).unwrap();
    assert_eq!(five.entries()[0].ttl(), Some(Duration::from_secs(5)));
}

#[test]
fn refuses_bad_dns_names() {
    for name in [
        "*.example.org",
        "*",
        "a.*.b",
        "",
        "a b",
        "-a.org",
        "a..b",
        "x_y.org",
        "é.org",
    ] {
        let text = one(
            "['unix:uid:1']",
            &format!("dns_names = [\n  'ok.example.org',\n  {name:?},\n]"),
        );
        let e = refusal(&text);
        assert!(
            matches!(&e, RegistryError::BadDnsName { line: 6, name: n } if n == name),
            "{name:?}: {e:?}"
        );
    }
}

#[test]
fn refuses_duplicates() {
    let text = r#"[[entry]]
spiffe_id = "spiffe://example.org/web"
selectors = ["unix:uid:1000", "unix:gid:1000"]

[[entry]]
spiffe_id = "spiffe://example.org/web"
selectors = ["unix:uid:1000"]

[[entry]]
spiffe_id = "spiffe://example.org/other"
selectors = ["unix:gid:1000", "unix:uid:1000"]

[[entry]]
spiffe_id = "spiffe://example.org/web"
selectors = ["unix:gid:1000", "unix:uid:1000"]
ttl = "1h"
"#;
    let e = refusal(text);
    assert!(
        matches!(&e, RegistryError::Duplicate { line: 13, first_line: 1, id } if id == "spiffe://example.org/web"),
        "{e:?}"
    );
    assert!(e.to_string().contains("on line 1"), "{e}");
    // The same ID for other selectors, or other IDs for the same selectors, are not.
    let (head, _) = text.split_at(
        text.find("\n[[entry]]\nspiffe_id = \"spiffe://example.org/web\"\nselectors = [\"unix:gid")
            .unwrap(),
    );
    assert_eq!(parse(head).unwrap().len(), 3);
}

#[test]
fn refuses_too_many_entries() {
    let entry = "[[entry]]\n";
    let text = entry.repeat(Registry::MAX_ENTRIES + 1);
    let e = refusal(&text);
    assert!(
        matches!(e, RegistryError::TooManyEntries { line, max: Registry::MAX_ENTRIES } if line == Registry::MAX_ENTRIES + 1),
        "{e:?}"
    );
}

#[test]
fn refuses_too_large_text() {
    let text = "#".repeat(usize::try_from(Registry::MAX_FILE_BYTES).unwrap() + 1);
    assert!(matches!(refusal(&text), RegistryError::TooLarge { .. }));
}

#[test]
fn loads_files() {
    let dir = std::env::temp_dir().join(format!("meshid-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("entries.toml");
    std::fs::write(&good, one("['unix:uid:1']", "")).unwrap();
    assert_eq!(Registry::load(&good, &td()).unwrap().len(), 1);

    let missing = dir.join("missing.toml");
    let e = Registry::load(&missing, &td()).unwrap_err();
    assert!(
        matches!(&e, RegistryError::Io { path, source } if path == &missing && source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert_eq!(e.line(), None);

    let large = dir.join("large.toml");
    let file = std::fs::File::create(&large).unwrap();
    file.set_len(Registry::MAX_FILE_BYTES + 1).unwrap();
    assert!(matches!(
        Registry::load(&large, &td()),
        Err(RegistryError::TooLarge { .. })
    ));

    let binary = dir.join("binary.toml");
    std::fs::write(&binary, b"[[entry]]\n# \xff\n").unwrap();
    assert!(matches!(
        Registry::load(&binary, &td()),
        Err(RegistryError::NotUtf8 { line: 2 })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn matching_is_spires() {
    let text = r#"
[[entry]]
spiffe_id = "spiffe://example.org/web"
selectors = ["unix:uid:1000"]

[[entry]]
spiffe_id = "spiffe://example.org/envoy"
selectors = ["unix:uid:1000", "unix:path:/usr/bin/envoy"]

[[entry]]
spiffe_id = "spiffe://example.org/ops"
selectors = ["unix:gid:50"]

[[entry]]
spiffe_id = "spiffe://example.org/web-admin"
selectors = ["unix:uid:1000"]
"#;
    let registry = parse(text).unwrap();
    let web = caller(&["unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/web"]);
    // A caller matching two entries (here three) gets them all, in file order: the first
    // is its default.
    assert_eq!(
        ids(registry.matching(&web)),
        ["spiffe://example.org/web", "spiffe://example.org/web-admin"]
    );
    // An entry with two selectors needs both.
    let envoy = caller(&["unix:uid:1000", "unix:path:/usr/bin/envoy"]);
    assert_eq!(
        ids(registry.matching(&envoy)),
        [
            "spiffe://example.org/web",
            "spiffe://example.org/envoy",
            "spiffe://example.org/web-admin"
        ]
    );
    let path_only = caller(&["unix:path:/usr/bin/envoy", "unix:uid:1001"]);
    assert!(ids(registry.matching(&path_only)).is_empty());
    // Selectors are compared whole: no prefix or case games.
    let near = caller(&["unix:uid:10000", "unix:gid:5", "unix:Gid:50"]);
    assert!(ids(registry.matching(&near)).is_empty());
    assert!(registry.matching(&Selectors::new()).next().is_none());
    let ops = caller(&["unix:uid:0", "unix:gid:50"]);
    assert_eq!(ids(registry.matching(&ops)), ["spiffe://example.org/ops"]);
}

#[test]
fn the_example_file_parses() {
    let text = include_str!("../../../examples/agent/entries.toml");
    let registry = parse(text).unwrap();
    assert!(registry.len() >= 5, "{}", registry.len());
    // The process with two entries gets both, the first as its default.
    let job = registry
        .entries()
        .iter()
        .find(|e| {
            e.selectors()
                .iter()
                .any(|s| s.value().starts_with("sha256:"))
        })
        .expect("an entry by sha256");
    assert!(registry.matching(job.selectors()).count() >= 1);
    let two = registry
        .entries()
        .iter()
        .map(|e| registry.matching(e.selectors()).count())
        .max();
    assert!(two >= Some(2));
}

/// Fragments from which to build nearly valid files, so random input gets past the TOML
/// parser into the checks.
const FRAGMENTS: &[&str] = &[
    "[[entry]]\n",
    "[entry]\n",
    "spiffe_id = ",
    "selectors = ",
    "ttl = ",
    "dns_names = ",
    "hint = ",
    "\"spiffe://example.org/web\"",
    "\"spiffe://example.org\"",
    "\"spiffe://other.org/x\"",
    "[\"unix:uid:1000\"]",
    "[\"unix:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"]",
    "[\"unix:path:/a\", \"k8s:x\", \"unix:uid\"]",
    "[]",
    "\"1h\"",
    "\"4s\"",
    "[\"a.example\", \"*\"]",
    "\n",
    "=",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "1",
    "#",
    "é",
    "\u{0}",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_any_text(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn never_panics_on_near_misses(parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40)) {
        let text = parts.concat();
        match parse(&text) {
            Ok(registry) => {
                for entry in registry.entries() {
                    prop_assert!(entry.spiffe_id().is_member_of(&td()));
                    prop_assert!(!entry.selectors().is_empty());
                    prop_assert!(registry.matching(entry.selectors()).any(|e| e == entry));
                }
            }
            Err(e) => {
                let lines = text.split('\n').count();
                prop_assert!(e.line().is_none_or(|l| (1..=lines).contains(&l)), "{e:?}");
            }
        }
    }
}
