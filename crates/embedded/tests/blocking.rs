//! The blocking twin over std's `TcpStream` (a receive timeout set, as on a device's stack):
//! a message through aiosmtpd, and a silent server given up at the driver's deadline.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use postline_embedded::blocking::{BlockingClient, BlockingClock};
use postline_embedded::{Address, Config, Error, Phase};
use postline_testkit::{Aiosmtpd, SilentListener};

struct StdClock(Instant);

impl BlockingClock for StdClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// std's socket with a short receive timeout; its "no data yet" (`WouldBlock` on Linux) told
/// as `TimedOut`, as a device stack says it.
struct Socket(TcpStream);

#[derive(Debug)]
struct SocketError(io::Error);

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

fn socket(addr: &str) -> Socket {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    Socket(s)
}

#[test]
fn a_message_through_aiosmtpd() {
    let srv = Aiosmtpd::start();
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = BlockingClient::new(
        socket(&srv.addr()),
        StdClock(Instant::now()),
        Config::new("device.example").timeout_ms(10_000),
        &mut out,
        &mut input,
    )
    .unwrap();
    c.connect().unwrap();
    let to = [Address::new("ops@example.com").unwrap()];
    let mut codes = [0u16];
    let status = c
        .send(
            Address::new("device@example.com").unwrap(),
            &to,
            b"Subject: blocking\r\n\r\n..two dots\r\n",
            &mut codes,
        )
        .unwrap();
    assert!(status.delivered && codes[0] == 250);
    c.quit().unwrap();
    let got = srv.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got[0].content, b"Subject: blocking\r\n\r\n..two dots\r\n");
}

#[test]
fn a_silent_server_is_given_up_at_the_deadline() {
    let silent = SilentListener::start();
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = BlockingClient::new(
        socket(&silent.addr()),
        StdClock(Instant::now()),
        Config::new("device.example").timeout_ms(300),
        &mut out,
        &mut input,
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(c.connect(), Err(Error::Timeout(Phase::Greeting))));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
