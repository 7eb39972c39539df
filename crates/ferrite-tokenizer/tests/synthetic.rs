//! Small vocabularies written in the test: metadata errors are typed, odd metadata does not panic, and
//! arbitrary text round-trips through byte-level BPE.

use ferrite_gguf::{Array, GgufFile, Value, write::GgufWriter};
use ferrite_tokenizer::{Tokenizer, TokenizerError, TokenizerKind};

fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| s.to_string()).collect()))
}

fn build(meta: Vec<(&str, Value)>) -> Result<Tokenizer, TokenizerError> {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.meta(k, v);
    }
    Tokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes()).unwrap())
}

/// GPT-2's 256 byte characters, in byte order.
fn byte_chars() -> Vec<String> {
    let mut moved = 0;
    (0..=255u32)
        .map(|b| {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let c = if printable {
                b
            } else {
                moved += 1;
                255 + moved
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// A byte-level BPE vocabulary: the 256 byte characters, a few merges, and `<|end|>` as a control token.
fn toy_bpe(pre: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut tokens = byte_chars();
    let merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "Ġa n"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    tokens.push("<|end|>".into());
    let mut types = vec![1i32; tokens.len()];
    *types.last_mut().unwrap() = 3;
    let mut meta = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges", strings(&merges)),
    ];
    if let Some(p) = pre {
        meta.push(("tokenizer.ggml.pre", Value::String(p.into())));
    }
    meta
}

#[test]
fn metadata_errors_are_typed() {
    let err = |meta| build(meta).unwrap_err();
    assert!(matches!(err(vec![]), TokenizerError::MissingKey("tokenizer.ggml.model")));
    assert!(matches!(
        err(vec![("tokenizer.ggml.model", Value::String("bert".into()))]),
        TokenizerError::UnsupportedModel { .. }
    ));
    assert!(matches!(
        err(vec![("tokenizer.ggml.model", Value::String("t5".into()))]),
        TokenizerError::UnsupportedModel { .. }
    ));
    assert!(matches!(
        err(vec![("tokenizer.ggml.model", Value::String("nope".into()))]),
        TokenizerError::UnknownModel(_)
    ));
    assert!(matches!(err(toy_bpe(Some("no-such-pre"))), TokenizerError::UnknownPre(_)));
    assert!(matches!(err(toy_bpe(Some("kimi-k2"))), TokenizerError::UnsupportedPre { .. }));

    let mut no_merges = toy_bpe(None);
    no_merges.retain(|(k, _)| *k != "tokenizer.ggml.merges");
    assert!(matches!(err(no_merges), TokenizerError::MissingKey("tokenizer.ggml.merges")));

    let spm = |extra: Vec<(&'static str, Value)>| {
        let mut m = vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", strings(&["<unk>", "<s>", "</s>", "a"])),
        ];
        m.extend(extra);
        m
    };
    assert!(build(spm(vec![])).is_ok());
    assert!(matches!(
        err(spm(vec![("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0; 2])))])),
        TokenizerError::BadMetadata { key: "tokenizer.ggml.scores", .. }
    ));
    assert!(matches!(
        err(spm(vec![("tokenizer.ggml.token_type", Value::Array(Array::F32(vec![0.0; 4])))])),
        TokenizerError::BadMetadata { key: "tokenizer.ggml.token_type", .. }
    ));
    assert!(matches!(
        err(spm(vec![("tokenizer.ggml.bos_token_id", Value::String("1".into()))])),
        TokenizerError::BadMetadata { key: "tokenizer.ggml.bos_token_id", .. }
    ));
    assert!(matches!(
        err(vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", Value::Array(Array::I32(vec![1, 2]))),
        ]),
        TokenizerError::BadMetadata { key: "tokenizer.ggml.tokens", .. }
    ));
}

#[test]
fn odd_metadata_is_tolerated_like_llama_cpp() {
    // Out-of-range and negative special ids keep the defaults; empty token texts get a placeholder;
    // merge lines without a space are empty pairs.
    let mut meta = toy_bpe(None);
    meta.push(("tokenizer.ggml.bos_token_id", Value::U32(1_000_000)));
    meta.push(("tokenizer.ggml.eos_token_id", Value::I32(-1)));
    meta.retain(|(k, _)| *k != "tokenizer.ggml.merges");
    meta.push(("tokenizer.ggml.merges", strings(&["Ġ t", "", "x", "Ġt he"])));
    let tok = build(meta).unwrap();
    assert_eq!(tok.pre(), Some("default"));
    assert_eq!(tok.bos(), Some(11)); // the BPE default
    assert_eq!(tok.eos(), Some(11));
    assert!(tok.is_eog(11));
    assert!(tok.is_eog(tok.token_id("<|end|>").unwrap()));
    assert_eq!(tok.token_to_piece(u32::MAX), b"");
    assert_eq!(tok.decode(&[u32::MAX, 5_000_000]), "");
    assert_eq!(tok.token_type(u32::MAX), None);

    let tok = build(vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&["<unk>", "", "</s>"])),
    ])
    .unwrap();
    assert_eq!(tok.token_text(1), Some("[EMPTY_1]"));
    // No byte tokens: each byte of a piece outside the vocabulary becomes <unk> ("▁zz" is 5 bytes;
    // llama.cpp throws here).
    assert_eq!(tok.encode("zz", false, false), [0; 5]);
}

#[test]
fn byte_level_bpe_round_trips_any_text() {
    let tok = build(toy_bpe(Some("gpt-2"))).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Bpe);
    let the = tok.token_id("Ġthe").unwrap();
    assert_eq!(tok.encode(" the", false, false), [the]);
    // `<|end|>` is a control token: parsed only when asked.
    let end = tok.token_id("<|end|>").unwrap();
    assert_eq!(tok.encode("a<|end|>", false, true), [tok.token_id("a").unwrap(), end]);
    assert!(!tok.encode("a<|end|>", false, false).contains(&end));

    // Pseudo-random strings over ASCII, controls, accents, CJK, emoji and joiners.
    let alphabet: Vec<char> = "ab Z9 \t\n\r'?.!,éñ中文😀\u{200d}\u{301}\u{a0}\u{3000}<|end|>".chars().collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let mut s = String::new();
        for _ in 0..(seed % 24) {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
        }
        let ids = tok.encode(&s, false, false);
        // gpt-2 cleans up spaces when decoding, so compare the raw pieces.
        let raw: Vec<u8> = ids.iter().flat_map(|&id| tok.token_to_piece(id)).collect();
        assert_eq!(raw, s.as_bytes(), "{s:?}");
        let mut dec = tok.decoder();
        let streamed: String = ids.iter().map(|&id| dec.push(id)).collect::<String>() + &dec.flush();
        assert_eq!(streamed, tok.decode(&ids), "{s:?}");
    }
}
