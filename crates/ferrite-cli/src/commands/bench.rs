//! `ferrite bench`: prompt-processing and generation speed, measured like llama-bench.
//!
//! - `pp N`: one forward pass over N random tokens from an empty cache; tokens/s = N / time.
//! - `tg N`: N tokens decoded one per forward pass from an empty cache; tokens/s = N / time. With
//!   `--parallel B`, B sequences decode together, one token each per forward pass (llama-batched-bench's
//!   S_TG without the prompts): tokens/s = B·N / time.
//! - `--depth D` (llama-bench's `-d`): both tests start with D positions already in each sequence's
//!   cache, computed untimed before every repetition, so attention reads a context of that length.
//!
//! Each test runs after one untimed warm-up, `reps` times per thread count, each thread count on its own
//! pool. Generation also reports the weight bytes read per second (every weight matrix is read once per
//! decoding step, for all `--parallel` sequences; the embedding table only when it doubles as the
//! output head) and that rate's share of the machine's DRAM read bandwidth, which `--membw` measures.
//! (The JSON's `weight_bytes_per_token` is per step: per token when one sequence decodes.)

use std::time::Instant;

use anyhow::{Context, Result, bail};
use ferrite_engine::LoadedModel;
use ferrite_models::{KvPool, Logits, Model, SeqBatch, SeqKv};
use serde_json::json;

use crate::BenchArgs;

pub fn main(a: BenchArgs) -> Result<()> {
    let threads = if a.threads.is_empty() { vec![default_threads()] } else { a.threads.clone() };
    if threads.contains(&0) {
        bail!("thread counts must be at least 1");
    }
    if a.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if a.membw {
        for &t in &threads {
            let gbps = membw(t, a.membw_mib)?;
            println!("memory read bandwidth, {t} threads: {gbps:.2} GB/s ({} MiB buffer, best of 5)", a.membw_mib);
        }
        return Ok(());
    }
    let path = a.model.as_ref().context("--model is required (or --membw to measure memory bandwidth)")?;
    let reps = a.reps.max(1);
    let lm = LoadedModel::open(path, &mut |_, _| {}).with_context(|| format!("loading {}", path.display()))?;
    let weights = weight_bytes_per_token(&lm);
    let bw = if a.n_gen > 0 { Some(membw(*threads.iter().max().unwrap(), a.membw_mib)?) } else { None };
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let size_gib = lm.gguf.file_size() as f64 / (1u64 << 30) as f64;

    let mut tests = Vec::new();
    if a.n_prompt > 0 {
        tests.push((a.n_prompt, 0));
    }
    if a.n_gen > 0 {
        tests.push((0, a.n_gen));
    }
    let mut rows = Vec::new();
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().context("starting a thread pool")?;
        for &(n_prompt, n_gen) in &tests {
            let batch = if n_gen > 0 { a.parallel } else { 1 };
            let samples = pool.install(|| run_test(&lm.model, n_prompt, n_gen, batch, a.depth, reps, a.seed))?;
            let n = (n_prompt + n_gen * batch) as f64;
            let ts: Vec<f64> = samples.iter().map(|s| n / s).collect();
            let (avg, sd, med) = (mean(&ts), stddev(&ts), median(&ts));
            let mut row = json!({
                "model_filename": name,
                "model_type": lm.model.config().arch,
                "model_size": lm.gguf.file_size(),
                "n_prompt": n_prompt,
                "n_gen": n_gen,
                "n_threads": t,
                "n_parallel": batch,
                "n_depth": a.depth,
                "kernels": ferrite_tensor::quant::kernel_tier(),
                "avg_ns": (mean(&samples) * 1e9) as u64,
                "avg_ts": avg,
                "stddev_ts": sd,
                "median_ts": med,
                "samples_ns": samples.iter().map(|s| (s * 1e9) as u64).collect::<Vec<_>>(),
                "samples_ts": ts,
            });
            if n_gen > 0 {
                // Weights are read once per forward pass, whatever the batch.
                let gbps = weights as f64 * med / batch as f64 / 1e9;
                row["weight_bytes_per_token"] = json!(weights);
                row["weights_gbps"] = json!(gbps);
                if let Some(bw) = bw {
                    row["membw_gbps"] = json!(bw);
                    row["membw_share"] = json!(gbps / bw);
                }
            }
            if !a.json {
                let mut test = match (n_gen, batch) {
                    (0, _) => format!("pp{n_prompt}"),
                    (_, 1) => format!("tg{n_gen}"),
                    (_, b) => format!("tg{n_gen} ×{b}"),
                };
                if a.depth > 0 {
                    test += &format!(" @ d{}", a.depth);
                }
                let extra = match (row.get("weights_gbps"), row.get("membw_share")) {
                    (Some(g), Some(s)) => format!(" | {:.2} | {:.0}%", g.as_f64().unwrap(), 100.0 * s.as_f64().unwrap()),
                    (Some(g), None) => format!(" | {:.2} | -", g.as_f64().unwrap()),
                    _ => " | - | -".into(),
                };
                if rows.is_empty() {
                    println!("| model | size | threads | test | t/s (median) | t/s (mean ± sd) | weights GB/s | of DRAM bw |");
                    println!("|---|---:|---:|---|---:|---:|---:|---:|");
                }
                println!("| {name} | {size_gib:.2} GiB | {t} | {test} | {med:.2} | {avg:.2} ± {sd:.2}{extra} |");
            }
            rows.push(row);
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if let Some(bw) = bw {
        println!(
            "\nDRAM read bandwidth measured with {} threads: {bw:.2} GB/s; weights read per decoding step: {:.1} MiB",
            threads.iter().max().unwrap(),
            weights as f64 / (1 << 20) as f64
        );
    }
    let spells = ferrite_tensor::par::solo_spells();
    if spells > 0 {
        eprintln!(
            "note: helper threads were late {spells} times (another process busy on their cores?); parallel loops ran on one thread for a while each time"
        );
    }
    Ok(())
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Seconds per repetition of one test (after an untimed warm-up run): a prompt of `n_prompt` tokens, or
/// `n_gen` decoding steps of `batch` sequences at once, each after `depth` untimed positions per sequence.
fn run_test(model: &Model, n_prompt: usize, n_gen: usize, batch: usize, depth: usize, reps: usize, seed: u64) -> Result<Vec<f64>> {
    let vocab = model.config().vocab_size as u64;
    let mut rng = seed.max(1);
    let mut token = move || {
        // xorshift64*: reproducible random ids, like llama-bench's rand() % n_vocab.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % vocab) as u32
    };
    let (mut pool, mut seqs) = KvPool::with_sequences(model.config(), &vec![(depth + n_prompt + n_gen).max(1); batch]);
    let mut once = |pool: &mut KvPool, seqs: &mut [SeqKv]| -> Result<f64> {
        // Untimed: every sequence's first `depth` positions.
        for kv in seqs.iter_mut() {
            kv.truncate(0);
            if depth > 0 {
                let tokens: Vec<u32> = (0..depth).map(|_| token()).collect();
                model.forward(pool, &mut [SeqBatch { tokens: &tokens, kv, logits: Logits::Last, place: None }])?;
            }
        }
        let start = Instant::now();
        if n_prompt > 0 {
            let tokens: Vec<u32> = (0..n_prompt).map(|_| token()).collect();
            model.forward(pool, &mut [SeqBatch { tokens: &tokens, kv: &mut seqs[0], logits: Logits::Last, place: None }])?;
        }
        for _ in 0..n_gen {
            let tokens: Vec<[u32; 1]> = (0..batch).map(|_| [token()]).collect();
            let mut step: Vec<SeqBatch> =
                seqs.iter_mut().zip(&tokens).map(|(kv, t)| SeqBatch { tokens: t, kv, logits: Logits::Last, place: None }).collect();
            model.forward(pool, &mut step)?;
        }
        Ok(start.elapsed().as_secs_f64())
    };
    once(&mut pool, &mut seqs)?;
    (0..reps).map(|_| once(&mut pool, &mut seqs)).collect()
}

/// Bytes of weights a decoding step reads: every tensor except the token embedding table, which is read
/// one row at a time unless it is also the output head (tied embeddings).
fn weight_bytes_per_token(lm: &LoadedModel) -> u64 {
    let tied = lm.gguf.tensor("output.weight").is_none();
    lm.gguf.tensors().iter().filter(|t| tied || t.name != "token_embd.weight").map(|t| t.size).sum()
}

/// DRAM read bandwidth in GB/s: `threads` threads each sum their share of a `mib`-MiB buffer (far
/// larger than the caches); the best of 5 passes.
pub fn membw(threads: usize, mib: usize) -> Result<f64> {
    let words = (mib << 20) / 8;
    let buf: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("starting a thread pool")?;
    let chunk = words.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let sum: u64 = pool.install(|| {
            use rayon::prelude::*;
            buf.par_chunks(chunk).map(sum_words).reduce(|| 0, u64::wrapping_add)
        });
        std::hint::black_box(sum);
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((words * 8) as f64 / best / 1e9)
}

/// A read-only pass the compiler vectorises: 8 independent accumulators.
fn sum_words(w: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let chunks = w.chunks_exact(8);
    let tail: u64 = chunks.remainder().iter().fold(0, |a, &b| a.wrapping_add(b));
    for c in chunks {
        for (a, &b) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(b);
        }
    }
    acc.iter().fold(tail, |a, &b| a.wrapping_add(b))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}
