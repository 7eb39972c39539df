//! Chat templates: the Jinja template a model ships in `tokenizer.chat_template`, rendered with
//! minijinja the way Hugging Face's `apply_chat_template` renders it with Python's jinja2
//! (`trim_blocks`, `lstrip_blocks`, `raise_exception`, `strftime_now`, a `tojson` that does not
//! HTML-escape, Python string methods).

use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;

/// Why a template could not be compiled or rendered. Rendering errors include those the template raises
/// itself (e.g. "Conversation roles must alternate user/assistant/user/assistant/...").
#[derive(Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub struct ChatError(String);

impl From<Error> for ChatError {
    fn from(e: Error) -> Self {
        // The template's own message is in the detail of `raise_exception` errors.
        match (e.kind(), e.detail()) {
            (ErrorKind::InvalidOperation, Some(d)) => ChatError(d.to_string()),
            _ => ChatError(format!("{e:#}")),
        }
    }
}

/// A compiled chat template with the model's BOS and EOS token texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat";

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| -> String { strftime_now(&fmt) });
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_string())?;
        Ok(ChatTemplate { env, bos_token: bos_token.into(), eos_token: eos_token.into() })
    }

    /// Make `strftime_now` report this fixed time (seconds since the Unix epoch, UTC) instead of the clock:
    /// for reproducible prompts and tests.
    pub fn with_fixed_time(mut self, unix_secs: u64) -> ChatTemplate {
        self.env.add_function("strftime_now", move |fmt: String| -> String { strftime(unix_secs, &fmt) });
        self
    }

    /// Render `messages` (objects with at least `role`; `content`, `tool_calls` … are passed through),
    /// ending with the assistant's opening when `add_generation_prompt`.
    pub fn render(&self, messages: &[Json], add_generation_prompt: bool, tools: Option<&Json>) -> Result<String, ChatError> {
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), Json::Array(messages.to_vec()));
        ctx.insert("add_generation_prompt".into(), Json::Bool(add_generation_prompt));
        ctx.insert("bos_token".into(), Json::String(self.bos_token.clone()));
        ctx.insert("eos_token".into(), Json::String(self.eos_token.clone()));
        if let Some(t) = tools {
            ctx.insert("tools".into(), t.clone());
        }
        let tmpl = self.env.get_template(NAME)?;
        Ok(tmpl.render(minijinja::value::Serde(&ctx))?)
    }
}

/// HF's `tojson`: `json.dumps(x, ensure_ascii=False)` (separators ", " and ": "), with `indent` when given.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json: Json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// Python's json.dumps layout: `{"a": 1, "b": [1, 2]}`, or one item per line with `indent`.
fn write_json(v: &Json, indent: Option<usize>, depth: usize, out: &mut String) {
    let nl = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * d));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        Json::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                nl(out, depth + 1);
                write_json(x, indent, depth + 1, out);
            }
            nl(out, depth);
            out.push(']');
        }
        Json::Object(o) if !o.is_empty() => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                nl(out, depth + 1);
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                write_json(x, indent, depth + 1, out);
            }
            nl(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The current UTC date and time formatted with the common strftime codes templates use.
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    strftime(secs, fmt)
}

fn strftime(secs: u64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let days = secs / 86400;
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('-') => match it.next() {
                Some('d') => out.push_str(&d.to_string()),
                Some('m') => out.push_str(&m.to_string()),
                Some(o) => out.push_str(&format!("%-{o}")),
                None => out.push_str("%-"),
            },
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('b') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[(days % 7) as usize]),
            Some('a') => out.push_str(&DAYS[(days % 7) as usize][..3]),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_renders() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let s = t.render(&[json!({"role": "system", "content": "Be brief."}), json!({"role": "user", "content": "Hi"})], true, None).unwrap();
        assert_eq!(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_carries_the_message() {
        let t = ChatTemplate::new("{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}", "", "").unwrap();
        let e = t.render(&[json!({"role": "assistant", "content": "x"})], false, None).unwrap_err();
        assert!(e.to_string().contains("Conversation must start with user"), "{e}");
    }

    #[test]
    fn tojson_is_python_json_dumps_without_html_escaping() {
        let t = ChatTemplate::new("{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}", "", "").unwrap();
        let s = t.render(&[], false, Some(&json!([{"name": "a<b>&'", "n": [1, 2]}]))).unwrap();
        assert_eq!(s, "[{\"name\": \"a<b>&'\", \"n\": [1, 2]}]|{\n  \"name\": \"a<b>&'\",\n  \"n\": [\n    1,\n    2\n  ]\n}");
    }

    #[test]
    fn python_string_methods_and_trim_blocks() {
        let t = ChatTemplate::new("{% for m in messages %}\n  {{ m.content.strip().upper() }}{% if m.content.startswith(' x') %}!{% endif %}\n{% endfor %}", "", "").unwrap();
        assert_eq!(t.render(&[json!({"role": "user", "content": " xy "})], false, None).unwrap(), "  XY!"); // as Python jinja2 renders it
    }

    #[test]
    fn strftime_formats() {
        // 2024-02-29 13:05:09 UTC was a Thursday.
        let secs = 1_709_211_909;
        assert_eq!(strftime(secs, "%d %b %Y %H:%M:%S %A %-d %B"), "29 Feb 2024 13:05:09 Thursday 29 February");
    }
}
