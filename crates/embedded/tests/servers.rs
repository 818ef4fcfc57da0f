//! The embedded driver against real servers on loopback, through tokio's TCP under the
//! `embedded-io-async` adapter (the same traits an embassy-net socket implements): aiosmtpd
//! (AUTH, a refused recipient, a 1 MiB body of dot-lines compared byte for byte, a wrong
//! password, composed mail) and Postfix's smtp-sink (100 pipelined messages on one
//! connection), and a silent server that must time out.

use std::time::Duration;

mod common;
use common::{run, TokioClock};

use embedded_io_adapters::tokio_1::FromTokio;
use postline_embedded::mail::{Mail, Priority};
use postline_embedded::{Address, Client, Config, Error, FailedAt, Phase};
use postline_testkit::{Aiosmtpd, SilentListener, SmtpSink};
use tokio::net::TcpStream;

const USER: &str = "device";
const PASSWORD: &str = "s3cret-pw";

async fn socket(port: u16) -> FromTokio<TcpStream> {
    FromTokio::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap())
}

fn addr(a: &'static str) -> Address<&'static str> {
    Address::new(a).unwrap()
}

#[test]
fn auth_a_refused_recipient_and_a_megabyte_of_dot_lines() {
    let srv = Aiosmtpd::builder()
        .auth(USER, PASSWORD)
        .auth_plaintext()
        .reject_rcpt("nobody")
        .start();
    // 1 MiB of lines, every other one starting with a dot; the last line without its end.
    let mut body = Vec::new();
    let mut i = 0;
    while body.len() < 1 << 20 {
        if i % 2 == 0 {
            body.extend_from_slice(format!(".line {i} .\r\n").as_bytes());
        } else {
            body.extend_from_slice(format!("line {i} ..\r\n").as_bytes());
        }
        i += 1;
    }
    body.extend_from_slice(b".");
    run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let config = Config::new("device.example")
            .credentials(USER, PASSWORD)
            .allow_plaintext_auth(true)
            .timeout_ms(10_000);
        let mut c = Client::new(
            socket(srv.port()).await,
            TokioClock(tokio::time::Instant::now()),
            config,
            &mut out,
            &mut input,
        )
        .unwrap();
        c.connect().await.unwrap();
        let to = [addr("ops@example.com"), addr("nobody@example.com")];
        let mut codes = [0u16; 2];
        let status = c
            .send(addr("device@example.com"), &to, &body, &mut codes)
            .await
            .unwrap();
        assert!(status.delivered, "{status:?}");
        assert_eq!(codes[0] / 100, 2);
        assert_eq!(codes[1], 550);
        c.quit().await.unwrap();
    });
    let got = srv.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got[0].rcpt_tos, ["ops@example.com"]);
    assert_eq!(got[0].auth_user.as_deref(), Some(USER));
    // Received as sent, after un-stuffing; the missing final line end was added.
    let mut want = body.clone();
    want.extend_from_slice(b"\r\n");
    assert_eq!(got[0].content.len(), want.len());
    assert!(got[0].content == want, "body differs");
}

#[test]
fn a_wrong_password_is_auth_failed() {
    let srv = Aiosmtpd::builder()
        .auth(USER, PASSWORD)
        .auth_plaintext()
        .start();
    run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let config = Config::new("device.example")
            .credentials(USER, "wrong")
            .allow_plaintext_auth(true)
            .timeout_ms(10_000);
        let mut c = Client::new(
            socket(srv.port()).await,
            TokioClock(tokio::time::Instant::now()),
            config,
            &mut out,
            &mut input,
        )
        .unwrap();
        match c.connect().await {
            Err(Error::AuthFailed(code)) => assert_eq!(code.value(), 535),
            other => panic!("{other:?}"),
        }
        // The refusal's text is the client's, once.
        let last = c.last_reply().expect("the 535 is kept");
        assert_eq!(last.code(), 535);
        assert!(
            last.text().windows(14).any(|w| w == b"Authentication"),
            "{last}"
        );
    });
    // Credentials never go in clear text unless allowed.
    run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let config = Config::new("device.example").credentials(USER, PASSWORD);
        let mut c = Client::new(
            socket(srv.port()).await,
            TokioClock(tokio::time::Instant::now()),
            config,
            &mut out,
            &mut input,
        )
        .unwrap();
        assert!(matches!(c.connect().await, Err(Error::AuthUnavailable)));
    });
    assert!(srv.messages().is_empty());
}

#[test]
fn a_composed_mail_has_every_header() {
    let srv = Aiosmtpd::builder().start();
    run(async {
        let (mut out, mut input) = ([0u8; 256], [0u8; 512]);
        let mut c = Client::new(
            socket(srv.port()).await,
            TokioClock(tokio::time::Instant::now()),
            Config::new("device.example").timeout_ms(10_000),
            &mut out,
            &mut input,
        )
        .unwrap();
        c.connect().await.unwrap();
        let to = [addr("a@example.com"), addr("b@example.com")];
        let mut codes = [0u16; 2];
        for subject in [
            "Boiler 3: pressure high",
            "Température élevée — chaudière n°3 ✓ (alarme)",
        ] {
            let mail = Mail {
                from: addr("boiler@plant.example"),
                to: &to,
                subject,
                priority: Priority::High,
                body: b"Pressure 3.1 bar\n.at the limit\n",
            };
            let status = c.send_mail(&mail, &mut codes).await.unwrap();
            assert!(status.delivered && status.code.map(|c| c.value()) == Some(250));
            assert_eq!(c.last_reply().map(|r| r.code()), Some(250));
        }
        c.quit().await.unwrap();
    });
    let got = srv.wait_for_messages(2, Duration::from_secs(10));
    let text = String::from_utf8(got[0].content.clone()).unwrap();
    for want in [
        "From: <boiler@plant.example>\r\n",
        "To: <a@example.com>,\r\n <b@example.com>\r\n",
        "Subject: Boiler 3: pressure high\r\n",
        "\r\nDate: ",
        "\r\nMessage-ID: <",
        "@plant.example>\r\n",
        "X-Priority: 1 (Highest)\r\nImportance: high\r\n",
        "MIME-Version: 1.0\r\n",
        "\r\n\r\nPressure 3.1 bar\r\n.at the limit\r\n",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    // RFC 2047: encoded words that decode to the subject, each line within limits.
    let text2 = String::from_utf8(got[1].content.clone()).unwrap();
    let subject: String = text2
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Subject: "))
        .take_while(|l| l.starts_with("Subject: ") || l.starts_with(' '))
        .map(|l| {
            let w = l.trim_start_matches("Subject: ").trim();
            assert!(
                w.starts_with("=?UTF-8?B?") && w.ends_with("?=") && w.len() <= 75,
                "{w}"
            );
            use base64::Engine as _;
            let inner = &w["=?UTF-8?B?".len()..w.len() - 2];
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(inner)
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(subject, "Température élevée — chaudière n°3 ✓ (alarme)");
    let ids: Vec<&str> = got
        .iter()
        .map(|m| {
            let t = std::str::from_utf8(&m.content).unwrap();
            let i = t.find("Message-ID: ").unwrap();
            &t[i..i + t[i..].find("\r\n").unwrap()]
        })
        .collect();
    assert_ne!(ids[0], ids[1], "Message-IDs are unique");
}

#[test]
fn hundred_pipelined_messages_on_one_connection() {
    let sink = SmtpSink::start(&[]);
    run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut c = Client::new(
            socket(sink.port()).await,
            TokioClock(tokio::time::Instant::now()),
            Config::new("device.example").timeout_ms(10_000),
            &mut out,
            &mut input,
        )
        .unwrap();
        c.connect().await.unwrap();
        assert!(c
            .capabilities()
            .has(postline_embedded::proto::Extension::Pipelining));
        let to = [addr("a@sink.test"), addr("b@sink.test")];
        let mut codes = [0u16; 2];
        for i in 0..100 {
            let body = format!("Subject: {i}\r\n\r\nreading {i}\r\n");
            let status = c
                .send(addr("device@example.com"), &to, body.as_bytes(), &mut codes)
                .await
                .unwrap();
            assert!(status.delivered, "{i}: {status:?}");
            assert_eq!(codes, [250, 250]);
        }
        c.quit().await.unwrap();
    });
}

#[test]
fn a_refused_sender_is_a_status_and_the_session_goes_on() {
    let sink = SmtpSink::start(&["-f", "MAIL"]);
    run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut c = Client::new(
            socket(sink.port()).await,
            TokioClock(tokio::time::Instant::now()),
            Config::new("device.example").timeout_ms(10_000),
            &mut out,
            &mut input,
        )
        .unwrap();
        c.connect().await.unwrap();
        let to = [addr("a@sink.test")];
        let mut codes = [0u16; 1];
        for _ in 0..2 {
            let status = c
                .send(addr("device@example.com"), &to, b"x\r\n", &mut codes)
                .await
                .unwrap();
            assert!(!status.delivered);
            assert_eq!(status.failed_at, Some(FailedAt::Mail));
            assert_eq!(status.code.unwrap().value() / 100, 5);
            let last = c.last_reply().expect("the refusal is kept");
            assert_eq!(last.code(), status.code.unwrap().value());
            assert!(!last.text().is_empty());
        }
        c.quit().await.unwrap();
    });
}

#[test]
fn a_silent_server_times_out() {
    let silent = SilentListener::start();
    run(async {
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut c = Client::new(
            FromTokio::new(TcpStream::connect(silent.addr()).await.unwrap()),
            TokioClock(tokio::time::Instant::now()),
            Config::new("device.example").timeout_ms(300),
            &mut out,
            &mut input,
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            c.connect().await,
            Err(Error::Timeout(Phase::Greeting))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

/// Small buffers work, only slower: a 128-byte output buffer carries a 64 KiB message in pieces;
/// an input buffer too small for the server's EHLO reply is a clear error, not a hang.
#[test]
fn small_buffers_carry_a_message_or_say_why_not() {
    let srv = Aiosmtpd::builder().start();
    let body: Vec<u8> = (0..2048)
        .flat_map(|i| format!(".{i:05} twenty-five bytes\r\n").into_bytes())
        .collect();
    run(async {
        let (mut out, mut input) = ([0u8; 128], [0u8; 512]);
        let mut c = Client::new(
            socket(srv.port()).await,
            TokioClock(tokio::time::Instant::now()),
            Config::new("device.example").timeout_ms(10_000),
            &mut out,
            &mut input,
        )
        .unwrap();
        c.connect().await.unwrap();
        let to = [addr("ops@example.com")];
        let mut codes = [0u16];
        let status = c
            .send(addr("device@example.com"), &to, &body, &mut codes)
            .await
            .unwrap();
        assert!(status.delivered);
        c.quit().await.unwrap();
    });
    assert_eq!(
        srv.wait_for_messages(1, Duration::from_secs(10))[0].content,
        body
    );
    run(async {
        let (mut out, mut input) = ([0u8; 128], [0u8; 32]);
        let mut c = Client::new(
            socket(srv.port()).await,
            TokioClock(tokio::time::Instant::now()),
            Config::new("device.example").timeout_ms(2_000),
            &mut out,
            &mut input,
        )
        .unwrap();
        assert!(matches!(c.connect().await, Err(Error::ReplyTooLong)));
    });
}

/// aiosmtpd refusing the message after its data with a 12-line 550 (about 1 KB, twice the
/// input buffer), and with two lines of 600 bytes (each longer than the buffer): the answer
/// is a refusal with its code and first line, never "in doubt", and the session stays in
/// step for QUIT.
#[test]
fn a_refusal_longer_than_the_input_buffer_is_a_refusal() {
    // Twelve lines of 90 bytes; two of 600 (each longer than the buffer by itself).
    for (lines, width) in [(12, 0), (2, 600)] {
        let srv = Aiosmtpd::builder()
            .refuse_data_lines(lines)
            .refuse_data_width(width)
            .start();
        run(async {
            let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
            let mut c = Client::new(
                socket(srv.port()).await,
                TokioClock(tokio::time::Instant::now()),
                Config::new("device.example").timeout_ms(10_000),
                &mut out,
                &mut input,
            )
            .unwrap();
            c.connect().await.unwrap();
            let mut codes = [0u16];
            let status = c
                .send(
                    addr("device@example.com"),
                    &[addr("ops@example.com")],
                    b"Subject: refused\r\n\r\nbody\r\n",
                    &mut codes,
                )
                .await
                .unwrap();
            assert!(!status.delivered);
            assert_eq!(status.failed_at, Some(FailedAt::Message));
            assert_eq!(status.code.map(|c| c.value()), Some(550));
            assert_eq!(codes, [250]);
            let last = c.last_reply().expect("the refusal is kept");
            assert!(last.text().starts_with(b"5.7.26 Line 1 of why"), "{last}");
            assert!(last.cut());
            c.quit().await.unwrap();
        });
        assert!(srv.messages().is_empty());
    }
}
