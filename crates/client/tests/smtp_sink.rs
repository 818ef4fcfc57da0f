//! The clients against Postfix's smtp-sink: many messages on one connection, with and without
//! PIPELINING, and refusals the sink is told to make.

use postline::{AsyncClient, Client, Config, Envelope, Error, FailedAt, Tls};
use postline_testkit::SmtpSink;

fn config(sink: &SmtpSink) -> Config {
    Config::relay("127.0.0.1")
        .port(sink.port())
        .tls(Tls::None)
        .hello_name("client.test")
}

fn hundred_messages(flags: &[&str], pipelined: bool) {
    let sink = SmtpSink::start(flags);
    let mut client = Client::connect(config(&sink)).unwrap();
    assert_eq!(
        client.capabilities().has(postline::Extension::Pipelining),
        pipelined
    );
    let body = format!("Subject: sink\r\n\r\n{}\r\n", "x".repeat(1000));
    let env = Envelope::new("a@client.test", ["b@sink.test", "c@sink.test"]).unwrap();
    for _ in 0..100 {
        let outcome = client.send_bytes(&env, body.as_bytes()).unwrap();
        assert!(outcome.all_accepted());
        assert_eq!(outcome.reply.code, 250);
    }
    client.quit().unwrap();
}

#[test]
fn hundred_messages_pipelined() {
    hundred_messages(&[], true);
}

#[test]
fn hundred_messages_without_pipelining() {
    hundred_messages(&["-p"], false);
}

#[test]
fn hundred_messages_async() {
    let sink = SmtpSink::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = AsyncClient::connect(config(&sink)).await.unwrap();
        let env = Envelope::new("a@client.test", ["b@sink.test"]).unwrap();
        for i in 0..100 {
            let body = format!("Subject: {i}\r\n\r\nbody\r\n");
            client.send_bytes(&env, body.as_bytes()).await.unwrap();
        }
        client.quit().await.unwrap();
    });
}

#[test]
fn sink_refusing_every_recipient() {
    // smtp-sink can only refuse RCPT as a whole; per-recipient refusal is proven against
    // aiosmtpd (tests/aiosmtpd.rs).
    for (flag, code, retryable) in [("-f", 500, false), ("-r", 450, true)] {
        let sink = SmtpSink::start(&[flag, "rcpt"]);
        let mut client = Client::connect(config(&sink)).unwrap();
        let env = Envelope::new("a@client.test", ["b@sink.test", "c@sink.test"]).unwrap();
        let err = client
            .send_bytes(&env, b"Subject: x\r\n\r\nx\r\n")
            .unwrap_err();
        match &err {
            Error::MessageRejected {
                at: FailedAt::NoValidRecipients,
                recipients,
                ..
            } => {
                assert!(recipients
                    .iter()
                    .all(|r| r.reply.as_ref().unwrap().code == code));
            }
            other => panic!("{flag}: {other:?}"),
        }
        assert_eq!(err.is_retryable(), retryable, "{flag}");
        // Still usable: NOOP answers.
        assert_eq!(client.noop().unwrap().code, 250);
    }
}

#[test]
fn sink_refusing_mail_and_data() {
    for (flags, at) in [
        (["-f", "mail"], FailedAt::Mail),
        (["-f", "data"], FailedAt::Data),
    ] {
        let sink = SmtpSink::start(&flags);
        let mut client = Client::connect(config(&sink)).unwrap();
        let env = Envelope::new("a@client.test", ["b@sink.test"]).unwrap();
        let err = client
            .send_bytes(&env, b"Subject: x\r\n\r\nx\r\n")
            .unwrap_err();
        match &err {
            Error::MessageRejected { at: got, .. } => assert_eq!(*got, at, "{flags:?}"),
            other => panic!("{flags:?}: {other:?}"),
        }
        assert_eq!(client.noop().unwrap().code, 250, "{flags:?}");
    }
}

#[test]
fn sink_closing_with_421() {
    let sink = SmtpSink::start(&["-Q", "rcpt"]);
    let mut client = Client::connect(config(&sink)).unwrap();
    let env = Envelope::new("a@client.test", ["b@sink.test"]).unwrap();
    let err = client
        .send_bytes(&env, b"Subject: x\r\n\r\nx\r\n")
        .unwrap_err();
    assert!(
        matches!(err, Error::ServiceClosing(ref r) if r.code == 421),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(matches!(client.noop(), Err(Error::Closed)));
}
