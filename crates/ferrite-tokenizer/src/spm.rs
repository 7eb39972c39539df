//! SentencePiece-style tokenization (llama.cpp's `llm_tokenizer_spm`).
//!
//! Start from single characters; repeatedly merge the adjacent pair whose concatenation is the
//! highest-scoring token (leftmost on ties) until no adjacent pair forms a token. Symbols that are not
//! tokens fall back to their bytes (`<0xXX>`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;

/// A run of the text; symbols form a linked list that shrinks as neighbours merge into the left one.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    /// Bytes; 0 once merged into the left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` and `right`, valid while their lengths still add up to `size`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    /// Highest score first, then leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

/// Tokenize `text` (already space-escaped with `▁`), appending ids to `out`.
pub(crate) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, c) in text.char_indices() {
        let i = symbols.len();
        let end = start + c.len_utf8();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (end < text.len()).then_some(i + 1),
        });
    }
    if symbols.is_empty() {
        return;
    }

    let mut queue = BinaryHeap::new();
    let try_add = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
        let (Some(left), Some(right)) = (left, right) else { return };
        let (l, r) = (&symbols[left], &symbols[right]);
        let size = l.len + r.len;
        if let Some(&id) = vocab.token_to_id.get(&text[l.start..l.start + size]) {
            queue.push(Bigram { score: vocab.scores[id as usize], left, right, size });
        }
    };
    for i in 1..symbols.len() {
        try_add(&mut queue, &symbols, Some(i - 1), Some(i));
    }

    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue; // one side has changed since this pair was queued
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        try_add(&mut queue, &symbols, symbols[b.left].prev, Some(b.left));
        try_add(&mut queue, &symbols, Some(b.left), symbols[b.left].next);
    }

    let mut at = Some(0);
    while let Some(i) = at {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match vocab.token_to_id.get(piece) {
            Some(&id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| byte_token(vocab, b))),
        }
        at = s.next;
    }
}

/// The byte-fallback token of `b`: `<0xXX>`, else the byte itself as a one-character token, else the
/// unknown token (llama.cpp throws here; a vocabulary without byte tokens cannot represent the byte).
fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    vocab.byte_tokens[b as usize]
        .or_else(|| if b < 0x80 { vocab.token_to_id.get(&(b as char).to_string()).copied() } else { None })
        .or(vocab.ids.unk)
}
