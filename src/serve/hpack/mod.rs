//! HPACK (RFC 7541), as much of it as the serving layer's `:authority` rewrite needs: a
//! full decoder (static and dynamic tables, Huffman, size updates) that mirrors the
//! client's encoder, and an encoder that never indexes, so the server's decoder state can
//! never diverge from what the client meant.
//!
//! Every bound is explicit: integers, string lengths, the decoded header list, the dynamic
//! table. Errors are typed and never panic.

// Integer encoding: narrowing casts take the low bits on purpose.
#![allow(clippy::cast_possible_truncation)]

use std::collections::VecDeque;

use thiserror::Error;

mod huffman;
pub(crate) use huffman::encode as huffman_encode;

/// Why a header block could not be decoded (each is a COMPRESSION_ERROR in RFC 7540 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HpackError {
    /// The block ends inside a representation.
    #[error("HPACK: the header block ends inside a field representation (RFC 7541 §6)")]
    Truncated,
    /// An integer longer than the decoder accepts.
    #[error("HPACK: an integer overflows its bound (RFC 7541 §5.1)")]
    IntegerOverflow,
    /// An index of 0, or past the end of the static and dynamic tables.
    #[error("HPACK: index {0} is not in the static or dynamic table (RFC 7541 §2.3.3)")]
    BadIndex(usize),
    /// A dynamic table size update larger than the limit the server announced.
    #[error("HPACK: dynamic table size update to {0} exceeds the 4096 announced (RFC 7541 §4.2)")]
    TableSizeTooLarge(usize),
    /// A dynamic table size update after the first field of a block.
    #[error("HPACK: dynamic table size update after a header field (RFC 7541 §4.2)")]
    LateTableSizeUpdate,
    /// A block holding dynamic table size updates and no field: no request or response
    /// is without fields, so it is refused (as the reference decoder the rewriter is
    /// checked against refuses it; RFC 7541 §4.2 itself allows it).
    #[error("HPACK: a header block with a dynamic table size update and no field")]
    SizeUpdateAtEnd,
    /// The decoded header list is larger than the serving layer accepts.
    #[error("HPACK: the decoded header list exceeds {0} bytes")]
    ListTooLarge(usize),
    /// A Huffman string contains the EOS symbol.
    #[error("HPACK: a Huffman-coded string contains EOS (RFC 7541 §5.2)")]
    HuffmanEos,
    /// A Huffman string's padding is longer than 7 bits or not the prefix of EOS.
    #[error("HPACK: bad Huffman padding (RFC 7541 §5.2)")]
    HuffmanPadding,
    /// A Huffman string follows no code.
    #[error("HPACK: invalid Huffman code")]
    HuffmanInvalid,
}

/// The dynamic table size the server announces (the default of
/// SETTINGS_HEADER_TABLE_SIZE, which `h2` servers keep): a client may not use more.
pub const MAX_TABLE_SIZE: usize = 4096;

/// The static table (RFC 7541 Appendix A); index `i` is `STATIC[i - 1]`.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The per-entry overhead in table and list sizes (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A decoder for one connection's header blocks, in order.
#[derive(Debug)]
pub struct Decoder {
    table: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    max_list: usize,
    /// Scratch for Huffman-decoded names and values.
    scratch: Vec<u8>,
}

/// How a field was sent: `Sensitive` fields (never-indexed literals) keep that flag when
/// re-encoded, so intermediaries still never index them (RFC 7541 §7.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexing {
    /// Indexed, or a literal that may be indexed.
    Normal,
    /// A never-indexed literal.
    Sensitive,
}

impl Decoder {
    /// A decoder whose decoded header lists may be at most `max_list` bytes (names and
    /// values plus 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts).
    pub fn new(max_list: usize) -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: MAX_TABLE_SIZE,
            max_list,
            scratch: Vec::new(),
        }
    }

    /// Decodes one complete header block, calling `field(name, value, indexing)` for each
    /// field in order.
    ///
    /// On error the connection must be closed: the dynamic table may no longer match the
    /// client's.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        mut field: impl FnMut(&[u8], &[u8], Indexing),
    ) -> Result<(), HpackError> {
        let mut list = 0usize;
        let mut fields_seen = false;
        let mut size_updated = false;
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(&mut block, 7)?;
                let (name, value) = self.entry(index)?;
                list = add_list(list, name.len() + value.len(), self.max_list)?;
                field(name, value, Indexing::Normal);
                fields_seen = true;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                if fields_seen {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = integer(&mut block, 5)?;
                if size > MAX_TABLE_SIZE {
                    return Err(HpackError::TableSizeTooLarge(size));
                }
                self.max_size = size;
                self.evict(0);
                size_updated = true;
            } else {
                // Literals (§6.2): with incremental indexing (01), without (0000), never
                // indexed (0001).
                let (prefix, insert, indexing) = match first & 0xf0 {
                    0x00 => (4, false, Indexing::Normal),
                    0x10 => (4, false, Indexing::Sensitive),
                    _ => (6, true, Indexing::Normal),
                };
                let index = integer(&mut block, prefix)?;
                self.scratch.clear();
                if index == 0 {
                    string(&mut block, &mut self.scratch)?;
                } else {
                    let (name, _) = self.entry(index)?;
                    let name = name.to_vec();
                    self.scratch.extend_from_slice(&name);
                }
                let name_end = self.scratch.len();
                string(&mut block, &mut self.scratch)?;
                let (name, value) = self.scratch.split_at(name_end);
                list = add_list(list, name.len() + value.len(), self.max_list)?;
                field(name, value, indexing);
                fields_seen = true;
                if insert {
                    let entry = (name.into(), value.into());
                    self.insert(entry);
                }
            }
        }
        if size_updated && !fields_seen {
            return Err(HpackError::SizeUpdateAtEnd);
        }
        Ok(())
    }

    /// Shrinks the scratch buffer back to `keep` bytes of capacity after a large block.
    pub fn shrink_to(&mut self, keep: usize) {
        self.scratch.shrink_to(keep);
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError::BadIndex(0)),
            1..=61 => Ok(STATIC[index - 1]),
            _ => self
                .table
                .get(index - 62)
                .map(|(n, v)| (&n[..], &v[..]))
                .ok_or(HpackError::BadIndex(index)),
        }
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.0.len() + entry.1.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // An entry larger than the table empties it and is not added (§4.4).
            self.evict(self.max_size);
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front(entry);
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((n, v)) = self.table.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
        }
    }
}

fn add_list(list: usize, field: usize, max: usize) -> Result<usize, HpackError> {
    let list = list + field + ENTRY_OVERHEAD;
    if list > max {
        return Err(HpackError::ListTooLarge(max));
    }
    Ok(list)
}

/// The largest integer accepted: far beyond any index or length a bounded block can hold.
const MAX_INTEGER: usize = 1 << 24;

/// Reads an integer with an `n`-bit prefix (§5.1).
fn integer(block: &mut &[u8], n: u32) -> Result<usize, HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let max_prefix = (1usize << n) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value == max_prefix {
        let mut shift = 0;
        loop {
            let (&b, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = tail;
            value += usize::from(b & 0x7f) << shift;
            if value > MAX_INTEGER {
                return Err(HpackError::IntegerOverflow);
            }
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(HpackError::IntegerOverflow);
            }
        }
    }
    *block = rest;
    Ok(value)
}

/// Reads a string literal (§5.2), appending its octets to `out`.
fn string(block: &mut &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)?;
    if len > block.len() {
        return Err(HpackError::Truncated);
    }
    let (bytes, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        huffman::decode(bytes, out)
    } else {
        out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends an integer with an `n`-bit prefix whose other bits are `flags` (§5.1).
fn put_integer(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max_prefix = (1usize << n) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    value -= max_prefix;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Appends `name: value` without touching the server's dynamic table: an indexed static
/// entry when both match one, else a literal without indexing (or never indexed, for
/// sensitive fields) with a static name index when the name has one (§6.1, §6.2.2-3).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], indexing: Indexing) {
    let flags = match indexing {
        Indexing::Normal => 0x00,
        Indexing::Sensitive => 0x10,
    };
    let mut name_index = 0;
    for (i, (n, v)) in STATIC.iter().enumerate() {
        if *n == name {
            if *v == value && indexing == Indexing::Normal {
                put_integer(out, 0x80, 7, i + 1);
                return;
            }
            if name_index == 0 {
                name_index = i + 1;
            }
        } else if name_index != 0 {
            // Entries with one name are adjacent; none further can match.
            break;
        }
    }
    put_integer(out, flags, 4, name_index);
    if name_index == 0 {
        put_string(out, name);
    }
    put_string(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    type List = Vec<(Vec<u8>, Vec<u8>)>;

    fn decode_all(d: &mut Decoder, block: &[u8]) -> Result<List, HpackError> {
        let mut got = Vec::new();
        d.decode(block, |n, v, _| got.push((n.to_vec(), v.to_vec())))?;
        Ok(got)
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        let mut d = Decoder::new(1 << 16);
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x0f, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p',
            b'l', b'e', b'.', b'c', b'o', b'm',
        ];
        assert_eq!(
            decode_all(&mut d, &first).unwrap(),
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(d.size, 57);
        // C.3.2: the authority now comes from the dynamic table (index 62).
        let second = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x08, b'n', b'o', b'-', b'c', b'a', b'c', b'h', b'e',
        ];
        assert_eq!(
            decode_all(&mut d, &second).unwrap(),
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(d.size, 110);
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new(1 << 16);
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        assert_eq!(
            decode_all(&mut d, &first).unwrap()[3],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
    }

    #[test]
    fn eviction_size_updates_and_bad_input() {
        let mut d = Decoder::new(1 << 16);
        // Size update to 0 empties the table; then index 62 does not exist.
        decode_all(&mut d, &[0x41, 0x01, b'a']).unwrap();
        assert_eq!(d.table.len(), 1);
        assert_eq!(
            decode_all(&mut d, &[0x20]),
            Err(HpackError::SizeUpdateAtEnd)
        );
        decode_all(&mut d, &[0x20, 0x82]).unwrap();
        assert_eq!((d.table.len(), d.size), (0, 0));
        assert_eq!(decode_all(&mut d, &[0xbe]), Err(HpackError::BadIndex(62)));
        assert_eq!(decode_all(&mut d, &[0x80]), Err(HpackError::BadIndex(0)));
        // Larger than the announced table, or after a field.
        assert_eq!(
            decode_all(&mut d, &[0x3f, 0xe2, 0x1f]),
            Err(HpackError::TableSizeTooLarge(4097))
        );
        assert_eq!(
            decode_all(&mut d, &[0x82, 0x20]),
            Err(HpackError::LateTableSizeUpdate)
        );
        // Truncated string, endless integer.
        assert_eq!(
            decode_all(&mut d, &[0x00, 0x05, b'a']),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            decode_all(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(HpackError::IntegerOverflow)
        );
        // The list bound counts 32 per field.
        let mut small = Decoder::new(40);
        assert_eq!(
            decode_all(&mut small, &[0x82, 0x82]),
            Err(HpackError::ListTooLarge(40))
        );
    }

    #[test]
    fn the_encoder_round_trips_and_never_indexes() {
        let list = fields(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("workload.spiffe.io", "true"),
            ("x-long", &"v".repeat(300)),
        ]);
        let mut block = Vec::new();
        for (n, v) in &list {
            encode_field(&mut block, n, v, Indexing::Normal);
        }
        encode_field(&mut block, b"authorization", b"secret", Indexing::Sensitive);
        let mut d = Decoder::new(1 << 16);
        let mut got = Vec::new();
        d.decode(&block, |n, v, i| got.push((n.to_vec(), v.to_vec(), i)))
            .unwrap();
        assert_eq!(d.table.len(), 0, "nothing indexed");
        assert_eq!(got.len(), list.len() + 1);
        for ((n, v, i), (en, ev)) in got.iter().zip(&list) {
            assert_eq!((n, v, *i), (en, ev, Indexing::Normal));
        }
        assert_eq!(got[8].2, Indexing::Sensitive);
        // :method POST and :scheme http are one byte each.
        assert_eq!(&block[..2], &[0x83, 0x86]);
    }
}
