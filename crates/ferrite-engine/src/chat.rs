//! Chat templates: the Jinja template a model ships in `tokenizer.chat_template`, rendered with minijinja
//! the way Hugging Face's `apply_chat_template` renders it with Python's jinja2.
//!
//! [`ChatTemplate`] compiles the template once; [`ChatTemplate::render`] turns a conversation (a list of
//! [`Message`]s, or of JSON objects for anything a template may read) into the prompt text.
//! What transformers does that plain Jinja does not, and so is done here too:
//! - the environment: `trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception(msg)` (a
//!   [`ChatError::Raised`] carrying the message), `strftime_now(fmt)`, a `tojson` that is Python's
//!   `json.dumps(x, ensure_ascii=False)` (no HTML escaping, `indent`, `separators`, `sort_keys`), and
//!   `{% generation %}` blocks;
//! - Python's string and dict methods (`.strip()`, `.startswith()`, `.items()` … via minijinja-contrib),
//!   and Python's way of printing values: `None`, `True`, `['a', 1]`;
//! - the variables: `messages`, `tools` and `documents` (`None` when not given), `add_generation_prompt`,
//!   `bos_token`, `eos_token`, and any extra ones ([`ChatOptions::vars`], e.g. Qwen3's `enable_thinking`);
//! - the messages are normalised first: keys whose value is null are dropped, and a reasoning text under
//!   `reasoning_content`, `thinking` or `reasoning` is offered under the first two names as well.
//!
//! Undefined variables behave like jinja2's default: empty when printed, false when tested, an error when
//! their attributes are read.
//!
//! Known differences, none of which changes a prompt that jinja2 renders from llama.cpp's collection of
//! real templates except the last: minijinja iterates `None` as an empty list where jinja2 fails (so
//! a template that loops over `tools` renders without them instead of failing); a few filters are
//! missing (`wordcount`, `center`, `urlencode`, `xmlattr`, `wordwrap`) and so is `'%s' % x`; and
//! markupsafe's escaping of a plain string added to a `|safe` one is not reproduced (one template,
//! functionary v3.1, relies on it).
//!
//! ```
//! use ferrite_engine::chat::{ChatTemplate, Message};
//!
//! let src = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}\
//!            {% if add_generation_prompt %}<|assistant|>{% endif %}";
//! let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
//! let prompt = t.render(&[Message::new("user", "Hi")], true, None).unwrap();
//! assert_eq!(prompt, "<|user|>Hi\n<|assistant|>");
//! ```

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template is not valid Jinja, or uses syntax minijinja does not support.
    #[error("the chat template does not compile: {0}")]
    Syntax(Error),
    /// The template refused the conversation with `raise_exception(message)`, e.g. "Conversation roles
    /// must alternate user/assistant/user/assistant/...".
    #[error("the chat template refused the conversation: {0}")]
    Raised(String),
    /// Rendering failed otherwise: an attribute of an undefined value, an operation on the wrong types, …
    #[error("rendering the chat template failed: {0}")]
    Render(Error),
    /// A message is not a JSON object.
    #[error("message {index} is not a JSON object: {message}")]
    Message { index: usize, message: String },
}

impl ChatError {
    /// A rendering error, or the template's own exception if that is what it carries.
    fn from_render(e: Error) -> ChatError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if let Some(Raised(message)) = err.downcast_ref::<Raised>() {
                return ChatError::Raised(message.clone());
            }
            source = err.source();
        }
        ChatError::Render(e)
    }
}

/// Marks the errors that `raise_exception` makes, so they can be told apart from other rendering errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Raised(String);

/// One message of a conversation. Anything besides `role` and `content` that a template may read
/// (`tool_calls`, `tool_call_id`, `name`, `reasoning_content`, content parts …) goes in `extra`; for full
/// control, render JSON values instead.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    /// Absent (or null) e.g. for an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: Some(content.into()), extra: Map::new() }
    }
}

/// How to render, besides the messages: `apply_chat_template`'s other arguments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatOptions {
    /// End with the opening of an assistant turn, for the model to complete.
    pub add_generation_prompt: bool,
    /// Tool definitions, a list of `{"type": "function", "function": {...}}` (JSON schema) objects.
    pub tools: Option<Json>,
    /// Documents for retrieval-augmented templates, a list of `{"title": ..., "text": ...}` objects.
    pub documents: Option<Json>,
    /// Further template variables, as `apply_chat_template`'s keyword arguments (`enable_thinking`,
    /// `reasoning_effort`, `date_string` …). They override `bos_token` and `eos_token`.
    pub vars: Map<String, Json>,
}

/// A compiled chat template with the model's BOS and EOS token texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.map_err(ChatError::Syntax)?);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_function("raise_exception", |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
        });
        env.add_function("strftime_now", |fmt: String| -> String { strftime(now_unix_secs(), &fmt) });
        env.add_filter("tojson", tojson);
        add_python_semantics(&mut env);
        env.add_template_owned(NAME, generation_blocks_as_ifs(source)).map_err(ChatError::Syntax)?;
        Ok(ChatTemplate { env, bos_token: bos_token.into(), eos_token: eos_token.into() })
    }

    /// Make `strftime_now` report this fixed time (seconds since the Unix epoch, UTC) instead of the clock,
    /// for reproducible prompts and tests.
    pub fn with_fixed_time(mut self, unix_secs: u64) -> ChatTemplate {
        self.env.add_function("strftime_now", move |fmt: String| -> String { strftime(unix_secs, &fmt) });
        self
    }

    /// Render `messages`, ending with the assistant's opening when `add_generation_prompt`; `tools` is a
    /// list of tool definitions. Messages are [`Message`]s or anything else that serialises to JSON
    /// objects with at least a `role`.
    pub fn render<M: Serialize>(&self, messages: &[M], add_generation_prompt: bool, tools: Option<&Json>) -> Result<String, ChatError> {
        self.render_inner(messages, add_generation_prompt, tools, None, &Map::new())
    }

    /// [`render`](Self::render) with every option.
    pub fn render_with<M: Serialize>(&self, messages: &[M], opts: &ChatOptions) -> Result<String, ChatError> {
        self.render_inner(messages, opts.add_generation_prompt, opts.tools.as_ref(), opts.documents.as_ref(), &opts.vars)
    }

    fn render_inner<M: Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
        tools: Option<&Json>,
        documents: Option<&Json>,
        vars: &Map<String, Json>,
    ) -> Result<String, ChatError> {
        let messages = messages.iter().enumerate().map(|(i, m)| normalise_message(i, m)).collect::<Result<Vec<_>, _>>()?;
        let mut ctx = Map::new();
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        ctx.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        ctx.insert("messages".into(), Json::Array(messages));
        ctx.insert("tools".into(), tools.cloned().unwrap_or(Json::Null));
        ctx.insert("documents".into(), documents.cloned().unwrap_or(Json::Null));
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        let template = self.env.get_template(NAME).map_err(ChatError::Syntax)?;
        template.render(Value::from(minijinja::value::Serde(&ctx))).map_err(ChatError::from_render)
    }
}

/// A message as transformers hands it to the template: null-valued keys dropped (templates handle a
/// missing `content` better than a `None` one), and reasoning offered as both `thinking` and
/// `reasoning_content`, whichever of the names it came under.
fn normalise_message(index: usize, message: &impl Serialize) -> Result<Json, ChatError> {
    let not_object = |message: String| ChatError::Message { index, message };
    let Json::Object(m) = serde_json::to_value(message).map_err(|e| not_object(e.to_string()))? else {
        return Err(not_object("expected an object with a role".into()));
    };
    let m: Map<String, Json> = m.into_iter().filter(|(_, v)| !v.is_null()).collect();
    let reasoning = ["reasoning_content", "thinking", "reasoning"].iter().find_map(|k| m.get(*k)).cloned();
    let Some(reasoning) = reasoning else { return Ok(Json::Object(m)) };
    let mut aliased = Map::new();
    aliased.insert("thinking".into(), reasoning.clone());
    aliased.extend(m);
    aliased.insert("reasoning_content".into(), reasoning);
    Ok(Json::Object(aliased))
}

/// transformers' `{% generation %}…{% endgeneration %}` marks the assistant's text (for training masks)
/// and renders its body unchanged. minijinja has no such tag, so it becomes `{% if true %}…{% endif %}`,
/// keeping the whitespace control marks, which trim the same way.
fn generation_blocks_as_ifs(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else { break };
        let inner = &tag[2..end];
        let open = inner.strip_prefix(['-', '+']).map_or("", |_| &inner[..1]);
        let close = inner.strip_suffix(['-', '+']).map_or("", |_| &inner[inner.len() - 1..]);
        let word = inner[open.len()..inner.len() - close.len()].trim();
        match word {
            "generation" => out.push_str(&format!("{{%{open} if true {close}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{open} endif {close}%}}")),
            _ => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Where minijinja's builtins differ from jinja2's in ways chat templates notice.
fn add_python_semantics(env: &mut Environment<'static>) {
    // jinja2 tries `iter(x)` and `len(x); x[...]`: None is neither (minijinja iterates it as empty, which
    // sends `tools is iterable and tools | length > 0` into an error), strings and dicts are sequences.
    env.add_test("iterable", |v: &Value| {
        matches!(v.kind(), ValueKind::Undefined | ValueKind::String | ValueKind::Bytes | ValueKind::Seq | ValueKind::Map | ValueKind::Iterable)
    });
    env.add_test("sequence", |v: &Value| {
        matches!(v.kind(), ValueKind::Undefined | ValueKind::String | ValueKind::Bytes | ValueKind::Seq | ValueKind::Map)
    });
    env.add_filter("string", |v: Value| -> Value {
        match v.kind() {
            ValueKind::String => v,
            ValueKind::Undefined => Value::from(""),
            _ => Value::from(python_str(&v)),
        }
    });
    // jinja2's `int(default=0, base=10)` and `float(default=0.0)` fall back to the default instead of failing.
    env.add_filter("int", |v: Value, default: Option<i64>, base: Option<u32>, kwargs: Kwargs| -> Result<Value, Error> {
        let default = default.or(kwargs.get("default")?).unwrap_or(0);
        let base = base.or(kwargs.get("base")?).unwrap_or(10);
        kwargs.assert_all_used()?;
        Ok(Value::from(python_int(&v, base).unwrap_or(default)))
    });
    env.add_filter("float", |v: Value, default: Option<f64>, kwargs: Kwargs| -> Result<Value, Error> {
        let default = default.or(kwargs.get("default")?).unwrap_or(0.0);
        kwargs.assert_all_used()?;
        Ok(Value::from(python_float_of(&v).unwrap_or(default)))
    });
}

/// Python's `int(x)` (`int(s, base)` for strings), then `int(float(x))`, as jinja2's `int` filter tries.
fn python_int(v: &Value, base: u32) -> Option<i64> {
    match v.kind() {
        ValueKind::Bool => Some(v.is_true() as i64),
        ValueKind::Number => i64::try_from(v.clone()).ok().or_else(|| python_float_of(v).map(|f| f.trunc() as i64)),
        ValueKind::String => {
            let s = v.as_str()?.trim().replace('_', "");
            let int = (2..=36).contains(&base).then(|| i64::from_str_radix(&s, base).ok()).flatten();
            int.or_else(|| python_float_of(v).map(|f| f.trunc() as i64))
        }
        _ => None,
    }
}

/// Python's `float(x)` for the values it accepts.
fn python_float_of(v: &Value) -> Option<f64> {
    match v.kind() {
        ValueKind::Bool => Some(v.is_true() as i64 as f64),
        ValueKind::Number => f64::try_from(v.clone()).ok(),
        ValueKind::String => v.as_str()?.trim().replace('_', "").parse().ok(),
        _ => None,
    }
}

/// Print values as Python's `str()` does (`None`, `True`, `{'a': [1, 2.0]}`), where minijinja's own
/// formatting would differ (`none`, `true`, `{"a": [1, 2.0]}`).
fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            out.write_str(&python_str(value)).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str()` of a template value. Values that are not plain data keep minijinja's formatting.
fn python_str(value: &Value) -> String {
    if let Some(s) = value.as_str() {
        return s.to_string();
    }
    match serde_json::to_value(value) {
        Ok(Json::String(_)) | Err(_) => value.to_string(),
        Ok(json) => {
            let mut out = String::new();
            write_python_repr(&json, &mut out);
            out
        }
    }
}

/// Python's `repr()` of JSON data.
fn write_python_repr(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("None"),
        Json::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Json::Number(n) => out.push_str(&python_number(n)),
        Json::String(s) => write_python_str_repr(s, out),
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_repr(x, out);
            }
            out.push(']');
        }
        Json::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_str_repr(k, out);
                out.push_str(": ");
                write_python_repr(x, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr()` of a string: single quotes unless it contains one and no double quote; escapes for
/// backslashes, the quote and control characters (other non-printable characters are not escaped).
fn write_python_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{a0}').contains(&c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// A JSON number as Python prints it: integers as they are, floats as `float.__repr__`.
fn python_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() => python_float(f),
        _ => n.to_string(),
    }
}

/// Python's `float.__repr__`: the shortest digits that round-trip, positional for exponents in
/// [-4, 16), else scientific with a signed exponent of at least two digits (`1e+16`, `1.5e-07`).
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{x:e}"); // shortest round-trip digits, e.g. "-1.2345e-7"
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp writes an exponent");
    let exp: i32 = exp.parse().expect("LowerExp writes an integer exponent");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits = mantissa.replace('.', "");
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat(-point as usize))
        } else if point as usize >= digits.len() {
            format!("{sign}{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{sign}{int}.{frac}")
        }
    } else {
        let (first, more) = digits.split_at(1);
        let dot = if more.is_empty() { "" } else { "." };
        format!("{sign}{first}{dot}{more}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<usize> = kwargs.get("indent")?;
    let separators: Option<(String, String)> = kwargs.get::<Option<Vec<String>>>("separators")?.and_then(|s| match &s[..] {
        [item, key] => Some((item.clone(), key.clone())),
        _ => None,
    });
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return Err(Error::new(ErrorKind::InvalidOperation, "Object of type Undefined is not JSON serializable"));
    }
    let json: Json = serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let (item_sep, key_sep) = separators.unwrap_or_else(|| (if indent.is_some() { "," } else { ", " }.into(), ": ".into()));
    let dumps = JsonDumps { ensure_ascii: ensure_ascii.unwrap_or(false), indent, item_sep, key_sep, sort_keys: sort_keys.unwrap_or(false) };
    let mut out = String::new();
    dumps.write(&json, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// Python's `json.dumps` layout and escaping.
struct JsonDumps {
    ensure_ascii: bool,
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonDumps {
    fn write(&self, v: &Json, depth: usize, out: &mut String) {
        match v {
            Json::Array(a) if !a.is_empty() => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(x, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            Json::Object(o) if !o.is_empty() => {
                let mut entries: Vec<(&String, &Json)> = o.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write_str(k, out);
                    out.push_str(&self.key_sep);
                    self.write(x, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
            Json::String(s) => self.write_str(s, out),
            Json::Number(n) => out.push_str(&python_number(n)),
            other => out.push_str(&other.to_string()), // null, true, false, [], {}
        }
    }

    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    }

    fn write_str(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

fn now_unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// C's strftime for a UTC time, with the codes chat templates use (`%d %b %Y`, `%Y-%m-%d`, `%B %-d` …).
/// Unknown codes are printed as they are, as glibc does.
fn strftime(secs: u64, fmt: &str) -> String {
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const WEEKDAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"]; // from 1970-01-01
    let days = secs / 86400;
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    let yday = days as i64 - days_from_civil(y, 1, 1) + 1;
    let month = MONTHS[m as usize - 1];
    let weekday = WEEKDAYS[(days % 7) as usize];
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (no_pad, code) = match it.next() {
            Some('-') => (true, it.next()),
            other => (false, other),
        };
        let num = |v: u64, width: usize| if no_pad { v.to_string() } else { format!("{v:0width$}") };
        match code {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&num(y.rem_euclid(100) as u64, 2)),
            Some('m') => out.push_str(&num(m as u64, 2)),
            Some('d') => out.push_str(&num(d as u64, 2)),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('j') => out.push_str(&num(yday as u64, 3)),
            Some('H') => out.push_str(&num(hh, 2)),
            Some('I') => out.push_str(&num((hh + 11) % 12 + 1, 2)),
            Some('M') => out.push_str(&num(mm, 2)),
            Some('S') => out.push_str(&num(ss, 2)),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month),
            Some('b') | Some('h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('F') => out.push_str(&format!("{y}-{m:02}-{d:02}")),
            Some('T') => out.push_str(&format!("{hh:02}:{mm:02}:{ss:02}")),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
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

/// (year, month, day) → days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn render(src: &str, messages: &[Json], tools: Option<&Json>) -> Result<String, ChatError> {
        ChatTemplate::new(src, "<s>", "</s>").unwrap().render(messages, false, tools)
    }

    #[test]
    fn chatml_renders_messages_and_json() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
        let typed = [Message::new("system", "Be brief."), Message::new("user", "Hi")];
        assert_eq!(t.render(&typed, true, None).unwrap(), want);
        let json = [json!({"role": "system", "content": "Be brief."}), json!({"role": "user", "content": "Hi"})];
        assert_eq!(t.render(&json, true, None).unwrap(), want);
    }

    #[test]
    fn raise_exception_carries_the_message() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}";
        match render(src, &[json!({"role": "assistant", "content": "x"})], None) {
            Err(ChatError::Raised(m)) => assert_eq!(m, "Conversation must start with user"),
            other => panic!("{other:?}"),
        }
        // Also from inside a macro; other failures are not taken for the template's own.
        let src = "{% macro check(m) %}{{ raise_exception('bad ' ~ m.role) }}{% endmacro %}{{ check(messages[0]) }}";
        assert!(matches!(render(src, &[json!({"role": "tool"})], None), Err(ChatError::Raised(m)) if m == "bad tool"));
        assert!(matches!(render("{{ messages[0].nope.deeper }}", &[json!({"role": "user"})], None), Err(ChatError::Render(_))));
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(ChatError::Syntax(_))));
    }

    #[test]
    fn tojson_is_python_json_dumps_without_html_escaping() {
        let tools = json!([{"name": "a<b>&'é", "n": [1, 2.5, 1e20], "e": {}}]);
        let src = "{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}|{{ tools[0] | tojson(separators=(',', ':'), sort_keys=true) }}|{{ tools[0].name | tojson(ensure_ascii=true) }}";
        let s = render(src, &[], Some(&tools)).unwrap();
        let want = [
            r#"[{"name": "a<b>&'é", "n": [1, 2.5, 1e+20], "e": {}}]"#,
            "{\n  \"name\": \"a<b>&'é\",\n  \"n\": [\n    1,\n    2.5,\n    1e+20\n  ],\n  \"e\": {}\n}",
            r#"{"e":{},"n":[1,2.5,1e+20],"name":"a<b>&'é"}"#,
            r#""a<b>&'\u00e9""#,
        ];
        assert_eq!(s, want.join("|"));
        assert!(matches!(render("{{ nothing | tojson }}", &[], None), Err(ChatError::Render(_))));
    }

    #[test]
    fn values_print_as_python_does() {
        let src = "{{ none }} {{ true }} {{ messages[0] }} {{ messages[0].x }} {{ 1.0 }} {{ 0.00001 }} {{ messages[0].role | string }} {{ false | string }}";
        let s = render(src, &[json!({"role": "user", "x": [1, 2.0, "it's", {"k": null}]})], None).unwrap();
        assert_eq!(s, r#"None True {'role': 'user', 'x': [1, 2.0, "it's", {'k': None}]} [1, 2.0, "it's", {'k': None}] 1.0 1e-05 user False"#);
        for (f, want) in [(1e16, "1e+16"), (123.456, "123.456"), (-0.0, "-0.0"), (1.5e-7, "1.5e-07"), (0.0001, "0.0001"), (1e15, "1000000000000000.0")] {
            assert_eq!(python_float(f), want);
        }
    }

    #[test]
    fn python_string_methods_and_trim_blocks() {
        let t = ChatTemplate::new("{% for m in messages %}\n  {{ m.content.strip().upper() }}{% if m.content.startswith(' x') %}!{% endif %}\n{% endfor %}", "", "").unwrap();
        assert_eq!(t.render(&[json!({"role": "user", "content": " xy "})], false, None).unwrap(), "  XY!"); // as Python jinja2 renders it
    }

    #[test]
    fn messages_are_normalised_like_transformers() {
        let src = "{% for m in messages %}{{ m.content is defined }} {{ m | tojson }};{% endfor %}";
        let messages = [
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}),
            json!({"role": "assistant", "content": "x", "reasoning": "hmm"}),
        ];
        let s = render(src, &messages, None).unwrap();
        assert_eq!(
            s,
            r#"False {"role": "assistant", "tool_calls": [{"id": "1"}]};True {"thinking": "hmm", "role": "assistant", "content": "x", "reasoning": "hmm", "reasoning_content": "hmm"};"#
        );
        assert!(matches!(render("", &[json!("user")], None), Err(ChatError::Message { index: 0, .. })));
    }

    #[test]
    fn variables_like_apply_chat_template() {
        let src = "{{ tools is none }} {{ documents is none }} {{ enable_thinking }} {{ bos_token }}{{ eos_token }}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        assert_eq!(t.render::<Message>(&[], false, None).unwrap(), "True True  <s></s>");
        let opts = ChatOptions {
            vars: [("enable_thinking".to_string(), json!(false)), ("bos_token".to_string(), json!("<B>"))].into_iter().collect(),
            documents: Some(json!([])),
            ..Default::default()
        };
        assert_eq!(t.render_with::<Message>(&[], &opts).unwrap(), "True False False <B></s>");
    }

    #[test]
    fn tests_and_filters_follow_jinja2() {
        let src = "{{ none is iterable }} {{ 'ab' is sequence }} {{ messages[0] is sequence }} {{ nothing is iterable }} \
                   {{ '12' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 2.9 | int }} {{ 'ff' | int(base=16) }} {{ '1.5' | float }} \
                   {{ nothing | string }}|{{ none | string }} {{ tools is not none and tools is iterable and tools | length > 0 }}";
        let s = render(src, &[json!({"role": "user"})], None).unwrap();
        assert_eq!(s, "False True True True 12 0 7 2 255 1.5 |None False"); // as Python jinja2 renders it
    }

    #[test]
    fn generation_blocks_render_their_body() {
        let src = "{% for m in messages %}\n{%- generation -%}\n  {{ m.content }}\n{%- endgeneration %}\n|\n{% endfor %}";
        assert_eq!(generation_blocks_as_ifs(src), "{% for m in messages %}\n{%- if true -%}\n  {{ m.content }}\n{%- endif %}\n|\n{% endfor %}");
        assert_eq!(render(src, &[json!({"role": "user", "content": "a"})], None).unwrap(), "a|\n");
    }

    #[test]
    fn strftime_formats() {
        // 2024-02-29 13:05:09 UTC was a Thursday, the 60th day of the year.
        let secs = 1_709_211_909;
        assert_eq!(strftime(secs, "%d %b %Y %H:%M:%S %A %-d %B %j %I%p %y %F %%"), "29 Feb 2024 13:05:09 Thursday 29 February 060 01PM 24 2024-02-29 %");
        assert_eq!(days_from_civil(2024, 2, 29), (secs / 86400) as i64);
    }
}
