//! Byte-level BPE (llama.cpp's `llm_tokenizer_bpe`).
//!
//! The pre-tokenizer cuts the text into words. Each word's bytes become GPT-2's printable characters
//! (or stay raw UTF-8 for SPM-style BPE), one symbol per character; then the adjacent pair with the
//! lowest merge rank (leftmost on ties) merges, until no adjacent pair has a rank. Finished symbols are
//! looked up as tokens, with a per-byte fallback.
//!
//! Merges are matched by string in llama.cpp. Here every string that occurs in the merge list or the
//! vocabulary has a numeric id (its token id, or an id past the vocabulary for merge parts that are not
//! tokens), so a merge is a `(left, right) → (rank, merged)` lookup on integers and nothing is allocated
//! while merging.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

use ferrite_gguf::{Array, GgufFile};

use crate::error::TokenizerError;
use crate::pretokenize::{PreSpec, PreTokenizer};
use crate::unicode::byte_to_char;
use crate::vocab::{KEY_MERGES, Vocab};

/// A string id meaning "this text is in neither the vocabulary nor the merges".
const NO_ID: u32 = u32::MAX;

pub(crate) struct Bpe {
    pre: PreTokenizer,
    /// `(left id, right id) → (rank, id of left+right)`; for a pair listed twice the first rank wins.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Ids of merge strings that are not tokens, numbered from the vocabulary size up.
    extra: HashMap<String, u32>,
    n_vocab: u32,
    /// String id of each byte's GPT-2 character.
    byte_ids: [u32; 256],
    byte_encode: bool,
    ignore_merges: bool,
    /// Gemma 4: a word made only of newlines is looked up whole.
    whole_newlines: bool,
}

impl Bpe {
    pub fn new(gguf: &GgufFile, vocab: &Vocab, spec: &PreSpec) -> Result<Bpe, TokenizerError> {
        let pre = PreTokenizer::new(spec.patterns)
            .map_err(|e| TokenizerError::BadPattern { pattern: e.pattern, reason: e.reason })?;
        let list = match gguf.opt_array(KEY_MERGES)? {
            Some(Array::String(m)) => m,
            Some(other) => {
                return Err(TokenizerError::BadMetadata {
                    key: KEY_MERGES,
                    problem: format!("expected an array of strings, found {:?}", other.elem_type()),
                });
            }
            None => return Err(TokenizerError::MissingKey(KEY_MERGES)),
        };
        let n_vocab = vocab.n_tokens() as u32;
        let mut extra: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: &str| -> u32 {
            if let Some(&id) = vocab.token_to_id.get(s) {
                return id;
            }
            let next = n_vocab + extra.len() as u32;
            *extra.entry(s.to_string()).or_insert(next)
        };
        let mut merges = HashMap::with_capacity(list.len());
        for (rank, line) in list.iter().enumerate() {
            // "left right", split at the first space after the first byte (a merge of a space-led token
            // keeps its leading space); a line without one is an empty pair, as in llama.cpp.
            let space = line.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|p| p + 1);
            let (left, right) = match space {
                Some(p) => (&line[..p], &line[p + 1..]),
                None => ("", ""),
            };
            let key = (intern(left), intern(right));
            let merged = intern(&format!("{left}{right}"));
            merges.entry(key).or_insert((rank as u32, merged));
        }
        let mut byte_ids = [NO_ID; 256];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            let s = byte_to_char(b as u8).to_string();
            *id = vocab.token_to_id.get(&s).or_else(|| extra.get(&s)).copied().unwrap_or(NO_ID);
        }
        Ok(Bpe {
            pre,
            merges,
            extra,
            n_vocab,
            byte_ids,
            byte_encode: spec.byte_encode,
            ignore_merges: spec.ignore_merges,
            whole_newlines: vocab.pre == "gemma4",
        })
    }

    /// Tokenize one raw-text fragment, appending ids to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        // Repeated words (most of them, in real text) are merged once per call.
        let mut cache: HashMap<&str, Range<usize>> = HashMap::new();
        for range in self.pre.split(text) {
            let word = &text[range];
            if let Some(r) = cache.get(word) {
                out.extend_from_within(r.clone());
                continue;
            }
            let start = out.len();
            self.encode_word(vocab, word, out);
            cache.insert(word, start..out.len());
        }
    }

    fn string_id(&self, vocab: &Vocab, s: &str) -> u32 {
        vocab.token_to_id.get(s).or_else(|| self.extra.get(s)).copied().unwrap_or(NO_ID)
    }

    fn encode_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        if self.ignore_merges {
            let whole = if self.byte_encode { word.bytes().map(byte_to_char).collect() } else { word.to_string() };
            if let Some(&id) = vocab.token_to_id.get(&whole) {
                out.push(id);
                return;
            }
        }
        if self.whole_newlines
            && word.bytes().all(|b| b == b'\n')
            && let Some(&id) = vocab.token_to_id.get(word)
        {
            out.push(id);
            return;
        }

        // One symbol per byte (byte-level) or per character (raw UTF-8); positions are bytes of `word`.
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        if self.byte_encode {
            symbols.extend(word.bytes().enumerate().map(|(i, b)| Symbol {
                start: i,
                len: 1,
                id: self.byte_ids[b as usize],
            }));
        } else {
            let mut buf = [0u8; 4];
            symbols.extend(word.char_indices().map(|(i, c)| Symbol {
                start: i,
                len: c.len_utf8(),
                id: self.string_id(vocab, c.encode_utf8(&mut buf)),
            }));
        }
        let n = symbols.len();
        // Linked list over the symbols; merged-away symbols keep len 0.
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut next: Vec<Option<usize>> = (0..n).map(|i| (i + 1 < n).then_some(i + 1)).collect();

        // (rank, left, right, size of left+right in bytes), smallest rank then leftmost first.
        let mut queue: BinaryHeap<Reverse<(u32, usize, usize, usize)>> = BinaryHeap::new();
        let try_add = |queue: &mut BinaryHeap<_>, symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (Some(l), Some(r)) = (left, right) else { return };
            if let Some(&(rank, _)) = self.merges.get(&(symbols[l].id, symbols[r].id)) {
                queue.push(Reverse((rank, l, r, symbols[l].len + symbols[r].len)));
            }
        };
        for i in 1..n {
            try_add(&mut queue, &symbols, Some(i - 1), Some(i));
        }
        while let Some(Reverse((_, l, r, size))) = queue.pop() {
            // A side that grew or was merged away makes the pair stale (lengths only grow, so equal
            // lengths mean the same two strings).
            if symbols[l].len == 0 || symbols[r].len == 0 || symbols[l].len + symbols[r].len != size {
                continue;
            }
            let Some(&(_, merged)) = self.merges.get(&(symbols[l].id, symbols[r].id)) else { continue };
            symbols[l].len += symbols[r].len;
            symbols[l].id = merged;
            symbols[r].len = 0;
            next[l] = next[r];
            if let Some(nn) = next[r] {
                prev[nn] = Some(l);
            }
            try_add(&mut queue, &symbols, prev[l], Some(l));
            try_add(&mut queue, &symbols, Some(l), next[l]);
        }

        for s in symbols.iter().filter(|s| s.len > 0) {
            if s.id < self.n_vocab {
                out.push(s.id);
                continue;
            }
            // Not a token: llama.cpp looks up each byte of the symbol's text on its own.
            let raw = &word.as_bytes()[s.start..s.start + s.len];
            if self.byte_encode {
                let text: String = raw.iter().map(|&b| byte_to_char(b)).collect();
                for b in text.bytes().filter(|b| b.is_ascii()) {
                    if let Some(&id) = vocab.token_to_id.get(&(b as char).to_string()) {
                        out.push(id);
                    }
                }
            } else {
                out.extend(raw.iter().filter_map(|&b| vocab.byte_tokens[b as usize]));
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    /// Byte offset in the word.
    start: usize,
    /// Bytes of the word covered; 0 once merged into the left neighbour.
    len: usize,
    /// String id of the symbol's text.
    id: u32,
}
