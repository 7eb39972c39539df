//! Ids → text: token pieces, whole-sequence detokenization, and the incremental [`Decoder`].
//!
//! A piece is bytes, not text: a byte-fallback token is one byte of a UTF-8 sequence, and byte-level BPE
//! tokens often end mid-character. Text is assembled from the bytes and made a `String` only at the end
//! (lossily, if the ids spell invalid UTF-8). Detokenization follows llama.cpp's `llama_detokenize`:
//! the first piece loses one leading space where the vocabulary adds a space prefix, and vocabularies
//! with `clean_up_tokenization_spaces` get its three clean-up passes.

use crate::Tokenizer;
use crate::unicode::char_to_byte;
use crate::vocab::{TokenizerKind, Vocab, attr};

/// `llama_token_to_piece(id, special = true)`, computed once per token when the vocabulary is loaded.
pub(crate) fn piece_for_cache(vocab: &Vocab, id: u32) -> Vec<u8> {
    let a = vocab.attr(id);
    let text = &vocab.tokens[id as usize];
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if a & attr::NORMAL != 0 {
        return match vocab.kind {
            TokenizerKind::Spm => text.replace('▁', " ").into_bytes(),
            TokenizerKind::Bpe if vocab.escape_whitespaces => text.replace('▁', " ").into_bytes(),
            TokenizerKind::Bpe => byte_decode(text),
        };
    }
    if a & attr::BYTE != 0 {
        // "<0xXX>"; like strtol, an unparsable value is 0.
        let hex = text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
        return vec![hex];
    }
    Vec::new() // unused and undefined tokens render as nothing
}

/// A byte-level BPE token's text back to its bytes. A character outside GPT-2's byte alphabet cannot
/// come from a byte; llama.cpp renders it as `[UNK_BYTE_0x..<text>]`, and so do we.
fn byte_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The piece of `id`; control and unknown tokens are empty unless `special`. Out-of-range ids are empty.
pub(crate) fn piece(vocab: &Vocab, id: u32, special: bool) -> &[u8] {
    match vocab.pieces.get(id as usize) {
        Some(p) if special || vocab.attr(id) & (attr::UNKNOWN | attr::CONTROL) == 0 => p,
        _ => &[],
    }
}

/// Options of [`Tokenizer::detokenize`], after llama.cpp's `llama_detokenize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Drop a leading BOS and a trailing EOS where the vocabulary adds them.
    pub remove_special: bool,
    /// Render control tokens as their text instead of nothing.
    pub unparse_special: bool,
}

pub(crate) fn detokenize(vocab: &Vocab, ids: &[u32], opts: DecodeOptions) -> Vec<u8> {
    let mut ids = ids;
    let mut strip_space = vocab.add_space_prefix;
    if opts.remove_special && vocab.add_bos && ids.first().is_some_and(|&id| Some(id) == vocab.ids.bos) {
        strip_space = false;
        ids = &ids[1..];
    }
    if opts.remove_special && vocab.add_eos && ids.last().is_some_and(|&id| Some(id) == vocab.ids.eos) {
        ids = &ids[..ids.len() - 1];
    }
    let mut raw = Vec::new();
    for &id in ids {
        let p = piece(vocab, id, opts.unparse_special);
        raw.extend_from_slice(if strip_space { p.strip_prefix(b" ").unwrap_or(p) } else { p });
        strip_space = false;
    }
    if !vocab.clean_spaces {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut cleaner = Cleaner::default();
    cleaner.push(&raw, &mut out);
    cleaner.finish(&mut out);
    out
}

/// Streams ids into text: each [`push`](Decoder::push) returns the text that is complete so far, holding
/// back the bytes of a character that later tokens will finish (and, for vocabularies that clean up
/// spaces, a space or apostrophe whose fate depends on what follows). Concatenating every `push` and a
/// final [`flush`](Decoder::flush) gives exactly [`Tokenizer::decode`] of the whole sequence.
#[derive(Clone, Debug)]
pub struct Decoder {
    tokenizer: Tokenizer,
    special: bool,
    first: bool,
    cleaner: Option<Cleaner>,
    /// Bytes not yet returned: an incomplete UTF-8 sequence at the end.
    pending: Vec<u8>,
}

impl Decoder {
    /// A decoder that renders control tokens as nothing, like [`Tokenizer::decode`].
    pub fn new(tokenizer: Tokenizer) -> Decoder {
        Decoder::with_special(tokenizer, false)
    }

    /// A decoder that renders control tokens as their text when `special` is set.
    pub fn with_special(tokenizer: Tokenizer, special: bool) -> Decoder {
        let cleaner = tokenizer.vocab().clean_spaces.then(Cleaner::default);
        Decoder { tokenizer, special, first: true, cleaner, pending: Vec::new() }
    }

    /// For ids that continue earlier text (generated after a prompt): the first piece keeps its leading
    /// space, as llama.cpp's per-token streaming prints it. Only matters where the vocabulary adds a
    /// space prefix.
    pub fn continuing(mut self) -> Decoder {
        self.first = false;
        self
    }

    /// Add one token; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let vocab = self.tokenizer.vocab();
        let mut p = piece(vocab, id, self.special);
        if self.first && vocab.add_space_prefix {
            p = p.strip_prefix(b" ").unwrap_or(p);
        }
        self.first = false;
        match &mut self.cleaner {
            Some(c) => c.push(p, &mut self.pending),
            None => self.pending.extend_from_slice(p),
        }
        take_complete_utf8(&mut self.pending)
    }

    /// End of the sequence: returns everything held back (an unfinished character becomes U+FFFD). Pushes
    /// after a flush start a new text (without the first-piece space rule).
    pub fn flush(&mut self) -> String {
        if let Some(c) = &mut self.cleaner {
            c.finish(&mut self.pending);
        }
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Remove and return the longest prefix of `buf` that is settled text: valid UTF-8, with each invalid
/// sequence replaced by U+FFFD exactly as `String::from_utf8_lossy` would, leaving only a trailing
/// sequence that more bytes could still complete.
fn take_complete_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut at = 0;
    loop {
        match std::str::from_utf8(&buf[at..]) {
            Ok(s) => {
                out.push_str(s);
                at = buf.len();
                break;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(std::str::from_utf8(&buf[at..at + valid]).unwrap_or_default());
                at += valid;
                match e.error_len() {
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        at += bad;
                    }
                    None => break, // incomplete: wait for more bytes
                }
            }
        }
    }
    buf.drain(..at);
    out
}

/// llama.cpp's three clean-up passes (` ?` → `?` for `?!.,`; ` ' ` → `'`; ` 's`, ` 'm`, ` 're`, ` 've`
/// lose their space), as a stream: each pass holds back at most a space and an apostrophe with two bytes
/// of look-ahead, so feeding bytes in any chunks gives the same result as the whole text at once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cleaner {
    p1: Punct,
    p2: LoneQuote,
    p3: Contraction,
}

impl Cleaner {
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &x in bytes {
            self.p1.push(x, &mut a);
        }
        for x in a {
            self.p2.push(x, &mut b);
        }
        for x in b {
            self.p3.push(x, out);
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        self.p1.finish(&mut a);
        for x in a {
            self.p2.push(x, &mut b);
        }
        self.p2.finish(&mut b);
        for x in b {
            self.p3.push(x, out);
        }
        self.p3.finish(out);
    }
}

/// Pass 1: a space directly before `?`, `!`, `.` or `,` is dropped.
#[derive(Clone, Debug, Default)]
struct Punct {
    space: bool,
}

impl Punct {
    fn push(&mut self, x: u8, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.space) && !matches!(x, b'?' | b'!' | b'.' | b',') {
            out.push(b' ');
        }
        if x == b' ' {
            self.space = true;
        } else {
            out.push(x);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.space) {
            out.push(b' ');
        }
    }
}

/// Pass 2: ` ' ` becomes `'`. The swallowed second space cannot serve as the first space of another
/// match (llama.cpp overwrites it with NUL).
#[derive(Clone, Debug, Default)]
struct LoneQuote {
    /// The previous input byte as the pass sees it (`Some(0)` for a swallowed space).
    prev: Option<u8>,
    /// The last written byte, a space, not yet returned because an apostrophe may remove it.
    held_space: bool,
    /// An apostrophe after a space, waiting for the next byte.
    quote: bool,
}

impl LoneQuote {
    fn write(&mut self, x: u8, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_space) {
            out.push(b' ');
        }
        if x == b' ' {
            self.held_space = true;
        } else {
            out.push(x);
        }
    }

    fn push(&mut self, x: u8, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.quote) {
            if x == b' ' {
                self.held_space = false;
                self.write(b'\'', out);
                self.prev = Some(0);
                return;
            }
            self.write(b'\'', out);
            self.prev = Some(b'\'');
        }
        if x == b'\'' && self.prev == Some(b' ') {
            self.quote = true;
            return;
        }
        self.write(x, out);
        self.prev = Some(x);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.quote) {
            self.write(b'\'', out);
        }
        if std::mem::take(&mut self.held_space) {
            out.push(b' ');
        }
        self.prev = None;
    }
}

/// Pass 3: the space of ` 's`, ` 'm`, ` 're` and ` 've` is dropped.
#[derive(Clone, Debug, Default)]
struct Contraction {
    prev: Option<u8>,
    held_space: bool,
    /// An apostrophe after a space, with the bytes seen after it (at most two).
    quote: Option<Vec<u8>>,
}

impl Contraction {
    fn write(&mut self, x: u8, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_space) {
            out.push(b' ');
        }
        if x == b' ' {
            self.held_space = true;
        } else {
            out.push(x);
        }
        self.prev = Some(x);
    }

    /// Whether the pending apostrophe removes the space before it, if the bytes after it decide that
    /// (`at_end`: no more bytes will come).
    fn decide(after: &[u8], at_end: bool) -> Option<bool> {
        match after {
            [] if at_end => Some(false),
            [] => None,
            [b's' | b'm', ..] => Some(true),
            [b'r' | b'v'] if !at_end => None,
            [b'r' | b'v', x2, ..] => Some(*x2 == b'e'),
            _ => Some(false),
        }
    }

    fn resolve(&mut self, at_end: bool, out: &mut Vec<u8>) {
        while let Some(after) = &self.quote {
            let Some(remove) = Self::decide(after, at_end) else { return };
            let after = self.quote.take().unwrap_or_default();
            if remove {
                self.held_space = false;
            }
            self.write(b'\'', out);
            for x in after {
                self.push_plain(x, out);
            }
        }
    }

    fn push_plain(&mut self, x: u8, out: &mut Vec<u8>) {
        if let Some(after) = &mut self.quote {
            after.push(x);
            return;
        }
        if x == b'\'' && self.prev == Some(b' ') {
            self.quote = Some(Vec::new());
        } else {
            self.write(x, out);
        }
    }

    fn push(&mut self, x: u8, out: &mut Vec<u8>) {
        self.push_plain(x, out);
        self.resolve(false, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.resolve(true, out);
        if std::mem::take(&mut self.held_space) {
            out.push(b' ');
        }
        self.prev = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line-by-line port of llama.cpp's in-place clean-up (the reference for the streaming passes).
    fn clean_reference(text: &[u8]) -> Vec<u8> {
        let mut t = text.to_vec();
        let pass1 = |t: &mut Vec<u8>| {
            let n = t.len();
            let mut total = usize::from(n > 0);
            for i in 1..n {
                let x = t[i];
                if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
                    total -= 1;
                }
                t[total] = x;
                total += 1;
            }
            t.truncate(total);
        };
        let pass2 = |t: &mut Vec<u8>| {
            let n = t.len();
            let mut total = usize::from(n > 0);
            let mut i = 1;
            while i < n {
                let x = t[i];
                if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
                    total -= 1;
                    i += 1;
                    t[i] = 0;
                }
                t[total] = x;
                total += 1;
                i += 1;
            }
            t.truncate(total);
        };
        let pass3 = |t: &mut Vec<u8>| {
            let n = t.len();
            let mut total = usize::from(n > 0);
            for i in 1..n {
                let x = t[i];
                if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
                    let x1 = t[i + 1];
                    if x1 == b't' || x1 == b'd' {
                    } else if x1 == b's' || x1 == b'm' {
                        total -= 1;
                    } else if i + 2 < n {
                        let x2 = t[i + 2];
                        if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                            total -= 1;
                        }
                    }
                }
                t[total] = x;
                total += 1;
            }
            t.truncate(total);
        };
        pass1(&mut t);
        pass2(&mut t);
        pass3(&mut t);
        t
    }

    fn clean_streaming(text: &[u8], chunk: usize) -> Vec<u8> {
        let mut c = Cleaner::default();
        let mut out = Vec::new();
        for part in text.chunks(chunk.max(1)) {
            c.push(part, &mut out);
        }
        c.finish(&mut out);
        out
    }

    /// Every string of up to 6 bytes over the bytes that matter, fed whole and one byte at a time.
    #[test]
    fn streaming_clean_up_equals_llama_cpp_passes() {
        let alphabet = b" '?.smrvet";
        for len in 0..=6u32 {
            let count = alphabet.len().pow(len);
            for mut k in 0..count {
                let mut s = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    s.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let want = clean_reference(&s);
                for chunk in [1, 2, 3, 64] {
                    assert_eq!(clean_streaming(&s, chunk), want, "{:?} chunk {chunk}", String::from_utf8_lossy(&s));
                }
            }
        }
    }

    #[test]
    fn utf8_assembly_matches_lossy_conversion() {
        let cases: &[&[u8]] =
            &[b"ok", "é".as_bytes(), &[0xE2, 0x82], &[0xE2, 0x82, 0x41], &[0xFF, b'a'], &[0xF0, 0x9F, 0x98, 0x81]];
        for &bytes in cases {
            for split in 0..=bytes.len() {
                let mut buf = Vec::new();
                let mut got = String::new();
                buf.extend_from_slice(&bytes[..split]);
                got.push_str(&take_complete_utf8(&mut buf));
                buf.extend_from_slice(&bytes[split..]);
                got.push_str(&take_complete_utf8(&mut buf));
                got.push_str(&String::from_utf8_lossy(&buf));
                assert_eq!(got, String::from_utf8_lossy(bytes), "{bytes:?} split at {split}");
            }
        }
    }
}
