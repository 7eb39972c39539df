//! all-MiniLM-L6-v2 against sentence-transformers (torch, CPU): fixtures made by
//! scripts/reference/embedding_fixtures.py — the token ids it fed the model and its normalized
//! embeddings for 56 varied texts, five of them longer than the 256-token window.

use ferrite_engine::Embedder;
use ferrite_models::Pooling;

use ferrite_testdata::MINILM;

struct Item {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn fixtures() -> Vec<Item> {
    let path = ferrite_testdata::reference("minilm").join("embeddings.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|it| Item {
            text: it["text"].as_str().unwrap().to_string(),
            ids: it["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect(),
            embedding: it["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn load() -> Option<Embedder> {
    let dir = ferrite_testdata::model(MINILM)?;
    Some(Embedder::load(&dir).expect("load all-MiniLM-L6-v2"))
}

#[test]
fn reads_the_sentence_transformers_recipe() {
    let Some(e) = load() else { return };
    assert_eq!((e.dim(), e.max_tokens(), e.pooling(), e.normalizes()), (384, 256, Pooling::Mean, true));
}

#[test]
fn token_ids_match_sentence_transformers_including_truncation() {
    let Some(e) = load() else { return };
    let items = fixtures();
    assert!(items.len() >= 50);
    assert!(items.iter().filter(|i| i.ids.len() == 256).count() >= 4, "fixtures must include texts past the window");
    for it in &items {
        assert_eq!(e.tokenize(&it.text).unwrap(), it.ids, "ids of {:?}", it.text);
    }
}

#[test]
fn embeddings_match_sentence_transformers() {
    let Some(e) = load() else { return };
    let items = fixtures();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let out = e.embed(&texts).unwrap();
    assert_eq!(out.vectors.len(), items.len());
    assert_eq!(out.tokens, items.iter().map(|i| i.ids.len()).sum::<usize>());
    assert_eq!(out.truncated, items.iter().filter(|i| e.count_tokens(&i.text).unwrap() + 2 > 256).count());
    assert!(out.truncated >= 4);
    let mut worst = (1.0f64, "");
    for (v, it) in out.vectors.iter().zip(&items) {
        assert_eq!(v.len(), 384);
        let c = cosine(v, &it.embedding);
        if c < worst.0 {
            worst = (c, &it.text);
        }
        let norm: f64 = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "not normalized: {norm}");
    }
    eprintln!("worst cosine {:.7} for {:?}", worst.0, worst.1.chars().take(40).collect::<String>());
    // The issue asks for ≥ 0.9999; we hold ourselves to ten times closer (measured: 1.0000000 to 7 places).
    assert!(worst.0 >= 0.99999, "cosine {} for {:?}", worst.0, worst.1);
}

#[test]
fn batching_does_not_change_a_text_s_vector() {
    let Some(e) = load() else { return };
    let items = fixtures();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let batched = e.embed(&texts).unwrap().vectors;
    for (i, t) in texts.iter().enumerate().step_by(7) {
        let alone = &e.embed(&[t]).unwrap().vectors[0];
        let c = cosine(alone, &batched[i]);
        assert!(c > 0.999_999, "{t:?}: cosine {c} between alone and batched");
    }
    // Semantics, as a sanity check on top of the reference: paraphrases are closer than unrelated texts.
    let v = e.embed(&["A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."]).unwrap().vectors;
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.3);
}

#[test]
fn empty_input_and_errors() {
    let Some(e) = load() else { return };
    let out = e.embed(&[]).unwrap();
    assert!(out.vectors.is_empty() && out.tokens == 0);
    let missing = Embedder::load(std::path::Path::new("/nonexistent/model-dir")).err().expect("error");
    assert!(missing.to_string().contains("/nonexistent/model-dir"), "{missing}");
}

/// all-MiniLM-L6-v2 written as llama.cpp's `convert_hf_to_gguf.py` writes a BERT (same names, metadata
/// and vocabulary rewriting: "▁" before whole words, no "##" on continuations; checked against a file
/// that converter made), with the matrices in `matrix_type` (F16, or Q8_0 for the quantized path).
fn minilm_as_gguf(dir: &std::path::Path, matrix_type: ferrite_tensor::DType) -> Vec<u8> {
    use ferrite_gguf::write::GgufWriter;
    use ferrite_gguf::{Array, Value};
    use ferrite_tensor::{DType, quant};
    let f = ferrite_models::HfFolder::open(dir).unwrap();
    let tok: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap();
    let mut vocab: Vec<(String, u64)> =
        tok["model"]["vocab"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
    vocab.sort_by_key(|v| v.1);
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let tokens: Vec<String> = vocab
        .iter()
        .map(|(t, _)| {
            if specials.contains(&t.as_str()) {
                t.clone()
            } else if let Some(rest) = t.strip_prefix("##") {
                rest.to_string()
            } else {
                format!("\u{2581}{t}")
            }
        })
        .collect();
    let types: Vec<i32> = vocab.iter().map(|(t, _)| if specials.contains(&t.as_str()) { 3 } else { 1 }).collect();
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("bert".into()));
    for (k, v) in [
        ("block_count", 6u32),
        ("context_length", 512),
        ("embedding_length", 384),
        ("feed_forward_length", 1536),
        ("attention.head_count", 12),
        ("pooling_type", 1),
    ] {
        w.meta(&format!("bert.{k}"), Value::U32(v));
    }
    w.meta("bert.attention.layer_norm_epsilon", Value::F32(1e-12));
    w.meta("tokenizer.ggml.model", Value::String("bert".into()));
    w.meta("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    w.meta("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    w.meta("tokenizer.ggml.bos_token_id", Value::U32(101));
    w.meta("tokenizer.ggml.seperator_token_id", Value::U32(102));
    w.meta("tokenizer.ggml.unknown_token_id", Value::U32(100));
    let mut put = |gguf: &str, hf: &str, shape: &[usize], dtype: DType| {
        let data = f.f32(hf, shape).unwrap();
        let cols = *shape.last().unwrap();
        let mut bytes = vec![0u8; data.len() / cols * quant::row_bytes(dtype, cols).unwrap()];
        let rb = bytes.len() / (data.len() / cols);
        for (src, dst) in data.chunks(cols).zip(bytes.chunks_mut(rb)) {
            quant::quantize_row(dtype, src, dst).unwrap();
        }
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        w.tensor(gguf, dtype, &dims, bytes);
    };
    put("token_embd.weight", "embeddings.word_embeddings.weight", &[30522, 384], DType::F16);
    put("position_embd.weight", "embeddings.position_embeddings.weight", &[512, 384], DType::F16);
    put("token_types.weight", "embeddings.token_type_embeddings.weight", &[2, 384], DType::F32);
    put("token_embd_norm.weight", "embeddings.LayerNorm.weight", &[384], DType::F32);
    put("token_embd_norm.bias", "embeddings.LayerNorm.bias", &[384], DType::F32);
    for i in 0..6 {
        let l = |n: &str| format!("encoder.layer.{i}.{n}");
        let b = |n: &str| format!("blk.{i}.{n}");
        for (g, h, rows, cols) in [
            ("attn_q", "attention.self.query", 384, 384),
            ("attn_k", "attention.self.key", 384, 384),
            ("attn_v", "attention.self.value", 384, 384),
            ("attn_output", "attention.output.dense", 384, 384),
            ("ffn_up", "intermediate.dense", 1536, 384),
            ("ffn_down", "output.dense", 384, 1536),
        ] {
            put(&b(&format!("{g}.weight")), &l(&format!("{h}.weight")), &[rows, cols], matrix_type);
            put(&b(&format!("{g}.bias")), &l(&format!("{h}.bias")), &[rows], DType::F32);
        }
        for (g, h) in [("attn_output_norm", "attention.output.LayerNorm"), ("layer_output_norm", "output.LayerNorm")] {
            put(&b(&format!("{g}.weight")), &l(&format!("{h}.weight")), &[384], DType::F32);
            put(&b(&format!("{g}.bias")), &l(&format!("{h}.bias")), &[384], DType::F32);
        }
    }
    w.to_bytes()
}

#[test]
fn bert_gguf_f16_and_q8_0_match_sentence_transformers() {
    let Some(dir) = ferrite_testdata::model(MINILM) else { return };
    let items: Vec<Item> = fixtures().into_iter().filter(|i| i.ids.len() < 256).collect(); // the GGUF's window is 512
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    // Q8_0 also quantizes the activations (measured worst: 0.99893).
    for (dtype, bar) in [(ferrite_tensor::DType::F16, 0.99999), (ferrite_tensor::DType::Q8_0, 0.998)] {
        let tmp = std::env::temp_dir().join(format!("ferrite-minilm-{}-{}.gguf", dtype.name(), std::process::id()));
        std::fs::write(&tmp, minilm_as_gguf(&dir, dtype)).unwrap();
        let e = Embedder::load(&tmp);
        std::fs::remove_file(&tmp).ok();
        let e = e.unwrap();
        assert_eq!((e.dim(), e.max_tokens(), e.pooling(), e.normalizes()), (384, 512, Pooling::Mean, true));
        for it in &items {
            assert_eq!(e.tokenize(&it.text).unwrap(), it.ids, "GGUF vocabulary: ids of {:?}", it.text);
        }
        let out = e.embed(&texts).unwrap();
        let worst = out.vectors.iter().zip(&items).map(|(v, it)| cosine(v, &it.embedding)).fold(1.0, f64::min);
        eprintln!("{}: worst cosine {worst:.7}", dtype.name());
        assert!(worst >= bar, "{}: cosine {worst}", dtype.name());
    }
}
