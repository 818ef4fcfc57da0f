//! postline-embedded over a real no_std TCP/IP stack: embassy-net (smoltcp) on the TAP,
//! aiosmtpd on the kernel side of it. AUTH PLAIN with a result for each recipient (one
//! refused), a 1 MiB body of dot lines compared byte for byte at the server, several messages
//! on one connection, a wrong password (535), and a server that never speaks timing out.

use std::time::Duration;

use postline_embedded::{Address, Client, Config, Error, Phase};
use postline_embedded_tap::{Clock, Rig};

mod common;
use common::dotted_body;

const USER: &str = "device";
const PASSWORD: &str = "s3cret-pw";

/// The rig's clock as the driver wants it.
struct TapClock;

impl postline_embedded::Clock for TapClock {
    fn now_ms(&self) -> u64 {
        Clock.now_ms()
    }
    async fn wait_until(&self, deadline_ms: u64) {
        Clock.wait_until(deadline_ms).await
    }
}

fn addr(a: &'static str) -> Address<&'static str> {
    Address::new(a).unwrap()
}

fn envelope(server: &postline_embedded_tap::Aiosmtpd, n: usize) -> serde_json::Value {
    serde_json::from_str(&server.envelope(n, Duration::from_secs(10)).unwrap()).unwrap()
}

#[test]
fn auth_plain_a_refused_recipient_and_a_megabyte_of_dot_lines() {
    let mut rig = Rig::new().expect("the namespace and its TAP");
    let auth = format!("{USER}:{PASSWORD}");
    let server = rig
        .aiosmtpd(&[
            "--auth",
            &auth,
            "--auth-plaintext",
            "--reject-rcpt",
            "nobody",
        ])
        .expect("aiosmtpd in the namespace");
    let port = server.port();
    let body = dotted_body();
    rig.run(async |net| {
        let (mut rx, mut tx) = ([0u8; 4096], [0u8; 4096]);
        let socket = net.connect(port, &mut rx, &mut tx).await.expect("connect");
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let config = Config::new("device.example")
            .credentials(USER, PASSWORD)
            .allow_plaintext_auth(true)
            .timeout_ms(10_000);
        let mut client = Client::new(socket, TapClock, config, &mut out, &mut input).unwrap();
        client.connect().await.unwrap();
        let to = [addr("ops@example.com"), addr("nobody@example.com")];
        let mut codes = [0u16; 2];
        let status = client
            .send(addr("device@example.com"), &to, &body, &mut codes)
            .await
            .unwrap();
        assert!(status.delivered, "{status:?}");
        assert_eq!(codes[0], 250);
        assert_eq!(codes[1], 550);
        // More messages on the same connection.
        for i in 0..5 {
            let small = format!("Subject: {i}\r\n\r\n.reading {i}\r\n");
            let status = client
                .send(
                    addr("device@example.com"),
                    &to[..1],
                    small.as_bytes(),
                    &mut codes,
                )
                .await
                .unwrap();
            assert!(status.delivered, "{i}: {status:?}");
        }
        client.quit().await.unwrap();
    });
    let got = server.message(1, Duration::from_secs(10)).unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the stored body differs from the one sent");
    let meta = envelope(&server, 1);
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    assert_eq!(meta["auth_user"], USER);
    assert_eq!(meta["peer"], "192.168.69.2");
    assert_eq!(
        server.message(6, Duration::from_secs(10)).unwrap(),
        b"Subject: 4\r\n\r\n.reading 4\r\n"
    );
    assert_eq!(server.count(), 6);
}

#[test]
fn a_wrong_password_is_535() {
    let mut rig = Rig::new().expect("the namespace and its TAP");
    let auth = format!("{USER}:{PASSWORD}");
    let server = rig
        .aiosmtpd(&["--auth", &auth, "--auth-plaintext"])
        .expect("aiosmtpd in the namespace");
    let port = server.port();
    rig.run(async |net| {
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let socket = net.connect(port, &mut rx, &mut tx).await.expect("connect");
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let config = Config::new("device.example")
            .credentials(USER, "wrong")
            .allow_plaintext_auth(true)
            .timeout_ms(10_000);
        let mut client = Client::new(socket, TapClock, config, &mut out, &mut input).unwrap();
        match client.connect().await {
            Err(Error::AuthFailed(code)) => assert_eq!(code.value(), 535),
            other => panic!("{other:?}"),
        }
        assert_eq!(client.last_reply().map(|r| r.code()), Some(535));
    });
    assert_eq!(server.count(), 0);
}

#[test]
fn a_silent_server_times_out() {
    let mut rig = Rig::new().expect("the namespace and its TAP");
    let silent = rig.silent_listener().expect("a listener in the namespace");
    let port = silent.port();
    rig.run(async |net| {
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let socket = net.connect(port, &mut rx, &mut tx).await.expect("connect");
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let config = Config::new("device.example").timeout_ms(300);
        let mut client = Client::new(socket, TapClock, config, &mut out, &mut input).unwrap();
        let started = Clock.now_ms();
        match client.connect().await {
            Err(Error::Timeout(Phase::Greeting)) => {}
            other => panic!("{other:?}"),
        }
        let waited = Clock.now_ms() - started;
        assert!((300..3_000).contains(&waited), "waited {waited} ms");
    });
}

/// Postfix's smtp-sink, which offers PIPELINING: 100 messages on one connection, MAIL, RCPT
/// and DATA of each sent together, every one counted and read back from its dump, each
/// exactly once, with both recipients and its dot line intact.
#[test]
fn a_hundred_pipelined_messages_to_smtp_sink() {
    let mut rig = Rig::new().expect("the namespace and its TAP");
    let sink = rig.smtp_sink().expect("smtp-sink in the namespace");
    let port = sink.port();
    rig.run(async |net| {
        let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
        let socket = net.connect(port, &mut rx, &mut tx).await.expect("connect");
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let config = Config::new("device.example").timeout_ms(10_000);
        let mut client = Client::new(socket, TapClock, config, &mut out, &mut input).unwrap();
        client.connect().await.unwrap();
        assert!(client
            .capabilities()
            .has(postline_embedded::proto::Extension::Pipelining));
        let to = [addr("a@sink.test"), addr("b@sink.test")];
        let mut codes = [0u16; 2];
        for i in 0..100 {
            let body = format!("Subject: {i}\r\n\r\nreading {i}\r\n.dot {i}\r\n");
            let status = client
                .send(addr("device@example.com"), &to, body.as_bytes(), &mut codes)
                .await
                .unwrap();
            assert!(status.delivered, "{i}: {status:?}");
            assert_eq!(codes, [250, 250], "{i}");
        }
        client.quit().await.unwrap();
    });
    let dumps = sink.messages(100, Duration::from_secs(10)).unwrap();
    assert_eq!(dumps.len(), 100, "smtp-sink took {} messages", dumps.len());
    let text: Vec<String> = dumps
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    // smtp-sink dumps the message un-stuffed, each line ending with LF, after a header per
    // envelope command.
    for i in 0..100 {
        let wanted = format!("\nSubject: {i}\n\nreading {i}\n.dot {i}\n");
        let found: Vec<&String> = text.iter().filter(|t| t.contains(&wanted)).collect();
        assert_eq!(
            found.len(),
            1,
            "message {i} arrived {} times; a dump:\n{}",
            found.len(),
            text[0]
        );
        assert!(
            found[0].contains("X-Rcpt-Args: <a@sink.test>\n"),
            "{}",
            found[0]
        );
        assert!(
            found[0].contains("X-Rcpt-Args: <b@sink.test>\n"),
            "{}",
            found[0]
        );
    }
}
