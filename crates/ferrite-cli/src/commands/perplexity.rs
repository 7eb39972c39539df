//! `ferrite perplexity`: llama-perplexity's measurement, as JSON on stdout.

use anyhow::{Context, Result};

use crate::PerplexityArgs;

pub fn main(a: PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let lm = super::load(&a.model)?;
    let tokens = lm.tokenizer.encode(&text, true, false);
    let bos = if lm.tokenizer.add_bos() { lm.tokenizer.bos() } else { None };
    let chunks = tokens.len() / a.ctx.max(1);
    let pb = crate::progress::steps("perplexity", chunks as u64);
    let t = std::time::Instant::now();
    let r = ferrite_engine::perplexity(&lm.model, &tokens, a.ctx, bos, &mut |done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("ferrite: {} chunks of {} tokens in {:.1} s ({:.1} tokens/s)", r.chunks, r.ctx, secs, (r.chunks * r.ctx) as f64 / secs);
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
