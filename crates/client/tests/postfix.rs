//! The clients against a real, private Postfix on loopback (with Dovecot for SASL): the EHLO
//! name a strict server accepts, authentication over STARTTLS and on port 465, a relay that
//! requires a client certificate.

use std::time::Duration;

use postline::{AsyncClient, Client, Config, Envelope, Error, Mechanism, Tls};
use postline_testkit::{Postfix, SaslRelay, TestCa, TlsLevel};

const WAIT: Duration = Duration::from_secs(20);

fn envelope() -> Envelope {
    Envelope::new("alice@client.test", ["bob@server.test"]).unwrap()
}

const MESSAGE: &[u8] = b"Subject: postfix\r\n\r\nthrough a real MTA\r\n";

#[test]
fn the_default_ehlo_name_satisfies_a_server_that_wants_a_fully_qualified_one() {
    let pf = Postfix::builder().strict_helo().start();
    let plain = || Config::relay("127.0.0.1").port(pf.port()).tls(Tls::None);

    // No name configured: an FQDN or the address literal of this end, which Postfix takes.
    let mut c = Client::connect(plain()).unwrap();
    c.send_bytes(&envelope(), MESSAGE).unwrap();
    c.quit().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = AsyncClient::connect(plain()).await.unwrap();
        c.send_bytes(&envelope(), MESSAGE).await.unwrap();
        c.quit().await.unwrap();
    });
    assert_eq!(pf.wait_for_messages(2, WAIT).len(), 2);
    let log = pf.maillog();
    assert!(
        log.contains("helo=<[127.0.0.1]>") || !log.contains("reject"),
        "{log}"
    );

    // What the default used to be, a bare host name, is refused by this server.
    let err = Client::connect(plain().hello_name("vm")).unwrap_err();
    assert!(
        matches!(err, Error::Rejected(ref r) if r.code == 504),
        "{err:?}"
    );
}

#[test]
fn passwords_through_dovecot_over_starttls_and_on_465() {
    let relay = SaslRelay::start("alice", "secret", "plain login");
    let (pf, ca) = (&relay.postfix, &relay.ca);
    let submission = |password: &str| {
        Config::relay("localhost")
            .port(pf.submission_port().unwrap())
            .tls(Tls::StartTls)
            .ca_file(&ca.ca_path)
            .credentials("alice", password)
    };
    let smtps = |password: &str| {
        Config::relay("localhost")
            .port(pf.smtps_port().unwrap())
            .tls(Tls::Implicit)
            .ca_file(&ca.ca_path)
            .credentials("alice", password)
    };

    let mut sent = 0;
    for config in [
        submission("secret"),
        submission("secret").auth_mechanism(Mechanism::Login),
        smtps("secret"),
        smtps("secret").auth_mechanism(Mechanism::Login),
    ] {
        let mut c = Client::connect(config).unwrap();
        assert!(c.is_authenticated());
        c.send_bytes(&envelope(), MESSAGE).unwrap();
        c.quit().unwrap();
        sent += 1;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = AsyncClient::connect(smtps("secret")).await.unwrap();
        c.send_bytes(&envelope(), MESSAGE).await.unwrap();
        c.quit().await.unwrap();
    });
    sent += 1;
    assert_eq!(pf.wait_for_messages(sent, WAIT).len(), sent);

    for config in [submission("wrong"), smtps("wrong")] {
        let err = Client::connect(config).unwrap_err();
        assert!(
            matches!(err, Error::AuthRejected { ref reply, .. } if reply.code == 535),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }

    // Postfix offers AUTH only under TLS here; without TLS there is nothing to use, and the
    // password is never offered in clear text.
    let err = Client::connect(
        Config::relay("127.0.0.1")
            .port(pf.submission_port().unwrap())
            .tls(Tls::None)
            .credentials("alice", "secret"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::PlaintextAuthRefused), "{err:?}");
}

#[test]
fn a_relay_that_requires_a_client_certificate() {
    let ca = TestCa::new();
    let clients = TestCa::new();
    let alice = clients.client_cert("alice");
    let pf = Postfix::builder()
        .tls(&ca)
        .submission(TlsLevel::Encrypt)
        .client_cert_required(&clients)
        .start();
    let config = || {
        Config::relay("localhost")
            .port(pf.submission_port().unwrap())
            .tls(Tls::StartTls)
            .ca_file(&ca.ca_path)
    };

    let mut c =
        Client::connect(config().client_certificate(&alice.cert_path, &alice.key_path)).unwrap();
    c.send_bytes(&envelope(), MESSAGE).unwrap();
    c.quit().unwrap();
    assert_eq!(pf.wait_for_messages(1, WAIT).len(), 1);

    // Without one, Postfix ends the session after the handshake.
    let err = Client::connect(config()).unwrap_err();
    assert!(
        matches!(err, Error::ServiceClosing(ref r) if r.code == 421),
        "{err:?}"
    );
}
