//! Tokenizers built from a GGUF file's metadata that produce the same ids as llama.cpp.
//!
//! [`Tokenizer::from_gguf`] reads `tokenizer.ggml.*` and builds one of two algorithms
//! ([`TokenizerKind`]): SentencePiece-style merging by token score with byte fallback (`llama`), or
//! byte-level BPE by merge rank after regex pre-tokenization (`gpt2`, and Gemma 4's SPM-style BPE).
//! [`Tokenizer::encode`] mirrors `llama_tokenize`: special tokens written in the text are cut out first,
//! then each piece of raw text is tokenized. [`Tokenizer::decode`] mirrors `llama_detokenize`, and a
//! [`Decoder`] turns a stream of ids into text without ever splitting a UTF-8 character.
//!
//! Where llama.cpp approximates (its own Unicode classes, hand-written scanners in place of the
//! pre-tokenizer regexes), we reproduce the approximation: the goal is identical ids, checked against
//! llama.cpp's own tokenizer test vectors and against `llama-tokenize` on real models.
//!
//! ```
//! use ferrite_gguf::{Array, GgufFile, Value, write::GgufWriter};
//! use ferrite_tokenizer::Tokenizer;
//!
//! // A toy SentencePiece vocabulary: <unk> <s> </s>, then pieces with scores.
//! let tokens = ["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi"];
//! let mut w = GgufWriter::new();
//! w.meta("tokenizer.ggml.model", Value::String("llama".into()));
//! w.meta("tokenizer.ggml.tokens", Value::Array(Array::String(tokens.map(String::from).to_vec())));
//! w.meta("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0., 0., 0., -1., -2., -2., -1., 0.])));
//! w.meta("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![2, 3, 3, 1, 1, 1, 1, 1])));
//! let tok = Tokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes()).unwrap()).unwrap();
//!
//! let ids = tok.encode("hi", true, false); // BOS, then " hi" (SentencePiece adds a space prefix)
//! assert_eq!(ids, [1, 7]);
//! assert_eq!(tok.decode(&ids[1..]), "hi"); // ... and removes it again
//! assert!(tok.is_eog(2));
//! ```

mod bpe;
mod decode;
mod error;
mod pretokenize;
mod special;
mod spm;
mod unicode;
mod vocab;

use std::sync::Arc;

use ferrite_gguf::GgufFile;

pub use decode::{DecodeOptions, Decoder};
pub use error::TokenizerError;
pub use vocab::{TokenType, TokenizerKind};

use crate::bpe::Bpe;
use crate::special::Fragment;
use crate::vocab::Vocab;

/// A tokenizer: the vocabulary and its algorithm. Cheap to clone (shared), `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model())
            .field("pre", &self.pre())
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Tokenizer>();
    send_sync::<Decoder>();
};

struct Inner {
    vocab: Vocab,
    /// The BPE tables; `None` for SentencePiece vocabularies.
    bpe: Option<Bpe>,
}

impl Tokenizer {
    /// Build from `tokenizer.ggml.*` metadata, with llama.cpp's defaults where keys are absent.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::from_gguf(gguf)?;
        let bpe = match (vocab.kind, &vocab.pre_spec) {
            (TokenizerKind::Bpe, Some(spec)) => Some(Bpe::new(gguf, &vocab, spec)?),
            _ => None,
        };
        Ok(Tokenizer { inner: Arc::new(Inner { vocab, bpe }) })
    }

    pub(crate) fn vocab(&self) -> &Vocab {
        &self.inner.vocab
    }

    /// Tokenize `text` like `llama_tokenize`. `add_special` adds BOS/EOS where the vocabulary asks for
    /// them (`add_bos()` / `add_eos()`); `parse_special` turns control tokens written in the text (such as
    /// `<|im_start|>`) into their ids instead of tokenizing their characters. User-defined tokens are
    /// always recognised.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = self.vocab();
        let fragments = special::partition(v, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        // llama.cpp asserts that a vocabulary asking for BOS/EOS has them; we add nothing instead.
        if add_special && v.add_bos {
            out.extend(v.ids.bos);
        }
        match &self.inner.bpe {
            None => {
                // A space prefix goes on the text at the start and after every special token.
                let mut after_special = true;
                for f in fragments {
                    match f {
                        Fragment::Text(r) => {
                            let prefix = if v.add_space_prefix && after_special { "▁" } else { "" };
                            let escaped = format!("{prefix}{}", text[r].replace(' ', "▁"));
                            spm::encode(v, &escaped, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
            Some(bpe) => {
                for f in fragments {
                    match f {
                        Fragment::Text(r) if v.escape_whitespaces => {
                            bpe.encode(v, &text[r].replace(' ', "▁"), &mut out)
                        }
                        Fragment::Text(r) => bpe.encode(v, &text[r], &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.ids.eos);
        }
        out
    }

    /// The bytes of one token as generated text (`llama_token_to_piece` with `special = false`):
    /// control tokens give nothing, byte tokens give their byte, SentencePiece `▁` becomes a space.
    /// Out-of-range ids give nothing.
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        self.piece(id, false).to_vec()
    }

    /// Like [`token_to_piece`](Self::token_to_piece), borrowed, and with control tokens rendered as their
    /// text when `special` is set.
    pub fn piece(&self, id: u32, special: bool) -> &[u8] {
        decode::piece(self.vocab(), id, special)
    }

    /// The text of a sequence (`llama_detokenize` without removing or rendering special tokens),
    /// converted lossily to UTF-8 at the very end.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(ids, DecodeOptions::default())).into_owned()
    }

    /// The bytes of a sequence, exactly as `llama_detokenize(remove_special, unparse_special)` writes them.
    pub fn detokenize(&self, ids: &[u32], opts: DecodeOptions) -> Vec<u8> {
        decode::detokenize(self.vocab(), ids, opts)
    }

    /// An incremental decoder whose output concatenates to [`decode`](Self::decode).
    pub fn decoder(&self) -> Decoder {
        Decoder::new(self.clone())
    }

    /// Which algorithm this vocabulary uses.
    pub fn kind(&self) -> TokenizerKind {
        self.vocab().kind
    }

    /// `tokenizer.ggml.model` (`llama`, `gpt2`, `gemma4`).
    pub fn model(&self) -> &str {
        &self.vocab().model
    }

    /// The pre-tokenizer in effect for BPE vocabularies (`None` for SentencePiece).
    pub fn pre(&self) -> Option<&str> {
        self.inner.bpe.as_ref().map(|_| self.vocab().pre.as_str())
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab().n_tokens()
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab().ids.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab().ids.eos
    }

    /// End of turn: from the metadata, else the first of llama.cpp's known texts (`<|eot_id|>`,
    /// `<|im_end|>`, `<|end|>`, `<end_of_turn>`, `<|endoftext|>`, …) that the vocabulary has.
    pub fn eot(&self) -> Option<u32> {
        self.vocab().ids.eot
    }

    /// End of message (`<|eom_id|>`).
    pub fn eom(&self) -> Option<u32> {
        self.vocab().ids.eom
    }

    pub fn unk(&self) -> Option<u32> {
        self.vocab().ids.unk
    }

    pub fn pad(&self) -> Option<u32> {
        self.vocab().ids.pad
    }

    /// Whether `id` ends generation: EOS, EOT, EOM, the FIM pad/repo/file-separator tokens, and every
    /// token whose text llama.cpp treats as an end marker (`<|im_end|>`, `<end_of_turn>`,
    /// `<|endoftext|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab().eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab().eog
    }

    /// Whether `id` is a control token (rendered as nothing by default).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab().attr(id) & vocab::attr::CONTROL != 0
    }

    /// The token's text as stored in the vocabulary (`▁` and GPT-2 byte characters included).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab().tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab().token_type(id)
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab().token_to_id.get(text).copied()
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab().add_bos && self.vocab().ids.bos.is_some()
    }

    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab().add_eos && self.vocab().ids.eos.is_some()
    }

    /// Whether SentencePiece text gets a leading space (and decoding drops one).
    pub fn add_space_prefix(&self) -> bool {
        self.vocab().add_space_prefix
    }
}
