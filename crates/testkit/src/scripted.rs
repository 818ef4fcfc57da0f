//! [`ScriptedServer`]: a scripted SMTP peer over real TCP on 127.0.0.1, playing a list of
//! [`Step`]s on each connection and reporting what it received ([`ScriptReport`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::lossy;
use crate::process::POLL;

mod conn;

/// Bound on any single read of the [`ScriptedServer`] and on waiting for a connection.
pub const SCRIPT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`ScriptedServer::finish`] waits for the script thread.
pub const SCRIPT_FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Once [`ScriptedServer::finish`] was called, a read that gets nothing for this long fails.
pub const SCRIPT_FINISH_GRACE: Duration = Duration::from_secs(2);
/// How long [`Step::Hang`] keeps the socket open at most.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(60);

/// One step of a [`ScriptedServer`] script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read one line (up to LF) and check that, without its CRLF, it starts with this prefix
    /// (ASCII case-insensitively) and that it ends with CRLF; a mismatch is recorded as a
    /// failure and the script goes on. EOF or a timeout is a failure that ends the connection.
    Expect(String),
    /// Read lines until the end-of-data line `.` (CRLF `.` CRLF, or `.` CRLF as the first line).
    ExpectData,
    /// Read exactly this many bytes (a BDAT chunk).
    ExpectBytes(usize),
    /// Wait.
    Sleep(Duration),
    /// Close the connection (later steps are skipped for this connection).
    Close,
    /// Neither read nor write, but keep the socket open until [`ScriptedServer::finish`] is
    /// called, the server is dropped, or [`HANG_TIMEOUT`] passes; then close it (later steps are
    /// skipped).
    Hang,
    /// Write these bytes one at a time, waiting the interval after each.
    SendSlowly(Vec<u8>, Duration),
    /// Abort the connection: `SO_LINGER` 0, then close, so the client gets a TCP RST instead
    /// of a FIN (later steps are skipped). Nothing pending is read first.
    Reset,
}

impl Step {
    /// `Step::Send` of a string, as is (include the CRLF).
    pub fn send(s: impl AsRef<[u8]>) -> Step {
        Step::Send(s.as_ref().to_vec())
    }
    /// `Step::Send` of one reply line, CRLF appended.
    pub fn reply(line: &str) -> Step {
        Step::Send(format!("{line}\r\n").into_bytes())
    }
    /// `Step::Expect` of a prefix.
    pub fn expect(prefix: &str) -> Step {
        Step::Expect(prefix.to_owned())
    }
}

/// A `220` greeting, an expected `EHLO`, and a multiline `250` reply: `250-scripted.test`
/// followed by one line per entry of `ehlo_lines` (e.g. `"PIPELINING"`, `"SIZE 1000"`), the
/// last one with `250 `. With no `ehlo_lines` the reply is `250 scripted.test`.
pub fn greeting_and_ehlo(ehlo_lines: &[&str]) -> Vec<Step> {
    let mut lines = vec!["scripted.test"];
    lines.extend_from_slice(ehlo_lines);
    let mut reply = String::new();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        reply.push_str(&format!("250{sep}{l}\r\n"));
    }
    vec![
        Step::reply("220 scripted.test ESMTP postline scripted server"),
        Step::expect("EHLO"),
        Step::Send(reply.into_bytes()),
    ]
}

/// An LMTP store taking one message for two recipients, up to its data: greeting, LHLO
/// with PIPELINING, MAIL, two RCPTs and DATA answered together (250, 250, 250, 354), the
/// message read. The replies after the data are the caller's `after`.
pub fn lmtp_two_recipients(after: Vec<Step>) -> Vec<Step> {
    let mut steps = vec![
        Step::reply("220 store.test LMTP"),
        Step::expect("LHLO "),
        Step::send("250-store.test\r\n250 PIPELINING\r\n"),
        Step::expect("MAIL FROM:"),
        Step::expect("RCPT TO:"),
        Step::expect("RCPT TO:"),
        Step::expect("DATA"),
        Step::send("250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 OK\r\n"),
        Step::ExpectData,
    ];
    steps.extend(after);
    steps
}

/// What a [`ScriptedServer`] saw.
#[derive(Clone, Debug, Default)]
pub struct ScriptReport {
    /// Everything the client sent, all connections concatenated in order.
    pub received: Vec<u8>,
    /// What each accepted connection received.
    pub connections: Vec<Vec<u8>>,
    /// Every mismatch, EOF, timeout or I/O error, in order; empty when the script played out.
    pub failures: Vec<String>,
}

impl ScriptReport {
    /// `received` as (lossy) text.
    pub fn received_str(&self) -> String {
        lossy(&self.received)
    }

    /// Panics with the failures and the received bytes unless there were no failures.
    pub fn assert_ok(&self) {
        assert!(
            self.failures.is_empty(),
            "scripted server failures:\n  {}\nreceived:\n{}",
            self.failures.join("\n  "),
            self.received_str()
        );
    }
}

#[derive(Default)]
struct ScriptShared {
    /// When finish() was called (or the server dropped).
    finish_at: Mutex<Option<Instant>>,
    finish_cv: Condvar,
    connections: Mutex<Vec<Vec<u8>>>,
    failures: Mutex<Vec<String>>,
}

impl ScriptShared {
    fn finishing_since(&self) -> Option<Instant> {
        *self.finish_at.lock().unwrap()
    }
    fn request_finish(&self) {
        let mut f = self.finish_at.lock().unwrap();
        if f.is_none() {
            *f = Some(Instant::now());
        }
        self.finish_cv.notify_all();
    }
    fn fail(&self, msg: String) {
        self.failures.lock().unwrap().push(msg);
    }
    /// Whether a wait that started at `start` is over.
    fn expired(&self, start: Instant, grace: Duration) -> bool {
        start.elapsed() >= SCRIPT_IO_TIMEOUT
            || self.finishing_since().is_some_and(|t| t.elapsed() >= grace)
    }
}

/// A scripted SMTP peer on 127.0.0.1: accepts connections (one by default) and plays the
/// script on each, recording what the client sent and every deviation.
pub struct ScriptedServer {
    port: u16,
    shared: Arc<ScriptShared>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    /// Accepts one connection and plays `script` on it.
    pub fn start(script: Vec<Step>) -> ScriptedServer {
        Self::accept_n(script, 1)
    }

    /// Accepts `n` connections one after the other, replaying `script` on each. A connection
    /// that does not arrive within [`SCRIPT_IO_TIMEOUT`] (or by the time [`finish`](Self::finish)
    /// is called) is a failure.
    pub fn accept_n(script: Vec<Step>, n: usize) -> ScriptedServer {
        Self::bind("127.0.0.1:0".parse().expect("socket address"), script, n)
    }

    /// Like [`accept_n`](Self::accept_n), listening on `addr` (for instance one of several
    /// 127.0.0.x exchangers sharing a port, see [`crate::shared_port_among`]). Panics if
    /// `addr` cannot be bound.
    pub fn bind(addr: SocketAddr, script: Vec<Step>, n: usize) -> ScriptedServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let port = listener.local_addr().expect("local_addr").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let shared = Arc::new(ScriptShared::default());
        let sh = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("scripted-smtp-{port}"))
            .spawn(move || conn::run_script_server(listener, script, n, &sh))
            .expect("spawn script thread");
        ScriptedServer {
            port,
            shared,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Ends any [`Step::Hang`], lets pending reads give up after [`SCRIPT_FINISH_GRACE`] of
    /// silence, waits (at most [`SCRIPT_FINISH_TIMEOUT`]) for the script thread, and reports.
    pub fn finish(mut self) -> ScriptReport {
        self.shared.request_finish();
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + SCRIPT_FINISH_TIMEOUT;
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            if t.is_finished() {
                if t.join().is_err() {
                    self.shared.fail("script thread panicked".into());
                }
            } else {
                self.shared.fail(format!(
                    "script thread still running after {SCRIPT_FINISH_TIMEOUT:?}"
                ));
            }
        }
        let connections = self.shared.connections.lock().unwrap().clone();
        ScriptReport {
            received: connections.concat(),
            connections,
            failures: self.shared.failures.lock().unwrap().clone(),
        }
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        // The thread ends by itself (bounded waits); don't block the test here.
        self.shared.request_finish();
    }
}
