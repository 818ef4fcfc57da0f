//! A server reply kept without allocating: its code and the start of its text.

use core::fmt;

use postline_proto::reply::Reply as ProtoReply;

/// Bytes of reply text kept: enough for the usual `250 2.0.0 Ok: queued as 4F3k2` and most
/// refusals; longer text is cut (marked by [`Reply::cut`]).
pub const REPLY_TEXT: usize = 64;

/// A reply's code and the start of its first line's text, as the server sent them (control
/// characters included: escape before showing it on a terminal).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    len: u8,
    cut: bool,
    text: [u8; REPLY_TEXT],
}

impl Reply {
    /// Keeps `r` in `slot`, written there in place: a reply built aside and moved in was
    /// copied twice, through a frame twice its size. (The text, at most 64 bytes, is copied
    /// a byte at a time: a slice copy's range and length checks cost more code.)
    pub(crate) fn keep(slot: &mut Option<Reply>, r: &ProtoReply<'_>) {
        let kept = slot.insert(Reply {
            code: r.code().value(),
            len: 0,
            cut: false,
            text: [0; REPLY_TEXT],
        });
        // One pass over the lines: the first, then whether another follows.
        let mut lines = r.lines();
        let line = lines.next().unwrap_or(&[]);
        let n = line.len().min(REPLY_TEXT);
        for (to, &b) in kept.text.iter_mut().zip(line) {
            *to = b;
        }
        kept.len = n as u8;
        kept.cut = line.len() > n || lines.next().is_some();
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The start of the first line's text (after the code and its separator).
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len as usize]
    }

    /// Whether the server said more than [`Reply::text`] holds.
    pub fn cut(&self) -> bool {
        self.cut
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// 4xx: the same message may go through later.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({self})")
    }
}

/// `code text`, with bytes that are not printable ASCII shown as `\x..`, so a hostile server
/// cannot drive a terminal through it.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.code)?;
        for &b in self.text() {
            if (0x20..0x7f).contains(&b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.cut {
            f.write_str("...")?;
        }
        Ok(())
    }
}
