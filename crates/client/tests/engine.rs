//! The engine on a virtual clock, against an in-memory server: timers, the slow-drip rule,
//! the cap on an operation, in-doubt decisions, the AUTH round cap and REQUIRETLS, with no
//! socket and no sleep. Each test steps a bounded number of times.

use std::time::{Duration, Instant};

use postline::{Config, Engine, Envelope, Error, Io, Phase, Refusal, Timeouts, Tls};

/// Bound on the steps of one `pump`.
const MAX_STEPS: usize = 200;

/// A server in memory: it answers each command line as a permissive ESMTP server would,
/// except the final reply after the end of data, which is `final_reply` (none: silence).
struct Peer {
    extensions: Vec<String>,
    final_reply: Option<&'static [u8]>,
    in_data: bool,
    line: Vec<u8>,
    to_client: Vec<u8>,
    received: Vec<u8>,
    /// An AUTH exchange gets this challenge forever.
    endless_auth: bool,
    /// Octets of a BDAT chunk still to skip.
    bdat_skip: usize,
    /// A command starting with the first gets the second as its reply, verbatim.
    replies: Vec<(&'static str, &'static [u8])>,
}

impl Peer {
    fn new(extensions: &[&str]) -> Self {
        Peer {
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
            final_reply: Some(b"250 2.0.0 queued\r\n"),
            in_data: false,
            line: Vec::new(),
            to_client: b"220 peer.test ESMTP\r\n".to_vec(),
            received: Vec::new(),
            endless_auth: false,
            bdat_skip: 0,
            replies: Vec::new(),
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        self.received.extend_from_slice(bytes);
        for &b in bytes {
            if self.bdat_skip > 0 {
                self.bdat_skip -= 1;
                continue;
            }
            self.line.push(b);
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                self.answer(&line);
            }
        }
    }

    fn answer(&mut self, line: &[u8]) {
        let up = String::from_utf8_lossy(line).to_ascii_uppercase();
        let custom = self.replies.iter().find(|(c, _)| up.starts_with(c));
        let reply: Vec<u8> = if let (Some((_, r)), false) = (custom, self.in_data) {
            r.to_vec()
        } else if self.in_data {
            if line != b".\r\n" {
                return;
            }
            self.in_data = false;
            match self.final_reply {
                Some(r) => r.to_vec(),
                None => return,
            }
        } else if up.starts_with("EHLO") {
            let mut r = String::from("250-peer.test\r\n");
            for (i, e) in self.extensions.iter().enumerate() {
                let sep = if i + 1 == self.extensions.len() {
                    ' '
                } else {
                    '-'
                };
                r.push_str(&format!("250{sep}{e}\r\n"));
            }
            r.into_bytes()
        } else if let Some(rest) = up.strip_prefix("BDAT ") {
            let mut words = rest.split_whitespace();
            self.bdat_skip = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            match (words.next(), self.final_reply) {
                (Some("LAST"), Some(r)) => r.to_vec(),
                (Some("LAST"), None) => return,
                _ => b"250 chunk ok\r\n".to_vec(),
            }
        } else if up.starts_with("DATA") {
            self.in_data = true;
            b"354 go\r\n".to_vec()
        } else if up.starts_with("AUTH") || self.endless_auth && !up.starts_with("QUIT") {
            b"334 \r\n".to_vec()
        } else if up.starts_with("QUIT") {
            b"221 bye\r\n".to_vec()
        } else if up.starts_with("STARTTLS") {
            b"220 2.0.0 ready\r\n".to_vec()
        } else {
            b"250 ok\r\n".to_vec()
        };
        self.to_client.extend_from_slice(&reply);
    }
}

/// What `pump` stopped at.
#[derive(Debug, PartialEq)]
enum Stop {
    Done,
    /// Waiting for the server, which has nothing to say.
    Waiting(Option<Instant>),
    Failed(String),
}

struct Pair {
    engine: Engine,
    peer: Peer,
    now: Instant,
    body: &'static [u8],
    /// Message data goes in pieces of this size, one per `NeedBody`.
    piece: usize,
    fed: usize,
    /// Write at most this many bytes per `Transmit` (to stop just short of an end of data).
    write_limit: usize,
}

impl Pair {
    fn new(config: Config, peer: Peer) -> Self {
        let now = Instant::now();
        Pair {
            engine: Engine::new(config, now).unwrap(),
            peer,
            now,
            body: b"Subject: t\r\n\r\nbody\r\n",
            piece: usize::MAX,
            fed: 0,
            write_limit: usize::MAX,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Drives the engine until it is done, waits on a silent server, or fails.
    fn pump(&mut self) -> Stop {
        for _ in 0..MAX_STEPS {
            let io = match self.engine.poll_io(self.now) {
                Ok(io) => io,
                Err(e) => return Stop::Failed(format!("{e:?}")),
            };
            match io {
                Io::Transmit { bytes, .. } => {
                    let n = bytes.len().min(self.write_limit);
                    let bytes = bytes[..n].to_vec();
                    if n == 0 {
                        return Stop::Waiting(self.engine.poll_timeout());
                    }
                    self.peer.take(&bytes);
                    self.engine.handle_written(n, self.now);
                }
                Io::Receive { deadline } => {
                    if self.peer.to_client.is_empty() {
                        return Stop::Waiting(deadline);
                    }
                    let bytes = std::mem::take(&mut self.peer.to_client);
                    self.engine.handle_input(&bytes, self.now);
                }
                Io::ReceiveNow => {
                    if self.peer.to_client.is_empty() {
                        self.engine.handle_nothing_pending();
                    } else {
                        let bytes = std::mem::take(&mut self.peer.to_client);
                        self.engine.handle_input(&bytes, self.now);
                    }
                }
                Io::NeedBody(_) => {
                    let end = self.body.len().min(self.fed.saturating_add(self.piece));
                    if self.fed < end {
                        self.engine.handle_body(&self.body[self.fed..end]).unwrap();
                        self.fed = end;
                    } else {
                        self.engine.handle_body_end().unwrap();
                        self.fed = 0;
                    }
                }
                // The handshake is make-believe: the peer goes on in the clear, as if TLS.
                Io::UpgradeTls { .. } => self.engine.handle_tls_established(
                    postline::TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
                        peer_certificates: vec![],
                        channel_binding: None,
                    },
                    self.now,
                ),
                Io::Done => return Stop::Done,
            }
        }
        panic!("the engine did not settle in {MAX_STEPS} steps");
    }
}

fn config() -> Config {
    Config::relay("peer.test")
        .tls(Tls::None)
        .hello_name("client.test")
}

fn envelope() -> Envelope {
    Envelope::new("a@client.test", ["b@peer.test"]).unwrap()
}

fn set_up(config: Config, peer: Peer) -> Pair {
    let mut p = Pair::new(config, peer);
    assert_eq!(p.pump(), Stop::Done);
    p
}

#[test]
fn trickled_greeting_times_out_at_the_greeting_deadline() {
    let mut p = Pair::new(config(), Peer::new(&["PIPELINING"]));
    let t0 = p.now;
    p.peer.to_client.clear();
    // "220 aaaa..." one byte every 10 s, never a whole line: a timer restarted by bytes
    // would never fire.
    let trickle = b"220 ".iter().chain(std::iter::repeat(&b'a'));
    for b in trickle.take(29) {
        p.advance(Duration::from_secs(10));
        p.engine.handle_input(&[*b], p.now);
        match p.engine.poll_io(p.now) {
            Ok(Io::Receive { deadline }) => {
                assert_eq!(deadline, Some(t0 + Duration::from_secs(300)))
            }
            other => panic!("{other:?}"),
        }
        p.engine.handle_timeout(p.now);
    }
    p.advance(Duration::from_secs(10));
    p.engine.handle_timeout(p.now);
    let err = p.engine.poll_io(p.now).unwrap_err();
    assert!(
        matches!(err, Error::Timeout { phase: Phase::Greeting, after } if after == Duration::from_secs(300)),
        "{err:?}"
    );
}

#[test]
fn a_completed_reply_restarts_the_timer_and_early_timeouts_do_nothing() {
    let mut p = Pair::new(config(), Peer::new(&["PIPELINING"]));
    p.advance(Duration::from_secs(299));
    p.engine.handle_timeout(p.now);
    p.engine.handle_timeout(p.now);
    // The greeting arrives just in time; EHLO goes out and its own 300 s start now.
    assert_eq!(p.pump(), Stop::Done);
    let id = p.engine.send(&envelope(), p.now).unwrap();
    p.peer.final_reply = None;
    let Stop::Waiting(Some(deadline)) = p.pump() else {
        panic!("expected to wait for the final reply")
    };
    assert_eq!(deadline, p.now + Duration::from_secs(600), "data end timer");
    p.advance(Duration::from_secs(599));
    p.engine.handle_timeout(p.now);
    assert!(p.engine.error().is_none());
    p.advance(Duration::from_secs(1));
    p.engine.handle_timeout(p.now);
    // The end of data was on the wire: in doubt, and reported so.
    let (done, result) = p.engine.take_finished().unwrap();
    assert_eq!(done, id);
    let err = result.unwrap_err();
    assert!(err.is_in_doubt(), "{err:?}");
    assert!(matches!(
        p.engine.poll_io(p.now),
        Err(Error::DeliveryUnknown { .. })
    ));
    // The terminal error repeats.
    assert!(p.engine.poll_io(p.now).unwrap_err().is_in_doubt());
}

#[test]
fn an_operation_cap_ends_a_slow_exchange_whatever_the_phase_timers() {
    let timeouts = Timeouts::default().attempt(Duration::from_secs(30));
    let mut p = Pair::new(config().timeouts(timeouts), Peer::new(&["PIPELINING"]));
    let t0 = p.now;
    p.peer.to_client.clear();
    assert_eq!(p.pump(), Stop::Waiting(Some(t0 + Duration::from_secs(30))));
    p.advance(Duration::from_secs(30));
    p.engine.handle_timeout(p.now);
    let err = p.engine.error().unwrap();
    assert!(
        matches!(err, Error::Timeout { phase: Phase::Greeting, after } if *after == Duration::from_secs(30)),
        "{err:?}"
    );
}

#[test]
fn a_close_before_the_end_of_data_is_written_is_not_in_doubt() {
    let mut p = set_up(config(), Peer::new(&["PIPELINING"]));
    let id = p.engine.send(&envelope(), p.now).unwrap();
    // Everything but the last byte of the end of data leaves.
    let mut sent = 0;
    for _ in 0..MAX_STEPS {
        match p.engine.poll_io(p.now).unwrap() {
            Io::Transmit { bytes, .. } if bytes.ends_with(b"\r\n.\r\n") => {
                let n = bytes.len() - 1;
                p.peer.take(&bytes[..n]);
                p.engine.handle_written(n, p.now);
                sent = n;
                break;
            }
            Io::Transmit { bytes, .. } => {
                let b = bytes.to_vec();
                p.peer.take(&b);
                p.engine.handle_written(b.len(), p.now);
            }
            Io::Receive { .. } | Io::ReceiveNow => {
                let bytes = std::mem::take(&mut p.peer.to_client);
                if bytes.is_empty() {
                    p.engine.handle_nothing_pending();
                } else {
                    p.engine.handle_input(&bytes, p.now);
                }
            }
            Io::NeedBody(_) => {
                p.engine.handle_body(p.body).unwrap();
                p.engine.handle_body_end().unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(sent > 0);
    p.engine.handle_eof(p.now);
    let (done, result) = p.engine.take_finished().unwrap();
    assert_eq!(done, id);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::NotSent { cause } if matches!(**cause, Error::ConnectionLost { phase: Phase::DataBlock })),
        "{err:?}"
    );
    assert!(!err.is_in_doubt() && err.is_retryable());
}

#[test]
fn a_server_gone_before_the_end_of_data_is_caught_by_the_read_without_waiting() {
    let mut p = set_up(config(), Peer::new(&["PIPELINING"]));
    p.engine.send(&envelope(), p.now).unwrap();
    let mut asked = 0;
    for _ in 0..MAX_STEPS {
        match p.engine.poll_io(p.now) {
            Ok(Io::ReceiveNow) => {
                asked += 1;
                if p.engine.session().sending().is_none() && asked > 1 {
                    // The end of data is released: the server has gone meanwhile.
                    p.engine.handle_eof(p.now);
                } else if p.peer.to_client.is_empty() {
                    p.engine.handle_nothing_pending();
                } else {
                    let b = std::mem::take(&mut p.peer.to_client);
                    p.engine.handle_input(&b, p.now);
                }
            }
            Ok(Io::Transmit { bytes, .. }) => {
                assert!(!bytes.ends_with(b"\r\n.\r\n"), "wrote the end of data");
                let b = bytes.to_vec();
                p.peer.take(&b);
                p.engine.handle_written(b.len(), p.now);
            }
            Ok(Io::Receive { .. }) => {
                let b = std::mem::take(&mut p.peer.to_client);
                p.engine.handle_input(&b, p.now);
            }
            Ok(Io::NeedBody(_)) => {
                p.engine.handle_body(p.body).unwrap();
                p.engine.handle_body_end().unwrap();
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(!e.is_in_doubt(), "{e:?}");
                break;
            }
        }
    }
    assert_eq!(asked, 2, "one idle check, one before the end of data");
    assert!(!p.peer.received.ends_with(b"\r\n.\r\n"));
}

#[test]
fn half_a_final_reply_then_a_close_is_in_doubt() {
    let mut peer = Peer::new(&["PIPELINING"]);
    peer.final_reply = Some(b"250 2.0.0 que");
    let mut p = set_up(config(), peer);
    p.engine.send(&envelope(), p.now).unwrap();
    assert!(matches!(p.pump(), Stop::Waiting(_)));
    p.engine.handle_eof(p.now);
    let (_, result) = p.engine.take_finished().unwrap();
    let err = result.unwrap_err();
    assert!(err.is_in_doubt(), "{err:?}");
}

#[test]
fn an_endless_auth_exchange_is_cut_off() {
    let mut peer = Peer::new(&["AUTH PLAIN LOGIN"]);
    peer.endless_auth = true;
    let config = config()
        .credentials("user", "secret")
        .allow_plaintext_auth(true)
        .auth_mechanism(postline::proto::Mechanism::Login);
    let mut p = Pair::new(config, peer);
    let Stop::Failed(e) = p.pump() else {
        panic!("expected the exchange to fail")
    };
    assert!(e.contains("AuthRounds"), "{e}");
    let answers = String::from_utf8_lossy(&p.peer.received)
        .lines()
        .filter(|l| !l.starts_with("EHLO") && !l.starts_with("AUTH"))
        .count();
    assert!(
        answers <= postline::engine::MAX_AUTH_ROUNDS as usize,
        "{answers}"
    );
}

#[test]
fn requiretls_refuses_a_server_that_cannot_honour_it() {
    let mut p = set_up(config(), Peer::new(&["PIPELINING", "REQUIRETLS"]));
    let env = envelope().require_tls(true);
    let err = p.engine.send(&env, p.now).unwrap_err();
    assert!(
        matches!(err, Error::Incompatible(Refusal::RequireTlsUnavailable)),
        "{err:?}"
    );
    assert_eq!(p.pump(), Stop::Done, "nothing was sent");
    assert!(!String::from_utf8_lossy(&p.peer.received).contains("MAIL"));
    // The connection is still good.
    p.engine.send(&envelope(), p.now).unwrap();
    assert_eq!(p.pump(), Stop::Done);
    assert!(p.engine.take_finished().unwrap().1.is_ok());
}

#[test]
fn requiretls_in_the_config_goes_on_every_mail_and_only_over_tls() {
    let tls = || config().tls(Tls::StartTls).require_tls(true);
    let mut p = set_up(tls(), Peer::new(&["PIPELINING", "STARTTLS", "REQUIRETLS"]));
    assert!(p.engine.tls_info().is_some());
    p.engine.send(&envelope(), p.now).unwrap();
    assert_eq!(p.pump(), Stop::Done);
    assert!(p.engine.take_finished().unwrap().1.is_ok());
    let sent = String::from_utf8_lossy(&p.peer.received).into_owned();
    assert!(
        sent.contains("MAIL FROM:<a@client.test> REQUIRETLS\r\n"),
        "{sent}"
    );

    // A server without REQUIRETLS is sent nothing, and the refusal is permanent.
    let mut p = set_up(tls(), Peer::new(&["PIPELINING", "STARTTLS"]));
    let err = p.engine.send(&envelope(), p.now).unwrap_err();
    assert!(
        matches!(err, Error::Incompatible(Refusal::RequireTlsUnavailable)),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(!String::from_utf8_lossy(&p.peer.received).contains("MAIL"));

    // Opportunistic TLS becomes required: no STARTTLS offered, no session.
    let mut p = Pair::new(
        config().tls(Tls::Opportunistic).require_tls(true),
        Peer::new(&["PIPELINING", "REQUIRETLS"]),
    );
    match p.pump() {
        Stop::Failed(e) => assert!(e.contains("StartTlsUnavailable"), "{e}"),
        other => panic!("{other:?}"),
    }

    // A REQUIRETLS message over TLS whose certificate is not checked: refused, nothing sent.
    let mut p = set_up(
        config()
            .tls(Tls::StartTls)
            .dangerous_accept_invalid_certificates(true),
        Peer::new(&["PIPELINING", "STARTTLS", "REQUIRETLS"]),
    );
    let err = p
        .engine
        .send(&envelope().require_tls(true), p.now)
        .unwrap_err();
    assert!(err.to_string().contains("verified certificate"), "{err}");
    assert!(!String::from_utf8_lossy(&p.peer.received).contains("MAIL"));

    // A pin makes opportunistic TLS required too: a stripped STARTTLS is no session.
    let mut p = Pair::new(
        config()
            .tls(Tls::Opportunistic)
            .pin(postline::Pin::Certificate(postline::Fingerprint([0; 32]))),
        Peer::new(&["PIPELINING"]),
    );
    match p.pump() {
        Stop::Failed(e) => assert!(e.contains("StartTlsUnavailable"), "{e}"),
        other => panic!("{other:?}"),
    }

    // No TLS at all, or certificates not verified: refused before anything is sent.
    for bad in [
        config().require_tls(true),
        tls().dangerous_accept_invalid_certificates(true),
    ] {
        let err = Engine::new(bad, Instant::now()).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains("REQUIRETLS"), "{err}");
    }
}

#[test]
fn a_huge_timeout_is_no_timeout_rather_than_an_overflow() {
    let mut t = Timeouts::default();
    t.greeting = Duration::MAX;
    let mut p = Pair::new(config().timeouts(t), Peer::new(&["PIPELINING"]));
    p.peer.to_client.clear();
    assert_eq!(p.pump(), Stop::Waiting(None));
}

#[test]
fn a_final_reply_followed_by_a_421_is_still_a_delivery() {
    let mut peer = Peer::new(&["PIPELINING"]);
    peer.final_reply = Some(b"250 2.0.0 queued\r\n421 4.3.2 bye\r\n");
    let mut p = set_up(config(), peer);
    let id = p.engine.send(&envelope(), p.now).unwrap();
    assert!(matches!(p.pump(), Stop::Failed(_)));
    let (done, result) = p.engine.take_finished().unwrap();
    assert_eq!(done, id);
    assert_eq!(result.unwrap().reply.code, 250);
}

/// CHUNKING with a server that answers each BDAT at once: the replies due for chunks already
/// written are not "premature" when the read before BDAT LAST picks them up.
#[test]
fn chunking_with_prompt_replies_to_every_chunk() {
    let body: &'static [u8] = Box::leak(vec![b'a'; 300_000].into_boxed_slice());
    let mut p = set_up(
        config().chunking(true),
        Peer::new(&["PIPELINING", "CHUNKING"]),
    );
    p.body = body;
    p.piece = 64 * 1024;
    for _ in 0..3 {
        p.engine.send(&envelope(), p.now).unwrap();
        assert_eq!(p.pump(), Stop::Done);
        let (_, result) = p.engine.take_finished().unwrap();
        assert_eq!(result.unwrap().reply.code, 250);
    }
    let sent = String::from_utf8_lossy(&p.peer.received);
    // 300,000 octets in 64 KiB pieces: five BDAT chunks and BDAT LAST, three times.
    assert_eq!(sent.matches("BDAT").count(), 3 * 6);
}

#[test]
fn a_write_of_nothing_ends_the_connection_rather_than_spinning() {
    let mut p = set_up(config(), Peer::new(&["PIPELINING"]));
    p.engine.send(&envelope(), p.now).unwrap();
    for _ in 0..MAX_STEPS {
        match p.engine.poll_io(p.now) {
            Ok(Io::ReceiveNow) => p.engine.handle_nothing_pending(),
            Ok(Io::Transmit { .. }) => p.engine.handle_written(0, p.now),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
                return;
            }
        }
    }
    panic!("still writing after {MAX_STEPS} writes of nothing");
}

#[test]
fn quit_waits_no_longer_than_the_operation_cap() {
    let timeouts = Timeouts::default().attempt(Duration::from_secs(2));
    let mut p = set_up(config().timeouts(timeouts), Peer::new(&["PIPELINING"]));
    p.engine.quit(p.now, None).unwrap();
    let deadline = p.engine.poll_timeout();
    let limit = p.now + Duration::from_secs(2);
    match p.engine.poll_io(p.now).unwrap() {
        Io::Transmit { deadline, .. } => assert!(deadline.is_some_and(|d| d <= limit)),
        other => panic!("{other:?}"),
    }
    assert!(deadline.is_none_or(|d| d <= limit), "{deadline:?}");
}

/// Without PIPELINING, a reply split across reads whose first bytes came before the command
/// it would answer (`250 ok\r\n25` after MAIL, `0 ok\r\n` after RCPT) is never RCPT's
/// answer: the session ends at the first byte, before RCPT is written. Bytes that may start a
/// 421 (`4`) are looked at again after RCPT: a `450` begun before RCPT is not its answer.
#[test]
fn a_reply_begun_before_its_command_is_never_its_answer() {
    for (after_mail, after_rcpt, error, rcpt_written) in [
        (
            &b"250 ok\r\n25"[..],
            &b"0 ok\r\n"[..],
            "UnexpectedInput",
            false,
        ),
        (b"250 ok\r\n4", b"50 busy\r\n", "UnexpectedReply", true),
    ] {
        let mut peer = Peer::new(&["8BITMIME"]);
        peer.replies = vec![("MAIL", after_mail), ("RCPT", after_rcpt)];
        let mut p = set_up(config(), peer);
        p.engine.send(&envelope(), p.now).unwrap();
        let stop = p.pump();
        let (_, result) = p.engine.take_finished().unwrap();
        let err = format!("{:?}", result.unwrap_err());
        assert!(err.contains(error), "{stop:?} {err}");
        let sent = String::from_utf8_lossy(&p.peer.received);
        assert_eq!(sent.contains("RCPT TO"), rcpt_written, "{sent}");
        assert!(!sent.contains("DATA"), "{sent}");
    }
}
