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

    /// The text of every line joined by spaces.
    pub fn message(&self) -> String {
        let parts: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        parts.join(" ")
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
        let m = self.message();
        if !m.is_empty() {
            write!(f, " {m}")?;
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
}
