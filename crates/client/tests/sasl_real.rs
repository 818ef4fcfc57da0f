//! Authentication against real servers on loopback: SCRAM-SHA-256 through Postfix and
//! Dovecot, SCRAM-SHA-256-PLUS against aiosmtpd with scramp (a third-party SCRAM server that
//! checks the channel binding), a server that cannot prove it knows the password, and SASL
//! EXTERNAL with a client certificate through Dovecot's submission service.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postline::{AsyncClient, Client, Config, Direction, Envelope, Error, Mechanism, Tls};
use postline_testkit::{Aiosmtpd, ExternalSubmission, SaslRelay, TestCa};

const WAIT: Duration = Duration::from_secs(20);
const MESSAGE: &[u8] = b"Subject: sasl\r\n\r\nauthenticated\r\n";

fn envelope() -> Envelope {
    Envelope::new("alice@client.test", ["bob@server.test"]).unwrap()
}

/// The AUTH command lines a session wrote, from its (redacted) transcript.
fn auth_lines(config: Config) -> (Config, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let config = config.transcript(move |dir, line| {
        if dir == Direction::Client && line.starts_with("AUTH") {
            sink.lock().unwrap().push(line.to_string());
        }
    });
    (config, lines)
}

fn mechanism_used(lines: &Arc<Mutex<Vec<String>>>) -> String {
    let lines = lines.lock().unwrap();
    let first = lines.first().expect("an AUTH command");
    first.split(' ').nth(1).unwrap_or_default().to_string()
}

#[test]
fn scram_sha_256_through_postfix_and_dovecot_on_587_and_465() {
    let relay = SaslRelay::start("alice", "pencil", "plain login scram-sha-256");
    let (pf, ca) = (&relay.postfix, &relay.ca);
    let configs = |password: &str| {
        [
            Config::relay("localhost")
                .port(pf.submission_port().unwrap())
                .tls(Tls::StartTls),
            Config::relay("localhost")
                .port(pf.smtps_port().unwrap())
                .tls(Tls::Implicit),
        ]
        .map(|c| c.ca_file(&ca.ca_path).credentials("alice", password))
    };

    // Chosen over PLAIN without being asked: Dovecot offers no -PLUS.
    for config in configs("pencil") {
        let (config, lines) = auth_lines(config);
        let mut c = Client::connect(config).unwrap();
        assert!(c.is_authenticated());
        assert_eq!(mechanism_used(&lines), "SCRAM-SHA-256");
        c.send_bytes(&envelope(), MESSAGE).unwrap();
        c.quit().unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let [starttls, _] = configs("pencil");
        let mut c = AsyncClient::connect(starttls).await.unwrap();
        c.send_bytes(&envelope(), MESSAGE).await.unwrap();
        c.quit().await.unwrap();
    });
    assert_eq!(pf.wait_for_messages(3, WAIT).len(), 3);

    for config in configs("wrong") {
        let err = Client::connect(config.auth_mechanism(Mechanism::ScramSha256)).unwrap_err();
        assert!(
            matches!(err, Error::AuthRejected { ref reply, .. } if reply.code == 535),
            "{err:?}"
        );
    }
}

fn scramp(tls12: bool) -> (TestCa, Aiosmtpd) {
    let ca = TestCa::new();
    let mut b = Aiosmtpd::builder()
        .starttls_with(&ca)
        .scram("alice", "pencil");
    if tls12 {
        b = b.tls_max_1_2();
    }
    let server = b.start();
    (ca, server)
}

fn to(ca: &TestCa, server: &Aiosmtpd, password: &str) -> Config {
    Config::relay("localhost")
        .port(server.port())
        .tls(Tls::StartTls)
        .ca_file(&ca.ca_path)
        .credentials("alice", password)
}

#[test]
fn scram_sha_256_plus_binds_the_tls_session_for_scramp() {
    // TLS 1.2: tls-server-end-point, which scramp checks against its own certificate. Unasked
    // the client does not guess a TLS 1.2 binding (servers differ), so -PLUS is forced here.
    let (ca, server) = scramp(true);
    let (config, lines) =
        auth_lines(to(&ca, &server, "pencil").auth_mechanism(Mechanism::ScramSha256Plus));
    let mut c = Client::connect(config).unwrap();
    assert_eq!(c.tls_info().unwrap().version, "TLSv1.2");
    assert_eq!(mechanism_used(&lines), "SCRAM-SHA-256-PLUS");
    c.send_bytes(&envelope(), MESSAGE).unwrap();
    c.quit().unwrap();
    assert_eq!(server.wait_for_messages(1, WAIT).len(), 1);

    let (config, lines) = auth_lines(to(&ca, &server, "pencil"));
    let c = Client::connect(config).unwrap();
    assert_eq!(
        mechanism_used(&lines),
        "SCRAM-SHA-256",
        "unasked over TLS 1.2"
    );
    c.quit().unwrap();

    let err = Client::connect(to(&ca, &server, "wrong").auth_mechanism(Mechanism::ScramSha256Plus))
        .unwrap_err();
    assert!(
        matches!(err, Error::AuthRejected { ref reply, .. } if reply.code == 535),
        "{err:?}"
    );

    // Over TLS 1.3 this server offers no -PLUS (it cannot bind with tls-exporter, the TLS
    // 1.3 binding of RFC 9266), so plain SCRAM is chosen, with the `y` flag: the client could
    // have bound the channel.
    let (ca13, server13) = scramp(false);
    let (config, lines) = auth_lines(to(&ca13, &server13, "pencil"));
    let c = Client::connect(config).unwrap();
    assert_eq!(c.tls_info().unwrap().version, "TLSv1.3");
    assert_eq!(mechanism_used(&lines), "SCRAM-SHA-256");
    c.quit().unwrap();

    // Plain SCRAM when asked for, with the `y` flag scramp accepts.
    let c =
        Client::connect(to(&ca, &server, "pencil").auth_mechanism(Mechanism::ScramSha256)).unwrap();
    assert!(c.is_authenticated());
    c.quit().unwrap();
}

#[test]
fn a_server_that_cannot_prove_it_knows_the_password_gets_no_message() {
    for (bad_proof, skip_final) in [(true, false), (false, true)] {
        let ca = TestCa::new();
        let mut b = Aiosmtpd::builder()
            .starttls_with(&ca)
            .scram("alice", "pencil");
        if bad_proof {
            b = b.scram_bad_proof();
        }
        if skip_final {
            b = b.scram_skip_final();
        }
        let server = b.start();
        let err = Client::connect(to(&ca, &server, "pencil")).unwrap_err();
        assert!(
            matches!(err, Error::ServerNotVerified { .. }),
            "bad proof {bad_proof}, skipped final {skip_final}: {err:?}"
        );
        assert!(err.to_string().contains("could not prove"), "{err}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(server.messages().is_empty());
    }
}

#[test]
fn external_with_a_client_certificate_through_dovecot_submission() {
    let ext = ExternalSubmission::start("alice");
    let (alice, sink) = (&ext.cert, &ext.sink);
    let config = || {
        Config::relay("localhost")
            .port(ext.dovecot.submission_port().unwrap())
            .tls(Tls::StartTls)
            .ca_file(&ext.server_ca.ca_path)
            .sasl_external()
    };

    let (with_cert, lines) =
        auth_lines(config().client_certificate(&alice.cert_path, &alice.key_path));
    let mut c = Client::connect(with_cert).unwrap();
    assert!(c.is_authenticated());
    assert_eq!(mechanism_used(&lines), "EXTERNAL");
    c.send_bytes(&envelope(), MESSAGE).unwrap();
    c.quit().unwrap();
    let got = sink.wait_for_messages(1, WAIT);
    assert!(
        String::from_utf8_lossy(&got[0].content).contains("authenticated"),
        "{:?}",
        got[0]
    );

    // No certificate: refused before AUTH, with what to do.
    let err = Client::connect(config()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config(postline::ConfigError::ExternalNeedsCertificate)
        ),
        "{err:?}"
    );
    // A certificate Dovecot does not know as a user: its 535.
    let bob = ext.clients.client_cert("bob");
    let err =
        Client::connect(config().client_certificate(&bob.cert_path, &bob.key_path)).unwrap_err();
    assert!(
        matches!(err, Error::AuthRejected { ref reply, .. } if reply.code == 535),
        "{err:?}"
    );
}
