//! The serving engine on a real model: concurrent requests give what each gives alone, prefixes are
//! reused, a pool too small for the load preempts instead of failing, cancelled requests free their
//! blocks, and bad requests are refused before they queue.

use std::time::{Duration, Instant};

use ferrite_engine::sampling::SamplingParams;
use ferrite_engine::serving::{Engine, EngineConfig, Event, Request, SubmitError, Usage};
use ferrite_engine::{generate, FinishReason, GenerateRequest, LoadedModel};
use tokio::sync::mpsc::UnboundedReceiver;

fn load() -> Option<LoadedModel> {
    let path = ferrite_testdata::model(ferrite_testdata::SMOLLM2)?;
    Some(LoadedModel::open(path, &mut |_, _| {}).unwrap())
}

fn config(kv_blocks: usize) -> EngineConfig {
    EngineConfig { ctx: 512, max_seqs: 8, max_queue: 64, step_tokens: 512, prefill_while_decoding: 32, kv_blocks }
}

fn request(lm: &LoadedModel, text: &str, max_tokens: usize) -> Request {
    Request { prompt: lm.tokenize_prompt(text), max_tokens, sampling: SamplingParams::greedy(), stop: vec![], logprobs: None }
}

/// Token ids, text, finish reason and usage of a finished request.
fn wait(mut rx: UnboundedReceiver<Event>) -> (Vec<u32>, String, FinishReason, Usage) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    loop {
        match rx.blocking_recv().expect("the engine ends every request with Done or Error") {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Done { finish, usage, tail } => {
                text.push_str(&tail);
                return (ids, text, finish, usage);
            }
            Event::Error(e) => panic!("engine error: {e}"),
        }
    }
}

/// What `generate` (the `ferrite run` path) produces for the same request, alone with a fresh cache.
fn alone(lm: &LoadedModel, req: &Request) -> (Vec<u32>, String) {
    let mut cache = lm.model.new_cache(512);
    let greq = GenerateRequest { prompt: req.prompt.clone(), max_tokens: req.max_tokens, sampling: req.sampling.clone(), stop: req.stop.clone() };
    let mut text = String::new();
    let stats = generate(lm, &mut cache, &mut Vec::new(), &greq, &mut |t| text.push_str(t)).unwrap();
    (stats.tokens, text)
}

fn prompts() -> Vec<String> {
    let topics = ["the sea", "a red fox", "prime numbers", "bread", "the moon", "a quiet library"];
    topics.iter().enumerate().map(|(i, t)| format!("Write {} short sentences about {t}.{}", i + 2, " Be vivid.".repeat(i * 9))).collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn concurrent_requests_give_what_each_gives_alone() {
    let Some(lm) = load() else { return };
    let engine = Engine::start(&lm, config(256), Box::new(|_| {}));
    let h = engine.handle();
    let reqs: Vec<Request> = prompts().iter().map(|p| request(&lm, p, 24)).collect();
    // Prompts of 14 to 100+ tokens: some prefill in one chunk below 64, some above, while others decode.
    let rxs: Vec<_> = reqs.iter().map(|r| h.submit(r.clone()).unwrap()).collect();
    let got: Vec<_> = rxs.into_iter().map(wait).collect();
    for (req, (ids, text, finish, usage)) in reqs.iter().zip(&got) {
        let (want_ids, want_text) = alone(&lm, req);
        assert_eq!(ids, &want_ids);
        assert_eq!(text, &want_text);
        assert_eq!(usage.prompt_tokens, req.prompt.len());
        assert_eq!(usage.completion_tokens, ids.len());
        assert_eq!(*finish == FinishReason::Length, ids.len() == 24);
    }
    wait_until("all blocks are released", || h.stats().kv_blocks_used.load(std::sync::atomic::Ordering::SeqCst) == 0);
    engine.join();
}

/// Pieces of a prompt placed in its batch give `ferrite run`'s output whatever the step budget: 33 tokens
/// a step, so a 100-token prompt alone is computed as 33 + 33 + 33 + 1, and prompts sent together are
/// split into whatever the decoding sequences leave of each step.
#[test]
fn small_steps_split_prompts_without_changing_the_output() {
    let Some(lm) = load() else { return };
    let engine = Engine::start(&lm, EngineConfig { step_tokens: 33, prefill_while_decoding: 33, ..config(256) }, Box::new(|_| {}));
    let h = engine.handle();
    let mut tail = request(&lm, &"Tell me about the sea. ".repeat(30), 12);
    tail.prompt.truncate(100);
    let reqs: Vec<Request> = prompts().iter().map(|p| request(&lm, p, 12)).collect();
    for batch in [vec![tail], reqs] {
        let rxs: Vec<_> = batch.iter().map(|r| h.submit(r.clone()).unwrap()).collect();
        for (req, (ids, text, _, _)) in batch.iter().zip(rxs.into_iter().map(wait)) {
            let (want_ids, want_text) = alone(&lm, req);
            assert_eq!((ids, text), (want_ids, want_text), "prompt of {} tokens", req.prompt.len());
        }
    }
    engine.join();
}

#[test]
fn a_shared_prefix_is_reused_and_gives_the_same_output() {
    let Some(lm) = load() else { return };
    let engine = Engine::start(&lm, config(256), Box::new(|_| {}));
    let h = engine.handle();
    let prefix = "You are a careful assistant. ".repeat(45);
    let a = request(&lm, &format!("{prefix}Name a colour."), 8);
    let b = request(&lm, &format!("{prefix}Name an animal that lives in the sea."), 8);
    assert!(a.prompt.len() > 200);
    let (_, _, _, ua) = wait(h.submit(a.clone()).unwrap());
    assert_eq!(ua.cached_tokens, 0);
    let (ids, _, _, ub) = wait(h.submit(b.clone()).unwrap());
    let common = a.prompt.iter().zip(&b.prompt).take_while(|(x, y)| x == y).count();
    // Whole blocks of the common prefix are reused, leaving at least 64 tokens to compute.
    assert!(ub.cached_tokens >= common.min(b.prompt.len() - 64) / 16 * 16 - 16 && ub.cached_tokens > 0, "{ub:?}, common {common}");
    assert_eq!(ub.cached_tokens % 16, 0);
    assert_eq!(ids, alone(&lm, &b).0, "reuse does not change the output");
    // The same request again reuses everything but its last 64+ tokens.
    let (ids2, _, _, ub2) = wait(h.submit(b.clone()).unwrap());
    assert_eq!(ub2.cached_tokens, (b.prompt.len() - 64) / 16 * 16);
    assert_eq!(ids2, ids);
    let stats = h.stats();
    assert!(stats.cached_prompt_tokens.load(std::sync::atomic::Ordering::SeqCst) >= (ub.cached_tokens + ub2.cached_tokens) as u64);
    engine.join();
}

#[test]
fn a_pool_too_small_for_the_load_preempts_and_every_request_completes() {
    let Some(lm) = load() else { return };
    // 20 blocks = 320 positions for 6 sequences that grow to ~100 positions each.
    let engine = Engine::start(&lm, EngineConfig { ctx: 200, ..config(20) }, Box::new(|_| {}));
    let h = engine.handle();
    let reqs: Vec<Request> = prompts().iter().take(6).map(|p| request(&lm, &p[..p.len().min(120)], 64)).collect();
    let rxs: Vec<_> = reqs.iter().map(|r| h.submit(r.clone()).unwrap()).collect();
    for (req, (ids, _, finish, usage)) in reqs.iter().zip(rxs.into_iter().map(wait)) {
        assert!(finish == FinishReason::Eog || ids.len() == 64, "{finish:?} after {} tokens", ids.len());
        assert_eq!(usage.prompt_tokens, req.prompt.len());
    }
    let st = h.stats();
    assert!(st.preemptions.load(std::sync::atomic::Ordering::SeqCst) > 0, "the load should not have fit");
    wait_until("all blocks are released", || st.kv_blocks_used.load(std::sync::atomic::Ordering::SeqCst) == 0);
    engine.join();
}

#[test]
fn a_cancelled_request_frees_its_blocks() {
    let Some(lm) = load() else { return };
    let engine = Engine::start(&lm, config(64), Box::new(|_| {}));
    let h = engine.handle();
    let mut rx = h.submit(request(&lm, "Count: 1, 2, 3, 4, 5, 6, 7,", 400)).unwrap();
    for _ in 0..3 {
        let ev = rx.blocking_recv();
        assert!(matches!(ev, Some(Event::Token { .. })), "{ev:?}");
    }
    let st = h.stats();
    assert!(st.kv_blocks_used.load(std::sync::atomic::Ordering::SeqCst) > 0);
    drop(rx);
    wait_until("the sequence is gone", || {
        st.running.load(std::sync::atomic::Ordering::SeqCst) == 0 && st.kv_blocks_used.load(std::sync::atomic::Ordering::SeqCst) == 0
    });
    assert!(st.generated_tokens.load(std::sync::atomic::Ordering::SeqCst) < 400);
    engine.join();
}

#[test]
fn bad_requests_are_refused_before_queueing() {
    let Some(lm) = load() else { return };
    let engine = Engine::start(&lm, EngineConfig { max_queue: 2, ..config(64) }, Box::new(|_| {}));
    let h = engine.handle();
    let long = Request { prompt: vec![1; 500], ..request(&lm, "x", 13) };
    assert_eq!(h.submit(long).unwrap_err(), SubmitError::ContextExceeded { prompt: 500, max_tokens: 13, ctx: 512 });
    assert!(h.submit(request(&lm, "x", 0)).is_err());
    assert_eq!(h.submit(Request { prompt: vec![], ..request(&lm, "x", 4) }).unwrap_err(), SubmitError::EmptyPrompt);
    engine.join();

    // The queue bound: one sequence at a time, one waiting; a third request is refused.
    let engine = Engine::start(&lm, EngineConfig { max_seqs: 1, max_queue: 1, ..config(64) }, Box::new(|_| {}));
    let h = engine.handle();
    let mut first = h.submit(request(&lm, "Count: 1, 2, 3, 4, 5, 6, 7,", 200)).unwrap();
    assert!(matches!(first.blocking_recv(), Some(Event::Token { .. })), "running");
    let second = h.submit(request(&lm, "hello", 4)).unwrap();
    assert!(matches!(h.submit(request(&lm, "hello", 4)), Err(SubmitError::QueueFull { waiting: 1 })));
    drop(first);
    let (ids, _, _, _) = wait(second);
    assert!(!ids.is_empty());
    engine.handle().shutdown();
    assert_eq!(h.submit(request(&lm, "hello", 4)).unwrap_err(), SubmitError::ShuttingDown);
    engine.join();
}
