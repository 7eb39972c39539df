//! The generation loop for one sequence: prefill the prompt (reusing whatever prefix the cache already
//! holds), then sample one token at a time until an end-of-generation token, a stop string or the limit.

use std::time::{Duration, Instant};

use ferrite_models::{KvCache, Logits, SeqBatch};

use crate::sampling::{Sampler, SamplingParams};
use crate::stop::StopMatcher;
use crate::{EngineError, LoadedModel};

/// Prompt tokens per forward pass while prefilling.
const PREFILL_CHUNK: usize = 512;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// The full prompt, special tokens included.
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when one of these appears in the text; it is not emitted.
    pub stop: Vec<String>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-generation token (EOS, EOT, …).
    Eog,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

/// Counts and timings of one generation.
#[derive(Clone, Debug)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    /// Prompt tokens that were already in the cache and not recomputed.
    pub reused_tokens: usize,
    /// The generated token ids (the end-of-generation token excluded).
    pub tokens: Vec<u32>,
    pub prefill: Duration,
    pub decode: Duration,
    pub finish: FinishReason,
}

/// Generate a continuation of `req.prompt`, calling `on_text` with each piece of text as soon as it is
/// complete UTF-8 and cannot be part of a stop string.
///
/// `cache` holds the tokens listed in `cached` (empty for a fresh cache); the longest common prefix with
/// the prompt is kept and only the rest is computed. On return `cached` lists what the cache holds.
pub fn generate(
    lm: &LoadedModel,
    cache: &mut KvCache,
    cached: &mut Vec<u32>,
    req: &GenerateRequest,
    on_text: &mut dyn FnMut(&str),
) -> Result<GenerateStats, EngineError> {
    let prompt = &req.prompt;
    if prompt.is_empty() {
        return Err(EngineError::Input("the prompt is empty".into()));
    }
    if prompt.len() + req.max_tokens > cache.capacity() {
        return Err(EngineError::Input(format!(
            "the prompt ({} tokens) plus up to {} generated tokens does not fit the context of {} tokens; \
             shorten the prompt, lower the token limit or raise the context size",
            prompt.len(),
            req.max_tokens,
            cache.capacity()
        )));
    }
    let model = &lm.model;
    let tok = &lm.tokenizer;
    let vocab = model.config().vocab_size;

    // Keep the cached prefix, but always recompute at least the last prompt token: its logits are needed.
    let common = cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len() - 1);
    cache.truncate(common);
    cached.truncate(common);

    let t0 = Instant::now();
    let mut logits = Vec::new();
    let rest = &prompt[common..];
    let n_chunks = rest.len().div_ceil(PREFILL_CHUNK);
    for (i, chunk) in rest.chunks(PREFILL_CHUNK).enumerate() {
        let want = if i + 1 == n_chunks { Logits::Last } else { Logits::None };
        logits = model.forward(&mut [SeqBatch { tokens: chunk, cache, logits: want }])?;
        cached.extend_from_slice(chunk);
    }
    let prefill = t0.elapsed();

    let t1 = Instant::now();
    let mut sampler = Sampler::new(&req.sampling);
    let mut stop = StopMatcher::new(&req.stop);
    let mut decoder = tok.decoder().continuing();
    let mut history = prompt.clone();
    let mut tokens = Vec::new();
    let mut finish = FinishReason::Length;
    while tokens.len() < req.max_tokens {
        debug_assert_eq!(logits.len(), vocab);
        let id = sampler.sample(&logits, &history);
        if tok.is_eog(id) {
            finish = FinishReason::Eog;
            break;
        }
        tokens.push(id);
        history.push(id);
        let out = stop.push(&decoder.push(id));
        on_text(&out.text);
        if out.stopped {
            finish = FinishReason::Stop;
            break;
        }
        if tokens.len() == req.max_tokens {
            break;
        }
        logits = model.forward(&mut [SeqBatch { tokens: &[id], cache, logits: Logits::Last }])?;
        cached.push(id);
    }
    if finish != FinishReason::Stop {
        let rest = stop.push(&decoder.flush());
        on_text(&rest.text);
        if !rest.stopped {
            on_text(&stop.finish());
        }
    }
    Ok(GenerateStats { prompt_tokens: prompt.len(), reused_tokens: common, tokens, prefill, decode: t1.elapsed(), finish })
}
