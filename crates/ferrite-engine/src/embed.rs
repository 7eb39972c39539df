//! Sentence embeddings: text → tokens → [`Bert`] → pooled, optionally normalized vectors.
//!
//! An [`Embedder`] is loaded from a Hugging Face sentence-transformers folder (config.json,
//! model.safetensors, tokenizer.json, and the sentence-transformers files that say how to pool and
//! whether to normalize) or from a llama.cpp BERT GGUF (tokenizer rebuilt from its WordPiece vocabulary,
//! pooling from `bert.pooling_type`, L2-normalized as llama.cpp's embedding tools do). Texts longer than
//! the model's window are truncated exactly as sentence-transformers truncates them, and the count of
//! truncated texts is reported, never hidden.

use std::path::{Path, PathBuf};

use ferrite_gguf::GgufFile;
use ferrite_models::{Bert, HfFolder, Pooling};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::EngineError;

/// At most this many tokens go through one forward pass (texts are grouped up to it).
const BATCH_TOKENS: usize = 8192;

/// A text-embedding model: weights, tokenizer, and the pooling recipe. Immutable and `Sync`: share it.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for counting.
    counter: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    /// Tokens per text, specials included; longer texts are truncated (sentence-transformers'
    /// `max_seq_length`).
    max_tokens: usize,
    name: String,
}

/// What [`Embedder::embed`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// One vector per text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens fed to the model, specials included (what an API bills as prompt tokens).
    pub tokens: usize,
    /// How many texts were longer than the window and truncated.
    pub truncated: usize,
}

fn tok_err(path: &Path) -> impl Fn(tokenizers::Error) -> EngineError + '_ {
    move |e| EngineError::Input(format!("{}: {e}", path.display()))
}

impl Embedder {
    /// Load a sentence-transformers folder or a BERT GGUF file.
    pub fn load(path: &Path) -> Result<Embedder, EngineError> {
        if path.is_dir() { Self::load_folder(path) } else { Self::load_gguf(path) }
    }

    fn load_folder(dir: &Path) -> Result<Embedder, EngineError> {
        let folder = HfFolder::open(dir)?;
        let model = Bert::from_hf(&folder)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(tok_err(&tok_path))?;
        let st = SentenceTransformers::read(dir)?;
        let max_tokens = st.max_seq_length.unwrap_or(model.config().max_positions).min(model.config().max_positions);
        let counter = configure(&mut tokenizer, max_tokens).map_err(tok_err(&tok_path))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Embedder { model, tokenizer, counter, pooling: st.pooling, normalize: st.normalize, max_tokens, name })
    }

    fn load_gguf(path: &Path) -> Result<Embedder, EngineError> {
        let gguf = GgufFile::open(path)?;
        let model = Bert::from_gguf(&gguf)?;
        let mut tokenizer = wordpiece_from_gguf(&gguf, path)?;
        let max_tokens = model.config().max_positions;
        let counter = configure(&mut tokenizer, max_tokens).map_err(tok_err(path))?;
        let pooling = model
            .config()
            .pooling
            .ok_or_else(|| EngineError::Input(format!("{}: pooling_type none gives no text embedding", path.display())))?;
        let name = gguf
            .opt_str("general.name")?
            .map(str::to_string)
            .unwrap_or_else(|| path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        Ok(Embedder { model, tokenizer, counter, pooling, normalize: true, max_tokens, name })
    }

    /// The model's name (folder name or `general.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.model.config().dim
    }

    /// Tokens per text (specials included) beyond which a text is truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The ids the model sees for `text`: specials added, truncated to the window.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| EngineError::Input(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// How many tokens `text` has without specials and without truncation (what a chunker budgets).
    pub fn count_tokens(&self, text: &str) -> Result<usize, EngineError> {
        Ok(self.counter.encode_fast(text, false).map_err(|e| EngineError::Input(format!("tokenizer: {e}")))?.len())
    }

    /// Embed `texts`, in order. Texts are tokenized in parallel and encoded in groups of up to
    /// [`BATCH_TOKENS`] tokens, each group one batched forward pass without padding.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings, EngineError> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EngineError::Input(format!("tokenizer: {e}")))?;
        let truncated = encodings.iter().filter(|e| !e.get_overflowing().is_empty()).count();
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let tokens = ids.iter().map(|i| i.len()).sum();
        let mut vectors = Vec::with_capacity(texts.len());
        let mut start = 0;
        while start < ids.len() {
            let mut end = start + 1;
            let mut budget = ids[start].len();
            while end < ids.len() && budget + ids[end].len() <= BATCH_TOKENS {
                budget += ids[end].len();
                end += 1;
            }
            vectors.extend(self.encode_group(&ids[start..end])?);
            start = end;
        }
        Ok(Embeddings { vectors, tokens, truncated })
    }

    fn encode_group(&self, ids: &[&[u32]]) -> Result<Vec<Vec<f32>>, EngineError> {
        let dim = self.dim();
        let hidden = self.model.forward(ids)?; // (Σ lens, dim)
        let mut out = Vec::with_capacity(ids.len());
        let mut row = 0;
        for seq in ids {
            let states = &hidden[row * dim..(row + seq.len()) * dim];
            row += seq.len();
            let mut v = pool(states, dim, self.pooling);
            if self.normalize {
                l2_normalize(&mut v);
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// One vector from a sequence's token states (n, dim). An empty sequence pools to zeros.
fn pool(states: &[f32], dim: usize, pooling: Pooling) -> Vec<f32> {
    let n = states.len() / dim;
    if n == 0 {
        return vec![0.0; dim];
    }
    match pooling {
        Pooling::Cls => states[..dim].to_vec(),
        Pooling::Last => states[(n - 1) * dim..].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0.0f64; dim];
            for row in states.chunks_exact(dim) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
            sum.iter().map(|&s| (s / n as f64) as f32).collect()
        }
    }
}

/// v ← v / max(‖v‖, 1e-12), as torch.nn.functional.normalize.
fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
}

/// Truncate to `max_tokens` (specials included, longest-first, from the right) and never pad: the
/// encoder takes sequences of any length side by side. Returns a copy without truncation, for counting.
fn configure(t: &mut Tokenizer, max_tokens: usize) -> tokenizers::Result<Tokenizer> {
    t.with_padding(None);
    let mut counter = t.clone();
    counter.with_truncation(None)?;
    t.with_truncation(Some(TruncationParams {
        direction: TruncationDirection::Right,
        max_length: max_tokens,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
    }))?;
    Ok(counter)
}

/// What the sentence-transformers files of a folder say (absent files: a plain transformer, which
/// sentence-transformers wraps with mean pooling and no normalization).
struct SentenceTransformers {
    max_seq_length: Option<usize>,
    pooling: Pooling,
    normalize: bool,
}

impl SentenceTransformers {
    fn read(dir: &Path) -> Result<SentenceTransformers, EngineError> {
        let json = |p: PathBuf| -> Result<Option<serde_json::Value>, EngineError> {
            match std::fs::read_to_string(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(EngineError::Input(format!("{}: {e}", p.display()))),
                Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| EngineError::Input(format!("{}: {e}", p.display()))),
            }
        };
        let max_seq_length =
            json(dir.join("sentence_bert_config.json"))?.and_then(|v| v.get("max_seq_length")?.as_u64()).map(|v| v as usize);
        let modules = json(dir.join("modules.json"))?.and_then(|v| v.as_array().cloned()).unwrap_or_default();
        let module = |kind: &str| modules.iter().find(|m| m.get("type").and_then(|t| t.as_str()) == Some(kind));
        let normalize = module("sentence_transformers.models.Normalize").is_some();
        let mut pooling = Pooling::Mean;
        if let Some(m) = module("sentence_transformers.models.Pooling") {
            let sub = m.get("path").and_then(|p| p.as_str()).unwrap_or("1_Pooling");
            if let Some(cfg) = json(dir.join(sub).join("config.json"))? {
                let on = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
                pooling = match (on("pooling_mode_mean_tokens"), on("pooling_mode_cls_token"), on("pooling_mode_lasttoken")) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    (false, false, true) => Pooling::Last,
                    _ => {
                        return Err(EngineError::Input(format!(
                            "{}: only one of mean, CLS or last-token pooling is supported",
                            dir.join(sub).join("config.json").display()
                        )));
                    }
                };
            }
        }
        Ok(SentenceTransformers { max_seq_length, pooling, normalize })
    }
}

/// llama.cpp's BERT GGUF stores the WordPiece vocabulary rewritten: whole-word pieces start with "▁",
/// continuation pieces lose their "##", [special] tokens stay. Undo that and build the BERT pipeline
/// (BERT normalizer, lowercasing unless `tokenizer.ggml.normalizer.lowercase` is false; [CLS] … [SEP]).
fn wordpiece_from_gguf(gguf: &GgufFile, path: &Path) -> Result<Tokenizer, EngineError> {
    let bad = |what: String| EngineError::Input(format!("{}: {what}", path.display()));
    match gguf.opt_str("tokenizer.ggml.model")? {
        Some("bert") => {}
        other => return Err(bad(format!("tokenizer.ggml.model is {other:?}; a BERT (WordPiece) vocabulary is needed"))),
    }
    let tokens = gguf.opt_array("tokenizer.ggml.tokens")?.ok_or_else(|| bad("no tokenizer.ggml.tokens".into()))?;
    let ferrite_gguf::Array::String(tokens) = tokens else {
        return Err(bad("tokenizer.ggml.tokens is not an array of strings".into()));
    };
    // Control tokens ([CLS], [SEP], [MASK], …) are matched in text as whole tokens, as tokenizer.json's
    // added_tokens make Hugging Face do.
    let types = match gguf.opt_array("tokenizer.ggml.token_type")? {
        Some(ferrite_gguf::Array::I32(t)) => t.clone(),
        _ => Vec::new(),
    };
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|&(i, &t)| t == 3 && i < tokens.len())
        .map(|(i, _)| serde_json::json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        let piece = if t.starts_with('[') && t.ends_with(']') {
            t.to_string()
        } else if let Some(word) = t.strip_prefix('\u{2581}') {
            word.to_string()
        } else {
            format!("##{t}")
        };
        vocab.entry(piece).or_insert(id.into());
    }
    let id = |key: &str, default: &str| -> Result<(String, u32), EngineError> {
        let i = match gguf.opt_u64(key)? {
            Some(i) => i as u32,
            None => vocab.get(default).and_then(|v| v.as_u64()).ok_or_else(|| bad(format!("no {key} and no {default} token")))? as u32,
        };
        let name = tokens.get(i as usize).ok_or_else(|| bad(format!("{key} = {i} is outside the vocabulary")))?;
        Ok((name.to_string(), i))
    };
    let (cls, sep, unk) = (
        id("tokenizer.ggml.cls_token_id", "[CLS]")?,
        id("tokenizer.ggml.seperator_token_id", "[SEP]")?,
        id("tokenizer.ggml.unknown_token_id", "[UNK]")?,
    );
    let lowercase = gguf.opt_bool("tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
    // The same pipeline a BERT tokenizer.json describes, built as one.
    let spec = serde_json::json!({
        "version": "1.0",
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": [sep.0, sep.1], "cls": [cls.0, cls.1]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": unk.0, "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab},
    });
    let bytes = serde_json::to_vec(&spec).map_err(|e| bad(format!("vocabulary: {e}")))?;
    Tokenizer::from_bytes(bytes).map_err(|e| bad(format!("WordPiece tokenizer: {e}")))
}
