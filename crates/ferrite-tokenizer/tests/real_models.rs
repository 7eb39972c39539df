//! The three real models, and llama.cpp vocab files that cover what they do not, against llama.cpp on a
//! corpus of hard strings (`tests/fixtures/llama_tokenize.json`, written by
//! `scripts/reference/tokenizer_fixtures.py`): ids from `llama-tokenize` (with and without parsing special
//! tokens, BOS as the metadata says), text from `llama_detokenize` on those ids and on random ids. Then
//! round trips and the incremental decoder on the same corpus.

use std::time::Instant;

use ferrite_gguf::GgufFile;
use ferrite_testdata::{GEMMA3, QWEN05, SMOLLM2};
use ferrite_tokenizer::{DecodeOptions, Tokenizer, TokenizerError, TokenizerKind};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama_tokenize.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn corpus(f: &Value) -> Vec<String> {
    f["corpus"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn load(file: &str) -> Option<Tokenizer> {
    let path = ferrite_testdata::model(file)?;
    Some(Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap())
}

fn show(tok: &Tokenizer, ids: &[u32]) -> String {
    ids.iter().map(|&id| format!("{id}:{:?}", tok.token_text(id).unwrap_or("?"))).collect::<Vec<_>>().join(" ")
}

/// Check one fixture target: ids for every corpus string both ways, and detokenized bytes.
fn check_target(file: &str) {
    let f = fixture();
    let texts = corpus(&f);
    let t = f["targets"].as_array().unwrap().iter().find(|t| t["file"] == file).unwrap();
    let path = match t["in"].as_str().unwrap() {
        "models" => ferrite_testdata::model(file),
        _ => ferrite_testdata::llama_cpp_models().map(|d| d.join(file)),
    };
    let Some(path) = path else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    let add_special = t["add_special"].as_bool().unwrap();
    assert_eq!(tok.add_bos(), add_special, "{file}: whether BOS is added");

    let mut failures = Vec::new();
    for (variant, parse_special) in [("parse_special", true), ("no_parse_special", false)] {
        let expected = t[variant].as_array().unwrap();
        assert_eq!(expected.len(), texts.len());
        for (text, want) in texts.iter().zip(expected) {
            let want = ids(want);
            let got = tok.encode(text, add_special, parse_special);
            if got != want {
                failures.push(format!(
                    "{variant} {text:?}\n   want {}\n   got  {}",
                    show(&tok, &want),
                    show(&tok, &got)
                ));
            }
        }
    }
    let plain = DecodeOptions::default();
    let unparse = DecodeOptions { remove_special: false, unparse_special: true };
    let remove = DecodeOptions { remove_special: true, unparse_special: false };
    let parsed = t["parse_special"].as_array().unwrap();
    for (i, ids_v) in parsed.iter().enumerate() {
        let ids = ids(ids_v);
        for (opts, key) in [(plain, "decode"), (unparse, "decode_unparse")] {
            let want = unhex(&t[key][i]);
            let got = tok.detokenize(&ids, opts);
            if got != want {
                failures.push(format!(
                    "{key} of {:?}: want {:?} got {:?}",
                    texts[i],
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    for (ids_v, want) in t["random_ids"].as_array().unwrap().iter().zip(t["random_decode"].as_array().unwrap()) {
        let ids = ids(ids_v);
        for (k, opts) in [plain, unparse, remove].into_iter().enumerate() {
            let want = unhex(&want[k]);
            let got = tok.detokenize(&ids, opts);
            if got != want {
                failures.push(format!("random {opts:?} {}: want {want:?} got {got:?}", show(&tok, &ids)));
            }
        }
    }
    assert!(failures.is_empty(), "{file}: {} mismatches:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{file}: {} texts × 2 tokenized and detokenized as llama.cpp does", texts.len());
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_target(SMOLLM2);
}

#[test]
fn qwen25_matches_llama_cpp() {
    check_target(QWEN05);
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_target(GEMMA3);
}

/// SentencePiece with a space prefix, and special tokens parsed: the prefix comes back after each one.
#[test]
fn llama_spm_vocab_matches_llama_cpp() {
    check_target("ggml-vocab-llama-spm.gguf");
}

/// phi-3 strips white space after its special tokens (a rule keyed on the model name).
#[test]
fn phi3_vocab_matches_llama_cpp() {
    check_target("ggml-vocab-phi-3.gguf");
}

/// Llama 3: whole-word lookup before merging; clean-up of spaces when decoding.
#[test]
fn llama_bpe_vocab_matches_llama_cpp() {
    check_target("ggml-vocab-llama-bpe.gguf");
}

#[test]
fn gpt2_vocab_matches_llama_cpp() {
    check_target("ggml-vocab-gpt-2.gguf");
}

/// Gemma 4: SentencePiece-style BPE on raw UTF-8 with `<0xXX>` byte fallback.
#[test]
fn gemma4_vocab_matches_llama_cpp() {
    check_target("ggml-vocab-gemma-4.gguf");
}

/// `decode(encode(s)) == s`, except that SentencePiece cannot tell a `▁` in the text from a space.
/// With special tokens parsed, rendering them back as text restores the input too.
#[test]
fn round_trip_on_all_three_models() {
    let f = fixture();
    for file in [SMOLLM2, QWEN05, GEMMA3] {
        let Some(tok) = load(file) else { continue };
        for text in corpus(&f) {
            let want = if tok.kind() == TokenizerKind::Spm { text.replace('▁', " ") } else { text.clone() };
            let ids = tok.encode(&text, false, false);
            assert_eq!(tok.decode(&ids), want, "{file}: {text:?}");

            let ids = tok.encode(&text, false, true);
            let bytes = tok.detokenize(&ids, DecodeOptions { remove_special: false, unparse_special: true });
            assert_eq!(String::from_utf8(bytes).unwrap(), want, "{file} (special tokens parsed): {text:?}");
        }
    }
}

/// Feed `text`'s ids one by one: the text returned so far is always a prefix of the whole decode (so no
/// character is ever returned broken), and everything plus `flush` is exactly the whole decode. Returns
/// how many tokens with a non-empty piece produced no text yet.
fn check_decoder(name: &str, tok: &Tokenizer, text: &str) -> usize {
    let ids = tok.encode(text, tok.add_bos(), true);
    let whole = tok.decode(&ids);
    let mut dec = tok.decoder();
    let mut so_far = String::new();
    let mut held_back = 0;
    for &id in &ids {
        let part = dec.push(id);
        if part.is_empty() && !tok.piece(id, false).is_empty() {
            held_back += 1;
        }
        so_far.push_str(&part);
        assert!(whole.starts_with(&so_far), "{name}: {so_far:?} is not a prefix of {whole:?}");
    }
    so_far.push_str(&dec.flush());
    assert_eq!(so_far, whole, "{name}: {text:?}");
    held_back
}

/// Texts for the space clean-up of GPT-2-style vocabularies (` ,` → `,`, ` ' ` → `'`, ` 's` → `'s`).
const CLEAN_UP_TEXTS: &[&str] = &[
    "Hello , world . Is it ? Yes ! isn ' t it , he said ' s ' m ' re ' ve ' ll ' d",
    "a ' ' b ' 's 're 've 'x ' ",
    "end with a space ",
    "end with ' ",
];

#[test]
fn incremental_decoder_on_all_three_models() {
    let f = fixture();
    let mut texts = corpus(&f);
    // Characters the vocabularies split into several byte tokens.
    texts.push("𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀𓁐 🫠🫨 𠜎𠜱 ꙮ".into());
    texts.extend(CLEAN_UP_TEXTS.iter().map(|s| s.to_string()));
    for file in [SMOLLM2, QWEN05, GEMMA3] {
        let Some(tok) = load(file) else { continue };
        let held_back: usize = texts.iter().map(|t| check_decoder(file, &tok, t)).sum();
        // The corpus has emoji and rare CJK that split inside a character, so some pushes must wait.
        assert!(held_back > 0, "{file}: no token ever ended inside a character");
    }
}

/// The same on llama.cpp's vocab files, which add the space clean-up (GPT-2, Llama 3) and the
/// SentencePiece space prefix.
#[test]
fn incremental_decoder_on_llama_cpp_vocabs() {
    let Some(dir) = ferrite_testdata::llama_cpp_models() else { return };
    let f = fixture();
    let mut texts = corpus(&f);
    texts.extend(CLEAN_UP_TEXTS.iter().map(|s| s.to_string()));
    for name in ["gpt-2", "llama-bpe", "llama-spm", "phi-3", "gemma-4", "deepseek-llm", "falcon"] {
        let path = dir.join(format!("ggml-vocab-{name}.gguf"));
        let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
        for text in &texts {
            check_decoder(name, &tok, text);
        }
    }
}

/// A SentencePiece emoji made of byte-fallback tokens: nothing comes out until its last byte.
#[test]
fn gemma3_byte_fallback_emoji_waits_for_its_last_byte() {
    let Some(tok) = load(GEMMA3) else { return };
    let text = "𓀀"; // U+13000: not in the vocabulary, four <0xXX> tokens
    let ids = tok.encode(text, false, false);
    let texts: Vec<&str> = ids.iter().map(|&id| tok.token_text(id).unwrap()).collect();
    assert_eq!(texts, ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"]);
    let mut dec = tok.decoder();
    let parts: Vec<String> = ids.iter().map(|&id| dec.push(id)).collect();
    assert_eq!(parts, ["", "", "", text]);
    assert_eq!(dec.flush(), "");
    // A sequence cut inside the character ends with one replacement character, like a lossy decode.
    let mut dec = tok.decoder();
    assert_eq!(dec.push(ids[0]) + &dec.push(ids[1]) + &dec.flush(), "\u{FFFD}");
    assert_eq!(tok.decode(&ids[..2]), "\u{FFFD}");
}

/// BOS, EOS, EOT, EOM, UNK, PAD and the end-of-generation set of every model and vocab file, as llama.cpp
/// reports them when loading.
#[test]
fn special_ids_match_llama_cpp() {
    let f = fixture();
    let mut checked = 0;
    for (file, want) in f["special_ids"].as_object().unwrap() {
        let path = if file.starts_with("ggml-vocab-") {
            ferrite_testdata::llama_cpp_models().map(|d| d.join(file))
        } else {
            ferrite_testdata::model(file)
        };
        let Some(path) = path else { continue };
        let tok = match Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()) {
            Ok(t) => t,
            Err(TokenizerError::UnsupportedModel { .. }) => continue,
            Err(e) => panic!("{file}: {e}"),
        };
        let id = |key: &str| want.get(key).map(|v| v.as_u64().unwrap() as u32);
        assert_eq!(tok.bos(), id("bos"), "{file}: BOS");
        assert_eq!(tok.eos(), id("eos"), "{file}: EOS");
        assert_eq!(tok.eom(), id("eom"), "{file}: EOM");
        assert_eq!(tok.unk(), id("unk"), "{file}: UNK");
        assert_eq!(tok.pad(), id("pad"), "{file}: PAD");
        assert_eq!(tok.eog_ids(), ids(&want["eog"]), "{file}: end-of-generation set");
        if file == SMOLLM2 {
            // Two EOT candidates (`<|im_end|>`, `<|endoftext|>`): llama.cpp's pick follows its hash map.
            assert!(tok.eot().is_some_and(|e| tok.is_eog(e)), "{file}: EOT");
        } else {
            assert_eq!(tok.eot(), id("eot"), "{file}: EOT");
        }
        checked += 1;
    }
    eprintln!("special ids of {checked} vocabularies match");
}

#[test]
fn special_tokens_and_end_of_generation() {
    if let Some(tok) = load(QWEN05) {
        let im_end = tok.token_id("<|im_end|>").unwrap();
        assert_eq!(tok.eos(), Some(im_end));
        assert!(tok.is_eog(im_end));
        assert!(tok.is_eog(tok.token_id("<|endoftext|>").unwrap()));
        assert!(!tok.is_eog(tok.token_id("<|im_start|>").unwrap()));
        assert!(tok.is_control(im_end));
        assert!(tok.token_to_piece(im_end).is_empty());
        assert_eq!(tok.piece(im_end, true), b"<|im_end|>");
        assert_eq!(tok.pre(), Some("qwen2"));
        assert!(!tok.add_bos());
    }
    if let Some(tok) = load(SMOLLM2) {
        let im_end = tok.token_id("<|im_end|>").unwrap();
        assert!(tok.is_eog(im_end));
        assert!(tok.is_eog(tok.token_id("<|endoftext|>").unwrap()));
        assert_eq!(tok.pre(), Some("smollm"));
        assert_eq!(tok.vocab_size(), 49152);
    }
    if let Some(tok) = load(GEMMA3) {
        let eot = tok.token_id("<end_of_turn>").unwrap();
        assert_eq!(tok.eot(), Some(eot));
        assert!(tok.is_eog(eot) && tok.is_eog(tok.eos().unwrap()));
        assert_eq!(tok.bos(), tok.token_id("<bos>"));
        assert!(tok.add_bos());
        assert!(!tok.add_space_prefix());
        assert_eq!(tok.kind(), TokenizerKind::Spm);
        assert_eq!(tok.encode("", true, false), [tok.bos().unwrap()]);
    }
}

/// Encoding about 100 KB must take well under a second (built with the test profile's optimisations):
/// the corpus repeated (the word cache at work), and text without repeats: pseudo-random words, and
/// CJK, emoji and rare characters that fall back to bytes.
#[test]
fn encoding_100_kb_is_fast() {
    let f = fixture();
    let repeated: String = corpus(&f).join("\n").repeat(50);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| -> usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let syllables = ["ka", "lo", "mi", "ne", "str", "qu", "ph", "zz", "é", "ö", " ", " ", ", ", ".\n", "7", "42"];
    let words: String = (0..60_000).map(|_| syllables[next(syllables.len())]).collect();
    // CJK ideographs, Egyptian hieroglyphs (byte fallback in Gemma), emoji.
    let blocks: [(u32, u32); 3] = [(0x4E00, 0x9FFF), (0x13000, 0x1342E), (0x1F300, 0x1F5FF)];
    let rare: String = (0..40_000)
        .map(|_| {
            let (lo, hi) = blocks[next(blocks.len())];
            char::from_u32(lo + next((hi - lo) as usize) as u32).unwrap_or('x')
        })
        .collect();
    for file in [SMOLLM2, QWEN05, GEMMA3] {
        let t = Instant::now();
        let Some(tok) = load(file) else { continue };
        eprintln!("{file}: loaded in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
        for (name, text) in [("corpus", &repeated), ("words", &words), ("rare", &rare)] {
            let text = &text[..text.floor_char_boundary(100_000)];
            let t = Instant::now();
            let n = tok.encode(text, true, true).len();
            let secs = t.elapsed().as_secs_f64();
            eprintln!("{file}: {name}: {} bytes → {n} tokens in {:.0} ms", text.len(), secs * 1e3);
            assert!(secs < 2.0, "{file}: {name}: {secs:.2} s");
        }
    }
}

/// SentencePiece with a space prefix: decoding drops the first piece's leading space (unless BOS comes
/// first, as in llama.cpp), a continuing decoder keeps it.
#[test]
fn space_prefix_on_decoding() {
    let Some(dir) = ferrite_testdata::llama_cpp_models() else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(dir.join("ggml-vocab-llama-spm.gguf")).unwrap()).unwrap();
    assert!(tok.add_space_prefix());
    let ids = tok.encode("Hello world", false, false);
    assert_eq!(tok.token_text(ids[0]), Some("▁Hello"));
    assert_eq!(tok.decode(&ids), "Hello world");
    let with_bos = tok.encode("Hello world", true, false);
    assert_eq!(with_bos[0], tok.bos().unwrap());
    assert_eq!(tok.decode(&with_bos), " Hello world");
    let remove = DecodeOptions { remove_special: true, unparse_special: false };
    // Removing BOS keeps the space too (llama_detokenize clears its strip flag when it drops BOS).
    assert_eq!(tok.detokenize(&with_bos, remove), b" Hello world");

    let mut dec = tok.decoder();
    assert_eq!(ids.iter().map(|&id| dec.push(id)).collect::<String>(), "Hello world");
    let mut dec = tok.decoder().continuing();
    assert_eq!(ids.iter().map(|&id| dec.push(id)).collect::<String>(), " Hello world");
}
