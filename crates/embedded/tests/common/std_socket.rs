//! std's `TcpStream` and clock as a device's blocking stack gives them, for the blocking
//! twin's tests: a socket whose "no data yet" (`WouldBlock` on Linux, after its read timeout)
//! is told as `ErrorKind::TimedOut`, and a millisecond clock.

use std::io;
use std::net::TcpStream;
use std::time::Instant;

use postline_embedded::blocking::BlockingClock;

pub struct StdClock(pub Instant);

impl BlockingClock for StdClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// std's socket with a short receive timeout; its "no data yet" told as `TimedOut`, as a
/// device stack says it.
pub struct Socket(pub TcpStream);

#[derive(Debug)]
pub struct SocketError(pub io::Error);

impl std::fmt::Display for SocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SocketError {}

impl embedded_io::Error for SocketError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self.0.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => embedded_io::ErrorKind::TimedOut,
            _ => embedded_io::ErrorKind::Other,
        }
    }
}

impl embedded_io::ErrorType for Socket {
    type Error = SocketError;
}

impl embedded_io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SocketError> {
        io::Read::read(&mut self.0, buf).map_err(SocketError)
    }
}

impl embedded_io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> Result<usize, SocketError> {
        io::Write::write(&mut self.0, buf).map_err(SocketError)
    }
    fn flush(&mut self) -> Result<(), SocketError> {
        Ok(())
    }
}
