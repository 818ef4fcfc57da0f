//! A TLS server that sends its records one byte at a time must not hold either client past
//! its deadline: during the handshake, after it (the greeting), and in the final reply after
//! the end of data (which is then in doubt). Real time, real TCP, real rustls on both sides;
//! each case must end within its timeout plus a second.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use postline::{AsyncClient, Client, Config, Envelope, Error, Phase, Tls};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

/// The clients' timeout in every case.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server keeps trickling at most (far past the clients' deadline).
const TRICKLE_FOR: Duration = Duration::from_secs(20);
/// One byte every this long: a reply timer restarted by each byte would never fire.
const DRIP: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Trickle {
    Handshake,
    Greeting,
    FinalReply,
}

fn server_config() -> Arc<ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    )
}

/// Sends `bytes` one at a time, DRIP apart, until done, the client goes, or TRICKLE_FOR.
fn drip(tcp: &mut TcpStream, bytes: &[u8]) {
    let start = Instant::now();
    for b in bytes {
        if start.elapsed() > TRICKLE_FOR || tcp.write_all(&[*b]).is_err() {
            return;
        }
        thread::sleep(DRIP);
    }
}

/// Encrypts `plain` into records and writes them, all at once or dripped.
fn send(conn: &mut ServerConnection, tcp: &mut TcpStream, plain: &[u8], slow: bool) {
    conn.writer().write_all(plain).unwrap();
    let mut records = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut records).unwrap();
    }
    if slow {
        drip(tcp, &records);
    } else {
        let _ = tcp.write_all(&records);
    }
}

/// An implicit-TLS SMTP server that trickles at one point of the session.
fn serve(mode: Trickle) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = server_config();
    thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(TRICKLE_FOR)).unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        if mode == Trickle::Handshake {
            // Take the ClientHello, then drip the server's whole first flight.
            while conn.wants_read() && !conn.wants_write() {
                if conn.read_tls(&mut tcp).unwrap_or(0) == 0 {
                    return;
                }
                conn.process_new_packets().unwrap();
            }
            let mut flight = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut flight).unwrap();
            }
            drip(&mut tcp, &flight);
            return;
        }
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                return;
            }
        }
        send(
            &mut conn,
            &mut tcp,
            b"220 trickle.test ESMTP\r\n",
            mode == Trickle::Greeting,
        );
        if mode == Trickle::Greeting {
            return;
        }
        let mut lines = Vec::new();
        let mut in_data = false;
        loop {
            match conn.reader().read_to_end(&mut lines) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            while let Some(end) = lines.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = lines.drain(..end + 2).collect();
                let reply: &[u8] = if in_data {
                    if line != b".\r\n" {
                        continue;
                    }
                    send(&mut conn, &mut tcp, b"250 2.0.0 queued\r\n", true);
                    return;
                } else if line.starts_with(b"EHLO") {
                    b"250-trickle.test\r\n250 PIPELINING\r\n"
                } else if line.starts_with(b"DATA") {
                    in_data = true;
                    b"354 go\r\n"
                } else {
                    b"250 ok\r\n"
                };
                send(&mut conn, &mut tcp, reply, false);
            }
            if conn.read_tls(&mut tcp).unwrap_or(0) == 0 {
                return;
            }
            if conn.process_new_packets().is_err() {
                return;
            }
        }
    });
    port
}

fn config(port: u16) -> Config {
    Config::relay("127.0.0.1")
        .port(port)
        .tls(Tls::Implicit)
        .dangerous_accept_invalid_certificates(true)
        .hello_name("client.test")
        .timeouts(postline::Timeouts::default().capped(TIMEOUT))
}

fn envelope() -> Envelope {
    Envelope::new("a@client.test", ["b@server.test"]).unwrap()
}

const BODY: &[u8] = b"Subject: trickle\r\n\r\nbody\r\n";

/// What a case must end with: a timeout naming `phase`, in doubt or not.
#[track_caller]
fn assert_timeout(err: &Error, phase: Phase, in_doubt: bool, took: Duration) {
    assert!(
        took < TIMEOUT + Duration::from_secs(1),
        "took {took:?} with a {TIMEOUT:?} timeout: {err}"
    );
    let timeout = match err {
        Error::DeliveryUnknown { cause, .. } if in_doubt => &**cause,
        other => other,
    };
    assert!(
        matches!(timeout, Error::Timeout { phase: p, .. } if *p == phase),
        "expected a {phase:?} timeout (in doubt: {in_doubt}), got {err:?}"
    );
    assert_eq!(err.is_in_doubt(), in_doubt, "{err}");
    assert!(err.to_string().contains(phase.name()), "{err}");
}

fn blocking(mode: Trickle) -> (Error, Duration) {
    let port = serve(mode);
    let start = Instant::now();
    let err = match Client::connect(config(port)) {
        Err(e) => e,
        Ok(mut c) => c.send_bytes(&envelope(), BODY).unwrap_err(),
    };
    (err, start.elapsed())
}

fn tokio(mode: Trickle) -> (Error, Duration) {
    let port = serve(mode);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let err = match AsyncClient::connect(config(port)).await {
            Err(e) => e,
            Ok(mut c) => c.send_bytes(&envelope(), BODY).await.unwrap_err(),
        };
        (err, start.elapsed())
    })
}

#[test]
fn handshake_trickle_blocking() {
    let (err, took) = blocking(Trickle::Handshake);
    assert_timeout(&err, Phase::Command, false, took);
}

#[test]
fn handshake_trickle_tokio() {
    let (err, took) = tokio(Trickle::Handshake);
    assert_timeout(&err, Phase::Command, false, took);
}

#[test]
fn greeting_trickle_blocking() {
    let (err, took) = blocking(Trickle::Greeting);
    assert_timeout(&err, Phase::Greeting, false, took);
}

#[test]
fn greeting_trickle_tokio() {
    let (err, took) = tokio(Trickle::Greeting);
    assert_timeout(&err, Phase::Greeting, false, took);
}

#[test]
fn final_reply_trickle_blocking() {
    let (err, took) = blocking(Trickle::FinalReply);
    assert_timeout(&err, Phase::DataEnd, true, took);
}

#[test]
fn final_reply_trickle_tokio() {
    let (err, took) = tokio(Trickle::FinalReply);
    assert_timeout(&err, Phase::DataEnd, true, took);
}
