//! HPACK's Huffman code (RFC 7541 §5.2, Appendix B): decoding by walking a code tree
//! built once, with the padding rules the RFC makes errors.

// Bit-level code: narrowing casts take the low bits on purpose.
#![allow(clippy::cast_possible_truncation)]

use std::sync::OnceLock;

use super::HpackError;

#[rustfmt::skip]
mod codes;

/// A node of the decoding tree: for bit 0 and bit 1, the next node or a symbol.
#[derive(Clone, Copy)]
enum Next {
    Node(u16),
    Symbol(u16),
    Invalid,
}

/// The decoding tree: node 0 is the root.
fn tree() -> &'static [[Next; 2]] {
    static TREE: OnceLock<Vec<[Next; 2]>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut nodes = vec![[Next::Invalid; 2]];
        for (symbol, &(code, len)) in codes::CODES.iter().enumerate() {
            let mut node = 0usize;
            for i in (0..len).rev() {
                let bit = ((code >> i) & 1) as usize;
                if i == 0 {
                    nodes[node][bit] = Next::Symbol(symbol as u16);
                } else {
                    node = if let Next::Node(n) = nodes[node][bit] {
                        n as usize
                    } else {
                        nodes.push([Next::Invalid; 2]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Next::Node(n as u16);
                        n
                    };
                }
            }
        }
        nodes
    })
}

/// The symbol number of the end-of-string code, which must never appear in a string.
const EOS: u16 = 256;

/// Appends the decoding of `input` to `out`.
///
/// Errors (RFC 7541 §5.2): the EOS symbol inside the string, padding longer than 7 bits,
/// and padding that is not the most significant bits of EOS (all ones).
pub(super) fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let tree = tree();
    let mut node = 0usize;
    // Bits read since the last complete symbol, and whether they were all ones.
    let mut pending = 0u32;
    let mut all_ones = true;
    for &byte in input {
        for i in (0..8).rev() {
            let bit = usize::from((byte >> i) & 1);
            pending += 1;
            all_ones &= bit == 1;
            match tree[node][bit] {
                Next::Node(n) => node = n as usize,
                Next::Symbol(EOS) => return Err(HpackError::HuffmanEos),
                Next::Symbol(s) => {
                    out.push(s as u8);
                    node = 0;
                    pending = 0;
                    all_ones = true;
                }
                // Every 30-bit prefix of ones leads to EOS; no other path is incomplete.
                Next::Invalid => return Err(HpackError::HuffmanInvalid),
            }
        }
    }
    if pending > 7 {
        return Err(HpackError::HuffmanPadding);
    }
    if !all_ones {
        return Err(HpackError::HuffmanPadding);
    }
    Ok(())
}

/// The Huffman encoding of `input` (tests and fuzzing build inputs with it; the rewriter
/// itself never Huffman-encodes).
pub(crate) fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in input {
        let (code, len) = codes::CODES[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        // Pad with the most significant bits of EOS (ones).
        out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7541_appendix_c4_examples_decode() {
        // C.4.1: "www.example.com"
        let encoded = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut out = Vec::new();
        decode(&encoded, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        assert_eq!(encode(b"www.example.com"), encoded);
        // C.4.2: "no-cache"
        let mut out = Vec::new();
        decode(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], &mut out).unwrap();
        assert_eq!(out, b"no-cache");
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        decode(&encode(&all), &mut out).unwrap();
        assert_eq!(out, all);
    }

    #[test]
    fn bad_padding_and_eos_are_errors() {
        let mut out = Vec::new();
        // 'a' is 00011 (5 bits); padding with zeros is not EOS's prefix.
        assert_eq!(
            decode(&[0b0001_1000], &mut out),
            Err(HpackError::HuffmanPadding)
        );
        // A whole byte of ones after a complete string is padding longer than 7 bits.
        let mut padded = encode(b"ab");
        padded.push(0xff);
        assert_eq!(decode(&padded, &mut out), Err(HpackError::HuffmanPadding));
        // EOS itself (30 ones) inside the string.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xfc], &mut out),
            Err(HpackError::HuffmanEos)
        );
    }
}
