//! The forward pass must not depend on how work is batched: a prompt prefilled at once, in chunks, or
//! token by token, and several sequences run together or alone, give the same logits (up to float
//! summation order).

use ferrite_gguf::GgufFile;
use ferrite_models::{Logits, Model, SeqBatch};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn models() -> Vec<Model> {
    [ferrite_testdata::SMOLLM2, ferrite_testdata::GEMMA3]
        .into_iter()
        .filter_map(ferrite_testdata::model)
        .map(|p| Model::from_gguf(&GgufFile::open(p).unwrap()).unwrap())
        .collect()
}

// Activations are quantized to 8 bits per row before each matrix product, so results are identical
// whatever the batch; only attention's float sums may be ordered differently.
const TOL: f32 = 1e-3;

#[test]
fn chunked_prefill_equals_whole_prefill_and_token_by_token() {
    for model in models() {
        let tokens: Vec<u32> = (0..40).map(|i| 100 + i * 37).collect();
        let vocab = model.config().vocab_size;

        let mut c1 = model.new_cache(64);
        let all = model.forward(&mut [SeqBatch { tokens: &tokens, cache: &mut c1, logits: Logits::All }]).unwrap();
        assert_eq!(all.len(), tokens.len() * vocab);
        assert_eq!(c1.len(), tokens.len());

        let mut c2 = model.new_cache(64);
        let mut chunked = Vec::new();
        for chunk in tokens.chunks(13) {
            chunked.extend(model.forward(&mut [SeqBatch { tokens: chunk, cache: &mut c2, logits: Logits::All }]).unwrap());
        }
        let d = max_abs_diff(&all, &chunked);
        assert!(d < TOL, "{}: chunked prefill differs by {d}", model.config().arch);

        let mut c3 = model.new_cache(64);
        let mut one = Vec::new();
        for t in &tokens {
            one.extend(model.forward(&mut [SeqBatch { tokens: &[*t], cache: &mut c3, logits: Logits::Last }]).unwrap());
        }
        let d = max_abs_diff(&all, &one);
        assert!(d < TOL, "{}: token-by-token differs by {d}", model.config().arch);
    }
}

#[test]
fn a_batch_of_sequences_equals_each_alone() {
    for model in models() {
        let vocab = model.config().vocab_size;
        let prompts: [Vec<u32>; 3] = [(1..20).collect(), (500..503).collect(), vec![42]];
        let mut alone = Vec::new();
        for p in &prompts {
            let mut c = model.new_cache(32);
            alone.push(model.forward(&mut [SeqBatch { tokens: p, cache: &mut c, logits: Logits::Last }]).unwrap());
        }
        let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache(32)).collect();
        let mut batch: Vec<SeqBatch> = prompts
            .iter()
            .zip(caches.iter_mut())
            .map(|(p, c)| SeqBatch { tokens: p, cache: c, logits: Logits::Last })
            .collect();
        let together = model.forward(&mut batch).unwrap();
        for (i, a) in alone.iter().enumerate() {
            let d = max_abs_diff(a, &together[i * vocab..(i + 1) * vocab]);
            assert!(d < TOL, "{}: sequence {i} differs by {d} in a batch", model.config().arch);
        }
        assert_eq!(caches.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![19, 3, 1]);
    }
}

#[test]
fn bad_input_is_an_error_and_leaves_the_cache_alone() {
    for model in models() {
        let mut c = model.new_cache(4);
        let vocab = model.config().vocab_size as u32;
        assert!(model.forward(&mut [SeqBatch { tokens: &[1, vocab], cache: &mut c, logits: Logits::Last }]).is_err());
        assert!(model.forward(&mut [SeqBatch { tokens: &[1, 2, 3, 4, 5], cache: &mut c, logits: Logits::Last }]).is_err());
        assert_eq!(c.len(), 0);
        model.forward(&mut [SeqBatch { tokens: &[1, 2, 3, 4], cache: &mut c, logits: Logits::None }]).unwrap();
        let e = model.forward(&mut [SeqBatch { tokens: &[1], cache: &mut c, logits: Logits::Last }]).unwrap_err();
        assert!(e.to_string().contains("context full"), "{e}");
    }
}
