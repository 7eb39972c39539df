//! Sampling as data: [`SamplingParams`] says how the next token is chosen, [`Sampler`] does it.
//!
//! The chain is llama.cpp's default order: penalties → top-k → top-p → min-p → temperature → softmax →
//! draw. [`Sampling::Greedy`] (or a temperature of 0) takes the most likely token after the penalties.
//! Settings are an enum, so only meaningful combinations can be written; [`SamplingParams::validate`]
//! checks the ranges. A sampler owns its seeded random state: the same seed and the same logits give the
//! same tokens.
//!
//! ```
//! use ferrite_engine::sampling::{Sampler, Sampling, SamplingParams};
//!
//! let params = SamplingParams { sampling: Sampling::llama_cpp(42), ..Default::default() };
//! params.validate().unwrap();
//! let mut sampler = Sampler::new(&params);
//! let token = sampler.sample(&[0.5, 2.0, -1.0], &[]);
//! assert!(token < 3);
//! ```

use std::cmp::Ordering;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How the next token is chosen from the (penalised) logits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token (lowest id on ties).
    #[default]
    Greedy,
    /// A random draw from the filtered, temperature-scaled distribution. A filter left out (`None`) keeps
    /// every token; a temperature of 0 is greedy.
    Random {
        temperature: f32,
        /// Keep the `k` most likely tokens.
        top_k: Option<usize>,
        /// Keep the fewest most likely tokens whose probabilities sum to at least `p`.
        top_p: Option<f32>,
        /// Keep the tokens at least `p` times as likely as the most likely one.
        min_p: Option<f32>,
        #[serde(default)]
        seed: u64,
    },
}

impl Sampling {
    /// llama.cpp's default sampler settings: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05.
    pub fn llama_cpp(seed: u64) -> Sampling {
        Sampling::Random { temperature: 0.8, top_k: Some(40), top_p: Some(0.95), min_p: Some(0.05), seed }
    }
}

/// Penalties on tokens seen among the last `repeat_last_n` of the prompt and output, applied before
/// sampling. The defaults are llama.cpp's: all off, a window of 64 tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Penalties {
    /// llama.cpp's repetition penalty: positive logits divided by it, the others multiplied (1 = off).
    pub repeat: f32,
    /// How many of the latest tokens the penalties look at (0 = off).
    pub repeat_last_n: usize,
    /// Subtracted once from every token that occurred (OpenAI's presence penalty; 0 = off).
    pub presence: f32,
    /// Subtracted once per occurrence (OpenAI's frequency penalty; 0 = off).
    pub frequency: f32,
}

impl Default for Penalties {
    fn default() -> Self {
        Penalties { repeat: 1.0, repeat_last_n: 64, presence: 0.0, frequency: 0.0 }
    }
}

impl Penalties {
    fn active(&self) -> bool {
        self.repeat_last_n > 0 && (self.repeat != 1.0 || self.presence != 0.0 || self.frequency != 0.0)
    }

    /// Penalise `logits` (one per token id) for the tokens among the last `repeat_last_n` of `history`,
    /// exactly as llama.cpp's penalties sampler: each distinct token once for `repeat` and `presence`,
    /// per occurrence for `frequency`. `window` is scratch space.
    fn apply(&self, logits: &mut [f32], history: &[u32], window: &mut Vec<u32>) {
        window.clear();
        window.extend_from_slice(&history[history.len().saturating_sub(self.repeat_last_n)..]);
        window.sort_unstable();
        for run in window.chunk_by(|a, b| a == b) {
            let Some(l) = logits.get_mut(run[0] as usize) else { continue };
            if *l <= 0.0 {
                *l *= self.repeat;
            } else {
                *l /= self.repeat;
            }
            *l -= run.len() as f32 * self.frequency + self.presence;
        }
    }
}

/// Sampling settings of one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub penalties: Penalties,
}

/// A sampling setting out of its valid range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid sampling setting {name} = {value}: expected {expected}")]
pub struct SamplingError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl SamplingParams {
    /// Greedy decoding, no penalties.
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Check every setting's range; a [`Sampler`] assumes valid settings.
    pub fn validate(&self) -> Result<(), SamplingError> {
        fn bad(name: &'static str, value: impl ToString, expected: &'static str) -> Result<(), SamplingError> {
            Err(SamplingError { name, value: value.to_string(), expected })
        }
        if let Sampling::Random { temperature, top_k, top_p, min_p, .. } = self.sampling {
            if !(temperature.is_finite() && temperature >= 0.0) {
                return bad("temperature", temperature, "a number ≥ 0 (0 is greedy)");
            }
            if top_k == Some(0) {
                return bad("top_k", 0, "at least 1 (leave it out to keep every token)");
            }
            if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
                return bad("top_p", p, "in (0, 1]");
            }
            if let Some(p) = min_p.filter(|p| !(*p >= 0.0 && *p <= 1.0)) {
                return bad("min_p", p, "in [0, 1]");
            }
        }
        let p = &self.penalties;
        if !(p.repeat.is_finite() && p.repeat > 0.0) {
            return bad("repeat_penalty", p.repeat, "a number > 0 (1 is off)");
        }
        for (name, v) in [("presence_penalty", p.presence), ("frequency_penalty", p.frequency)] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(name, v, "in [-2, 2]");
            }
        }
        Ok(())
    }
}

/// Chooses tokens according to [`SamplingParams`]; owns its random state and scratch buffers, so
/// sampling allocates nothing after the first call.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Scratch: the penalised logits, (vocab).
    penalised: Vec<f32>,
    /// Scratch: the penalty window, sorted to count occurrences.
    window: Vec<u32>,
    /// Scratch: (token, logit) of the tokens still in the running.
    cand: Vec<(u32, f32)>,
    /// Scratch: the unnormalised probability of each candidate, (cand).
    weights: Vec<f64>,
}

/// The filters of a random draw, with "off" settings already removed.
#[derive(Clone, Copy)]
struct Filters {
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
}

/// Descending logit, then ascending id: the order top-k and top-p walk.
fn by_logit_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Sampler {
        let seed = match params.sampling {
            Sampling::Random { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Sampler {
            params: params.clone(),
            rng: StdRng::seed_from_u64(seed),
            penalised: Vec::new(),
            window: Vec::new(),
            cand: Vec::new(),
            weights: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Choose the next token from `logits` (one per vocabulary entry, not empty), given `history`, the
    /// prompt and the tokens generated so far (for the penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        assert!(!logits.is_empty(), "sampling from an empty vocabulary");
        let logits = if self.params.penalties.active() {
            self.penalised.clear();
            self.penalised.extend_from_slice(logits);
            self.params.penalties.apply(&mut self.penalised, history, &mut self.window);
            &self.penalised[..]
        } else {
            logits
        };
        match self.params.sampling {
            Sampling::Random { temperature, top_k, top_p, min_p, .. } if temperature > 0.0 => {
                let filters = Filters {
                    top_k: top_k.filter(|&k| k < logits.len()),
                    top_p: top_p.filter(|&p| p < 1.0),
                    min_p: min_p.filter(|&p| p > 0.0),
                };
                let max = filter(&mut self.cand, logits, filters);
                if !max.is_finite() {
                    return argmax(logits); // every logit -inf, or one +inf: nothing to weigh
                }
                self.draw(max, temperature)
            }
            _ => argmax(logits),
        }
    }

    /// Temperature, softmax and the draw over the candidates: token i has weight exp((l_i − max) / T),
    /// and the first whose running sum of weights passes u·Σw with u uniform in [0, 1) is chosen.
    fn draw(&mut self, max: f32, temperature: f32) -> u32 {
        let inv_t = 1.0 / temperature;
        self.weights.clear();
        self.weights.extend(self.cand.iter().map(|c| (((c.1 - max) * inv_t) as f64).exp()));
        let total: f64 = self.weights.iter().sum();
        let u = self.rng.random::<f64>() * total;
        let mut acc = 0.0;
        for (c, w) in self.cand.iter().zip(&self.weights) {
            acc += w;
            if u < acc {
                return c.0;
            }
        }
        self.cand[self.cand.len() - 1].0
    }
}

/// Fill `cand` with the tokens that survive top-k, top-p and min-p, in no particular order, and return
/// the largest logit (which always survives).
///
/// Nothing is fully sorted: top-k is a partial selection, O(vocab). Top-p and min-p both measure
/// probabilities at temperature 1 over the top-k survivors and both keep a most likely prefix, so they
/// commute once top-p's normaliser is taken: min-p goes first, as a threshold pass that usually leaves
/// few tokens, and top-p sorts only what it must.
fn filter(cand: &mut Vec<(u32, f32)>, logits: &[f32], f: Filters) -> f32 {
    cand.clear();
    cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
    if let Some(k) = f.top_k {
        cand.select_nth_unstable_by(k - 1, by_logit_desc);
        cand.truncate(k);
    }
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let prob = |l: f32| ((l - max) as f64).exp(); // unnormalised
    let top_p_mass = f.top_p.map(|p| p as f64 * cand.iter().map(|c| prob(c.1)).sum::<f64>());
    if let Some(p) = f.min_p {
        cand.retain(|c| prob(c.1) >= p as f64);
    }
    if let Some(mass) = top_p_mass {
        let n = shortest_prefix_with_mass(cand, mass, prob);
        cand.truncate(n);
    }
    max
}

/// Arrange the most likely candidates first and return how many of them it takes for their unnormalised
/// probabilities (`prob`, decreasing in the logit) to reach `mass`: all of them if they never do.
///
/// A few candidates are simply sorted. Many (a whole vocabulary) are bucketed by logit first: one pass
/// sums each bucket's probability, the bucket where the running sum reaches `mass` is found, and only
/// that bucket is sorted.
fn shortest_prefix_with_mass(cand: &mut [(u32, f32)], mass: f64, prob: impl Fn(f32) -> f64) -> usize {
    const SORT_BELOW: usize = 1024;
    const BUCKETS: usize = 1024;
    /// Logits further than this below the maximum (probability < e^-40) share the last bucket.
    const SPAN: f32 = 40.0;
    let walk = |cand: &mut [(u32, f32)], mut acc: f64| {
        cand.sort_unstable_by(by_logit_desc);
        for (i, c) in cand.iter().enumerate() {
            acc += prob(c.1);
            if acc >= mass {
                return Some(i + 1);
            }
        }
        None
    };
    if cand.len() < SORT_BELOW {
        return walk(cand, 0.0).unwrap_or(cand.len());
    }
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let min = cand.iter().map(|c| c.1).fold(f32::INFINITY, f32::min).max(max - SPAN);
    let scale = BUCKETS as f32 / (max - min).max(f32::MIN_POSITIVE);
    // Bucket 0 holds the largest logits.
    let bucket = |l: f32| (((max - l) * scale) as usize).min(BUCKETS - 1);
    let mut bucket_mass = [0f64; BUCKETS];
    for c in cand.iter() {
        bucket_mass[bucket(c.1)] += prob(c.1);
    }
    let mut above = 0.0; // the mass of the buckets before the crossing one
    let mut crossing = BUCKETS - 1;
    for (b, m) in bucket_mass.iter().enumerate() {
        if above + m >= mass {
            crossing = b;
            break;
        }
        above += m;
    }
    // Partition: the buckets above the crossing one, then the crossing one, then the rest.
    let mut n_above = 0;
    for i in 0..cand.len() {
        if bucket(cand[i].1) < crossing {
            cand.swap(i, n_above);
            n_above += 1;
        }
    }
    let mut n_upto = n_above;
    for i in n_above..cand.len() {
        if bucket(cand[i].1) == crossing {
            cand.swap(i, n_upto);
            n_upto += 1;
        }
    }
    // The sums were taken in a different order than the walk's, so near the boundary the crossing
    // bucket may fall a hair short: then everything up to it is kept.
    walk(&mut cand[n_above..n_upto], above).map_or(n_upto, |n| n_above + n)
}

/// Index of the largest logit, lowest index on ties (llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, min_p: Option<f32>, seed: u64) -> SamplingParams {
        SamplingParams { sampling: Sampling::Random { temperature, top_k, top_p, min_p, seed }, penalties: Penalties::default() }
    }

    /// Deterministic pseudo-random logits in [-8, 8).
    fn test_logits(n: usize, salt: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(salt);
        (0..n).map(|_| rng.random::<f32>() * 16.0 - 8.0).collect()
    }

    fn survivors(logits: &[f32], top_k: Option<usize>, top_p: Option<f32>, min_p: Option<f32>) -> Vec<u32> {
        let mut cand = Vec::new();
        filter(&mut cand, logits, Filters { top_k, top_p, min_p });
        let mut ids: Vec<u32> = cand.iter().map(|c| c.0).collect();
        ids.sort_unstable();
        ids
    }

    /// The unoptimised twin of `filter`: sort everything, then walk the chain in llama.cpp's order.
    fn survivors_naive(logits: &[f32], top_k: Option<usize>, top_p: Option<f32>, min_p: Option<f32>) -> Vec<u32> {
        let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        c.sort_by(by_logit_desc);
        c.truncate(top_k.unwrap_or(c.len()));
        let max = c[0].1 as f64;
        let z: f64 = c.iter().map(|x| (x.1 as f64 - max).exp()).sum();
        if let Some(p) = top_p {
            let mut acc = 0.0;
            let n = c.iter().position(|x| {
                acc += (x.1 as f64 - max).exp() / z;
                acc >= p as f64
            });
            c.truncate(n.map_or(c.len(), |n| n + 1));
        }
        if let Some(p) = min_p {
            c.retain(|x| (x.1 as f64 - max).exp() >= p as f64);
        }
        let mut ids: Vec<u32> = c.iter().map(|x| x.0).collect();
        ids.sort_unstable();
        ids
    }

    fn softmax(logits: &[f32], temperature: f32) -> Vec<f64> {
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let e: Vec<f64> = logits.iter().map(|&l| ((l as f64 - max) / temperature as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    fn frequencies(params: &SamplingParams, logits: &[f32], draws: usize) -> Vec<f64> {
        let mut s = Sampler::new(params);
        let mut f = vec![0.0; logits.len()];
        for _ in 0..draws {
            f[s.sample(logits, &[]) as usize] += 1.0 / draws as f64;
        }
        f
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut s = Sampler::new(&SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0], &[]), 1);
        assert_eq!(s.sample(&[-5.0, -4.0], &[]), 1);
        assert_eq!(s.sample(&[f32::NEG_INFINITY, f32::NEG_INFINITY], &[]), 0);
    }

    #[test]
    fn temperature_zero_is_greedy() {
        let logits = test_logits(1000, 1);
        let params = random(0.0, Some(50), Some(0.9), None, 9);
        params.validate().unwrap();
        let mut s = Sampler::new(&params);
        for _ in 0..10 {
            assert_eq!(s.sample(&logits, &[]), argmax(&logits));
        }
    }

    #[test]
    fn penalties_change_logits_exactly() {
        let p = Penalties { repeat: 2.0, repeat_last_n: 3, presence: 0.5, frequency: 0.25 };
        let mut l = vec![4.0, -4.0, 1.0, 1.0, 0.0];
        // Token 0 is outside the window; 1 occurs twice, 2 once; 9 is not in the vocabulary.
        p.apply(&mut l, &[0, 1, 2, 1], &mut Vec::new());
        assert_eq!(l, vec![4.0, -8.0 - 2.0 * 0.25 - 0.5, 0.5 - 0.25 - 0.5, 1.0, 0.0]);
        let mut l = vec![4.0, 0.0];
        Penalties { repeat: 2.0, repeat_last_n: 64, ..Default::default() }.apply(&mut l, &[1, 9], &mut Vec::new());
        assert_eq!(l, vec![4.0, 0.0]);
        // Greedy sees the penalised logits.
        let params = SamplingParams { sampling: Sampling::Greedy, penalties: Penalties { repeat: 10.0, ..Default::default() } };
        assert_eq!(Sampler::new(&params).sample(&[5.0, 4.0], &[0]), 1);
        // repeat_last_n = 0 turns the penalties off.
        let params = SamplingParams { sampling: Sampling::Greedy, penalties: Penalties { repeat: 10.0, repeat_last_n: 0, ..Default::default() } };
        assert_eq!(Sampler::new(&params).sample(&[5.0, 4.0], &[0]), 0);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits = test_logits(5000, 2);
        let mut s = Sampler::new(&random(1.5, Some(1), None, None, 7));
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), argmax(&logits));
        }
    }

    #[test]
    fn top_k_keeps_the_k_largest() {
        assert_eq!(survivors(&[0.0, 3.0, 1.0, 2.0, -1.0], Some(2), None, None), vec![1, 3]);
    }

    #[test]
    fn top_p_keeps_the_minimal_prefix() {
        // Probabilities 0.5, 0.25, 0.125, 0.125.
        let logits = [3.0 * 2f32.ln(), 2.0 * 2f32.ln(), 2f32.ln(), 2f32.ln()];
        assert_eq!(survivors(&logits, None, Some(0.5), None), vec![0]);
        assert_eq!(survivors(&logits, None, Some(0.7), None), vec![0, 1]);
        assert_eq!(survivors(&logits, None, Some(0.75), None), vec![0, 1], "0.5 + 0.25 reaches 0.75");
        assert_eq!(survivors(&logits, None, Some(0.8), None), vec![0, 1, 2]);
        // Measured over the top-k survivors: of 0.5, 0.25 renormalised, 0.5 / 0.75 reaches 0.6.
        assert_eq!(survivors(&logits, Some(2), Some(0.6), None), vec![0]);
    }

    #[test]
    fn min_p_drops_tokens_below_p_times_the_max() {
        let logits = [3.0 * 2f32.ln(), 2.0 * 2f32.ln(), 2f32.ln(), 0.0];
        // Relative probabilities 1, 1/2, 1/4, 1/8.
        assert_eq!(survivors(&logits, None, None, Some(0.3)), vec![0, 1]);
        assert_eq!(survivors(&logits, None, None, Some(0.2)), vec![0, 1, 2]);
        assert_eq!(survivors(&logits, None, None, Some(1.0)), vec![0]);
    }

    #[test]
    fn filters_agree_with_the_naive_chain_on_a_large_vocabulary() {
        let logits = test_logits(50_000, 3);
        for (k, p, m) in [
            (None, Some(0.9), None),
            (None, Some(0.999), None),
            (Some(40), Some(0.95), Some(0.05)),
            (Some(5000), Some(0.5), None),
            (None, Some(0.95), Some(0.001)),
            (None, None, Some(0.01)),
            (Some(100), None, None),
        ] {
            assert_eq!(survivors(&logits, k, p, m), survivors_naive(&logits, k, p, m), "top_k {k:?} top_p {p:?} min_p {m:?}");
        }
        // Many ties, and tokens that can never be drawn.
        let mut logits: Vec<f32> = test_logits(5000, 4).iter().map(|l| l.round()).collect();
        logits[..100].fill(f32::NEG_INFINITY);
        for (k, p, m) in [(None, Some(0.9), None), (None, Some(0.3), None), (Some(2000), Some(0.99), Some(0.0001))] {
            assert_eq!(survivors(&logits, k, p, m), survivors_naive(&logits, k, p, m), "top_k {k:?} top_p {p:?} min_p {m:?}");
        }
    }

    #[test]
    fn draws_follow_the_softmax() {
        let logits = [0.0f32, 1.0, 2.0, -1.0, 0.5];
        for t in [1.0, 0.5] {
            let want = softmax(&logits, t);
            let got = frequencies(&random(t, None, None, None, 42), &logits, 40_000);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 0.01, "temperature {t}: {got:?} vs {want:?}");
            }
        }
        // After top-k 3 the draw follows the softmax of the three survivors.
        let want = softmax(&[f32::NEG_INFINITY, 1.0, 2.0, f32::NEG_INFINITY, 0.5], 1.0);
        let got = frequencies(&random(1.0, Some(3), None, None, 5), &[0.0, 1.0, 2.0, -1.0, 0.5], 40_000);
        assert_eq!(got[0] + got[3], 0.0);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 0.01, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(&random(1.0, None, None, None, seed));
            (0..12).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        // Pinned: a change here means a seed no longer reproduces what it did (the draw or rand's StdRng changed).
        assert_eq!(run(3), [3, 17, 5, 20, 7, 19, 18, 29, 21, 44, 22, 23]);
    }

    #[test]
    fn validation() {
        assert!(random(-0.1, None, None, None, 0).validate().is_err());
        assert!(random(f32::NAN, None, None, None, 0).validate().is_err());
        assert!(random(0.0, None, None, None, 0).validate().is_ok());
        assert!(random(1.0, Some(0), None, None, 0).validate().is_err());
        assert!(random(1.0, None, Some(0.0), None, 0).validate().is_err());
        assert!(random(1.0, None, Some(1.5), None, 0).validate().is_err());
        assert!(random(1.0, None, None, Some(-0.1), 0).validate().is_err());
        let mut p = SamplingParams { sampling: Sampling::llama_cpp(0), ..Default::default() };
        assert!(p.validate().is_ok());
        p.penalties.presence = 3.0;
        assert_eq!(p.validate().unwrap_err().name, "presence_penalty");
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let p = SamplingParams { sampling: Sampling::llama_cpp(7), penalties: Penalties { repeat: 1.1, ..Default::default() } };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SamplingParams>(&json).unwrap(), p);
        assert_eq!(serde_json::from_str::<SamplingParams>("{}").unwrap(), SamplingParams::greedy());
        let p: SamplingParams = serde_json::from_str(r#"{"sampling": {"mode": "random", "temperature": 0.7, "top_p": 0.9}, "penalties": {"repeat": 1.2}}"#).unwrap();
        assert_eq!(p.sampling, Sampling::Random { temperature: 0.7, top_k: None, top_p: Some(0.9), min_p: None, seed: 0 });
        assert_eq!(p.penalties, Penalties { repeat: 1.2, repeat_last_n: 64, presence: 0.0, frequency: 0.0 });
    }
}
