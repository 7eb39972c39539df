//! Cutting special tokens out of raw text before tokenization (llama.cpp's `tokenizer_st_partition`).
//!
//! Special tokens are tried longest first; each one splits every remaining text fragment at all of its
//! occurrences, left to right. Control and unknown tokens are only recognised when `parse_special` is
//! set; user-defined tokens always are. A token with the LSTRIP (RSTRIP) attribute also swallows the
//! ASCII white space before (after) it.

use std::ops::Range;

use crate::vocab::{Vocab, attr};

/// A piece of the input: raw text still to be tokenized, or a special token already recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

pub(crate) fn partition(vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text(0..text.len())];
    let present = Bigrams::of(text.as_bytes());
    for &id in &vocab.special_tokens {
        let a = vocab.attr(id);
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = vocab.tokens[id as usize].as_str();
        // Fragments are pieces of `text`: a token absent from it cannot split any of them. The bigram
        // filter skips most of a large vocabulary's special tokens without scanning the text.
        if needle.is_empty() || !present.may_contain(needle.as_bytes()) || !text.contains(needle) {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            match f {
                Fragment::Text(r) => split(text, r, needle, id, a, &mut next),
                token => next.push(token),
            }
        }
        frags = next;
    }
    frags
}

/// Split the text fragment `r` at every occurrence of `needle`.
fn split(text: &str, r: Range<usize>, needle: &str, id: u32, a: u32, out: &mut Vec<Fragment>) {
    let bytes = text.as_bytes();
    let (mut start, end) = (r.start, r.end);
    loop {
        let Some(found) = text[start..end].find(needle) else {
            if start < end {
                out.push(Fragment::Text(start..end));
            }
            return;
        };
        let at = start + found;
        let mut left_end = at;
        if a & attr::LSTRIP != 0 {
            while left_end > start && is_c_space(bytes[left_end - 1]) {
                left_end -= 1;
            }
        }
        if left_end > start {
            out.push(Fragment::Text(start..left_end));
        }
        out.push(Fragment::Token(id));
        start = at + needle.len();
        if a & attr::RSTRIP != 0 {
            while start < end && is_c_space(bytes[start]) {
                start += 1;
            }
        }
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Which bytes and adjacent byte pairs occur in a text (a 64 Ki-bit set).
struct Bigrams {
    pairs: Vec<u64>,
    singles: [bool; 256],
}

impl Bigrams {
    fn of(text: &[u8]) -> Bigrams {
        let mut pairs = vec![0u64; 65536 / 64];
        let mut singles = [false; 256];
        for &b in text {
            singles[b as usize] = true;
        }
        for w in text.windows(2) {
            let k = (w[0] as usize) << 8 | w[1] as usize;
            pairs[k / 64] |= 1 << (k % 64);
        }
        Bigrams { pairs, singles }
    }

    /// False only if `needle` certainly does not occur.
    fn may_contain(&self, needle: &[u8]) -> bool {
        needle.iter().all(|&b| self.singles[b as usize])
            && needle.windows(2).all(|w| {
                let k = (w[0] as usize) << 8 | w[1] as usize;
                self.pairs[k / 64] & (1 << (k % 64)) != 0
            })
    }
}
