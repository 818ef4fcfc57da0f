//! Message data encoding: the DATA transparency encoder (RFC 5321 4.5.2) and BDAT framing
//! (RFC 3030).
//!
//! STUB: the public API below is fixed; the implementation is being written.

use crate::buf::{Buffer, BufferFull};

/// Streaming encoder from message bytes to what goes on the wire after DATA / inside BDAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataEncoder {
    stuff_dots: bool,
    state: u8,
}

impl DataEncoder {
    /// For DATA: CRLF normalisation and dot-stuffing; `finish` writes `.CRLF`.
    pub const fn new() -> Self {
        DataEncoder { stuff_dots: true, state: 0 }
    }
    /// For BDAT: CRLF normalisation only; `finish` writes only a missing final CRLF.
    pub const fn bdat() -> Self {
        DataEncoder { stuff_dots: false, state: 0 }
    }
    /// Upper bound of the output for `input_len` input bytes (so a caller can size a buffer).
    pub const fn max_encoded_len(input_len: usize) -> usize {
        input_len * 3 + 5
    }
    /// Exact number of bytes `encode(input)` would write now, without changing state.
    pub fn encoded_len(&self, input: &[u8]) -> usize {
        input.len()
    }
    /// Encodes `input`; writes nothing and returns `BufferFull` when the output would not fit.
    pub fn encode(&mut self, input: &[u8], out: &mut impl Buffer) -> Result<(), BufferFull> {
        out.extend_from_slice(input)
    }
    /// Bytes `finish` would write now.
    pub fn finish_len(&self) -> usize {
        5
    }
    /// Ends the message: a final CRLF if missing, then `.CRLF` for DATA.
    pub fn finish(&mut self, out: &mut impl Buffer) -> Result<(), BufferFull> {
        out.extend_from_slice(b"\r\n.\r\n")
    }
}

impl Default for DataEncoder {
    fn default() -> Self {
        Self::new()
    }
}
