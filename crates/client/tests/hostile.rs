//! A catalogue of hostile and broken servers, each played by a scripted peer over real TCP on
//! 127.0.0.1, and the exact outcome the client must report for each: refused and reset
//! connections, silence, refusals and 421 at every step, drops at every point of a
//! transaction, oversized and endless replies, slowloris, wrong reply counts, replies out of
//! turn, failed STARTTLS, garbage, NUL bytes and invalid UTF-8.
//!
//! Every timeout here is capped at a second or two, so each test ends within a few seconds.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use postline::proto::reply::ReplyError;
use postline::proto::session::SessionError;
use postline::{AsyncClient, Client, Config, Envelope, Error, Phase, Timeouts, Tls};
use postline_testkit::{greeting_and_ehlo, lossy, Aiosmtpd, ScriptReport, ScriptedServer, Step};

/// The two clients, driven alike: every hostile case runs against both.
#[derive(Debug, Clone, Copy)]
enum Driver {
    Blocking,
    Tokio,
}

/// A connected client of either kind; the tokio one runs on its own runtime.
#[derive(Debug)]
enum AnyClient {
    Blocking(Box<Client>),
    Tokio(Box<AsyncClient>, tokio::runtime::Runtime),
}

impl Driver {
    fn connect(self, config: Config) -> Result<AnyClient, Error> {
        match self {
            Driver::Blocking => Client::connect(config).map(|c| AnyClient::Blocking(Box::new(c))),
            Driver::Tokio => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let c = rt.block_on(AsyncClient::connect(config))?;
                Ok(AnyClient::Tokio(Box::new(c), rt))
            }
        }
    }
}

impl AnyClient {
    fn send_bytes(&mut self, env: &Envelope, body: &[u8]) -> Result<postline::Outcome, Error> {
        match self {
            AnyClient::Blocking(c) => c.send_bytes(env, body),
            AnyClient::Tokio(c, rt) => rt.block_on(c.send_bytes(env, body)),
        }
    }

    /// A message from a blocking reader; the tokio client reads it through [`SyncRead`], so
    /// both see the same pieces.
    fn send(
        &mut self,
        env: &Envelope,
        body: impl std::io::Read + Unpin + Send,
    ) -> Result<postline::Outcome, Error> {
        match self {
            AnyClient::Blocking(c) => c.send(env, body),
            AnyClient::Tokio(c, rt) => rt.block_on(c.send(env, SyncRead(body))),
        }
    }

    fn noop(&mut self) -> Result<postline::ServerReply, Error> {
        match self {
            AnyClient::Blocking(c) => c.noop(),
            AnyClient::Tokio(c, rt) => rt.block_on(c.noop()),
        }
    }

    fn quit(self) -> Result<(), Error> {
        match self {
            AnyClient::Blocking(c) => (*c).quit(),
            AnyClient::Tokio(c, rt) => rt.block_on(c.quit()),
        }
    }

    fn greeting(&self) -> Option<&postline::ServerReply> {
        match self {
            AnyClient::Blocking(c) => c.greeting(),
            AnyClient::Tokio(c, _) => c.greeting(),
        }
    }
}

/// A blocking reader as an `AsyncRead`: each poll is one `read`, so a test source's pieces
/// (and its pauses) reach the tokio client unchanged.
struct SyncRead<R>(R);

impl<R: std::io::Read + Unpin> tokio::io::AsyncRead for SyncRead<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.0.read(buf.initialize_unfilled())?;
        buf.advance(n);
        std::task::Poll::Ready(Ok(()))
    }
}

use postline_testkit::both;

/// The cap on every phase's timeout.
const TIMEOUT: Duration = Duration::from_secs(2);
/// A test that expects a timeout uses this shorter one.
const SHORT: Duration = Duration::from_secs(1);

fn config_for(port: u16) -> Config {
    Config::relay("127.0.0.1")
        .port(port)
        .tls(Tls::None)
        .hello_name("client.test")
        .timeouts(Timeouts::default().capped(TIMEOUT))
}

fn config(server: &ScriptedServer) -> Config {
    config_for(server.port())
}

fn short(server: &ScriptedServer) -> Config {
    config(server).timeouts(Timeouts::default().capped(SHORT))
}

fn envelope() -> Envelope {
    Envelope::new("a@client.test", ["b@server.test"]).unwrap()
}

const BODY: &[u8] = b"Subject: hostile\r\n\r\nbody\r\n";

/// Greeting and EHLO without PIPELINING (one command per reply), then `steps`.
fn lockstep(steps: Vec<Step>) -> ScriptedServer {
    with_ehlo(&[], steps)
}

/// Greeting and EHLO with PIPELINING, then `steps`.
fn pipelined(steps: Vec<Step>) -> ScriptedServer {
    with_ehlo(&["PIPELINING"], steps)
}

fn with_ehlo(ehlo: &[&str], mut steps: Vec<Step>) -> ScriptedServer {
    let mut all = greeting_and_ehlo(ehlo);
    all.append(&mut steps);
    ScriptedServer::start(all)
}

/// MAIL, RCPT and DATA answered one by one, up to the 354.
fn envelope_steps() -> Vec<Step> {
    vec![
        Step::expect("MAIL FROM:<a@client.test>"),
        Step::reply("250 2.1.0 ok"),
        Step::expect("RCPT TO:<b@server.test>"),
        Step::reply("250 2.1.5 ok"),
        Step::expect("DATA"),
        Step::reply("354 go ahead"),
    ]
}

fn steps(parts: impl IntoIterator<Item = Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}

#[track_caller]
fn assert_protocol(err: &Error, want: SessionError) {
    match err {
        Error::Protocol(e) if *e == want => {}
        other => panic!("expected Protocol({want:?}), got {other:?} ({other})"),
    }
    assert!(!err.is_retryable(), "{err}");
}

#[track_caller]
fn assert_lost(err: &Error, phase: Phase, delivery_unknown: bool) {
    let lost = match err {
        Error::DeliveryUnknown { cause, .. } if delivery_unknown => &**cause,
        other => other,
    };
    match lost {
        Error::ConnectionLost { phase: p } if *p == phase => {}
        _ if delivery_unknown != err.is_in_doubt() => panic!("in doubt: {err:?}"),
        other => panic!(
            "expected ConnectionLost {{ phase: {phase:?}, delivery_unknown: {delivery_unknown} }}, got {other:?} ({other})"
        ),
    }
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        err.to_string()
            .contains("may or may not have been delivered"),
        delivery_unknown,
        "{err}"
    );
}

#[track_caller]
fn assert_closing(err: &Error) {
    assert!(
        matches!(err, Error::ServiceClosing(r) if r.code == 421),
        "expected ServiceClosing(421), got {err:?}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("421"), "{err}");
}

fn sent_no_message_data(report: &ScriptReport) {
    let got = report.received_str();
    assert!(
        !got.contains("Subject: hostile"),
        "message data left the client:\n{got}"
    );
}

// ---------------------------------------------------------------------------- connecting

fn connection_refused(d: Driver) {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = d.connect(config_for(port)).unwrap_err();
    match &err {
        Error::Connect {
            host,
            port: p,
            source,
        } => {
            assert_eq!((host.as_str(), *p), ("127.0.0.1", port));
            assert_eq!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{err}"
            );
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
both!(connection_refused);

fn reset_right_after_connect(d: Driver) {
    let server = ScriptedServer::start(vec![Step::Reset]);
    let err = d.connect(config(&server)).unwrap_err();
    assert_lost(&err, Phase::Greeting, false);
    server.finish().assert_ok();
}
both!(reset_right_after_connect);

fn no_greeting_times_out(d: Driver) {
    let server = ScriptedServer::start(vec![Step::Hang]);
    let started = Instant::now();
    let err = d.connect(short(&server)).unwrap_err();
    assert!(
        matches!(err, Error::Timeout { phase: Phase::Greeting, after } if after == SHORT),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "timed out after 1s waiting for the greeting reply"
    );
    assert!(err.is_retryable());
    let took = started.elapsed();
    assert!(took >= SHORT && took < SHORT * 3, "{took:?}");
    server.finish();
}
both!(no_greeting_times_out);

fn greeting_554_refuses_the_session(d: Driver) {
    let server = ScriptedServer::start(vec![
        Step::reply("554 5.7.1 No SMTP service here"),
        Step::expect("QUIT"),
        Step::reply("221 2.0.0 bye"),
    ]);
    let err = d.connect(config(&server)).unwrap_err();
    match &err {
        Error::Rejected(r) => {
            assert_eq!(r.code, 554);
            assert_eq!(
                r.message(),
                "5.7.1 No SMTP service here".replace("5.7.1 ", "")
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_retryable());
    // RFC 5321 3.1: the server waits for QUIT after a 554 greeting, and gets it.
    let report = server.finish();
    report.assert_ok();
    assert_eq!(report.received_str(), "QUIT\r\n");
}
both!(greeting_554_refuses_the_session);

// ---------------------------------------------------------------------------- 421 anywhere

fn service_closing_421_at_greeting_and_ehlo(d: Driver) {
    for script in [
        vec![Step::reply("421 4.3.2 busy, try later")],
        vec![
            Step::reply("220 scripted.test ESMTP"),
            Step::expect("EHLO client.test"),
            Step::reply("421 4.3.2 busy, try later"),
        ],
    ] {
        let server = ScriptedServer::start(script);
        let err = d.connect(config(&server)).unwrap_err();
        assert_closing(&err);
        let report = server.finish();
        report.assert_ok();
        assert!(!report.received_str().contains("MAIL"));
    }
}
both!(service_closing_421_at_greeting_and_ehlo);

/// 421 in place of the reply to MAIL, RCPT, DATA and the end of data, without and with
/// PIPELINING.
fn service_closing_421_at_every_transaction_step(d: Driver) {
    let full = steps([envelope_steps(), vec![Step::ExpectData]]);
    for pipelining in [false, true] {
        // The steps before the reply that becomes a 421: to MAIL, RCPT, DATA, end of data.
        for upto in [1, 3, 5, 7] {
            let mut script: Vec<Step> = full[..upto].to_vec();
            script.push(Step::reply("421 4.4.2 closing, idle too long"));
            let ehlo: &[&str] = if pipelining { &["PIPELINING"] } else { &[] };
            let server = with_ehlo(ehlo, script);
            let mut client = d.connect(config(&server)).unwrap();
            let err = client.send_bytes(&envelope(), BODY).unwrap_err();
            assert_closing(&err);
            assert!(
                matches!(client.noop(), Err(Error::Closed)),
                "the session must be over after a 421"
            );
            drop(client);
            let report = server.finish();
            assert!(
                report.failures.is_empty(),
                "pipelining {pipelining}, step {upto}: {:?}",
                report.failures
            );
            // After the 421 the client says nothing more (no QUIT to a closing server).
            let got = report.received_str();
            assert!(!got.contains("QUIT"), "{got}");
        }
    }
}
both!(service_closing_421_at_every_transaction_step);

// ---------------------------------------------------------------------------- drops

fn dropped_after_mail(d: Driver) {
    let server = lockstep(vec![Step::expect("MAIL"), Step::Close]);
    let mut client = d.connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_lost(&err, Phase::Mail, false);
    server.finish().assert_ok();
}
both!(dropped_after_mail);

fn dropped_after_rcpt(d: Driver) {
    let server = lockstep(vec![
        Step::expect("MAIL"),
        Step::reply("250 ok"),
        Step::expect("RCPT"),
        Step::Close,
    ]);
    let mut client = d.connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_lost(&err, Phase::Rcpt, false);
    server.finish().assert_ok();
}
both!(dropped_after_rcpt);

fn dropped_in_the_middle_of_message_data(d: Driver) {
    let server = lockstep(steps([
        envelope_steps(),
        vec![Step::ExpectBytes(1000), Step::Close],
    ]));
    let mut client = d.connect(config(&server)).unwrap();
    // Far more than the socket buffers hold: the client is still writing when the server goes.
    let big = vec![b'a'; 8 << 20];
    let err = client.send_bytes(&envelope(), &big).unwrap_err();
    assert_lost(&err, Phase::DataBlock, false);
    server.finish().assert_ok();
}
both!(dropped_in_the_middle_of_message_data);

fn dropped_after_the_final_dot(d: Driver) {
    let server = lockstep(steps([
        envelope_steps(),
        vec![Step::ExpectData, Step::Close],
    ]));
    let mut client = d.connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_lost(&err, Phase::DataEnd, true);
    assert_eq!(
        err.to_string(),
        "connection closed by the server while waiting for the end of data reply (the message may or may not have been delivered)"
    );
    server.finish().assert_ok();
}
both!(dropped_after_the_final_dot);

/// The final 250 and, in the same segment, a 421 or a reply nobody asked for: the message
/// was delivered, and the caller is told so (not a failure to retry or bounce); the
/// connection is over.
fn final_reply_followed_by_421_or_a_stray_reply(d: Driver) {
    for tail in ["421 4.3.2 shutting down\r\n", "250 stray\r\n"] {
        let server = lockstep(steps([
            envelope_steps(),
            vec![
                Step::ExpectData,
                Step::send(format!("250 2.0.0 queued as X1\r\n{tail}")),
                Step::Close,
            ],
        ]));
        let mut client = d.connect(config(&server)).unwrap();
        let outcome = client.send_bytes(&envelope(), BODY).unwrap();
        assert_eq!(outcome.reply.code, 250, "{tail}");
        assert!(outcome.all_accepted());
        // The next call learns what ended the connection, once; then it is closed.
        let next = client.noop().unwrap_err();
        if tail.starts_with("421") {
            assert_closing(&next);
        } else {
            assert!(matches!(next, Error::Protocol(_)), "{next:?}");
        }
        assert!(matches!(client.noop(), Err(Error::Closed)), "{tail}");
        drop(client);
        server.finish();
    }
}
both!(final_reply_followed_by_421_or_a_stray_reply);

/// A TLS server name that cannot be checked is a configuration fault, found before any
/// connection is made.
fn unusable_tls_name_fails_before_connecting(d: Driver) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = config_for(port)
        .tls(Tls::StartTls)
        .tls_server_name("not a name!");
    let err = d.connect(config).unwrap_err();
    assert!(
        matches!(err, Error::Config(postline::ConfigError::TlsServerName(_))),
        "{err:?}"
    );
    assert_eq!(err.fault(), postline::Fault::Local);
    std::thread::sleep(Duration::from_millis(100));
    assert!(listener.accept().is_err(), "a connection was made");
}
both!(unusable_tls_name_fails_before_connecting);

/// A server that accepts and never greets: the cap on the whole setup ends the wait long
/// before the greeting's own timer would.
fn attempt_cap_ends_a_silent_greeting(d: Driver) {
    let server = ScriptedServer::start(vec![Step::Hang]);
    let mut timeouts = Timeouts::default().attempt(Duration::from_millis(500));
    timeouts.greeting = Duration::from_secs(30);
    let started = Instant::now();
    let err = d.connect(config(&server).timeouts(timeouts)).unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        matches!(err, Error::Timeout { phase: Phase::Greeting, after } if after == Duration::from_millis(500)),
        "{err:?}"
    );
    drop(server);
}
both!(attempt_cap_ends_a_silent_greeting);

fn reset_after_the_final_dot(d: Driver) {
    let server = lockstep(steps([
        envelope_steps(),
        vec![Step::ExpectData, Step::Reset],
    ]));
    let mut client = d.connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_lost(&err, Phase::DataEnd, true);
    server.finish().assert_ok();
}
both!(reset_after_the_final_dot);

/// A message source that waits before its data, so the server's close after 354 has
/// certainly arrived before the client would send the end of data.
struct SlowSource(Option<&'static [u8]>);

impl std::io::Read for SlowSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.take() {
            Some(data) => {
                std::thread::sleep(Duration::from_millis(200));
                buf[..data.len()].copy_from_slice(data);
                Ok(data.len())
            }
            None => Ok(0),
        }
    }
}

/// The server says 354 and hangs up at once, before any data: the message cannot have been
/// delivered, and the client says so rather than "may have been delivered".
fn accepts_data_then_closes(d: Driver) {
    let server = lockstep(steps([envelope_steps(), vec![Step::Close]]));
    let mut client = d.connect(config(&server)).unwrap();
    let err = client
        .send(&envelope(), SlowSource(Some(BODY)))
        .unwrap_err();
    assert_lost(&err, Phase::DataBlock, false);
    server.finish().assert_ok();
}
both!(accepts_data_then_closes);

// ---------------------------------------------------------------------------- oversized replies

fn megabyte_reply_line_without_crlf(d: Driver) {
    let server = lockstep(vec![Step::expect("MAIL"), Step::Send(vec![b'2'; 1 << 20])]);
    let mut client = d.connect(config(&server)).unwrap();
    let started = Instant::now();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_protocol(&err, SessionError::Malformed(ReplyError::LineTooLong));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(client);
    // The server may fail to write the rest: the client hung up, as it should.
    let report = server.finish();
    sent_no_message_data(&report);
}
both!(megabyte_reply_line_without_crlf);

fn ten_thousand_continuation_lines(d: Driver) {
    let mut reply = Vec::new();
    for i in 0..10_000 {
        reply.extend_from_slice(format!("250-line {i}\r\n").as_bytes());
    }
    reply.extend_from_slice(b"250 done\r\n");
    let server = ScriptedServer::start(vec![
        Step::reply("220 scripted.test ESMTP"),
        Step::expect("EHLO"),
        Step::Send(reply),
    ]);
    let err = d.connect(config(&server)).unwrap_err();
    assert_protocol(&err, SessionError::Malformed(ReplyError::TooManyLines));
    assert!(err.to_string().contains("more than 256 lines"), "{err}");
    drop(server);
}
both!(ten_thousand_continuation_lines);

// ---------------------------------------------------------------------------- slow and miscounted

/// The MAIL reply arrives a byte every 100 ms: each read gets something, but the reply is not
/// complete within the 1 s timeout, which fires anyway.
fn slowloris_reply_still_times_out(d: Driver) {
    let server = lockstep(vec![
        Step::expect("MAIL"),
        Step::SendSlowly(
            b"250 2.1.0 sender ok, and this reply takes a long long time\r\n".to_vec(),
            Duration::from_millis(100),
        ),
    ]);
    let mut client = d.connect(short(&server)).unwrap();
    let started = Instant::now();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert!(
        matches!(err, Error::Timeout { phase: Phase::Mail, after } if after == SHORT),
        "{err:?}"
    );
    let took = started.elapsed();
    assert!(took >= SHORT && took < SHORT * 3, "{took:?}");
    drop(client);
    drop(server);
}
both!(slowloris_reply_still_times_out);

fn too_few_pipelined_replies_time_out(d: Driver) {
    let server = pipelined(vec![
        Step::expect("MAIL"),
        Step::expect("RCPT"),
        Step::expect("DATA"),
        // Two replies for three commands, then silence.
        Step::send("250 ok\r\n250 ok\r\n"),
        Step::Hang,
    ]);
    let mut client = d.connect(short(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: Phase::DataStart,
                ..
            }
        ),
        "{err:?}"
    );
    drop(client);
    let report = server.finish();
    sent_no_message_data(&report);
}
both!(too_few_pipelined_replies_time_out);

fn too_many_pipelined_replies_are_a_protocol_error(d: Driver) {
    let server = pipelined(vec![
        Step::expect("MAIL"),
        Step::expect("RCPT"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n250 surplus\r\n"),
        Step::Sleep(Duration::from_millis(300)),
    ]);
    let mut client = d.connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_protocol(&err, SessionError::UnexpectedReply { code: code(250) });
    drop(client);
    let report = server.finish();
    report.assert_ok();
    sent_no_message_data(&report);
}
both!(too_many_pipelined_replies_are_a_protocol_error);

fn data_354_when_250_was_due(d: Driver) {
    let server = lockstep(vec![Step::expect("MAIL"), Step::reply("354 go ahead")]);
    let mut client = d.connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_protocol(
        &err,
        SessionError::WrongReply {
            phase: Phase::Mail,
            code: code(354),
        },
    );
    assert_eq!(
        err.to_string(),
        "protocol violation by the server: server answered MAIL with 354, which is out of place"
    );
    drop(client);
    sent_no_message_data(&server.finish());
}
both!(data_354_when_250_was_due);

// ---------------------------------------------------------------------------- replies out of turn

/// `250 ok` right behind the greeting, before the client said EHLO: it must not be taken for
/// the EHLO reply (which would desynchronise every later reply).
fn reply_before_ehlo_is_refused(d: Driver) {
    let server = ScriptedServer::start(vec![
        Step::send("220 scripted.test ESMTP\r\n250 ok\r\n"),
        Step::Sleep(Duration::from_millis(300)),
    ]);
    let err = d.connect(config(&server)).unwrap_err();
    assert_protocol(&err, SessionError::UnexpectedReply { code: code(250) });
    let report = server.finish();
    assert!(
        !report.received_str().contains("MAIL"),
        "{}",
        report.received_str()
    );
}
both!(reply_before_ehlo_is_refused);

/// An extra reply while the connection is idle between messages: noticed before the next
/// message's commands go out, so it cannot be credited to MAIL.
fn extra_reply_while_idle(d: Driver) {
    let server = pipelined(vec![
        Step::Sleep(Duration::from_millis(100)),
        Step::reply("250 surplus"),
        Step::Sleep(Duration::from_millis(500)),
    ]);
    let mut client = d.connect(config(&server)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_protocol(&err, SessionError::UnexpectedReply { code: code(250) });
    drop(client);
    let report = server.finish();
    report.assert_ok();
    assert!(
        !report.received_str().contains("MAIL"),
        "{}",
        report.received_str()
    );
}
both!(extra_reply_while_idle);

/// A 421 while idle (the server's idle timeout, RFC 5321 3.8) is noticed before the next
/// message: no MAIL goes to a server that is closing.
fn service_closing_421_while_idle(d: Driver) {
    let server = pipelined(vec![
        Step::Sleep(Duration::from_millis(100)),
        Step::reply("421 4.4.2 idle too long"),
        Step::Close,
    ]);
    let mut client = d.connect(config(&server)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_closing(&err);
    drop(client);
    let report = server.finish();
    report.assert_ok();
    assert!(
        !report.received_str().contains("MAIL"),
        "{}",
        report.received_str()
    );
}
both!(service_closing_421_while_idle);

// ---------------------------------------------------------------------------- STARTTLS

fn starttls_then(after_220: Vec<Step>) -> ScriptedServer {
    with_ehlo(
        &["STARTTLS"],
        steps([
            vec![Step::expect("STARTTLS"), Step::reply("220 2.0.0 go ahead")],
            after_220,
        ]),
    )
}

fn tls_config(server: &ScriptedServer) -> Config {
    config(server).tls(Tls::StartTls)
}

fn starttls_handshake_answered_with_garbage(d: Driver) {
    let server = starttls_then(vec![
        Step::send("this is not TLS at all\r\n\0\0\0\0"),
        Step::Sleep(Duration::from_millis(300)),
    ]);
    let err = d.connect(tls_config(&server)).unwrap_err();
    assert!(
        matches!(err, Error::Tls { ref host, .. } if host == "127.0.0.1"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("TLS with 127.0.0.1 failed: "),
        "{err}"
    );
    // What rustls makes of a partial non-TLS record followed by a close: a closed handshake.
    assert!(
        matches!(
            err,
            Error::Tls {
                failure: postline::TlsFailure::Closed | postline::TlsFailure::NotTls,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable(), "{err:?}");
    drop(server);
}
both!(starttls_handshake_answered_with_garbage);

fn starttls_handshake_closed(d: Driver) {
    let server = starttls_then(vec![Step::Close]);
    let err = d.connect(tls_config(&server)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls {
                failure: postline::TlsFailure::Closed,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "TLS with 127.0.0.1 failed: the server closed the connection during the TLS handshake"
    );
    server.finish().assert_ok();
}
both!(starttls_handshake_closed);

fn starttls_stripped_when_required(d: Driver) {
    let server = with_ehlo(
        &["PIPELINING", "AUTH PLAIN LOGIN"],
        vec![Step::expect("QUIT"), Step::reply("221 bye")],
    );
    let err = d
        .connect(tls_config(&server).credentials("alice", "s3cret"))
        .unwrap_err();
    assert!(matches!(err, Error::StartTlsUnavailable(None)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "server does not offer STARTTLS, which the configuration requires"
    );
    let report = server.finish();
    report.assert_ok();
    // EHLO, then straight to QUIT: no AUTH, no MAIL in clear text.
    assert_eq!(report.received_str(), "EHLO client.test\r\nQUIT\r\n");
}
both!(starttls_stripped_when_required);

// ---------------------------------------------------------------------------- bytes

fn garbage_and_nul_bytes_are_a_protocol_error(d: Driver) {
    for (greeting, want) in [
        (&b"\0\0\0\0\r\n"[..], ReplyError::InvalidCode),
        (&b"\xff\xfe garbage\r\n"[..], ReplyError::InvalidCode),
        (&b"22\0 hi\r\n"[..], ReplyError::InvalidCode),
        (&b"220\0hi\r\n"[..], ReplyError::InvalidSeparator),
        (&b"220 hi\rthere\r\n"[..], ReplyError::MissingLineEnd),
    ] {
        let server = ScriptedServer::start(vec![Step::Send(greeting.to_vec())]);
        let err = d.connect(config(&server)).unwrap_err();
        assert_protocol(&err, SessionError::Malformed(want));
        server.finish();
    }
    // The same mid-transaction.
    let server = lockstep(vec![Step::expect("MAIL"), Step::send(b"\0\0\0 ok\r\n")]);
    let mut client = d.connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), BODY).unwrap_err();
    assert_protocol(&err, SessionError::Malformed(ReplyError::InvalidCode));
    drop(client);
    sent_no_message_data(&server.finish());
}
both!(garbage_and_nul_bytes_are_a_protocol_error);

/// Invalid UTF-8 (and a NUL) in reply text is accepted; the outcome's text is lossy.
fn invalid_utf8_in_replies_is_accepted(d: Driver) {
    let server = ScriptedServer::start(steps([
        vec![
            Step::send(b"220 caf\xe9 ESMTP \xff\r\n"),
            Step::expect("EHLO"),
            Step::send(b"250-h\xf4te\r\n250 PIPELINING\r\n"),
        ],
        vec![
            Step::expect("MAIL"),
            Step::expect("RCPT"),
            Step::expect("DATA"),
            Step::send(b"250 ok\r\n250 d\xe9j\xe0\0 vu\r\n354 go\r\n"),
            Step::ExpectData,
            Step::send(b"250 2.0.0 queued as \xfe\xff\xc3(\r\n"),
            Step::expect("QUIT"),
            Step::reply("221 bye"),
        ],
    ]));
    let mut client = d.connect(config(&server)).unwrap();
    assert_eq!(
        client.greeting().unwrap().message(),
        "caf\u{fffd} ESMTP \u{fffd}"
    );
    let outcome = client.send_bytes(&envelope(), BODY).unwrap();
    assert_eq!(outcome.reply.code, 250);
    assert_eq!(outcome.reply.lines, ["queued as \u{fffd}\u{fffd}\u{fffd}("]);
    assert_eq!(
        outcome.recipients[0].reply.as_ref().unwrap().lines,
        ["d\u{fffd}j\u{fffd}\0 vu"]
    );
    assert!(outcome.all_accepted());
    client.quit().unwrap();
    server.finish().assert_ok();
}
both!(invalid_utf8_in_replies_is_accepted);

// ---------------------------------------------------------------------------- async

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn async_reset_after_the_final_dot() {
    let server = pipelined(vec![
        Step::expect("MAIL"),
        Step::expect("RCPT"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectData,
        Step::Reset,
    ]);
    runtime().block_on(async {
        let mut client = AsyncClient::connect(config(&server)).await.unwrap();
        let err = client.send_bytes(&envelope(), BODY).await.unwrap_err();
        assert_lost(&err, Phase::DataEnd, true);
    });
    server.finish().assert_ok();
}

#[test]
fn async_421_at_rcpt_and_no_greeting() {
    let server = lockstep(vec![
        Step::expect("MAIL"),
        Step::reply("250 ok"),
        Step::expect("RCPT"),
        Step::reply("421 4.3.0 closing"),
    ]);
    let silent = ScriptedServer::start(vec![Step::Hang]);
    runtime().block_on(async {
        let mut client = AsyncClient::connect(config(&server)).await.unwrap();
        let err = client.send_bytes(&envelope(), BODY).await.unwrap_err();
        assert_closing(&err);
        let started = Instant::now();
        let err = AsyncClient::connect(short(&silent)).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout {
                    phase: Phase::Greeting,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < SHORT * 3);
    });
    server.finish().assert_ok();
    silent.finish();
}

#[test]
fn async_replies_out_of_turn_and_oversized() {
    let early = ScriptedServer::start(vec![
        Step::send("220 scripted.test ESMTP\r\n250 ok\r\n"),
        Step::Sleep(Duration::from_millis(300)),
    ]);
    let idle = pipelined(vec![
        Step::Sleep(Duration::from_millis(100)),
        Step::reply("250 surplus"),
        Step::Sleep(Duration::from_millis(500)),
    ]);
    let long = lockstep(vec![Step::expect("MAIL"), Step::Send(vec![b'2'; 1 << 20])]);
    let unexpected = SessionError::UnexpectedReply { code: code(250) };
    runtime().block_on(async {
        let err = AsyncClient::connect(config(&early)).await.unwrap_err();
        assert_protocol(&err, unexpected);

        let mut client = AsyncClient::connect(config(&idle)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let err = client.send_bytes(&envelope(), BODY).await.unwrap_err();
        assert_protocol(&err, unexpected);

        let mut client = AsyncClient::connect(config(&long)).await.unwrap();
        let err = client.send_bytes(&envelope(), BODY).await.unwrap_err();
        assert_protocol(&err, SessionError::Malformed(ReplyError::LineTooLong));
    });
    early.finish();
    let report = idle.finish();
    assert!(
        !report.received_str().contains("MAIL"),
        "{}",
        report.received_str()
    );
    drop(long);
}

#[test]
fn async_accepts_data_then_closes() {
    let server = lockstep(steps([envelope_steps(), vec![Step::Close]]));
    runtime().block_on(async {
        let mut client = AsyncClient::connect(config(&server)).await.unwrap();
        // The message source is slow: the server's close has arrived before the end of data.
        let (mut writer, reader) = tokio::io::duplex(1024);
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = writer.write_all(BODY).await;
        });
        let err = client.send(&envelope(), reader).await.unwrap_err();
        assert_lost(&err, Phase::DataBlock, false);
        feed.await.unwrap();
    });
    server.finish().assert_ok();
}

fn code(value: u16) -> postline::proto::reply::Code {
    postline::proto::reply::Code::new(value).unwrap()
}

/// A client dropped just before its runtime shuts down: the task that would say QUIT is
/// cancelled unrun, and dropping it must not spawn another (it used to, endlessly, until the
/// stack overflowed).
#[test]
fn async_client_dropped_as_the_runtime_shuts_down() {
    let server = lockstep(vec![Step::Hang]);
    let rt = runtime();
    rt.block_on(async {
        let client = AsyncClient::connect(config(&server)).await.unwrap();
        drop(client);
    });
    drop(rt);
    drop(server);
}

// ---------------------------------------------------------------------------- security defaults

/// A server with a self-signed certificate (no CA at all) is refused by default, with a
/// message that says why; nothing is sent after the failed handshake.
fn self_signed_certificate_is_refused_by_default(d: Driver) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server = Aiosmtpd::builder().starttls(&cert_path, &key_path).start();
    let config = Config::relay("localhost")
        .port(server.port())
        .tls(Tls::StartTls)
        .timeouts(Timeouts::default().capped(TIMEOUT));
    let err = d.connect(config).unwrap_err();
    assert!(
        matches!(err, Error::Tls { ref host, .. } if host == "localhost"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("TLS with localhost failed: ") && text.contains("certificate"),
        "{text}"
    );
    assert!(server.messages().is_empty());
}
both!(self_signed_certificate_is_refused_by_default);

/// A message source that hands out one byte per read, so every CR, LF and dot reaches the
/// encoder in a separate piece.
struct ByteByByte<'a>(&'a [u8]);

impl std::io::Read for ByteByByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.split_first() {
            Some((&b, rest)) if !buf.is_empty() => {
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// Message data never ends DATA early: bare-LF and bare-CR dot lines, a dot line followed by
/// a smuggled transaction, in one piece and byte by byte. Each send stores exactly one
/// message, byte for byte what was meant (line ends normalised), and nothing from the
/// smuggled sender.
fn message_data_cannot_end_data_early(d: Driver) {
    let bodies: &[&[u8]] = &[
        b"Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@example.com>\nRCPT TO:<evil@example.com>\nDATA\nevil\n.\n",
        b"Subject: b\r\n\r\nx\r\n.\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: c\r\n\r\nx\n.\r\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: d\r\n\r\nx\r.\r\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: e\r\n\r\nx\r\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<evil@example.com>\r\nDATA\r\nevil\r\n.\r\n",
        b".\r\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: f\r\n\r\n.",
    ];
    let server = Aiosmtpd::start();
    let mut client = d.connect(config_for(server.port())).unwrap();
    let env = Envelope::new("sender@client.test", ["rcpt@server.test"]).unwrap();
    let mut sent = 0;
    for body in bodies {
        client.send(&env, *body).unwrap();
        client.send(&env, ByteByByte(body)).unwrap();
        sent += 2;
    }
    client.quit().unwrap();
    let got = server.wait_for_messages(sent, Duration::from_secs(10));
    assert_eq!(got.len(), sent, "a smuggled message was stored");
    for (i, msg) in got.iter().enumerate() {
        let want = normalise(bodies[i / 2]);
        assert_eq!(lossy(&msg.content), lossy(&want), "body {}", i / 2);
        assert_eq!(msg.mail_from, "sender@client.test");
        assert_eq!(msg.rcpt_tos, ["rcpt@server.test"]);
    }
}
both!(message_data_cannot_end_data_early);

/// Bare CR and bare LF become CRLF, and a final CRLF is added when missing.
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            c => out.push(c),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A message source that gives one piece, then never another.
struct Stall(Option<&'static [u8]>);

impl tokio::io::AsyncRead for Stall {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.take() {
            Some(d) => {
                buf.put_slice(d);
                std::task::Poll::Ready(Ok(()))
            }
            None => std::task::Poll::Pending,
        }
    }
}

/// An async send cancelled in the middle of its message (the caller's timeout fired), then
/// the client dropped inside the runtime: the message is never finished behind the caller's
/// back (no end of data, no QUIT that would follow one), and the client says it is unusable.
#[test]
fn async_send_cancelled_mid_message_is_never_finished() {
    let server = lockstep(steps([envelope_steps(), vec![Step::ExpectData]]));
    runtime().block_on(async {
        let mut client = AsyncClient::connect(config(&server)).await.unwrap();
        let part: &'static [u8] = b"Subject: hostile\r\n\r\nfirst part\r\n";
        let cancelled = tokio::time::timeout(
            Duration::from_millis(300),
            client.send(&envelope(), Stall(Some(part))),
        )
        .await;
        assert!(cancelled.is_err(), "the send should still be waiting");
        assert!(matches!(client.noop().await, Err(Error::Cancelled)));
        drop(client);
        // Time for any task a drop might have spawned to run.
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let report = server.finish();
    let got = report.received_str();
    assert!(got.contains("first part"), "{got}");
    assert!(!got.contains("\r\n.\r\n"), "the end of data left: {got}");
    assert!(!got.contains("QUIT"), "{got}");
}
