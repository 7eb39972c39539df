//! Prometheus metrics in the text exposition format: the server's request counters and latency
//! histograms, and the engine's live counters (queue, sequences, KV blocks, prefix cache).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use ferrite_engine::serving::{EngineStats, StepReport};

/// A histogram with fixed upper bounds (the `+Inf` bucket is implied).
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistState>,
}

#[derive(Default)]
struct HistState {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, state: Mutex::new(HistState { counts: vec![0; bounds.len()], ..Default::default() }) }
    }

    pub fn observe(&self, v: f64) {
        let mut s = self.state.lock().expect("metrics lock");
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            s.counts[i] += 1;
        }
        s.sum += v;
        s.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().expect("metrics lock");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&s.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", s.count, s.sum, s.count);
    }
}

const LATENCY: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const DURATION: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0];
const SEQS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
const TOKENS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0];

/// The server's metrics.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub duration: Histogram,
    batch_sequences: Histogram,
    batch_tokens: Histogram,
    /// Tokens run through the embedding model.
    pub embedding_tokens: std::sync::atomic::AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            ttft: Histogram::new(LATENCY),
            itl: Histogram::new(LATENCY),
            duration: Histogram::new(DURATION),
            batch_sequences: Histogram::new(SEQS),
            batch_tokens: Histogram::new(TOKENS),
            embedding_tokens: Default::default(),
        }
    }
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        *self.requests.lock().expect("metrics lock").entry((endpoint, status)).or_default() += 1;
    }

    pub fn step(&self, r: &StepReport) {
        self.batch_sequences.observe(r.sequences as f64);
        self.batch_tokens.observe(r.tokens as f64);
    }

    pub fn latency(h: &Histogram, d: Duration) {
        h.observe(d.as_secs_f64());
    }

    /// Everything, in Prometheus text format; the engine's counters when it is loaded.
    pub fn render(&self, engine: Option<&EngineStats>) -> String {
        let mut out = String::new();
        out.push_str("# HELP ferrite_requests_total Finished HTTP requests to /v1 endpoints.\n# TYPE ferrite_requests_total counter\n");
        for ((endpoint, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "ferrite_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
        self.ttft.render(&mut out, "ferrite_time_to_first_token_seconds", "Request arrival to its first generated token.");
        self.itl.render(&mut out, "ferrite_inter_token_latency_seconds", "Time between consecutive generated tokens of a request.");
        self.duration.render(&mut out, "ferrite_request_duration_seconds", "Request arrival to its end.");
        self.batch_sequences.render(&mut out, "ferrite_batch_sequences", "Sequences per engine step.");
        self.batch_tokens.render(&mut out, "ferrite_batch_tokens", "Tokens per engine step.");
        let _ = writeln!(
            out,
            "# HELP ferrite_embedding_tokens_total Tokens run through the embedding model.\n# TYPE ferrite_embedding_tokens_total counter\nferrite_embedding_tokens_total {}",
            self.embedding_tokens.load(Ordering::Relaxed)
        );
        if let Some(s) = engine {
            let get = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
            let get64 = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let (total, used, cached) = (get(&s.kv_blocks_total), get(&s.kv_blocks_used), get(&s.kv_blocks_cached));
            let (prompt, hit) = (get64(&s.prompt_tokens), get64(&s.cached_prompt_tokens));
            let rate = if prompt == 0 { 0.0 } else { hit as f64 / prompt as f64 };
            let rows: [(&str, &str, &str, String); 12] = [
                ("ferrite_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", prompt.to_string()),
                ("ferrite_prompt_tokens_cached_total", "counter", "Prompt tokens served from the prefix cache.", hit.to_string()),
                ("ferrite_generated_tokens_total", "counter", "Generated tokens.", get64(&s.generated_tokens).to_string()),
                ("ferrite_preemptions_total", "counter", "Sequences preempted for lack of KV memory.", get64(&s.preemptions).to_string()),
                ("ferrite_queue_depth", "gauge", "Requests waiting for admission.", get(&s.waiting).to_string()),
                ("ferrite_running_sequences", "gauge", "Sequences holding KV blocks.", get(&s.running).to_string()),
                ("ferrite_kv_blocks_total", "gauge", "Blocks in the KV pool.", total.to_string()),
                ("ferrite_kv_blocks_used", "gauge", "KV blocks referenced by running sequences.", used.to_string()),
                ("ferrite_kv_blocks_cached", "gauge", "Unreferenced KV blocks kept for prefix reuse.", cached.to_string()),
                ("ferrite_kv_blocks_free", "gauge", "KV blocks not referenced (includes cached).", (total - used).to_string()),
                ("ferrite_prefix_cache_hit_rate", "gauge", "Cached prompt tokens / prompt tokens.", format!("{rate}")),
                ("ferrite_up", "gauge", "1 once the model is loaded.", "1".into()),
            ];
            for (name, kind, help, v) in rows {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_the_text_parses() {
        let m = Metrics::default();
        for v in [0.001, 0.02, 0.02, 100.0] {
            m.ttft.observe(v);
        }
        m.request("chat", 200);
        m.request("chat", 200);
        m.request("chat", 400);
        let stats = EngineStats::default();
        stats.kv_blocks_total.store(10, Ordering::Relaxed);
        stats.kv_blocks_used.store(3, Ordering::Relaxed);
        stats.prompt_tokens.store(200, Ordering::Relaxed);
        stats.cached_prompt_tokens.store(50, Ordering::Relaxed);
        let text = m.render(Some(&stats));
        let value = |series: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' ')).unwrap_or_else(|| panic!("{series} missing"));
            line[series.len() + 1..].parse().unwrap()
        };
        assert_eq!(value("ferrite_time_to_first_token_seconds_bucket{le=\"0.005\"}"), 1.0);
        assert_eq!(value("ferrite_time_to_first_token_seconds_bucket{le=\"0.025\"}"), 3.0);
        assert_eq!(value("ferrite_time_to_first_token_seconds_bucket{le=\"60\"}"), 3.0);
        assert_eq!(value("ferrite_time_to_first_token_seconds_bucket{le=\"+Inf\"}"), 4.0);
        assert_eq!(value("ferrite_time_to_first_token_seconds_count"), 4.0);
        assert_eq!(value("ferrite_requests_total{endpoint=\"chat\",status=\"200\"}"), 2.0);
        assert_eq!(value("ferrite_kv_blocks_free"), 7.0);
        assert_eq!(value("ferrite_prefix_cache_hit_rate"), 0.25);
        // Every sample line is `name{labels} number` or `name number`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
