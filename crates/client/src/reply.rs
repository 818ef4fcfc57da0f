//! Owned server replies, for outcomes and errors that outlive the input buffer.

use std::fmt;

use postline_proto::reply::{EnhancedCode, Reply};

/// A server reply, copied out of the connection's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The RFC 3463 enhanced status code, when the server sent one.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line (after `xyz-`/`xyz ` and the enhanced code), lossily decoded.
    pub lines: Vec<String>,
}

impl ServerReply {
    /// Copies a parsed reply.
    pub fn from_reply(r: &Reply<'_>) -> Self {
        ServerReply {
            code: r.code().value(),
            enhanced: r.enhanced(),
            lines: r
                .text_lines()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect(),
        }
    }

    /// The text of every line joined by spaces, as the server sent it (control characters
    /// included: show it through [`escape`](crate::escape::escape), or use `Display`, which
    /// does).
    pub fn message(&self) -> String {
        let parts: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        parts.join(" ")
    }

    /// What `Display` shows (`550 5.1.1 text`) with the text as the server sent it, control
    /// characters included: for machine-readable output that escapes in its own way (JSON),
    /// never for a terminal or a log.
    pub fn to_raw_string(&self) -> String {
        let mut s = self.code.to_string();
        if let Some(e) = self.enhanced {
            s.push_str(&format!(" {e}"));
        }
        let m = self.message();
        if !m.is_empty() {
            s.push(' ');
            s.push_str(&m);
        }
        s
    }

    /// 4yz: a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// 5yz: do not repeat unchanged.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// 2yz.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }
}

impl fmt::Display for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        // Server text: escaped, so no terminal or log acts on it.
        let m = self.message();
        if !m.is_empty() {
            write!(f, " {}", crate::escape::Escaped(&m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postline_proto::ReplyParser;

    #[test]
    fn display_and_message() {
        let input = b"550-5.1.1 <x@y>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n";
        let (r, _) = ReplyParser::new().parse(input).unwrap().unwrap();
        let s = ServerReply::from_reply(&r);
        assert_eq!(s.code, 550);
        assert_eq!(
            s.message(),
            "<x@y>: Recipient address rejected: User unknown"
        );
        assert_eq!(
            s.to_string(),
            "550 5.1.1 <x@y>: Recipient address rejected: User unknown"
        );
        assert!(s.is_permanent());
    }

    #[test]
    fn display_escapes_what_the_server_wrote() {
        let input = "550 5.1.1 no\x1b]0;owned\x07 \u{202e}txt.exe caf\u{e9}\r\n";
        let (r, _) = ReplyParser::new().parse(input.as_bytes()).unwrap().unwrap();
        let s = ServerReply::from_reply(&r);
        assert_eq!(s.message(), "no\x1b]0;owned\x07 \u{202e}txt.exe caf\u{e9}");
        assert_eq!(
            s.to_string(),
            "550 5.1.1 no\\u{1b}]0;owned\\u{7} \\u{202e}txt.exe caf\u{e9}"
        );
        assert_eq!(
            s.to_raw_string(),
            "550 5.1.1 no\x1b]0;owned\x07 \u{202e}txt.exe caf\u{e9}"
        );
    }
}
