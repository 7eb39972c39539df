//! `ferrite run`: one prompt, streamed to stdout; or, without --prompt, an interactive chat.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use ferrite_engine::chat::ChatTemplate;
use ferrite_engine::sampling::{Penalties, Sampling, SamplingParams};
use ferrite_engine::{generate, GenerateRequest, GenerateStats, LoadedModel};
use serde_json::json;

use crate::RunArgs;

/// Largest context `run` allocates by default (the KV cache is sized for it up front).
const DEFAULT_MAX_CTX: usize = 8192;

pub fn main(a: RunArgs) -> Result<()> {
    let sampling = sampling(&a)?;
    let lm = super::load(&a.model)?;
    let ctx = a.ctx.unwrap_or(lm.model.config().ctx_train.min(DEFAULT_MAX_CTX));
    let template = lm.template()?;
    let mut cache = lm.model.new_cache(ctx);
    let mut cached = Vec::new();

    let Some(prompt) = &a.prompt else {
        let Some(template) = template else {
            bail!("this model has no chat template, so there is no interactive chat: give a raw --prompt")
        };
        return chat_loop(&a, &lm, &template, sampling, &mut cache);
    };

    let text = if a.chat {
        let Some(template) = &template else { bail!("--chat: this model has no chat template; use a raw prompt") };
        let mut messages = Vec::new();
        if let Some(s) = &a.system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": prompt}));
        template.render(&messages, true, None)?
    } else {
        prompt.clone()
    };
    let tokens = lm.tokenize_prompt(&text);
    let req = GenerateRequest { prompt: tokens, max_tokens: a.max_tokens, sampling, stop: a.stop.clone() };
    let mut out = std::io::stdout().lock();
    let stats = generate(&lm, &mut cache, &mut cached, &req, &mut |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    })?;
    writeln!(out)?;
    report(&stats);
    Ok(())
}

fn sampling(a: &RunArgs) -> Result<SamplingParams> {
    let sampling = if a.temperature <= 0.0 {
        Sampling::Greedy
    } else {
        let seed = a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        Sampling::Random { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, min_p: a.min_p, seed }
    };
    let penalties = Penalties {
        repeat: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        presence: a.presence_penalty,
        frequency: a.frequency_penalty,
    };
    let params = SamplingParams { sampling, penalties };
    params.validate().context("invalid sampling settings")?;
    Ok(params)
}

fn report(s: &GenerateStats) {
    let pf = s.prefill.as_secs_f64();
    let dc = s.decode.as_secs_f64();
    let computed = s.prompt_tokens - s.reused_tokens;
    eprintln!(
        "ferrite: prompt {} tokens ({} reused) in {:.2} s ({:.1} tokens/s); generated {} tokens in {:.2} s ({:.1} tokens/s); finish: {:?}",
        s.prompt_tokens,
        s.reused_tokens,
        pf,
        computed as f64 / pf.max(1e-9),
        s.tokens.len(),
        dc,
        s.tokens.len() as f64 / dc.max(1e-9),
        s.finish
    );
}

fn chat_loop(a: &RunArgs, lm: &LoadedModel, template: &ChatTemplate, sampling: SamplingParams, cache: &mut ferrite_models::KvCache) -> Result<()> {
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let mut cached = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    eprintln!("ferrite: chat with the model; an empty line or end of input quits");
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        if line.trim().is_empty() {
            break;
        }
        messages.push(json!({"role": "user", "content": line}));
        let prompt = lm.tokenize_prompt(&template.render(&messages, true, None)?);
        let req = GenerateRequest { prompt, max_tokens: a.max_tokens, sampling: sampling.clone(), stop: a.stop.clone() };
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        let stats = generate(lm, cache, &mut cached, &req, &mut |piece| {
            reply.push_str(piece);
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        });
        writeln!(out)?;
        match stats {
            Ok(stats) => report(&stats),
            Err(e) => {
                eprintln!("ferrite: {e}");
                messages.pop();
                continue;
            }
        }
        messages.push(json!({"role": "assistant", "content": reply}));
    }
    Ok(())
}
