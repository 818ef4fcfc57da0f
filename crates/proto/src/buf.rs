//! Caller-owned output storage.
//!
//! The core never allocates on its own: every byte it produces goes into a [`Buffer`] the
//! driver owns. With `alloc` a `Vec<u8>` grows as needed; without it a [`FixedBuf`] over a
//! borrowed slice refuses what does not fit, and refuses it whole, so a caller can flush and
//! retry without ever seeing half a command.

use core::fmt;
use zeroize::Zeroize;

/// The output did not fit in the caller's buffer; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferFull {
    /// How many more bytes the operation needed.
    pub needed: usize,
}

impl core::error::Error for BufferFull {}

impl fmt::Display for BufferFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output buffer full ({} more bytes needed)", self.needed)
    }
}

/// Append-only byte storage the core writes into.
pub trait Buffer {
    /// Bytes written so far and not yet drained.
    fn as_bytes(&self) -> &[u8];

    /// How many more bytes fit; `usize::MAX` for storage that grows.
    fn remaining(&self) -> usize;

    /// Appends `data`, or writes nothing and says how much room was missing.
    fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), BufferFull>;

    /// Removes the first `n` bytes (they were written to the wire).
    fn drain_front(&mut self, n: usize);

    /// Forgets everything after the first `len` bytes (used to take back unsent commands).
    fn truncate(&mut self, len: usize);

    /// Number of bytes held.
    fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True when nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fails without writing when `n` bytes would not fit.
    fn reserve_check(&self, n: usize) -> Result<(), BufferFull> {
        let room = self.remaining();
        if n > room {
            Err(BufferFull { needed: n - room })
        } else {
            Ok(())
        }
    }

    /// Appends several pieces atomically: all of them or none.
    fn extend_all(&mut self, parts: &[&[u8]]) -> Result<(), BufferFull> {
        let total = parts.iter().map(|p| p.len()).sum();
        self.reserve_check(total)?;
        for p in parts {
            self.extend_from_slice(p)?;
        }
        Ok(())
    }
}

#[cfg(feature = "alloc")]
impl Buffer for alloc::vec::Vec<u8> {
    fn as_bytes(&self) -> &[u8] {
        self
    }

    fn remaining(&self) -> usize {
        usize::MAX - self.len()
    }

    fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), BufferFull> {
        alloc::vec::Vec::extend_from_slice(self, data);
        Ok(())
    }

    fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len());
        self.drain(..n);
    }

    fn truncate(&mut self, len: usize) {
        alloc::vec::Vec::truncate(self, len);
    }
}

/// A [`Buffer`] over a borrowed slice, for targets without an allocator.
#[derive(Debug)]
pub struct FixedBuf<'a> {
    storage: &'a mut [u8],
    len: usize,
}

impl<'a> FixedBuf<'a> {
    /// Wraps `storage`, initially empty.
    pub fn new(storage: &'a mut [u8]) -> Self {
        Self { storage, len: 0 }
    }

    /// Total capacity of the underlying slice.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// Forgets everything held (zeroed).
    pub fn clear(&mut self) {
        self.forget(0);
    }
}

impl Buffer for FixedBuf<'_> {
    fn as_bytes(&self) -> &[u8] {
        &self.storage[..self.len]
    }

    /// The count kept, rather than the default's length of [`Buffer::as_bytes`], whose
    /// slicing is checked at every call (44 B of a device build).
    fn len(&self) -> usize {
        self.len
    }

    fn remaining(&self) -> usize {
        self.storage.len() - self.len
    }

    fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), BufferFull> {
        let free = self.storage.get_mut(self.len..).unwrap_or_default();
        let Some(dst) = free.get_mut(..data.len()) else {
            return Err(BufferFull {
                needed: data.len() - free.len(),
            });
        };
        // With `fast`, `memcpy`. Without it, a byte loop: `copy_from_slice` checks the
        // lengths (equal here) in an out-of-line function with its own panic, 34 B more of a
        // device build, and a device's writes are short command lines and message runs.
        #[cfg(feature = "fast")]
        dst.copy_from_slice(data);
        #[cfg(not(feature = "fast"))]
        for (d, s) in dst.iter_mut().zip(data) {
            *d = *s;
        }
        self.len += data.len();
        Ok(())
    }

    fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.storage.copy_within(n..self.len, 0);
        self.forget(self.len - n);
    }

    fn truncate(&mut self, len: usize) {
        self.forget(self.len.min(len));
    }
}

impl FixedBuf<'_> {
    /// Shortens to `len`, zeroing what is let go: the storage is the caller's and may have
    /// held an AUTH line, which must not outlive its use there.
    fn forget(&mut self, len: usize) {
        if let Some(gone) = self.storage.get_mut(len..self.len) {
            gone.zeroize();
        }
        self.len = len;
    }
}

/// Spells `n` in decimal into `digits`, returning the used tail: the one number writer of
/// the crate (SIZE=, BDAT, dates), without `core::fmt`, whose number formatting costs a
/// device kilobytes of code.
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    // `i` is in range (it stopped at 0 at the latest); `get` spares the panic path.
    digits.get(i..).unwrap_or_default()
}

/// Where `byte` first occurs in `hay`: memchr's vectorised search with the `fast` feature, a
/// plain scan without it.
#[inline]
pub(crate) fn find(byte: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(feature = "fast")]
    return memchr::memchr(byte, hay);
    #[cfg(not(feature = "fast"))]
    return hay.iter().position(|&b| b == byte);
}

/// Where the first CR or LF is in `hay` (see [`find`]).
#[inline]
pub(crate) fn find_cr_or_lf(hay: &[u8]) -> Option<usize> {
    #[cfg(feature = "fast")]
    return memchr::memchr2(b'\r', b'\n', hay);
    #[cfg(not(feature = "fast"))]
    return hay.iter().position(|&b| b == b'\r' || b == b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_buf_refuses_whole() {
        let mut s = [0u8; 4];
        let mut b = FixedBuf::new(&mut s);
        b.extend_from_slice(b"abc").unwrap();
        assert_eq!(b.extend_from_slice(b"de"), Err(BufferFull { needed: 1 }));
        assert_eq!(b.as_bytes(), b"abc");
        b.drain_front(2);
        assert_eq!(b.as_bytes(), b"c");
        b.extend_from_slice(b"de").unwrap();
        assert_eq!(b.as_bytes(), b"cde");
    }

    #[test]
    fn extend_all_is_atomic() {
        let mut s = [0u8; 4];
        let mut b = FixedBuf::new(&mut s);
        assert!(b.extend_all(&[b"ab", b"cde"]).is_err());
        assert!(b.is_empty());
    }

    #[test]
    fn decimal() {
        let mut s = [0u8; 32];
        let mut b = FixedBuf::new(&mut s);
        let mut digits = [0u8; 20];
        b.extend_from_slice(super::decimal(0, &mut digits)).unwrap();
        b.extend_from_slice(b" ").unwrap();
        b.extend_from_slice(super::decimal(u64::MAX, &mut digits))
            .unwrap();
        assert_eq!(b.as_bytes(), b"0 18446744073709551615");
    }
}
