//! Sampling as data: [`SamplingParams`] says how the next token is chosen, [`Sampler`] does it.
//!
//! The chain is llama.cpp's default order: penalties → top-k → top-p → min-p → temperature → draw.
//! Greedy decoding is its own variant, so only meaningful combinations can be written. A seeded sampler
//! is reproducible: the same seed and the same logits give the same tokens.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How the next token is chosen from the (penalised) logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token (lowest id on ties).
    Greedy,
    /// A random draw from the filtered, temperature-scaled distribution.
    Random {
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        min_p: Option<f32>,
        seed: u64,
    },
}

/// Penalties on tokens already seen (in the prompt and the output), applied before sampling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Penalties {
    /// llama.cpp's repetition penalty: positive logits divided by it, negative ones multiplied (1 = off).
    pub repeat: f32,
    /// How many of the latest tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted once from every token that occurred (OpenAI's presence penalty).
    pub presence: f32,
    /// Subtracted per occurrence (OpenAI's frequency penalty).
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
}

/// Sampling settings of one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub sampling: Sampling,
    #[serde(default)]
    pub penalties: Penalties,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { sampling: Sampling::Greedy, penalties: Penalties::default() }
    }
}

/// A sampling setting out of its valid range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid sampling setting {name} = {value}: {expected}")]
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

    pub fn validate(&self) -> Result<(), SamplingError> {
        let bad = |name, value: String, expected| Err(SamplingError { name, value, expected });
        if let Sampling::Random { temperature, top_k, top_p, min_p, .. } = &self.sampling {
            if !(temperature.is_finite() && *temperature > 0.0) {
                return bad("temperature", temperature.to_string(), "a positive number (0 means greedy)");
            }
            if *top_k == Some(0) {
                return bad("top_k", "0".into(), "at least 1 (omit it to keep every token)");
            }
            if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
                return bad("top_p", p.to_string(), "in (0, 1]");
            }
            if let Some(p) = min_p.filter(|p| !(*p >= 0.0 && *p <= 1.0)) {
                return bad("min_p", p.to_string(), "in [0, 1]");
            }
        }
        let p = &self.penalties;
        if !(p.repeat.is_finite() && p.repeat > 0.0) {
            return bad("repeat_penalty", p.repeat.to_string(), "a positive number (1 = off)");
        }
        for (name, v) in [("presence_penalty", p.presence), ("frequency_penalty", p.frequency)] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(name, v.to_string(), "in [-2, 2]");
            }
        }
        Ok(())
    }
}

/// Chooses tokens according to [`SamplingParams`]; owns its random state.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Scratch: (token, logit) candidates.
    cand: Vec<(u32, f32)>,
    /// Scratch: penalised logits.
    work: Vec<f32>,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Sampler {
        let seed = match params.sampling {
            Sampling::Random { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Sampler { params: params.clone(), rng: StdRng::seed_from_u64(seed), cand: Vec::new(), work: Vec::new() }
    }

    /// Choose the next token from `logits` (one per vocabulary entry), given the tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let logits = if self.params.penalties.active() {
            self.work.clear();
            self.work.extend_from_slice(logits);
            apply_penalties(&mut self.work, history, &self.params.penalties);
            &self.work[..]
        } else {
            logits
        };
        match self.params.sampling {
            Sampling::Greedy => argmax(logits),
            Sampling::Random { temperature, top_k, top_p, min_p, .. } => {
                let cand = &mut self.cand;
                cand.clear();
                cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
                let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                // top-k: partial selection, then sort only the survivors.
                if let Some(k) = top_k.filter(|&k| k < cand.len()) {
                    cand.select_nth_unstable_by(k - 1, by_logit);
                    cand.truncate(k);
                }
                cand.sort_unstable_by(by_logit);
                let probs = softmax(cand.iter().map(|c| c.1));
                // top-p: the shortest prefix whose probability reaches p (at least one token).
                let mut keep = cand.len();
                if let Some(p) = top_p.filter(|&p| p < 1.0) {
                    let mut acc = 0.0;
                    for (i, q) in probs.iter().enumerate() {
                        acc += q;
                        if acc >= p as f64 {
                            keep = i + 1;
                            break;
                        }
                    }
                }
                // min-p: drop tokens less likely than p × the most likely one.
                if let Some(p) = min_p.filter(|&p| p > 0.0) {
                    let floor = probs[0] * p as f64;
                    keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
                }
                cand.truncate(keep);
                let probs = softmax(cand.iter().map(|c| c.1 / temperature));
                let r: f64 = self.rng.random();
                let mut acc = 0.0;
                for (c, q) in cand.iter().zip(&probs) {
                    acc += q;
                    if r < acc {
                        return c.0;
                    }
                }
                cand[cand.len() - 1].0
            }
        }
    }
}

/// Index of the largest logit, lowest index on ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(xs: impl Iterator<Item = f32> + Clone) -> Vec<f64> {
    let max = xs.clone().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = xs.map(|x| (x as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Repetition, presence and frequency penalties over the last `repeat_last_n` tokens, as llama.cpp
/// applies them: each distinct token once for repeat and presence, per occurrence for frequency.
fn apply_penalties(logits: &mut [f32], history: &[u32], p: &Penalties) {
    let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
    let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for &t in recent {
        *counts.entry(t).or_default() += 1;
    }
    for (&t, &n) in &counts {
        let Some(l) = logits.get_mut(t as usize) else { continue };
        if *l > 0.0 {
            *l /= p.repeat;
        } else {
            *l *= p.repeat;
        }
        *l -= n as f32 * p.frequency + p.presence;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, min_p: Option<f32>, seed: u64) -> SamplingParams {
        SamplingParams { sampling: Sampling::Random { temperature, top_k, top_p, min_p, seed }, penalties: Penalties::default() }
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut s = Sampler::new(&SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0], &[]), 1);
        assert_eq!(s.sample(&[-5.0, -4.0], &[]), 1);
    }

    #[test]
    fn penalties_change_logits_exactly() {
        let p = Penalties { repeat: 2.0, repeat_last_n: 3, presence: 0.5, frequency: 0.25 };
        let mut l = vec![4.0, -4.0, 1.0, 1.0];
        // Token 0 is outside the window; 1 occurs twice, 2 once.
        apply_penalties(&mut l, &[0, 1, 2, 1], &p);
        assert_eq!(l, vec![4.0, -8.0 - 0.5 - 0.5, 0.5 - 0.25 - 0.5, 1.0]);
        // Greedy sees the penalised logits.
        let params = SamplingParams { sampling: Sampling::Greedy, penalties: Penalties { repeat: 10.0, ..Default::default() } };
        assert_eq!(Sampler::new(&params).sample(&[5.0, 4.0], &[0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 101) as f32 * 0.1).collect();
        let mut s = Sampler::new(&random(1.5, Some(1), None, None, 7));
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), argmax(&logits));
        }
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
    fn top_p_keeps_the_minimal_prefix_and_min_p_drops_the_tail() {
        // probabilities 0.5, 0.25, 0.125, 0.125
        let logits = [2f32.ln() * 3.0, 2f32.ln() * 2.0, 2f32.ln(), 2f32.ln()];
        let f = frequencies(&random(1.0, None, Some(0.7), None, 1), &logits, 4000);
        assert!(f[2] == 0.0 && f[3] == 0.0 && f[0] > 0.0 && f[1] > 0.0, "{f:?}");
        let f = frequencies(&random(1.0, None, Some(0.75), None, 1), &logits, 4000);
        assert!(f[2] == 0.0 && f[3] == 0.0, "0.5 + 0.25 reaches 0.75: {f:?}");
        let f = frequencies(&random(1.0, None, None, Some(0.3), 1), &logits, 4000);
        assert!(f[2] == 0.0 && f[3] == 0.0 && f[1] > 0.0, "0.125 < 0.3 × 0.5: {f:?}");
    }

    #[test]
    fn draws_follow_the_softmax() {
        let logits = [0.0f32, 1.0, 2.0, -1.0, 0.5];
        let expect = softmax(logits.iter().copied());
        let f = frequencies(&random(1.0, None, None, None, 42), &logits, 40000);
        for (a, b) in f.iter().zip(&expect) {
            assert!((a - b).abs() < 0.01, "{f:?} vs {expect:?}");
        }
        // Temperature 0.5 sharpens: the distribution of logits / 0.5.
        let sharp = softmax(logits.iter().map(|l| l / 0.5));
        let f = frequencies(&random(0.5, None, None, None, 42), &logits, 40000);
        for (a, b) in f.iter().zip(&sharp) {
            assert!((a - b).abs() < 0.01, "{f:?} vs {sharp:?}");
        }
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(&random(1.0, None, None, None, seed));
            (0..32).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn validation() {
        assert!(random(0.0, None, None, None, 0).validate().is_err());
        assert!(random(1.0, Some(0), None, None, 0).validate().is_err());
        assert!(random(1.0, None, Some(1.5), None, 0).validate().is_err());
        assert!(random(1.0, None, None, Some(-0.1), 0).validate().is_err());
        assert!(random(0.7, Some(40), Some(0.9), Some(0.05), 0).validate().is_ok());
        let mut p = SamplingParams::greedy();
        p.penalties.presence = 3.0;
        assert_eq!(p.validate().unwrap_err().name, "presence_penalty");
    }
}
