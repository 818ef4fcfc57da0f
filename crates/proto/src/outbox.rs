//! The session's pending output: bytes the driver may write now, and commands held back.
//!
//! Without PIPELINING a client must wait for each reply before the next command (RFC 5321
//! 4.3.1). Rather than keep the envelope around until then (which would need storage for every
//! recipient), the session encodes a whole transaction at once and holds the unsent lines here,
//! releasing one line per reply. With PIPELINING everything is released at once, so a whole
//! group leaves in one write.

use crate::buf::{Buffer, BufferFull};

/// Caller-owned output: what the session wrote, split into released and held-back bytes.
#[derive(Debug)]
pub struct Outbox<B> {
    buf: B,
    released: usize,
    /// Bytes from the front up to and including the last end of data (the terminator or
    /// `BDAT n LAST` chunk) not yet written; 0 when it is on the wire or none is pending.
    end_unwritten: usize,
}

impl<B: Buffer> Outbox<B> {
    /// Wraps empty storage (`Vec::new()`, or a [`crate::FixedBuf`]).
    pub fn new(buf: B) -> Self {
        Outbox {
            buf,
            released: 0,
            end_unwritten: 0,
        }
    }

    /// The bytes that may be written to the server now. Write them (all, or a prefix) and
    /// call [`Outbox::advance`] with the count written.
    pub fn transmit(&self) -> &[u8] {
        &self.buf.as_bytes()[..self.released]
    }

    /// Records that the first `n` bytes of [`Outbox::transmit`] were written.
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.released);
        self.buf.drain_front(n);
        self.released -= n;
        self.end_unwritten = self.end_unwritten.saturating_sub(n);
    }

    /// Forgets everything, written or not: for a driver giving the storage back (a
    /// [`crate::FixedBuf`] zeroes it, since it may hold credentials never written).
    pub fn discard(&mut self) {
        self.buf.truncate(0);
        self.released = 0;
        self.end_unwritten = 0;
    }

    /// True while an end of data is released but not wholly written. A server that is gone
    /// by now cannot have accepted that message; once it is written and no reply came, the
    /// message may or may not have been delivered.
    pub fn end_of_data_unwritten(&self) -> bool {
        self.end_unwritten > 0
    }

    /// How many bytes of [`Outbox::transmit`] reach up to and including the unwritten end
    /// of data, if one is pending.
    pub fn end_of_data_offset(&self) -> Option<usize> {
        (self.end_unwritten > 0).then_some(self.end_unwritten)
    }

    /// True when nothing is waiting to be written, released or held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes held back until a reply allows them out.
    pub fn held(&self) -> usize {
        self.buf.len() - self.released
    }

    /// Room left in the storage.
    pub fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    /// The underlying storage.
    pub fn buffer(&self) -> &B {
        &self.buf
    }

    pub(crate) fn buf_mut(&mut self) -> &mut B {
        &mut self.buf
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Marks everything in the buffer, which ends with an end of data, as due before that
    /// end of data counts as written.
    pub(crate) fn mark_end_of_data(&mut self) {
        self.end_unwritten = self.buf.len();
    }

    /// Releases everything written so far.
    pub(crate) fn release_all(&mut self) {
        self.released = self.buf.len();
    }

    /// Releases the next held command line.
    pub(crate) fn release_line(&mut self) {
        let held = &self.buf.as_bytes()[self.released..];
        self.released += match crate::buf::find(b'\n', held) {
            Some(i) => i + 1,
            None => held.len(),
        };
    }

    /// Takes back every held byte (a transaction that failed before its lines went out).
    pub(crate) fn drop_held(&mut self) {
        self.buf.truncate(self.released);
    }

    /// Takes back everything after `len` (a write that could not be completed).
    pub(crate) fn rollback(&mut self, len: usize) {
        self.buf.truncate(len.max(self.released));
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), BufferFull> {
        self.buf.extend_from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::FixedBuf;

    #[test]
    fn releases_line_by_line() {
        let mut s = [0u8; 64];
        let mut o = Outbox::new(FixedBuf::new(&mut s));
        o.write(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
            .unwrap();
        assert_eq!(o.transmit(), b"");
        o.release_line();
        assert_eq!(o.transmit(), b"MAIL FROM:<a@b>\r\n");
        o.advance(5);
        assert_eq!(o.transmit(), b"FROM:<a@b>\r\n");
        o.advance(100);
        o.release_line();
        assert_eq!(o.transmit(), b"RCPT TO:<c@d>\r\n");
        o.drop_held();
        assert_eq!(o.held(), 0);
        o.release_all();
        assert_eq!(o.transmit(), b"RCPT TO:<c@d>\r\n");
    }
}
