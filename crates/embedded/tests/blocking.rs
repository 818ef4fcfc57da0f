//! The blocking twin over std's `TcpStream` (a receive timeout set, as on a device's stack):
//! a message through aiosmtpd, a silent server and a trickling one given up at the driver's
//! deadline, a message whose end of data went unanswered reported in doubt, and calls after
//! QUIT that fail rather than wait.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use postline_embedded::blocking::BlockingClient;
use postline_embedded::proto::session::SessionError;
use postline_embedded::{Address, Config, Error, Phase};
use postline_testkit::{greeting_and_ehlo, Aiosmtpd, ScriptedServer, SilentListener, Step};

#[path = "common/std_socket.rs"]
mod std_socket;
use std_socket::{Socket, StdClock};

fn socket(addr: &str) -> Socket {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    Socket(s)
}

/// A client of `addr` whose replies are due within `timeout_ms`, over the caller's buffers.
fn client<'b>(
    addr: &str,
    timeout_ms: u64,
    out: &'b mut [u8],
    input: &'b mut [u8],
) -> BlockingClient<'b, Socket, StdClock> {
    BlockingClient::new(
        socket(addr),
        StdClock(Instant::now()),
        Config::new("device.example").timeout_ms(timeout_ms),
        out,
        input,
    )
    .unwrap()
}

#[test]
fn a_message_through_aiosmtpd() {
    let srv = Aiosmtpd::start();
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = client(&srv.addr(), 10_000, &mut out, &mut input);
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
    let mut c = client(&silent.addr(), 300, &mut out, &mut input);
    let started = Instant::now();
    assert!(matches!(c.connect(), Err(Error::Timeout(Phase::Greeting))));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// A server that sends its greeting a byte at a time, each in time for the socket, never
/// completes it within the deadline: the deadline is the reply's, not each byte's.
#[test]
fn a_trickling_server_does_not_move_the_deadline() {
    let greeting = b"220 slow.example ESMTP a greeting sent one byte at a time\r\n".to_vec();
    let server =
        ScriptedServer::start(vec![Step::SendSlowly(greeting, Duration::from_millis(100))]);
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = client(
        &format!("127.0.0.1:{}", server.port()),
        500,
        &mut out,
        &mut input,
    );
    let started = Instant::now();
    assert!(matches!(c.connect(), Err(Error::Timeout(Phase::Greeting))));
    let took = started.elapsed();
    // The whole greeting would take about 6 s.
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// The server reads the whole message and closes without a word: the message may have been
/// taken, so it is in doubt, never reported as sent or as not sent.
#[test]
fn an_unanswered_end_of_data_is_in_doubt() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:<device@example.com>"),
        Step::expect("RCPT TO:<ops@example.com>"),
        Step::expect("DATA"),
        Step::reply("250 2.1.0 ok"),
        Step::reply("250 2.1.5 ok"),
        Step::reply("354 go ahead"),
        Step::ExpectData,
        Step::Close,
    ]);
    let server = ScriptedServer::start(script);
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = client(
        &format!("127.0.0.1:{}", server.port()),
        5_000,
        &mut out,
        &mut input,
    );
    c.connect().unwrap();
    let to = [Address::new("ops@example.com").unwrap()];
    let mut codes = [0u16; 1];
    let sent = c.send(
        Address::new("device@example.com").unwrap(),
        &to,
        b"Subject: x\r\n\r\nbody\r\n",
        &mut codes,
    );
    assert!(
        matches!(sent, Err(Error::InDoubt(Phase::DataEnd))),
        "{sent:?}"
    );
    assert_eq!(codes, [250]);
    server.finish().assert_ok();
}

/// After QUIT the session is over: another call fails at once, it does not read a closed
/// connection again and again.
#[test]
fn calls_after_quit_fail_at_once() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([Step::expect("QUIT"), Step::reply("221 bye"), Step::Close]);
    let server = ScriptedServer::start(script);
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = client(
        &format!("127.0.0.1:{}", server.port()),
        5_000,
        &mut out,
        &mut input,
    );
    c.connect().unwrap();
    c.quit().unwrap();
    let started = Instant::now();
    assert!(c.connect().is_err());
    let to = [Address::new("ops@example.com").unwrap()];
    let sent = c.send(
        Address::new("device@example.com").unwrap(),
        &to,
        b"x\r\n",
        &mut [0],
    );
    assert!(sent.is_err(), "{sent:?}");
    // A second QUIT may succeed or fail; it must not wait either.
    let _ = c.quit();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    server.finish().assert_ok();
}

/// A `250` sent together with the `354`, before any data: it answers nothing the client sent,
/// and must never pass for the end of data's answer (a mail reported delivered that no
/// server took).
#[test]
fn a_reply_riding_with_the_354_is_never_taken_for_delivery() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:<device@example.com>"),
        Step::expect("RCPT TO:<ops@example.com>"),
        Step::expect("DATA"),
        Step::reply("250 2.1.0 ok"),
        Step::reply("250 2.1.5 ok"),
        Step::reply("354 go ahead\r\n250 2.0.0 queued (not really)"),
    ]);
    let server = ScriptedServer::start(script);
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = client(
        &format!("127.0.0.1:{}", server.port()),
        3_000,
        &mut out,
        &mut input,
    );
    c.connect().unwrap();
    let from = Address::new("device@example.com").unwrap();
    let to = [Address::new("ops@example.com").unwrap()];
    let mut codes = [0u16; 1];
    let r = c.send(from, &to, b"x\r\n", &mut codes);
    assert!(
        matches!(
            r,
            Err(Error::Protocol(SessionError::UnexpectedReply { code })) if code.value() == 250
        ),
        "{r:?}"
    );
}

/// The text of the reply that decided a call is the client's until the next call: a refused
/// sender's, then the delivered message's, then none for a message left in doubt.
#[test]
fn the_last_reply_belongs_to_the_last_call() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:<device@example.com>"),
        Step::expect("RCPT TO:<ops@example.com>"),
        Step::expect("DATA"),
        Step::reply("550 5.7.1 not you"),
        Step::reply("503 5.5.1 no sender"),
        Step::reply("503 5.5.1 no sender"),
        Step::expect("MAIL FROM:<device@example.com>"),
        Step::expect("RCPT TO:<ops@example.com>"),
        Step::expect("DATA"),
        Step::reply("250 2.1.0 ok"),
        Step::reply("250 2.1.5 ok"),
        Step::reply("354 go ahead"),
        Step::ExpectData,
        Step::reply("250 2.0.0 queued as 7F3A"),
        Step::expect("MAIL FROM:<device@example.com>"),
        Step::expect("RCPT TO:<ops@example.com>"),
        Step::expect("DATA"),
        Step::reply("250 2.1.0 ok"),
        Step::reply("250 2.1.5 ok"),
        Step::reply("354 go ahead"),
        Step::ExpectData,
        Step::Close,
    ]);
    let server = ScriptedServer::start(script);
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = client(
        &format!("127.0.0.1:{}", server.port()),
        5_000,
        &mut out,
        &mut input,
    );
    c.connect().unwrap();
    assert!(c.last_reply().is_none(), "connecting decides on no reply");
    let from = Address::new("device@example.com").unwrap();
    let to = [Address::new("ops@example.com").unwrap()];
    let mut codes = [0u16; 1];

    let refused = c.send(from, &to, b"x\r\n", &mut codes).unwrap();
    assert!(!refused.delivered);
    assert_eq!(refused.code.map(|c| c.value()), Some(550));
    let last = c.last_reply().unwrap();
    assert_eq!((last.code(), last.text()), (550, &b"5.7.1 not you"[..]));

    let sent = c.send(from, &to, b"x\r\n", &mut codes).unwrap();
    assert!(sent.delivered);
    let last = c.last_reply().unwrap();
    assert_eq!(
        (last.code(), last.text()),
        (250, &b"2.0.0 queued as 7F3A"[..])
    );

    let lost = c.send(from, &to, b"x\r\n", &mut codes);
    assert!(matches!(lost, Err(Error::InDoubt(_))), "{lost:?}");
    assert!(c.last_reply().is_none(), "{:?}", c.last_reply());
    server.finish().assert_ok();
}
