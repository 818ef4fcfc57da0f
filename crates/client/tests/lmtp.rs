//! LMTP (RFC 2033) against Postfix's smtp-sink in LMTP mode (`-L`): LHLO, one reply per
//! accepted recipient after the data, each deciding that recipient's `Delivery`, and what a
//! refusal or a lost connection after the data means per recipient. Dovecot's LMTP, with a
//! real mailbox per recipient, is in `tests/lmtp_dovecot.rs`.

use std::sync::{Arc, Mutex};

use postline::{
    AsyncClient, Client, Config, Delivery, DeliveryStatus, Direction, Envelope, Error, Protocol,
    Tls,
};
use postline_testkit::SmtpSink;

fn config(sink: &SmtpSink, lines: &Arc<Mutex<Vec<String>>>) -> Config {
    let lines = lines.clone();
    Config::relay("127.0.0.1")
        .port(sink.port())
        .tls(Tls::None)
        .hello_name("client.test")
        .protocol(Protocol::Lmtp)
        .transcript(move |dir, line| {
            let side = if dir == Direction::Client { "C" } else { "S" };
            lines.lock().unwrap().push(format!("{side}: {line}"));
        })
}

fn statuses(d: &[Delivery]) -> Vec<DeliveryStatus> {
    d.iter().map(|d| d.status).collect()
}

const BODY: &[u8] = b"Subject: lmtp\r\n\r\nhello\r\n";

#[test]
fn lhlo_and_a_reply_per_recipient() {
    let sink = SmtpSink::start(&["-L"]);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut client = Client::connect(config(&sink, &lines)).unwrap();
    let env = Envelope::new(
        "a@client.test",
        ["b@sink.test", "c@sink.test", "d@sink.test"],
    )
    .unwrap();
    let outcome = client.send_bytes(&env, BODY).unwrap();
    client.quit().unwrap();
    assert!(outcome.all_accepted());
    for r in &outcome.recipients {
        assert_eq!(r.data_reply.as_ref().map(|r| r.code), Some(250), "{r:?}");
    }
    let d = Delivery::from_result(&Ok(outcome), &env);
    assert_eq!(statuses(&d), [DeliveryStatus::Delivered; 3]);
    let t = lines.lock().unwrap().join("\n");
    assert!(t.contains("C: LHLO client.test"), "{t}");
    assert!(!t.contains("EHLO"), "{t}");
    // Three replies to the one end of data.
    assert_eq!(t.matches("S: 250 2.2.0 Ok").count(), 3, "{t}");
}

#[test]
fn hundred_messages_on_one_connection() {
    let sink = SmtpSink::start(&["-L"]);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut client = Client::connect(config(&sink, &lines)).unwrap();
    assert!(client.capabilities().has(postline::Extension::Pipelining));
    let env = Envelope::new("a@client.test", ["b@sink.test", "c@sink.test"]).unwrap();
    let messages: Vec<(Envelope, Vec<u8>)> = (0..100)
        .map(|i| {
            (
                env.clone(),
                format!("Subject: {i}\r\n\r\nx\r\n").into_bytes(),
            )
        })
        .collect();
    let results = client
        .send_many(messages.iter().map(|(e, b)| (e, &b[..])))
        .unwrap();
    client.quit().unwrap();
    assert_eq!(results.len(), 100);
    for r in &results {
        let o = r.as_ref().unwrap();
        assert!(o
            .recipients
            .iter()
            .all(|r| r.delivered() && r.data_reply.is_some()));
    }
    let t = lines.lock().unwrap().join("\n");
    assert_eq!(t.matches("S: 250 2.2.0 Ok").count(), 200);
}

#[test]
fn refusals_after_the_data_are_per_recipient() {
    // -f .: every recipient's reply after the data is 5xx; -r .: 4xx.
    for (flag, want, code) in [
        ("-f", DeliveryStatus::Failed, 500),
        ("-r", DeliveryStatus::Deferred, 450),
    ] {
        let sink = SmtpSink::start(&["-L", flag, "."]);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut client = Client::connect(config(&sink, &lines)).unwrap();
        let env = Envelope::new("a@client.test", ["b@sink.test", "c@sink.test"]).unwrap();
        let result = client.send_bytes(&env, BODY);
        match &result {
            Err(Error::MessageRejected { recipients, .. }) => {
                for r in recipients {
                    assert!(r.accepted, "{r:?}");
                    assert_eq!(r.data_reply.as_ref().map(|r| r.code), Some(code), "{r:?}");
                }
            }
            other => panic!("{flag}: {other:?}"),
        }
        let d = Delivery::from_result(&result, &env);
        assert_eq!(statuses(&d), [want, want], "{flag}: {d:?}");
        assert!(d[0].detail().contains("after the data"), "{d:?}");
        // The session is still in step: the server closed the transaction.
        client.noop().unwrap();
        client.quit().unwrap();
    }
}

#[test]
fn a_close_after_the_data_leaves_the_recipients_in_doubt() {
    let sink = SmtpSink::start(&["-L", "-q", "."]);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut client = Client::connect(config(&sink, &lines)).unwrap();
    let env = Envelope::new("a@client.test", ["b@sink.test", "c@sink.test"]).unwrap();
    let result = client.send_bytes(&env, BODY);
    assert!(
        matches!(result, Err(Error::DeliveryUnknown { .. })),
        "{result:?}"
    );
    let d = Delivery::from_result(&result, &env);
    assert_eq!(statuses(&d), [DeliveryStatus::InDoubt; 2]);
}

#[test]
fn an_smtp_server_refuses_lhlo_and_gets_no_helo() {
    let sink = SmtpSink::start(&[]);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let err = Client::connect(config(&sink, &lines)).unwrap_err();
    assert!(
        matches!(err, Error::Rejected(ref r) if r.code / 100 == 5),
        "{err:?}"
    );
    let t = lines.lock().unwrap().join("\n");
    assert!(t.contains("C: LHLO") && !t.contains("HELO client"), "{t}");
}

#[test]
fn the_async_client_speaks_lmtp_too() {
    let sink = SmtpSink::start(&["-L"]);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = AsyncClient::connect(config(&sink, &lines)).await.unwrap();
        let env = Envelope::new("a@client.test", ["b@sink.test", "c@sink.test"]).unwrap();
        let o = client.send_bytes(&env, BODY).await.unwrap();
        assert!(o
            .recipients
            .iter()
            .all(|r| r.data_reply.as_ref().map(|r| r.code) == Some(250)));
        client.quit().await.unwrap();
    });
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l == "C: LHLO client.test"));
}

/// A store that answers the last recipient and then sends one reply too many, in the same
/// write: the message's result (delivered) still comes out, before the stray reply ends the
/// connection; it is never reported as not sent (which would send it again).
#[test]
fn an_extra_reply_after_the_last_does_not_hide_the_delivery() {
    use postline_testkit::{lmtp_two_recipients, ScriptedServer, Step};
    let srv = ScriptedServer::start(lmtp_two_recipients(vec![
        Step::send("250 2.0.0 <b> Saved\r\n250 2.0.0 <c> Saved\r\n250 2.0.0 extra\r\n"),
        Step::Hang,
    ]));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let config = Config::relay(srv.addr())
        .tls(Tls::None)
        .hello_name("client.test")
        .protocol(Protocol::Lmtp)
        .transcript({
            let lines = lines.clone();
            move |_, l| lines.lock().unwrap().push(l.to_string())
        });
    let mut client = Client::connect(config).unwrap();
    let env = Envelope::new("a@client.test", ["b@x.test", "c@x.test"]).unwrap();
    let result = client.send_bytes(&env, BODY);
    let d = Delivery::from_result(&result, &env);
    assert_eq!(
        d.iter().map(|d| d.status).collect::<Vec<_>>(),
        [DeliveryStatus::Delivered; 2],
        "{result:?}"
    );
    // The stray reply ended the session.
    assert!(client.noop().is_err());
    drop(client);
    srv.finish();
}
