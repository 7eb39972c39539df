//! GGUF metadata → the vocabulary tables, with llama.cpp's defaults and its text-based fix-ups
//! (`llama_vocab::impl::load`): default special ids per model type, `add_*` flags, the end-of-generation
//! set, control-type overrides for well-known tokens, and per-model strip rules.

use std::collections::{BTreeSet, HashMap};

use ferrite_gguf::{Array, GgufFile, Value};

use crate::error::TokenizerError;
use crate::pretokenize::{PreLookup, PreSpec, pre_spec};

/// Token attributes (llama.cpp's `llama_token_attr` bits).
pub(crate) mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// The kind of a token, as written in `tokenizer.ggml.token_type` (after llama.cpp's fix-ups: tokens
/// that look like end-of-turn markers become control tokens, for example).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    Normal,
    Unknown,
    /// Control tokens (`<s>`, `<|im_end|>`) render as nothing unless asked, and are matched in text only
    /// when special tokens are parsed.
    Control,
    /// Added tokens that are always matched in text and always rendered.
    UserDefined,
    Unused,
    /// SentencePiece byte-fallback tokens `<0xXX>`.
    Byte,
    Undefined,
}

/// The two tokenizer algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece-style: score-ordered merges of characters, byte fallback (`tokenizer.ggml.model =
    /// llama`).
    Spm,
    /// Byte-level BPE with ranked merges after regex pre-tokenization (`gpt2`, and the SPM-style BPE of
    /// `gemma4`).
    Bpe,
}

/// Special token ids; `None` where the vocabulary has none.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Everything both algorithms share.
pub(crate) struct Vocab {
    pub kind: TokenizerKind,
    pub model: String,
    /// The pre-tokenizer name in effect (BPE only; `default` when the metadata has none).
    pub pre: String,
    pub pre_spec: Option<PreSpec>,
    /// Token texts, indexed by id.
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    /// `attr::*` bits per token.
    pub attrs: Vec<u32>,
    /// Text → id; for duplicate texts the last id wins, as in llama.cpp.
    pub token_to_id: HashMap<String, u32>,
    pub ids: SpecialIds,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
    pub escape_whitespaces: bool,
    /// Sorted end-of-generation ids.
    pub eog: Vec<u32>,
    /// Control, user-defined and unknown tokens, longest text first: the order in which they are cut
    /// out of raw text.
    pub special_tokens: Vec<u32>,
    /// `token_to_piece(id, special = true)` for every token.
    pub pieces: Vec<Vec<u8>>,
    /// The `<0xXX>` token of each byte (byte fallback), if the vocabulary has it.
    pub byte_tokens: [Option<u32>; 256],
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
pub(crate) const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// Tokens that end generation, by text (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

impl Vocab {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Vocab, TokenizerError> {
        let model = gguf.opt_str(KEY_MODEL)?.ok_or(TokenizerError::MissingKey(KEY_MODEL))?.to_string();
        let meta_pre = gguf.opt_str(KEY_PRE)?.unwrap_or("").to_string();

        // Model type, its default special ids, and the pre-tokenizer settings.
        let mut ids = SpecialIds::default();
        let (kind, pre, spec) = match model.as_str() {
            "llama" => {
                (ids.bos, ids.eos, ids.unk) = (Some(1), Some(2), Some(0));
                (TokenizerKind::Spm, String::new(), None)
            }
            "gpt2" | "gemma4" => {
                let pre = if model == "gemma4" {
                    "gemma4".to_string()
                } else if meta_pre.is_empty() {
                    "default".to_string()
                } else {
                    meta_pre.clone()
                };
                let spec = pre_spec(&pre).map_err(|e| match e {
                    PreLookup::Unknown => TokenizerError::UnknownPre(pre.clone()),
                    PreLookup::Unsupported(reason) => TokenizerError::UnsupportedPre { pre: pre.clone(), reason },
                })?;
                if model == "gpt2" {
                    (ids.bos, ids.eos) = (Some(11), Some(11));
                }
                if spec.no_default_bos {
                    ids.bos = None;
                }
                (TokenizerKind::Bpe, pre, Some(spec))
            }
            "bert" => return Err(unsupported(model, "WordPiece")),
            "t5" => return Err(unsupported(model, "Unigram")),
            "rwkv" => return Err(unsupported(model, "RWKV trie tokenizer")),
            "plamo2" => return Err(unsupported(model, "PLaMo-2 tokenizer")),
            "no_vocab" | "none" => return Err(unsupported(model, "the file has no vocabulary")),
            "hybriddna" | "whitespace" | "test" => return Err(unsupported(model, "special-purpose tokenizer")),
            _ => return Err(TokenizerError::UnknownModel(model)),
        };

        let (mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces, escape_whitespaces) = match &spec {
            None => (true, false, true, false, true),
            Some(s) => (s.add_bos, false, false, s.clean_spaces, s.escape_whitespaces),
        };
        if let Some(v) = gguf.opt_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        // Tokens, scores, types.
        let tokens = match gguf.opt_array(KEY_TOKENS)? {
            Some(Array::String(t)) => t,
            Some(other) => {
                return Err(bad(KEY_TOKENS, format!("expected an array of strings, found {:?}", other.elem_type())));
            }
            None => return Err(TokenizerError::MissingKey(KEY_TOKENS)),
        };
        let n = tokens.len();
        if n == 0 {
            return Err(bad(KEY_TOKENS, "the vocabulary is empty".into()));
        }
        if u32::try_from(n).is_err() {
            return Err(bad(KEY_TOKENS, format!("{n} tokens do not fit 32-bit ids")));
        }
        let scores: Vec<f32> = match gguf.opt_array(KEY_SCORES)? {
            None => vec![0.0; n],
            Some(Array::F32(s)) if s.len() >= n => s[..n].to_vec(),
            Some(Array::I32(s)) if s.len() >= n => s[..n].iter().map(|&v| v as f32).collect(),
            Some(a @ (Array::F32(_) | Array::I32(_))) => {
                return Err(bad(KEY_SCORES, format!("{} scores for {n} tokens", a.len())));
            }
            Some(a) => return Err(bad(KEY_SCORES, format!("expected f32 or i32 scores, found {:?}", a.elem_type()))),
        };
        let mut attrs: Vec<u32> = match gguf.opt_array(KEY_TYPES)? {
            None => vec![attr::NORMAL; n],
            Some(Array::I32(t)) if t.len() >= n => t[..n].iter().map(|&t| type_to_attr(t)).collect(),
            Some(Array::I32(t)) => return Err(bad(KEY_TYPES, format!("{} token types for {n} tokens", t.len()))),
            Some(a) => return Err(bad(KEY_TYPES, format!("expected i32 token types, found {:?}", a.elem_type()))),
        };
        let tokens: Vec<String> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]") } else { t.clone() })
            .collect();
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            token_to_id.insert(t.clone(), i as u32);
        }

        // Special ids from the metadata; an id outside the vocabulary keeps the default.
        for id in [&mut ids.bos, &mut ids.eos, &mut ids.unk] {
            if id.is_some_and(|i| i as usize >= n) {
                *id = None;
            }
        }
        type Slot = fn(&mut SpecialIds) -> &mut Option<u32>;
        let keys: [(&'static str, Slot); 17] = [
            ("tokenizer.ggml.bos_token_id", |s| &mut s.bos),
            ("tokenizer.ggml.eos_token_id", |s| &mut s.eos),
            ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
            ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
            ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
            ("tokenizer.ggml.seperator_token_id", |s| &mut s.sep),
            ("tokenizer.ggml.padding_token_id", |s| &mut s.pad),
            ("tokenizer.ggml.mask_token_id", |s| &mut s.mask),
            ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
            // deprecated spellings
            ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
        ];
        for (key, slot) in keys {
            if let Some(v) = special_id(gguf, key)?
                && (v as usize) < n
            {
                *slot(&mut ids) = Some(v);
            }
        }

        if let Some(v) = gguf.opt_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = gguf.opt_bool("tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if pre == "gemma4" {
            add_bos = true;
        }

        // Well-known tokens found by text. llama.cpp walks a hash map, so when a vocabulary has several
        // candidates (`<|im_end|>` and `<|endoftext|>`) which one becomes EOT depends on hashing there;
        // we take the first in llama.cpp's list order, the most specific marker.
        let first_of = |texts: &[&str]| texts.iter().find_map(|t| token_to_id.get(*t).copied());
        let by_text = |texts: &[&str]| -> Vec<u32> {
            let mut found: Vec<u32> = texts.iter().filter_map(|t| token_to_id.get(*t).copied()).collect();
            found.sort_unstable();
            found
        };
        for (slot, texts) in [
            (&mut ids.eot, EOT_TEXTS),
            (&mut ids.eom, &["<|eom_id|>"][..]),
            (&mut ids.fim_pre, FIM_PRE_TEXTS),
            (&mut ids.fim_suf, FIM_SUF_TEXTS),
            (&mut ids.fim_mid, FIM_MID_TEXTS),
            (&mut ids.fim_pad, FIM_PAD_TEXTS),
            (&mut ids.fim_rep, FIM_REP_TEXTS),
            (&mut ids.fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none()
                && let Some(id) = first_of(texts)
            {
                *slot = Some(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }

        // Control tokens whose text says "unused".
        for (i, t) in tokens.iter().enumerate() {
            if attrs[i] & attr::CONTROL != 0 && t.contains("unused") {
                attrs[i] |= attr::UNUSED;
            }
        }

        // The end-of-generation set.
        let mut eog: BTreeSet<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep].into_iter().flatten().collect();
        for id in by_text(EOG_TEXTS) {
            eog.insert(id);
            attrs[id as usize] |= attr::CONTROL;
        }
        // gpt-oss: always render these.
        for id in by_text(&["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]) {
            attrs[id as usize] = attr::USER_DEFINED;
        }
        eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
        // o200k_harmony / solar-open: `<|end|>` ends a message, not the generation.
        let eog_with = |eog: &BTreeSet<u32>, t: &str| eog.iter().copied().find(|&id| tokens[id as usize] == t);
        let has = |eog: &BTreeSet<u32>, t: &str| eog_with(eog, t).is_some();
        let has_call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
        if has_call
            && (has(&eog, "<|return|>") || has(&eog, "<|flush|>"))
            && let Some(end) = eog_with(&eog, "<|end|>")
        {
            eog.remove(&end);
            attrs[end as usize] = attr::USER_DEFINED;
        }
        // Gemma 4 and PLaMo have a normal `</s>`.
        if (has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>"))
            && let Some(s) = eog_with(&eog, "</s>")
        {
            eog.remove(&s);
            attrs[s as usize] = attr::NORMAL;
        }

        // Tokens cut out of raw text before tokenizing, longest first (ties by id; llama.cpp's sort is
        // unstable there).
        let mut special_tokens: Vec<u32> = (0..n as u32)
            .filter(|&i| attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        special_tokens.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()).then(a.cmp(&b)));

        let byte_tokens = std::array::from_fn(|b| token_to_id.get(&format!("<0x{b:02X}>")).copied());

        let mut vocab = Vocab {
            kind,
            model,
            pre,
            pre_spec: spec,
            tokens,
            scores,
            attrs,
            token_to_id,
            ids,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            escape_whitespaces,
            eog: eog.into_iter().collect(),
            special_tokens,
            pieces: Vec::new(),
            byte_tokens,
        };
        vocab.pieces = (0..n as u32).map(|id| crate::decode::piece_for_cache(&vocab, id)).collect();

        // Per-model strip rules (llama.cpp sets these by model name after building its caches).
        let name = match gguf.get("general.name") {
            Some(Value::String(s)) => s.to_lowercase(),
            _ => String::new(),
        };
        let arch = gguf.architecture().unwrap_or("");
        let set = |v: &mut Vocab, text: &str, bit: u32, on: bool| {
            if let Some(&id) = v.token_to_id.get(text) {
                let a = &mut v.attrs[id as usize];
                *a = if on { *a | bit } else { *a & !bit };
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"].iter().any(|p| meta_pre.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|a| arch.contains(a))
        {
            set(&mut vocab, "<mask>", attr::LSTRIP, true);
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in &vocab.special_tokens {
                vocab.attrs[id as usize] |= attr::RSTRIP;
            }
            set(&mut vocab, "</s>", attr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set(&mut vocab, t, attr::RSTRIP, false);
            }
        } else if name.contains("modern-bert") {
            set(&mut vocab, "[MASK]", attr::LSTRIP, true);
        }
        Ok(vocab)
    }

    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        let a = *self.attrs.get(id as usize)?;
        Some(if a & attr::BYTE != 0 {
            TokenType::Byte
        } else if a & attr::CONTROL != 0 {
            TokenType::Control
        } else if a & attr::USER_DEFINED != 0 {
            TokenType::UserDefined
        } else if a & attr::UNKNOWN != 0 {
            TokenType::Unknown
        } else if a & attr::UNUSED != 0 {
            TokenType::Unused
        } else if a & attr::NORMAL != 0 {
            TokenType::Normal
        } else {
            TokenType::Undefined
        })
    }
}

fn unsupported(model: String, reason: &'static str) -> TokenizerError {
    TokenizerError::UnsupportedModel { model, reason }
}

fn bad(key: &'static str, problem: String) -> TokenizerError {
    TokenizerError::BadMetadata { key, problem }
}

/// `tokenizer.ggml.token_type` → attribute bits.
fn type_to_attr(t: i32) -> u32 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

/// A special token id key: absent, or a negative number (some converters write -1 for "none"), gives
/// `None`; a value that is not an integer is an error.
fn special_id(gguf: &GgufFile, key: &'static str) -> Result<Option<u32>, TokenizerError> {
    match gguf.get(key) {
        None => Ok(None),
        Some(Value::U64(v)) => Ok(u32::try_from(*v).ok()),
        Some(v) => match v.as_i64() {
            Some(i) => Ok(u32::try_from(i).ok()),
            None => Err(bad(key, format!("expected an integer token id, found {}", v.type_name()))),
        },
    }
}
