//! STARTTLS and implicit TLS on the embedded driver (feature `tls`, embedded-tls: TLS 1.3,
//! P-256), against aiosmtpd over loopback TCP with a P-256 certificate from a throwaway CA:
//! AUTH over TLS without the clear-text allowance, a recipient refused, the server seeing
//! TLS; a certificate from another CA refused before anything is sent; a server without
//! STARTTLS, or one refusing it, refused when TLS is required; text injected after the 220
//! discarded (RFC 3207 5), also through a whole handshake with an in-process rustls peer; no
//! verification only when named.
//! `scripts/test` runs it with `--features tls`.
#![cfg(feature = "tls")]

use std::time::Duration;

mod common;
use common::{run, TokioClock};

use embedded_io_adapters::tokio_1::FromTokio;
use postline_embedded::tls::{Mode, Tls, Verify};
use postline_embedded::{Address, Client, Config, Error, TlsFailure};
use postline_testkit::{greeting_and_ehlo, Aiosmtpd, ScriptedServer, Step, TestCa};
use rand_core::OsRng;
use tokio::net::TcpStream;

const USER: &str = "device";
const PASSWORD: &str = "s3cret-pw";
/// The name in the server's certificate (a DNS name: the verifier matches names, not
/// addresses).
const NAME: &str = "mail.test";

fn addr(a: &'static str) -> Address<&'static str> {
    Address::new(a).unwrap()
}

/// What a TLS client borrows: the driver's buffers, the record buffers, the randomness.
struct Lent {
    out: [u8; 512],
    input: [u8; 512],
    read_record: Vec<u8>,
    write_record: Vec<u8>,
    rng: OsRng,
}

impl Lent {
    /// A read record buffer for any record, and a write one of `write_record` bytes.
    fn new(write_record: usize) -> Lent {
        Lent {
            out: [0; 512],
            input: [0; 512],
            read_record: vec![0; 16_640],
            write_record: vec![0; write_record],
            rng: OsRng,
        }
    }

    /// A client with the test's credentials over `stream`, every wait capped at
    /// `timeout_ms`, TLS in `mode` checked by `verify`.
    fn client<'b>(
        &'b mut self,
        stream: TcpStream,
        timeout_ms: u64,
        mode: Mode,
        verify: Verify<'b>,
    ) -> Result<Client<'b, FromTokio<TcpStream>, TokioClock>, Error<std::io::Error>> {
        let config = Config::new("device.example")
            .credentials(USER, PASSWORD)
            .timeout_ms(timeout_ms);
        Client::new(
            FromTokio::new(stream),
            TokioClock::now(),
            config,
            &mut self.out,
            &mut self.input,
        )?
        .tls(Tls {
            mode,
            server_name: NAME,
            verify,
            read_record: &mut self.read_record,
            write_record: &mut self.write_record,
            rng: &mut self.rng,
        })
    }
}

/// Connects with TLS in `mode`, verified against `ca`, and sends one message to two
/// recipients; the connect result, or the send's codes.
fn session(port: u16, mode: Mode, ca: &[u8]) -> Result<[u16; 2], Error<std::io::Error>> {
    run(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut lent = Lent::new(16_640);
        let mut client = lent.client(stream, 10_000, mode, Verify::Ca(ca))?;
        client.connect().await?;
        let to = [addr("ops@example.com"), addr("nobody@example.com")];
        let mut codes = [0u16; 2];
        let status = client
            .send(
                addr("device@example.com"),
                &to,
                b"Subject: over TLS\r\n\r\n.a dot line\r\n",
                &mut codes,
            )
            .await?;
        assert!(status.delivered, "{status:?}");
        client.quit().await?;
        Ok(codes)
    })
}

#[test]
fn starttls_then_auth_without_the_clear_text_allowance() {
    let ca = TestCa::with_server_names(&[NAME]);
    let server = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth(USER, PASSWORD)
        .reject_rcpt("nobody")
        .start();
    let codes = session(server.port(), Mode::StartTls, &ca.ca_der).unwrap();
    assert_eq!(codes, [250, 550]);
    let got = server.wait_for_messages(1, Duration::from_secs(10));
    assert!(got[0].tls, "the server did not see TLS");
    assert_eq!(got[0].auth_user.as_deref(), Some(USER));
    assert_eq!(got[0].rcpt_tos, ["ops@example.com"]);
    assert_eq!(got[0].content, b"Subject: over TLS\r\n\r\n.a dot line\r\n");
}

#[test]
fn implicit_tls_from_the_first_byte() {
    let ca = TestCa::with_server_names(&[NAME]);
    let server = Aiosmtpd::builder()
        .implicit_tls_with(&ca)
        .auth(USER, PASSWORD)
        .reject_rcpt("nobody")
        .start();
    let codes = session(server.port(), Mode::Implicit, &ca.ca_der).unwrap();
    assert_eq!(codes, [250, 550]);
    let got = server.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got[0].auth_user.as_deref(), Some(USER));
}

#[test]
fn a_certificate_from_another_ca_is_refused_and_nothing_is_sent() {
    let ca = TestCa::with_server_names(&[NAME]);
    let other = TestCa::other();
    let server = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth(USER, PASSWORD)
        .start();
    match session(server.port(), Mode::StartTls, &other.ca_der) {
        Err(Error::Tls(TlsFailure::Certificate)) => {}
        other => panic!("{other:?}"),
    }
    assert!(server.messages().is_empty());
    // A certificate for another name is refused too.
    let wrong_name = TestCa::with_server_names(&["other.test"]);
    let server = Aiosmtpd::builder()
        .starttls_with(&wrong_name)
        .auth(USER, PASSWORD)
        .start();
    match session(server.port(), Mode::StartTls, &wrong_name.ca_der) {
        Err(Error::Tls(TlsFailure::Certificate)) => {}
        other => panic!("{other:?}"),
    }
}

/// TLS required and not offered: connect fails, and a send tried anyway afterwards sends
/// nothing either (the connection is given up, not left usable in clear text).
#[test]
fn a_server_without_starttls_gets_no_credentials_and_no_mail() {
    let script = greeting_and_ehlo(&["AUTH PLAIN", "8BITMIME"]);
    let server = ScriptedServer::start(script);
    let ca = TestCa::with_server_names(&[NAME]);
    let port = server.port();
    let (connected, sent) = run(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut lent = Lent::new(16_640);
        let mut client = lent
            .client(stream, 2_000, Mode::StartTls, Verify::Ca(&ca.ca_der))
            .unwrap();
        let connected = client.connect().await;
        let mut codes = [0u16; 1];
        let sent = client
            .send(
                addr("device@example.com"),
                &[addr("ops@example.com")],
                b"Subject: secret\r\n\r\nsecret body\r\n",
                &mut codes,
            )
            .await;
        (connected, sent)
    });
    assert!(
        matches!(connected, Err(Error::TlsUnavailable)),
        "{connected:?}"
    );
    assert!(sent.is_err(), "{sent:?}");
    let report = server.finish();
    let seen = report.received_str();
    assert!(!seen.contains("AUTH"), "{seen}");
    assert!(!seen.contains("MAIL"), "{seen}");
    assert!(!seen.contains("secret"), "{seen}");
}

/// A certificate the CA issued to an ordinary server (not a CA) signs one for the relay's
/// name: the chain verifies link by link, and is refused, because only a certificate the
/// CA signed itself is accepted.
#[test]
fn a_certificate_signed_by_another_servers_certificate_is_refused() {
    let dir = tempfile_dir();
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh(&format!(
        "openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=ca \
         -addext basicConstraints=critical,CA:TRUE && \
         openssl req {ec} -keyout l1.key -out l1.csr -subj /CN=evil.test && \
         printf 'subjectAltName=DNS:evil.test\nbasicConstraints=CA:FALSE\n' > ext1 && \
         openssl x509 -req -in l1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
           -extfile ext1 -out l1.pem && \
         openssl req {ec} -keyout l2.key -out l2.csr -subj /CN={NAME} && \
         printf 'subjectAltName=DNS:{NAME}\n' > ext2 && \
         openssl x509 -req -in l2.csr -CA l1.pem -CAkey l1.key -CAcreateserial -days 2 \
           -extfile ext2 -out l2.pem && cat l2.pem l1.pem > chain.pem && \
         openssl x509 -in ca.pem -outform der -out ca.der"
    ));
    let ca_der = std::fs::read(dir.join("ca.der")).unwrap();
    let server = Aiosmtpd::builder()
        .starttls(dir.join("chain.pem"), dir.join("l2.key"))
        .auth(USER, PASSWORD)
        .start();
    match session(server.port(), Mode::StartTls, &ca_der) {
        Err(Error::Tls(TlsFailure::Certificate)) => {}
        other => panic!("{other:?}"),
    }
    assert!(server.messages().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "postline-embedded-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// RFC 3207 5: a reply injected behind the 220 (here an EHLO answer offering AUTH) must not
/// be read as the server's; the client goes straight to the handshake.
#[test]
fn text_injected_after_the_220_is_discarded() {
    let mut script = greeting_and_ehlo(&["STARTTLS", "AUTH PLAIN"]);
    script.extend([
        Step::expect("STARTTLS"),
        Step::send("220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n"),
        // The TLS record header of a ClientHello.
        Step::ExpectBytes(5),
        Step::Close,
    ]);
    let server = ScriptedServer::start(script);
    let ca = TestCa::with_server_names(&[NAME]);
    match session(server.port(), Mode::StartTls, &ca.ca_der) {
        Err(Error::Tls(_)) => {}
        other => panic!("{other:?}"),
    }
    let report = server.finish();
    let received = &report.received;
    let at = received
        .windows(10)
        .position(|w| w == b"STARTTLS\r\n")
        .expect("STARTTLS sent");
    let after = &received[at + 10..];
    assert_eq!(&after[..2], &[0x16, 0x03], "not a TLS handshake: {after:?}");
    assert!(!report.received_str().contains("AUTH PLAIN"));
}

/// A server that says 220 to STARTTLS and then never answers the ClientHello: the handshake
/// ends at the deadline, as every other wait does.
#[test]
fn a_handshake_that_never_finishes_times_out() {
    let mut script = greeting_and_ehlo(&["STARTTLS", "AUTH PLAIN"]);
    script.extend([
        Step::expect("STARTTLS"),
        Step::reply("220 go ahead"),
        Step::Hang,
    ]);
    let server = ScriptedServer::start(script);
    let ca = TestCa::with_server_names(&[NAME]);
    let port = server.port();
    let started = std::time::Instant::now();
    let result: Result<(), Error<std::io::Error>> = run(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut lent = Lent::new(16_640);
        let mut client = lent.client(stream, 500, Mode::StartTls, Verify::Ca(&ca.ca_der))?;
        client.connect().await
    });
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(server);
}

/// A server whose 454 refuses STARTTLS: TLS was required, so the session ends there, with no
/// credentials sent in clear text.
#[test]
fn a_refused_starttls_sends_no_credentials() {
    let mut script = greeting_and_ehlo(&["STARTTLS", "AUTH PLAIN"]);
    script.extend([
        Step::expect("STARTTLS"),
        Step::reply("454 4.7.0 TLS not available"),
        Step::Sleep(Duration::from_millis(300)),
    ]);
    let server = ScriptedServer::start(script);
    let ca = TestCa::with_server_names(&[NAME]);
    match session(server.port(), Mode::StartTls, &ca.ca_der) {
        Err(Error::TlsUnavailable) => {}
        other => panic!("{other:?}"),
    }
    let got = server.finish().received_str();
    assert!(!got.contains("AUTH"), "{got}");
}

/// Without verification, asked for by name, a certificate from a CA the client does not know
/// is taken: the mail goes through over TLS.
#[test]
fn no_verification_only_when_named() {
    let other = TestCa::with_server_names(&[NAME]);
    let server = Aiosmtpd::builder()
        .implicit_tls_with(&other)
        .auth(USER, PASSWORD)
        .start();
    let delivered = run(async {
        let stream = TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .unwrap();
        let mut lent = Lent::new(2048);
        let mut client = lent
            .client(
                stream,
                10_000,
                Mode::Implicit,
                Verify::InsecureNoVerification,
            )
            .unwrap();
        client.connect().await.unwrap();
        let mut codes = [0u16; 1];
        let status = client
            .send(
                addr("device@example.com"),
                &[addr("ops@example.com")],
                b"Subject: unverified\r\n\r\nhi\r\n",
                &mut codes,
            )
            .await
            .unwrap();
        client.quit().await.unwrap();
        status.delivered
    });
    assert!(delivered);
    let got = server.wait_for_messages(1, Duration::from_secs(10));
    assert!(got[0].tls);
}

/// Reads one line (to LF) byte by byte, so nothing past it is taken off the socket.
fn line(s: &mut impl std::io::Read) -> String {
    let mut l = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 {
        l.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&l).into_owned()
}

/// RFC 3207 5, through a whole handshake: an in-process TLS 1.3 peer (rustls) sends
/// `220 go ahead` and `250 injected` in one write, then completes the handshake and answers
/// the new EHLO with AUTH. The client must take that answer, not the injected line, for its
/// EHLO under TLS: it then authenticates and says QUIT. (A driver that kept the injected line
/// would read it as the EHLO reply, see no AUTH, and be one reply behind from there.)
#[test]
fn text_injected_after_the_220_is_never_read_as_a_reply_after_the_handshake() {
    use std::io::Write as _;
    use std::sync::Arc;

    let ca = TestCa::with_server_names(&[NAME]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![ca.server_cert_der.clone().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ca.server_key_der.clone().into()),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut seen = Vec::new();
        s.write_all(b"220 peer.test ESMTP\r\n").unwrap();
        seen.push(line(&mut s));
        s.write_all(b"250-peer.test\r\n250 STARTTLS\r\n").unwrap();
        seen.push(line(&mut s));
        s.write_all(b"220 go ahead\r\n250 injected\r\n").unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        seen.push(line(&mut tls));
        tls.write_all(b"250-peer.test\r\n250 AUTH PLAIN\r\n")
            .unwrap();
        seen.push(line(&mut tls));
        tls.write_all(b"235 2.7.0 ok\r\n").unwrap();
        seen.push(line(&mut tls));
        tls.write_all(b"221 bye\r\n").unwrap();
        seen
    });
    let offered_auth = run(async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut lent = Lent::new(2048);
        let mut client = lent
            .client(stream, 10_000, Mode::StartTls, Verify::Ca(&ca.ca_der))
            .unwrap();
        client.connect().await.unwrap();
        let auth = client
            .capabilities()
            .has(postline_embedded::proto::Extension::Auth);
        client.quit().await.unwrap();
        auth
    });
    assert!(
        offered_auth,
        "the EHLO reply under TLS was not the one read"
    );
    let seen = peer.join().unwrap();
    assert_eq!(seen[0], "EHLO device.example\r\n");
    assert_eq!(seen[1], "STARTTLS\r\n");
    assert_eq!(seen[2], "EHLO device.example\r\n");
    assert!(seen[3].starts_with("AUTH PLAIN "), "{seen:?}");
    assert_eq!(seen[4], "QUIT\r\n");
}

/// A stream whose every write takes nothing (`Ok(0)`, against `embedded-io`'s advice):
/// embedded-tls's own `write_all` panics on such a write; here the ClientHello's write is the
/// stream closing under TLS, reported at once, and the client is not taken down.
#[test]
fn a_stream_taking_nothing_under_tls_is_a_stream_failure_not_a_panic() {
    struct Deaf;
    impl embedded_io_async::ErrorType for Deaf {
        type Error = embedded_io::ErrorKind;
    }
    impl embedded_io_async::Read for Deaf {
        async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
            core::future::pending().await
        }
    }
    impl embedded_io_async::Write for Deaf {
        async fn write(&mut self, _: &[u8]) -> Result<usize, Self::Error> {
            Ok(0)
        }
        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    let ca = TestCa::with_server_names(&[NAME]);
    let started = std::time::Instant::now();
    let result: Result<(), Error<embedded_io::ErrorKind>> = run(async {
        let mut lent = Lent::new(16_640);
        let config = Config::new("device.example").timeout_ms(5_000);
        let mut client = Client::new(
            Deaf,
            TokioClock::now(),
            config,
            &mut lent.out,
            &mut lent.input,
        )?
        .tls(Tls {
            mode: Mode::Implicit,
            server_name: NAME,
            verify: Verify::Ca(&ca.ca_der),
            read_record: &mut lent.read_record,
            write_record: &mut lent.write_record,
            rng: &mut lent.rng,
        })?;
        client.connect().await
    });
    assert!(
        matches!(result, Err(Error::Tls(TlsFailure::Closed))),
        "{result:?}"
    );
    // Said at once, not at the deadline.
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// A stream that stops taking writes (`Ok(0)`) once the session is set up: the same verdicts
/// with TLS as without, a close where a message was going (in MAIL's phase), and a QUIT that
/// cannot go out is the end it was meant to be.
#[test]
fn a_stream_that_stops_taking_writes_is_a_close_with_tls_as_without() {
    use std::cell::Cell;
    use std::rc::Rc;
    struct Stops {
        inner: FromTokio<TcpStream>,
        deaf: Rc<Cell<bool>>,
    }
    impl embedded_io_async::ErrorType for Stops {
        type Error = std::io::Error;
    }
    impl embedded_io_async::Read for Stops {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            self.inner.read(buf).await
        }
    }
    impl embedded_io_async::Write for Stops {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            if self.deaf.get() {
                return Ok(0);
            }
            self.inner.write(buf).await
        }
        async fn flush(&mut self) -> Result<(), Self::Error> {
            self.inner.flush().await
        }
    }
    let ca = TestCa::with_server_names(&[NAME]);
    let plain = Aiosmtpd::builder().start();
    let implicit = Aiosmtpd::builder().implicit_tls_with(&ca).start();
    let ca_der: &[u8] = &ca.ca_der;
    // One session: `send` (true) or `quit` (false) after the stream stops taking writes.
    let session = |port: u16, tls: bool, send: bool| -> Result<(), Error<std::io::Error>> {
        run(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let deaf = Rc::new(Cell::new(false));
            let mut lent = Lent::new(16_640);
            let stops = Stops {
                inner: FromTokio::new(stream),
                deaf: deaf.clone(),
            };
            let config = Config::new("device.example").timeout_ms(5_000);
            let client = Client::new(
                stops,
                TokioClock::now(),
                config,
                &mut lent.out,
                &mut lent.input,
            )?;
            let mut client = if tls {
                client.tls(Tls {
                    mode: Mode::Implicit,
                    server_name: NAME,
                    verify: Verify::Ca(ca_der),
                    read_record: &mut lent.read_record,
                    write_record: &mut lent.write_record,
                    rng: &mut lent.rng,
                })?
            } else {
                client
            };
            client.connect().await?;
            deaf.set(true);
            if send {
                let mut codes = [0u16; 1];
                client
                    .send(
                        addr("device@example.com"),
                        &[addr("ops@example.com")],
                        b"Subject: x\r\n\r\nx\r\n",
                        &mut codes,
                    )
                    .await
                    .map(|_| ())
            } else {
                client.quit().await
            }
        })
    };
    for (port, tls) in [(plain.port(), false), (implicit.port(), true)] {
        let sent = session(port, tls, true);
        assert!(
            matches!(sent, Err(Error::Closed(postline_embedded::Phase::Mail))),
            "tls {tls}: {sent:?}"
        );
        let quit = session(port, tls, false);
        assert!(quit.is_ok(), "tls {tls}: {quit:?}");
    }
    assert!(plain.messages().is_empty());
    assert!(implicit.messages().is_empty());
}
