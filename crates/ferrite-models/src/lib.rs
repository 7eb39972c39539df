//! Model architectures as immutable weights plus a batched forward pass.
//!
//! A [`Model`] is loaded once from a GGUF file and shared (it is `Send + Sync`, never mutated). Everything
//! that belongs to one sequence — its block table ([`SeqKv`]) into a paged [`KvPool`] — lives outside it and
//! is lent to [`Model::forward`], which runs a whole batch of sequences ([`SeqBatch`]) at once: every weight matrix is
//! read once per step for all of their tokens, whether a sequence is prefilling a prompt or decoding one
//! token. Batching, paging and speculation build on this shape without rewriting the architectures.
//!
//! One file per architecture, each readable top to bottom: [`llama`] (SmolLM2), [`qwen2`] (Qwen2.5),
//! [`gemma3`]; and the encoder [`bert`] (sentence embeddings), loaded from GGUF or a Hugging Face
//! safetensors folder ([`HfFolder`]).

mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_avx2;
mod config;
mod error;
mod hf;
mod kv;
mod layers;

pub mod bert;
pub mod gemma3;
pub mod llama;
pub mod qwen2;

pub use bert::{Bert, BertConfig, Pooling};
pub use config::ModelConfig;
pub use error::ModelError;
pub use hf::HfFolder;
pub use kv::{BLOCK_SIZE, KvCache, KvPool, SeqKv};
pub use layers::{BatchPlace, Logits, SeqBatch};

use ferrite_gguf::GgufFile;

use crate::layers::Step;

enum Arch {
    Llama(llama::Llama),
    Gemma3(gemma3::Gemma3),
}

/// A loaded model: weights (mostly still in the file's memory map) and its configuration.
pub struct Model {
    arch: Arch,
}

impl Model {
    /// Build the model `general.architecture` names from a parsed GGUF file.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Model, ModelError> {
        let arch = match gguf.architecture() {
            Some("llama") => Arch::Llama(llama::Llama::load(gguf)?),
            Some("qwen2") => Arch::Llama(qwen2::load(gguf)?),
            Some("gemma3") => Arch::Gemma3(gemma3::Gemma3::load(gguf)?),
            Some(other) => return Err(ModelError::UnsupportedArch(other.into())),
            None => return Err(ModelError::Gguf(ferrite_gguf::GgufError::MissingKey("general.architecture".into()))),
        };
        Ok(Model { arch })
    }

    pub fn config(&self) -> &ModelConfig {
        match &self.arch {
            Arch::Llama(m) => m.config(),
            Arch::Gemma3(m) => m.config(),
        }
    }

    /// An empty KV cache for one sequence of up to `capacity` tokens.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.config(), capacity)
    }

    /// Run the new tokens of every sequence in `batch` through the model, storing their keys and values in
    /// `pool` through each sequence's block table and advancing its length.
    ///
    /// Returns the logits asked for, (rows, vocab), in batch order: one row per sequence with
    /// [`Logits::Last`], one per token with [`Logits::All`]. On error the sequences' lengths are unchanged
    /// (pool contents past them may have been overwritten, which is harmless).
    pub fn forward(&self, pool: &mut KvPool, batch: &mut [SeqBatch<'_>]) -> Result<Vec<f32>, ModelError> {
        let mut step = Step::new(pool, batch, self.config())?;
        if step.n_rows() == 0 {
            return Ok(Vec::new());
        }
        let logits = match &self.arch {
            Arch::Llama(m) => m.forward(&mut step)?,
            Arch::Gemma3(m) => m.forward(&mut step)?,
        };
        step.finish();
        Ok(logits)
    }

    /// [`Model::forward`] for one sequence with a cache of its own.
    pub fn forward_cache(&self, cache: &mut KvCache, tokens: &[u32], logits: Logits) -> Result<Vec<f32>, ModelError> {
        self.forward_cache_placed(cache, tokens, logits, None)
    }

    /// [`Model::forward_cache`] for a piece of a batch (see [`SeqBatch::place`]).
    pub fn forward_cache_placed(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: Logits,
        place: Option<BatchPlace>,
    ) -> Result<Vec<f32>, ModelError> {
        cache.check_room(tokens.len())?;
        self.forward(&mut cache.pool, &mut [SeqBatch { tokens, kv: &mut cache.seq, logits, place }])
    }
}
