//! Structure-aware chunking within a token budget.
//!
//! Blocks (headings, paragraphs, code) are cut into pieces that fit the budget — a block whole when it
//! fits, else sentences (paragraphs) or lines (code), else words — and pieces are packed greedily into
//! chunks. A heading always starts a new chunk (a chunk never spans two sections); a chunk closed because
//! the budget ran out hands its last pieces, up to `overlap` tokens, to the next. Every chunk carries the
//! path of headings it sits under, which is embedded and indexed with it (a later chunk of a long section
//! still knows its section), and the final text, counted with the embedding model's tokenizer, is
//! checked to fit the model's window with that context: nothing is truncated at embedding time.

use std::ops::Range;

use crate::extract::{BlockKind, Extracted, slice_chars};

/// Chunking settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkParams {
    /// Most tokens of a chunk, its heading context included (specials excluded).
    pub max_tokens: usize,
    /// Tokens carried over from the end of a chunk closed for lack of room.
    pub overlap: usize,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams { max_tokens: 200, overlap: 32 }
    }
}

/// A chunk: a span of the document's text (characters) and the headings it sits under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkSpan {
    pub span: Range<usize>,
    /// "Title > Section > Subsection", or empty.
    pub context: String,
}

impl ChunkSpan {
    /// What gets embedded and indexed: the heading context, then the text (unless the text starts with
    /// that heading already).
    pub fn indexed_text(&self, text: &str) -> String {
        indexed_text(&self.context, slice_chars(text, self.span.clone()))
    }
}

/// A chunk's `body` as it is embedded and indexed, under its heading `context`.
pub fn indexed_text(context: &str, body: &str) -> String {
    match context.rsplit(" > ").next() {
        Some(last) if !context.is_empty() && !body.trim_start().trim_start_matches('#').trim_start().starts_with(last) => {
            format!("{context}\n{body}")
        }
        _ => body.to_string(),
    }
}

#[derive(Clone, Debug)]
struct Piece {
    span: Range<usize>,
    tokens: usize,
    heading: bool,
    context: String,
}

/// The longest heading context kept, in tokens (deeper levels are dropped first).
const MAX_CONTEXT_TOKENS: usize = 48;

/// Chunk `doc`, counting tokens with `count`.
pub fn chunk(doc: &Extracted, params: ChunkParams, count: &dyn Fn(&str) -> usize) -> Vec<ChunkSpan> {
    let max = params.max_tokens.max(8);
    let text = &doc.text;
    // Char offsets → byte offsets once, for slicing pieces.
    let mut byte_of: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    byte_of.push(text.len());
    let slice = |r: &Range<usize>| &text[byte_of[r.start]..byte_of[r.end]];

    // 1. Pieces, each with its section context.
    let mut stack: Vec<(u8, String)> = Vec::new();
    let mut pieces: Vec<Piece> = Vec::new();
    for b in &doc.blocks {
        let heading = matches!(b.kind, BlockKind::Heading { .. });
        if let BlockKind::Heading { level } = b.kind {
            stack.retain(|(l, _)| *l < level);
            let title = slice(&b.span).trim().trim_start_matches('#').trim().to_string();
            stack.push((level, title));
        }
        let context = context_of(&stack, count);
        let room = max.saturating_sub(count(&context) + 1).max(max / 2);
        for span in split_to_fit(b.span.clone(), b.kind, room, &slice, count) {
            let tokens = count(slice(&span));
            pieces.push(Piece { span, tokens, heading, context: context.clone() });
        }
    }

    // 2. Pack.
    let mut chunks: Vec<ChunkSpan> = Vec::new();
    let mut cur: Vec<Piece> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let p = &pieces[i];
        let has_body = cur.iter().any(|c| !c.heading);
        let context_tokens = cur.first().map_or(count(&p.context), |c| count(&c.context));
        let budget = max.saturating_sub(context_tokens + 1).max(max / 2);
        let used: usize = cur.iter().map(|c| c.tokens).sum();
        if p.heading && has_body {
            emit(&mut chunks, &cur, text, &byte_of, max, count);
            cur.clear();
            continue; // the heading starts the next chunk, no overlap across sections
        }
        if !cur.is_empty() && used + p.tokens > budget {
            emit(&mut chunks, &cur, text, &byte_of, max, count);
            // Overlap: the last pieces of what was emitted, up to `overlap` tokens (never all of it).
            let mut carry = Vec::new();
            let mut t = 0;
            for c in cur.iter().rev().skip_while(|c| c.heading) {
                if t + c.tokens > params.overlap || carry.len() + 1 >= cur.len() || c.heading {
                    break;
                }
                t += c.tokens;
                carry.push(c.clone());
            }
            carry.reverse();
            cur = carry;
            continue;
        }
        cur.push(p.clone());
        i += 1;
    }
    emit(&mut chunks, &cur, text, &byte_of, max, count);
    chunks
}

/// Push the chunk made of `pieces`, dropping trailing pieces if the real text (with whatever lies
/// between the pieces) overflows the window.
fn emit(chunks: &mut Vec<ChunkSpan>, pieces: &[Piece], text: &str, byte_of: &[usize], max: usize, count: &dyn Fn(&str) -> usize) {
    let mut n = pieces.len();
    while n > 0 {
        let span = pieces[0].span.start..pieces[n - 1].span.end;
        let c = ChunkSpan { span, context: pieces[0].context.clone() };
        let body = &text[byte_of[c.span.start]..byte_of[c.span.end]];
        if body.trim().is_empty() {
            return;
        }
        if n == 1 || count(&c.indexed_text(text)) <= max {
            // A chunk fully inside the previous one (an overlap that ended up alone) adds nothing.
            if !chunks.last().is_some_and(|l| l.span.start <= c.span.start && c.span.end <= l.span.end) {
                chunks.push(c);
            }
            if n < pieces.len() {
                emit(chunks, &pieces[n..], text, byte_of, max, count);
            }
            return;
        }
        n -= 1;
    }
}

/// "A > B > C" of the heading stack, shortened from the inside out to fit [`MAX_CONTEXT_TOKENS`].
fn context_of(stack: &[(u8, String)], count: &dyn Fn(&str) -> usize) -> String {
    let names: Vec<&str> = stack.iter().map(|(_, t)| t.as_str()).filter(|t| !t.is_empty()).collect();
    for skip in 0..names.len() {
        let ctx = names[skip..].join(" > ");
        if count(&ctx) <= MAX_CONTEXT_TOKENS {
            return ctx;
        }
    }
    String::new()
}

/// `span` whole if it fits `room` tokens; else its sentences (paragraphs and headings) or lines (code),
/// with anything still too long cut between words. Sentences stay separate pieces (packing joins them
/// again), so the overlap between chunks can be a sentence rather than a whole block.
fn split_to_fit<'a>(
    span: Range<usize>,
    kind: BlockKind,
    room: usize,
    slice: &dyn Fn(&Range<usize>) -> &'a str,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Range<usize>> {
    if count(slice(&span)) <= room {
        return vec![span];
    }
    let s = slice(&span);
    let units = match kind {
        BlockKind::Code => boundaries(s, span.start, |prev, _| prev == '\n'),
        _ => boundaries(s, span.start, |prev, next| (matches!(prev, '.' | '?' | '!' | ';' | ':') && next.is_whitespace()) || prev == '\n'),
    };
    let mut out: Vec<Range<usize>> = Vec::new();
    for u in units {
        let piece = slice(&u);
        if count(piece) > room {
            out.extend(split_words(u, room, slice, count));
        } else {
            out.push(u);
        }
    }
    out
}

/// Split `s` (starting at char `base`) after every char where `cut(prev, next)`, trimming whitespace
/// from each part's ends.
fn boundaries(s: &str, base: usize, cut: impl Fn(char, char) -> bool) -> Vec<Range<usize>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=chars.len() {
        if i == chars.len() || cut(chars[i - 1], chars[i]) {
            let (mut a, mut b) = (start, i);
            while a < b && chars[a].is_whitespace() {
                a += 1;
            }
            while b > a && chars[b - 1].is_whitespace() {
                b -= 1;
            }
            if b > a {
                out.push(base + a..base + b);
            }
            start = i;
        }
    }
    out
}

/// Cut between words so each part fits `room` tokens (a single word longer than that stands alone: the
/// final check in [`emit`] then keeps it as one chunk, and the tokenizer's own truncation is the only
/// thing that can shorten it — counted and reported by the embedder).
fn split_words<'a>(
    span: Range<usize>,
    room: usize,
    slice: &dyn Fn(&Range<usize>) -> &'a str,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Range<usize>> {
    let words = boundaries(slice(&span), span.start, |prev, next| !prev.is_whitespace() && next.is_whitespace());
    let mut out: Vec<Range<usize>> = Vec::new();
    for w in words {
        if let Some(last) = out.last_mut() {
            let merged = last.start..w.end;
            if count(slice(&merged)) <= room {
                *last = merged;
                continue;
            }
        }
        out.push(w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{Format, extract};

    /// One token per whitespace-separated word: easy to reason about.
    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn chunks_of(text: &str, format: Format, params: ChunkParams) -> (Extracted, Vec<ChunkSpan>) {
        let doc = extract(format, text.as_bytes(), std::path::Path::new("t")).unwrap();
        let c = chunk(&doc, params, &words);
        (doc, c)
    }

    #[test]
    fn headings_start_chunks_and_context_follows_sections() {
        let t = "# A\n\nalpha one.\n\n## B\n\nbeta two three.\n\n# C\n\ngamma.\n";
        let (doc, c) = chunks_of(t, Format::Markdown, ChunkParams { max_tokens: 50, overlap: 5 });
        let bodies: Vec<&str> = c.iter().map(|c| slice_chars(&doc.text, c.span.clone())).collect();
        assert_eq!(bodies, ["# A\n\nalpha one.", "## B\n\nbeta two three.", "# C\n\ngamma."]);
        assert_eq!(c.iter().map(|c| c.context.as_str()).collect::<Vec<_>>(), ["A", "A > B", "C"]);
        // The context is not repeated when the chunk starts with its heading…
        assert_eq!(c[1].indexed_text(&doc.text), "## B\n\nbeta two three.");
    }

    #[test]
    fn budget_overlap_and_context_on_later_chunks() {
        let para: String = (0..30).map(|i| format!("w{i}. ")).collect();
        let t = format!("Title\n=====\n\n{para}\n");
        let (doc, c) = chunks_of(&t, Format::Rst, ChunkParams { max_tokens: 12, overlap: 3 });
        assert!(c.len() > 3);
        for ch in &c {
            let indexed = ch.indexed_text(&doc.text);
            assert!(words(&indexed) <= 12, "{indexed:?}");
        }
        // …and later chunks carry it, and start with the last ≤ 3 tokens of the previous chunk.
        assert!(c[2].indexed_text(&doc.text).starts_with("Title\n"));
        let prev_end: Vec<&str> = slice_chars(&doc.text, c[1].span.clone()).split_whitespace().collect();
        let next_start: Vec<&str> = slice_chars(&doc.text, c[2].span.clone()).split_whitespace().collect();
        let shared = prev_end.iter().rev().take(3).rev().copied().collect::<Vec<_>>();
        assert!(next_start.starts_with(&shared), "{prev_end:?} / {next_start:?}");
        // Every word of the document is in some chunk.
        let covered: std::collections::HashSet<&str> =
            c.iter().flat_map(|ch| slice_chars(&doc.text, ch.span.clone()).split_whitespace()).collect();
        for w in para.split_whitespace() {
            assert!(covered.contains(w), "{w} lost");
        }
    }

    #[test]
    fn code_blocks_split_by_lines_only() {
        let code: String = (0..20).map(|i| format!("    line{i} = {i}\n")).collect();
        let t = format!("Intro::\n\n{code}\nEnd.\n");
        let (doc, c) = chunks_of(&t, Format::Rst, ChunkParams { max_tokens: 10, overlap: 0 });
        for ch in &c {
            let body = slice_chars(&doc.text, ch.span.clone());
            for l in body.lines().filter(|l| l.contains("line")) {
                assert_eq!(l.split_whitespace().count(), 3, "a code line was cut: {l:?}");
            }
        }
    }

    #[test]
    fn huge_word_is_kept_whole() {
        let t = format!("{}\n", "x".repeat(500));
        let (_, c) = chunks_of(&t, Format::Text, ChunkParams { max_tokens: 10, overlap: 2 });
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].span, 0..500);
    }
}
