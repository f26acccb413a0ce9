//! Reading lines of untrusted input with bounded memory, and showing untrusted text.

use std::io::{self, BufRead};

/// How many bytes of one line are kept. Far above the 2048-byte SPIFFE ID limit, so the
/// library sees enough of an over-long line to refuse it for the right reason.
const KEEP: usize = 64 * 1024;

/// One line: the bytes kept and the line's real length (terminator excluded).
pub(crate) struct Line<'a> {
    pub(crate) kept: &'a [u8],
    pub(crate) len: usize,
}

impl Line<'_> {
    /// The real length, when part of the line was dropped.
    pub(crate) fn overflow_len(&self) -> Option<usize> {
        (self.len > self.kept.len()).then_some(self.len)
    }
}

/// Splits input on `\n` (dropping a `\r` before it), keeping at most [`KEEP`] bytes of each
/// line however long it is.
pub(crate) struct CappedLines<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: BufRead> CappedLines<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of the input. A last line without a terminator
    /// still counts; an empty input has no lines.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut len = 0usize;
        let mut saw_any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            saw_any = true;
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            let room = KEEP.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&part[..part.len().min(room)]);
            len += part.len();
            let used = done.unwrap_or(chunk.len());
            self.reader.consume(used);
            if done.is_some() {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        if len == self.buf.len() && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
            len -= 1;
        }
        Ok(Some(Line {
            kept: &self.buf,
            len,
        }))
    }
}

/// Untrusted text (from a certificate, a Workload API server, a log field) made safe to
/// print: control characters (ANSI escapes, newlines, NUL) and the invisible characters
/// that reorder or hide text (Unicode bidi controls such as U+202E, zero-width characters)
/// are shown as Rust escapes (`\u{1b}`, `\u{202e}`), so the text cannot drive the
/// terminal or read other than it is.
pub(crate) fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A line of JSON (or several, each ending in `\n`) made as safe to print as [`shown`]
/// makes text, and still JSON of the same value: the control and invisible characters
/// [`shown`] escapes, other than the newlines ending lines, become `\uXXXX` escapes.
/// serde_json escapes those below U+0020 itself, but not DEL, the C1 controls (U+009B
/// starts a terminal escape as ESC `[` does) or the bidi and zero-width characters. In
/// JSON such characters can only stand inside strings, where the escape means the same.
pub(crate) fn json_shown(json: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c != '\n' && (c.is_control() || hidden(c)) {
            // All of them are in the Basic Multilingual Plane: one escape each.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Bidi controls (Unicode TR9: embeddings, overrides, isolates, marks) and zero-width
/// characters: printed, they change how the text around them reads.
fn hidden(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_controls_and_bidi_overrides_only() {
        assert_eq!(
            shown("spiffe://example.org/web"),
            "spiffe://example.org/web"
        );
        assert_eq!(shown("é ü 日本"), "é ü 日本");
        assert_eq!(shown("\x1b[31mred\n"), "\\u{1b}[31mred\\n");
        assert_eq!(
            shown("a\u{202e}b\u{2066}c\u{200b}"),
            "a\\u{202e}b\\u{2066}c\\u{200b}"
        );
    }

    #[test]
    fn json_shown_escapes_inside_strings_and_keeps_the_value() {
        let value = serde_json::json!({"m": "a\u{7f}b\u{9b}31m\u{202e}c\u{feff}", "n": "\n\u{1b}"});
        let line = value.to_string() + "\n";
        let safe = json_shown(&line);
        assert!(safe.ends_with('\n'));
        assert!(
            !safe
                .trim_end_matches('\n')
                .chars()
                .any(|c| c.is_control() || hidden(c)),
            "{safe:?}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            value
        );
        assert_eq!(json_shown("{\"é\":\"日本\"}"), "{\"é\":\"日本\"}");
    }

    fn all(input: &[u8]) -> Vec<(Vec<u8>, usize)> {
        let mut r = CappedLines::new(io::BufReader::with_capacity(7, input));
        let mut v = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            v.push((l.kept.to_vec(), l.len));
        }
        v
    }

    #[test]
    fn splits_lines() {
        assert!(all(b"").is_empty());
        assert_eq!(all(b"a\n"), vec![(b"a".to_vec(), 1)]);
        assert_eq!(
            all(b"abc\r\n\nlast"),
            vec![(b"abc".to_vec(), 3), (vec![], 0), (b"last".to_vec(), 4)]
        );
    }

    #[test]
    fn long_lines_are_capped_but_measured() {
        let mut input = vec![b'x'; KEEP + 100];
        input.extend_from_slice(b"\nnext\n");
        let v = all(&input);
        assert_eq!(v[0].0.len(), KEEP);
        assert_eq!(v[0].1, KEEP + 100);
        assert_eq!(v[1], (b"next".to_vec(), 4));
    }
}
