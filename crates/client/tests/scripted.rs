//! What real servers rarely do, played by a scripted peer over real TCP: 421 mid-session,
//! drops mid-DATA and after the final dot, silence, garbage, missing STARTTLS, AUTH quirks.

use std::time::{Duration, Instant};

use postline::{AsyncClient, Client, Config, Envelope, Error, Phase, Timeouts, Tls};
use postline_testkit::{greeting_and_ehlo, ScriptedServer, Step};

fn config(server: &ScriptedServer) -> Config {
    Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .hello_name("client.test")
        .timeouts(Timeouts::default().capped(Duration::from_secs(2)))
}

fn envelope() -> Envelope {
    Envelope::new("a@client.test", ["b@server.test"]).unwrap()
}

fn script(mut steps: Vec<Step>, ehlo: &[&str]) -> ScriptedServer {
    let mut all = greeting_and_ehlo(ehlo);
    all.append(&mut steps);
    ScriptedServer::start(all)
}

#[test]
fn service_closing_421_after_mail() {
    let server = script(
        vec![
            Step::expect("MAIL FROM:<a@client.test>"),
            Step::reply("421 4.3.2 Shutting down"),
            Step::Close,
        ],
        &[],
    );
    let mut client = Client::connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), b"x\r\n").unwrap_err();
    assert!(
        matches!(err, Error::ServiceClosing(ref r) if r.code == 421),
        "{err}"
    );
    assert!(err.is_retryable());
    server.finish().assert_ok();
}

#[test]
fn connection_dropped_mid_data() {
    let server = script(
        vec![
            Step::expect("MAIL"),
            Step::reply("250 ok"),
            Step::expect("RCPT"),
            Step::reply("250 ok"),
            Step::expect("DATA"),
            Step::reply("354 go"),
            Step::ExpectBytes(1000),
            Step::Close,
        ],
        &[],
    );
    let mut client = Client::connect(config(&server)).unwrap();
    let big = vec![b'a'; 8 << 20];
    let err = client.send_bytes(&envelope(), &big).unwrap_err();
    match &err {
        Error::ConnectionLost { .. } | Error::Io(_) => {}
        other => panic!("expected a lost connection, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("may or may not"), "{err}");
    server.finish();
}

#[test]
fn connection_dropped_after_final_dot() {
    let server = script(
        vec![
            Step::expect("MAIL"),
            Step::reply("250 ok"),
            Step::expect("RCPT"),
            Step::reply("250 ok"),
            Step::expect("DATA"),
            Step::reply("354 go"),
            Step::ExpectData,
            Step::Close,
        ],
        &[],
    );
    let mut client = Client::connect(config(&server)).unwrap();
    let err = client
        .send_bytes(&envelope(), b"Subject: x\r\n\r\nbody\r\n")
        .unwrap_err();
    match &err {
        Error::DeliveryUnknown { cause, .. }
            if matches!(
                **cause,
                Error::ConnectionLost {
                    phase: Phase::DataEnd
                }
            ) => {}
        other => panic!("expected delivery unknown, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("may or may not have been delivered"),
        "{err}"
    );
    server.finish().assert_ok();
}

#[test]
fn silent_server_times_out_naming_the_phase() {
    for (steps, phase) in [
        (vec![Step::expect("MAIL"), Step::Hang], Phase::Mail),
        (
            vec![
                Step::expect("MAIL"),
                Step::reply("250 ok"),
                Step::expect("RCPT"),
                Step::Hang,
            ],
            Phase::Rcpt,
        ),
    ] {
        let server = script(steps, &[]);
        let mut client = Client::connect(config(&server)).unwrap();
        let started = Instant::now();
        let err = client.send_bytes(&envelope(), b"x\r\n").unwrap_err();
        assert!(
            matches!(err, Error::Timeout { phase: p, .. } if p == phase),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains(phase.name()), "{err}");
        drop(client);
        server.finish();
    }
}

#[test]
fn no_greeting_times_out() {
    let server = ScriptedServer::start(vec![Step::Hang]);
    let started = Instant::now();
    let err = Client::connect(config(&server)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: Phase::Greeting,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    server.finish();
}

#[test]
fn slow_drip_reply_still_times_out() {
    // One byte every 300 ms: the reply never completes within the 2 s timeout.
    let server = ScriptedServer::start(vec![Step::SendSlowly(
        b"220 slow.example ESMTP a very very long greeting\r\n".to_vec(),
        Duration::from_millis(300),
    )]);
    let started = Instant::now();
    let err = Client::connect(config(&server)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: Phase::Greeting,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(server);
}

#[test]
fn garbage_is_a_protocol_error() {
    let server = ScriptedServer::start(vec![Step::send(b"\x00\xffHELLO THERE\r\n")]);
    let err = Client::connect(config(&server)).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    server.finish();
}

#[test]
fn wrong_reply_is_a_protocol_error() {
    let server = script(
        vec![Step::expect("MAIL"), Step::reply("354 what?")],
        &["PIPELINING"],
    );
    let mut client = Client::connect(config(&server)).unwrap();
    let err = client.send_bytes(&envelope(), b"x\r\n").unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    assert!(err.to_string().contains("354"), "{err}");
    server.finish();
}

#[test]
fn refused_greeting() {
    let server = ScriptedServer::start(vec![
        Step::reply("554 5.7.1 No SMTP service for you"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
    ]);
    let err = Client::connect(config(&server)).unwrap_err();
    assert!(
        matches!(err, Error::Rejected(ref r) if r.code == 554),
        "{err}"
    );
    assert!(!err.is_retryable());
    server.finish();
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let server = ScriptedServer::start(vec![
        Step::reply("220 old.example"),
        Step::expect("EHLO client.test"),
        Step::reply("502 5.5.2 Error: command not recognized"),
        Step::expect("HELO client.test"),
        Step::reply("250 old.example"),
        Step::expect("MAIL FROM:<a@client.test>"),
        Step::reply("250 ok"),
        Step::expect("RCPT TO:<b@server.test>"),
        Step::reply("250 ok"),
        Step::expect("DATA"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 queued"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
    ]);
    let mut client = Client::connect(config(&server)).unwrap();
    client.send_bytes(&envelope(), b"x\r\n").unwrap();
    client.quit().unwrap();
    let report = server.finish();
    report.assert_ok();
    // No BODY= or SIZE= to a server that did not announce them.
    assert!(report
        .received_str()
        .contains("MAIL FROM:<a@client.test>\r\n"));
}

#[test]
fn starttls_stripped_fails_and_sends_nothing_more() {
    let server = script(
        vec![Step::expect("QUIT"), Step::reply("221 bye")],
        &["AUTH PLAIN"],
    );
    let config = config(&server)
        .tls(Tls::StartTls)
        .credentials("alice", "s3cret");
    let err = Client::connect(config).unwrap_err();
    assert!(matches!(err, Error::StartTlsUnavailable(None)), "{err}");
    let report = server.finish();
    report.assert_ok();
    assert!(
        !report.received_str().contains("AUTH"),
        "{}",
        report.received_str()
    );
}

#[test]
fn credentials_never_leave_over_clear_text() {
    let server = script(
        vec![Step::expect("QUIT"), Step::reply("221 bye")],
        &["AUTH PLAIN LOGIN"],
    );
    let err = Client::connect(config(&server).credentials("alice", "s3cret")).unwrap_err();
    assert!(matches!(err, Error::PlaintextAuthRefused), "{err}");
    let report = server.finish();
    report.assert_ok();
    let got = report.received_str();
    assert!(!got.contains("AUTH") && !got.contains("s3cret"), "{got}");
}

#[test]
fn no_auth_advertised_tries_plain_and_reports_refusal() {
    let server = script(
        vec![
            Step::expect("AUTH PLAIN "),
            Step::reply("502 5.5.1 Command not implemented"),
        ],
        &["PIPELINING"],
    );
    let config = config(&server)
        .credentials("alice", "s3cret")
        .allow_plaintext_auth(true);
    let err = Client::connect(config).unwrap_err();
    match &err {
        Error::AuthRejected {
            reply,
            advertised: false,
        } => assert_eq!(reply.code, 502),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("did not advertise AUTH"), "{err}");
    server.finish();
}

#[test]
fn drop_says_quit() {
    let server = script(vec![Step::expect("QUIT"), Step::reply("221 bye")], &[]);
    let client = Client::connect(config(&server)).unwrap();
    drop(client);
    server.finish().assert_ok();
}

#[test]
fn async_timeout_and_drop_quit() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = script(vec![Step::expect("MAIL"), Step::Hang], &[]);
    rt.block_on(async {
        let mut client = AsyncClient::connect(config(&server)).await.unwrap();
        let err = client.send_bytes(&envelope(), b"x\r\n").await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout {
                    phase: Phase::Mail,
                    ..
                }
            ),
            "{err}"
        );
    });
    server.finish();
    let server = script(vec![Step::expect("QUIT"), Step::reply("221 bye")], &[]);
    rt.block_on(async {
        let client = AsyncClient::connect(config(&server)).await.unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    server.finish().assert_ok();
}
