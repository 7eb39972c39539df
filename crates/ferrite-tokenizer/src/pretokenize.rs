//! Pre-tokenization for byte-level BPE: splitting text into words before merges run.
//!
//! Each `tokenizer.ggml.pre` name maps to an ordered list of patterns, exactly as llama.cpp lists them.
//! Every pattern refines the current chunks: its matches and the gaps between them both become chunks.
//! llama.cpp does not run most of these patterns as written:
//! - the common GPT-2, Llama-3, Qwen2 and Qwen3.5 patterns (and the newline split) are hand-written
//!   scanners over codepoint classes; we port those scanners, since their edge cases are the behaviour;
//! - any other pattern that uses `\p{..}` runs on a "collapsed" text in which each non-ASCII codepoint is
//!   replaced by one stand-in character for its class (white space becomes `\x0B`), and `\p{L}` becomes
//!   `[<letter stand-in>A-Za-z]` and so on;
//! - patterns without `\p{..}` run on the codepoints, with non-ASCII white space replaced by `\x0B`.
//!
//! We reproduce all three, so `\p{L}` means llama.cpp's letter class, `[^a-z]` matches any non-ASCII
//! letter the same way, and the results agree on the test vectors.

use std::ops::Range;

use fancy_regex::Regex;

use crate::unicode::{Flags, flags};

/// What a `tokenizer.ggml.pre` name implies beyond its patterns (llama.cpp's per-name load settings).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreSpec {
    pub patterns: &'static [&'static str],
    /// Map bytes to GPT-2's printable alphabet before merging (false for SPM-style BPE such as Gemma 4).
    pub byte_encode: bool,
    /// Spaces become `▁` before splitting (SPM-style BPE).
    pub escape_whitespaces: bool,
    /// `clean_up_tokenization_spaces` when detokenizing.
    pub clean_spaces: bool,
    /// A word that is itself a token is emitted whole, without merging.
    pub ignore_merges: bool,
    /// The default for `add_bos_token` when the metadata does not say.
    pub add_bos: bool,
    /// The vocabulary has no BOS token unless the metadata names one.
    pub no_default_bos: bool,
}

const BASE: PreSpec = PreSpec {
    patterns: &[],
    byte_encode: true,
    escape_whitespaces: false,
    clean_spaces: true,
    ignore_merges: false,
    add_bos: false,
    no_default_bos: false,
};

// The patterns, as llama.cpp writes them (its `(?i:..)` groups already spelled out as classes).
const GPT2: &str = r##"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"##;
const LLAMA3: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const QWEN2: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const QWEN35: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const NEWLINES: &str = r##"[^\n]+|[\n]+"##;
const JAIS2: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"##;
const DEEPSEEK_LLM: &[&str] = &[
    r##"[\r\n]"##,
    r##"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+"##,
    r##"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+"##,
    r##"\s+$"##,
    r##"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+"##,
    r##"\p{N}+"##,
];
const DEEPSEEK_CODER: &[&str] = &[
    r##"[\r\n]"##,
    r##"\s?\p{L}+"##,
    r##"\s?\p{P}+"##,
    r##"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+"##,
    r##"\p{N}"##,
];
const DEEPSEEK3: &[&str] = &[
    r##"\p{N}{1,3}"##,
    r##"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+"##,
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
const SPARK2_5: &[&str] = &[
    r##"\p{N}{1,3}"##,
    r##"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+"##,
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##,
    r##"\p{N}"##,
];
const YOUTU: &[&str] = &[
    r##"[\x{AC00}-\x{D7A3}\x{3131}-\x{318E}]+|[\x{FF01}\x{2026}\x{201C}\x{201D}\x{2018}\x{2019}\x{2014}\x{FF1A}\x{FF1B}\x{FF0C}\x{3001}-\x{303F}\x{FE30}-\x{FE4F}]+|[\x{3105}-\x{312F}]+|[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+"##,
    r##"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
const FALCON: &[&str] = &[r##"[\p{P}\$\+<=>\^~\|`]+"##, GPT2, r##"[0-9][0-9][0-9]"##];
const STARCODER: &[&str] = &[r##"\p{N}"##, GPT2];
const BLOOM: &str = r##" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+"##;
const TEKKEN: &str = r##"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const GPT4O: &str = r##"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const GRANITE_EMB_MULTI: &str = r##"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const BAILINGMOE: &str = r##"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"##;
const SEED_CODER: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const UFAKZEKA: &str = r##"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const EXAONE_MOE: &str = r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"##;
const MINICPM5: &[&str] = &[
    r##"\p{N}{1,3}"##,
    r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
const DEFAULT: &[&str] = &[r##"[\p{P}\$\+<=>\^~\|]+"##, GPT2, r##"\p{N}+"##, r##"[0-9][0-9][0-9]"##];

/// Why a `tokenizer.ggml.pre` name cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PreLookup {
    /// llama.cpp does not know the name either.
    Unknown,
    /// llama.cpp knows it, but it needs a splitter we have not ported.
    Unsupported(&'static str),
}

/// The settings llama.cpp applies for a pre-tokenizer name (`llama_vocab::impl::load` and
/// `llm_tokenizer_bpe`'s constructor).
pub(crate) fn pre_spec(name: &str) -> Result<PreSpec, PreLookup> {
    let s = |patterns: &'static [&'static str]| PreSpec { patterns, ..BASE };
    let no_clean = |patterns: &'static [&'static str]| PreSpec { patterns, clean_spaces: false, ..BASE };
    Ok(match name {
        "default" => s(DEFAULT),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => PreSpec { ignore_merges: true, add_bos: true, ..s(&[LLAMA3]) },
        "dbrx" | "smaug-bpe" => s(&[LLAMA3]),
        "jais-2" => s(&[JAIS2]),
        "deepseek-llm" => no_clean(DEEPSEEK_LLM),
        "deepseek-coder" => no_clean(DEEPSEEK_CODER),
        "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => no_clean(DEEPSEEK3),
        "spark2_5" => no_clean(SPARK2_5),
        "youtu" => PreSpec { ignore_merges: true, ..no_clean(YOUTU) },
        "falcon" => s(FALCON),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => s(STARCODER),
        "command-r" | "smollm" => no_clean(STARCODER),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais" | "exaone4" => {
            s(&[GPT2])
        }
        "trillion" | "granite-docling" => no_clean(&[GPT2]),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" | "grok-2" => no_clean(&[QWEN2]),
        "stablelm2" | "megrez" => s(&[QWEN2]),
        "qwen35" => no_clean(&[QWEN35]),
        "poro-chat" => no_clean(&[BLOOM]),
        "bloom" | "gpt3-finnish" => s(&[BLOOM]),
        "viking" => no_clean(&[BLOOM, r##"\p{N}"##]),
        "chatglm-bpe" => PreSpec { no_default_bos: true, ..s(&[LLAMA3]) },
        "glm4" | "glm5" => PreSpec { no_default_bos: true, ignore_merges: true, ..s(&[LLAMA3]) },
        "tekken" => PreSpec { ignore_merges: true, add_bos: true, ..no_clean(&[TEKKEN]) },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => no_clean(&[GPT4O]),
        "granite-embed-multi-97m" => PreSpec { ignore_merges: true, ..no_clean(&[GRANITE_EMB_MULTI]) },
        "bailingmoe" | "bailingmoe2" | "llada-moe" => no_clean(&[BAILINGMOE]),
        "seed-coder" => no_clean(&[SEED_CODER]),
        "ufakzeka" => no_clean(&[UFAKZEKA]),
        "laguna" => no_clean(&[NEWLINES, QWEN2]),
        "exaone-moe" => s(&[EXAONE_MOE]),
        "minicpm5" => PreSpec { ignore_merges: true, ..s(MINICPM5) },
        "gemma4" | "granite-embed-multi-311m" => {
            PreSpec { byte_encode: false, escape_whitespaces: true, ..s(&[NEWLINES]) }
        }
        "sarvam-moe" => PreSpec { byte_encode: false, escape_whitespaces: true, ..no_clean(&[NEWLINES]) },
        "kimi-k2" => return Err(PreLookup::Unsupported("Han-aware custom splitter")),
        "afmoe" | "tiny_aya" | "cohere2moe" => return Err(PreLookup::Unsupported("digit-grouping custom splitter")),
        "superbpe" => return Err(PreLookup::Unsupported("zero-width split pattern")),
        "chameleon" => return Err(PreLookup::Unsupported("image/sentinel token patterns")),
        "whitespace" => return Err(PreLookup::Unsupported("whitespace tokenizer model")),
        _ => return Err(PreLookup::Unknown),
    })
}

/// A compiled pre-tokenizer.
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

enum Step {
    /// llama.cpp's hand-written scanners.
    Gpt2,
    Llama3,
    Qwen2,
    Qwen35,
    Newlines,
    /// A pattern run over the collapsed (`collapsed == true`) or the codepoint representation.
    Regex {
        re: Box<Regex>,
        collapsed: bool,
    },
}

/// A pattern that cannot be compiled (a bug in the table above, or in the collapsing).
#[derive(Debug)]
pub(crate) struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

/// `\p{..}` classes llama.cpp collapses, and the category each stands for (`\p{Lu}` etc. become letters).
const COLLAPSED_CLASSES: &[(&str, u16)] = &[
    (r"\p{N}", Flags::NUMBER),
    (r"\p{L}", Flags::LETTER),
    (r"\p{P}", Flags::PUNCTUATION),
    (r"\p{M}", Flags::MARK),
    (r"\p{S}", Flags::SYMBOL),
    (r"\p{Lu}", Flags::LETTER),
    (r"\p{Ll}", Flags::LETTER),
    (r"\p{Lt}", Flags::LETTER),
    (r"\p{Lm}", Flags::LETTER),
    (r"\p{Lo}", Flags::LETTER),
];

/// The stand-in character of a non-ASCII, non-white-space codepoint in the collapsed text. Private-use
/// characters never collide with the text: every non-ASCII codepoint of the text is replaced.
fn stand_in(category: u16) -> char {
    match category {
        Flags::NUMBER => '\u{E0D1}',
        Flags::LETTER => '\u{E0D2}',
        Flags::PUNCTUATION => '\u{E0D3}',
        Flags::MARK => '\u{E0D4}',
        Flags::SYMBOL => '\u{E0D5}',
        _ => '\u{E0D0}',
    }
}

impl PreTokenizer {
    pub fn new(patterns: &[&str]) -> Result<PreTokenizer, BadPattern> {
        let steps = patterns.iter().map(|p| compile(p)).collect::<Result<_, _>>()?;
        Ok(PreTokenizer { steps })
    }

    /// Split `text` into words, as byte ranges of `text` that cover it in order.
    pub fn split(&self, text: &str) -> Vec<Range<usize>> {
        let cps: Vec<char> = text.chars().collect();
        let fl: Vec<Flags> = cps.iter().map(|&c| flags(c)).collect();
        let mut collapsed = None;
        let mut wide = None;

        // Chunk lengths in codepoints; they always sum to cps.len().
        let mut chunks = vec![cps.len()];
        for step in &self.steps {
            let scan = Scan { cps: &cps, fl: &fl };
            chunks = match step {
                Step::Gpt2 => scan.gpt2(&chunks),
                Step::Llama3 => scan.llama3_like(&chunks, Variant::Llama3),
                Step::Qwen2 => scan.llama3_like(&chunks, Variant::Qwen2),
                Step::Qwen35 => scan.llama3_like(&chunks, Variant::Qwen35),
                Step::Newlines => scan.newlines(&chunks),
                Step::Regex { re, collapsed: true } => {
                    regex_split(re, collapsed.get_or_insert_with(|| Repr::collapsed(&cps, &fl)), &chunks)
                }
                Step::Regex { re, collapsed: false } => {
                    regex_split(re, wide.get_or_insert_with(|| Repr::wide(&cps, &fl)), &chunks)
                }
            };
        }

        // Codepoint lengths to byte ranges.
        let mut out = Vec::with_capacity(chunks.len());
        let mut byte = 0;
        let mut chars = text.chars();
        for len in chunks {
            let start = byte;
            for c in chars.by_ref().take(len) {
                byte += c.len_utf8();
            }
            if byte > start {
                out.push(start..byte);
            }
        }
        out
    }
}

fn compile(pattern: &str) -> Result<Step, BadPattern> {
    let step = match pattern {
        GPT2 => Step::Gpt2,
        LLAMA3 => Step::Llama3,
        QWEN2 => Step::Qwen2,
        QWEN35 => Step::Qwen35,
        NEWLINES => Step::Newlines,
        _ => {
            let bad = |reason: String| BadPattern { pattern: pattern.to_string(), reason };
            let collapsed = COLLAPSED_CLASSES.iter().any(|(class, _)| pattern.contains(class));
            let source = if collapsed {
                if !pattern.is_ascii() {
                    // llama.cpp refuses these too.
                    return Err(bad("unicode classes together with non-ASCII characters".into()));
                }
                collapse_pattern(pattern)
            } else {
                pattern.to_string()
            };
            let re = Regex::new(&source).map_err(|e| bad(e.to_string()))?;
            Step::Regex { re: Box::new(re), collapsed }
        }
    };
    Ok(step)
}

/// Rewrite each collapsed `\p{X}` as its stand-in plus the ASCII members of the class, bracketed unless
/// it already sits inside `[..]` (llama.cpp's bracket tracking, which only looks one character back).
fn collapse_pattern(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < pattern.len() {
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        if bytes[i] == b'[' && !escaped {
            inside = true;
        } else if bytes[i] == b']' && inside && !escaped {
            inside = false;
        } else if let Some((class, cat)) = COLLAPSED_CLASSES.iter().find(|(c, _)| pattern[i..].starts_with(c)) {
            if !inside {
                out.push('[');
            }
            out.push(stand_in(*cat));
            for b in 0u8..128 {
                if flags(b as char).category() == *cat {
                    out.push_str(&format!("\\x{{{b:02X}}}"));
                }
            }
            if !inside {
                out.push(']');
            }
            i += class.len();
            continue;
        }
        // Patterns that reach here are ASCII, so byte i is a whole character.
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// A text as one of the two representations the regex fallback runs on, with the byte offset of every
/// codepoint (plus the end) so matches can be turned back into codepoint positions.
struct Repr {
    text: String,
    offsets: Vec<usize>,
}

impl Repr {
    fn build(cps: &[char], fl: &[Flags], map: impl Fn(char, Flags) -> char) -> Repr {
        let mut text = String::with_capacity(cps.len());
        let mut offsets = Vec::with_capacity(cps.len() + 1);
        for (&c, &f) in cps.iter().zip(fl) {
            offsets.push(text.len());
            text.push(map(c, f));
        }
        offsets.push(text.len());
        Repr { text, offsets }
    }

    fn collapsed(cps: &[char], fl: &[Flags]) -> Repr {
        Repr::build(cps, fl, |c, f| {
            if c.is_ascii() {
                c
            } else if f.is_whitespace() {
                '\x0B'
            } else {
                stand_in(f.category())
            }
        })
    }

    fn wide(cps: &[char], fl: &[Flags]) -> Repr {
        Repr::build(cps, fl, |c, f| if !c.is_ascii() && f.is_whitespace() { '\x0B' } else { c })
    }

    fn codepoint_at(&self, byte: usize) -> usize {
        self.offsets.partition_point(|&o| o < byte)
    }
}

/// Refine `chunks` by the matches of `re` in each chunk (matches and the gaps between them).
fn regex_split(re: &Regex, repr: &Repr, chunks: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(chunks.len());
    let mut start = 0;
    for &len in chunks {
        let end = start + len;
        let base = repr.offsets[start];
        let hay = &repr.text[base..repr.offsets[end]];
        let mut last = start;
        for m in re.find_iter(hay) {
            // A backtracking limit hit leaves the rest of the chunk as one gap (none of our patterns
            // backtrack that far on real text).
            let Ok(m) = m else { break };
            let (ms, me) = (repr.codepoint_at(base + m.start()), repr.codepoint_at(base + m.end()));
            if ms > last {
                out.push(ms - last);
            }
            if me > ms {
                out.push(me - ms);
            }
            last = last.max(me);
        }
        if end > last {
            out.push(end - last);
        }
        start = end;
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Digits in runs of up to three.
    Llama3,
    /// Single digits.
    Qwen2,
    /// Single digits; combining marks join letter runs.
    Qwen35,
}

/// The hand-written scanners, over codepoints and their classes.
struct Scan<'a> {
    cps: &'a [char],
    fl: &'a [Flags],
}

/// Appends chunk lengths ending at given positions (empty ones are dropped).
struct Chunks<'o> {
    out: &'o mut Vec<usize>,
    prev_end: usize,
}

impl Chunks<'_> {
    fn cut(&mut self, end: usize) {
        if end > self.prev_end {
            self.out.push(end - self.prev_end);
        }
        self.prev_end = end;
    }
}

impl Scan<'_> {
    /// Iterate the chunks, calling `f(chunk_end, sink)` for each.
    fn each_chunk(&self, chunks: &[usize], mut f: impl FnMut(usize, &mut Chunks<'_>)) -> Vec<usize> {
        let mut out = Vec::with_capacity(chunks.len());
        let mut start = 0;
        for &len in chunks {
            let mut sink = Chunks { out: &mut out, prev_end: start };
            f(start + len, &mut sink);
            start += len;
        }
        out
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (llama.cpp's scanner).
    fn gpt2(&self, chunks: &[usize]) -> Vec<usize> {
        self.each_chunk(chunks, |end, sink| {
            let cp = |p: usize| (p < end).then(|| self.cps[p]);
            let fl = |p: usize| if p < end { self.fl[p] } else { Flags(0) };
            let mut pos = sink.prev_end;
            while pos < end {
                let c = self.cps[pos];
                let f = self.fl[pos];
                if let Some(n) = contraction(c, cp(pos + 1), cp(pos + 2), false) {
                    pos += n;
                    sink.cut(pos);
                    continue;
                }
                let mut f2 = if c == ' ' { fl(pos + 1) } else { f };
                let space = usize::from(c == ' ');
                // <space>?\p{L}+, <space>?\p{N}+, <space>?[^\s\p{L}\p{N}]+
                let runs: [&dyn Fn(Flags) -> bool; 3] =
                    [&|f: Flags| f.is_letter(), &|f: Flags| f.is_number(), &|f: Flags| {
                        !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.exists()
                    }];
                if let Some(run) = runs.iter().find(|run| run(f2)) {
                    pos += space;
                    while run(f2) {
                        pos += 1;
                        f2 = fl(pos);
                    }
                    sink.cut(pos);
                    continue;
                }
                let mut n_ws = 0;
                while fl(pos + n_ws).is_whitespace() {
                    n_ws += 1;
                }
                pos += whitespace_run(n_ws, cp(pos + n_ws).is_some());
                sink.cut(pos);
            }
        })
    }

    /// Llama-3's pattern and its Qwen2 / Qwen3.5 variants (llama.cpp's scanners).
    fn llama3_like(&self, chunks: &[usize], variant: Variant) -> Vec<usize> {
        self.each_chunk(chunks, |end, sink| {
            let cp = |p: usize| (p < end).then(|| self.cps[p]);
            let fl = |p: usize| if p < end { self.fl[p] } else { Flags(0) };
            let marks = variant == Variant::Qwen35;
            let wordy = |f: Flags| f.is_letter() || (marks && f.is_mark());
            let mut pos = sink.prev_end;
            while pos < end {
                let c = self.cps[pos];
                let f = self.fl[pos];
                if let Some(n) = contraction(c, cp(pos + 1), cp(pos + 2), true) {
                    pos += n;
                    sink.cut(pos);
                    continue;
                }
                // [^\r\n\p{L}\p{N}]?\p{L}+   (Qwen3.5: [\p{L}\p{M}]+)
                if !(c == '\r' || c == '\n' || f.is_number()) && (wordy(f) || wordy(fl(pos + 1))) {
                    pos += 1;
                    while wordy(fl(pos)) {
                        pos += 1;
                    }
                    sink.cut(pos);
                    continue;
                }
                // \p{N}{1,3}   (Qwen: \p{N})
                if f.is_number() {
                    if variant == Variant::Llama3 {
                        let mut run_start = pos;
                        while fl(pos).is_number() {
                            pos += 1;
                            if pos - run_start >= 3 {
                                sink.cut(pos);
                                run_start = pos;
                            }
                        }
                    } else {
                        pos += 1;
                    }
                    sink.cut(pos);
                    continue;
                }
                // <space>?[^\s\p{L}\p{N}]+[\r\n]*
                let other = |f: Flags| !(f.is_whitespace() || wordy(f) || f.is_number()) && f.exists();
                let mut f2 = if c == ' ' { fl(pos + 1) } else { f };
                if !(f2.is_whitespace() || wordy(f2) || f2.is_number()) && f.exists() {
                    pos += usize::from(c == ' ');
                    while other(f2) {
                        pos += 1;
                        f2 = fl(pos);
                    }
                    while matches!(cp(pos), Some('\r' | '\n')) {
                        pos += 1;
                    }
                    sink.cut(pos);
                    continue;
                }
                // \s*[\r\n]+, then \s+(?!\S), \s+
                let mut n_ws = 0;
                let mut after_last_newline = None;
                while fl(pos + n_ws).is_whitespace() {
                    if matches!(self.cps[pos + n_ws], '\r' | '\n') {
                        after_last_newline = Some(pos + n_ws + 1);
                    }
                    n_ws += 1;
                }
                if let Some(p) = after_last_newline {
                    pos = p;
                } else {
                    pos += whitespace_run(n_ws, cp(pos + n_ws).is_some());
                }
                sink.cut(pos);
            }
        })
    }

    /// `[^\n]+|[\n]+`: runs of newlines and runs of anything else.
    fn newlines(&self, chunks: &[usize]) -> Vec<usize> {
        self.each_chunk(chunks, |end, sink| {
            let mut pos = sink.prev_end;
            while pos < end {
                let is_nl = self.cps[pos] == '\n';
                while pos < end && (self.cps[pos] == '\n') == is_nl {
                    pos += 1;
                }
                sink.cut(pos);
            }
        })
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d` at an apostrophe: the match length. `fold` makes the letters
/// case-insensitive (only ASCII letters lower-case to these).
fn contraction(c: char, next: Option<char>, next2: Option<char>, fold: bool) -> Option<usize> {
    if c != '\'' {
        return None;
    }
    let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
    let n = low(next)?;
    if matches!(n, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    match (n, low(next2)?) {
        ('r', 'e') | ('v', 'e') | ('l', 'l') => Some(3),
        _ => None,
    }
}

/// The length taken by a white-space run of `n` codepoints at the scan position: `\s+(?!\S)` leaves the
/// last one to the next word when something follows; otherwise `\s+`; a lone non-matching codepoint is
/// taken by itself.
fn whitespace_run(n: usize, followed: bool) -> usize {
    if n > 1 && followed {
        n - 1
    } else if n > 0 {
        n
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words<'t>(pre: &PreTokenizer, text: &'t str) -> Vec<&'t str> {
        pre.split(text).into_iter().map(|r| &text[r]).collect()
    }

    /// Every name we accept compiles, and splits a mixed text into pieces that cover it exactly.
    #[test]
    fn every_supported_pre_tokenizer_compiles_and_covers_the_text() {
        let names = [
            "default",
            "llama3",
            "dbrx",
            "jais-2",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "spark2_5",
            "youtu",
            "falcon",
            "starcoder",
            "smollm",
            "gpt-2",
            "trillion",
            "qwen2",
            "stablelm2",
            "qwen35",
            "poro-chat",
            "viking",
            "chatglm-bpe",
            "glm4",
            "tekken",
            "gpt-4o",
            "granite-embed-multi-97m",
            "bailingmoe",
            "seed-coder",
            "ufakzeka",
            "laguna",
            "exaone-moe",
            "minicpm5",
            "gemma4",
            "sarvam-moe",
        ];
        let text = "Hello, y'all! How're you 😁 ?我想在apple工作1314151天～ \t\n\n  x  ÉCOLE naïve Ωμέγα";
        for name in names {
            let spec = pre_spec(name).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let pre = PreTokenizer::new(spec.patterns).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(words(&pre, text).concat(), text, "{name}");
        }
        assert_eq!(pre_spec("no-such-pre").unwrap_err(), PreLookup::Unknown);
        assert!(matches!(pre_spec("kimi-k2"), Err(PreLookup::Unsupported(_))));
    }

    #[test]
    fn gpt2_scanner_agrees_with_the_regex_on_simple_text() {
        let pre = PreTokenizer::new(&[GPT2]).unwrap();
        assert_eq!(words(&pre, "Hello world's  42!!\n\n x"), ["Hello", " world", "'s", " ", " 42", "!!", "\n\n", " x"]);
    }

    #[test]
    fn llama3_splits_digits_in_threes_and_qwen2_singly() {
        let l3 = PreTokenizer::new(&[LLAMA3]).unwrap();
        let q2 = PreTokenizer::new(&[QWEN2]).unwrap();
        assert_eq!(words(&l3, "1234567"), ["123", "456", "7"]);
        assert_eq!(words(&q2, "123"), ["1", "2", "3"]);
        assert_eq!(words(&l3, "a\r\n\n b"), ["a", "\r\n\n", " b"]);
    }

    #[test]
    fn collapsed_pattern_uses_stand_ins_and_ascii_members() {
        let p = collapse_pattern(r"\p{N}");
        assert_eq!(p, "[\u{E0D1}\\x{30}\\x{31}\\x{32}\\x{33}\\x{34}\\x{35}\\x{36}\\x{37}\\x{38}\\x{39}]");
        // Inside a class no extra brackets.
        assert!(collapse_pattern(r"[^\s\p{L}]").starts_with("[^\\s\u{E0D2}\\x{41}"));
        // Digits of other scripts are numbers too: "٣" splits alone under `\p{N}`.
        let pre = PreTokenizer::new(&[r"\p{N}"]).unwrap();
        assert_eq!(words(&pre, "a٣b"), ["a", "٣", "b"]);
    }
}
