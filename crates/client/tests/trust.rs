//! Trusting a server certificate against a real aiosmtpd on loopback: a self-signed `CA:TRUE`
//! certificate given as a CA file, fingerprint and public-key pins, and a refusal in words
//! for each way verification fails. Client certificates against an in-process rustls server
//! that requires one.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postline::{
    AsyncClient, CertificateSummary, Client, Config, Envelope, Error, Fingerprint, Pin,
    PublicKeyPin, Tls, TlsFailure,
};
use postline_testkit::{Aiosmtpd, TestCa};

const WAIT: Duration = Duration::from_secs(20);

/// A certificate that signs itself, written as PEM files.
struct SelfSigned {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

/// `openssl req -x509`'s kind of certificate when `ca` (marked `CA:TRUE`), for `names` as
/// alternative names, or with only a common name when `names` is empty.
fn self_signed(cn: &str, names: &[&str], ca: bool, expired: bool) -> SelfSigned {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    } else {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2090, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    SelfSigned {
        _dir: dir,
        cert: cert_path,
        key: key_path,
        der: cert.der().to_vec(),
    }
}

fn starttls(server: &Aiosmtpd, host: &str) -> Config {
    Config::relay(host)
        .port(server.port())
        .tls(Tls::StartTls)
        .hello_name("client.test")
}

fn send_one(mut client: Client) {
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    client
        .send_bytes(&env, b"Subject: t\r\n\r\nhi\r\n")
        .unwrap();
    client.quit().unwrap();
}

fn tls_failure(err: Error) -> TlsFailure {
    match err {
        Error::Tls { failure, .. } => failure,
        other => panic!("not a TLS failure: {other:?}"),
    }
}

#[test]
fn a_self_signed_ca_certificate_given_as_ca_file_is_trusted_as_itself() {
    let cert = self_signed("localhost", &["localhost"], true, false);
    let server = Aiosmtpd::builder().starttls(&cert.cert, &cert.key).start();

    // Without it: refused, in words, with the fingerprint to pin.
    let err = Client::connect(starttls(&server, "localhost")).unwrap_err();
    let text = err.to_string();
    let failure = tls_failure(err);
    assert!(matches!(failure, TlsFailure::SelfSigned(_)), "{failure:?}");
    let fp = Fingerprint::of(&cert.der).to_string();
    assert!(text.contains("self-signed") && text.contains(&fp), "{text}");
    assert!(
        !text.contains("CaUsedAsEndEntity") && !text.contains("Other("),
        "{text}"
    );

    // With it, on both clients.
    send_one(Client::connect(starttls(&server, "localhost").ca_file(&cert.cert)).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = AsyncClient::connect(starttls(&server, "localhost").ca_file(&cert.cert))
            .await
            .unwrap();
        let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
        c.send_bytes(&env, b"Subject: t\r\n\r\nhi\r\n")
            .await
            .unwrap();
        c.quit().await.unwrap();
    });
    assert_eq!(server.wait_for_messages(2, WAIT).len(), 2);

    // Trusted as itself still means for its own names only.
    let err = Client::connect(starttls(&server, "127.0.0.1").ca_file(&cert.cert)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(tls_failure(err), TlsFailure::WrongName { ref expected, .. } if expected == "127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("is for localhost, not 127.0.0.1"), "{text}");
}

#[test]
fn a_certificate_with_only_a_common_name_is_checked_against_it() {
    let cert = self_signed("localhost", &[], true, false);
    let server = Aiosmtpd::builder().starttls(&cert.cert, &cert.key).start();
    send_one(Client::connect(starttls(&server, "localhost").ca_file(&cert.cert)).unwrap());
    let err = Client::connect(starttls(&server, "127.0.0.1").ca_file(&cert.cert)).unwrap_err();
    assert!(
        matches!(tls_failure(err), TlsFailure::WrongName { .. }),
        "a common name is not an IP address"
    );
}

#[test]
fn an_expired_certificate_given_as_itself_is_refused_with_its_date() {
    let cert = self_signed("localhost", &["localhost"], true, true);
    let server = Aiosmtpd::builder().starttls(&cert.cert, &cert.key).start();
    let err = Client::connect(starttls(&server, "localhost").ca_file(&cert.cert)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(tls_failure(err), TlsFailure::Expired { .. }),
        "{text}"
    );
    assert!(text.contains("expired on 2001-01-01"), "{text}");
}

#[test]
fn pins_replace_chain_verification_and_name_the_values_seen() {
    let cert = self_signed("localhost", &["localhost"], true, false);
    let server = Aiosmtpd::builder().starttls(&cert.cert, &cert.key).start();
    let summary = CertificateSummary::from_der(&cert.der).unwrap();

    // The right fingerprint: trusted, even by an address the certificate does not name.
    let fp = Fingerprint::parse(&summary.fingerprint.to_string().to_lowercase()).unwrap();
    send_one(Client::connect(starttls(&server, "127.0.0.1").pin(Pin::Certificate(fp))).unwrap());
    // The right public key.
    let key = PublicKeyPin::parse(&summary.public_key_pin.to_string()).unwrap();
    send_one(Client::connect(starttls(&server, "localhost").pin(Pin::PublicKey(key))).unwrap());
    // A wrong one, even with the certificate given as a CA file: the pin decides.
    let wrong = Fingerprint([0xAB; 32]);
    let err = Client::connect(
        starttls(&server, "localhost")
            .ca_file(&cert.cert)
            .pin(Pin::Certificate(wrong)),
    )
    .unwrap_err();
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        matches!(tls_failure(err), TlsFailure::PinMismatch { .. }),
        "{text}"
    );
    assert!(
        text.contains(&summary.fingerprint.to_string())
            && text.contains(&summary.public_key_pin.to_string())
            && text.contains(&wrong.to_string()),
        "names what it saw and what it wanted: {text}"
    );
    assert_eq!(server.wait_for_messages(2, WAIT).len(), 2);
}

/// A leaf signed by a throwaway authority, which the test then trusts through `roots`.
struct Issued {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn issued(leaf_is_ca: bool, not_before_year: i32) -> Issued {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "issuing authority");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    if leaf_is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    params.not_before = rcgen::date_time_ymd(not_before_year, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Issued {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
        _dir: dir,
    }
}

#[test]
fn a_ca_certificate_as_leaf_and_a_future_certificate_are_told_apart() {
    let leaf_ca = issued(true, 2020);
    let server = Aiosmtpd::builder()
        .starttls(&leaf_ca.cert, &leaf_ca.key)
        .start();
    let err = Client::connect(starttls(&server, "localhost").ca_file(&leaf_ca.ca)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(tls_failure(err), TlsFailure::CaUsedAsLeaf(_)),
        "{text}"
    );
    assert!(text.contains("presents a CA certificate"), "{text}");

    let future = issued(false, 2090);
    let server = Aiosmtpd::builder()
        .starttls(&future.cert, &future.key)
        .start();
    let err = Client::connect(starttls(&server, "localhost").ca_file(&future.ca)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(tls_failure(err), TlsFailure::NotYetValid { .. }),
        "{text}"
    );
    assert!(text.contains("valid only from 2090-01-01"), "{text}");
}

#[test]
fn a_pin_is_checked_even_with_verification_off() {
    let cert = self_signed("localhost", &["localhost"], true, false);
    let server = Aiosmtpd::builder().starttls(&cert.cert, &cert.key).start();
    let err = Client::connect(
        starttls(&server, "localhost")
            .dangerous_accept_invalid_certificates(true)
            .pin(Pin::Certificate(Fingerprint([1; 32]))),
    )
    .unwrap_err();
    assert!(
        matches!(tls_failure(err), TlsFailure::PinMismatch { .. }),
        "the opt-out does not switch a pin off"
    );
    let right = Pin::Certificate(Fingerprint::of(&cert.der));
    send_one(
        Client::connect(
            starttls(&server, "localhost")
                .dangerous_accept_invalid_certificates(true)
                .pin(right),
        )
        .unwrap(),
    );
}

#[test]
fn chain_failures_are_told_apart() {
    // Signed by an authority nobody here trusts.
    let ca = TestCa::new();
    let server = Aiosmtpd::builder().starttls_with(&ca).start();
    let err = Client::connect(starttls(&server, "localhost")).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(tls_failure(err), TlsFailure::UnknownIssuer(_)),
        "{text}"
    );
    assert!(text.contains("not a trusted authority"), "{text}");

    // Trusted authority, other names: the names are listed.
    let named = TestCa::with_server_names(&["mail.example.test", "smtp.example.test"]);
    let server = Aiosmtpd::builder().starttls_with(&named).start();
    let err = Client::connect(starttls(&server, "localhost").ca_file(&named.ca_path)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("is for mail.example.test, smtp.example.test, not localhost"),
        "{text}"
    );

    // Trusted authority, expired leaf.
    let old = TestCa::expired();
    let server = Aiosmtpd::builder().starttls_with(&old).start();
    let err = Client::connect(starttls(&server, "localhost").ca_file(&old.ca_path)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(tls_failure(err), TlsFailure::Expired { .. }),
        "{text}"
    );
    assert!(text.contains("expired on 2001-01-01"), "{text}");
}

/// A client certificate for `cn` and the authority that signed it.
struct ClientId {
    _dir: tempfile::TempDir,
    ca_der: Vec<u8>,
    cert: PathBuf,
    key: PathBuf,
}

fn client_id(cn: &str) -> ClientId {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "client authority");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("client.pem");
    let key_path = dir.path().join("client.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    ClientId {
        _dir: dir,
        ca_der: ca_cert.der().to_vec(),
        cert: cert_path,
        key: key_path,
    }
}

/// A TLS-from-the-first-byte SMTP server that requires a client certificate signed by
/// `client_ca`; answers the greeting, EHLO and QUIT, and reports the client certificate's
/// subject (or the handshake error).
fn ccert_server(ca: &TestCa, client_ca: &[u8]) -> (u16, std::thread::JoinHandle<String>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(client_ca.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(ca.server_cert_der.clone())],
            PrivateKeyDer::try_from(ca.server_key_der.clone()).unwrap(),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        if let Err(e) = tls.write_all(b"220 ccert.test ESMTP\r\n") {
            return format!("handshake: {e}");
        }
        let subject = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first().cloned())
            .and_then(|c| CertificateSummary::from_der(&c).map(|s| s.subject))
            .unwrap_or_default();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match tls.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                _ => return format!("closed: {subject}"),
            }
            if line.ends_with(b"\r\n") {
                let reply: &[u8] = if line.starts_with(b"EHLO") {
                    b"250 ccert.test\r\n"
                } else {
                    let _ = tls.write_all(b"221 bye\r\n");
                    return subject;
                };
                tls.write_all(reply).unwrap();
                line.clear();
            }
        }
    });
    (port, handle)
}

#[test]
fn a_client_certificate_is_presented_when_the_server_asks() {
    let ca = TestCa::new();
    let alice = client_id("alice");
    let implicit = |port| {
        Config::relay("localhost")
            .port(port)
            .tls(Tls::Implicit)
            .hello_name("client.test")
            .ca_file(&ca.ca_path)
    };

    let (port, server) = ccert_server(&ca, &alice.ca_der);
    let client =
        Client::connect(implicit(port).client_certificate(&alice.cert, &alice.key)).unwrap();
    client.quit().unwrap();
    assert_eq!(server.join().unwrap(), "CN=alice");

    // Without one: the server's alert, in words.
    let (port, server) = ccert_server(&ca, &alice.ca_der);
    let err = Client::connect(implicit(port)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("client certificate"), "{text}");
    assert!(!text.contains("CertificateRequired"), "{text}");
    let _ = server.join();

    // A key that does not go with the certificate: a configuration error before connecting.
    let other = TestCa::new();
    let err = Client::connect(implicit(port).client_certificate(&alice.cert, &other.key_path))
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_eq!(err.fault(), postline::Fault::Local);
}
