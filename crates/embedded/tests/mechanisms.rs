//! The AUTH mechanisms a device build carries: PLAIN and LOGIN always, CRAM-MD5 with the
//! `cram-md5` feature, OAUTHBEARER and XOAUTH2 with `oauth`. Scripted peers over loopback TCP
//! check the exact exchange (RFC 2195's and RFC 7628's examples); `scripts/test` runs this file
//! without features and with `--features cram-md5,oauth`, so both sides are proven.

mod common;
use common::{run, TokioClock};

use embedded_io_adapters::tokio_1::FromTokio;
use postline_embedded::{Client, Config, Error};
use postline_testkit::{greeting_and_ehlo, ScriptedServer, Step};
use tokio::net::TcpStream;

/// Connects with `config` to a scripted server and says QUIT; the result of `connect`.
fn connect(server: &ScriptedServer, config: Config<'_>) -> Result<(), Error<std::io::Error>> {
    let port = server.port();
    run(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let clock = TokioClock(tokio::time::Instant::now());
        let mut client =
            Client::new(FromTokio::new(stream), clock, config, &mut out, &mut input).unwrap();
        let result = client.connect().await;
        client.quit().await.unwrap();
        result
    })
}

fn quit() -> Vec<Step> {
    vec![Step::expect("QUIT"), Step::reply("221 bye")]
}

/// RFC 2195's example exchange.
const CRAM_CHALLENGE: &str = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";
const CRAM_RESPONSE: &str = "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw";

#[test]
#[cfg(feature = "cram-md5")]
fn cram_md5_answers_the_rfc_2195_challenge() {
    let mut script = greeting_and_ehlo(&["AUTH CRAM-MD5"]);
    script.extend([
        Step::expect("AUTH CRAM-MD5"),
        Step::reply(&format!("334 {CRAM_CHALLENGE}")),
        Step::expect(CRAM_RESPONSE),
        Step::reply("235 2.7.0 Authentication successful"),
    ]);
    script.extend(quit());
    let server = ScriptedServer::start(script);
    let config = Config::new("device.example")
        .credentials("tim", "tanstaaftanstaaf")
        .allow_plaintext_auth(true);
    connect(&server, config).unwrap();
    server.finish().assert_ok();
}

/// Without the feature the mechanism is never chosen: a server offering only CRAM-MD5
/// gets no AUTH at all, and the caller learns that no mechanism fits.
#[test]
#[cfg(not(feature = "cram-md5"))]
fn without_the_feature_cram_md5_is_not_used() {
    let mut script = greeting_and_ehlo(&["AUTH CRAM-MD5"]);
    script.extend(quit());
    let server = ScriptedServer::start(script);
    let config = Config::new("device.example")
        .credentials("tim", "tanstaaftanstaaf")
        .allow_plaintext_auth(true);
    assert!(matches!(
        connect(&server, config),
        Err(Error::AuthUnavailable)
    ));
    let report = server.finish();
    report.assert_ok();
    assert!(
        !report.received_str().contains("AUTH"),
        "{}",
        report.received_str()
    );
}

/// PLAIN is preferred to CRAM-MD5 only over TLS; in clear text CRAM-MD5 goes first (a
/// listener learns no password from it), and PLAIN is what a build without it uses.
#[test]
fn plain_when_offered_beside_cram_md5() {
    let mut script = greeting_and_ehlo(&["AUTH PLAIN CRAM-MD5"]);
    if cfg!(feature = "cram-md5") {
        script.extend([
            Step::expect("AUTH CRAM-MD5"),
            Step::reply(&format!("334 {CRAM_CHALLENGE}")),
            Step::expect(CRAM_RESPONSE),
        ]);
    } else {
        // base64("\0tim\0tanstaaftanstaaf")
        script.push(Step::expect("AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm"));
    }
    script.push(Step::reply("235 2.7.0 Authentication successful"));
    script.extend(quit());
    let server = ScriptedServer::start(script);
    let config = Config::new("device.example")
        .credentials("tim", "tanstaaftanstaaf")
        .allow_plaintext_auth(true);
    connect(&server, config).unwrap();
    server.finish().assert_ok();
}

#[cfg(feature = "oauth")]
mod oauth {
    use super::*;

    /// OAUTHBEARER's initial response (RFC 7628 3.1): `n,a=USER,` then `auth=Bearer TOKEN`,
    /// fields split by 0x01.
    #[test]
    fn oauthbearer_is_preferred_and_sent_whole() {
        let mut script = greeting_and_ehlo(&["AUTH PLAIN XOAUTH2 OAUTHBEARER"]);
        // base64("n,a=user@example.com,\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01")
        script.extend([
            Step::expect(
                "AUTH OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB",
            ),
            Step::reply("235 2.7.0 Authentication successful"),
        ]);
        script.extend(quit());
        let server = ScriptedServer::start(script);
        let config = Config::new("device.example")
            .oauth_token(
                "user@example.com",
                "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
            )
            .allow_plaintext_auth(true);
        connect(&server, config).unwrap();
        server.finish().assert_ok();
    }

    /// A token is never sent through PLAIN or LOGIN: a server offering only those gets no
    /// AUTH.
    #[test]
    fn a_token_never_goes_as_a_password() {
        let mut script = greeting_and_ehlo(&["AUTH PLAIN LOGIN"]);
        script.extend(quit());
        let server = ScriptedServer::start(script);
        let config = Config::new("device.example")
            .oauth_token("user@example.com", "tok")
            .allow_plaintext_auth(true);
        assert!(matches!(
            connect(&server, config),
            Err(Error::AuthUnavailable)
        ));
        let report = server.finish();
        report.assert_ok();
        assert!(!report.received_str().contains("AUTH"));
    }
}

/// A server without 8BITMIME takes an ASCII message: no `BODY=` is asked for.
#[test]
fn an_ascii_message_goes_to_a_server_without_8bitmime() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:<device@example.com>"),
        Step::expect("RCPT TO:<ops@example.com>"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectData,
        Step::reply("250 queued"),
    ]);
    script.extend(quit());
    let server = ScriptedServer::start(script);
    let port = server.port();
    run(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut client = Client::new(
            FromTokio::new(stream),
            TokioClock::now(),
            Config::new("device.example"),
            &mut out,
            &mut input,
        )
        .unwrap();
        client.connect().await.unwrap();
        let mut codes = [0u16; 1];
        let status = client
            .send(
                postline_embedded::Address::new("device@example.com").unwrap(),
                &[postline_embedded::Address::new("ops@example.com").unwrap()],
                b"Subject: plain\r\n\r\nascii only\r\n",
                &mut codes,
            )
            .await
            .unwrap();
        assert!(status.delivered, "{status:?}");
        client.quit().await.unwrap();
    });
    let report = server.finish();
    report.assert_ok();
    assert!(
        !report.received_str().contains("BODY="),
        "{}",
        report.received_str()
    );
}

/// A sender refused under pipelining (550 to MAIL, then 503 and 554 to the RCPT and DATA
/// sent with it, as Postfix answers): the refusal is a status, and the next message on the
/// same connection goes through.
#[test]
fn a_refused_sender_then_the_next_message() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:<bad@example.com>"),
        Step::expect("RCPT TO:"),
        Step::expect("DATA"),
        Step::send("550 5.7.1 no\r\n503 5.5.1 need MAIL\r\n554 5.5.1 no valid recipients\r\n"),
        Step::expect("MAIL FROM:<device@example.com>"),
        Step::expect("RCPT TO:"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectData,
        Step::reply("250 queued"),
    ]);
    script.extend(quit());
    let server = ScriptedServer::start(script);
    let port = server.port();
    run(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let mut client = Client::new(
            FromTokio::new(stream),
            TokioClock::now(),
            Config::new("device.example").timeout_ms(5_000),
            &mut out,
            &mut input,
        )
        .unwrap();
        client.connect().await.unwrap();
        let to = [postline_embedded::Address::new("ops@example.com").unwrap()];
        let mut codes = [0u16; 1];
        let refused = client
            .send(
                postline_embedded::Address::new("bad@example.com").unwrap(),
                &to,
                b"Subject: one\r\n\r\nx\r\n",
                &mut codes,
            )
            .await
            .unwrap();
        assert!(!refused.delivered, "{refused:?}");
        let status = client
            .send(
                postline_embedded::Address::new("device@example.com").unwrap(),
                &to,
                b"Subject: two\r\n\r\ny\r\n",
                &mut codes,
            )
            .await
            .unwrap();
        assert!(status.delivered, "{status:?}");
        client.quit().await.unwrap();
    });
    server.finish().assert_ok();
}

/// A server whose EHLO reply offers no AUTH gets no credentials (none sent blind).
#[test]
fn no_credentials_to_a_server_that_does_not_offer_auth() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend(quit());
    let server = ScriptedServer::start(script);
    let config = Config::new("device.example")
        .credentials("tim", "tanstaaftanstaaf")
        .allow_plaintext_auth(true);
    assert!(matches!(
        connect(&server, config),
        Err(Error::AuthUnavailable)
    ));
    let report = server.finish();
    report.assert_ok();
    assert!(!report.received_str().contains("AUTH"));
}

/// A server that answers every AUTH line with another challenge is given up after
/// `MAX_ROUNDS` answers, never kept talking (each reply would otherwise restart the wait).
#[test]
fn a_server_that_never_stops_challenging_is_given_up() {
    use postline_embedded::proto::sasl::MAX_ROUNDS;
    let mut script = greeting_and_ehlo(&["AUTH LOGIN"]);
    script.extend([
        Step::expect("AUTH LOGIN"),
        Step::reply("334 VXNlcm5hbWU6"),
        Step::expect("dGlt"), // base64("tim")
        Step::reply("334 UGFzc3dvcmQ6"),
        Step::expect("c2VjcmV0"), // base64("secret")
        Step::reply("334 UGFzc3dvcmQ6"),
    ]);
    // Past its last step LOGIN cancels with "*"; this server challenges again each time.
    for _ in 3..=MAX_ROUNDS {
        script.extend([Step::expect("*"), Step::reply("334 UGFzc3dvcmQ6")]);
    }
    let server = ScriptedServer::start(script);
    let port = server.port();
    let result = run(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let clock = TokioClock(tokio::time::Instant::now());
        let config = Config::new("device.example")
            .credentials("tim", "secret")
            .allow_plaintext_auth(true)
            .timeout_ms(10_000);
        let mut client =
            Client::new(FromTokio::new(stream), clock, config, &mut out, &mut input).unwrap();
        client.connect().await
    });
    assert!(matches!(result, Err(Error::AuthRounds)), "{result:?}");
    let report = server.finish();
    report.assert_ok();
    // Every challenge up to the cap was answered, the one past it was not.
    let answers = report.received_str().matches("\r\n").count();
    assert_eq!(answers as u32, 2 + MAX_ROUNDS, "{}", report.received_str());
}
