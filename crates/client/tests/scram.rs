//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS against a scripted server that computes the real
//! server side (RFC 5802) in the test: success on both clients, a server that cannot prove it
//! knows the password (wrong `v=`, or `235` without one), channel binding over TLS 1.3
//! (`tls-exporter`, checked against the server's own exporter) and TLS 1.2
//! (`tls-server-end-point`, checked against the certificate's hash), the `y` flag when the
//! server offers no -PLUS, and a transcript that shows none of the exchange.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use postline::{AsyncClient, Client, Config, Direction, Envelope, Error, Mechanism, Timeouts, Tls};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sha2::{Digest, Sha256};

const USER: &str = "user";
const PASSWORD: &str = "pencil";
const SALT: &[u8] = b"salt-of-the-earth";
const ITERATIONS: u32 = 4096;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Driver {
    Blocking,
    Tokio,
}

impl Driver {
    /// Connects, sends one message, quits: the first error, or the server's final reply code.
    fn send_one(self, config: Config) -> Result<u16, Error> {
        let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
        let body = b"Subject: hi\r\n\r\nbody\r\n";
        match self {
            Driver::Blocking => {
                let mut c = Client::connect(config)?;
                let out = c.send_bytes(&env, body)?;
                c.quit()?;
                Ok(out.reply.code)
            }
            Driver::Tokio => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut c = AsyncClient::connect(config).await?;
                    let out = c.send_bytes(&env, body).await?;
                    c.quit().await?;
                    Ok(out.reply.code)
                })
            }
        }
    }
}

use postline_testkit::both;

/// How the server ends the exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Final {
    /// The right `v=`, then 235.
    Good,
    /// A `v=` with a wrong signature.
    WrongV,
    /// 235 straight after the client-final message, without `v=`.
    NoV,
}

#[derive(Clone)]
struct Plan {
    mechanisms: &'static str,
    /// STARTTLS with this configuration and certificate (DER).
    tls: Option<(Arc<ServerConfig>, Vec<u8>)>,
    last: Final,
}

/// What the server saw.
#[derive(Debug, Default)]
struct Report {
    mechanism: String,
    gs2: String,
    /// The channel binding data the client put in `c=` (after the gs2 header).
    cbind_data: Vec<u8>,
    /// The server side's own binding data, where there is TLS.
    exporter: Option<Vec<u8>>,
    proof_ok: bool,
    got_mail: bool,
    lines: Vec<String>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

struct Peer {
    s: Stream,
    pending: Vec<u8>,
    report: Report,
}

impl Peer {
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..end + 2).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                self.report.lines.push(line.clone());
                return Some(line);
            }
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
    fn send(&mut self, text: &str) {
        let _ = self.s.write_all(text.as_bytes());
        let _ = self.s.flush();
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn unb64(text: &str) -> Vec<u8> {
    STANDARD.decode(text.trim()).unwrap()
}

/// The server side of SCRAM-SHA-256 after `AUTH SCRAM-SHA-256[-PLUS] <client-first>`.
fn scram_server(p: &mut Peer, client_first: &str, last: Final) {
    let first = String::from_utf8(unb64(client_first)).unwrap();
    // gs2 header: flag, authzid, then client-first-bare.
    let mut parts = first.splitn(3, ',');
    let flag = parts.next().unwrap();
    let authzid = parts.next().unwrap();
    let bare = parts.next().unwrap().to_string();
    p.report.gs2 = format!("{flag},{authzid},");
    let client_nonce = bare.split(',').nth(1).unwrap().strip_prefix("r=").unwrap();
    let nonce = format!("{client_nonce}SeRvEr%NoNcE");
    let server_first = format!("r={nonce},s={},i={ITERATIONS}", b64(SALT));
    p.send(&format!("334 {}\r\n", b64(server_first.as_bytes())));
    let Some(fin) = p.line() else { return };
    if fin == "*" {
        p.send("501 5.7.0 cancelled\r\n");
        return;
    }
    let fin = String::from_utf8(unb64(&fin)).unwrap();
    let (without_proof, proof) = fin.rsplit_once(",p=").unwrap();
    let c = without_proof
        .split(',')
        .next()
        .unwrap()
        .strip_prefix("c=")
        .unwrap();
    let cbind = unb64(c);
    assert!(cbind.starts_with(p.report.gs2.as_bytes()), "{fin}");
    p.report.cbind_data = cbind[p.report.gs2.len()..].to_vec();
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(PASSWORD.as_bytes(), SALT, ITERATIONS, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof = unb64(proof);
    let recovered: Vec<u8> = proof.iter().zip(signature).map(|(a, b)| a ^ b).collect();
    p.report.proof_ok = Sha256::digest(&recovered).as_slice() == stored_key;
    let server_sig = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
    match last {
        Final::Good | Final::WrongV => {
            let mut sig = server_sig;
            if last == Final::WrongV {
                sig[0] ^= 1;
            }
            let v = format!("v={}", b64(&sig));
            p.send(&format!("334 {}\r\n", b64(v.as_bytes())));
            match p.line().as_deref() {
                Some("") if p.report.proof_ok => p.send("235 2.7.0 Authentication successful\r\n"),
                Some("*") => p.send("501 5.7.0 cancelled\r\n"),
                _ => p.send("535 5.7.8 Authentication credentials invalid\r\n"),
            }
        }
        Final::NoV => p.send("235 2.7.0 Authentication successful\r\n"),
    }
}

/// An SMTP server on 127.0.0.1 for one connection, following `plan`.
fn serve(plan: Plan) -> (u16, JoinHandle<Report>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(TIMEOUT * 2)).unwrap();
        let mut p = Peer {
            s: Stream::Plain(tcp),
            pending: Vec::new(),
            report: Report::default(),
        };
        p.send("220 scram.test ESMTP\r\n");
        let mut tls_done = false;
        while let Some(line) = p.line() {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                let starttls = if plan.tls.is_some() && !tls_done {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                p.send(&format!(
                    "250-scram.test\r\n{starttls}250-AUTH {}\r\n250 8BITMIME\r\n",
                    plan.mechanisms
                ));
            } else if upper == "STARTTLS" {
                p.send("220 2.0.0 go ahead\r\n");
                let Stream::Plain(tcp) = std::mem::replace(&mut p.s, Stream::Plain(dummy())) else {
                    unreachable!()
                };
                let (config, cert) = plan.tls.clone().unwrap();
                let conn = ServerConnection::new(config).unwrap();
                let mut tls = StreamOwned::new(conn, tcp);
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        return p.report;
                    }
                }
                let exporter = match tls.conn.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => {
                        let out = tls
                            .conn
                            .export_keying_material(
                                [0u8; 32],
                                b"EXPORTER-Channel-Binding",
                                Some(&[]),
                            )
                            .unwrap();
                        out.to_vec()
                    }
                    // tls-server-end-point: rcgen signs with ECDSA P-256 SHA-256.
                    _ => Sha256::digest(&cert).to_vec(),
                };
                p.report.exporter = Some(exporter);
                p.s = Stream::Tls(Box::new(tls));
                tls_done = true;
            } else if upper.starts_with("AUTH ") {
                let mut words = line["AUTH ".len()..].split(' ');
                let mechanism = words.next().unwrap().to_string();
                let initial = words.next().unwrap_or("").to_string();
                p.report.mechanism = mechanism.clone();
                if mechanism.starts_with("SCRAM-SHA-256") {
                    scram_server(&mut p, &initial, plan.last);
                } else {
                    p.send("504 5.5.4 unexpected mechanism\r\n");
                }
            } else if upper.starts_with("MAIL") {
                p.report.got_mail = true;
                p.send("250 2.1.0 ok\r\n");
            } else if upper.starts_with("RCPT") {
                p.send("250 2.1.5 ok\r\n");
            } else if upper == "DATA" {
                p.send("354 go\r\n");
                while let Some(l) = p.line() {
                    if l == "." {
                        break;
                    }
                }
                p.send("250 2.0.0 queued\r\n");
            } else if upper == "QUIT" {
                p.send("221 2.0.0 bye\r\n");
                break;
            } else {
                p.send("500 5.5.2 what\r\n");
            }
        }
        p.report
    });
    (port, handle)
}

fn dummy() -> TcpStream {
    // A connected socket to put in place while the real one moves into TLS.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    TcpStream::connect(l.local_addr().unwrap()).unwrap()
}

/// A server configuration with a fresh self-signed certificate for `localhost`, limited to
/// `versions`, and its certificate (for the client to trust).
fn tls_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<ServerConfig>, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let der = ck.cert.der().to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der.clone())], key)
        .unwrap();
    (Arc::new(config), der)
}

fn client_config(port: u16) -> Config {
    Config::relay("127.0.0.1")
        .port(port)
        .tls(Tls::None)
        .allow_plaintext_auth(true)
        .hello_name("client.test")
        .credentials(USER, PASSWORD)
        .timeouts(Timeouts::default().capped(TIMEOUT))
}

fn scram_without_tls_succeeds(driver: Driver) {
    let (port, server) = serve(Plan {
        mechanisms: "PLAIN LOGIN SCRAM-SHA-256 CRAM-MD5",
        tls: None,
        last: Final::Good,
    });
    let code = driver.send_one(client_config(port)).unwrap();
    assert_eq!(code, 250);
    let r = server.join().unwrap();
    assert_eq!(r.mechanism, "SCRAM-SHA-256");
    assert_eq!(r.gs2, "n,,");
    assert!(r.proof_ok && r.got_mail, "{r:?}");
}
both!(scram_without_tls_succeeds);

fn wrong_server_signature_is_an_impostor(driver: Driver) {
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256",
        tls: None,
        last: Final::WrongV,
    });
    let err = driver.send_one(client_config(port)).unwrap_err();
    assert!(matches!(err, Error::ServerNotVerified { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("could not prove it knows the password"),
        "{err}"
    );
    assert!(err.is_retryable());
    let r = server.join().unwrap();
    assert!(r.proof_ok, "the client's own proof was right");
    assert!(
        !r.got_mail,
        "no message may go to a server that did not prove itself"
    );
    assert!(r.lines.iter().any(|l| l == "*"), "{:?}", r.lines);
}
both!(wrong_server_signature_is_an_impostor);

fn success_without_server_signature_is_an_impostor(driver: Driver) {
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256",
        tls: None,
        last: Final::NoV,
    });
    let err = driver.send_one(client_config(port)).unwrap_err();
    match &err {
        Error::ServerNotVerified { reply } => assert_eq!(reply.code, 235),
        other => panic!("{other}"),
    }
    let r = server.join().unwrap();
    assert!(!r.got_mail);
}
both!(success_without_server_signature_is_an_impostor);

fn starttls_config(port: u16, cert: Vec<u8>) -> Config {
    client_config(port)
        .tls(Tls::StartTls)
        .allow_plaintext_auth(false)
        .tls_server_name("localhost")
        .add_root_certificate(cert)
}

fn plus_over_tls13_binds_with_the_exporter(driver: Driver) {
    let (tls, cert) = tls_config(&[&rustls::version::TLS13]);
    let (port, server) = serve(Plan {
        mechanisms: "PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS",
        tls: Some((tls, cert.clone())),
        last: Final::Good,
    });
    assert_eq!(driver.send_one(starttls_config(port, cert)).unwrap(), 250);
    let r = server.join().unwrap();
    assert_eq!(r.mechanism, "SCRAM-SHA-256-PLUS");
    assert_eq!(r.gs2, "p=tls-exporter,,");
    assert_eq!(Some(&r.cbind_data), r.exporter.as_ref());
    assert_eq!(r.cbind_data.len(), 32);
    assert!(r.proof_ok && r.got_mail);
}
both!(plus_over_tls13_binds_with_the_exporter);

fn plus_over_tls12_binds_with_the_certificate(driver: Driver) {
    let (tls, cert) = tls_config(&[&rustls::version::TLS12]);
    let expected = Sha256::digest(&cert).to_vec();
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256-PLUS SCRAM-SHA-256",
        tls: Some((tls, cert.clone())),
        last: Final::Good,
    });
    // Forced: unasked the client does not guess a TLS 1.2 binding (see the next case).
    let config = starttls_config(port, cert.clone()).auth_mechanism(Mechanism::ScramSha256Plus);
    assert_eq!(driver.send_one(config).unwrap(), 250);
    let r = server.join().unwrap();
    assert_eq!(r.mechanism, "SCRAM-SHA-256-PLUS");
    assert_eq!(r.gs2, "p=tls-server-end-point,,");
    assert_eq!(r.cbind_data, expected);
    assert!(r.proof_ok && r.got_mail);
}
both!(plus_over_tls12_binds_with_the_certificate);

/// Unasked over TLS 1.2 the client uses plain SCRAM, saying `n` (the server offered -PLUS,
/// and the client does not claim a binding it will not use).
fn over_tls12_plain_scram_is_chosen_unasked(driver: Driver) {
    let (tls, cert) = tls_config(&[&rustls::version::TLS12]);
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256-PLUS SCRAM-SHA-256",
        tls: Some((tls, cert.clone())),
        last: Final::Good,
    });
    assert_eq!(driver.send_one(starttls_config(port, cert)).unwrap(), 250);
    let r = server.join().unwrap();
    assert_eq!(r.mechanism, "SCRAM-SHA-256");
    assert_eq!(r.gs2, "n,,");
    assert!(r.proof_ok && r.got_mail);
}
both!(over_tls12_plain_scram_is_chosen_unasked);

/// Under TLS, a server that offers no -PLUS hears `y`: the client could have bound, so a
/// server that supports binding (and had -PLUS stripped from its EHLO) notices.
fn without_plus_offered_the_client_says_it_could_bind(driver: Driver) {
    let (tls, cert) = tls_config(&[&rustls::version::TLS13]);
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256 PLAIN",
        tls: Some((tls, cert.clone())),
        last: Final::Good,
    });
    assert_eq!(driver.send_one(starttls_config(port, cert)).unwrap(), 250);
    let r = server.join().unwrap();
    assert_eq!(r.mechanism, "SCRAM-SHA-256");
    assert_eq!(r.gs2, "y,,");
    assert!(r.cbind_data.is_empty());
    assert!(r.proof_ok);
}
both!(without_plus_offered_the_client_says_it_could_bind);

#[test]
fn forced_plus_without_tls_is_refused_before_auth() {
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256-PLUS",
        tls: None,
        last: Final::Good,
    });
    let config = client_config(port).auth_mechanism(Mechanism::ScramSha256Plus);
    let err = Driver::Blocking.send_one(config).unwrap_err();
    assert!(
        matches!(err, Error::Config(postline::ConfigError::NoChannelBinding)),
        "{err}"
    );
    drop(server);
}

#[test]
fn no_scram_over_clear_text_unless_allowed() {
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256 CRAM-MD5",
        tls: None,
        last: Final::Good,
    });
    let err = Driver::Blocking
        .send_one(client_config(port).allow_plaintext_auth(false))
        .unwrap_err();
    assert!(matches!(err, Error::PlaintextAuthRefused), "{err}");
    let r = server.join().unwrap();
    assert!(r.mechanism.is_empty(), "no AUTH at all: {:?}", r.lines);
}

#[test]
fn transcript_hides_the_exchange() {
    let (port, server) = serve(Plan {
        mechanisms: "SCRAM-SHA-256",
        tls: None,
        last: Final::Good,
    });
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let config = client_config(port).transcript(move |dir, line| {
        sink.lock().unwrap().push((dir, line.to_string()));
    });
    Driver::Blocking.send_one(config).unwrap();
    let r = server.join().unwrap();
    let lines = lines.lock().unwrap();
    let client: Vec<&str> = lines
        .iter()
        .filter(|(d, _)| *d == Direction::Client)
        .map(|(_, l)| l.as_str())
        .collect();
    assert!(client.contains(&"AUTH SCRAM-SHA-256 ***"), "{client:?}");
    // What the client really sent after AUTH (client-final, the empty line) never shows.
    let auth = r.lines.iter().position(|l| l.starts_with("AUTH")).unwrap();
    for sent in &r.lines[auth..auth + 3] {
        if !sent.is_empty() {
            assert!(
                !client.iter().any(|l| l.contains(sent.as_str())),
                "{sent} in {client:?}"
            );
        }
    }
    assert_eq!(
        client.iter().filter(|l| **l == "***").count(),
        2,
        "{client:?}"
    );
    assert!(!lines.iter().any(|(_, l)| l.contains(PASSWORD)));
    // Nor do the server's challenges: salt, iteration count, nonces and its signature, with
    // the user name, would let anyone holding the transcript test password guesses.
    let server: Vec<&str> = lines
        .iter()
        .filter(|(d, _)| *d == Direction::Server)
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(
        server.iter().filter(|l| **l == "334 ***").count(),
        2,
        "{server:?}"
    );
    assert!(
        !server
            .iter()
            .any(|l| l.starts_with("334 ") && *l != "334 ***"),
        "{server:?}"
    );
}
