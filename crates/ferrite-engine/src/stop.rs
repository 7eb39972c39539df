//! Stop strings over streamed text. Generated text arrives in pieces; a stop string may straddle
//! pieces, so any tail that could still become a stop string is held back until it is decided.

/// The outcome of pushing one piece.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutput {
    /// Text that is safe to emit now.
    pub text: String,
    /// A stop string was found: `text` ends right before it and generation should end.
    pub stopped: bool,
}

/// Finds the first occurrence of any stop string in a stream of text pieces.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new(), stopped: false }
    }

    /// Add a piece of generated text.
    pub fn push(&mut self, piece: &str) -> StopOutput {
        if self.stopped {
            return StopOutput { text: String::new(), stopped: true };
        }
        self.held.push_str(piece);
        // The earliest complete stop string ends the text.
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.stopped = true;
            let mut text = std::mem::take(&mut self.held);
            text.truncate(at);
            return StopOutput { text, stopped: true };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let keep = self.stops.iter().map(|s| longest_suffix_prefix(&self.held, s)).max().unwrap_or(0);
        let emit = self.held.len() - keep;
        let text = self.held[..emit].to_string();
        self.held.drain(..emit);
        StopOutput { text, stopped: false }
    }

    /// End of generation: whatever is held back was not a stop string after all.
    pub fn finish(self) -> String {
        if self.stopped { String::new() } else { self.held }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on a char boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max).rev().find(|&n| text.is_char_boundary(text.len() - n) && stop.as_bytes().starts_with(&text.as_bytes()[text.len() - n..])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut m = StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
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
        assert_eq!(run(&[], &["a", "b"]), (vec!["a".into(), "b".into()], false, String::new()));
    }

    #[test]
    fn stop_split_across_pieces() {
        let (out, stopped, rest) = run(&["</end>"], &["hello </", "en", "d> more"]);
        assert_eq!(out, vec!["hello ", "", ""]);
        assert!(stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn false_prefix_is_released() {
        let (out, stopped, rest) = run(&["STOP"], &["ST", "x", "S"]);
        assert_eq!(out, vec!["", "STx", ""]);
        assert!(!stopped);
        assert_eq!(rest, "S");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (out, stopped, _) = run(&["bb", "a b"], &["xa bb"]);
        assert_eq!(out, vec!["x"]);
        assert!(stopped);
        // Overlapping prefixes: "ab" is held as a possible "abc" until "x" decides it.
        let (out, stopped, rest) = run(&["abc", "bd"], &["ab", "x"]);
        assert_eq!(out, vec!["", "abx"]);
        assert!(!stopped && rest.is_empty());
    }

    #[test]
    fn utf8_boundaries() {
        let (out, stopped, _) = run(&["é!"], &["caf", "é", "!"]);
        assert_eq!(out, vec!["caf", "", ""]);
        assert!(stopped);
        let (out, _, rest) = run(&["\u{1F600}x"], &["a\u{1F600}"]);
        assert_eq!(out, vec!["a"]);
        assert_eq!(rest, "\u{1F600}");
    }
}
