//! Chat templates rendered by minijinja must equal Python jinja2's rendering as Hugging Face's
//! `apply_chat_template` does it, byte for byte (fixtures: scripts/reference/chat_fixtures.py).

use ferrite_engine::chat::ChatTemplate;
use serde_json::Value;

/// 2026-11-28 00:00 UTC, the date the fixture's strftime_now reports.
const FIXTURE_TIME: u64 = 1_795_824_000;

#[test]
fn templates_render_like_hugging_face() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut failures = Vec::new();
    let cases = fx["cases"].as_array().unwrap();
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let t = &fx["templates"][name];
        let label = format!("{name}/{}/gen={}/tools={}", case["conversation"], case["add_generation_prompt"], !case["tools"].is_null());
        let tmpl = ChatTemplate::new(t["source"].as_str().unwrap(), t["bos_token"].as_str().unwrap(), t["eos_token"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
            .with_fixed_time(FIXTURE_TIME);
        let messages = case["messages"].as_array().unwrap();
        let tools = (!case["tools"].is_null()).then_some(&case["tools"]);
        let got = tmpl.render(messages, case["add_generation_prompt"].as_bool().unwrap(), tools);
        match (&got, case.get("expected"), case.get("error")) {
            (Ok(s), Some(want), _) if s == want.as_str().unwrap() => {}
            (Err(e), _, Some(want)) if e.to_string().contains(want.as_str().unwrap()) => {}
            _ => failures.push(format!("{label}:\n got: {got:?}\nwant: {}", case.get("expected").or(case.get("error")).unwrap())),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
