//! OpenAI's request bodies, checked, and turned into engine requests.

use ferrite_engine::sampling::{Penalties, Sampling, SamplingParams};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Fields shared by chat completions and completions.
#[derive(Debug, Default, Deserialize)]
pub struct Common {
    #[serde(default)]
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Value>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Value,
    /// Completions ask for logprobs with a number: the alternatives per token.
    pub logprobs: Option<i64>,
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub common: Common,
}

/// Parse a JSON body, with serde's message (line and column) on error.
pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

impl ChatMessage {
    /// The text of `content`: a string, or the text parts of a list of parts.
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(parts)) => {
                let mut out = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid_param(
                                "messages",
                                format!("unsupported content part {:?}: this model takes text parts only", kind.unwrap_or("?")),
                            ));
                        }
                    }
                }
                Ok(out)
            }
            Some(_) => Err(ApiError::invalid_param("messages", "message content must be a string or a list of text parts")),
        }
    }
}

impl Common {
    /// The token limit asked for, if any (`max_completion_tokens` wins).
    pub fn max_tokens(&self) -> Result<Option<usize>, ApiError> {
        match self.max_completion_tokens.or(self.max_tokens) {
            None => Ok(None),
            Some(n) if n >= 1 => Ok(Some(n as usize)),
            Some(n) => Err(ApiError::invalid_param("max_tokens", format!("max_tokens must be at least 1, got {n}"))),
        }
    }

    /// Up to four stop strings.
    pub fn stop(&self) -> Result<Vec<String>, ApiError> {
        let stops = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(String::from).ok_or_else(|| ApiError::invalid_param("stop", "stop must be a string or a list of strings")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::invalid_param("stop", "stop must be a string or a list of strings")),
        };
        if stops.len() > 4 {
            return Err(ApiError::invalid_param("stop", "at most 4 stop sequences"));
        }
        Ok(stops)
    }

    /// Sampling settings with OpenAI's defaults (temperature 1, top-p 1, no penalties); temperature 0 is
    /// greedy. Without a seed, one is drawn.
    pub fn sampling(&self) -> Result<SamplingParams, ApiError> {
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::invalid_param("n", format!("only n = 1 is supported, got {n}")));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid_param("temperature", format!("temperature must be between 0 and 2, got {temperature}")));
        }
        let sampling = if temperature == 0.0 {
            Sampling::Greedy
        } else {
            let top_k = match self.top_k {
                None | Some(0) | Some(-1) => None,
                Some(k) if k > 0 => Some(k as usize),
                Some(k) => return Err(ApiError::invalid_param("top_k", format!("top_k must be positive, got {k}"))),
            };
            let seed = self.seed.map_or_else(crate::random_u64, |s| s as u64);
            Sampling::Random { temperature, top_k, top_p: self.top_p.filter(|&p| p < 1.0), min_p: self.min_p.filter(|&p| p > 0.0), seed }
        };
        for (name, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if let Some(v) = v
                && !(-2.0..=2.0).contains(&v)
            {
                return Err(ApiError::invalid(format!("{name} must be between -2 and 2, got {v}")));
            }
        }
        let penalties = Penalties {
            presence: self.presence_penalty.unwrap_or(0.0),
            frequency: self.frequency_penalty.unwrap_or(0.0),
            ..Penalties::default()
        };
        let params = SamplingParams { sampling, penalties };
        params.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(params)
    }
}

/// `logprobs`/`top_logprobs` of a chat request: `None` or the number of alternatives.
pub fn chat_logprobs(logprobs: Option<bool>, top: Option<i64>) -> Result<Option<usize>, ApiError> {
    match (logprobs.unwrap_or(false), top) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ApiError::invalid_param("top_logprobs", "top_logprobs needs logprobs: true")),
        (true, top) => check_top(top.unwrap_or(0)).map(Some),
    }
}

pub fn check_top(n: i64) -> Result<usize, ApiError> {
    if (0..=20).contains(&n) { Ok(n as usize) } else { Err(ApiError::invalid_param("top_logprobs", format!("must be between 0 and 20, got {n}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_and_check() {
        let r: ChatRequest = parse(br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_completion_tokens":5,"max_tokens":9,"stop":"x","temperature":0}"#).unwrap();
        assert_eq!(r.messages[0].text().unwrap(), "ab");
        assert_eq!(r.common.max_tokens().unwrap(), Some(5));
        assert_eq!(r.common.stop().unwrap(), ["x"]);
        assert_eq!(r.common.sampling().unwrap().sampling, Sampling::Greedy);

        let e = parse::<ChatRequest>(b"{\"messages\": [").unwrap_err();
        assert!(e.message.contains("invalid JSON"), "{}", e.message);
        assert!(parse::<ChatRequest>(br#"{"model":"m"}"#).unwrap_err().message.contains("messages"));

        let bad = |json: &str| {
            let r: ChatRequest = parse(json.as_bytes()).unwrap();
            r.common.sampling().and(r.common.stop()).and(r.common.max_tokens().map(|_| Vec::<String>::new())).unwrap_err()
        };
        assert_eq!(bad(r#"{"messages":[],"n":2}"#).param, Some("n"));
        assert_eq!(bad(r#"{"messages":[],"temperature":3}"#).param, Some("temperature"));
        assert_eq!(bad(r#"{"messages":[],"stop":["a","b","c","d","e"]}"#).param, Some("stop"));
        assert_eq!(bad(r#"{"messages":[],"max_tokens":0}"#).param, Some("max_tokens"));

        let seeded: ChatRequest = parse(br#"{"messages":[],"temperature":0.5,"seed":7,"top_p":0.9}"#).unwrap();
        assert_eq!(
            seeded.common.sampling().unwrap().sampling,
            Sampling::Random { temperature: 0.5, top_k: None, top_p: Some(0.9), min_p: None, seed: 7 }
        );
        assert_eq!(chat_logprobs(Some(true), Some(3)).unwrap(), Some(3));
        assert!(chat_logprobs(Some(true), Some(21)).is_err());
        assert!(chat_logprobs(None, Some(2)).is_err());
    }
}
