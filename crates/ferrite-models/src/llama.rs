//! LLaMA: the pre-norm decoder every later architecture starts from (SmolLM2 uses it as is).
//!
//! ```text
//! x = embed(tokens)                                   (n, dim)
//! for each layer:
//!     h = rms_norm(x) · attn_norm
//!     q, k, v = h·Wq (+bq), h·Wk (+bk), h·Wv (+bv)     (n, heads·hd), (n, kv_heads·hd) ×2
//!     x += attention(rope(q), rope(k), v) · Wo        grouped-query attention over the KV cache
//!     h = rms_norm(x) · ffn_norm
//!     x += (silu(h·Wgate) ⊙ h·Wup) · Wdown            (n, ffn) → (n, dim)
//!     (last layer: only the rows whose logits are wanted go on past the attention, as in llama.cpp)
//! logits = rms_norm(x) · output_norm · Wout           (n_out, vocab); Wout = embedding when tied
//! ```

use ferrite_gguf::GgufFile;
use ferrite_tensor::matmul::QMatrix;
use ferrite_tensor::ops::{self, RopeStyle};

use crate::config::Hparams;
use crate::layers::{self, Linear, Loader, Step};
use crate::{ModelConfig, ModelError};

/// Variations of the LLaMA layout that other architectures (Qwen2) are made of.
pub(crate) struct Flavor {
    pub rope: RopeStyle,
    /// Q, K and V projections carry biases.
    pub qkv_bias: bool,
}

pub(crate) const LLAMA: Flavor = Flavor { rope: RopeStyle::Interleaved, qkv_bias: false };

struct Layer {
    attn_norm: Vec<f32>, // (dim,)
    wq: Linear,          // (heads·hd, dim)
    wk: Linear,          // (kv_heads·hd, dim)
    wv: Linear,          // (kv_heads·hd, dim)
    wo: Linear,          // (dim, heads·hd)
    ffn_norm: Vec<f32>,  // (dim,)
    gate: Linear,        // (ffn, dim)
    up: Linear,          // (ffn, dim)
    down: Linear,        // (dim, ffn)
}

/// LLaMA weights: immutable, shared by every sequence.
pub struct Llama {
    cfg: ModelConfig,
    embed: QMatrix, // (vocab, dim)
    layers: Vec<Layer>,
    norm: Vec<f32>, // (dim,)
    output: Linear, // (vocab, dim)
}

impl Llama {
    pub fn load(gguf: &GgufFile) -> Result<Llama, ModelError> {
        Self::load_flavor(gguf, "llama", &LLAMA)
    }

    pub(crate) fn load_flavor(gguf: &GgufFile, arch: &str, flavor: &Flavor) -> Result<Llama, ModelError> {
        let cfg = Hparams { gguf, arch }.common(flavor.rope)?;
        let l = Loader { gguf };
        let (dim, q_w, kv_w, ffn) = (cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim);
        let embed = l.matrix("token_embd.weight", cfg.vocab_size, dim)?;
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let p = |n: &str| format!("blk.{i}.{n}");
                Ok(Layer {
                    attn_norm: l.vector(&p("attn_norm.weight"), dim)?,
                    wq: l.linear(&p("attn_q"), q_w, dim, flavor.qkv_bias)?,
                    wk: l.linear(&p("attn_k"), kv_w, dim, flavor.qkv_bias)?,
                    wv: l.linear(&p("attn_v"), kv_w, dim, flavor.qkv_bias)?,
                    wo: l.linear(&p("attn_output"), dim, q_w, false)?,
                    ffn_norm: l.vector(&p("ffn_norm.weight"), dim)?,
                    gate: l.linear(&p("ffn_gate"), ffn, dim, false)?,
                    up: l.linear(&p("ffn_up"), ffn, dim, false)?,
                    down: l.linear(&p("ffn_down"), dim, ffn, false)?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let norm = l.vector("output_norm.weight", dim)?;
        // Tied embeddings: no output matrix, the embedding table doubles as the LM head.
        let output =
            if l.has("output.weight") { l.linear("output", cfg.vocab_size, dim, false)? } else { l.tied_output("token_embd.weight", &embed) };
        Ok(Llama { cfg, embed, layers, norm, output })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Logits (n_out, vocab) for the step's output rows.
    pub(crate) fn forward(&self, step: &mut Step) -> Result<Vec<f32>, ModelError> {
        let cfg = &self.cfg;
        let mut seqs = step.spans(); // rows per sequence
        let (out_rows, out_seqs) = step.output_rows();
        let mut x = layers::embed(&self.embed, step.tokens())?; // (n, dim)
        for (i, layer) in self.layers.iter().enumerate() {
            let mut h = x.clone();
            ops::rms_norm(&mut h, &layer.attn_norm, cfg.norm_eps);
            let mut q = layer.wq.forward(&h, &seqs)?;
            let mut k = layer.wk.forward(&h, &seqs)?;
            let v = layer.wv.forward(&h, &seqs)?;
            let attn = layers::attention(step, cfg, i, &mut q, &mut k, &v); // (n, heads·hd)
            let mut o = layer.wo.forward(&attn, &seqs)?; // (n, dim)
            if i + 1 == self.layers.len() {
                // Past the last attention only the output rows matter: (n_out, dim) from here on.
                (x, o) = (layers::select_rows(&x, cfg.dim, &out_rows), layers::select_rows(&o, cfg.dim, &out_rows));
                seqs.clone_from(&out_seqs);
            }
            ops::add_assign(&mut x, &o);

            let mut h = x.clone();
            ops::rms_norm(&mut h, &layer.ffn_norm, cfg.norm_eps);
            let mut g = layer.gate.forward(&h, &seqs)?; // (n, ffn)
            ops::swiglu(&mut g, &layer.up.forward(&h, &seqs)?);
            ops::add_assign(&mut x, &layer.down.forward(&g, &seqs)?);
        }
        ops::rms_norm(&mut x, &self.norm, cfg.norm_eps);
        self.output.forward(&x, &out_seqs)
    }
}
