//! Chat templates rendered by minijinja must equal what Hugging Face's `apply_chat_template` renders with
//! Python's jinja2, byte for byte, and fail where it fails (fixtures: scripts/reference/chat_fixtures.py).
//! `FERRITE_CHAT_FIXTURES=path` checks another fixture file, e.g. one made with `chat_fixtures.py --all`.

use std::collections::HashMap;

use ferrite_engine::chat::{ChatError, ChatOptions, ChatTemplate};
use serde_json::Value;

/// 2026-11-28 09:05:07 UTC, the time the fixture's strftime_now reports.
const FIXTURE_TIME: u64 = 1_795_856_707;

fn fixture() -> Value {
    let path = std::env::var("FERRITE_CHAT_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates.json").into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fx: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(fx["format"], "ferrite-chat-templates/2", "{path}");
    fx
}

fn template(fx: &Value, name: &str) -> Result<ChatTemplate, ChatError> {
    let t = &fx["templates"][name];
    let text = |key: &str| t[key].as_str().unwrap_or_else(|| panic!("{name}: no {key}"));
    Ok(ChatTemplate::new(text("source"), text("bos_token"), text("eos_token"))?.with_fixed_time(FIXTURE_TIME))
}

/// What rendering one case came to.
enum Outcome {
    Text(String),
    /// The template's own `raise_exception`.
    Raised(String),
    /// Any other failure, compiling included.
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Outcome::Text(s) => write!(f, "{s:?}"),
            Outcome::Raised(m) => write!(f, "raise_exception({m:?})"),
            Outcome::Failed(e) => write!(f, "error: {e}"),
        }
    }
}

impl From<Result<String, ChatError>> for Outcome {
    fn from(r: Result<String, ChatError>) -> Outcome {
        match r {
            Ok(s) => Outcome::Text(s),
            Err(ChatError::Raised(m)) => Outcome::Raised(m),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

#[test]
fn templates_render_like_hugging_face() {
    let fx = fixture();
    let mut compiled: HashMap<&str, Result<ChatTemplate, ChatError>> = HashMap::new();
    let cases = fx["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let conversation = case["conversation"].as_str().unwrap();
        let opts = ChatOptions {
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            tools: case["tools"].as_bool().unwrap().then(|| fx["tools"].clone()),
            documents: None,
            vars: case["kwargs"].as_object().cloned().unwrap_or_default(),
        };
        let label = format!(
            "{name} / {conversation} / generation prompt {} / tools {} / kwargs {}",
            opts.add_generation_prompt,
            opts.tools.is_some(),
            case["kwargs"]
        );
        let messages = fx["conversations"][conversation].as_array().unwrap();
        let got = match compiled.entry(name).or_insert_with(|| template(&fx, name)) {
            Ok(t) => Outcome::from(t.render_with(messages, &opts)),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let ok = match (&got, &case["expected"], &case["raised"]) {
            (Outcome::Text(s), Value::String(want), _) => s == want,
            (Outcome::Raised(m), _, Value::Bool(true)) => m == case["error"].as_str().unwrap(),
            (Outcome::Raised(_) | Outcome::Failed(_), _, Value::Bool(false)) => true,
            _ => false,
        };
        if !ok {
            let want = if case["expected"].is_string() { &case["expected"] } else { &case["error"] };
            failures.push(format!("{label}:\n  got: {got}\n want: {want}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A strict real template refuses a conversation that does not alternate, with its own message.
#[test]
fn strict_template_raises_its_message() {
    let fx = fixture();
    let t = template(&fx, "google-gemma-2-2b-it").unwrap();
    let messages = fx["conversations"]["non_alternating"].as_array().unwrap();
    match t.render(messages, true, None) {
        Err(ChatError::Raised(m)) => assert_eq!(m, "Conversation roles must alternate user/assistant/user/assistant/..."),
        other => panic!("expected the template's exception, got {other:?}"),
    }
}
