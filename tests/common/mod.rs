//! Shared by the integration tests: the SPIFFE ID case table.

#![allow(dead_code)]

use std::fmt;

/// One row of `tests/data/spiffeid-cases.tsv`.
pub struct Case {
    pub line: usize,
    pub input: Vec<u8>,
    pub expected_ok: bool,
    pub go_error: String,
    pub note: String,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = String::from_utf8_lossy(&self.input)
            .chars()
            .take(80)
            .collect();
        write!(f, "line {} {:?} ({})", self.line, shown, self.note)
    }
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Loads every case of the table (the data file travels with the repository).
pub fn load_cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/spiffeid-cases.tsv");
    let text = std::fs::read_to_string(path).expect("read the case table");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "line {}: {l:?}", i + 1);
            Case {
                line: i + 1,
                input: unhex(cols[0]),
                expected_ok: match cols[1] {
                    "ok" => true,
                    "err" => false,
                    other => panic!("line {}: expected {other:?}", i + 1),
                },
                go_error: cols[2].to_owned(),
                note: cols[3].to_owned(),
            }
        })
        .collect()
}
