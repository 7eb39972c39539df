//! The `ferrite` binary end to end on the real models: what it prints on stdout, that logs stay on
//! stderr, and that bad input gives a clear error and a non-zero exit instead of a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite")).args(args).output().expect("ferrite runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn smollm2() -> Option<PathBuf> {
    ferrite_testdata::model(ferrite_testdata::SMOLLM2)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn tokenize_prints_llama_cpp_ids_as_json() {
    // Expected ids from llama.cpp's llama-tokenize (BOS only where the metadata asks: Gemma 3).
    for (file, ids) in [
        (ferrite_testdata::SMOLLM2, "[504,3575,282,4649,314]"),
        (ferrite_testdata::GEMMA3, "[2,818,5279,529,7001,563]"),
        (ferrite_testdata::QWEN05, "[785,6722,315,9625,374]"),
    ] {
        let Some(m) = ferrite_testdata::model(file) else { continue };
        let o = ferrite(&["tokenize", "--model", path(&m), "The capital of France is"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), ids, "{file}");
    }
}

#[test]
fn detokenize_round_trips() {
    let Some(m) = smollm2() else { return };
    let o = ferrite(&["detokenize", "--model", path(&m), "504", "3575", "282", "4649", "314"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "The capital of France is\n");
    let o = ferrite(&["detokenize", "--model", path(&m), "99999999"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("outside the vocabulary"), "{}", stderr(&o));
}

#[test]
fn run_streams_only_the_greedy_continuation_to_stdout() {
    let Some(m) = smollm2() else { return };
    // llama.cpp's greedy continuation of this prompt (tests/reference/smollm2/greedy.json, prompt "fact").
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ferrite_testdata::reference("smollm2").join("greedy.json")).unwrap(),
    )
    .unwrap();
    let p = fixture["prompts"].as_array().unwrap().iter().find(|p| p["id"] == "fact").unwrap();
    let prompt = p["text"].as_str().unwrap();
    let ids: Vec<String> = p["generated_ids"].as_array().unwrap()[..16].iter().map(|v| v.to_string()).collect();
    let mut args = vec!["detokenize", "--model", path(&m)];
    args.extend(ids.iter().map(String::as_str));
    let expected = stdout(&ferrite(&args));

    let o = ferrite(&["run", "--model", path(&m), "--prompt", prompt, "--temperature", "0", "--max-tokens", "16", "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected, "stdout must hold exactly the continuation");
    assert!(stderr(&o).contains("tokens/s"), "timings go to stderr: {}", stderr(&o));

    // A stop string taken from the middle of that continuation ends it there, and is not printed.
    let text = expected.trim_end_matches('\n');
    let at = text.char_indices().map(|(i, _)| i).find(|&i| i >= text.len() / 2).unwrap();
    let stop: String = text[at..].chars().take(3).collect();
    let cut = text.find(&stop).unwrap();
    let o = ferrite(&["run", "--model", path(&m), "--prompt", prompt, "--temperature", "0", "--max-tokens", "16", "--stop", &stop]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n", &text[..cut]), "stop string {stop:?}");
    assert!(stderr(&o).contains("finish: Stop"), "{}", stderr(&o));
}

#[test]
fn run_with_chat_template_and_seed_is_reproducible() {
    let Some(m) = smollm2() else { return };
    let args = ["run", "--model", path(&m), "--chat", "--prompt", "Name a colour.", "--temperature", "0.9", "--seed", "7", "-n", "12"];
    let (a, b) = (ferrite(&args), ferrite(&args));
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    assert!(!stdout(&a).contains("<|im_start|>"));
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_not_truncated() {
    let Some(m) = smollm2() else { return };
    let o = ferrite(&["run", "--model", path(&m), "--prompt", "one two three four five six seven eight nine ten", "--ctx", "8", "-n", "4"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not fit the context of 8 tokens"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn a_corrupt_model_file_is_a_clear_error() {
    let Some(m) = smollm2() else { return };
    let bytes = std::fs::read(&m).unwrap();
    let dir = std::env::temp_dir().join(format!("ferrite-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("truncated.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    for cmd in ["run", "info", "tokenize"] {
        let mut args = vec![cmd, "--model", path(&cut)];
        if cmd != "info" {
            args.push(if cmd == "run" { "--prompt=hi" } else { "hi" });
        }
        let o = ferrite(&args);
        assert!(!o.status.success(), "{cmd} accepted a truncated file");
        let err = stderr(&o);
        assert!(err.contains("runs past the end") && !err.contains("panicked"), "{cmd}: {err}");
    }
    let o = ferrite(&["info", "--model", path(&dir.join("missing.gguf"))]);
    assert!(stderr(&o).contains("cannot open"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn perplexity_prints_json() {
    let Some(m) = smollm2() else { return };
    let dir = std::env::temp_dir().join(format!("ferrite-ppl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("text.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let o = ferrite(&["perplexity", "--model", path(&m), "--file", path(&text), "--ctx", "64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // A sentence repeated 40 times is almost perfectly predictable after its first occurrences.
    let ppl = j["ppl"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 2.0, "{j}");
    assert!(j["tokens"].as_u64().unwrap() >= 128);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn info_describes_the_model() {
    let Some(m) = ferrite_testdata::model(ferrite_testdata::GEMMA3) else { return };
    let o = ferrite(&["info", "--model", path(&m)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    for want in ["architecture: gemma3", "layers:       18", "head size 256", "sliding window", "chat template: absent", "Q4_K"] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
}

#[test]
fn info_cpu_lists_features_and_kernels_without_a_model() {
    let o = ferrite(&["info", "--cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("features:") && out.contains("quantized dot products:"), "{out}");
    // The tier shown is the one the library runs.
    assert!(out.contains(ferrite_tensor::quant::kernel_tier()), "{out}");
}

#[test]
fn bench_json_has_one_object_per_test_with_llama_bench_fields() {
    let Some(m) = smollm2() else { return };
    let o = ferrite(&["bench", "-m", path(&m), "-p", "16", "-n", "4", "-t", "1,2", "-r", "2", "--membw-mib", "64", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let rows = rows.as_array().expect("an array");
    let tests: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|r| (r["n_prompt"].as_u64().unwrap(), r["n_gen"].as_u64().unwrap(), r["n_threads"].as_u64().unwrap()))
        .collect();
    assert_eq!(tests, [(16, 0, 1), (0, 4, 1), (16, 0, 2), (0, 4, 2)]);
    for r in rows {
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2, "{r}");
    }
    // Generation reports the weight traffic: SmolLM2's tied embedding table is read as the output head.
    let tg = &rows[1];
    let file = std::fs::metadata(&m).unwrap().len();
    let weights = tg["weight_bytes_per_token"].as_u64().unwrap();
    assert!(weights > file * 9 / 10 && weights <= file, "{weights} of {file}");
    assert!(tg["membw_share"].as_f64().unwrap() > 0.0, "{tg}");
}

#[test]
fn bench_without_a_model_or_with_zero_threads_is_an_error() {
    let o = ferrite(&["bench"]);
    assert!(!o.status.success());
    let Some(m) = smollm2() else { return };
    let o = ferrite(&["bench", "-m", path(&m), "-t", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at least 1"), "{}", stderr(&o));
}

#[test]
fn bench_parallel_decodes_several_sequences_per_step_and_counts_all_their_tokens() {
    let Some(m) = smollm2() else { return };
    let o = ferrite(&["bench", "-m", path(&m), "-p", "0", "-n", "4", "--parallel", "3", "-t", "1", "-r", "1", "--membw-mib", "64", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let r = &rows.as_array().expect("an array")[..];
    assert_eq!(r.len(), 1, "{rows}");
    assert_eq!((r[0]["n_gen"].as_u64(), r[0]["n_parallel"].as_u64()), (Some(4), Some(3)), "{rows}");
    // tokens/s counts every sequence's tokens: 3 × 4 per repetition.
    let (ts, ns) = (r[0]["samples_ts"][0].as_f64().unwrap(), r[0]["samples_ns"][0].as_f64().unwrap());
    assert!((ts * ns / 1e9 - 12.0).abs() < 1e-3, "{rows}");
    let o = ferrite(&["bench", "-m", path(&m), "--parallel", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--parallel must be at least 1"), "{}", stderr(&o));
}
