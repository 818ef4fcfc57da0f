//! BDAT (RFC 3030, the `chunking` feature): message data in chunks, no dot-stuffing, at most
//! `8` chunks unanswered, a refused chunk ending the message with the connection still usable.
//! Against a server in a thread on loopback that parses every chunk (and can hold its replies
//! back until the client stops writing, to see how far it goes), and against a private
//! Postfix, whose CHUNKING is real: a megabyte of dot-lines compared as delivered, and a
//! message over its size limit refused midway.
#![cfg(feature = "chunking")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{run, TokioClock};
#[path = "common/std_socket.rs"]
mod std_socket;
use std_socket::{Socket, StdClock};

use embedded_io_adapters::tokio_1::FromTokio;
use postline_embedded::blocking::BlockingClient;
use postline_embedded::mail::{Mail, Priority};
use postline_embedded::{Address, Client, Config, FailedAt};
use postline_testkit::Postfix;

fn addr(a: &'static str) -> Address<&'static str> {
    Address::new(a).unwrap()
}

/// How the server in a thread behaves.
#[derive(Clone, Default)]
struct Script {
    /// CHUNKING in the EHLO reply (PIPELINING always is).
    chunking: bool,
    /// Recipients refused (550) when their address contains "nobody".
    refuse_nobody: bool,
    /// The chunk (counted from 0 over the connection) refused with 552.
    refuse_chunk: Option<usize>,
    /// Chunk replies held back until the client has written nothing for 100 ms.
    hold_replies: bool,
    /// From this chunk on, nothing more is answered (the connection stays open).
    silent_from_chunk: Option<usize>,
    /// The connection is closed, unanswered, once a BDAT LAST is in.
    close_at_last: bool,
    /// The first MAIL is refused (550), and the RCPTs after it (503).
    refuse_first_mail: bool,
}

/// What the server saw.
#[derive(Default, Debug)]
struct Seen {
    /// Every command line, in order (chunk data left out).
    commands: Vec<String>,
    /// Each message's data, as received (BDAT chunks joined, or DATA un-stuffed).
    messages: Vec<Vec<u8>>,
    /// Chunks received with no reply sent yet, at most.
    most_unanswered: usize,
    /// Chunks received after the refused one.
    after_refusal: usize,
}

/// An SMTP server on loopback for one connection, answering as `script` says.
fn serve(script: Script) -> (u16, Arc<Mutex<Seen>>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let handle = thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut server = Server {
            script,
            seen: s,
            input: Vec::new(),
            held: Vec::new(),
            chunks: 0,
            unanswered: 0,
            refused: false,
            data: Vec::new(),
            failed: false,
            in_data: false,
            no_mail: false,
        };
        server.run(&mut c);
    });
    (port, seen, handle)
}

struct Server {
    script: Script,
    seen: Arc<Mutex<Seen>>,
    input: Vec<u8>,
    /// Replies not yet sent (held back).
    held: Vec<u8>,
    chunks: usize,
    unanswered: usize,
    /// The current message had a chunk refused.
    refused: bool,
    data: Vec<u8>,
    /// This transaction failed (MAIL or every RCPT): chunks are refused.
    failed: bool,
    /// DATA was answered with 354: message data comes.
    in_data: bool,
    /// The last MAIL was refused.
    no_mail: bool,
}

impl Server {
    fn run(&mut self, c: &mut TcpStream) {
        c.write_all(b"220 test ESMTP\r\n").unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 8192];
        while Instant::now() < end {
            match c.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // The client stopped writing: what was held goes now.
                    self.flush(c);
                    continue;
                }
                Err(_) => return,
            }
            loop {
                match self.step() {
                    Some(true) => {
                        self.flush(c);
                        return;
                    }
                    Some(false) => {}
                    None => break,
                }
            }
            if !self.script.hold_replies {
                self.flush(c);
            }
        }
    }

    fn flush(&mut self, c: &mut TcpStream) {
        if !self.held.is_empty() {
            c.write_all(&self.held).unwrap();
            self.held.clear();
            self.unanswered = 0;
        }
    }

    fn reply(&mut self, r: &str) {
        self.held.extend_from_slice(r.as_bytes());
        self.held.extend_from_slice(b"\r\n");
    }

    /// Takes one command (with its chunk) from the input: `None` when it is not all there,
    /// `Some(true)` after QUIT.
    fn step(&mut self) -> Option<bool> {
        if self.in_data {
            // Up to the lone dot, un-stuffed (this server reads DATA whole).
            let end = if self.input.starts_with(b".\r\n") {
                0
            } else {
                find(&self.input, b"\r\n.\r\n")? + 2
            };
            let mut m = Vec::new();
            for l in self.input[..end].split_inclusive(|&b| b == b'\n') {
                m.extend_from_slice(l.strip_prefix(b".").unwrap_or(l));
            }
            self.input.drain(..end + 3);
            self.in_data = false;
            self.seen.lock().unwrap().messages.push(m);
            self.reply("250 2.0.0 message taken");
            return Some(false);
        }
        let lf = self.input.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&self.input[..lf])
            .trim_end()
            .to_string();
        let upper = line.to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("BDAT ") {
            let mut words = rest.split(' ');
            let size: usize = words.next().unwrap().parse().unwrap();
            let last = words.next() == Some("LAST");
            if self.input.len() < lf + 1 + size {
                return None;
            }
            let chunk = self.input[lf + 1..lf + 1 + size].to_vec();
            self.input.drain(..lf + 1 + size);
            self.seen.lock().unwrap().commands.push(line);
            let index = self.chunks;
            self.chunks += 1;
            if self.script.close_at_last && last {
                return Some(true);
            }
            if self.script.silent_from_chunk.is_some_and(|k| index >= k) {
                return Some(false);
            }
            self.unanswered += 1;
            {
                let mut seen = self.seen.lock().unwrap();
                seen.most_unanswered = seen.most_unanswered.max(self.unanswered);
                if self.refused {
                    seen.after_refusal += 1;
                }
            }
            if self.failed || self.refused {
                self.reply("503 5.5.1 no valid transaction");
            } else if self.script.refuse_chunk == Some(index) {
                self.refused = true;
                self.reply("552 5.3.4 chunk refused");
            } else {
                self.data.extend_from_slice(&chunk);
                if last {
                    let m = std::mem::take(&mut self.data);
                    self.seen.lock().unwrap().messages.push(m);
                    self.reply("250 2.0.0 message taken");
                } else {
                    self.reply(&format!("250 2.0.0 {size} octets"));
                }
            }
            return Some(false);
        }
        self.input.drain(..lf + 1);
        self.seen.lock().unwrap().commands.push(line.clone());
        if upper.starts_with("EHLO") {
            let chunking = if self.script.chunking {
                "250-CHUNKING\r\n"
            } else {
                ""
            };
            let r = format!("250-test\r\n{chunking}250-8BITMIME\r\n250 PIPELINING");
            self.reply(&r);
        } else if upper.starts_with("MAIL") {
            self.failed = true;
            self.refused = false;
            self.data.clear();
            if std::mem::take(&mut self.script.refuse_first_mail) {
                self.no_mail = true;
                self.reply("550 5.7.1 sender refused");
            } else {
                self.no_mail = false;
                self.reply("250 2.1.0 ok");
            }
        } else if upper.starts_with("RCPT") {
            if self.no_mail {
                self.reply("503 5.5.1 need MAIL first");
            } else if self.script.refuse_nobody && upper.contains("NOBODY") {
                self.reply("550 5.1.1 no such user");
            } else {
                self.failed = false;
                self.reply("250 2.1.5 ok");
            }
        } else if upper == "DATA" {
            if self.failed {
                self.reply("554 5.5.1 no valid recipients");
                return Some(false);
            }
            self.reply("354 go ahead");
            self.in_data = true;
        } else if upper == "RSET" {
            self.failed = true;
            self.refused = false;
            self.reply("250 2.0.0 ok");
        } else if upper == "QUIT" {
            self.reply("221 2.0.0 bye");
            return Some(true);
        } else {
            self.reply("500 5.5.2 what");
        }
        Some(false)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The blocking twin over a std socket to `port`, with `config`'s chunking on.
fn send_blocking(
    port: u16,
    to: &[Address<&str>],
    bodies: &[&[u8]],
) -> Vec<(Result<postline_embedded::Status, String>, Vec<u16>)> {
    send_blocking_within(port, to, bodies, 10_000, 512)
}

/// The same, each wait capped at `timeout_ms`; QUIT only after a delivered message.
fn send_blocking_within(
    port: u16,
    to: &[Address<&str>],
    bodies: &[&[u8]],
    timeout_ms: u64,
    out_len: usize,
) -> Vec<(Result<postline_embedded::Status, String>, Vec<u16>)> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let (mut out, mut input) = (vec![0u8; out_len], [0u8; 512]);
    let config = Config::new("device.example")
        .chunking(true)
        .timeout_ms(timeout_ms);
    let mut c = BlockingClient::new(
        Socket(stream),
        StdClock(Instant::now()),
        config,
        &mut out,
        &mut input,
    )
    .unwrap();
    c.connect().unwrap();
    let mut results = Vec::new();
    for body in bodies {
        let mut codes = vec![0u16; to.len()];
        let r = c
            .send(addr("device@example.com"), to, body, &mut codes)
            .map_err(|e| format!("{e:?}"));
        let failed = r.is_err();
        results.push((r, codes));
        if failed {
            return results;
        }
    }
    c.quit().unwrap();
    results
}

/// Lines starting with dots, a bare LF and a bare CR: `len` bytes or a little more.
fn dot_lines(len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut i = 0;
    while body.len() < len {
        match i % 3 {
            0 => body.extend_from_slice(format!(".line {i} .\r\n").as_bytes()),
            1 => body.extend_from_slice(format!("..line {i}\n").as_bytes()),
            _ => body.extend_from_slice(format!("line {i} ..\r\n").as_bytes()),
        }
        i += 1;
    }
    body
}

/// CRLF for every line end, as the message goes out (no dot-stuffing: BDAT counts octets).
fn crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in body.split_inclusive(|&b| b == b'\n') {
        let l = l
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        match l {
            Some(l) => {
                out.extend_from_slice(l);
                out.extend_from_slice(b"\r\n");
            }
            None => {
                out.extend_from_slice(body.rsplit(|&b| b == b'\n').next().unwrap());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out
}

#[test]
fn a_message_goes_in_chunks_no_more_than_eight_unanswered() {
    let (port, seen, server) = serve(Script {
        chunking: true,
        hold_replies: true,
        ..Script::default()
    });
    let body = dot_lines(40_000);
    let results = send_blocking(port, &[addr("ops@example.com")], &[&body]);
    server.join().unwrap();
    let (status, codes) = &results[0];
    let status = status.as_ref().unwrap();
    assert!(status.delivered, "{status:?}");
    assert_eq!(codes, &[250]);
    let seen = seen.lock().unwrap();
    // Taken as sent: line ends made CRLF, leading dots untouched (no stuffing with BDAT).
    assert_eq!(seen.messages.len(), 1);
    assert_eq!(seen.messages[0], crlf(&body));
    assert!(
        !seen.commands.iter().any(|c| c == "DATA"),
        "{:?}",
        seen.commands
    );
    let chunks = seen
        .commands
        .iter()
        .filter(|c| c.starts_with("BDAT"))
        .count();
    // Chunks are at most half the 512-byte buffer: many of them, each answered.
    assert!(chunks > 150, "{chunks} chunks");
    assert!(seen.commands.iter().any(|c| c.ends_with(" LAST")));
    // The server held every reply until the client stopped writing: it stopped at 8.
    assert_eq!(seen.most_unanswered, 8, "{seen:?}");
}

/// The window holds whatever the output buffer's size (several chunks may fit in it at once).
#[test]
fn the_window_holds_for_any_output_buffer() {
    for out_len in [200, 300, 700, 1000, 1500, 4096] {
        let (port, seen, server) = serve(Script {
            chunking: true,
            hold_replies: true,
            ..Script::default()
        });
        let body = dot_lines(30_000);
        let results =
            send_blocking_within(port, &[addr("ops@example.com")], &[&body], 10_000, out_len);
        server.join().unwrap();
        assert!(results[0].0.as_ref().unwrap().delivered, "{out_len}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.messages[0], crlf(&body), "{out_len}");
        assert!(
            (2..=8).contains(&seen.most_unanswered),
            "{out_len}: {}",
            seen.most_unanswered
        );
    }
}

/// MAIL refused: no chunk goes for that message, and the next one on the connection does.
#[test]
fn a_refused_mail_sends_no_chunk_and_the_next_message_goes() {
    let (port, seen, server) = serve(Script {
        chunking: true,
        refuse_first_mail: true,
        ..Script::default()
    });
    let results = send_blocking(
        port,
        &[addr("ops@example.com")],
        &[b"refused\r\n", b"taken\r\n"],
    );
    server.join().unwrap();
    let first = results[0].0.as_ref().unwrap();
    assert!(!first.delivered);
    assert_eq!(first.failed_at, Some(FailedAt::Mail));
    assert_eq!(first.code.map(|c| c.value()), Some(550));
    let second = results[1].0.as_ref().unwrap();
    assert!(second.delivered, "{second:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages, vec![b"taken\r\n".to_vec()]);
    // Every chunk is the second message's: none between the refused MAIL and the next.
    assert_eq!(
        seen.commands,
        [
            "EHLO device.example",
            "MAIL FROM:<device@example.com>",
            "RCPT TO:<ops@example.com>",
            "MAIL FROM:<device@example.com>",
            "RCPT TO:<ops@example.com>",
            "BDAT 7",
            "BDAT 0 LAST",
            "QUIT"
        ]
    );
}

/// A streamed message whose MAIL is refused: `begin` says so, and its data is refused.
#[test]
fn a_streamed_message_with_its_mail_refused_takes_no_data() {
    let (port, seen, server) = serve(Script {
        chunking: true,
        refuse_first_mail: true,
        ..Script::default()
    });
    let (begun, data) = run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut codes = [0u16; 1];
        let (mut c, begun) = begun(port, &mut out, &mut input, &mut codes).await;
        let data = c
            .data(b"never sent\r\n")
            .await
            .map_err(|e| format!("{e:?}"));
        c.quit().await.unwrap();
        (begun, data)
    });
    server.join().unwrap();
    let begun = begun.expect("a status for the refused MAIL");
    assert_eq!(begun.failed_at, Some(FailedAt::Mail));
    assert_eq!(data, Err("Use(NoDataExpected)".to_string()));
    let seen = seen.lock().unwrap();
    assert!(
        !seen.commands.iter().any(|c| c.starts_with("BDAT")),
        "{:?}",
        seen.commands
    );
}

#[test]
fn a_refused_chunk_ends_the_message_and_the_next_one_goes() {
    let (port, seen, server) = serve(Script {
        chunking: true,
        refuse_chunk: Some(20),
        ..Script::default()
    });
    let first = dot_lines(40_000);
    let second = b"the next one\r\n".to_vec();
    let results = send_blocking(port, &[addr("ops@example.com")], &[&first, &second]);
    server.join().unwrap();
    let status = results[0].0.as_ref().unwrap();
    assert!(!status.delivered, "{status:?}");
    assert_eq!(status.failed_at, Some(FailedAt::Message));
    assert_eq!(status.code.map(|c| c.value()), Some(552));
    let next = results[1].0.as_ref().unwrap();
    assert!(next.delivered, "{next:?}");
    let seen = seen.lock().unwrap();
    // Only the chunks already on their way when the refusal was read followed it (RFC 3030
    // 2: none may be sent after it), and no BDAT LAST for the refused message.
    assert!(
        seen.after_refusal <= 8,
        "{} chunks after",
        seen.after_refusal
    );
    assert_eq!(seen.messages, vec![second]);
    assert_eq!(
        seen.commands
            .iter()
            .filter(|c| c.ends_with(" LAST"))
            .count(),
        1
    );
}

#[test]
fn with_every_recipient_refused_no_chunk_is_sent() {
    let (port, seen, server) = serve(Script {
        chunking: true,
        refuse_nobody: true,
        ..Script::default()
    });
    let results = send_blocking(
        port,
        &[addr("nobody@example.com"), addr("nobody2@example.com")],
        &[b"never\r\n"],
    );
    server.join().unwrap();
    let (status, codes) = &results[0];
    let status = status.as_ref().unwrap();
    assert!(!status.delivered);
    assert_eq!(status.failed_at, Some(FailedAt::NoValidRecipients));
    assert_eq!(codes, &[550, 550]);
    let seen = seen.lock().unwrap();
    assert!(
        !seen.commands.iter().any(|c| c.starts_with("BDAT")),
        "{:?}",
        seen.commands
    );
}

#[test]
fn without_chunking_offered_data_is_used() {
    let (port, seen, server) = serve(Script::default());
    let body = dot_lines(2_000);
    let results = send_blocking(port, &[addr("ops@example.com")], &[&body]);
    server.join().unwrap();
    assert!(results[0].0.as_ref().unwrap().delivered);
    let seen = seen.lock().unwrap();
    assert!(seen.commands.iter().any(|c| c == "DATA"));
    assert!(!seen.commands.iter().any(|c| c.starts_with("BDAT")));
    assert_eq!(seen.messages[0], crlf(&body));
}

/// The async client with chunking on, connected to `port`, a streamed message begun
/// (device@example.com to ops@example.com): the client and what `begin` said.
async fn begun<'b>(
    port: u16,
    out: &'b mut [u8],
    input: &'b mut [u8],
    codes: &mut [u16],
) -> (
    Client<'b, FromTokio<tokio::net::TcpStream>, TokioClock>,
    Option<postline_embedded::Status>,
) {
    let config = Config::new("device.example")
        .chunking(true)
        .timeout_ms(10_000);
    let socket = FromTokio::new(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    let mut c = Client::new(socket, TokioClock::now(), config, out, input).unwrap();
    c.connect().await.unwrap();
    let begun = c
        .begin(
            addr("device@example.com"),
            &[addr("ops@example.com")],
            None,
            codes,
        )
        .await
        .unwrap();
    (c, begun)
}

/// A streamed message (the async client's `begin`, `data`, `end`) refused midway: the
/// `data` calls after it send nothing, and `end` gives the refusal.
#[test]
fn a_streamed_message_refused_midway_ends_with_the_refusal() {
    let (port, seen, server) = serve(Script {
        chunking: true,
        refuse_chunk: Some(3),
        ..Script::default()
    });
    let piece = dot_lines(4_000);
    let (status, begun, codes) = run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut codes = [0u16; 1];
        let (mut c, begun) = begun(port, &mut out, &mut input, &mut codes).await;
        for _ in 0..20 {
            c.data(&piece).await.unwrap();
        }
        let mut late = [0u16; 1];
        let status = c.end(&mut late).await.unwrap();
        c.quit().await.unwrap();
        (status, begun, codes)
    });
    server.join().unwrap();
    assert!(begun.is_none(), "{begun:?}");
    assert_eq!(codes, [250]);
    assert!(!status.delivered, "{status:?}");
    assert_eq!(status.failed_at, Some(FailedAt::Message));
    assert_eq!(status.code.map(|c| c.value()), Some(552));
    let seen = seen.lock().unwrap();
    assert!(
        seen.after_refusal <= 8,
        "{} chunks after",
        seen.after_refusal
    );
    assert!(seen.messages.is_empty());
    // 20 pieces of 4 KB are some 350 chunks: the client stopped soon after the refusal.
    let chunks = seen
        .commands
        .iter()
        .filter(|c| c.starts_with("BDAT"))
        .count();
    assert!(chunks <= 4 + 8, "{chunks} chunks");
    assert_eq!(seen.commands.last().map(String::as_str), Some("QUIT"));
}

/// A socket that keeps a copy of what the client wrote.
struct Tee(Socket, Arc<Mutex<Vec<u8>>>);

impl embedded_io::ErrorType for Tee {
    type Error = std_socket::SocketError;
}

impl embedded_io::Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf)
    }
}

impl embedded_io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = self.0.write(buf)?;
        self.1.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush()
    }
}

/// The blocking twin with chunking on, over a socket to Postfix whose writes are kept.
fn postfix_client<'b>(
    port: u16,
    wire: &Arc<Mutex<Vec<u8>>>,
    out: &'b mut [u8],
    input: &'b mut [u8],
) -> BlockingClient<'b, Tee, StdClock> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let config = Config::new("device.example")
        .chunking(true)
        .timeout_ms(20_000);
    let mut c = BlockingClient::new(
        Tee(Socket(stream), wire.clone()),
        StdClock(Instant::now()),
        config,
        out,
        input,
    )
    .unwrap();
    c.connect().unwrap();
    c
}

/// The body of a message as Postfix stored it (after the headers it adds and ours), in CRLF.
fn stored_body(stored: &[u8]) -> Vec<u8> {
    let at = find(stored, b"\n\n").expect("a header/body separator") + 2;
    crlf(&stored[at..])
}

#[test]
fn postfix_takes_a_megabyte_of_dot_lines_in_chunks() {
    let postfix = Postfix::builder().start();
    let mut body = b"Subject: chunks\r\n\r\n".to_vec();
    body.extend(dot_lines(1 << 20));
    let wire = Arc::new(Mutex::new(Vec::new()));
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = postfix_client(postfix.port(), &wire, &mut out, &mut input);
    let mut codes = [0u16; 2];
    let status = c
        .send(
            addr("device@example.com"),
            &[addr("ops@example.com"), addr("dev@example.com")],
            &body,
            &mut codes,
        )
        .unwrap();
    assert!(status.delivered, "{status:?}");
    assert_eq!(codes, [250, 250]);
    c.quit().unwrap();
    drop(c);
    let written = wire.lock().unwrap();
    assert!(find(&written, b"\r\nBDAT ").is_some());
    assert!(find(&written, b"\r\nDATA\r\n").is_none());
    let got = postfix.wait_for_messages(2, Duration::from_secs(30));
    for m in &got {
        assert_eq!(stored_body(m), crlf(&body[19..]));
    }
}

#[test]
fn postfix_refusing_a_chunk_over_its_size_limit_ends_that_message_only() {
    let postfix = Postfix::builder()
        .main_cf("message_size_limit = 100000")
        .start();
    let wire = Arc::new(Mutex::new(Vec::new()));
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let mut c = postfix_client(postfix.port(), &wire, &mut out, &mut input);
    // Composed (no SIZE= declared): the limit is found midway, by a chunk.
    let big = dot_lines(300_000);
    let to = [addr("ops@example.com")];
    let mail = Mail {
        from: addr("device@example.com"),
        to: &to,
        subject: "too big",
        priority: Priority::Normal,
        body: &big,
    };
    let mut codes = [0u16; 1];
    let status = c.send_mail(&mail, &mut codes).unwrap();
    assert!(!status.delivered, "{status:?}");
    assert_eq!(status.failed_at, Some(FailedAt::Message));
    assert_eq!(
        status.code.map(|c| c.value()),
        Some(552),
        "{:?}",
        c.last_reply()
    );
    // The connection goes on: the next message is delivered.
    let small = Mail {
        subject: "small",
        body: b"fits\r\n",
        ..mail
    };
    let status = c.send_mail(&small, &mut codes).unwrap();
    assert!(status.delivered, "{status:?}");
    c.quit().unwrap();
    drop(c);
    let got = postfix.wait_for_messages(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(stored_body(&got[0]), b"fits\r\n");
    // Nothing of the refused message was delivered, and far less than all of it was sent.
    let written = wire.lock().unwrap();
    assert!(written.len() < 200_000, "{} bytes written", written.len());
}

/// A server silent midway through the chunks: a timeout, and the message is known not
/// delivered (no BDAT LAST went), not in doubt.
#[test]
fn a_server_silent_midway_is_a_timeout_not_a_message_in_doubt() {
    let (port, _seen, server) = serve(Script {
        chunking: true,
        silent_from_chunk: Some(5),
        ..Script::default()
    });
    let body = dot_lines(40_000);
    let started = Instant::now();
    let results = send_blocking_within(port, &[addr("ops@example.com")], &[&body], 500, 512);
    let err = results[0].0.as_ref().unwrap_err();
    assert!(err.starts_with("Timeout("), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(results);
    server.join().unwrap();
}

/// The connection lost after BDAT LAST went and before its answer: the message is in doubt.
#[test]
fn the_connection_lost_after_the_last_chunk_leaves_the_message_in_doubt() {
    let (port, _seen, server) = serve(Script {
        chunking: true,
        close_at_last: true,
        ..Script::default()
    });
    let results = send_blocking(port, &[addr("ops@example.com")], &[b"short\r\n"]);
    server.join().unwrap();
    let err = results[0].0.as_ref().unwrap_err();
    assert!(err.starts_with("InDoubt("), "{err}");
}
