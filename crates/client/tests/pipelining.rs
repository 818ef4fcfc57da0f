//! `send_many`: deep pipelining (RFC 2920 3.1) over real servers and a scripted peer that
//! proves the next message's commands arrive before the previous message's final reply.

use std::time::Duration;

use postline::{AsyncClient, Client, Config, Envelope, Error, FailedAt, Timeouts, Tls};
use postline_testkit::{greeting_and_ehlo, Aiosmtpd, ScriptedServer, SmtpSink, Step};

fn config(port: u16) -> Config {
    Config::relay("127.0.0.1")
        .port(port)
        .tls(Tls::None)
        .hello_name("client.test")
        .timeouts(Timeouts::default().capped(Duration::from_secs(5)))
}

#[test]
fn next_message_rides_behind_the_previous_end_of_data() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:<a@client.test>"),
        Step::expect("RCPT TO:<b@server.test>"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectData,
        // No reply to the first message yet: its successor's group must already be here.
        Step::expect("MAIL FROM:<a@client.test>"),
        Step::expect("RCPT TO:<b@server.test>"),
        Step::expect("DATA"),
        Step::send("250 first queued\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectData,
        Step::reply("250 second queued"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
    ]);
    let server = ScriptedServer::start(script);
    let mut client = Client::connect(config(server.port())).unwrap();
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    let results = client
        .send_many([(&env, &b"one\r\n"[..]), (&env, &b"two\r\n"[..])])
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].as_ref().unwrap().reply.message(), "first queued");
    assert_eq!(
        results[1].as_ref().unwrap().reply.message(),
        "second queued"
    );
    client.quit().unwrap();
    server.finish().assert_ok();
}

#[test]
fn many_messages_to_smtp_sink() {
    let sink = SmtpSink::start(&[]);
    let mut client = Client::connect(config(sink.port())).unwrap();
    let env = Envelope::new(
        "a@client.test",
        ["b@sink.test", "c@sink.test", "d@sink.test"],
    )
    .unwrap();
    let body = vec![b'x'; 1024];
    let msgs: Vec<_> = (0..500).map(|_| (&env, &body[..])).collect();
    let results = client.send_many(msgs).unwrap();
    assert_eq!(results.len(), 500);
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|o| o.all_accepted())));
    // The connection is still good for a plain send afterwards.
    client.send_bytes(&env, b"after\r\n").unwrap();
    client.quit().unwrap();
}

#[test]
fn refusals_stay_with_their_message() {
    let server = Aiosmtpd::builder().reject_rcpt("nobody").start();
    let mut client = Client::connect(config(server.port())).unwrap();
    let ok = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    let bad = Envelope::new("a@client.test", ["nobody@server.test"]).unwrap();
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("Subject: {i}\r\n\r\n{i}\r\n").into_bytes())
        .collect();
    let msgs = vec![
        (&ok, &bodies[0][..]),
        (&bad, &bodies[1][..]),
        (&ok, &bodies[2][..]),
        (&bad, &bodies[3][..]),
        (&ok, &bodies[4][..]),
    ];
    let results = client.send_many(msgs).unwrap();
    for (i, r) in results.iter().enumerate() {
        if i % 2 == 1 {
            assert!(
                matches!(
                    r,
                    Err(Error::MessageRejected {
                        at: FailedAt::NoValidRecipients,
                        ..
                    })
                ),
                "{i}: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    client.quit().unwrap();
    let got = server.wait_for_messages(3, Duration::from_secs(10));
    let contents: Vec<&[u8]> = got.iter().map(|m| &m.content[..]).collect();
    assert_eq!(contents, [&bodies[0][..], &bodies[2][..], &bodies[4][..]]);
}

#[test]
fn sixteen_async_connections_on_one_event_loop() {
    let sink = SmtpSink::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = sink.port();
    let total = rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            tasks.spawn(async move {
                let mut client = AsyncClient::connect(config(port)).await.unwrap();
                let env = Envelope::new("a@client.test", ["b@sink.test"]).unwrap();
                let body = vec![b'y'; 1024];
                let msgs: Vec<_> = (0..50).map(|_| (&env, &body[..])).collect();
                let results = client.send_many(msgs).await.unwrap();
                client.quit().await.unwrap();
                results.iter().filter(|r| r.is_ok()).count()
            });
        }
        let mut n = 0;
        while let Some(r) = tasks.join_next().await {
            n += r.unwrap();
        }
        n
    });
    assert_eq!(total, 16 * 50);
}

#[test]
fn chunking_keeps_several_bdat_last_in_flight() {
    let mut script = greeting_and_ehlo(&["PIPELINING", "CHUNKING"]);
    for _ in 0..3 {
        script.extend([
            Step::expect("MAIL FROM:<a@client.test>"),
            Step::expect("RCPT TO:<b@server.test>"),
            // "body\n" becomes "body\r\n": 6 octets.
            Step::expect("BDAT 6"),
            Step::ExpectBytes(6),
            Step::expect("BDAT 0 LAST"),
        ]);
    }
    // Three messages arrived before any reply: now answer them all at once.
    script.push(Step::send(
        "250 ok\r\n250 ok\r\n250 chunk\r\n250 one\r\n\
         250 ok\r\n250 ok\r\n250 chunk\r\n250 two\r\n\
         250 ok\r\n250 ok\r\n250 chunk\r\n250 three\r\n",
    ));
    script.extend([Step::expect("QUIT"), Step::reply("221 bye")]);
    let server = ScriptedServer::start(script);
    let mut client = Client::connect(config(server.port()).chunking(true)).unwrap();
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    let body = b"body\n";
    let results = client
        .send_many([(&env, &body[..]), (&env, &body[..]), (&env, &body[..])])
        .unwrap();
    let replies: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap().reply.message())
        .collect();
    assert_eq!(replies, ["one", "two", "three"]);
    client.quit().unwrap();
    server.finish().assert_ok();
}

/// Keeps each result; asks for no more after the third.
fn until_third(
    seen: &mut Vec<(usize, Result<postline::Outcome, Error>)>,
) -> impl FnMut(usize, Result<postline::Outcome, Error>) -> std::ops::ControlFlow<()> + Send + '_ {
    move |i, r| {
        seen.push((i, r));
        if seen.len() == 3 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }
}

/// `send_many_each`: every message's result exactly once, as each finishes; a `Break`
/// starts nothing more, the rest come back not sent (cancelled), and the connection stays
/// usable. On both clients, against smtp-sink without PIPELINING (one message at a time).
#[test]
fn send_many_each_tells_each_result_and_stops_when_asked() {
    let sink = SmtpSink::start(&["-p"]);
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    let messages: Vec<(&Envelope, &[u8])> = (0..10).map(|_| (&env, &b"m\r\n"[..])).collect();
    let check = |seen: &[(usize, Result<postline::Outcome, Error>)]| {
        let mut order: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
        order.sort_unstable();
        assert_eq!(order, (0..10).collect::<Vec<_>>(), "each exactly once");
        let delivered = seen.iter().filter(|(_, r)| r.is_ok()).count();
        assert_eq!(delivered, 3, "stopped after the third");
        for (i, r) in seen.iter().filter(|(_, r)| r.is_err()) {
            match r {
                Err(Error::NotSent { cause }) => {
                    assert!(matches!(**cause, Error::Cancelled), "{i}: {cause}")
                }
                other => panic!("{i}: {other:?}"),
            }
        }
    };
    let mut client = Client::connect(config(sink.port())).unwrap();
    let mut seen = Vec::new();
    client
        .send_many_each(messages.clone(), until_third(&mut seen))
        .unwrap();
    check(&seen);
    client.noop().expect("still usable");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = AsyncClient::connect(config(sink.port())).await.unwrap();
        let mut seen = Vec::new();
        client
            .send_many_each(messages.clone(), until_third(&mut seen))
            .await
            .unwrap();
        check(&seen);
        client.noop().await.expect("still usable");
    });
}

/// `is_closed`: false on a live session (after a refused message too), true once the server
/// ended it (smtp-sink answers MAIL with 421 and closes), on both clients.
#[test]
fn is_closed_tells_a_live_session_from_an_ended_one() {
    let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
    let live = SmtpSink::start(&["-f", "DATA"]);
    let ending = SmtpSink::start(&["-Q", "MAIL"]);
    let mut client = Client::connect(config(live.port())).unwrap();
    assert!(client.send_bytes(&env, b"m\r\n").is_err(), "DATA refused");
    assert!(!client.is_closed());
    let mut client = Client::connect(config(ending.port())).unwrap();
    assert!(client.send_bytes(&env, b"m\r\n").is_err(), "421");
    assert!(client.is_closed());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = AsyncClient::connect(config(live.port())).await.unwrap();
        assert!(client.send_bytes(&env, b"m\r\n").await.is_err());
        assert!(!client.is_closed());
        let mut client = AsyncClient::connect(config(ending.port())).await.unwrap();
        assert!(client.send_bytes(&env, b"m\r\n").await.is_err());
        assert!(client.is_closed());
    });
}
