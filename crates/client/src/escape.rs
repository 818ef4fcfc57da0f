//! Text from a server made safe to show: the one rule postline uses before a terminal, a log
//! or an error message sees anything a peer sent.
//!
//! A hostile server can put terminal escape sequences in its greeting, its EHLO lines, its
//! replies or its certificate's names: `ESC ] 0 ; title BEL`, OSC 52 (write the clipboard),
//! CSI sequences (through ESC `[` or the C1 control U+009B), a bare CR that overwrites the line
//! shown, BEL, DEL, and the bidirectional overrides (U+202E) that make text display in another
//! order than it reads. [`escape`] writes each such character as visible text (`\r`, `\n`,
//! `\t`, or `\u{hex}`: ESC is `\u{1b}`); everything else, accented letters and other
//! printable UTF-8 included, stays as it is. The output never holds a character that
//! [`needs_escape`], so escaping twice gives the same text as once.
//!
//! [`ServerReply`](crate::ServerReply)'s `Display`, and therefore every [`Error`](crate::Error)
//! and [`Delivery::detail`](crate::Delivery::detail) that quotes a reply, and
//! [`TlsFailure`](crate::TlsFailure)'s certificate names, are escaped this way; the raw text
//! stays available in [`ServerReply::lines`](crate::ServerReply::lines).

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal or a log as it is: C0 and C1 control characters
/// (ESC, CR, LF, TAB, BEL, NUL, CSI...), DEL, and the invisible bidirectional formatting
/// marks (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), and the line and
/// paragraph separators U+2028 and U+2029 (which some terminals and log viewers break on).
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with each character that [`needs_escape`] written as `\r`, `\n`, `\t` or `\u{hex}`;
/// everything else, backslashes included, as it is. Borrows when there is nothing to escape.
///
/// ```
/// assert_eq!(postline::escape::escape("250 ok\u{1b}]0;owned\u{7}"), "250 ok\\u{1b}]0;owned\\u{7}");
/// assert_eq!(postline::escape::escape("220 caf\u{e9}"), "220 caf\u{e9}");
/// ```
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(Escaped(s).to_string())
}

/// Shows its text [escaped](escape), without allocating: `format!("{}", Escaped(text))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((i, c)) = rest.char_indices().find(|(_, c)| needs_escape(*c)) {
            f.write_str(&rest[..i])?;
            match c {
                '\r' => f.write_str("\\r")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_marks_are_written_as_text() {
        assert!(matches!(escape("250 mx.example ready"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\u{1b}[2Jb\r\nc\td\u{7}\u{0}"),
            "a\\u{1b}[2Jb\\r\\nc\\td\\u{7}\\u{0}"
        );
        assert_eq!(escape("x\u{9b}31my\u{7f}"), "x\\u{9b}31my\\u{7f}");
        assert_eq!(escape("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(
            escape("caf\u{e9} \\ ok \u{2603}"),
            "caf\u{e9} \\ ok \u{2603}"
        );
        assert_eq!(escape("\u{1b}]52;c;aGk=\u{7}"), "\\u{1b}]52;c;aGk=\\u{7}");
    }

    #[test]
    fn escaping_twice_is_escaping_once() {
        let s = "220 \u{1b}]0;t\u{7}\r\u{85}\u{2066}x\u{2028}y\u{2029}";
        let once = escape(s).into_owned();
        assert!(!once.chars().any(needs_escape));
        assert_eq!(escape(&once), once);
    }
}
