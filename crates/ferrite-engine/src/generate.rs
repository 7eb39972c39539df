//! The generation loop for one sequence: prefill the prompt (reusing whatever prefix the cache already
//! holds), then sample one token at a time until an end-of-generation token, a stop string or the limit.

use std::time::{Duration, Instant};

use ferrite_models::{KvCache, Logits, BLOCK_SIZE};

use crate::sampling::{Sampler, SamplingParams};
use crate::stop::TokenText;
use crate::{EngineError, LoadedModel};

/// Prompt tokens per forward pass while prefilling, at most.
pub const PREFILL_CHUNK: usize = 512;

/// A prompt chunk of at least this many tokens takes the same kernels whatever its length (the K-quant
/// tiled order from 8 tokens, tiled attention from 64), so each token's arithmetic — and so the output —
/// does not depend on how a prompt is split, provided no chunk but a whole short prompt is shorter.
pub const MIN_CHUNK: usize = 64;

/// How many of the `rest` uncomputed prompt tokens to run next when `room` tokens fit the step: all of
/// them if they fit, else a chunk of at least [`MIN_CHUNK`] that also leaves at least [`MIN_CHUNK`];
/// `None` when no such chunk fits (wait for a step with more room).
pub fn prefill_chunk(rest: usize, room: usize) -> Option<usize> {
    if rest <= room {
        return Some(rest);
    }
    let c = room.min(rest.saturating_sub(MIN_CHUNK));
    (c >= MIN_CHUNK).then_some(c)
}

/// How much of a cached prefix of `common` tokens a prompt of `len` tokens may reuse: a multiple of
/// `align` (the KV block size, or 1) that leaves at least [`MIN_CHUNK`] tokens (and at least one) to
/// compute, so the computed rest gets the same bits as a fresh computation of the whole prompt; 0 when
/// the prompt is too short for that.
pub fn reusable_prefix(common: usize, len: usize, align: usize) -> usize {
    let limit = common.min(len.saturating_sub(MIN_CHUNK));
    limit / align * align
}

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

    // Keep the cached prefix where that leaves a chunk long enough to get the bits of a fresh computation.
    let common = cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
    let common = reusable_prefix(common, prompt.len(), BLOCK_SIZE);
    cache.truncate(common);
    cached.truncate(common);

    let t0 = Instant::now();
    let mut logits = Vec::new();
    let mut at = common;
    while at < prompt.len() {
        let n = prefill_chunk(prompt.len() - at, PREFILL_CHUNK).expect("a full step always fits a chunk");
        let want = if at + n == prompt.len() { Logits::Last } else { Logits::None };
        logits = model.forward_cache(cache, &prompt[at..at + n], want)?;
        cached.extend_from_slice(&prompt[at..at + n]);
        at += n;
    }
    let prefill = t0.elapsed();

    let t1 = Instant::now();
    let mut sampler = Sampler::new(&req.sampling);
    let mut text = TokenText::new(tok.decoder().continuing(), &req.stop);
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
        let out = text.push(id);
        on_text(&out.text);
        if out.stopped {
            finish = FinishReason::Stop;
            break;
        }
        if tokens.len() == req.max_tokens {
            break;
        }
        logits = model.forward_cache(cache, &[id], Logits::Last)?;
        cached.push(id);
    }
    if finish != FinishReason::Stop {
        on_text(&text.finish());
    }
    Ok(GenerateStats { prompt_tokens: prompt.len(), reused_tokens: common, tokens, prefill, decode: t1.elapsed(), finish })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_never_leave_a_short_rest() {
        assert_eq!(prefill_chunk(40, 512), Some(40));
        assert_eq!(prefill_chunk(512, 512), Some(512));
        assert_eq!(prefill_chunk(530, 512), Some(466));
        assert_eq!(prefill_chunk(64, 512), Some(64));
        assert_eq!(prefill_chunk(200, 100), Some(100));
        assert_eq!(prefill_chunk(150, 100), Some(86));
        assert_eq!(prefill_chunk(120, 100), None, "any chunk that fits leaves fewer than 64");
        assert_eq!(prefill_chunk(300, 63), None);
        // Splitting a long prompt in steps of any room >= 128 always ends with every chunk >= 64.
        for len in [65usize, 127, 128, 129, 511, 513, 1000, 1100] {
            for room in [128usize, 200, 512] {
                let (mut rest, mut chunks) = (len, Vec::new());
                while rest > 0 {
                    let c = prefill_chunk(rest, room).unwrap();
                    chunks.push(c);
                    rest -= c;
                }
                assert!(chunks.iter().all(|&c| (MIN_CHUNK..=room).contains(&c)), "{len} in {room}: {chunks:?}");
            }
        }
    }

    #[test]
    fn reuse_leaves_a_full_chunk() {
        assert_eq!(reusable_prefix(1000, 1010, 16), 944);
        assert_eq!(reusable_prefix(100, 1010, 16), 96);
        assert_eq!(reusable_prefix(70, 70, 16), 0);
        assert_eq!(reusable_prefix(50, 200, 1), 50);
        assert_eq!(reusable_prefix(500, 200, 1), 136);
    }
}
