//! The generation loop for one sequence: prefill the prompt (reusing whatever prefix the cache already
//! holds), then sample one token at a time until an end-of-generation token, a stop string or the limit.

use std::time::{Duration, Instant};

use ferrite_models::{BatchPlace, KvCache, Logits, BLOCK_SIZE};

use crate::sampling::{Sampler, SamplingParams};
use crate::stop::TokenText;
use crate::{EngineError, LoadedModel};

/// A prompt is computed as if in batches of this many tokens (llama.cpp's default micro-batch), from its
/// start: its pieces, whatever their size, are placed in those batches ([`prompt_place`]), so a token's
/// arithmetic — and so the output — does not depend on how the prompt is split.
pub const PREFILL_CHUNK: usize = 512;

/// Where prompt token `at` of a prompt of `len` tokens sits in the prompt's batches of [`PREFILL_CHUNK`].
pub fn prompt_place(at: usize, len: usize) -> BatchPlace {
    debug_assert!(at < len);
    let start = at / PREFILL_CHUNK * PREFILL_CHUNK;
    BatchPlace { size: (len - start).min(PREFILL_CHUNK), first: at - start }
}

/// How many prompt tokens to compute from `at` (of `len`) when `room` tokens fit the step: as many as fit,
/// up to the end of the batch `at` is in (a piece never spans two batches).
pub fn prefill_chunk(at: usize, len: usize, room: usize) -> usize {
    let p = prompt_place(at, len);
    room.min(p.size - p.first)
}

/// Prompt tokens left to compute after a reused prefix, at least: the end of the prompt's last batch,
/// whose kernels depend on the prompt's length, is then computed by this prompt itself. (The reused
/// blocks hold what the request that cached them computed; see `docs/server.md`.)
pub const MIN_CHUNK: usize = 64;

/// How much of a cached prefix of `common` tokens a prompt of `len` tokens may reuse: a multiple of
/// `align` (the KV block size, or 1) that leaves at least [`MIN_CHUNK`] tokens (and at least one) to
/// compute; 0 when the prompt is too short for that.
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

    // Keep the cached prefix where that leaves at least MIN_CHUNK tokens to compute.
    let common = cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
    let common = reusable_prefix(common, prompt.len(), BLOCK_SIZE);
    cache.truncate(common);
    cached.truncate(common);

    let t0 = Instant::now();
    let mut logits = Vec::new();
    let mut at = common;
    while at < prompt.len() {
        let n = prefill_chunk(at, prompt.len(), PREFILL_CHUNK);
        let want = if at + n == prompt.len() { Logits::Last } else { Logits::None };
        logits = model.forward_cache_placed(cache, &prompt[at..at + n], want, Some(prompt_place(at, prompt.len())))?;
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
    fn pieces_are_placed_in_the_prompts_batches_of_512() {
        assert_eq!(prompt_place(0, 40), BatchPlace { size: 40, first: 0 });
        assert_eq!(prompt_place(10, 1100), BatchPlace { size: 512, first: 10 });
        assert_eq!(prompt_place(600, 1100), BatchPlace { size: 512, first: 88 });
        assert_eq!(prompt_place(1030, 1100), BatchPlace { size: 76, first: 6 });
        assert_eq!(prefill_chunk(0, 40, 512), 40);
        assert_eq!(prefill_chunk(0, 1100, 512), 512);
        assert_eq!(prefill_chunk(500, 1100, 100), 12, "a piece stops at its batch's end");
        assert_eq!(prefill_chunk(512, 1100, 100), 100);
        assert_eq!(prefill_chunk(1050, 1100, 100), 50);
        // Any room splits a prompt into pieces that tile it, none crossing a batch boundary.
        for len in [1usize, 65, 511, 512, 513, 1100] {
            for room in [1usize, 7, 32, 200, 512] {
                let (mut at, mut pieces) = (0, Vec::new());
                while at < len {
                    let n = prefill_chunk(at, len, room);
                    assert!((1..=room).contains(&n) && (at % 512 + n) <= 512, "{len} in {room}: {n} at {at}");
                    pieces.push(n);
                    at += n;
                }
                assert_eq!(pieces.iter().sum::<usize>(), len);
            }
        }
    }

    #[test]
    fn reuse_leaves_at_least_64_tokens() {
        assert_eq!(reusable_prefix(1000, 1010, 16), 944);
        assert_eq!(reusable_prefix(100, 1010, 16), 96);
        assert_eq!(reusable_prefix(70, 70, 16), 0);
        assert_eq!(reusable_prefix(50, 200, 1), 50);
        assert_eq!(reusable_prefix(500, 200, 1), 136);
    }
}
