//! Agreement with llama.cpp, the reference implementation, on the three real models. The expected outputs
//! are committed fixtures (`tests/reference/<model>/`, made by `scripts/reference/generate.sh` with
//! llama.cpp 0c1e570), so these tests need the models but not llama.cpp.

use ferrite_engine::LoadedModel;
use ferrite_models::{Logits, SeqBatch};
use serde_json::Value;

/// The three models, as (fixture directory, model file).
///
/// All three go through llama.cpp's CPU arithmetic (the K-quant accumulation orders of its repacked and
/// tiled kernels, the f16 KV cache, its two flash-attention paths, its GELU table), so they are held to
/// the bar without slack: every greedy token identical unless llama.cpp's own top-2 gap is below
/// [`TIE`], logits bit-identical, perplexity equal to the digits llama-perplexity prints.
const MODELS: [(&str, &str); 3] =
    [("smollm2", ferrite_testdata::SMOLLM2), ("qwen05", ferrite_testdata::QWEN05), ("gemma3", ferrite_testdata::GEMMA3)];

/// Greedy: a divergence is accepted only right after a step whose llama.cpp top-2 gap is below this.
const TIE: f64 = 1e-3;

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
    for &(short, file) in &MODELS {
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
        let capacities: Vec<usize> = prompt_ids.iter().map(|p| p.len() + n_predict + 1).collect();
        let (mut pool, mut caches) = ferrite_models::KvPool::with_sequences(lm.model.config(), &capacities);
        let mut inputs: Vec<Vec<u32>> = prompt_ids;
        while seqs.iter().any(|s| !s.done) {
            let active: Vec<usize> = (0..seqs.len()).filter(|&i| !seqs[i].done).collect();
            let mut batch: Vec<SeqBatch> = Vec::new();
            for (i, (c, inp)) in caches.iter_mut().zip(&inputs).enumerate() {
                if !seqs[i].done {
                    batch.push(SeqBatch { tokens: inp, kv: c, logits: Logits::Last, place: None });
                }
            }
            let logits = lm.model.forward(&mut pool, &mut batch).expect("forward");
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
            if *gap >= TIE {
                failures.push(format!("{short}/{id}: diverges at step {step} where llama.cpp's top-2 gap is {gap}"));
            }
        }
    }
    for r in &report {
        eprintln!("greedy agreement: {r}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Logits at every position of one 256-token batch, at llama.cpp's top-10 ids: bit-identical (the fixture
/// stores them with 9 significant digits, enough to round-trip an f32). For scale: llama.cpp's own logits
/// move by up to ~1.0 between its flash-attention on and off settings (logits_variants.json).
#[test]
fn top10_logits_match_llama_cpp() {
    let mut failures = Vec::new();
    for &(short, file) in &MODELS {
        let Some(fx) = fixture(short, "logits.json") else { continue };
        let Some(lm) = load(file) else { continue };
        let tokens = ids(&fx["token_ids"]);
        let text = std::fs::read_to_string(ferrite_testdata::reference("").join(fx["text_file"].as_str().unwrap())).unwrap();
        let ours_tokens = lm.tokenizer.encode(&text, true, false);
        assert_eq!(&ours_tokens[..tokens.len()], &tokens[..], "{short}: tokenization of the logits text differs");

        let vocab = lm.model.config().vocab_size;
        let mut cache = lm.model.new_cache(tokens.len());
        let logits = lm.model.forward_cache(&mut cache, &tokens, Logits::All).unwrap();
        let (mut max_d, mut max_lse, mut differing) = (0f64, 0f64, 0usize);
        let positions = fx["positions"].as_array().unwrap();
        for p in positions {
            let pos = p["pos"].as_u64().unwrap() as usize;
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            let (top_ids, top_logits) = (ids(&p["top_ids"]), f64s(&p["top_logits"]));
            for (&id, &l) in top_ids.iter().zip(&top_logits) {
                let ours = row[id as usize];
                if ours != l as f32 {
                    differing += 1;
                    if failures.len() < 20 {
                        failures.push(format!("{short}: pos {pos} token {id}: logit {ours} vs llama.cpp {l}"));
                    }
                }
                max_d = max_d.max((ours as f64 - l).abs());
            }
            // The log-sum-exp is summed in f64 on both sides, in different orders: equal to ~1e-12.
            max_lse = max_lse.max((logsumexp(row) - p["logsumexp"].as_f64().unwrap()).abs());
        }
        eprintln!(
            "logit agreement {short}: {} positions × top-10, {differing} logits differ (max |d| {max_d:e}), logsumexp max |d| {max_lse:e}",
            positions.len()
        );
        if max_lse > 1e-6 {
            failures.push(format!("{short}: logsumexp differs by {max_lse}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()
}

/// Perplexity over the first CHUNKS windows of the fixture text against llama-perplexity's running value
/// after as many chunks, to the 4 decimals it prints (the whole text is measured by `ferrite perplexity`,
/// see BENCHMARKS.md).
const CHUNKS: usize = 8;

#[test]
fn perplexity_matches_llama_perplexity() {
    let Some(text_path) = ferrite_testdata::ppl_text() else { return };
    let text = std::fs::read_to_string(&text_path).unwrap();
    for &(short, file) in &MODELS {
        let Some(fx) = fixture(short, "perplexity.json") else { continue };
        let Some(lm) = load(file) else { continue };
        let tokens = lm.tokenizer.encode(&text, true, false);
        assert_eq!(tokens.len() as u64, fx["n_tokens"].as_u64().unwrap(), "{short}: token count of the text differs");
        let ctx = fx["n_ctx"].as_u64().unwrap() as usize;
        let bos = if lm.tokenizer.add_bos() { lm.tokenizer.bos() } else { None };
        let r = ferrite_engine::perplexity(&lm.model, &tokens[..CHUNKS * ctx], ctx, bos, &mut |_, _| {}).unwrap();
        let expect = f64s(&fx["chunk_ppl"])[CHUNKS - 1];
        eprintln!("perplexity {short}: first {CHUNKS} chunks {:.6} vs llama.cpp {expect}", r.ppl);
        assert_eq!(format!("{:.4}", r.ppl), format!("{expect:.4}"), "{short}: perplexity {} vs llama.cpp {expect}", r.ppl);
    }
}
