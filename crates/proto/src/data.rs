//! Message data encoding: the DATA transparency encoder (RFC 5321 4.5.2) and BDAT framing
//! (RFC 3030).
//!
//! A message body goes on the wire with every line ended by CRLF. After DATA the server reads
//! lines until one that is just `.`, so a line of the body that starts with `.` gets one more
//! `.` in front (the server strips it again). Bare CR and bare LF are rewritten to CRLF: servers
//! disagree on what a bare LF ends, and an attacker who can put `\n.\n` or `\r.\r` into a body
//! could otherwise end the message early for one server and not for another (SMTP smuggling).
//! The output of [`DataEncoder::new`] therefore never contains `CRLF.CRLF` before the
//! terminator [`DataEncoder::finish`] writes, whatever the input and however it is split.
//!
//! With CHUNKING (BDAT) there is no terminator and no dot-stuffing, but the chunk sizes sent in
//! `BDAT n` headers must be exact, so [`DataEncoder::encoded_len`] predicts them.
//!
//! Clean text (CRLF line ends, no line starting with `.`) is copied in one run per `encode`
//! call; the encoder only stops at bytes found by `memchr2` for CR and LF. (Without the `fast`
//! feature a plain scan finds them and no block is skipped: the same output, less code.)

use crate::buf::{find_cr_or_lf, Buffer, BufferFull};

/// At the start of a line (or of the message): a `.` here must be doubled.
const LINE_START: u8 = 0;
/// A CR was the last input byte and CRLF has been written; an LF that comes next belongs to it.
const AFTER_CR: u8 = 1;
/// Inside a line: `finish` has to end it first.
const MID_LINE: u8 = 2;

/// Streaming encoder from message bytes to what goes on the wire after DATA / inside BDAT.
///
/// The state is a few bits, so the encoder is `Copy`: a caller can take a snapshot, try an
/// encoding, and go back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataEncoder {
    stuff_dots: bool,
    state: u8,
}

impl DataEncoder {
    /// For DATA: CRLF normalisation and dot-stuffing; `finish` writes `.CRLF`.
    pub const fn new() -> Self {
        DataEncoder {
            stuff_dots: true,
            state: LINE_START,
        }
    }

    /// For BDAT: CRLF normalisation only; `finish` writes only a missing final CRLF.
    pub const fn bdat() -> Self {
        DataEncoder {
            stuff_dots: false,
            state: LINE_START,
        }
    }

    /// Upper bound of the output for `input_len` input bytes (so a caller can size a buffer).
    ///
    /// Covers `encode` of those bytes in any number of calls plus `finish`. Every input byte
    /// becomes at most two output bytes (bare CR or LF to CRLF, a line-initial `.` to `..`;
    /// a `.` that was doubled leaves the line mid-way, an LF right after a CR adds nothing), and
    /// `finish` adds at most `CRLF.CRLF`, so `2 * input_len + 5`. The bound is reached, e.g. by
    /// `"."`. Saturates instead of overflowing for lengths no slice can have.
    pub const fn max_encoded_len(input_len: usize) -> usize {
        input_len.saturating_mul(2).saturating_add(5)
    }

    /// Exact number of bytes `encode(input)` would write now, without changing state.
    ///
    /// For BDAT this is the chunk size to announce before the chunk itself.
    pub fn encoded_len(&self, input: &[u8]) -> usize {
        let mut n = 0usize;
        let mut count = |part: &[u8]| n += part.len();
        scan(self.stuff_dots, self.state, input, emitter(&mut count));
        n
    }

    /// Encodes `input`; writes nothing and returns `BufferFull` when the output would not fit.
    ///
    /// When the buffer has room for the worst case the input is encoded in a single pass;
    /// only a nearly full buffer pays for a second pass that measures the exact size first.
    pub fn encode(&mut self, input: &[u8], out: &mut impl Buffer) -> Result<(), BufferFull> {
        if out.remaining() < input.len().saturating_mul(2) {
            out.reserve_check(self.encoded_len(input))?;
        }
        let mut result = Ok(());
        let mut write = |part: &[u8]| {
            if result.is_ok() {
                result = out.extend_from_slice(part);
            }
        };
        let state = scan(self.stuff_dots, self.state, input, emitter(&mut write));
        // The size was checked above, so a failure here means the buffer broke its own
        // `remaining` promise; the state is still advanced so nothing is encoded twice.
        self.state = state;
        result
    }

    /// Bytes `finish` would write now.
    pub fn finish_len(&self) -> usize {
        self.finish_bytes().len()
    }

    /// Ends the message: a final CRLF if missing, then `.CRLF` for DATA.
    ///
    /// Afterwards the encoder is at the start of a new message, so it can be reused for the
    /// next transaction.
    pub fn finish(&mut self, out: &mut impl Buffer) -> Result<(), BufferFull> {
        out.extend_from_slice(self.finish_bytes())?;
        self.state = LINE_START;
        Ok(())
    }

    /// `CRLF` to end an open line, then `.CRLF` for DATA: a window on one string (four
    /// literals to choose from cost a device build 20 B more).
    fn finish_bytes(&self) -> &'static [u8] {
        const ALL: &[u8; 5] = b"\r\n.\r\n";
        let start = if self.state == MID_LINE { 0 } else { 2 };
        let end = if self.stuff_dots { 5 } else { 2 };
        ALL.get(start..end).unwrap_or_default()
    }
}

impl Default for DataEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The encoding itself, shared by `encode` and `encoded_len` so the two cannot disagree.
///
/// `emit` receives the output in pieces: long runs of input copied as they are (valid CRLFs
/// included), and the short insertions (`.`, `\n`, `\r\n`) between them. Returns the state
/// after `input`.
///
/// Without the `fast` feature both callers pass `emit` as a `&mut dyn FnMut` ([`emitter`]),
/// so a device build has one copy of the scan, out of line (two copies cost a Cortex-M4
/// image 250 B); with it each caller gets its own inlined copy, as fast as before.
#[cfg_attr(feature = "fast", inline(always))]
#[cfg_attr(not(feature = "fast"), inline(never))]
fn scan(stuff: bool, state: u8, input: &[u8], mut emit: impl FnMut(&[u8])) -> u8 {
    let len = input.len();
    if len == 0 {
        return state;
    }
    // The LF of a CRLF whose CR ended the previous call: already written.
    let mut pos = usize::from(state == AFTER_CR && input[0] == b'\n');
    // Start of the current run of bytes copied unchanged.
    let mut run = pos;
    let mut next_check = pos;
    if state != MID_LINE {
        if pos == len {
            return LINE_START;
        }
        if stuff && input[pos] == b'.' {
            emit(b".");
        }
    }
    loop {
        // Invariant: pos < len, and pos is not at an unhandled line start.
        // (Without the `fast` feature no block is skipped: the line-end scan alone walks.)
        if cfg!(feature = "fast") && pos >= next_check {
            loop {
                let end = skip_clean(input, pos, stuff, pos + FLUSH);
                if end - pos < FLUSH {
                    pos = end;
                    break;
                }
                // Copy what was just checked while it is still in the L1 cache.
                emit(&input[run..end]);
                run = end;
                pos = end;
            }
            // Where a block was dirty, its neighbours likely are too: let memchr2 alone walk
            // past it before paying for block checks again.
            next_check = pos + DIRTY_SKIP;
        }
        let Some(off) = find_cr_or_lf(&input[pos..]) else {
            emit(&input[run..]);
            return MID_LINE;
        };
        let p = pos + off;
        if input[p] == b'\r' {
            match input.get(p + 1) {
                Some(b'\n') => pos = p + 2,
                Some(_) => {
                    emit(&input[run..=p]);
                    emit(b"\n");
                    pos = p + 1;
                    run = pos;
                }
                None => {
                    emit(&input[run..]);
                    emit(b"\n");
                    return AFTER_CR;
                }
            }
        } else {
            // An LF not preceded by CR: CRLF pairs were consumed whole above.
            emit(&input[run..p]);
            emit(b"\r\n");
            pos = p + 1;
            run = pos;
        }
        if pos == len {
            if run < len {
                emit(&input[run..]);
            }
            return LINE_START;
        }
        if stuff && input[pos] == b'.' {
            if run < pos {
                emit(&input[run..pos]);
            }
            emit(b".");
            // The original '.' starts the next run, so the line begins with "..".
            run = pos;
        }
    }
}

/// What a caller of [`scan`] passes it: the closure itself (inlined) with the `fast`
/// feature, or as a `dyn` (one copy of the scan for every caller) without.
#[cfg(feature = "fast")]
fn emitter<F: FnMut(&[u8])>(f: &mut F) -> &mut F {
    f
}

#[cfg(not(feature = "fast"))]
fn emitter<F: FnMut(&[u8])>(f: &mut F) -> &mut dyn FnMut(&[u8]) {
    f
}

/// Bytes checked per step of [`skip_clean`].
const BLOCK: usize = 64;
/// After a dirty block, how far the plain `memchr2` loop goes before blocks are tried again.
const DIRTY_SKIP: usize = 4 * BLOCK;
/// Clean bytes checked before they are copied out, small enough to stay in the L1 cache.
const FLUSH: usize = 128 * BLOCK;

/// Skips whole blocks that need no change, returning where the `memchr2` loop should go on.
///
/// Stopping at every line end costs one `memchr2` call per line, which for ordinary text
/// (lines of ~70 bytes) is several times slower than copying. Here a block is judged clean by
/// comparing every byte pair in it (an LF exactly where a CR precedes it; no `.` after an LF
/// when stuffing), which the compiler turns into wide compares with no branch per line.
///
/// `pos` must not be at an unhandled line start; a clean block's last pair reaches one byte
/// past it, so a line-initial `.` just after a block is never skipped unseen.
#[inline(always)]
fn skip_clean(input: &[u8], mut pos: usize, stuff: bool, limit: usize) -> usize {
    let start = pos;
    // An LF here has no CR before it (a CRLF is consumed whole), so it needs the slow path.
    if input.get(pos) == Some(&b'\n') {
        return pos;
    }
    let stuff = u8::from(stuff);
    while let (Some(a), Some(b)) = (
        input.get(pos..pos + BLOCK),
        input.get(pos + 1..pos + BLOCK + 1),
    ) {
        // Two overlapping loads rather than one window: the compiler would otherwise build the
        // shifted copy with byte shifts, which costs more than loading it again.
        let (Ok(a), Ok(b)) = (<&[u8; BLOCK]>::try_from(a), <&[u8; BLOCK]>::try_from(b)) else {
            break;
        };
        let mut bad = 0u8;
        for i in 0..BLOCK {
            bad |= u8::from(a[i] == b'\r') ^ u8::from(b[i] == b'\n');
            bad |= u8::from(a[i] == b'\n') & u8::from(b[i] == b'.') & stuff;
        }
        if bad != 0 {
            break;
        }
        pos += BLOCK;
        if pos >= limit {
            break;
        }
    }
    // Never stop between the CR and LF of a pair: the LF alone would look bare.
    if pos > start && input[pos - 1] == b'\r' {
        pos -= 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::FixedBuf;
    use std::vec::Vec;

    /// Encodes `chunks` one `encode` call each, then finishes; checks the size predictions.
    fn enc_chunks(mut enc: DataEncoder, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        for c in chunks {
            let before = out.len();
            let predicted = enc.encoded_len(c);
            enc.encode(c, &mut out).unwrap();
            assert_eq!(out.len() - before, predicted, "encoded_len of {c:?}");
        }
        let before = out.len();
        let predicted = enc.finish_len();
        enc.finish(&mut out).unwrap();
        assert_eq!(out.len() - before, predicted);
        assert!(out.len() <= DataEncoder::max_encoded_len(total));
        out
    }

    fn data(input: &[u8]) -> Vec<u8> {
        // Whole, and byte by byte: both must give the same bytes.
        let whole = enc_chunks(DataEncoder::new(), &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            enc_chunks(DataEncoder::new(), &bytes),
            whole,
            "byte-split {input:?}"
        );
        whole
    }

    fn bdat(input: &[u8]) -> Vec<u8> {
        let whole = enc_chunks(DataEncoder::bdat(), &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            enc_chunks(DataEncoder::bdat(), &bytes),
            whole,
            "byte-split {input:?}"
        );
        whole
    }

    #[test]
    fn clean_message_passes_through() {
        // RFC 5321 appendix D.1 body.
        let body =
            b"Date: Thu, 21 May 1998 05:33:29 -0700\r\nFrom: John Q. Public <JQP@bar.com>\r\n\
Subject: The Next Meeting of the Board\r\nTo: Jones@xyz.com\r\n\r\nBill:\r\n\
The next meeting of the board of directors will be\r\non Tuesday.\r\nJohn.\r\n";
        let mut want = body.to_vec();
        want.extend_from_slice(b".\r\n");
        assert_eq!(data(body), want);
    }

    #[test]
    fn empty_message() {
        assert_eq!(data(b""), b".\r\n");
        assert_eq!(bdat(b""), b"");
    }

    #[test]
    fn missing_final_newline() {
        assert_eq!(data(b"hello"), b"hello\r\n.\r\n");
        assert_eq!(data(b"a\r\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(bdat(b"hello"), b"hello\r\n");
        assert_eq!(bdat(b"hello\r\n"), b"hello\r\n");
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(data(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(data(b"."), b"..\r\n.\r\n");
        assert_eq!(data(b".."), b"...\r\n.\r\n");
        assert_eq!(data(b"..\r\n"), b"...\r\n.\r\n");
        assert_eq!(data(b"a.b\r\n.c\r\n"), b"a.b\r\n..c\r\n.\r\n");
        assert_eq!(data(b"x\r\n.\r\n.\r\ny"), b"x\r\n..\r\n..\r\ny\r\n.\r\n");
        assert_eq!(bdat(b".\r\n"), b".\r\n");
    }

    #[test]
    fn embedded_terminator_is_stuffed() {
        assert_eq!(
            data(b"a\r\n.\r\nMAIL FROM:<x>\r\n"),
            b"a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"
        );
    }

    #[test]
    fn bare_lf_and_cr_become_crlf() {
        assert_eq!(data(b"a\nb\n"), b"a\r\nb\r\n.\r\n");
        assert_eq!(data(b"\n.\n"), b"\r\n..\r\n.\r\n");
        assert_eq!(data(b"\r.\r"), b"\r\n..\r\n.\r\n");
        assert_eq!(data(b"a\rb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(data(b"\r"), b"\r\n.\r\n");
        assert_eq!(data(b"\n"), b"\r\n.\r\n");
        assert_eq!(data(b"\r\r\n\n"), b"\r\n\r\n\r\n.\r\n");
        assert_eq!(data(b"\n\r"), b"\r\n\r\n.\r\n");
        // Smuggling attempts: none may produce CRLF.CRLF before the real end.
        assert_eq!(data(b"x\n.\r\ny"), b"x\r\n..\r\ny\r\n.\r\n");
        assert_eq!(data(b"x\r\n.\ny"), b"x\r\n..\r\ny\r\n.\r\n");
        assert_eq!(data(b"x\r.\r\ny"), b"x\r\n..\r\ny\r\n.\r\n");
        assert_eq!(bdat(b"a\nb\rc\r\n"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn splits_inside_crlf() {
        let e = DataEncoder::new();
        assert_eq!(enc_chunks(e, &[b"a\r", b"\nb"]), b"a\r\nb\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\r", b"", b"\nb"]), b"a\r\nb\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\r", b"\n"]), b"a\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\r", b"\n", b"\n"]), b"a\r\n\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\r", b"\r\n"]), b"a\r\n\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\r"]), b"a\r\n.\r\n");
        let b = DataEncoder::bdat();
        assert_eq!(enc_chunks(b, &[b"a\r", b"\nb"]), b"a\r\nb\r\n");
        assert_eq!(enc_chunks(b, &[b"a\r"]), b"a\r\n");
    }

    #[test]
    fn splits_before_line_initial_dot() {
        let e = DataEncoder::new();
        assert_eq!(enc_chunks(e, &[b"a\r\n", b".b"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\r", b"\n", b".b"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\r", b".b"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a\n", b"."]), b"a\r\n..\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"", b".", b"."]), b"...\r\n.\r\n");
        assert_eq!(enc_chunks(e, &[b"a", b".b"]), b"a.b\r\n.\r\n");
    }

    #[test]
    fn long_lines_around_blocks() {
        // Line ends and dots at every offset relative to the blocks the fast path checks.
        for k in 0..2 * BLOCK + 3 {
            let line = std::vec![b'a'; k];
            let mut input = Vec::new();
            let mut want = Vec::new();
            let mut want_bdat = Vec::new();
            for end in [&b"\r\n"[..], b"\n", b"\r"] {
                input.extend_from_slice(&line);
                input.extend_from_slice(end);
                input.extend_from_slice(b".x\r\n");
                want.extend_from_slice(&line);
                want.extend_from_slice(b"\r\n..x\r\n");
                want_bdat.extend_from_slice(&line);
                want_bdat.extend_from_slice(b"\r\n.x\r\n");
            }
            input.extend_from_slice(&line);
            want.extend_from_slice(&line);
            want_bdat.extend_from_slice(&line);
            if k > 0 {
                want.extend_from_slice(b"\r\n");
                want_bdat.extend_from_slice(b"\r\n");
            }
            want.extend_from_slice(b".\r\n");
            assert_eq!(data(&input), want, "line length {k}");
            assert_eq!(bdat(&input), want_bdat, "line length {k}");
        }
    }

    #[test]
    fn long_clean_text_with_late_dirt() {
        // Several flush-sized stretches of clean lines whose CRLFs fall at shifting offsets,
        // then a line-initial dot, a bare LF and a bare CR.
        let mut input = Vec::new();
        let mut k = 0;
        while input.len() < 3 * FLUSH + 5 {
            input.extend_from_slice(&b"abcdefghijklmnopqrstuvwxyz0123456789"[..k % 37]);
            input.extend_from_slice(b"\r\n");
            k += 1;
        }
        let mut want = input.clone();
        input.extend_from_slice(b".x\ny\rz");
        want.extend_from_slice(b"..x\r\ny\r\nz\r\n.\r\n");
        assert_eq!(data(&input), want);
    }

    #[test]
    fn max_len_is_reached_and_saturates() {
        assert_eq!(data(b".").len(), DataEncoder::max_encoded_len(1));
        assert_eq!(data(b"\n.").len(), DataEncoder::max_encoded_len(2));
        assert_eq!(DataEncoder::max_encoded_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn full_buffer_writes_nothing() {
        let mut storage = [0u8; 7];
        let mut out = FixedBuf::new(&mut storage);
        let mut enc = DataEncoder::new();
        // "a\r\n..\r\nb" is 8 bytes.
        assert_eq!(enc.encoded_len(b"a\n.\nb"), 8);
        assert_eq!(
            enc.encode(b"a\n.\nb", &mut out),
            Err(BufferFull { needed: 1 })
        );
        assert!(out.is_empty());
        assert_eq!(enc, DataEncoder::new());
        // An exact fit works even though the worst case (8) would not.
        enc.encode(b"a\n.\n", &mut out).unwrap();
        assert_eq!(out.as_bytes(), b"a\r\n..\r\n");
        assert_eq!(enc.finish(&mut out), Err(BufferFull { needed: 3 }));
        assert_eq!(out.len(), 7);
        out.clear();
        enc.finish(&mut out).unwrap();
        assert_eq!(out.as_bytes(), b".\r\n");
    }

    #[test]
    fn finish_resets_for_next_message() {
        let mut enc = DataEncoder::new();
        let mut out = Vec::new();
        enc.encode(b"a\r", &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        enc.encode(b"\n.", &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        assert_eq!(out, b"a\r\n.\r\n\r\n..\r\n.\r\n");
        assert_eq!(DataEncoder::default(), DataEncoder::new());
    }
}
