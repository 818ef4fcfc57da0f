//! The blocking and async clients against a real aiosmtpd server on loopback: exact bytes,
//! TLS, AUTH, per-recipient outcomes, SIZE, SMTPUTF8, 8BITMIME.

use std::time::Duration;

use postline::{AsyncClient, Client, Config, Envelope, Error, FailedAt, Tls};
use postline_testkit::{Aiosmtpd, TestCa};

const WAIT: Duration = Duration::from_secs(20);

fn plain(server: &Aiosmtpd) -> Config {
    Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .hello_name("client.test")
}

/// What a correct client delivers for `input`: bare CR and bare LF become CRLF, and a final
/// CRLF is added to a non-empty message that lacks one.
fn normalised(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 2);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
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

fn tricky_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut long_line = vec![b'x'; 998];
    long_line.extend_from_slice(b"\r\n");
    let mut big = Vec::with_capacity(20 << 20);
    let line = b"The quick brown fox jumps over the lazy dog. 0123456789 .............\r\n";
    while big.len() < 20 << 20 {
        big.extend_from_slice(line);
        big.extend_from_slice(b".leading dot line\r\n");
    }
    vec![
        (
            "single dot lines",
            b"Subject: dots\r\n\r\n.\r\nbetween\r\n.\r\n".to_vec(),
        ),
        (
            "double dots",
            b"Subject: x\r\n\r\n..\r\n..two\r\n...three\r\n".to_vec(),
        ),
        (
            "bare LF",
            b"Subject: lf\n\nline one\nline two\n.\nend\n".to_vec(),
        ),
        ("bare CR", b"Subject: cr\r\n\r\na\rb\r.\rc\r\n".to_vec()),
        (
            "smuggling",
            b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@x>\r\n\r\n.\r\nRSET\r\n".to_vec(),
        ),
        (
            "no final newline",
            b"Subject: nonl\r\n\r\nlast line".to_vec(),
        ),
        (
            "8-bit UTF-8",
            "Subject: ünïcode\r\n\r\nGrüße, 日本語, emoji 🎉\r\n"
                .as_bytes()
                .to_vec(),
        ),
        ("998-octet line", long_line),
        ("empty", Vec::new()),
        ("20 MiB", big),
    ]
}

#[test]
fn tricky_bodies_arrive_byte_for_byte() {
    let server = Aiosmtpd::start();
    let mut client = Client::connect(plain(&server)).unwrap();
    let bodies = tricky_bodies();
    for (name, body) in &bodies {
        let env = Envelope::new("sender@client.test", ["rcpt@server.test"]).unwrap();
        let outcome = client
            .send(&env, &body[..])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(outcome.all_accepted(), "{name}");
        assert_eq!(outcome.reply.code, 250, "{name}");
    }
    client.quit().unwrap();
    let got = server.wait_for_messages(bodies.len(), WAIT);
    for ((name, body), msg) in bodies.iter().zip(&got) {
        let want = normalised(body);
        assert!(
            msg.content == want,
            "{name}: {} octets received, {} expected; first difference at {:?}",
            msg.content.len(),
            want.len(),
            msg.content.iter().zip(&want).position(|(a, b)| a != b)
        );
        assert_eq!(msg.mail_from, "sender@client.test");
        assert_eq!(msg.rcpt_tos, ["rcpt@server.test"]);
    }
}

#[test]
fn many_messages_and_recipients_on_one_connection() {
    let server = Aiosmtpd::builder().reject_rcpt("unknown").start();
    let mut client = Client::connect(plain(&server)).unwrap();
    for i in 0..20 {
        let env = Envelope::new(
            "a@client.test",
            ["b@server.test", "unknown@server.test", "c@server.test"],
        )
        .unwrap();
        let body = format!("Subject: {i}\r\n\r\nmessage {i}\r\n");
        let outcome = client.send_bytes(&env, body.as_bytes()).unwrap();
        let accepted: Vec<_> = outcome.accepted().map(|r| r.address.as_str()).collect();
        assert_eq!(accepted, ["b@server.test", "c@server.test"]);
        let rejected: Vec<_> = outcome.rejected().collect();
        assert_eq!(rejected.len(), 1);
        let reply = rejected[0].reply.as_ref().unwrap();
        assert_eq!(reply.code, 550);
        assert_eq!(
            reply.enhanced.map(|e| (e.class, e.subject, e.detail)),
            Some((5, 1, 1))
        );
    }
    assert_eq!(client.noop().unwrap().code, 250);
    client.quit().unwrap();
    let got = server.wait_for_messages(20, WAIT);
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(msg.rcpt_tos, ["b@server.test", "c@server.test"]);
        assert_eq!(
            msg.content,
            format!("Subject: {i}\r\n\r\nmessage {i}\r\n").as_bytes()
        );
        assert!(
            msg.mail_options.iter().any(|o| o.starts_with("SIZE=")),
            "{:?}",
            msg.mail_options
        );
        assert!(
            msg.mail_options.iter().any(|o| o == "BODY=8BITMIME"),
            "{:?}",
            msg.mail_options
        );
    }
}

#[test]
fn all_recipients_refused_leaves_connection_usable() {
    let server = Aiosmtpd::builder().reject_rcpt("nobody").start();
    let mut client = Client::connect(plain(&server)).unwrap();
    let env = Envelope::new(
        "a@client.test",
        ["nobody1@server.test", "nobody2@server.test"],
    )
    .unwrap();
    match client.send_bytes(&env, b"Subject: x\r\n\r\nx\r\n") {
        Err(Error::MessageRejected {
            at: FailedAt::NoValidRecipients,
            recipients,
            ..
        }) => {
            assert_eq!(recipients.len(), 2);
            assert!(recipients
                .iter()
                .all(|r| r.reply.as_ref().unwrap().code == 550));
        }
        other => panic!("expected NoValidRecipients, got {other:?}"),
    }
    let env = Envelope::new("a@client.test", ["ok@server.test"]).unwrap();
    client.send_bytes(&env, b"Subject: y\r\n\r\ny\r\n").unwrap();
    client.quit().unwrap();
    assert_eq!(server.wait_for_messages(1, WAIT).len(), 1);
}

#[test]
fn transient_failure_is_retryable_and_session_survives() {
    let server = Aiosmtpd::builder().tempfail_first(1).start();
    let mut client = Client::connect(plain(&server)).unwrap();
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    let err = client
        .send_bytes(&env, b"Subject: 1\r\n\r\n1\r\n")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageRejected {
                at: FailedAt::Message,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reply().unwrap().code, 451);
    assert!(err.is_retryable());
    client.send_bytes(&env, b"Subject: 2\r\n\r\n2\r\n").unwrap();
    client.quit().unwrap();
    let got = server.wait_for_messages(1, WAIT);
    assert_eq!(got[0].content, b"Subject: 2\r\n\r\n2\r\n");
}

#[test]
fn size_limit_refused_before_data() {
    let server = Aiosmtpd::builder().max_size(1000).start();
    let mut client = Client::connect(plain(&server)).unwrap();
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    let err = client.send_bytes(&env, &[b'x'; 5000]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Incompatible(postline::Refusal::TooLarge {
                size: 5000,
                limit: 1000
            })
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    // Nothing was sent, and the connection is still good.
    client
        .send_bytes(&env, b"Subject: small\r\n\r\nok\r\n")
        .unwrap();
    client.quit().unwrap();
    let got = server.wait_for_messages(1, WAIT);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].mail_options.contains(&"SIZE=22".to_string()),
        "{:?}",
        got[0].mail_options
    );
}

#[test]
fn smtputf8_used_when_needed_and_refused_when_missing() {
    let without = Aiosmtpd::start();
    let mut client = Client::connect(plain(&without)).unwrap();
    let env = Envelope::new("a@client.test", ["用户@例子.test"]).unwrap();
    let err = client
        .send_bytes(&env, b"Subject: u\r\n\r\nu\r\n")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Incompatible(postline::Refusal::SmtpUtf8Unsupported)
        ),
        "{err}"
    );
    drop(client);

    let with = Aiosmtpd::builder().smtputf8().start();
    let mut client = Client::connect(plain(&with)).unwrap();
    client
        .send_bytes(&env, "Subject: ü\r\n\r\nü\r\n".as_bytes())
        .unwrap();
    client.quit().unwrap();
    let got = with.wait_for_messages(1, WAIT);
    assert_eq!(got[0].rcpt_tos, ["用户@例子.test"]);
    assert!(
        got[0].mail_options.iter().any(|o| o == "SMTPUTF8"),
        "{:?}",
        got[0].mail_options
    );
}

#[test]
fn starttls_verified_through_custom_root() {
    let ca = TestCa::new();
    let server = Aiosmtpd::builder()
        .starttls_with(&ca)
        .require_starttls()
        .start();
    let config = Config::relay("localhost")
        .port(server.port())
        .tls(Tls::StartTls)
        .ca_file(&ca.ca_path)
        .hello_name("client.test");
    let mut client = Client::connect(config).unwrap();
    let info = client.tls_info().expect("encrypted").clone();
    assert_eq!(info.version, "TLSv1.3");
    assert!(!info.cipher_suite.is_empty());
    assert_eq!(info.peer_certificates[0], ca.server_cert_der);
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    client
        .send_bytes(&env, b"Subject: tls\r\n\r\nsecret\r\n")
        .unwrap();
    client.quit().unwrap();
    let got = server.wait_for_messages(1, WAIT);
    assert!(got[0].tls);
    assert_eq!(got[0].content, b"Subject: tls\r\n\r\nsecret\r\n");
}

#[test]
fn starttls_untrusted_certificate_is_refused() {
    let ca = TestCa::new();
    let other = TestCa::other();
    let server = Aiosmtpd::builder().starttls_with(&ca).start();
    for roots in [None, Some(&other)] {
        let mut config = Config::relay("localhost")
            .port(server.port())
            .tls(Tls::StartTls);
        if let Some(o) = roots {
            config = config.ca_file(&o.ca_path);
        }
        let err = Client::connect(config).unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
    // The loudly named opt-out gets through, still encrypted.
    let config = Config::relay("localhost")
        .port(server.port())
        .tls(Tls::StartTls)
        .dangerous_accept_invalid_certificates(true);
    let client = Client::connect(config).unwrap();
    assert!(client.tls_info().is_some());
    client.quit().unwrap();
}

#[test]
fn starttls_required_but_not_offered() {
    let server = Aiosmtpd::start();
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::StartTls);
    let err = Client::connect(config).unwrap_err();
    assert!(matches!(err, Error::StartTlsUnavailable(None)), "{err}");
    // Opportunistic goes on in clear text.
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::Opportunistic);
    let client = Client::connect(config).unwrap();
    assert!(client.tls_info().is_none());
}

#[test]
fn implicit_tls() {
    let ca = TestCa::new();
    let server = Aiosmtpd::builder()
        .implicit_tls_with(&ca)
        .auth("alice", "s3cret")
        .start();
    let config = Config::relay("localhost")
        .port(server.port())
        .tls(Tls::Implicit)
        .add_root_certificate(ca.ca_der.clone())
        .credentials("alice", "s3cret");
    let mut client = Client::connect(config).unwrap();
    assert!(client.tls_info().is_some());
    assert!(client.is_authenticated());
    let env = Envelope::new("alice@client.test", ["b@server.test"]).unwrap();
    client
        .send_bytes(&env, b"Subject: 465\r\n\r\nimplicit\r\n")
        .unwrap();
    client.quit().unwrap();
    let got = server.wait_for_messages(1, WAIT);
    assert_eq!(got[0].auth_user.as_deref(), Some("alice"));
}

#[test]
fn auth_plain_and_login_over_starttls() {
    let ca = TestCa::new();
    let server = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth("alice", "s3cret")
        .start();
    let base = || {
        Config::relay("localhost")
            .port(server.port())
            .tls(Tls::StartTls)
            .ca_file(&ca.ca_path)
    };
    for mech in [postline::Mechanism::Plain, postline::Mechanism::Login] {
        let client =
            Client::connect(base().credentials("alice", "s3cret").auth_mechanism(mech)).unwrap();
        assert!(client.is_authenticated(), "{mech:?}");
        // The 235 is kept apart: the EHLO reply stays the EHLO reply.
        assert_eq!(client.auth_reply().map(|r| r.code), Some(235), "{mech:?}");
        assert_eq!(client.ehlo_reply().map(|r| r.code), Some(250), "{mech:?}");
        client.quit().unwrap();
        let err =
            Client::connect(base().credentials("alice", "wrong").auth_mechanism(mech)).unwrap_err();
        match &err {
            Error::AuthRejected {
                reply,
                advertised: true,
            } => assert_eq!(reply.code, 535),
            other => panic!("{mech:?}: expected 535, got {other}"),
        }
        assert!(!err.is_retryable());
    }
    // Without a forced mechanism the strongest offered is chosen and works.
    let mut client = Client::connect(base().credentials("alice", "s3cret")).unwrap();
    let env = Envelope::new("alice@client.test", ["b@server.test"]).unwrap();
    client
        .send_bytes(&env, b"Subject: auth\r\n\r\nx\r\n")
        .unwrap();
    client.quit().unwrap();
    assert_eq!(
        server.wait_for_messages(1, WAIT)[0].auth_user.as_deref(),
        Some("alice")
    );
}

#[test]
fn no_password_over_clear_text_unless_allowed() {
    let server = Aiosmtpd::builder()
        .auth("alice", "s3cret")
        .auth_plaintext()
        .start();
    let base = || plain(&server).credentials("alice", "s3cret");
    let err = Client::connect(base()).unwrap_err();
    assert!(matches!(err, Error::PlaintextAuthRefused), "{err}");
    let mut lines = Vec::new();
    let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s2 = sink.clone();
    let client = Client::connect(
        base()
            .allow_plaintext_auth(true)
            .transcript(move |_, l| s2.lock().unwrap().push(l.to_string())),
    )
    .unwrap();
    assert!(client.is_authenticated());
    client.quit().unwrap();
    lines.extend(sink.lock().unwrap().iter().cloned());
    let transcript = lines.join("\n");
    assert!(transcript.contains("AUTH"), "{transcript}");
    assert!(!transcript.contains("s3cret"), "{transcript}");
    // base64 of "\0alice\0s3cret" and of "s3cret" must not appear either.
    assert!(!transcript.contains("AGFsaWNlAHMzY3JldA"), "{transcript}");
    assert!(!transcript.contains("czNjcmV0"), "{transcript}");
}

#[test]
fn async_client_sends_and_streams() {
    let server = Aiosmtpd::builder().reject_rcpt("unknown").start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = AsyncClient::connect(plain(&server)).await.unwrap();
        for (name, body) in tricky_bodies().into_iter().take(9) {
            let env =
                Envelope::new("a@client.test", ["b@server.test", "unknown@server.test"]).unwrap();
            let outcome = client
                .send(&env, &body[..])
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(outcome.rejected().count(), 1, "{name}");
        }
        client.quit().await.unwrap();
    });
    let got = server.wait_for_messages(9, WAIT);
    for ((name, body), msg) in tricky_bodies().iter().zip(&got) {
        assert_eq!(msg.content, normalised(body), "{name}");
    }
}

#[test]
fn async_client_starttls_and_auth() {
    let ca = TestCa::new();
    let server = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth("alice", "s3cret")
        .start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = Config::relay("localhost")
            .port(server.port())
            .tls(Tls::StartTls)
            .ca_file(&ca.ca_path)
            .credentials("alice", "s3cret");
        let mut client = AsyncClient::connect(config).await.unwrap();
        assert!(client.tls_info().is_some());
        assert!(client.is_authenticated());
        let env = Envelope::new("alice@client.test", ["b@server.test"]).unwrap();
        client
            .send_bytes(&env, b"Subject: async\r\n\r\nhi\r\n")
            .await
            .unwrap();
        client.quit().await.unwrap();
        let err = AsyncClient::connect(
            Config::relay("localhost")
                .port(server.port())
                .tls(Tls::StartTls),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{err}");
    });
    assert_eq!(
        server.wait_for_messages(1, WAIT)[0].content,
        b"Subject: async\r\n\r\nhi\r\n"
    );
}

#[test]
fn localhost_tries_every_address() {
    // "localhost" resolves to ::1 and 127.0.0.1; the server listens on 127.0.0.1 only.
    let server = Aiosmtpd::start();
    let config = Config::relay("localhost")
        .port(server.port())
        .tls(Tls::None);
    let client = Client::connect(config.clone()).unwrap();
    assert!(client.peer_addr().unwrap().ip().is_loopback());
    client.quit().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = AsyncClient::connect(config).await.unwrap();
        client.quit().await.unwrap();
    });
}

#[test]
fn a_relay_given_as_host_port_or_as_a_url() {
    let server = Aiosmtpd::start();
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    // `host:port` in one string, as people write it.
    let mut c = Client::connect(
        Config::relay(server.addr())
            .tls(Tls::None)
            .hello_name("client.test"),
    )
    .unwrap();
    c.send_bytes(&env, b"Subject: 1\r\n\r\nx\r\n").unwrap();
    c.quit().unwrap();
    // A URL: smtp:// is STARTTLS when offered (this server offers none).
    let url = format!("smtp://{}?helo=client.test", server.addr());
    let mut c = Client::connect(url.parse::<Config>().unwrap()).unwrap();
    assert!(c.tls_info().is_none());
    c.send_bytes(&env, b"Subject: 2\r\n\r\nx\r\n").unwrap();
    c.quit().unwrap();
    assert_eq!(server.wait_for_messages(2, WAIT).len(), 2);
    // A port that is not one is this side's mistake, not a DNS failure to retry.
    let err = Client::connect(Config::relay("localhost:smtp").tls(Tls::None)).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn send_blocking_works_inside_a_runtime_too() {
    let server = Aiosmtpd::start();
    let mailer = postline::Mailer::relay(plain(&server));
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    // From synchronous code that happens to run on a runtime's thread (a web handler
    // calling a sync helper): once this panicked ("Cannot start a runtime from within a
    // runtime").
    let deliveries = mailer
        .send_blocking(&env, b"Subject: inside\r\n\r\nx\r\n")
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, postline::DeliveryStatus::Delivered);
    assert_eq!(server.wait_for_messages(1, WAIT).len(), 1);
}

/// `Client::check`: MAIL and each RCPT, never DATA; every recipient's reply; the connection
/// stays usable (the session's RSET), and nothing is stored until a real send.
#[test]
fn check_reports_recipients_without_sending() {
    let server = Aiosmtpd::builder().reject_rcpt("refuse").start();
    let mut client = Client::connect(plain(&server)).unwrap();
    let env = Envelope::new("a@example.com", ["ok@example.com", "refuse-me@example.com"]).unwrap();
    let outcome = client.check(&env).unwrap();
    assert_eq!(outcome.reply.code, 250, "the MAIL reply");
    assert_eq!(outcome.recipients.len(), 2);
    assert!(outcome.recipients[0].accepted);
    assert_eq!(outcome.recipients[0].reply.as_ref().unwrap().code, 250);
    assert!(!outcome.recipients[1].accepted);
    assert_eq!(outcome.recipients[1].reply.as_ref().unwrap().code, 550);
    // Every recipient refused is an answer too, with the MAIL reply kept.
    let none = Envelope::new("a@example.com", ["refuse-1@example.com"]).unwrap();
    let outcome = client.check(&none).unwrap();
    assert_eq!(outcome.reply.code, 250);
    assert_eq!(outcome.accepted().count(), 0);
    assert_eq!(outcome.recipients[0].reply.as_ref().unwrap().code, 550);
    // The sender alone.
    let sender = Envelope::sender_only("a@example.com").unwrap();
    let outcome = client.check(&sender).unwrap();
    assert_eq!(outcome.reply.code, 250);
    assert!(outcome.recipients.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.messages().is_empty(), "a check stored a message");
    // The session is still in step: a real message goes through after the checks.
    let env = Envelope::new("a@example.com", ["ok@example.com"]).unwrap();
    client
        .send_bytes(&env, b"Subject: x\r\n\r\nhi\r\n")
        .unwrap();
    client.quit().unwrap();
    assert_eq!(server.wait_for_messages(1, WAIT).len(), 1);
}

#[tokio::test]
async fn async_check_reports_recipients_without_sending() {
    let server = Aiosmtpd::builder().reject_rcpt("refuse").start();
    let mut client = AsyncClient::connect(plain(&server)).await.unwrap();
    let env = Envelope::new("a@example.com", ["ok@example.com", "refuse-me@example.com"]).unwrap();
    let outcome = client.check(&env).await.unwrap();
    assert_eq!(outcome.reply.code, 250);
    let codes: Vec<u16> = outcome
        .recipients
        .iter()
        .map(|r| r.reply.as_ref().unwrap().code)
        .collect();
    assert_eq!(codes, [250, 550]);
    client.quit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.messages().is_empty(), "a check stored a message");
}

/// `Config::stop_after`: the connection is set up only that far and sends no message.
#[test]
fn stop_after_helo_sends_nothing_more() {
    let server = Aiosmtpd::start();
    let mut client = Client::connect(plain(&server).stop_after(postline::StopAfter::Helo)).unwrap();
    assert_eq!(client.greeting().unwrap().code, 220);
    assert_eq!(client.ehlo_reply().unwrap().code, 250);
    assert!(client.auth_reply().is_none());
    let env = Envelope::new("a@example.com", ["b@example.com"]).unwrap();
    assert!(matches!(
        client.send_bytes(&env, b"x\r\n"),
        Err(Error::NotReady)
    ));
    assert!(matches!(client.check(&env), Err(Error::NotReady)));
    client.quit().unwrap();
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn async_stop_after_banner_says_no_ehlo() {
    let server = Aiosmtpd::start();
    let client = AsyncClient::connect(plain(&server).stop_after(postline::StopAfter::Banner))
        .await
        .unwrap();
    assert_eq!(client.greeting().unwrap().code, 220);
    assert!(client.ehlo_reply().is_none());
    client.quit().await.unwrap();
}
