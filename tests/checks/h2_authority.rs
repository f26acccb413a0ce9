//! Invariants of the serving layer's `:authority` rewriter on arbitrary client byte
//! streams, checked against an HPACK decoder nobody here wrote (`loona-hpack`):
//!
//! - no panic, and the verdict and output do not depend on how the bytes are chunked;
//! - when the rewrite succeeds: the output starts with the preface, every frame that is
//!   not part of a header block is passed on byte for byte, every header block decodes
//!   (in the reference decoder, on a fresh table that must stay empty) to exactly the list
//!   the client's block decodes to (in the reference decoder, mirroring the client's
//!   table), except that every `:authority` value is `localhost`; no output frame is
//!   larger than 16 KiB.
//!
//! Shared, by `#[path]`, between the `h2_authority` fuzz target and `tests/fuzz_corpus.rs`.
//! Input: one byte choosing the chunk size, then the client's frames after the preface.

#![allow(dead_code, clippy::cast_possible_truncation)]

use meshid::serve::fuzzing::{self, Indexing, AUTHORITY, PREFACE};

/// Streams longer than this are not checked (the chunked replay is quadratic-free but slow).
const MAX_INPUT: usize = 300 * 1024;

type List = Vec<(Vec<u8>, Vec<u8>)>;

fn reference() -> loona_hpack::Decoder<'static> {
    let mut d = loona_hpack::Decoder::new();
    d.set_max_allowed_table_size(4096);
    d
}

pub fn check(data: &[u8]) {
    let Some((&selector, frames)) = data.split_first() else {
        return;
    };
    if frames.len() > MAX_INPUT {
        return;
    }
    let stream = [PREFACE, frames].concat();
    let whole = fuzzing::rewrite(&stream, stream.len());
    let chunked = fuzzing::rewrite(&stream, usize::from(selector % 61) + 1);
    assert_eq!(whole, chunked, "the verdict depends on chunking");
    let Ok(out) = whole else {
        return;
    };
    assert!(out.starts_with(PREFACE));
    let (in_blocks, in_other) =
        fuzzing::split_frames(frames).expect("a stream the rewriter took splits");
    let (out_blocks, out_other) =
        fuzzing::split_frames(&out[PREFACE.len()..]).expect("the output splits");
    assert_eq!(in_other, out_other, "frames outside header blocks changed");
    assert_eq!(
        in_blocks.len(),
        out_blocks.len(),
        "header blocks lost or added"
    );
    let (mut client, mut server) = (reference(), reference());
    for ((in_stream, in_block), (out_stream, out_block)) in in_blocks.iter().zip(&out_blocks) {
        assert_eq!(in_stream, out_stream);
        let sent: List = client
            .decode(in_block)
            .unwrap_or_else(|e| panic!("the rewriter took a block the reference refuses: {e:?}"));
        let expected: List = sent
            .into_iter()
            .map(|(n, v)| {
                let v = if n == b":authority" {
                    AUTHORITY.to_vec()
                } else {
                    v
                };
                (n, v)
            })
            .collect();
        let got = server
            .decode(out_block)
            .expect("the rewritten block decodes");
        assert_eq!(got, expected, "the header list changed beyond :authority");
    }
    // Each frame of the output fits the smallest maximum frame size.
    let mut rest = &out[PREFACE.len()..];
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if matches!(rest[3], 0x1 | 0x9) {
            assert!(len <= 16_384, "a header frame of {len} bytes");
        }
        if rest.len() < 9 + len {
            break;
        }
        rest = &rest[9 + len..];
    }
}

/// A frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![
        u8::try_from(len >> 16).unwrap(),
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
    ];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A string literal, Huffman-coded or not.
fn string(out: &mut Vec<u8>, s: &[u8], huffman: bool) {
    let bytes = if huffman {
        fuzzing::huffman(s)
    } else {
        s.to_vec()
    };
    integer(out, if huffman { 0x80 } else { 0 }, 7, bytes.len());
    out.extend_from_slice(&bytes);
}

fn integer(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A literal with incremental indexing (as C-core and grpc-java send most headers).
fn indexed_literal(out: &mut Vec<u8>, name_index: usize, name: &[u8], value: &[u8], huff: bool) {
    integer(out, 0x40, 6, name_index);
    if name_index == 0 {
        string(out, name, huff);
    }
    string(out, value, huff);
}

/// A gRPC request's header block as a client over a Unix socket sends it, indexing (and
/// Huffman-coding) as C-core does; `second` refers back to the first request's entries.
pub fn grpc_request(authority: &[u8], path: &[u8], huff: bool, second: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if second {
        // :method POST, :scheme http, then the dynamic entries the first request added
        // (newest first: te, content-type, workload.spiffe.io, :path, :authority).
        b.extend([0x83, 0x86, 0xc2, 0xc1, 0xc0, 0xbf, 0xbe]);
        return b;
    }
    b.extend([0x83, 0x86]);
    indexed_literal(&mut b, 4, b"", path, huff);
    indexed_literal(&mut b, 1, b"", authority, huff);
    indexed_literal(&mut b, 0, b"workload.spiffe.io", b"true", huff);
    indexed_literal(&mut b, 31, b"", b"application/grpc", huff);
    indexed_literal(&mut b, 0, b"te", b"trailers", huff);
    b
}

/// Seed inputs: what each client stack sends, and the framing corners.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let settings = frame(0x4, 0, 0, &[0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0]);
    let window = frame(0x8, 0, 0, &[0, 0x0f, 0, 1]);
    let data = frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]);
    let path = b"/SpiffeWorkloadAPI/FetchX509SVID";
    let garbage: Vec<u8> = (0..16 * 1024usize)
        .map(|i| (i * 7 % 255 + 1) as u8)
        .collect();
    let mut seeds = Vec::new();
    let forms: [(&str, &[u8], bool); 5] = [
        ("ccore", b"tmp%2Fdir%2Fapi.sock", true),
        ("java", b"/tmp/dir/api.sock", false),
        ("swift", b"%2Ftmp%2Fdir%2Fapi.sock", true),
        ("go", b"localhost", true),
        ("garbage", &garbage, false),
    ];
    for (name, authority, huff) in forms {
        let first = grpc_request(authority, path, huff, false);
        let mut s = vec![7u8];
        s.extend(&settings);
        s.extend(&window);
        if first.len() > 16_384 {
            let (a, rest) = first.split_at(16_000);
            s.extend(frame(0x1, 0, 1, a));
            for (i, c) in rest.chunks(8000).enumerate() {
                let last = (i + 1) * 8000 >= rest.len();
                s.extend(frame(0x9, if last { 0x4 } else { 0 }, 1, c));
            }
        } else {
            s.extend(frame(0x1, 0x4, 1, &first));
        }
        s.extend(&data);
        if authority.len() < 1024 {
            // (A larger authority does not fit the dynamic table: nothing to refer to.)
            s.extend(frame(0x1, 0x4, 3, &grpc_request(b"", path, huff, true)));
        }
        seeds.push((format!("seed-{name}"), s));
    }
    // Padding and priority, a table size update, trailers, and a sensitive field.
    let mut block = vec![0x3f, 0xe1, 0x1f]; // size update to 4096
    block.extend(grpc_request(b"a%2Fb", path, false, false));
    let mut sensitive = Vec::new();
    fuzzing::encode_field(&mut sensitive, b"authorization", b"x", Indexing::Sensitive);
    block.extend(&sensitive);
    let mut payload = vec![4u8, 0x80, 0, 0, 1, 16];
    payload.extend(&block);
    payload.extend([0; 4]);
    let mut s = vec![0u8];
    s.extend(frame(0x1, 0x8 | 0x20 | 0x4, 1, &payload));
    s.extend(frame(0x0, 0, 1, &[0, 0, 0, 0, 0]));
    s.extend(frame(0x1, 0x5, 1, &[0x40, 1, b'x', 1, b'y']));
    seeds.push(("seed-corners".to_owned(), s));
    seeds
}
