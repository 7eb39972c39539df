//! Codepoint classes and the GPT-2 byte alphabet, as llama.cpp's tokenizers see them.
//!
//! llama.cpp classifies every codepoint once from `UnicodeData.txt` into one general category (number,
//! letter, separator, mark, punctuation, symbol, control, or undefined for unassigned codepoints) plus a
//! separate white-space bit. We build the same table from the Unicode tables that ship inside
//! `regex-syntax`, limited to the Unicode version llama.cpp's table was made from (a test compares the
//! two tables codepoint by codepoint).

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// The Unicode version of llama.cpp's `unicode-data.cpp` (commit 0c1e570).
const UNICODE_VERSION: &str = "V15_1";

/// Number of Unicode codepoints.
const N_CODEPOINTS: usize = 0x11_0000;

/// The class of one codepoint: a general category bit (exactly one of the low eight) and `WHITESPACE`.
/// The value 0 means "no codepoint" (a position outside the text), which the hand-written splitters use
/// as their end marker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(pub u16);

impl Flags {
    pub const UNDEFINED: u16 = 0x0001;
    pub const NUMBER: u16 = 0x0002;
    pub const LETTER: u16 = 0x0004;
    pub const SEPARATOR: u16 = 0x0008;
    pub const MARK: u16 = 0x0010;
    pub const PUNCTUATION: u16 = 0x0020;
    pub const SYMBOL: u16 = 0x0040;
    pub const CONTROL: u16 = 0x0080;
    pub const CATEGORIES: u16 = 0x00FF;
    pub const WHITESPACE: u16 = 0x0100;

    pub fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    pub fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    pub fn is_mark(self) -> bool {
        self.0 & Self::MARK != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    /// True for every real codepoint (false only for the out-of-text marker).
    pub fn exists(self) -> bool {
        self.0 != 0
    }
    pub fn category(self) -> u16 {
        self.0 & Self::CATEGORIES
    }
}

/// The class of `c`.
pub(crate) fn flags(c: char) -> Flags {
    Flags(table()[c as usize])
}

/// One `u16` per codepoint, built on first use (2.2 MB, like llama.cpp's own table).
fn table() -> &'static [u16] {
    static TABLE: OnceLock<Box<[u16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![Flags::UNDEFINED; N_CODEPOINTS].into_boxed_slice();
        // Surrogates (Cs) cannot occur in a `str`, so they keep UNDEFINED.
        let categories = [
            ("N", Flags::NUMBER),
            ("L", Flags::LETTER),
            ("Z", Flags::SEPARATOR),
            ("M", Flags::MARK),
            ("P", Flags::PUNCTUATION),
            ("S", Flags::SYMBOL),
            ("Cc", Flags::CONTROL),
            ("Cf", Flags::CONTROL),
            ("Co", Flags::CONTROL),
        ];
        for (name, flag) in categories {
            for (lo, hi) in class_ranges(&format!(r"\p{{{name}}}")) {
                t[lo as usize..=hi as usize].fill(flag);
            }
        }
        // llama.cpp's table was generated from Unicode 15.1: what later versions assigned is undefined
        // there, and must be here too, or the pre-tokenizers would split such text differently.
        for (lo, hi) in class_ranges(&format!(r"\P{{Age={UNICODE_VERSION}}}")) {
            t[lo as usize..=hi as usize].fill(Flags::UNDEFINED);
        }
        for (lo, hi) in class_ranges(r"\p{White_Space}") {
            for v in &mut t[lo as usize..=hi as usize] {
                *v |= Flags::WHITESPACE;
            }
        }
        t
    })
}

/// The codepoint ranges of a Unicode class expression such as `\p{L}`.
fn class_ranges(expr: &str) -> Vec<(u32, u32)> {
    // The expressions are constants of this module; failing to parse one is a bug here, not bad input.
    let hir = regex_syntax::Parser::new().parse(expr).expect("constant Unicode class parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        other => unreachable!("{expr} is not a Unicode class: {other:?}"),
    }
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes are moved, in order, to U+0100 and up.
pub(crate) fn byte_to_char(b: u8) -> char {
    byte_tables().0[b as usize]
}

/// The inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && byte_is_printable(cp as u8) {
        return Some(cp as u8);
    }
    let idx = cp.checked_sub(256)? as usize;
    byte_tables().1.get(idx).copied()
}

fn byte_is_printable(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// (byte → char, and the bytes that were moved, in the order they were given U+0100, U+0101, …).
fn byte_tables() -> &'static ([char; 256], Vec<u8>) {
    static T: OnceLock<([char; 256], Vec<u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut moved = Vec::new();
        for b in 0..=255u8 {
            if byte_is_printable(b) {
                map[b as usize] = b as char;
            } else {
                map[b as usize] = char::from_u32(256 + moved.len() as u32).unwrap_or('\u{FFFD}');
                moved.push(b);
            }
        }
        (map, moved)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_classes_match_unicode_data() {
        assert_eq!(flags('a').category(), Flags::LETTER);
        assert_eq!(flags('Z').category(), Flags::LETTER);
        assert_eq!(flags('7').category(), Flags::NUMBER);
        assert_eq!(flags('$').category(), Flags::SYMBOL);
        assert_eq!(flags('_').category(), Flags::PUNCTUATION);
        assert_eq!(flags(' ').0, Flags::SEPARATOR | Flags::WHITESPACE);
        assert_eq!(flags('\n').0, Flags::CONTROL | Flags::WHITESPACE);
        assert_eq!(flags('\u{85}').0, Flags::CONTROL | Flags::WHITESPACE);
        assert_eq!(flags('\u{3000}').0, Flags::SEPARATOR | Flags::WHITESPACE);
        assert_eq!(flags('\u{200D}').category(), Flags::CONTROL); // ZWJ is Cf
        assert_eq!(flags('\u{301}').category(), Flags::MARK);
        assert_eq!(flags('²').category(), Flags::NUMBER);
        assert_eq!(flags('\u{E000}').category(), Flags::CONTROL); // private use
        assert_eq!(flags('\u{10FFFF}').category(), Flags::UNDEFINED);
    }

    #[test]
    fn byte_map_is_a_bijection() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(char_to_byte('\u{144}'), None);
    }
}

/// Our table against the one llama.cpp generated from `UnicodeData.txt` (`src/unicode-data.cpp`).
#[cfg(test)]
mod against_llama_cpp {
    use super::*;

    #[test]
    fn categories_and_white_space_match_llama_cpp() {
        let Some(models) = ferrite_testdata::llama_cpp_models() else { return };
        let path = models.join("../src/unicode-data.cpp");
        let src = std::fs::read_to_string(&path).unwrap();
        // `{0x000041, 0x0004},` lines of `unicode_ranges_flags`: range starts and their flags.
        let body = &src[src.find("unicode_ranges_flags").unwrap()..];
        let body = &body[..body.find("};").unwrap()];
        let mut starts: Vec<(u32, u16)> = Vec::new();
        for line in body.lines().filter(|l| l.starts_with("{0x")) {
            let nums: Vec<u32> = line
                .trim_matches(|c| "{},".contains(c))
                .split(", ")
                .map(|h| u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
                .collect();
            starts.push((nums[0], nums[1] as u16));
        }
        let ws_body = &src[src.find("unicode_set_whitespace").unwrap()..];
        let ws_body = &ws_body[..ws_body.find("};").unwrap()];
        let ws: Vec<u32> = ws_body
            .lines()
            .filter(|l| l.starts_with("0x"))
            .map(|l| u32::from_str_radix(l.trim_end_matches(',').trim_start_matches("0x"), 16).unwrap())
            .collect();

        for w in starts.windows(2) {
            let ((lo, theirs), (hi, _)) = (w[0], w[1]);
            for cp in lo..hi.min(N_CODEPOINTS as u32) {
                let Some(c) = char::from_u32(cp) else { continue };
                assert_eq!(flags(c).category(), theirs, "U+{cp:04X}");
            }
        }
        for cp in 0..N_CODEPOINTS as u32 {
            if let Some(c) = char::from_u32(cp) {
                assert_eq!(flags(c).is_whitespace(), ws.contains(&cp), "white space U+{cp:04X}");
            }
        }
    }
}
