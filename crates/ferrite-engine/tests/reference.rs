//! Agreement with llama.cpp, the reference implementation, on the three real models. The expected outputs
//! are committed fixtures (`tests/reference/<model>/`, made by `scripts/reference/generate.sh` with
//! llama.cpp 0c1e570), so these tests need the models but not llama.cpp.

use ferrite_engine::LoadedModel;
use ferrite_models::{Logits, SeqBatch};
use serde_json::Value;

/// How close each model is held to llama.cpp.
///
/// SmolLM2 (Q4_1/Q8_0) goes through the same kernels' arithmetic as llama.cpp and is held to the issue's
/// bar: every greedy prompt identical, logits identical. Qwen2.5 and Gemma 3 are Q4_K_M files: for them
/// llama.cpp repacks Q4_K/Q6_K weights into interleaved layouts and runs batches of 8+ rows through its tiled
/// K-quant matmul, whose float summation order we do not reproduce yet; their bounds are the measured
/// agreement (see the engine issue's closing note) with a small margin, so a regression fails.
struct Bar {
    short: &'static str,
    file: &'static str,
    /// Greedy: a divergence is accepted only at a step whose llama.cpp top-2 gap is below this.
    tie: f64,
    /// Greedy: prompts that must match for every step.
    min_identical: usize,
    /// Logits: bound on any top-10 logit / log-prob difference, and on their mean.
    logit_tol: f64,
    mean_tol: f64,
    /// Logits: the top-1 token may differ only where llama.cpp's own top-2 margin is below this.
    top1_tie: f64,
}

const MODELS: [Bar; 3] = [
    Bar { short: "smollm2", file: ferrite_testdata::SMOLLM2, tie: 1e-3, min_identical: 19, logit_tol: 1e-3, mean_tol: 1e-4, top1_tie: 1e-3 },
    Bar { short: "qwen05", file: ferrite_testdata::QWEN05, tie: 0.15, min_identical: 10, logit_tol: 0.75, mean_tol: 0.08, top1_tie: 0.4 },
    Bar { short: "gemma3", file: ferrite_testdata::GEMMA3, tie: 0.3, min_identical: 4, logit_tol: 1.5, mean_tol: 0.25, top1_tie: 0.6 },
];


fn load(file: &str) -> Option<LoadedModel> {
    let path = ferrite_testdata::model(file)?;
    Some(LoadedModel::open(path, &mut |_, _| {}).expect("model loads"))
}

fn fixture(short: &str, name: &str) -> Option<Value> {
    let path = ferrite_testdata::reference_file(short, name)?;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(serde_json::from_str(&text).expect("fixture is JSON"))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// Greedy decoding of every fixture prompt, all prompts of a model run together as one batch: each step
/// is one forward pass over every unfinished sequence.
#[test]
fn greedy_decoding_matches_llama_cpp() {
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    for bar in &MODELS {
        let (short, file) = (bar.short, bar.file);
        let Some(fx) = fixture(short, "greedy.json") else { continue };
        let Some(lm) = load(file) else { continue };
        let prompts = fx["prompts"].as_array().expect("prompts");
        let n_predict = fx["n_predict"].as_u64().unwrap() as usize;
        let vocab = lm.model.config().vocab_size;

        struct Seq {
            id: String,
            expected: Vec<u32>,
            gaps: Vec<f64>,
            got: Vec<u32>,
            done: bool,
            tie: Option<usize>,
        }
        let mut seqs = Vec::new();
        let mut prompt_ids = Vec::new();
        for p in prompts {
            let id = p["id"].as_str().unwrap().to_string();
            let expected_prompt = ids(&p["prompt_ids"]);
            let ours = lm.tokenizer.encode(p["text"].as_str().unwrap(), true, true);
            assert_eq!(ours, expected_prompt, "{short}/{id}: prompt tokenization differs from llama.cpp");
            prompt_ids.push(expected_prompt);
            seqs.push(Seq { id, expected: ids(&p["generated_ids"]), gaps: f64s(&p["top2_gaps"]), got: vec![], done: false, tie: None });
        }
        let mut caches: Vec<_> = prompt_ids.iter().map(|p| lm.model.new_cache(p.len() + n_predict + 1)).collect();
        let mut inputs: Vec<Vec<u32>> = prompt_ids;
        while seqs.iter().any(|s| !s.done) {
            let active: Vec<usize> = (0..seqs.len()).filter(|&i| !seqs[i].done).collect();
            let mut batch: Vec<SeqBatch> = Vec::new();
            for (i, (c, inp)) in caches.iter_mut().zip(&inputs).enumerate() {
                if !seqs[i].done {
                    batch.push(SeqBatch { tokens: inp, cache: c, logits: Logits::Last });
                }
            }
            let logits = lm.model.forward(&mut batch).expect("forward");
            for (row, &i) in active.iter().enumerate() {
                let s = &mut seqs[i];
                let next = ferrite_engine::sampling::argmax(&logits[row * vocab..(row + 1) * vocab]);
                let step = s.got.len();
                s.got.push(next);
                if next != s.expected[step] {
                    s.tie = Some(step);
                    s.done = true;
                } else if s.got.len() == s.expected.len() {
                    s.done = true;
                }
                inputs[i] = vec![next];
            }
        }
        let matched = seqs.iter().filter(|s| s.tie.is_none()).count();
        let tokens: usize = seqs.iter().map(|s| s.got.len()).sum();
        let divergences: Vec<(String, usize, f64)> =
            seqs.iter().filter_map(|s| s.tie.map(|t| (s.id.clone(), t, s.gaps[t]))).collect();
        report.push(format!(
            "{short}: {matched}/{} prompts identical for all {n_predict} steps, {tokens} tokens compared; divergences (prompt, step, llama.cpp's top-2 gap): {divergences:?}",
            seqs.len()
        ));
        for (id, step, gap) in &divergences {
            if *gap >= bar.tie {
                failures.push(format!("{short}/{id}: diverges at step {step} where llama.cpp's top-2 gap is {gap}"));
            }
        }
        if matched < bar.min_identical {
            failures.push(format!("{short}: only {matched} prompts identical, expected at least {}", bar.min_identical));
        }
    }
    for r in &report {
        eprintln!("greedy agreement: {r}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Logits at every position of one 256-token batch, at llama.cpp's top-10 ids. For scale: llama.cpp's own
/// logits move by up to ~1.0 between its flash-attention on and off settings (logits_variants.json).
#[test]
fn top10_logits_match_llama_cpp() {
    let mut all_failures = Vec::new();
    for bar in &MODELS {
        let (short, file) = (bar.short, bar.file);
        let Some(fx) = fixture(short, "logits.json") else { continue };
        let Some(lm) = load(file) else { continue };
        let tokens = ids(&fx["token_ids"]);
        let text = std::fs::read_to_string(ferrite_testdata::reference("").join(fx["text_file"].as_str().unwrap())).unwrap();
        let ours_tokens = lm.tokenizer.encode(&text, true, false);
        assert_eq!(&ours_tokens[..tokens.len()], &tokens[..], "{short}: tokenization of the logits text differs");

        let vocab = lm.model.config().vocab_size;
        let mut cache = lm.model.new_cache(tokens.len());
        let logits = lm.model.forward(&mut [SeqBatch { tokens: &tokens, cache: &mut cache, logits: Logits::All }]).unwrap();
        let (mut max_d, mut sum_d, mut n, mut max_lp, mut top1) = (0f64, 0f64, 0usize, 0f64, 0usize);
        let mut failures = Vec::new();
        let positions = fx["positions"].as_array().unwrap();
        for p in positions {
            let pos = p["pos"].as_u64().unwrap() as usize;
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            let lse = logsumexp(row);
            let ref_lse = p["logsumexp"].as_f64().unwrap();
            let (top_ids, top_logits) = (ids(&p["top_ids"]), f64s(&p["top_logits"]));
            for (&id, &l) in top_ids.iter().zip(&top_logits) {
                let d = (row[id as usize] as f64 - l).abs();
                let dlp = ((row[id as usize] as f64 - lse) - (l - ref_lse)).abs();
                if d >= bar.logit_tol || dlp >= bar.logit_tol {
                    failures.push(format!("pos {pos} token {id}: logit {} vs {l}, log-prob differs by {dlp}", row[id as usize]));
                }
                max_d = max_d.max(d);
                max_lp = max_lp.max(dlp);
                sum_d += d;
                n += 1;
            }
            let ours_top = ferrite_engine::sampling::argmax(row);
            if ours_top == top_ids[0] {
                top1 += 1;
            } else if top_logits[0] - top_logits[1] >= bar.top1_tie {
                failures.push(format!("pos {pos}: top-1 {ours_top} vs {} (llama.cpp's margin {})", top_ids[0], top_logits[0] - top_logits[1]));
            }
        }
        let mean = sum_d / n as f64;
        eprintln!(
            "logit agreement {short}: {} positions, top-1 same at {top1}, top-10 logits max |d| {max_d:.4} mean {mean:.4}, log-probs max |d| {max_lp:.4}",
            positions.len()
        );
        if mean >= bar.mean_tol {
            failures.push(format!("mean top-10 logit difference {mean}"));
        }
        all_failures.extend(failures.into_iter().map(|f| format!("{short}: {f}")));
    }
    assert!(all_failures.is_empty(), "{all_failures:#?}");
}

fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()
}

/// Perplexity over the first CHUNKS windows of the fixture text against llama-perplexity's running value
/// after as many chunks (the whole text is measured by `ferrite perplexity`, see BENCHMARKS.md).
const CHUNKS: usize = 8;
const PPL_REL_TOL: f64 = 0.005;

#[test]
fn perplexity_matches_llama_perplexity() {
    let Some(text_path) = ferrite_testdata::ppl_text() else { return };
    let text = std::fs::read_to_string(&text_path).unwrap();
    for bar in &MODELS {
        let (short, file) = (bar.short, bar.file);
        let Some(fx) = fixture(short, "perplexity.json") else { continue };
        let Some(lm) = load(file) else { continue };
        let tokens = lm.tokenizer.encode(&text, true, false);
        assert_eq!(tokens.len() as u64, fx["n_tokens"].as_u64().unwrap(), "{short}: token count of the text differs");
        let ctx = fx["n_ctx"].as_u64().unwrap() as usize;
        let bos = if lm.tokenizer.add_bos() { lm.tokenizer.bos() } else { None };
        let r = ferrite_engine::perplexity(&lm.model, &tokens[..CHUNKS * ctx], ctx, bos, &mut |_, _| {}).unwrap();
        let expect = f64s(&fx["chunk_ppl"])[CHUNKS - 1];
        let rel = (r.ppl - expect).abs() / expect;
        eprintln!("perplexity {short}: first {CHUNKS} chunks {:.4} vs llama.cpp {expect} ({:+.3}%)", r.ppl, 100.0 * (r.ppl - expect) / expect);
        assert!(rel < PPL_REL_TOL, "{short}: perplexity {} vs llama.cpp {expect}", r.ppl);
    }
}

