//! llama.cpp's own tokenizer test vectors: `models/ggml-vocab-*.gguf` with `.inp` (cases separated by
//! `\n__ggml_vocab_test__\n`) and `.out` (expected ids, one line per case), checked the way
//! `tests/test-tokenizer-0.cpp` checks them: `common_tokenize(text, add_special = false,
//! parse_special = false)`, ids compared exactly.
//!
//! Vocabularies with vectors that we do not tokenize, and why:
//! - `bert-bge`: WordPiece (`tokenizer.ggml.model = bert`), not implemented.
//!
//! Vocabularies without vectors (`aquila`, `baichuan`, `gpt-neox`, `nomic-bert-moe`) are only loaded.

use std::path::Path;

use ferrite_gguf::GgufFile;
use ferrite_tokenizer::{Tokenizer, TokenizerError};

/// Vocabularies with vectors that must load and pass.
const SUPPORTED: &[&str] = &[
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gemma-4",
    "gpt-2",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];
/// Vocabularies with vectors that must be refused with `UnsupportedModel`.
const UNSUPPORTED: &[&str] = &["bert-bge"];

struct Case {
    text: String,
    ids: Vec<u32>,
}

fn read_cases(inp: &Path, out: &Path) -> Vec<Case> {
    let raw = std::fs::read_to_string(inp).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    // As test-tokenizer-0.cpp splits: a trailing separator ends the last case.
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        match raw[pos..].find(sep) {
            Some(i) => {
                texts.push(raw[pos..pos + i].to_string());
                pos += i + sep.len();
            }
            None => {
                texts.push(raw[pos..].to_string());
                break;
            }
        }
    }
    let lines: Vec<&str> = std::fs::read_to_string(out).unwrap().leak().lines().collect();
    assert_eq!(
        texts.len(),
        lines.len(),
        "{} cases vs {} expected lines in {}",
        texts.len(),
        lines.len(),
        out.display()
    );
    texts
        .into_iter()
        .zip(lines)
        .map(|(text, line)| Case { text, ids: line.split_whitespace().map(|t| t.parse().unwrap()).collect() })
        .collect()
}

fn show(tok: &Tokenizer, ids: &[u32]) -> String {
    ids.iter().map(|&id| format!("{id}:{:?}", tok.token_text(id).unwrap_or("?"))).collect::<Vec<_>>().join(" ")
}

#[test]
fn llama_cpp_vocab_vectors() {
    let Some(dir) = ferrite_testdata::llama_cpp_models() else { return };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_prefix("ggml-vocab-")?.strip_suffix(".gguf.inp")?.to_string())
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no vectors in {}", dir.display());

    let mut failures = Vec::new();
    let mut passed_cases = 0;
    let mut passed_vocabs = Vec::new();
    for name in &names {
        let gguf_path = dir.join(format!("ggml-vocab-{name}.gguf"));
        let gguf = GgufFile::open(&gguf_path).unwrap();
        let tok = match Tokenizer::from_gguf(&gguf) {
            Ok(t) => {
                assert!(SUPPORTED.contains(&name.as_str()), "{name} loads: add it to SUPPORTED");
                t
            }
            Err(e @ TokenizerError::UnsupportedModel { .. }) => {
                assert!(UNSUPPORTED.contains(&name.as_str()), "{name} is refused ({e}) but listed as supported");
                eprintln!("{name}: unsupported ({e})");
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let cases = read_cases(&gguf_path.with_extension("gguf.inp"), &gguf_path.with_extension("gguf.out"));
        let mut ok = 0;
        for case in &cases {
            let got = tok.encode(&case.text, false, false);
            if got == case.ids {
                ok += 1;
            } else {
                failures.push(format!(
                    "{name}: {:?}\n   want {}\n   got  {}",
                    case.text,
                    show(&tok, &case.ids),
                    show(&tok, &got)
                ));
            }
        }
        eprintln!("{name}: {ok}/{} cases", cases.len());
        passed_cases += ok;
        if ok == cases.len() {
            passed_vocabs.push(name.clone());
        }
    }
    eprintln!("{} vocabularies, {passed_cases} cases pass", passed_vocabs.len());
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
    for name in SUPPORTED {
        assert!(passed_vocabs.iter().any(|n| n == name), "{name} has no vectors in {}", dir.display());
    }
}

/// The vocabularies without vectors still load (or are refused for a stated reason).
#[test]
fn every_llama_cpp_vocab_loads_or_is_refused_clearly() {
    let Some(dir) = ferrite_testdata::llama_cpp_models() else { return };
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "gguf") {
            continue;
        }
        let gguf = GgufFile::open(&path).unwrap();
        match Tokenizer::from_gguf(&gguf) {
            Ok(t) => assert!(t.vocab_size() > 0),
            Err(TokenizerError::UnsupportedModel { .. }) => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}
