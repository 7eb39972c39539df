//! Documents to text with structure: each supported format becomes the text that is indexed (for plain
//! text, Markdown and reStructuredText the file itself, so offsets point into the file; for HTML the
//! visible text; for PDF the text layer) and the blocks it is made of — headings, paragraphs, code — as
//! character spans of that text. The chunker packs blocks, never splitting one it does not have to.

use std::ops::Range;
use std::path::Path;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::RagError;

/// The formats ingestion understands, by file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Markdown,
    Rst,
    Html,
    Pdf,
}

impl Format {
    /// The format of `path` by its name (`.rst.txt`, as Sphinx ships sources, is reST), or `None` for
    /// files ingestion skips.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let ext = |e: &str| name.ends_with(e);
        Some(if ext(".rst") || ext(".rst.txt") || ext(".rest") {
            Format::Rst
        } else if ext(".md") || ext(".markdown") {
            Format::Markdown
        } else if ext(".html") || ext(".htm") || ext(".xhtml") {
            Format::Html
        } else if ext(".pdf") {
            Format::Pdf
        } else if ext(".txt") || ext(".text") {
            Format::Text
        } else {
            return None;
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A section title; `level` 1 is the outermost.
    Heading {
        level: u8,
    },
    Paragraph,
    /// Code or other preformatted text: split by lines only, never inside one.
    Code,
}

/// A block of the text: `span` in characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    pub span: Range<usize>,
}

/// A document's indexable text and its blocks, in order, non-overlapping.
#[derive(Clone, Debug)]
pub struct Extracted {
    pub text: String,
    pub blocks: Vec<Block>,
    /// The first top-level heading, if any.
    pub title: Option<String>,
}

/// Extract `bytes` as `format`.
pub fn extract(format: Format, bytes: &[u8], path: &Path) -> Result<Extracted, RagError> {
    let utf8 = || {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| RagError::Document { path: path.to_path_buf(), problem: format!("not UTF-8 text: {e}") })
    };
    let (text, blocks) = match format {
        Format::Text => {
            let t = utf8()?;
            let b = paragraphs(&t);
            (t, b)
        }
        Format::Rst => {
            let t = utf8()?;
            let b = rst_blocks(&t);
            (t, b)
        }
        Format::Markdown => {
            let t = utf8()?;
            let b = markdown_blocks(&t);
            (t, b)
        }
        Format::Html => html_text(&String::from_utf8_lossy(bytes)),
        Format::Pdf => {
            let t = pdf_extract::extract_text_from_mem(bytes)
                .map_err(|e| RagError::Document { path: path.to_path_buf(), problem: format!("no readable PDF text layer: {e}") })?;
            let b = paragraphs(&t);
            (t, b)
        }
    };
    let title =
        blocks.iter().find(|b| matches!(b.kind, BlockKind::Heading { .. })).map(|b| slice_chars(&text, b.span.clone()).trim().to_string());
    Ok(Extracted { text, blocks, title })
}

/// The characters `span` of `text`.
pub fn slice_chars(text: &str, span: Range<usize>) -> &str {
    let mut idx = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len()));
    let start = idx.nth(span.start).unwrap_or(text.len());
    let end = if span.end > span.start { idx.nth(span.end - span.start - 1).unwrap_or(text.len()) } else { start };
    &text[start..end]
}

/// Byte offset → character offset table for `text` (one entry per byte boundary that starts a char,
/// plus the end).
struct CharIndex {
    starts: Vec<usize>,
}

impl CharIndex {
    fn new(text: &str) -> Self {
        let mut starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        starts.push(text.len());
        CharIndex { starts }
    }

    fn char_of(&self, byte: usize) -> usize {
        self.starts.partition_point(|&b| b < byte)
    }
}

/// Lines of `text` as (byte range without the newline).
fn lines(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            out.push(start..i);
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(start..text.len());
    }
    out
}

/// Paragraphs separated by blank lines (plain text, PDF).
fn paragraphs(text: &str) -> Vec<Block> {
    let ci = CharIndex::new(text);
    let mut blocks = Vec::new();
    let mut cur: Option<Range<usize>> = None;
    for l in lines(text) {
        if text[l.clone()].trim().is_empty() {
            if let Some(r) = cur.take() {
                blocks.push(Block { kind: BlockKind::Paragraph, span: ci.char_of(r.start)..ci.char_of(r.end) });
            }
        } else {
            cur = Some(cur.map_or(l.clone(), |r| r.start..l.end));
        }
    }
    if let Some(r) = cur {
        blocks.push(Block { kind: BlockKind::Paragraph, span: ci.char_of(r.start)..ci.char_of(r.end) });
    }
    blocks
}

/// reStructuredText: blank-line separated blocks; a title is a line underlined (and maybe overlined)
/// with one repeated punctuation character at least as long as it; indented blocks after a `::`
/// paragraph or a directive are code. Heading levels follow the order adornments first appear in, as
/// docutils assigns them.
fn rst_blocks(text: &str) -> Vec<Block> {
    let ci = CharIndex::new(text);
    let ls = lines(text);
    let is_adornment = |s: &str| {
        let s = s.trim_end();
        let mut chars = s.chars();
        match chars.next() {
            Some(c) if "=-~^\"'`#*+_:.<>".contains(c) && s.chars().count() >= 3 => chars.all(|d| d == c),
            _ => false,
        }
    };
    let mut styles: Vec<(char, bool)> = Vec::new();
    let mut blocks = Vec::new();
    let mut i = 0;
    let mut literal_next = false;
    while i < ls.len() {
        let line = &text[ls[i].clone()];
        if line.trim().is_empty() {
            i += 1;
            continue;
        }
        // Overlined title: adornment, title, adornment.
        if is_adornment(line) && i + 2 < ls.len() && is_adornment(&text[ls[i + 2].clone()]) && !text[ls[i + 1].clone()].trim().is_empty() {
            let c = line.trim().chars().next().unwrap_or('=');
            let level = level_of(&mut styles, (c, true));
            let title = ls[i + 1].clone();
            blocks.push(Block { kind: BlockKind::Heading { level }, span: ci.char_of(title.start)..ci.char_of(title.end) });
            i += 3;
            literal_next = false;
            continue;
        }
        // Underlined title: a single non-indented line followed by an adornment at least as long.
        if i + 1 < ls.len() && !line.starts_with(' ') && is_adornment(&text[ls[i + 1].clone()]) && !is_adornment(line) {
            let under = text[ls[i + 1].clone()].trim_end();
            if under.chars().count() >= line.trim_end().chars().count() {
                let c = under.chars().next().unwrap_or('=');
                let level = level_of(&mut styles, (c, false));
                blocks.push(Block { kind: BlockKind::Heading { level }, span: ci.char_of(ls[i].start)..ci.char_of(ls[i].end) });
                i += 2;
                literal_next = false;
                continue;
            }
        }
        // A block: consecutive non-blank lines.
        let start = i;
        while i < ls.len() && !text[ls[i].clone()].trim().is_empty() {
            i += 1;
        }
        let first = &text[ls[start].clone()];
        let indented = first.starts_with(' ') || first.starts_with('\t');
        let kind = if indented && literal_next { BlockKind::Code } else { BlockKind::Paragraph };
        // An indented literal block may contain blank lines: keep taking indented blocks.
        let mut end = ls[i - 1].end;
        if kind == BlockKind::Code {
            let mut j = i;
            loop {
                while j < ls.len() && text[ls[j].clone()].trim().is_empty() {
                    j += 1;
                }
                if j < ls.len() && (text[ls[j].clone()].starts_with(' ') || text[ls[j].clone()].starts_with('\t')) {
                    while j < ls.len() && !text[ls[j].clone()].trim().is_empty() {
                        j += 1;
                    }
                    end = ls[j - 1].end;
                    i = j;
                } else {
                    break;
                }
            }
        }
        let last = text[ls[i - 1].clone()].trim_end();
        literal_next = kind == BlockKind::Code && literal_next
            || last.ends_with("::")
            || first.trim_start().starts_with(".. ") && first.contains("::");
        if kind == BlockKind::Code {
            literal_next = last.ends_with("::");
        }
        blocks.push(Block { kind, span: ci.char_of(ls[start].start)..ci.char_of(end) });
    }
    blocks
}

fn level_of(styles: &mut Vec<(char, bool)>, style: (char, bool)) -> u8 {
    match styles.iter().position(|&s| s == style) {
        Some(p) => (p + 1).min(255) as u8,
        None => {
            styles.push(style);
            styles.len().min(255) as u8
        }
    }
}

/// Markdown: the top-level blocks pulldown-cmark finds, with their source spans.
fn markdown_blocks(text: &str) -> Vec<Block> {
    let ci = CharIndex::new(text);
    let mut blocks = Vec::new();
    let mut depth = 0usize;
    let mut open: Option<(BlockKind, usize)> = None;
    for (ev, range) in Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).into_offset_iter() {
        match ev {
            Event::Start(tag) => {
                if depth == 0 {
                    let kind = match tag {
                        Tag::Heading { level, .. } => BlockKind::Heading { level: level as u8 },
                        Tag::CodeBlock(_) => BlockKind::Code,
                        _ => BlockKind::Paragraph,
                    };
                    open = Some((kind, range.start));
                }
                depth += 1;
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if depth == 0
                    && let Some((kind, start)) = open.take()
                {
                    let end_byte = if matches!(end, TagEnd::CodeBlock) { range.end } else { trim_end_byte(text, range.end) };
                    blocks.push(Block { kind, span: ci.char_of(start)..ci.char_of(end_byte.max(start)) });
                }
            }
            Event::Rule | Event::Html(_) if depth == 0 => {
                blocks
                    .push(Block { kind: BlockKind::Paragraph, span: ci.char_of(range.start)..ci.char_of(trim_end_byte(text, range.end)) });
            }
            _ => {}
        }
    }
    blocks.retain(|b| b.span.end > b.span.start);
    blocks
}

fn trim_end_byte(text: &str, end: usize) -> usize {
    text[..end].trim_end().len()
}

/// The visible text of an HTML page: script, style and other non-rendered elements dropped, block
/// elements separated by blank lines, whitespace collapsed as a browser does; headings h1–h6 kept as
/// heading blocks.
fn html_text(html: &str) -> (String, Vec<Block>) {
    use scraper::{Html, Node};
    let doc = Html::parse_document(html);
    let mut text = String::new();
    let mut blocks = Vec::new();
    let mut chars = 0usize;
    // (kind, current block's start in chars) while collecting inline text.
    struct Walker<'a> {
        text: &'a mut String,
        chars: &'a mut usize,
        blocks: &'a mut Vec<Block>,
        cur: Option<(BlockKind, usize)>,
        pending_space: bool,
    }
    impl Walker<'_> {
        fn close(&mut self) {
            if let Some((kind, start)) = self.cur.take()
                && *self.chars > start
            {
                self.blocks.push(Block { kind, span: start..*self.chars });
            }
            self.pending_space = false;
        }
        fn open(&mut self, kind: BlockKind) {
            self.close();
            if !self.text.is_empty() {
                self.text.push_str("\n\n");
                *self.chars += 2;
            }
            self.cur = Some((kind, *self.chars));
        }
        fn push_text(&mut self, s: &str, pre: bool) {
            if self.cur.is_none() {
                self.open(BlockKind::Paragraph);
            }
            if pre {
                self.text.push_str(s);
                *self.chars += s.chars().count();
                return;
            }
            // Collapse runs of whitespace to one space, none at the start of a block.
            if s.starts_with(char::is_whitespace) {
                self.pending_space = true;
            }
            for (i, word) in s.split_whitespace().enumerate() {
                let empty = self.cur.is_some_and(|(_, st)| st == *self.chars);
                if (i > 0 || self.pending_space) && !empty {
                    self.text.push(' ');
                    *self.chars += 1;
                }
                self.text.push_str(word);
                *self.chars += word.chars().count();
                self.pending_space = false;
            }
            if s.ends_with(char::is_whitespace) {
                self.pending_space = true;
            }
        }
    }
    fn walk(node: ego_tree::NodeRef<'_, Node>, w: &mut Walker, pre: bool) {
        for child in node.children() {
            match child.value() {
                Node::Text(t) => w.push_text(t, pre),
                Node::Element(e) => {
                    let name = e.name();
                    if matches!(name, "script" | "style" | "noscript" | "template" | "head" | "svg" | "iframe" | "object") {
                        continue;
                    }
                    let kind = match name {
                        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => Some(BlockKind::Heading { level: name[1..].parse().unwrap_or(1) }),
                        "pre" => Some(BlockKind::Code),
                        "p" | "div" | "li" | "dt" | "dd" | "blockquote" | "table" | "tr" | "section" | "article" | "header" | "footer"
                        | "ul" | "ol" | "dl" | "figure" | "figcaption" | "main" | "nav" | "aside" | "form" | "fieldset" | "address"
                        | "td" | "th" => Some(BlockKind::Paragraph),
                        "br" => {
                            w.pending_space = true;
                            None
                        }
                        _ => None,
                    };
                    match kind {
                        Some(k) => {
                            w.open(k);
                            walk(child, w, pre || name == "pre");
                            w.close();
                        }
                        None => walk(child, w, pre),
                    }
                }
                _ => {}
            }
        }
    }
    {
        let mut w = Walker { text: &mut text, chars: &mut chars, blocks: &mut blocks, cur: None, pending_space: false };
        walk(doc.tree.root(), &mut w, false);
        w.close();
    }
    // Blocks opened and closed without text leave a trailing separator; drop empty tails.
    let trimmed = text.trim_end().to_string();
    let total = trimmed.chars().count();
    blocks.retain(|b| b.span.start < total);
    for b in &mut blocks {
        b.span.end = b.span.end.min(total);
    }
    (trimmed, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str, blocks: &[Block]) -> Vec<(BlockKind, String)> {
        blocks.iter().map(|b| (b.kind, slice_chars(text, b.span.clone()).to_string())).collect()
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::of(Path::new("library/os.rst.txt")), Some(Format::Rst));
        assert_eq!(Format::of(Path::new("README.md")), Some(Format::Markdown));
        assert_eq!(Format::of(Path::new("a/B.HTML")), Some(Format::Html));
        assert_eq!(Format::of(Path::new("x.pdf")), Some(Format::Pdf));
        assert_eq!(Format::of(Path::new("notes.txt")), Some(Format::Text));
        assert_eq!(Format::of(Path::new("image.png")), None);
    }

    #[test]
    fn rst_titles_paragraphs_and_literal_blocks() {
        let t = "=====\nTitle\n=====\n\nIntro para\nsecond line.\n\nSection é\n---------\n\nExample::\n\n    x = 1\n\n    y = 2\n\nAfter.\n\nOther\n-----\n\n.. note::\n\n   A note.\n";
        let b = rst_blocks(t);
        let got = texts(t, &b);
        assert_eq!(
            got,
            vec![
                (BlockKind::Heading { level: 1 }, "Title".into()),
                (BlockKind::Paragraph, "Intro para\nsecond line.".into()),
                (BlockKind::Heading { level: 2 }, "Section é".into()),
                (BlockKind::Paragraph, "Example::".into()),
                (BlockKind::Code, "    x = 1\n\n    y = 2".into()),
                (BlockKind::Paragraph, "After.".into()),
                (BlockKind::Heading { level: 2 }, "Other".into()),
                (BlockKind::Paragraph, ".. note::".into()),
                (BlockKind::Code, "   A note.".into()),
            ]
        );
    }

    #[test]
    fn markdown_blocks_with_offsets() {
        let t = "# Title\n\nSome *text* here.\n\n```rust\nfn main() {}\n```\n\n## Next ü\n\n- a\n- b\n";
        let got = texts(t, &markdown_blocks(t));
        assert_eq!(got[0], (BlockKind::Heading { level: 1 }, "# Title".into()));
        assert_eq!(got[1], (BlockKind::Paragraph, "Some *text* here.".into()));
        assert_eq!(got[2].0, BlockKind::Code);
        assert!(got[2].1.contains("fn main() {}"));
        assert_eq!(got[3], (BlockKind::Heading { level: 2 }, "## Next ü".into()));
        assert_eq!(got[4], (BlockKind::Paragraph, "- a\n- b".into()));
    }

    #[test]
    fn html_visible_text_only() {
        let html = "<html><head><title>T</title><style>p{}</style></head><body><h1>Hello  world</h1><script>var x=1;</script>\
                    <p>First <b>bold</b> para.</p><div>Second\n   para</div><pre>code  kept\n  as is</pre></body></html>";
        let (text, blocks) = html_text(html);
        let got = texts(&text, &blocks);
        assert_eq!(
            got,
            vec![
                (BlockKind::Heading { level: 1 }, "Hello world".into()),
                (BlockKind::Paragraph, "First bold para.".into()),
                (BlockKind::Paragraph, "Second para".into()),
                (BlockKind::Code, "code  kept\n  as is".into()),
            ]
        );
        assert!(!text.contains("var x") && !text.contains("p{}"), "{text}");
    }

    #[test]
    fn plain_paragraphs_and_char_slices() {
        let t = "α β\nγ\n\n\nsecond\n";
        let got = texts(t, &paragraphs(t));
        assert_eq!(got, vec![(BlockKind::Paragraph, "α β\nγ".into()), (BlockKind::Paragraph, "second".into())]);
        assert_eq!(slice_chars("héllo", 1..4), "éll");
    }
}
