//! `:authority` normalisation: rewrites the client-to-server half of an HTTP/2 connection
//! so that every request's `:authority` is `localhost` before `h2` validates it.
//!
//! Over a Unix socket the authority carries no meaning, yet clients fill it with what their
//! stack derives from the target: gRPC C-core (grpcio, py-spiffe, Envoy's `google_grpc`)
//! the percent-encoded socket path, grpc-java the raw path, grpc-swift the encoded path
//! with its leading `%2F`. `h2` answers any of these with RST_STREAM(PROTOCOL_ERROR) before
//! the service sees the request, and offers no setting to accept them.
//!
//! Frames pass through byte for byte except header blocks (HEADERS and their CONTINUATION
//! frames): each is decoded with a full HPACK decoder that mirrors the client's encoder,
//! and re-encoded field by field, in order, with `:authority` replaced and nothing ever
//! added to the server's dynamic table, so the server's HPACK state cannot diverge from
//! the client's. Padding is dropped; END_STREAM and priority are kept. Memory per
//! connection is bounded by [`MAX_BLOCK`], [`MAX_LIST`] and [`MAX_CONTINUATIONS`], and by
//! [`AuthorityRewriter::feed`] stopping once its output passes a high-water mark (a small
//! input referring to large dynamic-table entries must not expand without bound); any
//! violation is an [`H2RewriteError`] that closes that connection only.

// Frame lengths are 24-bit: narrowing casts take the low bits on purpose.
#![allow(clippy::cast_possible_truncation)]

use thiserror::Error;

use super::hpack::{self, Decoder, HpackError};

/// The value every `:authority` becomes.
pub const AUTHORITY: &[u8] = b"localhost";
/// The largest header block (all fragments of one HEADERS and its CONTINUATIONs). `h2`
/// closes a connection whose header list passes 4 x 16 KiB (hyper's advertised limit)
/// anyway.
pub const MAX_BLOCK: usize = 64 * 1024;
/// The largest decoded header list (names, values, 32 bytes per field).
pub const MAX_LIST: usize = 64 * 1024;
/// The most CONTINUATION frames one header block may have.
pub const MAX_CONTINUATIONS: usize = 16;
/// The largest HEADERS/CONTINUATION payload read or written: the default
/// SETTINGS_MAX_FRAME_SIZE, which meshid's servers keep (a larger frame is a
/// FRAME_SIZE_ERROR for `h2` too).
const MAX_FRAME: usize = 16_384;
/// `feed` stops taking input once its output is this large (it may pass it by one block).
pub const HIGH_WATER: usize = 64 * 1024;
/// Buffers larger than this are shrunk back after a block, so one large block does not
/// pin memory for the connection's life.
const KEEP: usize = 16 * 1024;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Why a connection's byte stream could not be rewritten; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum H2RewriteError {
    /// The connection does not start with the HTTP/2 client preface.
    #[error("not an HTTP/2 connection: the client preface is missing (RFC 9113 §3.4)")]
    Preface,
    /// A header block is larger than 64 KiB.
    #[error("a header block exceeds {MAX_BLOCK} bytes")]
    BlockTooLarge,
    /// A header block has more than 16 CONTINUATION frames.
    #[error("a header block has more than {MAX_CONTINUATIONS} CONTINUATION frames")]
    TooManyContinuations,
    /// A frame other than CONTINUATION (of the same stream) interrupts a header block.
    #[error("frame type {0:#x} interrupts a header block (RFC 9113 §6.10)")]
    Interrupted(u8),
    /// A CONTINUATION frame follows no open header block.
    #[error("CONTINUATION frame without a header block (RFC 9113 §6.10)")]
    StrayContinuation,
    /// A HEADERS or CONTINUATION frame larger than the 16,384 bytes the server allows.
    #[error("a {len}-byte header frame exceeds SETTINGS_MAX_FRAME_SIZE 16384 (RFC 9113 §4.2)")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
    },
    /// A client sent PUSH_PROMISE, which only servers may send.
    #[error("PUSH_PROMISE from a client (RFC 9113 §8.4)")]
    PushPromise,
    /// A HEADERS frame's padding or priority fields do not fit in it.
    #[error("HEADERS frame too short for its padding or priority (RFC 9113 §6.2)")]
    BadPadding,
    /// A header block does not decode.
    #[error(transparent)]
    Hpack(#[from] HpackError),
}

/// Where the rewriter is in the client's byte stream.
#[derive(Debug)]
enum State {
    /// Matching the client preface; the count of bytes matched.
    Preface(usize),
    /// Reading a 9-byte frame header.
    Header { buf: [u8; 9], have: usize },
    /// Copying the rest of a frame that is not part of a header block.
    Pass(usize),
    /// Reading the payload of a HEADERS or CONTINUATION frame.
    Payload {
        kind: u8,
        flags: u8,
        stream: u32,
        len: usize,
    },
}

/// An open header block, waiting for its END_HEADERS.
#[derive(Debug)]
struct Open {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    continuations: usize,
}

/// The rewriter for one connection's client-to-server bytes. Sans-IO: bytes in, bytes out.
#[derive(Debug)]
pub struct AuthorityRewriter {
    state: State,
    decoder: Decoder,
    /// The current frame's payload (HEADERS/CONTINUATION only).
    payload: Vec<u8>,
    /// The header block fragments gathered so far.
    block: Vec<u8>,
    open: Option<Open>,
    /// The re-encoded block (kept to reuse its allocation).
    encoded: Vec<u8>,
    /// Whether a whole frame header has been read.
    seen_frame: bool,
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthorityRewriter {
    /// A rewriter at the start of a connection.
    pub fn new() -> Self {
        Self {
            state: State::Preface(0),
            decoder: Decoder::new(MAX_LIST),
            payload: Vec::new(),
            block: Vec::new(),
            open: None,
            encoded: Vec::new(),
            seen_frame: false,
        }
    }

    /// Whether the client preface and the header of the first frame have arrived (a
    /// connection that has not got this far within the preface timeout is closed).
    pub fn started(&self) -> bool {
        self.seen_frame
    }

    /// Takes the next bytes the client sent and appends what the server should read to
    /// `out`; returns how many bytes of `input` it took. It stops early (a frame's worth
    /// past [`HIGH_WATER`] at most) once `out` holds `HIGH_WATER` bytes: feed the rest
    /// once `out` has been drained. After an error the connection must be closed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, H2RewriteError> {
        let total = input.len();
        let mut input = input;
        while !input.is_empty() && out.len() < HIGH_WATER {
            match &mut self.state {
                State::Preface(matched) => {
                    let n = (PREFACE.len() - *matched).min(input.len());
                    if input[..n] != PREFACE[*matched..*matched + n] {
                        return Err(H2RewriteError::Preface);
                    }
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *matched += n;
                    if *matched == PREFACE.len() {
                        self.state = State::Header {
                            buf: [0; 9],
                            have: 0,
                        };
                    }
                }
                State::Header { buf, have } => {
                    let n = (9 - *have).min(input.len());
                    buf[*have..*have + n].copy_from_slice(&input[..n]);
                    input = &input[n..];
                    *have += n;
                    if *have == 9 {
                        let header = *buf;
                        self.frame_header(header, out)?;
                    }
                }
                State::Pass(left) => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        self.state = State::Header {
                            buf: [0; 9],
                            have: 0,
                        };
                    }
                }
                State::Payload { len, .. } => {
                    let n = (*len - self.payload.len()).min(input.len());
                    self.payload.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.payload.len() == *len {
                        self.frame_payload(out)?;
                    }
                }
            }
        }
        Ok(total - input.len())
    }

    /// Acts on a complete frame header.
    fn frame_header(&mut self, h: [u8; 9], out: &mut Vec<u8>) -> Result<(), H2RewriteError> {
        self.seen_frame = true;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        match kind {
            HEADERS | CONTINUATION => {
                if len > MAX_FRAME {
                    return Err(H2RewriteError::FrameTooLarge { len });
                }
                if kind == HEADERS && self.open.is_some() {
                    return Err(H2RewriteError::Interrupted(kind));
                }
                if kind == CONTINUATION && self.open.as_ref().is_none_or(|o| o.stream != stream) {
                    return Err(H2RewriteError::StrayContinuation);
                }
                self.payload.clear();
                self.state = State::Payload {
                    kind,
                    flags,
                    stream,
                    len,
                };
                if len == 0 {
                    self.frame_payload(out)?;
                }
            }
            _ if self.open.is_some() => return Err(H2RewriteError::Interrupted(kind)),
            PUSH_PROMISE => return Err(H2RewriteError::PushPromise),
            _ => {
                out.extend_from_slice(&h);
                self.state = if len == 0 {
                    State::Header {
                        buf: [0; 9],
                        have: 0,
                    }
                } else {
                    State::Pass(len)
                };
            }
        }
        Ok(())
    }

    /// Acts on a complete HEADERS or CONTINUATION payload.
    fn frame_payload(&mut self, out: &mut Vec<u8>) -> Result<(), H2RewriteError> {
        let State::Payload {
            kind,
            flags,
            stream,
            ..
        } = self.state
        else {
            unreachable!("called in the payload state only");
        };
        self.state = State::Header {
            buf: [0; 9],
            have: 0,
        };
        let mut fragment = &self.payload[..];
        if kind == HEADERS {
            let mut padding = 0;
            if flags & PADDED != 0 {
                let (&pad, rest) = fragment.split_first().ok_or(H2RewriteError::BadPadding)?;
                padding = usize::from(pad);
                fragment = rest;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                if fragment.len() < 5 {
                    return Err(H2RewriteError::BadPadding);
                }
                let mut p = [0; 5];
                p.copy_from_slice(&fragment[..5]);
                priority = Some(p);
                fragment = &fragment[5..];
            }
            if padding > fragment.len() {
                return Err(H2RewriteError::BadPadding);
            }
            fragment = &fragment[..fragment.len() - padding];
            self.open = Some(Open {
                stream,
                flags,
                priority,
                continuations: 0,
            });
        } else if let Some(open) = &mut self.open {
            open.continuations += 1;
            if open.continuations > MAX_CONTINUATIONS {
                return Err(H2RewriteError::TooManyContinuations);
            }
        }
        if self.block.len() + fragment.len() > MAX_BLOCK {
            return Err(H2RewriteError::BlockTooLarge);
        }
        self.block.extend_from_slice(fragment);
        if flags & END_HEADERS != 0 {
            self.end_block(out)?;
        }
        Ok(())
    }

    /// Re-encodes the complete block and writes it as HEADERS (+ CONTINUATION) frames.
    fn end_block(&mut self, out: &mut Vec<u8>) -> Result<(), H2RewriteError> {
        let open = self.open.take().expect("a block is open at END_HEADERS");
        let encoded = &mut self.encoded;
        encoded.clear();
        self.decoder.decode(&self.block, |name, value, indexing| {
            let value = if name == b":authority" {
                AUTHORITY
            } else {
                value
            };
            hpack::encode_field(encoded, name, value, indexing);
        })?;
        self.block.clear();
        self.block.shrink_to(KEEP);
        self.payload.shrink_to(KEEP);
        self.decoder.shrink_to(KEEP);
        let stream = open.stream.to_be_bytes();
        let mut rest = &encoded[..];
        let mut first = true;
        loop {
            let room = if first && open.priority.is_some() {
                MAX_FRAME - 5
            } else {
                MAX_FRAME
            };
            let n = rest.len().min(room);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let last = rest.is_empty();
            let (kind, mut flags) = if first {
                (HEADERS, open.flags & END_STREAM)
            } else {
                (CONTINUATION, 0)
            };
            let prio = if first { open.priority } else { None };
            if prio.is_some() {
                flags |= PRIORITY;
            }
            if last {
                flags |= END_HEADERS;
            }
            let len = chunk.len() + if prio.is_some() { 5 } else { 0 };
            out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
            out.extend_from_slice(&stream);
            if let Some(p) = prio {
                out.extend_from_slice(&p);
            }
            out.extend_from_slice(chunk);
            first = false;
            if last {
                break;
            }
        }
        self.encoded.shrink_to(KEEP);
        Ok(())
    }
}

/// Header blocks `(stream, block)` and the bytes of every other frame.
pub type Frames = (Vec<(u32, Vec<u8>)>, Vec<u8>);

/// For the `h2_authority` fuzz target and its corpus replay: splits a client byte stream
/// (after the preface) into frames, returning each header block (with its stream) and the
/// other frames' bytes (a trailing incomplete frame is left out), or `None` if the stream is
/// not well formed enough to split.
pub(crate) fn split_frames(mut bytes: &[u8]) -> Option<Frames> {
    let (mut blocks, mut other) = (Vec::new(), Vec::new());
    let mut open: Option<(u32, Vec<u8>)> = None;
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let (kind, flags) = (bytes[3], bytes[4]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        if bytes.len() < 9 + len {
            break;
        }
        let mut payload = &bytes[9..9 + len];
        match kind {
            HEADERS => {
                if flags & PADDED != 0 {
                    let (&pad, rest) = payload.split_first()?;
                    payload = rest.get(..rest.len().checked_sub(usize::from(pad))?)?;
                }
                if flags & PRIORITY != 0 {
                    payload = payload.get(5..)?;
                }
                open = Some((stream, payload.to_vec()));
            }
            CONTINUATION => open.as_mut()?.1.extend_from_slice(payload),
            _ => other.extend_from_slice(&bytes[..9 + len]),
        }
        if matches!(kind, HEADERS | CONTINUATION) && flags & END_HEADERS != 0 {
            blocks.push(open.take()?);
        }
        bytes = &bytes[9 + len..];
    }
    Some((blocks, other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpack::Indexing;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, v) in fields {
            hpack::encode_field(&mut b, n, v, Indexing::Normal);
        }
        b
    }

    fn decode(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut got = Vec::new();
        Decoder::new(MAX_LIST)
            .decode(block, |n, v, _| got.push((n.to_vec(), v.to_vec())))
            .unwrap();
        got
    }

    /// Runs `stream` through a rewriter in chunks of `chunk` bytes.
    fn rewrite(stream: &[u8], chunk: usize) -> Result<Vec<u8>, H2RewriteError> {
        let mut drained = Vec::new();
        let mut r = AuthorityRewriter::new();
        let mut out = Vec::new();
        for mut piece in stream.chunks(chunk) {
            while !piece.is_empty() {
                let taken = r.feed(piece, &mut out)?;
                piece = &piece[taken..];
                if taken == 0 {
                    // Over the high-water mark: a reader would drain `out` now.
                    assert!(out.len() >= HIGH_WATER);
                    drained.append(&mut out);
                }
            }
        }
        drained.extend(out);
        Ok(drained)
    }

    #[test]
    fn authorities_become_localhost_and_everything_else_passes() {
        let forms: [&[u8]; 4] = [
            b"tmp%2Fdir%2Fapi.sock",
            b"%2Ftmp%2Fdir%2Fapi.sock",
            b"/tmp/dir/api.sock",
            &[0x01, 0xff, b' ', b'@', 0x7f],
        ];
        for authority in forms {
            let headers = block(&[
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
                (b":authority", authority),
                (b"workload.spiffe.io", b"true"),
            ]);
            let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
            let data = frame(0x0, END_STREAM, 1, &[0, 0, 0, 0, 0]);
            let mut input = PREFACE.to_vec();
            input.extend(&settings);
            input.extend(frame(HEADERS, END_HEADERS, 1, &headers));
            input.extend(&data);
            for chunk in [1, 7, 4096] {
                let out = rewrite(&input, chunk).unwrap();
                assert!(out.starts_with(PREFACE));
                let (blocks, other) = split_frames(&out[PREFACE.len()..]).unwrap();
                assert_eq!(other, [settings.clone(), data.clone()].concat());
                assert_eq!(blocks.len(), 1);
                let got = decode(&blocks[0].1);
                assert_eq!(got[3], (b":authority".to_vec(), AUTHORITY.to_vec()));
                assert_eq!(got[4], (b"workload.spiffe.io".to_vec(), b"true".to_vec()));
                assert_eq!(got.len(), 5);
            }
        }
    }

    #[test]
    fn padded_prioritised_continued_and_huge_blocks_are_reframed() {
        let garbage: Vec<u8> = (0..12 * 1024usize).map(|i| (i % 255 + 1) as u8).collect();
        let big: Vec<u8> = (0..16 * 1024usize).map(|i| (i % 253 + 2) as u8).collect();
        let headers = block(&[
            (b":method", b"POST"),
            (b":authority", &garbage),
            (b"x-big", &big),
        ]);
        // HEADERS (padded, with priority) + two CONTINUATIONs, END_STREAM set.
        let (a, rest) = headers.split_at(1000);
        let (b, c) = rest.split_at(12_000);
        let mut first = vec![3u8];
        first.extend_from_slice(&[0x80, 0, 0, 3, 200]);
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_STREAM | PADDED | PRIORITY, 5, &first));
        input.extend(frame(CONTINUATION, 0, 5, b));
        input.extend(frame(CONTINUATION, END_HEADERS, 5, c));
        let out = rewrite(&input, 333).unwrap();
        let frames = &out[PREFACE.len()..];
        // First frame: HEADERS with END_STREAM and PRIORITY kept, no padding.
        assert_eq!(frames[3], HEADERS);
        assert_eq!(frames[4], END_STREAM | PRIORITY);
        assert_eq!(&frames[9..14], &[0x80, 0, 0, 3, 200]);
        let (blocks, other) = split_frames(frames).unwrap();
        assert!(other.is_empty());
        let got = decode(&blocks[0].1);
        assert_eq!(got[1].1, AUTHORITY);
        assert_eq!(got[2].1, big);
        // Every frame fits the minimum frame size.
        let mut rest = frames;
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            assert!(len <= MAX_FRAME);
            rest = &rest[9 + len..];
        }
    }

    #[test]
    fn the_dynamic_table_is_mirrored_across_requests() {
        // Request 1 indexes the authority and a header; request 2 refers to them by index.
        let mut first = vec![0x83, 0x86];
        first.extend([0x41, 4]);
        first.extend(b"a%2F");
        first.extend([0x40, 2]);
        first.extend(b"xk");
        first.extend([2]);
        first.extend(b"xv");
        let second = [0x83, 0x86, 0xbf, 0xbe]; // 63 = authority, 62 = xk: xv
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        input.extend(frame(HEADERS, END_HEADERS, 3, &second));
        let out = rewrite(&input, 5).unwrap();
        let (blocks, _) = split_frames(&out[PREFACE.len()..]).unwrap();
        // The server decodes each block with a table that stays empty.
        for (_, b) in &blocks {
            let got = decode(b);
            assert!(got.contains(&(b":authority".to_vec(), AUTHORITY.to_vec())));
            assert!(got.contains(&(b"xk".to_vec(), b"xv".to_vec())));
        }
    }

    #[test]
    fn small_input_cannot_expand_without_bound() {
        // One 4,000-byte dynamic entry, then blocks of 31 one-byte references to it: each
        // 40-byte frame decodes to 124 KiB of headers (past MAX_LIST, so refused), or,
        // with 12 references, to 48 KiB that the rewriter must hand out bit by bit.
        let mut first = vec![0x40, 1, b'x'];
        first.extend([0x7f, 0xa1, 0x1e]); // value length 4,000 (127 + 3873)
        first.extend([b'v'; 4000]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        for i in 0..400u32 {
            input.extend(frame(HEADERS, END_HEADERS, 3 + 2 * i, &[0xbe; 12]));
        }
        let mut r = AuthorityRewriter::new();
        let mut out = Vec::new();
        let mut rest = &input[..];
        let (mut peak, mut total) = (0, 0);
        while !rest.is_empty() {
            let taken = r.feed(rest, &mut out).unwrap();
            rest = &rest[taken..];
            peak = peak.max(out.len());
            total += out.len();
            out.clear();
        }
        assert!(total > 400 * 12 * 4000, "everything is handed out: {total}");
        assert!(peak <= HIGH_WATER + MAX_LIST, "peak output {peak}");
        // 31 references: past the list bound, refused.
        let over = [
            PREFACE.to_vec(),
            frame(HEADERS, END_HEADERS, 1, &first),
            frame(HEADERS, END_HEADERS, 3, &[0xbe; 31]),
        ]
        .concat();
        assert_eq!(
            rewrite(&over, 4096),
            Err(H2RewriteError::Hpack(HpackError::ListTooLarge(MAX_LIST)))
        );
    }

    #[test]
    fn violations_are_typed_errors() {
        assert_eq!(
            rewrite(b"GET / HTTP/1.1\r\n", 3),
            Err(H2RewriteError::Preface)
        );
        let mut base = PREFACE.to_vec();
        base.extend(frame(HEADERS, 0, 1, &[0x83]));
        let interrupted = [base.clone(), frame(0x0, 0, 1, b"x")].concat();
        assert_eq!(
            rewrite(&interrupted, 64),
            Err(H2RewriteError::Interrupted(0))
        );
        let other_stream = [base.clone(), frame(CONTINUATION, END_HEADERS, 3, &[0x86])].concat();
        assert_eq!(
            rewrite(&other_stream, 64),
            Err(H2RewriteError::StrayContinuation)
        );
        let mut many = base.clone();
        for _ in 0..=MAX_CONTINUATIONS {
            many.extend(frame(CONTINUATION, 0, 1, &[]));
        }
        assert_eq!(
            rewrite(&many, 4096),
            Err(H2RewriteError::TooManyContinuations)
        );
        let mut big = base.clone();
        for _ in 0..5 {
            big.extend(frame(CONTINUATION, 0, 1, &[0u8; MAX_FRAME]));
        }
        assert_eq!(rewrite(&big, 4096), Err(H2RewriteError::BlockTooLarge));
        let huge = [
            PREFACE.to_vec(),
            frame(HEADERS, 0, 1, &vec![0u8; MAX_FRAME + 1]),
        ]
        .concat();
        assert_eq!(
            rewrite(&huge, 4096),
            Err(H2RewriteError::FrameTooLarge { len: MAX_FRAME + 1 })
        );
        let push = [PREFACE.to_vec(), frame(PUSH_PROMISE, 0, 1, &[0; 4])].concat();
        assert_eq!(rewrite(&push, 64), Err(H2RewriteError::PushPromise));
        let bad_pad = [PREFACE.to_vec(), frame(HEADERS, PADDED, 1, &[9, 0x83])].concat();
        assert_eq!(rewrite(&bad_pad, 64), Err(H2RewriteError::BadPadding));
        let bad_hpack = [PREFACE.to_vec(), frame(HEADERS, END_HEADERS, 1, &[0x80])].concat();
        assert_eq!(
            rewrite(&bad_hpack, 64),
            Err(H2RewriteError::Hpack(HpackError::BadIndex(0)))
        );
    }
}
