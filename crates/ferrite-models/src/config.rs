//! Hyperparameters read from GGUF metadata (`{arch}.block_count`, `{arch}.rope.freq_base`, …).

use ferrite_gguf::GgufFile;
use ferrite_tensor::ops::{Rope, RopeStyle};

use crate::ModelError;

/// The shape of a decoder-only transformer and the per-layer attention settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`.
    pub arch: String,
    pub n_layers: usize,
    /// Model (residual stream) width.
    pub dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    /// Context length the model was trained with.
    pub ctx_train: usize,
    pub norm_eps: f32,
    /// Scale applied to q·k (1/sqrt(head_dim) unless the architecture says otherwise).
    pub attn_scale: f32,
    /// Multiply the (roped) queries by `attn_scale` in f32 before attention instead of scaling each
    /// score — what llama.cpp's Gemma 3 graph does. Not the same bits: the attention rounds queries to
    /// f16, where a scaled query can fall into the subnormal range.
    pub attn_prescale_q: bool,
    /// RoPE of each layer (Gemma 3 uses another base on its sliding-window layers).
    pub rope: Vec<Rope>,
    /// Sliding-window length of each layer: a query at position p sees keys at p-window+1 ..= p.
    pub window: Vec<Option<usize>>,
}

/// Typed access to the `{arch}.*` keys.
pub(crate) struct Hparams<'a> {
    pub gguf: &'a GgufFile,
    pub arch: &'a str,
}

impl Hparams<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    pub fn usize(&self, k: &str) -> Result<usize, ModelError> {
        let key = self.key(k);
        let v = self.gguf.u64(&key)?;
        usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| ModelError::BadHparam { key, problem: format!("{v} is not a positive size") })
    }

    pub fn opt_usize(&self, k: &str) -> Result<Option<usize>, ModelError> {
        match self.gguf.opt_u64(&self.key(k))? {
            None => Ok(None),
            Some(_) => self.usize(k).map(Some),
        }
    }

    pub fn opt_f32(&self, k: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.gguf.opt_f64(&self.key(k))?.map(|v| v as f32))
    }

    /// The settings every supported architecture shares. `rope_style` is the architecture's.
    pub fn common(&self, rope_style: RopeStyle) -> Result<ModelConfig, ModelError> {
        let n_layers = self.usize("block_count")?;
        let dim = self.usize("embedding_length")?;
        let n_heads = self.usize("attention.head_count")?;
        let n_kv_heads = self.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads);
        let head_dim = self.opt_usize("attention.key_length")?.unwrap_or(dim / n_heads);
        if let Some(v) = self.opt_usize("attention.value_length")?
            && v != head_dim
        {
            return Err(ModelError::BadHparam { key: self.key("attention.value_length"), problem: format!("{v} differs from key length {head_dim}") });
        }
        if n_heads % n_kv_heads != 0 {
            return Err(ModelError::BadHparam { key: self.key("attention.head_count_kv"), problem: format!("{n_kv_heads} does not divide {n_heads} heads") });
        }
        let n_rot = self.opt_usize("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 || n_rot > 1024 {
            return Err(ModelError::BadHparam { key: self.key("rope.dimension_count"), problem: format!("{n_rot} for head size {head_dim}") });
        }
        let freq_base = self.opt_f32("rope.freq_base")?.unwrap_or(10000.0);
        let freq_scale = match self.gguf.opt_str(&self.key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => 1.0 / self.opt_f32("rope.scaling.factor")?.unwrap_or(1.0),
            Some(other) => return Err(ModelError::BadHparam { key: self.key("rope.scaling.type"), problem: format!("{other:?} is not supported yet") }),
        };
        let vocab_size = match self.opt_usize("vocab_size")? {
            Some(v) => v,
            None => self.gguf.opt_array("tokenizer.ggml.tokens")?.map(|a| a.len()).ok_or_else(|| ModelError::BadHparam { key: "vocab_size".into(), problem: "absent, and no tokenizer.ggml.tokens".into() })?,
        };
        Ok(ModelConfig {
            arch: self.arch.to_string(),
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: self.usize("feed_forward_length")?,
            vocab_size,
            ctx_train: self.opt_usize("context_length")?.unwrap_or(2048),
            norm_eps: self.opt_f32("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            attn_prescale_q: false,
            rope: vec![Rope { style: rope_style, n_dims: n_rot, freq_base, freq_scale }; n_layers],
            window: vec![None; n_layers],
        })
    }
}
