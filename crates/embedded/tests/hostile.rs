//! Hostile and careless peers, in memory on a virtual clock: replies sent before the command
//! they answer, a reply after the last one, a refusal longer than the input buffer, a call
//! after a timeout, a call out of order, an abandoned call, and what is left of the
//! credentials in the caller's buffer. Each asserts what becomes of the message.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use embedded_io::ErrorKind;
use postline_embedded::blocking::{BlockingClient, BlockingClock};
use postline_embedded::proto::session::{FailedAt, SessionError, UseError};
use postline_embedded::{Address, Client, Clock, Config, Error, Phase};

/// What the peer does next.
enum Peer {
    /// Waits until the client has written this (after what earlier steps matched).
    Wait(&'static str),
    /// Sends these bytes (all that follow each other go out as one segment).
    Send(Vec<u8>),
    /// Fails the client's next write of anything (a broken link).
    FailWrites,
}

/// The wire and the time, shared with the test.
#[derive(Clone, Default)]
struct Wire {
    written: Rc<RefCell<Vec<u8>>>,
    now: Rc<Cell<u64>>,
    reads: Rc<Cell<u32>>,
}

/// A blocking stream over a script; a read with nothing to give is the socket's receive
/// timeout (100 virtual ms pass), as on a device's stack.
struct Stream {
    script: VecDeque<Peer>,
    pending: Vec<u8>,
    seen: usize,
    fail_writes: bool,
    wire: Wire,
}

fn stream(script: Vec<Peer>) -> (Stream, Wire) {
    let wire = Wire::default();
    let s = Stream {
        script: script.into(),
        pending: Vec::new(),
        seen: 0,
        fail_writes: false,
        wire: wire.clone(),
    };
    (s, wire)
}

impl Stream {
    fn advance(&mut self) {
        loop {
            match self.script.front() {
                Some(Peer::Wait(w)) => {
                    let written = self.wire.written.borrow();
                    let Some(i) = written[self.seen..]
                        .windows(w.len())
                        .position(|x| x == w.as_bytes())
                    else {
                        return;
                    };
                    self.seen += i + w.len();
                }
                Some(Peer::Send(b)) => self.pending.extend_from_slice(b),
                Some(Peer::FailWrites) => self.fail_writes = true,
                None => return,
            }
            self.script.pop_front();
        }
    }
}

impl embedded_io::ErrorType for Stream {
    type Error = ErrorKind;
}

impl embedded_io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let reads = self.wire.reads.get() + 1;
        assert!(reads < 100_000, "the client kept reading");
        self.wire.reads.set(reads);
        self.advance();
        if self.pending.is_empty() {
            self.wire.now.set(self.wire.now.get() + 100);
            return Err(ErrorKind::TimedOut);
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl embedded_io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.advance();
        if self.fail_writes {
            return Err(ErrorKind::ConnectionReset);
        }
        self.wire.written.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

struct VirtualClock(Rc<Cell<u64>>);

impl BlockingClock for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

fn send(s: &str) -> Peer {
    Peer::Send(s.as_bytes().to_vec())
}

/// The greeting and an EHLO reply with `ext` lines.
fn hello(ext: &str) -> Vec<Peer> {
    vec![
        send("220 mx.example ESMTP\r\n"),
        Peer::Wait("EHLO device.example\r\n"),
        Peer::Send(format!("250-mx.example\r\n{ext}250 8BITMIME\r\n").into_bytes()),
    ]
}

/// Sends through `script` with a 2-second cap on every wait: the client, then `f`.
fn with_client<R>(
    script: Vec<Peer>,
    config: Config<'_>,
    f: impl FnOnce(&mut BlockingClient<'_, Stream, VirtualClock>) -> R,
) -> (R, Wire) {
    let (s, wire) = stream(script);
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = BlockingClient::new(
        s,
        VirtualClock(wire.now.clone()),
        config.timeout_ms(2_000),
        &mut out,
        &mut input,
    )
    .unwrap();
    (f(&mut c), wire)
}

fn addr(s: &str) -> Address<&str> {
    Address::new(s).unwrap()
}

fn written(wire: &Wire) -> String {
    String::from_utf8_lossy(&wire.written.borrow()).into_owned()
}

fn is_unexpected(r: &Result<impl std::fmt::Debug, Error<ErrorKind>>, value: u16) -> bool {
    matches!(r, Err(Error::Protocol(SessionError::UnexpectedReply { code })) if code.value() == value)
}

/// An EHLO reply sent together with the greeting, before EHLO: taken for EHLO's answer, it
/// would let the server's earlier text decide the capabilities (and every later reply would
/// answer the command before it). The session ends before EHLO is even written.
#[test]
fn a_reply_riding_with_the_greeting_ends_the_session_before_ehlo() {
    let script = vec![send(
        "220 mx.example ESMTP\r\n250-mx.example\r\n250 AUTH PLAIN\r\n",
    )];
    let (r, wire) = with_client(script, Config::new("device.example"), |c| c.connect());
    assert!(is_unexpected(&r, 250), "{r:?}");
    assert_eq!(written(&wire), "", "nothing is said to such a server");
}

/// A `250` after the end of data's `250`: the message was taken (reported delivered, once),
/// and the stray reply ends the session at the next call, which sends nothing. Every call
/// after that fails at once with a transient error: the queue keeps its mail.
#[test]
fn a_reply_after_the_last_one_fails_the_next_call_not_the_delivered_message() {
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        send("250 2.0.0 queued\r\n250 2.0.0 and again\r\n"),
    ]);
    let ((first, second, third), wire) = with_client(script, Config::new("device.example"), |c| {
        c.connect().unwrap();
        let to = [addr("ops@example.com")];
        let mut codes = [0u16];
        let first = c.send(addr("device@example.com"), &to, b"one\r\n", &mut codes);
        let second = c.send(addr("device@example.com"), &to, b"two\r\n", &mut codes);
        let third = c.send(addr("device@example.com"), &to, b"three\r\n", &mut codes);
        (first, second, third)
    });
    let first = first.unwrap();
    assert!(first.delivered && first.code.unwrap().value() == 250);
    assert!(is_unexpected(&second, 250), "{second:?}");
    assert!(matches!(third, Err(Error::Broken)), "{third:?}");
    assert!(third.unwrap_err().is_transient());
    assert_eq!(
        written(&wire).matches("MAIL FROM").count(),
        1,
        "{}",
        written(&wire)
    );
}

/// No 354 by the deadline: the next call on the same client does not send into a session
/// out of step (a late 354 would be taken for the next MAIL's answer); it fails at once,
/// transiently, so the mail is tried again on a new connection, not dropped.
#[test]
fn after_a_timeout_every_call_is_a_transient_failure_that_sends_nothing() {
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n"),
    ]);
    let ((first, second, quit), wire) = with_client(script, Config::new("device.example"), |c| {
        c.connect().unwrap();
        let to = [addr("ops@example.com")];
        let mut codes = [0u16];
        let first = c.send(addr("device@example.com"), &to, b"one\r\n", &mut codes);
        let second = c.send(addr("device@example.com"), &to, b"one\r\n", &mut codes);
        let quit = c.quit();
        (first, second, quit)
    });
    assert!(
        matches!(first, Err(Error::Timeout(Phase::DataStart))),
        "{first:?}"
    );
    assert!(matches!(second, Err(Error::Broken)), "{second:?}");
    assert!(second.unwrap_err().is_transient());
    assert!(matches!(quit, Err(Error::Broken)), "{quit:?}");
    let w = written(&wire);
    assert_eq!(w.matches("MAIL FROM").count(), 1, "{w}");
    assert!(!w.contains("QUIT"), "{w}");
}

/// A refusal of the end of data whose explanation is longer than the 512-byte input buffer:
/// the server answered, so the message is refused (with the code and first line), never in
/// doubt (which a queue would have to send again, or lose).
#[test]
fn a_refusal_longer_than_the_input_buffer_is_a_refusal_not_in_doubt() {
    let mut long = String::new();
    for _ in 0..9 {
        long.push_str(
            "550-5.7.26 This mail has been blocked because the sender is unauthenticated.\r\n",
        );
    }
    long.push_str("550 5.7.26 See the policy page.\r\n");
    assert!(long.len() > 700);
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        Peer::Send(long.into_bytes()),
        Peer::Wait("RCPT TO:<second@example.com>\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        send("250 2.0.0 queued\r\n"),
    ]);
    let ((first, text, second), _) = with_client(script, Config::new("device.example"), |c| {
        c.connect().unwrap();
        let mut codes = [0u16];
        let first = c.send(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            b"x\r\n",
            &mut codes,
        );
        let text = c.last_reply().map(|r| r.text().to_vec());
        let second = c.send(
            addr("device@example.com"),
            &[addr("second@example.com")],
            b"y\r\n",
            &mut codes,
        );
        (first, text, second)
    });
    let first = first.unwrap();
    assert!(!first.delivered);
    assert_eq!(first.failed_at, Some(FailedAt::Message));
    assert_eq!(first.code.unwrap().value(), 550);
    assert!(text
        .unwrap()
        .starts_with(b"5.7.26 This mail has been blocked"));
    // The session is still in step: the next message goes through.
    assert!(second.unwrap().delivered);
}

/// EHLO's reply is not shortened (every line is a capability): one longer than the input
/// buffer is a clear error, not a guess.
#[test]
fn an_ehlo_reply_longer_than_the_input_buffer_is_a_clear_error() {
    let mut ext = String::new();
    for i in 0..40 {
        ext.push_str(&format!("250-X-EXTENSION-{i:02} with some parameters\r\n"));
    }
    let (r, _) = with_client(hello(&ext), Config::new("device.example"), |c| c.connect());
    assert!(matches!(r, Err(Error::ReplyTooLong)), "{r:?}");
}

/// Calls out of order fail at once and send nothing: a message before `connect` (it would go
/// without the AUTH the config asks for), and `connect` twice (it would wait out a greeting
/// that already came).
#[test]
fn calls_out_of_order_fail_at_once_and_send_nothing() {
    let mut script = hello("250-AUTH PLAIN\r\n");
    script.extend([Peer::Wait("AUTH PLAIN"), send("235 2.7.0 ok\r\n")]);
    let config = Config::new("device.example")
        .credentials("device", "secret")
        .allow_plaintext_auth(true);
    let ((early, connected, again), wire) = with_client(script, config, |c| {
        let early = c.send(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            b"x\r\n",
            &mut [0],
        );
        let connected = c.connect();
        let again = c.connect();
        (early, connected, again)
    });
    assert!(
        matches!(early, Err(Error::Use(UseError::NotReady))),
        "{early:?}"
    );
    connected.unwrap();
    assert!(
        matches!(again, Err(Error::Use(UseError::NotReady))),
        "{again:?}"
    );
    let w = written(&wire);
    assert!(!w.contains("MAIL"), "{w}");
    assert_eq!(w.matches("EHLO").count(), 1, "{w}");
    // Refused at once: no read waited for anything.
    assert!(wire.now.get() < 2_000, "{}", wire.now.get());
}

/// The caller's output buffer is given back without the credentials: the AUTH line is zeroed
/// once written, and when the link fails before it is written, when the client is dropped.
#[test]
fn credentials_do_not_stay_in_the_callers_output_buffer() {
    for fail_first in [false, true] {
        let mut script = hello("250-AUTH PLAIN\r\n");
        if fail_first {
            script.insert(2, Peer::FailWrites);
        } else {
            script.extend([
                Peer::Wait("AUTH PLAIN"),
                send("235 2.7.0 ok\r\n"),
                Peer::Wait("QUIT\r\n"),
                send("221 bye\r\n"),
            ]);
        }
        let (s, wire) = stream(script);
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        {
            let mut c = BlockingClient::new(
                s,
                VirtualClock(wire.now.clone()),
                Config::new("device.example")
                    .credentials("device", "hunter2hunter2")
                    .allow_plaintext_auth(true)
                    .timeout_ms(2_000),
                &mut out,
                &mut input,
            )
            .unwrap();
            let r = c.connect();
            if fail_first {
                assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
            } else {
                r.unwrap();
                c.quit().unwrap();
                // Sent, and then zeroed.
                assert!(written(&wire).contains("AUTH PLAIN AGRldmljZQBodW50ZXIyaHVudGVyMg=="));
            }
        }
        assert!(
            out.iter().all(|&b| b == 0),
            "fail_first {fail_first}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

// ---- the async client -------------------------------------------------------------------

/// An async stream over the same script; a read with nothing to give waits forever (the
/// clock decides), a write takes at most `max_write` bytes and may first be "full" for a
/// moment.
struct AsyncStream {
    inner: Stream,
    max_write: usize,
    hiccup: Rc<Cell<bool>>,
}

impl embedded_io_async::ErrorType for AsyncStream {
    type Error = ErrorKind;
}

impl embedded_io_async::Read for AsyncStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.inner.advance();
        if self.inner.pending.is_empty() {
            std::future::pending::<()>().await;
        }
        embedded_io::Read::read(&mut self.inner, buf)
    }
}

impl embedded_io_async::Write for AsyncStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.hiccup.replace(false) {
            YieldOnce(false).await;
        }
        let n = buf.len().min(self.max_write);
        embedded_io::Write::write(&mut self.inner, &buf[..n])
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Virtual time for the async client: a wait for a deadline not yet reached never ends by
/// itself (the test moves the time between calls).
struct AsyncClock(Rc<Cell<u64>>);

impl Clock for AsyncClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
    async fn wait_until(&self, deadline: u64) {
        if self.0.get() < deadline {
            std::future::pending::<()>().await;
        }
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// An async stream over `script` taking at most `max_write` bytes a write; the flag makes its
/// next write wait a moment first.
fn async_stream(script: Vec<Peer>, max_write: usize) -> (AsyncStream, Wire, Rc<Cell<bool>>) {
    let (inner, wire) = stream(script);
    let hiccup = Rc::new(Cell::new(false));
    let s = AsyncStream {
        inner,
        max_write,
        hiccup: hiccup.clone(),
    };
    (s, wire, hiccup)
}

/// An async client over `s`, every wait capped at 5 s of `now`, connected.
async fn connected<'b>(
    s: AsyncStream,
    now: &Rc<Cell<u64>>,
    out: &'b mut [u8],
    input: &'b mut [u8],
) -> Client<'b, AsyncStream, AsyncClock> {
    let mut c = Client::new(
        s,
        AsyncClock(now.clone()),
        Config::new("device.example").timeout_ms(5_000),
        out,
        input,
    )
    .unwrap();
    c.connect().await.unwrap();
    c
}

/// Streamed data that returned with bytes still unwritten (a write took part of them) does
/// not leave its deadline behind: the next piece, a minute later, gets its own wait, not
/// a timeout for a wait that ended with the call before.
#[test]
fn a_streamed_piece_after_a_pause_gets_its_own_deadline() {
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        send("250 2.0.0 queued\r\n"),
    ]);
    let (s, wire, hiccup) = async_stream(script, 100);
    let now = wire.now.clone();
    let (second, status) = block_on(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut c = connected(s, &now, &mut out, &mut input).await;
        let to = [addr("ops@example.com")];
        let mut codes = [0u16];
        let began = c
            .begin(addr("device@example.com"), &to, None, &mut codes)
            .await
            .unwrap();
        assert!(began.is_none());
        c.data(&[b'a'; 600]).await.unwrap();
        // The device reads its sensor for a minute.
        now.set(now.get() + 60_000);
        hiccup.set(true);
        let second = c.data(b"\r\nmore\r\n").await;
        let status = c.end(&mut codes).await;
        (second, status)
    });
    second.unwrap();
    assert!(status.unwrap().delivered);
    assert!(written(&wire).contains("\r\nmore\r\n.\r\n"));
}

/// A call whose future is dropped midway (a device's select on a button, say) leaves the
/// session out of step: the next call fails at once, transiently, and sends nothing.
#[test]
fn a_call_abandoned_midway_makes_the_next_one_fail_transiently() {
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([Peer::Wait("DATA\r\n")]);
    let (s, wire, _) = async_stream(script, usize::MAX);
    let now = wire.now.clone();
    let next = block_on(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut c = connected(s, &now, &mut out, &mut input).await;
        let to = [addr("ops@example.com")];
        let mut codes = [0u16];
        {
            let mut call = pin!(c.send(addr("device@example.com"), &to, b"x\r\n", &mut codes));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(call.as_mut().poll(&mut cx).is_pending());
        }
        c.send(addr("device@example.com"), &to, b"x\r\n", &mut codes)
            .await
    });
    assert!(matches!(next, Err(Error::Broken)), "{next:?}");
    assert!(next.unwrap_err().is_transient());
    assert_eq!(written(&wire).matches("MAIL FROM").count(), 1);
}

/// Data for a message the server refused at `begin` is the caller's mistake, found before
/// anything is written: the session stays in step and the next message goes through.
#[test]
fn data_after_a_refused_begin_is_refused_and_the_session_goes_on() {
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"),
        // The open MAIL is closed before the next message.
        Peer::Wait("RSET\r\n"),
        send("250 2.0.0 reset\r\n"),
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        send("250 2.0.0 queued\r\n"),
    ]);
    let (s, wire, _) = async_stream(script, usize::MAX);
    let now = wire.now.clone();
    let (refused, data, next) = block_on(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut c = connected(s, &now, &mut out, &mut input).await;
        let mut codes = [0u16];
        let refused = c
            .begin(
                addr("device@example.com"),
                &[addr("nobody@example.com")],
                None,
                &mut codes,
            )
            .await;
        let data = c.data(b"x\r\n").await;
        let next = c
            .send(
                addr("device@example.com"),
                &[addr("ops@example.com")],
                b"y\r\n",
                &mut codes,
            )
            .await;
        (refused, data, next)
    });
    let refused = refused.unwrap().expect("refused before data");
    assert_eq!(refused.failed_at, Some(FailedAt::NoValidRecipients));
    assert!(
        matches!(data, Err(Error::Use(UseError::NoDataExpected))),
        "{data:?}"
    );
    assert!(next.unwrap().delivered);
    assert!(!written(&wire).contains("x\r\n"));
}

/// Without PIPELINING each command waits for the reply before it (held in the output buffer
/// and released one at a time): every reply is counted for a command on the wire, none is
/// taken for premature, through an AUTH LOGIN challenge, every recipient refused (the open
/// MAIL closed with RSET) and a message delivered after it.
#[test]
fn one_command_at_a_time_every_reply_is_in_place() {
    let mut script = hello("250-AUTH LOGIN\r\n");
    script.extend([
        Peer::Wait("AUTH LOGIN\r\n"),
        send("334 VXNlcm5hbWU6\r\n"),
        Peer::Wait("\r\n"),
        send("334 UGFzc3dvcmQ6\r\n"),
        Peer::Wait("\r\n"),
        send("235 2.7.0 ok\r\n"),
        Peer::Wait("MAIL FROM:<device@example.com>\r\n"),
        send("250 2.1.0 ok\r\n"),
        Peer::Wait("RCPT TO:<a@example.com>\r\n"),
        send("550 5.1.1 no\r\n"),
        Peer::Wait("RCPT TO:<b@example.com>\r\n"),
        send("550 5.1.1 no\r\n"),
        Peer::Wait("RSET\r\n"),
        send("250 2.0.0 reset\r\n"),
        Peer::Wait("MAIL FROM:<device@example.com>\r\n"),
        send("250 2.1.0 ok\r\n"),
        Peer::Wait("RCPT TO:<ops@example.com>\r\n"),
        send("250 2.1.5 ok\r\n"),
        Peer::Wait("DATA\r\n"),
        send("354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        send("250 2.0.0 queued\r\n"),
        Peer::Wait("QUIT\r\n"),
        send("221 2.0.0 bye\r\n"),
    ]);
    let config = Config::new("device.example")
        .credentials("device", "secret")
        .allow_plaintext_auth(true);
    let ((refused, codes, delivered, quit), wire) = with_client(script, config, |c| {
        c.connect().unwrap();
        let mut codes = [0u16; 2];
        let refused = c.send(
            addr("device@example.com"),
            &[addr("a@example.com"), addr("b@example.com")],
            b"x\r\n",
            &mut codes,
        );
        let delivered = c.send(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            b"y\r\n",
            &mut [0],
        );
        (refused, codes, delivered, c.quit())
    });
    let refused = refused.unwrap();
    assert!(!refused.delivered);
    assert_eq!(refused.failed_at, Some(FailedAt::NoValidRecipients));
    assert_eq!(codes, [550, 550]);
    assert!(delivered.unwrap().delivered);
    quit.unwrap();
    let w = written(&wire);
    assert_eq!(w.matches("DATA").count(), 1, "{w}");
}

/// Long refusals of every alignment against the 512-byte input buffer: wherever the lines
/// and the reads fall (the final line ending exactly at the buffer's end included), the
/// answer is the refusal, never a reply lost to the trimming and the message left in doubt.
#[test]
fn long_refusals_of_every_length_are_refusals() {
    for lines in [6usize, 11, 13] {
        for pad in 0..80 {
            let mut long = String::new();
            for i in 0..lines {
                // 80 bytes a line.
                long.push_str(&format!(
                    "550-5.7.26 line {i:02} of a long explanation of why this was refused, see the page\r\n"
                ));
            }
            assert_eq!(long.len(), 80 * lines);
            long.push_str(&format!("550 5.7.26 end{}\r\n", "x".repeat(pad)));
            let mut script = hello("250-PIPELINING\r\n");
            script.extend([
                Peer::Wait("DATA\r\n"),
                send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
                Peer::Wait("\r\n.\r\n"),
                Peer::Send(long.into_bytes()),
            ]);
            let (r, _) = with_client(script, Config::new("device.example"), |c| {
                c.connect().unwrap();
                c.send(
                    addr("device@example.com"),
                    &[addr("ops@example.com")],
                    b"x\r\n",
                    &mut [0],
                )
            });
            let status = r.unwrap_or_else(|e| panic!("{lines} lines, pad {pad}: {e:?}"));
            assert_eq!(status.code.map(|c| c.value()), Some(550));
            assert!(!status.delivered);
        }
    }
}

/// A refused login leaves the session for QUIT only: a message is refused at once (it would
/// go without the AUTH the config asks for), the 535 is not taken for any later reply, and
/// QUIT gets its own answer.
#[test]
fn after_a_refused_login_only_quit_follows() {
    let mut script = hello("250-PIPELINING\r\n250-AUTH PLAIN\r\n");
    script.extend([
        Peer::Wait("AUTH PLAIN"),
        send("535 5.7.8 bad credentials\r\n"),
        Peer::Wait("QUIT\r\n"),
        send("221 2.0.0 bye\r\n"),
    ]);
    let config = Config::new("device.example")
        .credentials("device", "wrong")
        .allow_plaintext_auth(true);
    let ((login, sent, quit), wire) = with_client(script, config, |c| {
        let login = c.connect();
        let sent = c.send(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            b"x\r\n",
            &mut [0],
        );
        (login, sent, c.quit())
    });
    assert!(
        matches!(login, Err(Error::AuthFailed(c)) if c.value() == 535),
        "{login:?}"
    );
    assert!(
        matches!(sent, Err(Error::Use(UseError::NotReady))),
        "{sent:?}"
    );
    quit.unwrap();
    assert!(!written(&wire).contains("MAIL"), "{}", written(&wire));
}

/// A call refused before its envelope is released (no recipient) leaves the session in step:
/// the next message goes through.
#[test]
fn a_message_without_recipients_is_refused_and_the_next_goes() {
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        send("250 2.0.0 queued\r\n"),
    ]);
    let ((empty, next), _) = with_client(script, Config::new("device.example"), |c| {
        c.connect().unwrap();
        let empty = c.send(addr("device@example.com"), &[], b"x\r\n", &mut []);
        let next = c.send(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            b"y\r\n",
            &mut [0],
        );
        (empty, next)
    });
    assert!(
        matches!(empty, Err(Error::Use(UseError::NoRecipients))),
        "{empty:?}"
    );
    assert!(next.unwrap().delivered);
}

/// A 454 to AUTH is a temporary failure (RFC 4954): transient, so a queue keeps the mail; a
/// 535 is not.
#[test]
fn a_454_to_auth_is_transient_and_a_535_is_not() {
    for (reply, transient) in [
        ("454 4.7.0 try later\r\n", true),
        ("535 5.7.8 no\r\n", false),
    ] {
        let mut script = hello("250-AUTH PLAIN\r\n");
        script.extend([Peer::Wait("AUTH PLAIN"), send(reply)]);
        let config = Config::new("device.example")
            .credentials("device", "pw")
            .allow_plaintext_auth(true);
        let (r, _) = with_client(script, config, |c| c.connect());
        let e = r.unwrap_err();
        assert!(matches!(e, Error::AuthFailed(_)), "{e:?}");
        assert_eq!(e.is_transient(), transient, "{reply}");
    }
}

/// Without PIPELINING, a reply split across reads whose first bytes came before the command
/// it would answer (`250 ok\r\n25`, then `0 ok\r\n` after RCPT): the session ends at the
/// first byte, before RCPT is written. Bytes that may start a 421 (`4`) wait for the third
/// byte, even after RCPT: a `450` begun before RCPT is not RCPT's answer; a `421` is the
/// server closing, a transient end.
#[test]
fn a_reply_begun_before_its_command_is_never_its_answer() {
    // (what rides after MAIL's 250, what follows RCPT, whether RCPT is written)
    let cases: [(&str, &str, bool); 3] = [
        ("25", "0 2.1.5 ok\r\n", false),
        ("4", "50 4.2.0 busy\r\n", true),
        ("42", "1 4.3.2 closing\r\n", true),
    ];
    for (early, rest, rcpt_written) in cases {
        let mut script = hello("");
        script.extend([
            Peer::Wait("MAIL FROM:<device@example.com>\r\n"),
            Peer::Send(format!("250 2.1.0 ok\r\n{early}").into_bytes()),
            Peer::Wait("RCPT TO:<ops@example.com>\r\n"),
            send(rest),
        ]);
        let (r, wire) = with_client(script, Config::new("device.example"), |c| {
            c.connect().unwrap();
            c.send(
                addr("device@example.com"),
                &[addr("ops@example.com")],
                b"x\r\n",
                &mut [0],
            )
        });
        match early {
            "25" => assert!(
                matches!(r, Err(Error::Protocol(SessionError::UnexpectedInput))),
                "{r:?}"
            ),
            "4" => assert!(is_unexpected(&r, 450), "{r:?}"),
            _ => {
                assert!(
                    matches!(r, Err(Error::ServiceClosing(c)) if c.value() == 421),
                    "{r:?}"
                );
                assert!(r.unwrap_err().is_transient());
            }
        }
        let w = written(&wire);
        assert_eq!(w.contains("RCPT TO"), rcpt_written, "{early}: {w}");
        assert!(!w.contains("DATA"), "{early}: {w}");
    }
}

/// Sends one message after `hello`, the server answering its end of data with `reply`.
fn answered_with(
    reply: Vec<u8>,
) -> (
    Result<postline_embedded::Status, Error<ErrorKind>>,
    Option<Vec<u8>>,
) {
    let mut script = hello("250-PIPELINING\r\n");
    script.extend([
        Peer::Wait("DATA\r\n"),
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        Peer::Send(reply),
    ]);
    let (r, _) = with_client(script, Config::new("device.example"), |c| {
        c.connect().unwrap();
        let r = c.send(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            b"x\r\n",
            &mut [0],
        );
        (r, c.last_reply().map(|r| r.text().to_vec()))
    });
    r
}

/// Replies to the end of data whose lines do not fit the 512-byte input buffer, however
/// they fall: a first line and a last line of 300 bytes each, one line of 2,000 bytes, a
/// long last line after short ones. Each is the server's answer (its code, and the start of
/// its first line), never a message in doubt; a long 250 is a delivery.
#[test]
fn replies_with_lines_longer_than_the_buffer_keep_their_code_and_first_words() {
    let words = |code: &str, sep: char, n: usize| format!("{code}{sep}5.7.1 {}\r\n", "w".repeat(n));
    let cases = [
        words("550", '-', 300) + &words("550", ' ', 300),
        words("550", ' ', 2_000),
        words("550", '-', 20) + &words("550", '-', 20) + &words("550", ' ', 3_000),
        words("550", '-', 490) + &words("550", '-', 600) + &words("550", ' ', 10),
        words("250", ' ', 1_500),
    ];
    for reply in cases {
        let len = reply.len();
        let code = reply[..3].to_string();
        let (status, text) = answered_with(reply.into_bytes());
        let status = status.unwrap_or_else(|e| panic!("{code}, {len} bytes: {e:?}"));
        assert_eq!(
            status.code.map(|c| c.value().to_string()),
            Some(code.clone())
        );
        assert_eq!(status.delivered, code == "250");
        let text = text.unwrap();
        assert!(text.starts_with(b"5.7.1 www"), "{len}: {text:?}");
    }
}

/// A 421 longer than the input buffer, as the greeting or as EHLO's answer: the server
/// closing (transient: the queue keeps the mail), not a reply too long (permanent).
#[test]
fn a_long_421_at_the_greeting_or_ehlo_is_transient() {
    let mut long = String::new();
    for i in 0..12 {
        long.push_str(&format!(
            "421-4.3.2 line {i:02} of a long notice that the service is shutting down now\r\n"
        ));
    }
    long.push_str("421 4.3.2 closing\r\n");
    let greeting = vec![Peer::Send(long.clone().into_bytes())];
    let ehlo = vec![
        send("220 mx.example ESMTP\r\n"),
        Peer::Wait("EHLO device.example\r\n"),
        Peer::Send(long.into_bytes()),
    ];
    for script in [greeting, ehlo] {
        let (r, _) = with_client(script, Config::new("device.example"), |c| c.connect());
        assert!(
            matches!(r, Err(Error::ServiceClosing(c)) if c.value() == 421),
            "{r:?}"
        );
        assert!(r.unwrap_err().is_transient());
    }
}

/// A login accepted with a 235 longer than the input buffer: the server said yes, the code
/// decides (its text is never read), so connecting succeeds and a message goes.
#[test]
fn a_long_235_is_a_login() {
    let mut long = String::new();
    for i in 0..11 {
        long.push_str(&format!(
            "235-2.7.0 line {i:02} of a long welcome that says nothing the client needs\r\n"
        ));
    }
    long.push_str("235 2.7.0 authenticated\r\n");
    let mut script = hello("250-AUTH PLAIN\r\n");
    script.extend([
        Peer::Wait("AUTH PLAIN"),
        Peer::Send(long.into_bytes()),
        Peer::Wait("MAIL FROM:<device@example.com>\r\n"),
        send("250 2.1.0 ok\r\n"),
        Peer::Wait("RCPT TO:<ops@example.com>\r\n"),
        send("250 2.1.5 ok\r\n"),
        Peer::Wait("DATA\r\n"),
        send("354 go\r\n"),
        Peer::Wait("\r\n.\r\n"),
        send("250 2.0.0 queued\r\n"),
    ]);
    let config = Config::new("device.example")
        .credentials("device", "secret")
        .allow_plaintext_auth(true);
    let ((connected, sent), _) = with_client(script, config, |c| {
        let connected = c.connect();
        let sent = c.send(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            b"x\r\n",
            &mut [0],
        );
        (connected, sent)
    });
    connected.unwrap();
    assert!(sent.unwrap().delivered);
}
