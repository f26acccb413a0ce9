//! Not public API: the serving layer's `:authority` rewriter without a socket, for the
//! `h2_authority` fuzz target and its corpus replay in `tests/fuzz_corpus.rs`.

pub use super::authority::{Frames, AUTHORITY, MAX_BLOCK};
pub use super::hpack::Indexing;
use super::{authority, hpack, H2RewriteError};

/// One connection's rewriter (for benchmarks that feed it request by request).
pub use super::authority::AuthorityRewriter as Rewriter;

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Runs a client byte stream through one connection's rewriter, fed `chunk` bytes at a
/// time (at least 1).
pub fn rewrite(stream: &[u8], chunk: usize) -> Result<Vec<u8>, H2RewriteError> {
    let mut rewriter = authority::AuthorityRewriter::new();
    let (mut out, mut drained) = (Vec::new(), Vec::new());
    for mut piece in stream.chunks(chunk.max(1)) {
        while !piece.is_empty() {
            let taken = rewriter.feed(piece, &mut out)?;
            piece = &piece[taken..];
            if taken == 0 || out.len() >= authority::HIGH_WATER {
                // The reader drains the output before feeding more.
                drained.append(&mut out);
            }
        }
    }
    drained.append(&mut out);
    Ok(drained)
}

/// Splits frames (after the preface) into complete header blocks `(stream, block)` and
/// the bytes of every other complete frame; `None` if a block is malformed.
pub fn split_frames(frames: &[u8]) -> Option<Frames> {
    authority::split_frames(frames)
}

/// Appends one field, encoded as the rewriter encodes (never indexed in the table).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], indexing: Indexing) {
    hpack::encode_field(out, name, value, indexing);
}

/// The HPACK Huffman encoding of `bytes`.
pub fn huffman(bytes: &[u8]) -> Vec<u8> {
    hpack::huffman_encode(bytes)
}
