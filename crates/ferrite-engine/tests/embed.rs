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
