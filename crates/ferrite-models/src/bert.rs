//! BERT: the bidirectional encoder behind sentence-embedding models (all-MiniLM-L6-v2, bge, e5, …).
//!
//! ```text
//! x = word_embd[t] + pos_embd[p] + type_embd[0]           (N, dim), N = Σ tokens of the batch
//! x = layer_norm(x)
//! for each layer (post-norm):
//!     q|k|v = x·Wqkvᵀ + b                                 (N, 3·dim), one GEMM
//!     a = softmax(q_h·k_hᵀ / √hd) · v_h                   per sequence and head; no mask: every token
//!                                                         sees its whole sequence and nothing else
//!     x = layer_norm(x + a·Woᵀ + bo)
//!     x = layer_norm(x + gelu(x·Wupᵀ + bu)·Wdownᵀ + bd)   (N, ffn) → (N, dim), exact (erf) GELU
//! out: x, the last hidden state of every token            (N, dim); pooling is the caller's
//! ```
//!
//! A batch is its sequences' tokens back to back, never padded: the dense layers run once over all N rows
//! and attention runs per sequence. Weights load from a Hugging Face folder (config.json +
//! model.safetensors, F32/F16/BF16, kept as f32 for the GEMM path) or from a llama.cpp BERT GGUF (F32/F16
//! kept as f32, quantized matrices computed by Ferrite's quantized kernels).

use ferrite_gguf::GgufFile;
use ferrite_tensor::gemm::{self, Threads, View};
use ferrite_tensor::matmul::{self, QMatrix};
use ferrite_tensor::{DType, ops, vmath};
use rayon::prelude::*;

use crate::ModelError;
use crate::hf::HfFolder;
use crate::layers::Loader;

/// How token states become one vector per text (sentence-transformers' pooling modes; llama.cpp's
/// `pooling_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of every token's state.
    Mean,
    /// The first token's ([CLS]).
    Cls,
    /// The last token's.
    Last,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub ffn_dim: usize,
    /// Position embeddings: the longest sequence the model can encode.
    pub max_positions: usize,
    pub norm_eps: f32,
    /// The pooling a GGUF file names (`bert.pooling_type`); a Hugging Face folder says it in its
    /// sentence-transformers files instead, which the caller reads.
    pub pooling: Option<Pooling>,
}

/// A weight matrix (rows = output features, cols = input features).
enum Weight {
    /// Dense f32, multiplied through the `gemm` crate.
    F32(Vec<f32>),
    /// A quantized GGUF matrix, multiplied by Ferrite's kernels.
    Quant(QMatrix),
}

/// y = x·Wᵀ + b.
struct Dense {
    w: Weight,
    b: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Dense {
    /// x: (n, cols) → (n, rows).
    fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let mut y = vec![0.0; n * self.rows];
        match &self.w {
            Weight::F32(w) => {
                gemm::linear(View::dense(x, n, self.cols), View::dense(w, self.rows, self.cols), Some(&self.b), &mut y, Threads::Pool)
                    .map_err(ModelError::Compute)?
            }
            Weight::Quant(q) => {
                matmul::matmul(q, x, n, &mut y).map_err(ModelError::Compute)?;
                ops::add_bias(&mut y, &self.b);
            }
        }
        Ok(y)
    }
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    qkv: Dense,      // (3·dim, dim): query, key and value rows stacked
    out: Dense,      // (dim, dim)
    attn_norm: Norm, // (dim,)
    up: Dense,       // (ffn, dim)
    down: Dense,     // (dim, ffn)
    ffn_norm: Norm,  // (dim,)
}

/// BERT weights: immutable, shared by every request.
pub struct Bert {
    cfg: BertConfig,
    word: Weight,         // (vocab, dim)
    position: Vec<f32>,   // (max_positions, dim)
    token_type: Vec<f32>, // (dim,): type 0, the only one single texts use
    embed_norm: Norm,
    layers: Vec<Layer>,
}

/// Where the weights come from: tensor names differ, shapes are given rows first.
enum Source<'a> {
    Hf(&'a HfFolder, &'a str), // folder and the name prefix ("" or "bert.")
    Gguf(Loader<'a>),
}

impl Source<'_> {
    fn vector(&self, hf: &str, gguf: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        match self {
            Source::Hf(f, p) => f.f32(&format!("{p}{hf}"), &[len]),
            Source::Gguf(l) => l.vector(gguf, len),
        }
    }

    fn matrix(&self, hf: &str, gguf: &str, rows: usize, cols: usize) -> Result<Weight, ModelError> {
        match self {
            Source::Hf(f, p) => Ok(Weight::F32(f.f32(&format!("{p}{hf}"), &[rows, cols])?)),
            Source::Gguf(l) => {
                let q = l.matrix(gguf, rows, cols)?;
                if matches!(q.dtype(), DType::F32 | DType::F16 | DType::BF16) {
                    Ok(Weight::F32(dequantize(&q)?))
                } else {
                    Ok(Weight::Quant(q))
                }
            }
        }
    }

    fn dense(&self, hf: &str, gguf: &str, rows: usize, cols: usize) -> Result<Dense, ModelError> {
        let w = self.matrix(&format!("{hf}.weight"), &format!("{gguf}.weight"), rows, cols)?;
        let b = self.vector(&format!("{hf}.bias"), &format!("{gguf}.bias"), rows)?;
        Ok(Dense { w, b, rows, cols })
    }

    fn norm(&self, hf: &str, gguf: &str, dim: usize) -> Result<Norm, ModelError> {
        Ok(Norm {
            w: self.vector(&format!("{hf}.weight"), &format!("{gguf}.weight"), dim)?,
            b: self.vector(&format!("{hf}.bias"), &format!("{gguf}.bias"), dim)?,
        })
    }

    /// Query, key and value stacked into one (3·dim, dim) layer, so one GEMM computes all three.
    fn qkv(&self, i: usize, dim: usize) -> Result<Dense, ModelError> {
        let parts = ["query", "key", "value"]
            .iter()
            .zip(["attn_q", "attn_k", "attn_v"])
            .map(|(hf, gguf)| self.dense(&format!("encoder.layer.{i}.attention.self.{hf}"), &format!("blk.{i}.{gguf}"), dim, dim))
            .collect::<Result<Vec<_>, _>>()?;
        let b = parts.iter().flat_map(|p| p.b.iter().copied()).collect();
        let mut dense = Vec::with_capacity(3 * dim * dim);
        for p in &parts {
            match &p.w {
                Weight::F32(w) => dense.extend_from_slice(w),
                Weight::Quant(q) => dense.extend(dequantize(q)?),
            }
        }
        // Stacked as f32: a quantized GGUF's three matrices are dequantized here (dim² each, small next to
        // the feed-forward, which stays quantized).
        Ok(Dense { w: Weight::F32(dense), b, rows: 3 * dim, cols: dim })
    }
}

/// Layer norm of every row, rows in parallel (same result as one pass: rows are independent).
fn norm_rows(x: &mut [f32], n: &Norm, cfg: &BertConfig) {
    x.par_chunks_mut(cfg.dim * 64).for_each(|rows| ops::layer_norm(rows, &n.w, &n.b, cfg.norm_eps));
}

fn dequantize(q: &QMatrix) -> Result<Vec<f32>, ModelError> {
    let mut out = vec![0.0; q.rows() * q.cols()];
    for (r, row) in out.chunks_exact_mut(q.cols()).enumerate() {
        matmul::dequantize_rows(q, r, row).map_err(ModelError::Compute)?;
    }
    Ok(out)
}

impl Bert {
    /// A Hugging Face folder with `config.json` (`model_type` bert) and `model.safetensors`.
    pub fn from_hf(folder: &HfFolder) -> Result<Bert, ModelError> {
        if let Some(t) = folder.opt_str("model_type")
            && t != "bert"
        {
            return Err(ModelError::UnsupportedArch(t.into()));
        }
        if let Some(act) = folder.opt_str("hidden_act")
            && act != "gelu"
        {
            return Err(ModelError::BadConfig {
                path: folder.dir.join("config.json"),
                problem: format!("hidden_act {act:?} is not supported (gelu is)"),
            });
        }
        if let Some(kind) = folder.opt_str("position_embedding_type")
            && kind != "absolute"
        {
            return Err(ModelError::BadConfig {
                path: folder.dir.join("config.json"),
                problem: format!("position_embedding_type {kind:?} is not supported (absolute is)"),
            });
        }
        let cfg = BertConfig {
            vocab_size: folder.usize("vocab_size")?,
            dim: folder.usize("hidden_size")?,
            n_layers: folder.usize("num_hidden_layers")?,
            n_heads: folder.usize("num_attention_heads")?,
            ffn_dim: folder.usize("intermediate_size")?,
            max_positions: folder.usize("max_position_embeddings")?,
            norm_eps: folder.opt_f64("layer_norm_eps").unwrap_or(1e-12) as f32,
            pooling: None,
        };
        // Checkpoints saved from a task model (BertForMaskedLM, …) prefix the encoder's names with "bert.".
        let prefix = if !folder.has("embeddings.word_embeddings.weight") && folder.has("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        Self::load(cfg, &Source::Hf(folder, prefix))
    }

    /// A llama.cpp BERT GGUF (`general.architecture` bert, as `convert_hf_to_gguf.py` writes it).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Bert, ModelError> {
        match gguf.architecture() {
            Some("bert") => {}
            Some(other) => return Err(ModelError::UnsupportedArch(other.into())),
            None => return Err(ModelError::Gguf(ferrite_gguf::GgufError::MissingKey("general.architecture".into()))),
        }
        let h = crate::config::Hparams { gguf, arch: "bert" };
        let pooling = match gguf.opt_u64("bert.pooling_type")? {
            None | Some(1) => Some(Pooling::Mean),
            Some(2) => Some(Pooling::Cls),
            Some(3) => Some(Pooling::Last),
            Some(0) => None,
            Some(other) => {
                return Err(ModelError::BadHparam {
                    key: "bert.pooling_type".into(),
                    problem: format!("{other} is not a pooling Ferrite knows"),
                });
            }
        };
        let vocab_size = match h.opt_usize("vocab_size")? {
            Some(v) => v,
            None => gguf.opt_array("tokenizer.ggml.tokens")?.map(|a| a.len()).ok_or_else(|| ModelError::BadHparam {
                key: "vocab_size".into(),
                problem: "absent, and no tokenizer.ggml.tokens".into(),
            })?,
        };
        let cfg = BertConfig {
            vocab_size,
            dim: h.usize("embedding_length")?,
            n_layers: h.usize("block_count")?,
            n_heads: h.usize("attention.head_count")?,
            ffn_dim: h.usize("feed_forward_length")?,
            max_positions: h.usize("context_length")?,
            norm_eps: h.opt_f32("attention.layer_norm_epsilon")?.unwrap_or(1e-12),
            pooling,
        };
        Self::load(cfg, &Source::Gguf(Loader { gguf }))
    }

    fn load(cfg: BertConfig, src: &Source) -> Result<Bert, ModelError> {
        let (dim, ffn) = (cfg.dim, cfg.ffn_dim);
        if dim % cfg.n_heads != 0 {
            return Err(ModelError::BadHparam {
                key: "head count".into(),
                problem: format!("{} heads do not divide width {dim}", cfg.n_heads),
            });
        }
        let word = src.matrix("embeddings.word_embeddings.weight", "token_embd.weight", cfg.vocab_size, dim)?;
        let position = match src.matrix("embeddings.position_embeddings.weight", "position_embd.weight", cfg.max_positions, dim)? {
            Weight::F32(p) => p,
            Weight::Quant(q) => dequantize(&q)?,
        };
        // Only type 0 is used; read the first row of the (types, dim) table, whatever its height.
        let token_type = match src {
            Source::Hf(f, p) => {
                let name = format!("{p}embeddings.token_type_embeddings.weight");
                let types = f.config.get("type_vocab_size").and_then(|v| v.as_u64()).unwrap_or(2) as usize;
                f.f32(&name, &[types, dim])?[..dim].to_vec()
            }
            Source::Gguf(l) => match l.gguf.tensor("token_types.weight") {
                None => vec![0.0; dim],
                Some(t) => {
                    let types = t.dims.get(1).copied().unwrap_or(1) as usize;
                    dequantize(&l.matrix("token_types.weight", types, dim)?)?[..dim].to_vec()
                }
            },
        };
        let embed_norm = src.norm("embeddings.LayerNorm", "token_embd_norm", dim)?;
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let hf = |n: &str| format!("encoder.layer.{i}.{n}");
                let gg = |n: &str| format!("blk.{i}.{n}");
                Ok(Layer {
                    qkv: src.qkv(i, dim)?,
                    out: src.dense(&hf("attention.output.dense"), &gg("attn_output"), dim, dim)?,
                    attn_norm: src.norm(&hf("attention.output.LayerNorm"), &gg("attn_output_norm"), dim)?,
                    up: src.dense(&hf("intermediate.dense"), &gg("ffn_up"), ffn, dim)?,
                    down: src.dense(&hf("output.dense"), &gg("ffn_down"), dim, ffn)?,
                    ffn_norm: src.norm(&hf("output.LayerNorm"), &gg("layer_output_norm"), dim)?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(Bert { cfg, word, position, token_type, embed_norm, layers })
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The last hidden state of every token of every sequence: (Σ lens, dim), sequences back to back in
    /// batch order. Each sequence is encoded on its own (attention never crosses sequences), so a text's
    /// states do not depend on what it is batched with beyond float summation order in the GEMMs.
    pub fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let cfg = &self.cfg;
        let dim = cfg.dim;
        for s in seqs {
            if s.len() > cfg.max_positions {
                return Err(ModelError::TooLong { len: s.len(), max: cfg.max_positions });
            }
            if let Some(&id) = s.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(ModelError::BadToken { id, vocab: cfg.vocab_size });
            }
        }
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let n: usize = lens.iter().sum();
        if n == 0 {
            return Ok(Vec::new());
        }

        // Embeddings: word + position + type 0, then layer norm.
        let mut x = vec![0.0; n * dim];
        let positions = seqs.iter().flat_map(|s| 0..s.len());
        for ((row, &t), p) in x.chunks_exact_mut(dim).zip(seqs.iter().flat_map(|s| s.iter())).zip(positions) {
            match &self.word {
                Weight::F32(w) => row.copy_from_slice(&w[t as usize * dim..][..dim]),
                Weight::Quant(q) => matmul::dequantize_rows(q, t as usize, row).map_err(ModelError::Compute)?,
            }
            let pos = &self.position[p * dim..][..dim];
            row.iter_mut().zip(pos).zip(&self.token_type).for_each(|((v, &a), &b)| *v += a + b);
        }
        norm_rows(&mut x, &self.embed_norm, cfg);

        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, n)?; // (n, 3·dim)
            let a = self.attention(&qkv, &lens)?; // (n, dim)
            let o = layer.out.forward(&a, n)?;
            ops::add_assign(&mut x, &o);
            norm_rows(&mut x, &layer.attn_norm, cfg);

            let mut h = layer.up.forward(&x, n)?; // (n, ffn)
            h.par_chunks_mut(cfg.ffn_dim * 16).for_each(vmath::gelu_erf);
            let d = layer.down.forward(&h, n)?;
            ops::add_assign(&mut x, &d);
            norm_rows(&mut x, &layer.ffn_norm, cfg);
        }
        Ok(x)
    }

    /// Bidirectional attention of each sequence over itself: qkv (n, 3·dim) → (n, dim). One task per
    /// (sequence, head), each a pair of small GEMMs on strided views of qkv.
    fn attention(&self, qkv: &[f32], lens: &[usize]) -> Result<Vec<f32>, ModelError> {
        let (dim, heads) = (self.cfg.dim, self.cfg.n_heads);
        let hd = dim / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let starts: Vec<usize> = lens
            .iter()
            .scan(0, |acc, &l| {
                let s = *acc;
                *acc += l;
                Some(s)
            })
            .collect();
        let tasks: Vec<(usize, usize)> = (0..lens.len()).filter(|&s| lens[s] > 0).flat_map(|s| (0..heads).map(move |h| (s, h))).collect();
        let results = tasks
            .par_iter()
            .map(|&(s, h)| {
                let (n, start) = (lens[s], starts[s]);
                let view = |part: usize| View { data: &qkv[start * 3 * dim + part * dim + h * hd..], rows: n, cols: hd, stride: 3 * dim };
                let mut scores = vec![0.0; n * n];
                gemm::a_bt(view(0), view(1), &mut scores, n, Threads::One)?;
                scores.chunks_exact_mut(n).for_each(|row| vmath::softmax_scaled(row, scale));
                let mut out = vec![0.0; n * hd];
                gemm::a_b(View::dense(&scores, n, n), view(2), &mut out, hd, Threads::One)?;
                Ok((s, h, out))
            })
            .collect::<Result<Vec<_>, ferrite_tensor::TensorError>>()
            .map_err(ModelError::Compute)?;
        let mut a = vec![0.0; qkv.len() / 3];
        for (s, h, out) in results {
            for (i, row) in out.chunks_exact(hd).enumerate() {
                a[(starts[s] + i) * dim + h * hd..][..hd].copy_from_slice(row);
            }
        }
        Ok(a)
    }
}
