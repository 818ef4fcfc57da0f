//! TLS on the blocking twin (feature `tls`) over std's `TcpStream` with a short receive
//! timeout, as on a device's stack, against aiosmtpd with a P-256 certificate: STARTTLS and
//! implicit TLS with AUTH and a refused recipient, every record from the server cut into
//! pieces that arrive after the socket's timeout (TLS keeps its place in the record); a
//! certificate from another CA refused before anything is sent; a handshake trickled past
//! the deadline given up at the deadline.
//! `scripts/test` runs it with `--features tls`.
#![cfg(feature = "tls")]

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use postline_embedded::blocking::BlockingClient;
use postline_embedded::tls::{Mode, Tls, Verify};
use postline_embedded::{Address, Config, Error, TlsFailure};
use postline_testkit::{Aiosmtpd, TestCa};
use rand_core::OsRng;

const USER: &str = "device";
const PASSWORD: &str = "s3cret-pw";
const NAME: &str = "mail.test";

#[path = "common/std_socket.rs"]
mod std_socket;
use std_socket::{Socket, SocketError, StdClock};

/// A proxy in front of `port` passing the server's bytes on in pieces of `piece` bytes,
/// `pause` apart (longer than the client's receive timeout: a record arrives across many
/// timeouts); the client's bytes go through as they come. Its port. Each copy ends when
/// either side closes, or after 30 seconds.
fn trickling_proxy(port: u16, piece: usize, pause: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let upstream = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while Instant::now() < until {
                match c_read.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            let _ = s_write.shutdown(Shutdown::Write);
        });
        let (mut s_read, mut c_write) = (server, client);
        let mut buf = vec![0u8; piece];
        while Instant::now() < until {
            match s_read.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    thread::sleep(pause);
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        let _ = c_write.shutdown(Shutdown::Write);
        let _ = upstream.join();
    });
    proxy_port
}

/// Connects to `port` with TLS in `mode` verified against `ca`, every wait capped at
/// `timeout_ms`, and sends one message to two recipients; the codes.
fn session(
    port: u16,
    mode: Mode,
    ca: &[u8],
    timeout_ms: u64,
) -> Result<[u16; 2], Error<SocketError>> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let (mut read_record, mut write_record) = (vec![0u8; 16_640], vec![0u8; 16_640]);
    let mut rng = OsRng;
    let config = Config::new("device.example")
        .credentials(USER, PASSWORD)
        .timeout_ms(timeout_ms);
    let mut client = BlockingClient::new(
        Socket(stream),
        StdClock(Instant::now()),
        config,
        &mut out,
        &mut input,
    )?
    .tls(Tls {
        mode,
        server_name: NAME,
        verify: Verify::Ca(ca),
        read_record: &mut read_record,
        write_record: &mut write_record,
        rng: &mut rng,
    })?;
    client.connect()?;
    let to = [
        Address::new("ops@example.com").unwrap(),
        Address::new("nobody@example.com").unwrap(),
    ];
    let mut codes = [0u16; 2];
    let status = client.send(
        Address::new("device@example.com").unwrap(),
        &to,
        b"Subject: blocking TLS\r\n\r\n.a dot line\r\n",
        &mut codes,
    )?;
    assert!(status.delivered, "{status:?}");
    client.quit()?;
    Ok(codes)
}

/// STARTTLS, then AUTH without the clear-text allowance, with every piece of every record
/// from the server arriving after the socket's receive timeout.
#[test]
fn starttls_with_records_cut_across_receive_timeouts() {
    let ca = TestCa::with_server_names(&[NAME]);
    let server = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth(USER, PASSWORD)
        .reject_rcpt("nobody")
        .start();
    let proxy = trickling_proxy(server.port(), 301, Duration::from_millis(25));
    let codes = session(proxy, Mode::StartTls, &ca.ca_der, 20_000).unwrap();
    assert_eq!(codes, [250, 550]);
    let got = server.wait_for_messages(1, Duration::from_secs(10));
    assert!(got[0].tls, "the server did not see TLS");
    assert_eq!(got[0].auth_user.as_deref(), Some(USER));
    assert_eq!(got[0].rcpt_tos, ["ops@example.com"]);
    assert_eq!(
        got[0].content,
        b"Subject: blocking TLS\r\n\r\n.a dot line\r\n"
    );
}

#[test]
fn implicit_tls_from_the_first_byte() {
    let ca = TestCa::with_server_names(&[NAME]);
    let server = Aiosmtpd::builder()
        .implicit_tls_with(&ca)
        .auth(USER, PASSWORD)
        .reject_rcpt("nobody")
        .start();
    let codes = session(server.port(), Mode::Implicit, &ca.ca_der, 10_000).unwrap();
    assert_eq!(codes, [250, 550]);
    let got = server.wait_for_messages(1, Duration::from_secs(10));
    assert!(got[0].tls);
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
    match session(server.port(), Mode::StartTls, &other.ca_der, 10_000) {
        Err(Error::Tls(TlsFailure::Certificate)) => {}
        other => panic!("{other:?}"),
    }
    assert!(server.messages().is_empty());
}

/// The server's records trickled so slowly that the handshake cannot finish in time: the
/// connect is given up at its deadline (no wait per piece restarts it), with no mail.
#[test]
fn a_handshake_trickled_past_the_deadline_ends_at_the_deadline() {
    let ca = TestCa::with_server_names(&[NAME]);
    let server = Aiosmtpd::builder()
        .implicit_tls_with(&ca)
        .auth(USER, PASSWORD)
        .start();
    let proxy = trickling_proxy(server.port(), 40, Duration::from_millis(60));
    let started = Instant::now();
    let result = session(proxy, Mode::Implicit, &ca.ca_der, 600);
    let took = started.elapsed();
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(server.messages().is_empty());
}

/// A stream that takes nothing (every write `Ok(0)`) and says nothing: embedded-tls's own
/// `write_all` panics on such a write; here the ClientHello's write is the stream closing
/// under TLS, at once, as a write of 0 bytes is a close without TLS, and not a panic (a
/// device's panic handler may well loop forever).
#[test]
fn a_stream_taking_nothing_under_tls_is_a_close_not_a_panic() {
    struct Deaf;
    impl embedded_io::ErrorType for Deaf {
        type Error = embedded_io::ErrorKind;
    }
    impl embedded_io::Read for Deaf {
        fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
            thread::sleep(Duration::from_millis(5));
            Err(embedded_io::ErrorKind::TimedOut)
        }
    }
    impl embedded_io::Write for Deaf {
        fn write(&mut self, _: &[u8]) -> Result<usize, Self::Error> {
            thread::sleep(Duration::from_millis(5));
            Ok(0)
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let (mut read_record, mut write_record) = (vec![0u8; 16_640], vec![0u8; 16_640]);
    let mut rng = OsRng;
    let ca = TestCa::with_server_names(&[NAME]);
    let mut client = BlockingClient::new(
        Deaf,
        StdClock(Instant::now()),
        Config::new("device.example").timeout_ms(300),
        &mut out,
        &mut input,
    )
    .unwrap()
    .tls(Tls {
        mode: Mode::Implicit,
        server_name: NAME,
        verify: Verify::Ca(&ca.ca_der),
        read_record: &mut read_record,
        write_record: &mut write_record,
        rng: &mut rng,
    })
    .unwrap();
    let started = Instant::now();
    let r = client.connect();
    assert!(
        matches!(r, Err(Error::Tls(postline_embedded::TlsFailure::Closed))),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(250));
}

/// TLS set up twice (implicit, then STARTTLS) is refused: the session of the first, secure
/// from its start, under the mode of the second would have sent the password and the mail
/// in clear text. Record buffers under `MIN_RECORD_BUFFER` are refused too. Nothing is sent.
#[test]
fn tls_is_set_up_once_with_buffers_that_fit() {
    use postline_embedded::proto::session::UseError;
    use postline_embedded::tls::MIN_RECORD_BUFFER;
    use std::cell::RefCell;
    use std::rc::Rc;
    struct Recorder(Rc<RefCell<Vec<u8>>>);
    impl embedded_io::ErrorType for Recorder {
        type Error = embedded_io::ErrorKind;
    }
    impl embedded_io::Read for Recorder {
        fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
            Err(embedded_io::ErrorKind::TimedOut)
        }
    }
    impl embedded_io::Write for Recorder {
        fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    let ca = TestCa::with_server_names(&[NAME]);
    let wire = Rc::new(RefCell::new(Vec::new()));
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let (mut r1, mut w1) = (vec![0u8; 16_640], vec![0u8; 16_640]);
    let (mut r2, mut w2) = (vec![0u8; 16_640], vec![0u8; 16_640]);
    let (mut rng1, mut rng2, mut rng3) = (OsRng, OsRng, OsRng);
    let twice = BlockingClient::new(
        Recorder(wire.clone()),
        StdClock(Instant::now()),
        Config::new("device.example").credentials(USER, PASSWORD),
        &mut out,
        &mut input,
    )
    .unwrap()
    .tls(Tls {
        mode: Mode::Implicit,
        server_name: NAME,
        verify: Verify::Ca(&ca.ca_der),
        read_record: &mut r1,
        write_record: &mut w1,
        rng: &mut rng1,
    })
    .unwrap()
    .tls(Tls {
        mode: Mode::StartTls,
        server_name: NAME,
        verify: Verify::Ca(&ca.ca_der),
        read_record: &mut r2,
        write_record: &mut w2,
        rng: &mut rng2,
    });
    assert!(
        matches!(twice, Err(Error::Use(UseError::NotReady))),
        "{:?}",
        twice.err()
    );
    let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
    let (mut small, mut w) = (vec![0u8; MIN_RECORD_BUFFER - 1], vec![0u8; 16_640]);
    let small = BlockingClient::new(
        Recorder(wire.clone()),
        StdClock(Instant::now()),
        Config::new("device.example"),
        &mut out,
        &mut input,
    )
    .unwrap()
    .tls(Tls {
        mode: Mode::StartTls,
        server_name: NAME,
        verify: Verify::Ca(&ca.ca_der),
        read_record: &mut small,
        write_record: &mut w,
        rng: &mut rng3,
    });
    assert!(
        matches!(small, Err(Error::Use(UseError::BufferFull(_)))),
        "{:?}",
        small.err()
    );
    assert!(wire.borrow().is_empty());
}
