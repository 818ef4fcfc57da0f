//! Incremental parser of SMTP replies (RFC 5321 section 4.2, RFC 3463 enhanced codes).
//!
//! STUB: the public API below is fixed; the implementation is being written.

/// Longest reply line accepted, counting its line ending.
pub const MAX_LINE_LEN: usize = 4096;
/// Most lines accepted in one multiline reply.
pub const MAX_LINES: usize = 256;

/// A three-digit reply code, validated: first digit 2-5, second 0-5, third 0-9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(u16);

/// What the first digit of a reply code says about the command's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 2yz: done.
    PositiveCompletion,
    /// 3yz: go on (354 after DATA, 334 during AUTH).
    PositiveIntermediate,
    /// 4yz: failed this time; trying again later may work.
    TransientNegative,
    /// 5yz: failed; do not repeat unchanged.
    PermanentNegative,
}

impl Code {
    /// Builds a code from its numeric value, if it is a valid reply code.
    pub const fn new(value: u16) -> Option<Code> {
        let (a, b) = (value / 100, value / 10 % 10);
        if a >= 2 && a <= 5 && b <= 5 {
            Some(Code(value))
        } else {
            None
        }
    }
    /// The numeric value, e.g. 250.
    pub const fn value(self) -> u16 {
        self.0
    }
    /// The class given by the first digit.
    pub const fn severity(self) -> Severity {
        match self.0 / 100 {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegative,
            _ => Severity::PermanentNegative,
        }
    }
    /// 2yz.
    pub const fn is_positive_completion(self) -> bool {
        self.0 / 100 == 2
    }
    /// 3yz.
    pub const fn is_intermediate(self) -> bool {
        self.0 / 100 == 3
    }
    /// 4yz.
    pub const fn is_transient(self) -> bool {
        self.0 / 100 == 4
    }
    /// 5yz.
    pub const fn is_permanent(self) -> bool {
        self.0 / 100 == 5
    }
}

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// 0-999.
    pub subject: u16,
    /// 0-999.
    pub detail: u16,
}

/// A complete reply, borrowing the input it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    raw: &'a [u8],
    code: Code,
    enhanced: Option<EnhancedCode>,
    lines: u16,
}

impl<'a> Reply<'a> {
    /// The reply code.
    pub fn code(&self) -> Code {
        self.code
    }
    /// The enhanced status code from the first line, when the server sent one.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }
    /// All the reply's bytes, line endings included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// Number of lines.
    pub fn line_count(&self) -> usize {
        self.lines as usize
    }
    /// The text of each line: what follows `xyz-` / `xyz ` (the enhanced code, if any, is
    /// kept), without the line ending.
    pub fn lines(&self) -> Lines<'a> {
        Lines { rest: self.raw }
    }
}

/// Iterator over a reply's line texts.
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        None
    }
}

/// Why bytes from the server are not a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line longer than [`MAX_LINE_LEN`].
    LineTooLong,
    /// More than [`MAX_LINES`] lines in one reply.
    TooManyLines,
    /// A line that does not start with a valid three-digit code.
    InvalidCode,
    /// The code is not followed by a space, a hyphen or the line ending.
    InvalidSeparator,
    /// A continuation line whose code differs from the first line's.
    MixedCodes {
        /// The first line's code.
        first: Code,
        /// The odd line's code.
        found: Code,
    },
    /// A CR not followed by LF, or input that ended in the middle of a line.
    MissingLineEnd,
}

/// Resumable reply parser: feed it the same growing input until a reply is complete.
#[derive(Debug, Clone, Default)]
pub struct ReplyParser {
    scanned: usize,
}

impl ReplyParser {
    /// A parser at the start of a reply.
    pub const fn new() -> Self {
        ReplyParser { scanned: 0 }
    }
    /// Parses one reply from the start of `input`.
    pub fn parse<'a>(&mut self, input: &'a [u8]) -> Result<Option<(Reply<'a>, usize)>, ReplyError> {
        let _ = input;
        Ok(None)
    }
    /// Called when the connection closed: an unfinished reply is an error.
    pub fn finish(&mut self, input: &[u8]) -> Result<(), ReplyError> {
        if input.is_empty() { Ok(()) } else { Err(ReplyError::MissingLineEnd) }
    }
    /// Forgets any partial progress.
    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}
