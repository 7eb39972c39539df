//! Perplexity as llama.cpp's `llama-perplexity` computes it, so the numbers compare directly.
//!
//! The token stream is cut into non-overlapping windows of `ctx` tokens (a tail shorter than a window is
//! dropped). Each window is evaluated from an empty cache, its first token replaced by BOS when the model
//! adds one, and only the second half is scored — token j+1 predicted from the logits at j for
//! j in ctx/2 .. ctx-1 — so every scored token has at least ctx/2 tokens of context.

use ferrite_models::{Logits, Model};

use crate::EngineError;

/// The outcome of a perplexity run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Standard error of `ppl` (llama-perplexity's "±").
    pub ppl_stderr: f64,
    /// Mean negative log-likelihood per scored token (nats).
    pub nll: f64,
    /// Tokens in the input.
    pub tokens: usize,
    /// Tokens scored.
    pub scored: usize,
    /// Windows evaluated.
    pub chunks: usize,
    pub ctx: usize,
    /// The running perplexity after each window (llama-perplexity's `[1]x,[2]y,…` line).
    pub chunk_ppl: Vec<f64>,
}

/// Score `tokens` (already tokenized with BOS as the model adds it) in windows of `ctx`.
/// `progress(chunk, chunks)` is called after each window.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    ctx: usize,
    bos: Option<u32>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Perplexity, EngineError> {
    if ctx < 4 || tokens.len() < 2 * ctx {
        return Err(EngineError::Input(format!(
            "perplexity needs at least 2 × ctx = {} tokens; the text has {}",
            2 * ctx,
            tokens.len()
        )));
    }
    let vocab = model.config().vocab_size;
    let chunks = tokens.len() / ctx;
    let first = ctx / 2;
    // Score the second half in slices, so the logits held at once stay small for large vocabularies.
    let slice = 64.min(ctx / 2);
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut cache = model.new_cache(ctx);
    let mut chunk_ppl = Vec::with_capacity(chunks);
    for c in 0..chunks {
        let mut window = tokens[c * ctx..(c + 1) * ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        cache.truncate(0);
        model.forward_cache(&mut cache, &window[..first], Logits::None)?;
        let mut at = first;
        while at < ctx {
            // A remainder shorter than a slice joins the last slice: chunks of 64+ tokens take the same
            // attention path as llama-perplexity's whole-window batches. The window's last token is
            // evaluated too (its prediction is not scored), as llama-perplexity does: the kernels group
            // tokens in fours from the start of each sequence chunk, so the slices must stay aligned.
            let end = if ctx - at < 2 * slice { ctx } else { at + slice };
            let logits = model.forward_cache(&mut cache, &window[at..end], Logits::All)?;
            for (j, row) in (at..end.min(ctx - 1)).zip(logits.chunks_exact(vocab)) {
                let target = tokens[c * ctx + j + 1] as usize;
                let l = log_softmax_at(row, target);
                nll -= l;
                nll2 += l * l;
                count += 1;
            }
            at = end;
        }
        chunk_ppl.push((nll / count as f64).exp());
        progress(c + 1, chunks);
    }
    let mean = nll / count as f64;
    let var = (nll2 / count as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    Ok(Perplexity {
        ppl,
        ppl_stderr: ppl * (var / (count as f64 - 1.0)).sqrt(),
        nll: mean,
        tokens: tokens.len(),
        scored: count,
        chunks,
        ctx,
        chunk_ppl,
    })
}

/// log softmax(row)[i] with llama-perplexity's arithmetic: the maximum and each `exp(l − max)` in f32,
/// their sum and the logarithm in f64.
fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&v| (v - max).exp() as f64).sum();
    (row[i] - max) as f64 - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_definition() {
        let row = [1.0f32, 2.0, 3.0];
        let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
        assert!((log_softmax_at(&row, 2) - (3.0 - z.ln())).abs() < 1e-6);
    }
}
