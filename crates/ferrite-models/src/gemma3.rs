//! Gemma 3: a decoder with sliding-window attention on five layers of every six (the sixth attends
//! globally), RMS-normed queries and keys, norms both before and after each sublayer, a GELU-gated
//! feed-forward, embeddings scaled by sqrt(dim) and an output tied to the embedding table.
//!
//! ```text
//! x = embed(tokens) · sqrt(dim)                                  (n, dim)
//! for each layer (window = 512 on local layers, none on global ones):
//!     h = rms_norm(x) · attn_norm
//!     q = rms_norm_per_head(h·Wq) · q_norm                       (n, heads·hd)
//!     k = rms_norm_per_head(h·Wk) · k_norm, v = h·Wv             (n, kv_heads·hd)
//!     a = attention(rope(q), rope(k), v) · Wo                    RoPE base 10k local, 1M global
//!     x = x + rms_norm(a) · attn_post_norm
//!     h = rms_norm(x) · ffn_norm
//!     f = (gelu(h·Wgate) ⊙ h·Wup) · Wdown
//!     x = x + rms_norm(f) · ffn_post_norm
//!     (last layer: only the rows whose logits are wanted go on past the attention, as in llama.cpp)
//! logits = rms_norm(x) · output_norm · Embedᵀ                    (n_out, vocab), optionally soft-capped
//! ```
//! Gemma's norm weights are stored in GGUF already offset by one (w + 1), so they multiply directly.

use ferrite_gguf::GgufFile;
use ferrite_tensor::matmul::QMatrix;
use ferrite_tensor::ops::{self, RopeStyle};

use crate::config::Hparams;
use crate::layers::{self, Linear, Loader, Step};
use crate::{ModelConfig, ModelError};

/// Every `PATTERN`-th layer (the last of each group) attends globally.
const SWA_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers unless the file says otherwise.
const SWA_FREQ_BASE: f32 = 10000.0;

struct Layer {
    attn_norm: Vec<f32>,      // (dim,)
    wq: Linear,               // (heads·hd, dim)
    wk: Linear,               // (kv_heads·hd, dim)
    wv: Linear,               // (kv_heads·hd, dim)
    q_norm: Vec<f32>,         // (hd,)
    k_norm: Vec<f32>,         // (hd,)
    wo: Linear,               // (dim, heads·hd)
    attn_post_norm: Vec<f32>, // (dim,)
    ffn_norm: Vec<f32>,       // (dim,)
    gate: Linear,             // (ffn, dim)
    up: Linear,               // (ffn, dim)
    down: Linear,             // (dim, ffn)
    ffn_post_norm: Vec<f32>,  // (dim,)
}

/// Gemma 3 weights: immutable, shared by every sequence.
pub struct Gemma3 {
    cfg: ModelConfig,
    embed: QMatrix, // (vocab, dim), also the output matrix
    layers: Vec<Layer>,
    norm: Vec<f32>, // (dim,)
    output: Linear,
    /// tanh soft-capping of the logits (0 = off).
    softcap: f32,
}

impl Gemma3 {
    pub fn load(gguf: &GgufFile) -> Result<Gemma3, ModelError> {
        let hp = Hparams { gguf, arch: "gemma3" };
        let mut cfg = hp.common(RopeStyle::Neox)?;
        // The 27B model scales queries by 1/sqrt(dim/heads) rather than 1/sqrt(head_dim).
        if cfg.n_layers == 62 {
            cfg.attn_scale = 1.0 / ((cfg.dim / cfg.n_heads) as f32).sqrt();
        }
        cfg.attn_prescale_q = true;
        if let Some(window) = hp.opt_usize("attention.sliding_window")? {
            let is_swa: Vec<bool> = match gguf.opt_array("gemma3.attention.sliding_window_pattern")? {
                Some(a) => (0..cfg.n_layers).map(|i| a.get_i64(i).is_some_and(|v| v != 0)).collect(),
                None => {
                    let n = hp.opt_usize("attention.sliding_window_pattern")?.unwrap_or(SWA_PATTERN);
                    (0..cfg.n_layers).map(|i| i % n < n - 1).collect()
                }
            };
            let swa_base = hp.opt_f32("rope.freq_base_swa")?.unwrap_or(SWA_FREQ_BASE);
            for (i, swa) in is_swa.into_iter().enumerate() {
                if swa {
                    cfg.window[i] = Some(window);
                    cfg.rope[i].freq_base = swa_base;
                    cfg.rope[i].freq_scale = 1.0;
                }
            }
        }
        let softcap = hp.opt_f32("final_logit_softcapping")?.unwrap_or(0.0);

        let l = Loader { gguf };
        let (dim, hd, ffn) = (cfg.dim, cfg.head_dim, cfg.ffn_dim);
        let (q_w, kv_w) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
        let embed = l.matrix("token_embd.weight", cfg.vocab_size, dim)?;
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let p = |n: &str| format!("blk.{i}.{n}");
                Ok(Layer {
                    attn_norm: l.vector(&p("attn_norm.weight"), dim)?,
                    wq: l.linear(&p("attn_q"), q_w, dim, false)?,
                    wk: l.linear(&p("attn_k"), kv_w, dim, false)?,
                    wv: l.linear(&p("attn_v"), kv_w, dim, false)?,
                    q_norm: l.vector(&p("attn_q_norm.weight"), hd)?,
                    k_norm: l.vector(&p("attn_k_norm.weight"), hd)?,
                    wo: l.linear(&p("attn_output"), dim, q_w, false)?,
                    attn_post_norm: l.vector(&p("post_attention_norm.weight"), dim)?,
                    ffn_norm: l.vector(&p("ffn_norm.weight"), dim)?,
                    gate: l.linear(&p("ffn_gate"), ffn, dim, false)?,
                    up: l.linear(&p("ffn_up"), ffn, dim, false)?,
                    down: l.linear(&p("ffn_down"), dim, ffn, false)?,
                    ffn_post_norm: l.vector(&p("post_ffw_norm.weight"), dim)?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let norm = l.vector("output_norm.weight", dim)?;
        let output =
            if l.has("output.weight") { l.linear("output", cfg.vocab_size, dim, false)? } else { l.tied_output("token_embd.weight", &embed) };
        Ok(Gemma3 { cfg, embed, layers, norm, output, softcap })
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
        let scale = (cfg.dim as f32).sqrt();
        x.iter_mut().for_each(|v| *v *= scale);
        for (i, layer) in self.layers.iter().enumerate() {
            let mut h = x.clone();
            ops::rms_norm(&mut h, &layer.attn_norm, cfg.norm_eps);
            let mut q = layer.wq.forward(&h, &seqs)?;
            let mut k = layer.wk.forward(&h, &seqs)?;
            let v = layer.wv.forward(&h, &seqs)?;
            ops::rms_norm(&mut q, &layer.q_norm, cfg.norm_eps); // per head: rows of hd
            ops::rms_norm(&mut k, &layer.k_norm, cfg.norm_eps);
            let attn = layers::attention(step, cfg, i, &mut q, &mut k, &v);
            let mut a = layer.wo.forward(&attn, &seqs)?; // (n, dim)
            if i + 1 == self.layers.len() {
                // Past the last attention only the output rows matter: (n_out, dim) from here on.
                (x, a) = (layers::select_rows(&x, cfg.dim, &out_rows), layers::select_rows(&a, cfg.dim, &out_rows));
                seqs.clone_from(&out_seqs);
            }
            ops::rms_norm(&mut a, &layer.attn_post_norm, cfg.norm_eps);
            ops::add_assign(&mut x, &a);

            let mut h = x.clone();
            ops::rms_norm(&mut h, &layer.ffn_norm, cfg.norm_eps);
            let mut g = layer.gate.forward(&h, &seqs)?; // (n, ffn)
            ops::geglu(&mut g, &layer.up.forward(&h, &seqs)?);
            let mut f = layer.down.forward(&g, &seqs)?;
            ops::rms_norm(&mut f, &layer.ffn_post_norm, cfg.norm_eps);
            ops::add_assign(&mut x, &f);
        }
        ops::rms_norm(&mut x, &self.norm, cfg.norm_eps);
        let mut logits = self.output.forward(&x, &out_seqs)?;
        if self.softcap > 0.0 {
            logits.iter_mut().for_each(|v| *v = (*v / self.softcap).tanh() * self.softcap);
        }
        Ok(logits)
    }
}
