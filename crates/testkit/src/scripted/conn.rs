//! Playing a script: accepting the connections of a [`ScriptedServer`](super::ScriptedServer)
//! and running the steps on each, recording what arrives and every deviation.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{ScriptShared, Step, HANG_TIMEOUT, SCRIPT_FINISH_GRACE, SCRIPT_IO_TIMEOUT};
use crate::lossy;
use crate::process::POLL;

/// The longest line a step reads.
const MAX_LINE: usize = 1 << 20;

pub(super) fn run_script_server(
    listener: TcpListener,
    script: Vec<Step>,
    n: usize,
    shared: &ScriptShared,
) {
    for conn_no in 0..n {
        let start = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break Some(s),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if shared.expired(start, Duration::ZERO) {
                        break None;
                    }
                    thread::sleep(POLL);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    shared.fail(format!("connection {conn_no}: accept: {e}"));
                    break None;
                }
            }
        };
        let Some(stream) = stream else {
            shared.fail(format!(
                "connection {conn_no}: no client connected (expected {n} connection(s))"
            ));
            return;
        };
        shared.connections.lock().unwrap().push(Vec::new());
        let mut conn = ScriptConn {
            stream,
            buf: Vec::new(),
            conn_no,
            shared,
        };
        conn.run(&script);
    }
}

struct ScriptConn<'a> {
    stream: TcpStream,
    /// Bytes read but not yet consumed by a step.
    buf: Vec<u8>,
    conn_no: usize,
    shared: &'a ScriptShared,
}

enum ReadError {
    Eof,
    Timeout,
    TooLong,
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => write!(f, "EOF (client closed the connection)"),
            ReadError::Timeout => write!(f, "timed out"),
            ReadError::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
            ReadError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl ScriptConn<'_> {
    fn fail(&self, step: usize, msg: String) {
        self.shared
            .fail(format!("connection {} step {step}: {msg}", self.conn_no));
    }

    fn record(&self, data: &[u8]) {
        let mut c = self.shared.connections.lock().unwrap();
        if let Some(last) = c.last_mut() {
            last.extend_from_slice(data);
        }
    }

    /// Reads more bytes into `buf`, waiting at most the script's bounds.
    fn fill(&mut self, start: Instant) -> Result<(), ReadError> {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut tmp = [0u8; 8192];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => {
                    self.record(&tmp[..n]);
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.shared.expired(start, SCRIPT_FINISH_GRACE) {
                        return Err(ReadError::Timeout);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// One line including its LF.
    fn read_line(&mut self) -> Result<Vec<u8>, ReadError> {
        let start = Instant::now();
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=pos).collect());
            }
            if self.buf.len() > MAX_LINE {
                return Err(ReadError::TooLong);
            }
            self.fill(start)?;
        }
    }

    fn read_exact_n(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        let start = Instant::now();
        while self.buf.len() < n {
            self.fill(start)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let _ = self.stream.set_write_timeout(Some(SCRIPT_IO_TIMEOUT));
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Reads (without waiting) whatever the client has already sent, so that it is recorded
    /// and closing sends a FIN rather than a reset.
    fn drain_available(&mut self) {
        if self.stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut tmp = [0u8; 8192];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => break,
                Ok(n) => self.record(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.set_nonblocking(false);
    }

    fn close(&mut self) {
        self.drain_available();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn run(&mut self, script: &[Step]) {
        let _ = self.stream.set_nonblocking(false);
        let _ = self.stream.set_nodelay(true);
        for (i, step) in script.iter().enumerate() {
            match step {
                Step::Send(data) => {
                    if let Err(e) = self.write(data) {
                        self.fail(i, format!("sending {:?}: {e}", lossy(data)));
                        break;
                    }
                }
                Step::SendSlowly(data, interval) => {
                    let mut ok = true;
                    for b in data {
                        if let Err(e) = self.write(std::slice::from_ref(b)) {
                            self.fail(i, format!("sending slowly {:?}: {e}", lossy(data)));
                            ok = false;
                            break;
                        }
                        thread::sleep(*interval);
                    }
                    if !ok {
                        break;
                    }
                }
                Step::Expect(prefix) => match self.read_line() {
                    Ok(line) => {
                        let text = line.strip_suffix(b"\n").unwrap_or(&line);
                        let text = text.strip_suffix(b"\r").unwrap_or(text);
                        if !line.ends_with(b"\r\n") {
                            self.fail(i, format!("line {:?} is not CRLF-terminated", lossy(&line)));
                        }
                        let p = prefix.as_bytes();
                        if text.len() < p.len() || !text[..p.len()].eq_ignore_ascii_case(p) {
                            self.fail(
                                i,
                                format!(
                                    "expected a line starting with {prefix:?}, got {:?}",
                                    lossy(&line)
                                ),
                            );
                        }
                    }
                    Err(e) => {
                        self.fail(i, format!("expected a line starting with {prefix:?}: {e}"));
                        break;
                    }
                },
                Step::ExpectData => {
                    let mut first = true;
                    let mut prev_crlf = true;
                    let mut err = None;
                    loop {
                        match self.read_line() {
                            Ok(line) => {
                                if line == b".\r\n" && (first || prev_crlf) {
                                    break;
                                }
                                prev_crlf = line.ends_with(b"\r\n");
                                first = false;
                            }
                            Err(e) => {
                                err = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = err {
                        self.fail(
                            i,
                            format!("expected message data ending with CRLF.CRLF: {e}"),
                        );
                        break;
                    }
                }
                Step::ExpectBytes(n) => {
                    if let Err(e) = self.read_exact_n(*n) {
                        self.fail(i, format!("expected {n} bytes: {e}"));
                        break;
                    }
                }
                Step::Sleep(d) => thread::sleep(*d),
                Step::Close => break,
                Step::Reset => {
                    if let Err(e) = set_linger_zero(&self.stream) {
                        self.fail(i, format!("SO_LINGER 0: {e}"));
                        break;
                    }
                    // Dropping the socket now (not shutting it down) sends the RST.
                    return;
                }
                Step::Hang => {
                    let start = Instant::now();
                    let mut f = self.shared.finish_at.lock().unwrap();
                    while f.is_none() && start.elapsed() < HANG_TIMEOUT {
                        let left = HANG_TIMEOUT.saturating_sub(start.elapsed());
                        f = self.shared.finish_cv.wait_timeout(f, left).unwrap().0;
                    }
                    break;
                }
            }
        }
        self.close();
    }
}

/// `SO_LINGER` with a zero timeout: closing the socket then aborts the connection with a RST.
/// std has no stable `set_linger`, and a libc dependency for one call is not worth it.
#[cfg(target_os = "linux")]
fn set_linger_zero(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let value = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a pointer to a live `struct linger` of that size.
    let rc = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &value,
            std::mem::size_of::<Linger>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_linger_zero(_stream: &TcpStream) -> io::Result<()> {
    Err(io::Error::new(
        ErrorKind::Unsupported,
        "SO_LINGER 0 is only wired up on Linux",
    ))
}
