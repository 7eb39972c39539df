//! Stop strings over streamed text. Generated text arrives in pieces and a stop string may straddle
//! pieces, so [`StopMatcher`] holds back any tail that could still grow into a stop string until the
//! next piece decides it. Text before the first stop string is emitted; the stop string and everything
//! after it are not.
//!
//! ```
//! use ferrite_engine::stop::StopMatcher;
//!
//! let mut m = StopMatcher::new(&["</answer>"]);
//! assert_eq!(m.push("42 </ans").text, "42 "); // "</ans" is held back
//! let out = m.push("wer> and more");
//! assert!(out.stopped);
//! assert_eq!(out.text, "");
//! ```

use ferrite_tokenizer::Decoder;

/// The outcome of pushing one piece.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutput {
    /// Text that is safe to emit now.
    pub text: String,
    /// A stop string was found: `text` ends right before it, and generation should end.
    pub stopped: bool,
}

/// Finds the first occurrence of any of its stop strings in a stream of text pieces.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Pushed text not yet emitted: a suffix that is a proper prefix of some stop string.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings are ignored, and with none every piece passes straight through.
    pub fn new<S: AsRef<str>>(stops: &[S]) -> StopMatcher {
        let stops = stops.iter().map(|s| s.as_ref()).filter(|s| !s.is_empty()).map(String::from).collect();
        StopMatcher { stops, held: String::new(), stopped: false }
    }

    /// Add a piece of generated text. After a stop, further pieces are swallowed.
    pub fn push(&mut self, piece: &str) -> StopOutput {
        if self.stopped {
            return StopOutput { text: String::new(), stopped: true };
        }
        self.held.push_str(piece);
        // The earliest stop string in the text ends it. Only `held` needs searching: what was emitted
        // before contained no stop string and no start of one that could still complete.
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.stopped = true;
            let mut text = std::mem::take(&mut self.held);
            text.truncate(at);
            return StopOutput { text, stopped: true };
        }
        let keep = self.stops.iter().map(|s| longest_suffix_prefix(&self.held, s)).max().unwrap_or(0);
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..text.len());
        StopOutput { text, stopped: false }
    }

    /// End of generation: whatever is held back was not a stop string after all.
    pub fn finish(self) -> String {
        if self.stopped { String::new() } else { self.held }
    }
}

/// Generated token ids to emitted text: detokenized into whole UTF-8 characters, then held back while it
/// could still be the start of a stop string. Both generation loops (`generate` and the serving engine)
/// go through it, so they emit the same text.
pub struct TokenText {
    decoder: Decoder,
    stop: StopMatcher,
}

impl TokenText {
    /// `decoder` continues a prompt (see [`Decoder::continuing`]); `stops` as for [`StopMatcher::new`].
    pub fn new<S: AsRef<str>>(decoder: Decoder, stops: &[S]) -> TokenText {
        TokenText { decoder, stop: StopMatcher::new(stops) }
    }

    /// Add a generated token: the text safe to emit now, and whether a stop string appeared.
    pub fn push(&mut self, id: u32) -> StopOutput {
        self.stop.push(&self.decoder.push(id))
    }

    /// Generation ended without a stop string: the text still held back (an incomplete character is
    /// flushed as the decoder does, and a stop string it completes still cuts the text).
    pub fn finish(mut self) -> String {
        let rest = self.stop.push(&self.decoder.flush());
        if rest.stopped { rest.text } else { rest.text + &self.stop.finish() }
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`. A suffix starts on
/// a char boundary of `text`, and matching `stop`'s bytes then ends on one of `stop`'s too.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len() - 1);
    (1..=max)
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.as_bytes().starts_with(&text.as_bytes()[text.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Push `pieces` until a stop; return what each push emitted, whether it stopped, and `finish()`.
    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut m = StopMatcher::new(stops);
        let mut out = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let o = m.push(p);
            out.push(o.text);
            if o.stopped {
                stopped = true;
                break;
            }
        }
        (out, stopped, m.finish())
    }

    #[test]
    fn no_stops_pass_everything_at_once() {
        assert_eq!(run(&[], &["a", "<", "b"]), (vec!["a".into(), "<".into(), "b".into()], false, String::new()));
        assert_eq!(run(&[""], &["a"]), (vec!["a".into()], false, String::new()), "an empty stop string is ignored");
    }

    #[test]
    fn stop_split_across_pieces() {
        let (out, stopped, rest) = run(&["</end>"], &["hello </", "en", "d> more", "never seen"]);
        assert_eq!(out, vec!["hello ", "", ""]);
        assert!(stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn stop_inside_one_piece_and_at_the_start() {
        assert_eq!(run(&["STOP"], &["abSTOPcd"]), (vec!["ab".into()], true, String::new()));
        assert_eq!(run(&["STOP"], &["STOP"]), (vec!["".into()], true, String::new()));
    }

    #[test]
    fn false_prefix_is_released() {
        let (out, stopped, rest) = run(&["STOP"], &["ST", "x", "S"]);
        assert_eq!(out, vec!["", "STx", ""]);
        assert!(!stopped);
        assert_eq!(rest, "S", "finish flushes what was held back");
        // A held prefix that turns into another, later one: "SST" keeps "ST".
        let (out, _, rest) = run(&["STOP"], &["S", "ST", "OX"]);
        assert_eq!(out, vec!["", "S", "STOX"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn several_stops_earliest_wins() {
        let (out, stopped, _) = run(&["bb", "a b"], &["xa bb"]);
        assert_eq!(out, vec!["x"]);
        assert!(stopped);
        // "bc" completes inside a held "abc…" that could still have become "abcd".
        assert_eq!(run(&["abcd", "bc"], &["ab", "c"]), (vec!["".into(), "a".into()], true, String::new()));
    }

    #[test]
    fn overlapping_prefixes_are_held_for_the_longest() {
        // "ab" is held as a possible "abc" (and "b" as a possible "bd") until "x" decides both.
        let (out, stopped, rest) = run(&["abc", "bd"], &["ab", "x"]);
        assert_eq!(out, vec!["", "abx"]);
        assert!(!stopped && rest.is_empty());
        let (out, stopped, _) = run(&["abc", "bd"], &["ab", "d"]);
        assert_eq!(out, vec!["", "a"]);
        assert!(stopped);
    }

    #[test]
    fn utf8_boundaries() {
        let (out, stopped, _) = run(&["é!"], &["caf", "é", "!"]);
        assert_eq!(out, vec!["caf", "", ""]);
        assert!(stopped);
        let (out, _, rest) = run(&["\u{1F600}x"], &["a\u{1F600}"]);
        assert_eq!(out, vec!["a"]);
        assert_eq!(rest, "\u{1F600}");
        // "é" (C3 A9) and "ê" (C3 AA) share a first byte; a suffix is never cut inside a char.
        assert_eq!(run(&["ê"], &["é", "e"]), (vec!["é".into(), "e".into()], false, String::new()));
    }
}
