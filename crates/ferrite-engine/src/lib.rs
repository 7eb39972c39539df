//! Generation on top of the models: sampling, stop conditions, chat templates and the generation loop.
//!
//! - [`LoadedModel`]: a GGUF file opened as model + tokenizer + chat template.
//! - [`sampling`]: sampling settings as data ([`sampling::SamplingParams`]) and a seeded [`sampling::Sampler`].
//! - [`stop`]: stop strings matched across streamed pieces.
//! - [`chat`]: the model's Jinja chat template rendered like Hugging Face does.
//! - [`generate()`]: prompt in, streamed text out, stopping at end-of-generation tokens, stop strings or
//!   the token limit.
//! - [`perplexity()`]: llama-perplexity's measurement.
//! - [`Embedder`]: sentence embeddings from a BERT encoder (sentence-transformers folder or GGUF).
//! - [`serving`]: many sequences at once — an engine thread with continuous batching over a paged KV
//!   cache with prefix reuse, fed through a handle (what `ferrite serve` runs on).

pub mod chat;
mod embed;
mod error;
mod generate;
mod loaded;
mod perplexity;
pub mod sampling;
pub mod serving;
pub mod stop;

pub use embed::{Embedder, Embeddings};
pub use error::EngineError;
pub use generate::{
    FinishReason, GenerateRequest, GenerateStats, MIN_CHUNK, PREFILL_CHUNK, generate, prefill_chunk, prompt_place, reusable_prefix,
};
pub use loaded::LoadedModel;
pub use perplexity::{Perplexity, perplexity};
