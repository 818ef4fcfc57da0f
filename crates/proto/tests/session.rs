//! Session transcripts against scripted servers: exact bytes out, events in order.

use postline_proto::command::{Address, Domain, Envelope, MailParams, RcptParams, ReversePath};
use postline_proto::session::{Phase, SessionConfig, SessionError, UseError};
use postline_proto::testing::Talk;
use postline_proto::{Credentials, Mechanism};

const POSTFIX_EHLO: &[u8] = b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n";
const PLAIN_EHLO: &[u8] = b"250-old.example.com\r\n250 8BITMIME\r\n";

fn config() -> SessionConfig {
    SessionConfig::new(&Domain::new("client.example").unwrap())
}

fn addrs(list: &[&'static str]) -> Vec<Address<&'static str>> {
    list.iter().map(|a| Address::new(*a).unwrap()).collect()
}

/// Runs `f` twice: replies fed whole, then one byte at a time.
fn both_splits(f: impl Fn(&mut Talk)) {
    for byte_at_a_time in [false, true] {
        let mut t = Talk::new(config());
        t.byte_at_a_time = byte_at_a_time;
        f(&mut t);
    }
}

fn greet(t: &mut Talk, ehlo: &[u8]) {
    t.server(b"220 mx.example.com ESMTP Postfix\r\n").unwrap();
    t.expect_client(b"EHLO client.example\r\n");
    t.server(ehlo).unwrap();
    t.expect_events(&["Ready"]);
}

#[test]
fn lockstep_without_pipelining() {
    both_splits(|t| {
        greet(t, PLAIN_EHLO);
        assert!(!t.session.pipelining());
        let from = ReversePath::Address(Address::new("a@client.example").unwrap());
        let to = addrs(&["b@x.example", "c@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        let tx = t.session.start_transaction(&env, &mut t.out).unwrap();
        assert_eq!(t.session.phase(), Some(Phase::Mail));
        t.expect_client(b"MAIL FROM:<a@client.example>\r\n");
        t.server(b"250 2.1.0 Ok\r\n").unwrap();
        t.expect_client(b"RCPT TO:<b@x.example>\r\n");
        t.server(b"550 5.1.1 <b@x.example>: Recipient address rejected: User unknown\r\n")
            .unwrap();
        t.expect_client(b"RCPT TO:<c@x.example>\r\n");
        t.server(b"250 2.1.5 Ok\r\n").unwrap();
        t.expect_client(b"DATA\r\n");
        t.expect_events(&["Rcpt tx0 #0 550", "Rcpt tx0 #1 250"]);
        assert_eq!(t.session.phase(), Some(Phase::DataStart));
        t.server(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            .unwrap();
        t.expect_events(&["SendData tx0"]);
        assert_eq!(t.session.sending(), Some(tx));
        t.session
            .send_data(b"Subject: hi\r\n\r\n.dot\n", &mut t.out)
            .unwrap();
        t.session.end_data(&mut t.out).unwrap();
        t.expect_client(b"Subject: hi\r\n\r\n..dot\r\n.\r\n");
        assert_eq!(t.session.awaiting_final().collect::<Vec<_>>(), vec![tx]);
        t.server(b"250 2.0.0 Ok: queued as 4Xyz\r\n").unwrap();
        t.expect_events(&["Done tx0 delivered 250"]);
        t.session.quit(&mut t.out).unwrap();
        t.expect_client(b"QUIT\r\n");
        t.server(b"221 2.0.0 Bye\r\n").unwrap();
        t.expect_events(&["Closed"]);
        assert!(t.session.is_closed());
        assert!(t.session.handle_close(&[]).is_ok());
    });
}

#[test]
fn pipelined_group_is_one_write() {
    both_splits(|t| {
        greet(t, POSTFIX_EHLO);
        assert!(t.session.pipelining());
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example", "c@x.example", "d@x.example"]);
        let mail = MailParams {
            size: Some(20),
            ..Default::default()
        };
        let env = Envelope {
            from: &from,
            to: &to,
            mail,
            rcpt: RcptParams::default(),
        };
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.expect_client(b"MAIL FROM:<a@c.example> SIZE=20\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nRCPT TO:<d@x.example>\r\nDATA\r\n");
        t.server(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.0 <c@x.example>: Greylisted\r\n250 2.1.5 Ok\r\n354 go\r\n")
            .unwrap();
        t.expect_events(&[
            "Rcpt tx0 #0 250",
            "Rcpt tx0 #1 450",
            "Rcpt tx0 #2 250",
            "SendData tx0",
        ]);
        t.session.send_data(b"x", &mut t.out).unwrap();
        t.session.end_data(&mut t.out).unwrap();
        t.expect_client(b"x\r\n.\r\n");
        t.server(b"250 2.0.0 Ok: queued as 1\r\n").unwrap();
        t.expect_events(&["Done tx0 delivered 250"]);
    });
}

#[test]
fn deep_pipelining_sends_next_group_behind_terminator() {
    both_splits(|t| {
        greet(t, POSTFIX_EHLO);
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        let group = b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n";
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.expect_client(group);
        t.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n").unwrap();
        t.expect_events(&["Rcpt tx0 #0 250", "SendData tx0"]);
        for i in 0..3u32 {
            t.session.send_data(b"body", &mut t.out).unwrap();
            t.session.end_data(&mut t.out).unwrap();
            assert!(t.session.can_start_transaction());
            t.session.start_transaction(&env, &mut t.out).unwrap();
            // One write: the terminator and the next transaction's whole group.
            let mut want = b"body\r\n.\r\n".to_vec();
            want.extend_from_slice(group);
            t.expect_client(&want);
            let mut events = vec![];
            if i == 1 {
                // The middle message is refused at end of data; the next is unaffected.
                t.server(b"554 5.7.1 Spam\r\n250 Ok\r\n250 Ok\r\n354 go\r\n")
                    .unwrap();
                events.push(format!("Done tx{i} failed Message 554"));
            } else {
                t.server(b"250 Ok: queued\r\n250 Ok\r\n250 Ok\r\n354 go\r\n")
                    .unwrap();
                events.push(format!("Done tx{i} delivered 250"));
            }
            events.push(format!("Rcpt tx{} #0 250", i + 1));
            events.push(format!("SendData tx{}", i + 1));
            assert_eq!(t.events(), events);
        }
        t.session.send_data(b"last", &mut t.out).unwrap();
        t.session.end_data(&mut t.out).unwrap();
        t.session.quit(&mut t.out).unwrap();
        t.expect_client(b"last\r\n.\r\nQUIT\r\n");
        t.server(b"250 Ok\r\n221 Bye\r\n").unwrap();
        t.expect_events(&["Done tx3 delivered 250", "Closed"]);
    });
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    both_splits(|t| {
        t.server(b"220 ancient.example\r\n").unwrap();
        t.expect_client(b"EHLO client.example\r\n");
        t.server(b"502 5.5.2 Error: command not recognized\r\n")
            .unwrap();
        t.expect_client(b"HELO client.example\r\n");
        t.expect_events(&[]);
        t.server(b"250 ancient.example\r\n").unwrap();
        t.expect_events(&["Ready"]);
        assert!(!t.session.pipelining());
    });
}

#[test]
fn refused_greeting_quits() {
    both_splits(|t| {
        t.server(b"554 5.7.1 No SMTP service here\r\n").unwrap();
        t.expect_events(&["Rejected 554"]);
        t.expect_client(b"QUIT\r\n");
        t.server(b"221 Bye\r\n").unwrap();
        t.expect_events(&["Closed"]);
        assert!(t.session.is_closed());
    });
}

#[test]
fn service_closing_421_mid_session() {
    both_splits(|t| {
        greet(t, POSTFIX_EHLO);
        let from = ReversePath::Null;
        let to = addrs(&["b@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        let tx = t.session.start_transaction(&env, &mut t.out).unwrap();
        t.expect_client(b"MAIL FROM:<>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n");
        t.server(b"421 4.3.2 Shutting down\r\n").unwrap();
        t.expect_events(&["ServiceClosing 421"]);
        assert!(t.session.is_closed());
        assert_eq!(t.session.open_transactions().collect::<Vec<_>>(), vec![tx]);
        assert!(t.session.handle_close(&[]).is_ok());
    });
}

#[test]
fn unsolicited_421_when_idle() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    t.server(b"421 4.4.2 Timeout exceeded\r\n").unwrap();
    t.expect_events(&["ServiceClosing 421"]);
}

#[test]
fn starttls_forgets_and_discards_injected_input() {
    // Fed whole: the injected reply arrives in the same read as the 220, as an attacker
    // would arrange it. (Bytes arriving after the handshake belong to TLS.)
    {
        let t = &mut Talk::new(config());
        greet(t, POSTFIX_EHLO);
        t.session.start_tls(&mut t.out).unwrap();
        t.expect_client(b"STARTTLS\r\n");
        // A man in the middle appends a reply after the 220: it must never be used.
        t.server(b"220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 AUTH PLAIN\r\n")
            .unwrap();
        t.expect_events(&["StartTls"]);
        assert!(t.session.is_tls());
        assert!(!t
            .session
            .capabilities()
            .has(postline_proto::Extension::StartTls));
        t.expect_client(b"EHLO client.example\r\n");
        assert!(t.unconsumed().is_empty());
        t.server(b"250-mx.example.com\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n")
            .unwrap();
        t.expect_events(&["Ready"]);
        assert!(t.session.capabilities().auth().contains(Mechanism::Plain));
        assert_eq!(t.session.start_tls(&mut t.out), Err(UseError::NotReady));
    }
}

#[test]
fn starttls_refused_keeps_session() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    t.session.start_tls(&mut t.out).unwrap();
    t.client();
    t.server(b"454 4.7.0 TLS not available due to local problem\r\n")
        .unwrap();
    t.expect_events(&["StartTlsRefused 454"]);
    assert!(!t.session.is_tls());
    assert!(t.session.is_idle());
}

#[test]
fn auth_plain_and_failure() {
    both_splits(|t| {
        greet(t, POSTFIX_EHLO);
        let creds = Credentials::Password {
            authzid: None,
            username: "tim",
            password: "tanstaaftanstaaf",
        };
        t.session
            .authenticate(Mechanism::Plain, &creds, &mut t.out)
            .unwrap();
        t.expect_client(b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
        t.server(b"535 5.7.8 Error: authentication failed\r\n")
            .unwrap();
        t.expect_events(&["AuthFailed 535"]);
        assert!(!t.session.is_authenticated());
        t.session
            .authenticate(Mechanism::Plain, &creds, &mut t.out)
            .unwrap();
        t.client();
        t.server(b"235 2.7.0 Authentication successful\r\n")
            .unwrap();
        t.expect_events(&["Authenticated"]);
        assert!(t.session.is_authenticated());
    });
}

#[test]
fn auth_login_challenges() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    let creds = Credentials::Password {
        authzid: None,
        username: "tim",
        password: "secret",
    };
    t.session
        .authenticate(Mechanism::Login, &creds, &mut t.out)
        .unwrap();
    t.expect_client(b"AUTH LOGIN\r\n");
    t.server(b"334 VXNlcm5hbWU6\r\n").unwrap();
    t.expect_events(&["AuthChallenge VXNlcm5hbWU6"]);
    t.session
        .auth_respond(&creds, b"VXNlcm5hbWU6", &mut t.out)
        .unwrap();
    t.expect_client(b"dGlt\r\n");
    t.server(b"334 UGFzc3dvcmQ6\r\n").unwrap();
    t.events();
    t.session
        .auth_respond(&creds, b"UGFzc3dvcmQ6", &mut t.out)
        .unwrap();
    t.expect_client(b"c2VjcmV0\r\n");
    t.server(b"235 2.7.0 Authentication successful\r\n")
        .unwrap();
    t.expect_events(&["Authenticated"]);
}

#[test]
fn mail_refused_without_pipelining_sends_nothing_more() {
    both_splits(|t| {
        greet(t, PLAIN_EHLO);
        let from = ReversePath::Address(Address::new("spammer@bad.example").unwrap());
        let to = addrs(&["b@x.example", "c@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.expect_client(b"MAIL FROM:<spammer@bad.example>\r\n");
        t.server(b"553 5.7.1 Sender rejected\r\n").unwrap();
        t.expect_events(&["Done tx0 failed Mail 553"]);
        t.expect_client(b"");
        assert!(t.session.is_idle());
        // The session is usable for the next message.
        assert!(t.session.can_start_transaction());
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.expect_client(b"MAIL FROM:<spammer@bad.example>\r\n");
    });
}

#[test]
fn no_recipient_without_pipelining_resets() {
    both_splits(|t| {
        greet(t, PLAIN_EHLO);
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.client();
        t.server(b"250 Ok\r\n").unwrap();
        t.expect_client(b"RCPT TO:<b@x.example>\r\n");
        t.server(b"550 5.1.1 User unknown\r\n").unwrap();
        t.expect_events(&["Rcpt tx0 #0 550", "Done tx0 failed NoValidRecipients"]);
        // DATA never leaves; RSET closes the open MAIL.
        t.expect_client(b"RSET\r\n");
        assert!(!t.session.can_start_transaction());
        t.server(b"250 2.0.0 Ok\r\n").unwrap();
        t.expect_events(&[]);
        assert!(t.session.can_start_transaction());
    });
}

#[test]
fn pipelined_no_recipient_data_refused_then_rset() {
    both_splits(|t| {
        greet(t, POSTFIX_EHLO);
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.client();
        t.server(b"250 Ok\r\n550 5.1.1 Unknown\r\n554 5.5.1 Error: no valid recipients\r\n")
            .unwrap();
        t.expect_events(&["Rcpt tx0 #0 550", "Done tx0 failed NoValidRecipients 554"]);
        t.expect_client(b"RSET\r\n");
        // The next transaction may be pipelined behind the RSET.
        assert!(t.session.can_start_transaction());
        t.server(b"250 Ok\r\n").unwrap();
        t.expect_events(&[]);
    });
}

#[test]
fn pipelined_no_recipient_but_354_sends_empty_message() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    let from = ReversePath::Address(Address::new("a@c.example").unwrap());
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    t.session.start_transaction(&env, &mut t.out).unwrap();
    t.client();
    t.server(b"250 Ok\r\n550 Unknown\r\n354 go ahead anyway\r\n")
        .unwrap();
    t.expect_events(&["Rcpt tx0 #0 550", "Done tx0 failed NoValidRecipients"]);
    // RFC 2920 3.1: a lone dot, never the message.
    t.expect_client(b".\r\n");
    assert_eq!(
        t.session.send_data(b"secret", &mut t.out),
        Err(UseError::NoDataExpected)
    );
    t.server(b"554 no valid recipients\r\n").unwrap();
    t.expect_events(&[]);
    t.expect_client(b"");
    assert!(t.session.can_start_transaction());
}

#[test]
fn pipelined_mail_refused_swallows_the_rest() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    let from = ReversePath::Address(Address::new("a@c.example").unwrap());
    let to = addrs(&["b@x.example", "c@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    t.session.start_transaction(&env, &mut t.out).unwrap();
    t.client();
    t.server(b"451 4.3.0 Try later\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n")
        .unwrap();
    t.expect_events(&["Done tx0 failed Mail 451"]);
    t.expect_client(b"");
    assert!(t.session.can_start_transaction());
}

#[test]
fn reply_out_of_place_is_a_terminal_error() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    let from = ReversePath::Address(Address::new("a@c.example").unwrap());
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    t.session.start_transaction(&env, &mut t.out).unwrap();
    let err = t.server(b"354 what\r\n").unwrap_err();
    assert_eq!(
        err,
        SessionError::WrongReply {
            phase: Phase::Mail,
            code: postline_proto::Code::new(354).unwrap()
        }
    );
    // Every later call repeats it.
    assert_eq!(t.server(b"250 ok\r\n").unwrap_err(), err);
    assert!(matches!(t.session.quit(&mut t.out), Ok(())));
    assert!(matches!(
        t.session.noop(&mut t.out),
        Err(UseError::Failed(_))
    ));
}

#[test]
fn reply_when_none_pending_is_an_error() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    let err = t.server(b"250 surprise\r\n").unwrap_err();
    assert!(matches!(err, SessionError::UnexpectedReply { .. }));
}

#[test]
fn garbage_is_malformed() {
    let mut t = Talk::new(config());
    let err = t.server(b"HTTP/1.1 400 Bad Request\r\n").unwrap_err();
    assert!(matches!(err, SessionError::Malformed(_)));
}

#[test]
fn close_mid_data_names_the_phase() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    let from = ReversePath::Address(Address::new("a@c.example").unwrap());
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    let tx = t.session.start_transaction(&env, &mut t.out).unwrap();
    t.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n").unwrap();
    t.session.send_data(b"half", &mut t.out).unwrap();
    assert_eq!(t.session.phase(), Some(Phase::DataBlock));
    t.session.end_data(&mut t.out).unwrap();
    // Dropped after the final dot: the message may or may not have been delivered.
    assert_eq!(t.session.awaiting_final().collect::<Vec<_>>(), vec![tx]);
    assert_eq!(
        t.session.handle_close(b"25"),
        Err(SessionError::Malformed(
            postline_proto::ReplyError::MissingLineEnd
        ))
    );
    let mut t2 = Talk::new(config());
    greet(&mut t2, POSTFIX_EHLO);
    assert_eq!(t2.session.handle_close(&[]), Ok(()));
    let mut t3 = Talk::new(config());
    assert_eq!(
        t3.session.handle_close(&[]),
        Err(SessionError::ConnectionClosed {
            phase: Phase::Greeting
        })
    );
}

#[test]
#[cfg(feature = "chunking")]
fn bdat_chunks_with_chunking() {
    both_splits(|t| {
        t.session = postline_proto::Session::new({
            let mut c = config();
            c.chunking = true;
            c
        });
        greet(t, POSTFIX_EHLO);
        assert!(t.session.chunking());
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example", "c@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        let tx = t.session.start_transaction(&env, &mut t.out).unwrap();
        assert_eq!(t.session.sending(), Some(tx));
        t.session
            .send_data(b"Subject: x\n\n.line\n", &mut t.out)
            .unwrap();
        t.session.send_data(b"no newline", &mut t.out).unwrap();
        t.session.end_data(&mut t.out).unwrap();
        t.expect_client(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nBDAT 21\r\nSubject: x\r\n\r\n.line\r\nBDAT 10\r\nno newlineBDAT 2 LAST\r\n\r\n");
        // BDAT LAST is written: the next transaction may follow at once.
        assert!(t.session.can_start_transaction());
        t.server(b"250 Ok\r\n250 Ok\r\n550 no\r\n250 2.0.0 chunk\r\n250 2.0.0 chunk\r\n250 2.0.0 Ok: queued as X\r\n").unwrap();
        t.expect_events(&[
            "Rcpt tx0 #0 250",
            "Rcpt tx0 #1 550",
            "Done tx0 delivered 250",
        ]);
        assert!(t.session.can_start_transaction());
    });
}

/// A session with BDAT on, greeted by Postfix, one transaction (a@c.example to b@x.example)
/// started and its data not yet sent.
#[cfg(feature = "chunking")]
fn bdat_transaction() -> Talk {
    let mut t = Talk::new({
        let mut c = config();
        c.chunking = true;
        c
    });
    greet(&mut t, POSTFIX_EHLO);
    let from = ReversePath::Address(Address::new("a@c.example").unwrap());
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    t.session.start_transaction(&env, &mut t.out).unwrap();
    t
}

#[test]
#[cfg(feature = "chunking")]
fn bdat_chunk_refused_stops_and_resets() {
    let mut t = bdat_transaction();
    t.session.send_data(b"aaaa\r\n", &mut t.out).unwrap();
    t.client();
    t.server(b"250 Ok\r\n250 Ok\r\n552 5.3.4 Message too big\r\n")
        .unwrap();
    t.expect_events(&["Rcpt tx0 #0 250", "Done tx0 failed Message 552"]);
    assert_eq!(
        t.session.send_data(b"more", &mut t.out),
        Err(UseError::NoDataExpected)
    );
    t.expect_client(b"RSET\r\n");
    t.server(b"250 Ok\r\n").unwrap();
    assert!(t.session.can_start_transaction());
}

#[test]
#[cfg(feature = "chunking")]
fn bdat_mail_refused_takes_no_data_and_frees_the_slot() {
    let mut t = bdat_transaction();
    t.client();
    t.server(b"550 5.7.1 sender refused\r\n503 5.5.1 no sender\r\n")
        .unwrap();
    t.expect_events(&["Done tx0 failed Mail 550"]);
    // No chunk for the refused message, and the session goes on to the next one.
    assert_eq!(t.session.sending(), None);
    assert_eq!(
        t.session.send_data(b"more", &mut t.out),
        Err(UseError::NoDataExpected)
    );
    // Nothing to reset (no MAIL was taken): the next message may start.
    t.expect_client(b"");
    assert!(t.session.can_start_transaction());
}

#[test]
fn user_commands_and_window() {
    let mut t = Talk::new(config());
    greet(&mut t, POSTFIX_EHLO);
    t.session.noop(&mut t.out).unwrap();
    t.session
        .vrfy(Address::new("postmaster").unwrap(), &mut t.out)
        .unwrap();
    t.expect_client(b"NOOP\r\nVRFY postmaster\r\n");
    t.server(b"250 2.0.0 Ok\r\n252 2.0.0 postmaster\r\n")
        .unwrap();
    t.expect_events(&["Reply 250", "Reply 252"]);
    // A transaction still in its envelope blocks the next; its end of data frees the way.
    let from = ReversePath::Null;
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    t.session.start_transaction(&env, &mut t.out).unwrap();
    assert_eq!(
        t.session.start_transaction(&env, &mut t.out),
        Err(UseError::Busy)
    );
    assert!(matches!(
        t.session.noop(&mut t.out),
        Err(UseError::NotReady)
    ));
    t.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n").unwrap();
    assert_eq!(
        t.session.start_transaction(&env, &mut t.out),
        Err(UseError::Busy)
    );
    t.session.end_data(&mut t.out).unwrap();
    assert!(t.session.can_start_transaction());
}

#[test]
fn misuse_is_refused_without_change() {
    let mut t = Talk::new(config());
    let from = ReversePath::Null;
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    assert_eq!(
        t.session.start_transaction(&env, &mut t.out),
        Err(UseError::NotReady)
    );
    assert_eq!(
        t.session.send_data(b"x", &mut t.out),
        Err(UseError::NoDataExpected)
    );
    greet(&mut t, POSTFIX_EHLO);
    let none: Vec<Address<&str>> = vec![];
    let empty = Envelope {
        from: &from,
        to: &none,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    assert_eq!(
        t.session.start_transaction(&empty, &mut t.out),
        Err(UseError::NoRecipients)
    );
    let token = Credentials::Token {
        username: "u",
        token: "t",
        host: None,
        port: None,
    };
    assert!(matches!(
        t.session.authenticate(Mechanism::Plain, &token, &mut t.out),
        Err(UseError::Sasl(_))
    ));
    t.expect_client(b"");
}

#[test]
fn fixed_buffer_outbox_without_alloc_types() {
    use postline_proto::{FixedBuf, Outbox, Session};
    let mut storage = [0u8; 256];
    let mut out = Outbox::new(FixedBuf::new(&mut storage));
    let mut s = Session::new(config());
    let (n, ev) = s.handle_input(b"220 hi\r\n", &mut out).unwrap();
    assert_eq!((n, ev), (8, None));
    assert_eq!(out.transmit(), b"EHLO client.example\r\n");
    out.advance(21);
    let input = b"250-hi\r\n250 PIPELINING\r\n";
    let (n, ev) = s.handle_input(input, &mut out).unwrap();
    assert_eq!(n, input.len());
    assert_eq!(ev, Some(postline_proto::Event::Ready));
    // A message too big for the outbox is refused whole, and can be retried after a flush.
    let from = ReversePath::Null;
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    s.start_transaction(&env, &mut out).unwrap();
    let n = out.transmit().len();
    out.advance(n);
    let input = b"250 a\r\n250 b\r\n354 c\r\n";
    let mut pos = 0;
    let mut events = vec![];
    loop {
        let (n, ev) = s.handle_input(&input[pos..], &mut out).unwrap();
        pos += n;
        match ev {
            Some(ev) => events.push(postline_proto::testing::describe(&ev)),
            None if n == 0 => break,
            None => {}
        }
    }
    assert_eq!(pos, input.len());
    assert_eq!(events, ["Rcpt tx0 #0 250", "SendData tx0"]);
    assert!(matches!(
        s.send_data(&[b'x'; 300], &mut out),
        Err(UseError::BufferFull(_))
    ));
    assert!(out.transmit().is_empty());
    s.send_data(&[b'x'; 100], &mut out).unwrap();
    assert_eq!(out.transmit().len(), 100);
}

#[test]
fn session_is_small() {
    let size = core::mem::size_of::<postline_proto::Session>();
    assert!(size <= 640, "Session is {size} bytes");
}

#[test]
#[cfg(feature = "chunking")]
fn bdat_window_keeps_several_messages_in_flight() {
    both_splits(|t| {
        t.session = postline_proto::Session::new({
            let mut c = config();
            c.chunking = true;
            c
        });
        greet(t, POSTFIX_EHLO);
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        let mut started = 0;
        while t.session.can_start_transaction() {
            t.session.start_transaction(&env, &mut t.out).unwrap();
            t.session.send_data(b"m\r\n", &mut t.out).unwrap();
            t.session.end_data(&mut t.out).unwrap();
            started += 1;
            assert!(started <= postline_proto::session::MAX_TRANSACTIONS);
        }
        assert_eq!(started, postline_proto::session::MAX_TRANSACTIONS);
        let one =
            "MAIL FROM:<a@c.example>\r\nRCPT TO:<b@x.example>\r\nBDAT 3\r\nm\r\nBDAT 0 LAST\r\n";
        t.expect_client(one.repeat(started).as_bytes());
        // The second message's chunk is refused; its neighbours are delivered, and no RSET is
        // sent (BDAT LAST closed each transaction).
        let mut replies = String::new();
        for i in 0..started {
            replies.push_str("250 ok\r\n250 ok\r\n");
            if i == 1 {
                replies.push_str("552 5.3.4 too big\r\n554 5.5.0 no\r\n");
            } else {
                replies.push_str("250 chunk\r\n250 queued\r\n");
            }
        }
        t.server(replies.as_bytes()).unwrap();
        t.expect_events(&[
            "Rcpt tx0 #0 250",
            "Done tx0 delivered 250",
            "Rcpt tx1 #0 250",
            "Done tx1 failed Message 552",
            "Rcpt tx2 #0 250",
            "Done tx2 delivered 250",
            "Rcpt tx3 #0 250",
            "Done tx3 delivered 250",
        ]);
        t.expect_client(b"");
        assert!(t.session.can_start_transaction());
    });
}

#[cfg(feature = "scram")]
mod scram {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use postline_proto::sasl::{Binding, Response};

    /// RFC 7677 section 3.
    const USER: Credentials<'static> = Credentials::Scram {
        authzid: None,
        username: "user",
        password: "pencil",
        nonce: "rOprNGfwEbeRWgbNEkqO",
        binding: Binding::Unsupported,
    };
    const SCRAM_EHLO: &[u8] =
        b"250-mx.example.com\r\n250-AUTH SCRAM-SHA-256 PLAIN\r\n250 8BITMIME\r\n";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn b64(s: &str) -> String {
        let mut enc = [0u8; 512];
        let n = STANDARD.encode_slice(s, &mut enc).unwrap();
        String::from_utf8(enc[..n].to_vec()).unwrap()
    }

    /// Runs the exchange up to the client-final message.
    fn to_client_final(t: &mut Talk) {
        greet(t, SCRAM_EHLO);
        t.session
            .authenticate(Mechanism::ScramSha256, &USER, &mut t.out)
            .unwrap();
        let first = format!(
            "AUTH SCRAM-SHA-256 {}\r\n",
            b64("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        );
        t.expect_client(first.as_bytes());
        let challenge = b64(SERVER_FIRST);
        t.server(format!("334 {challenge}\r\n").as_bytes()).unwrap();
        t.expect_events(&[&format!("AuthChallenge {challenge}")]);
        let r = t
            .session
            .auth_respond(&USER, challenge.as_bytes(), &mut t.out)
            .unwrap();
        assert_eq!(r, Response::Answered);
        t.expect_client(format!("{}\r\n", b64(CLIENT_FINAL)).as_bytes());
    }

    fn server_final(t: &mut Talk, msg: &str) -> Response {
        let challenge = b64(msg);
        t.server(format!("334 {challenge}\r\n").as_bytes()).unwrap();
        t.events();
        t.session
            .auth_respond(&USER, challenge.as_bytes(), &mut t.out)
            .unwrap()
    }

    #[test]
    fn rfc7677_exchange() {
        both_splits(|t| {
            to_client_final(t);
            assert_eq!(server_final(t, SERVER_FINAL), Response::Answered);
            t.expect_client(b"\r\n");
            t.server(b"235 2.7.0 Authentication successful\r\n")
                .unwrap();
            t.expect_events(&["Authenticated"]);
            assert!(t.session.is_authenticated());
            assert!(t.session.is_idle());
        });
    }

    #[test]
    fn success_without_server_proof_is_not_authenticated() {
        both_splits(|t| {
            to_client_final(t);
            // The server skips `v=` and claims success.
            t.server(b"235 2.7.0 Authentication successful\r\n")
                .unwrap();
            t.expect_events(&["AuthServerUnverified 235"]);
            assert!(!t.session.is_authenticated());
            // Nothing but QUIT goes to such a server.
            assert!(!t.session.is_idle());
            assert!(!t.session.can_start_transaction());
            t.session.quit(&mut t.out).unwrap();
            assert!(t.client().starts_with(b"QUIT"));
        });
        // Straight after AUTH, before any exchange.
        both_splits(|t| {
            greet(t, SCRAM_EHLO);
            t.session
                .authenticate(Mechanism::ScramSha256, &USER, &mut t.out)
                .unwrap();
            t.client();
            t.server(b"235 2.7.0 ok\r\n").unwrap();
            t.expect_events(&["AuthServerUnverified 235"]);
            assert!(!t.session.is_authenticated());
        });
    }

    #[test]
    fn wrong_server_proof_cancels_and_stays_unverified() {
        // Whatever the server answers the `*` with, even 235, the client is not logged in.
        for (last, event) in [
            (
                &b"501 5.7.0 Authentication aborted\r\n"[..],
                "AuthServerUnverified 501",
            ),
            (
                b"235 2.7.0 Authentication successful\r\n",
                "AuthServerUnverified 235",
            ),
        ] {
            both_splits(|t| {
                to_client_final(t);
                let r = server_final(t, "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
                assert_eq!(r, Response::ServerUnproven);
                t.expect_client(b"*\r\n");
                t.server(last).unwrap();
                t.expect_events(&[event]);
                assert!(!t.session.is_authenticated());
            });
        }
    }

    #[test]
    fn server_error_is_an_ordinary_failure() {
        both_splits(|t| {
            to_client_final(t);
            assert_eq!(server_final(t, "e=invalid-proof"), Response::ServerError);
            t.expect_client(b"*\r\n");
            t.server(b"535 5.7.8 Authentication credentials invalid\r\n")
                .unwrap();
            t.expect_events(&["AuthFailed 535"]);
        });
    }

    #[test]
    fn external_with_and_without_authzid() {
        both_splits(|t| {
            greet(t, b"250-mx\r\n250 AUTH EXTERNAL\r\n");
            let creds = Credentials::External { authzid: None };
            t.session
                .authenticate(Mechanism::External, &creds, &mut t.out)
                .unwrap();
            t.expect_client(b"AUTH EXTERNAL =\r\n");
            t.server(b"334 \r\n").unwrap();
            t.events();
            t.session.auth_respond(&creds, b"", &mut t.out).unwrap();
            t.expect_client(b"\r\n");
            t.server(b"235 2.7.0 Authentication successful\r\n")
                .unwrap();
            t.expect_events(&["Authenticated"]);
            assert!(t.session.is_authenticated());
        });
        let mut t = Talk::new(config());
        greet(&mut t, b"250-mx\r\n250 AUTH EXTERNAL\r\n");
        let creds = Credentials::External {
            authzid: Some("postmaster@example.com"),
        };
        t.session
            .authenticate(Mechanism::External, &creds, &mut t.out)
            .unwrap();
        t.expect_client(format!("AUTH EXTERNAL {}\r\n", b64("postmaster@example.com")).as_bytes());
    }

    #[test]
    fn full_outbox_writes_nothing_and_keeps_the_exchange() {
        use postline_proto::buf::FixedBuf;
        use postline_proto::session::{Event, Outbox, Session};
        let mut storage = [0u8; 30];
        let mut out = Outbox::new(FixedBuf::new(&mut storage));
        let mut s = Session::new(config());
        s.handle_input(b"220 mx\r\n", &mut out).unwrap();
        let n = out.transmit().len();
        out.advance(n);
        let (_, ev) = s.handle_input(SCRAM_EHLO, &mut out).unwrap();
        assert_eq!(ev, Some(Event::Ready));
        let err = s.authenticate(Mechanism::ScramSha256, &USER, &mut out);
        assert!(
            matches!(err, Err(UseError::Sasl(_)) | Err(UseError::BufferFull(_))),
            "{err:?}"
        );
        assert!(out.transmit().is_empty());
        assert!(s.is_idle());
    }
}

#[cfg(feature = "checks")]
#[test]
fn check_envelope_pipelined_never_sends_data() {
    both_splits(|t| {
        greet(t, POSTFIX_EHLO);
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example", "c@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        t.session.check_envelope(&env, &mut t.out).unwrap();
        t.expect_client(
            b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n",
        );
        t.server(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n")
            .unwrap();
        t.expect_events(&[
            "Mail tx0 250",
            "Rcpt tx0 #0 250",
            "Rcpt tx0 #1 550",
            "Done tx0 checked",
        ]);
        t.expect_client(b"RSET\r\n");
        t.server(b"250 2.0.0 Ok\r\n").unwrap();
        assert!(t.session.is_idle());
    });
}

#[cfg(feature = "checks")]
#[test]
fn check_envelope_lockstep_and_sender_only() {
    both_splits(|t| {
        greet(t, PLAIN_EHLO);
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        t.session.check_envelope(&env, &mut t.out).unwrap();
        t.expect_client(b"MAIL FROM:<a@c.example>\r\n");
        t.server(b"250 Ok\r\n").unwrap();
        t.expect_client(b"RCPT TO:<b@x.example>\r\n");
        t.server(b"550 no\r\n").unwrap();
        t.expect_events(&[
            "Mail tx0 250",
            "Rcpt tx0 #0 550",
            "Done tx0 failed NoValidRecipients",
        ]);
        t.expect_client(b"RSET\r\n");
        t.server(b"250 Ok\r\n").unwrap();
        let none: Vec<Address<&str>> = Vec::new();
        let env = Envelope {
            from: &from,
            to: &none,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        t.session.check_envelope(&env, &mut t.out).unwrap();
        t.expect_client(b"MAIL FROM:<a@c.example>\r\n");
        t.server(b"553 bad sender\r\n").unwrap();
        t.expect_events(&["Done tx1 failed Mail 553"]);
        assert!(t.session.is_idle());
    });
}

#[cfg(feature = "lmtp")]
mod lmtp {
    use super::*;

    /// Dovecot 2.3's LHLO reply.
    const DOVECOT_LHLO: &[u8] = b"250-mail.example\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 XCLIENT ADDR HELO LOGIN NAME PORT PROTO TIMEOUT TTL\r\n";

    fn lmtp_config() -> SessionConfig {
        let mut c = config();
        c.lmtp = true;
        c.chunking = true; // asked for, and still not used: LMTP data goes with DATA
        c
    }

    fn both_splits(f: impl Fn(&mut Talk)) {
        for byte_at_a_time in [false, true] {
            let mut t = Talk::new(lmtp_config());
            t.byte_at_a_time = byte_at_a_time;
            f(&mut t);
        }
    }

    fn greet(t: &mut Talk) {
        t.server(b"220 mail.example Dovecot ready.\r\n").unwrap();
        t.expect_client(b"LHLO client.example\r\n");
        t.server(DOVECOT_LHLO).unwrap();
        t.expect_events(&["Ready"]);
        assert!(t.session.pipelining());
        assert!(!t.session.chunking());
    }

    fn envelope_of<'a>(
        from: &'a ReversePath<&'static str>,
        to: &'a [Address<&'static str>],
    ) -> Envelope<'a, &'static str> {
        Envelope {
            from,
            to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        }
    }

    #[test]
    fn one_reply_per_accepted_recipient_after_the_data() {
        both_splits(|t| {
            greet(t);
            let from = ReversePath::Address(Address::new("a@c.example").unwrap());
            let to = addrs(&[
                "b@x.example",
                "nobody@x.example",
                "c@x.example",
                "d@x.example",
            ]);
            let env = envelope_of(&from, &to);
            let tx = t.session.start_transaction(&env, &mut t.out).unwrap();
            t.expect_client(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<nobody@x.example>\r\nRCPT TO:<c@x.example>\r\nRCPT TO:<d@x.example>\r\nDATA\r\n");
            t.server(b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 <nobody@x.example> User doesn't exist\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 OK\r\n")
                .unwrap();
            t.expect_events(&[
                "Rcpt tx0 #0 250",
                "Rcpt tx0 #1 550",
                "Rcpt tx0 #2 250",
                "Rcpt tx0 #3 250",
                "SendData tx0",
            ]);
            t.session
                .send_data(b"Subject: hi\r\n\r\nx\r\n", &mut t.out)
                .unwrap();
            t.session.end_data(&mut t.out).unwrap();
            t.expect_client(b"Subject: hi\r\n\r\nx\r\n.\r\n");
            // Three accepted recipients: three replies are due, and all three may come.
            assert_eq!(t.session.replies_due(), 3);
            t.server(b"250 2.0.0 <b@x.example> Saved\r\n").unwrap();
            t.expect_events(&["Lmtp tx0 #0 250"]);
            assert_eq!(t.session.awaiting_final().collect::<Vec<_>>(), vec![tx]);
            assert_eq!(t.session.phase(), Some(Phase::DataEnd));
            t.server(b"452 4.2.2 <c@x.example> Quota exceeded\r\n552 5.2.2 <d@x.example> Mailbox full\r\n")
                .unwrap();
            t.expect_events(&[
                "Lmtp tx0 #1 452",
                "Lmtp tx0 #2 552",
                "Done tx0 per-recipient 1 delivered",
            ]);
            // The server closed the transaction: no RSET, and the next one may start.
            t.expect_client(b"");
            assert!(t.session.is_idle());
            assert!(t.session.can_start_transaction());
            t.session.quit(&mut t.out).unwrap();
            t.expect_client(b"QUIT\r\n");
            t.server(b"221 2.0.0 Bye\r\n").unwrap();
            t.expect_events(&["Closed"]);
        });
    }

    #[test]
    fn one_message_at_a_time_so_a_miscounting_server_cannot_shift_replies() {
        both_splits(|t| {
            greet(t);
            let from = ReversePath::Address(Address::new("a@c.example").unwrap());
            let to = addrs(&["b@x.example", "c@x.example"]);
            let env = envelope_of(&from, &to);
            t.session.start_transaction(&env, &mut t.out).unwrap();
            t.client();
            t.server(b"250 OK\r\n250 OK\r\n250 OK\r\n354 OK\r\n")
                .unwrap();
            t.events();
            t.session.send_data(b"x", &mut t.out).unwrap();
            t.session.end_data(&mut t.out).unwrap();
            t.expect_client(b"x\r\n.\r\n");
            // Unlike SMTP, the next message waits for every reply of this one.
            assert!(!t.session.can_start_transaction());
            let one = addrs(&["e@x.example"]);
            let env2 = envelope_of(&from, &one);
            assert_eq!(
                t.session.start_transaction(&env2, &mut t.out),
                Err(UseError::Busy)
            );
            t.server(b"250 b ok\r\n").unwrap();
            assert!(!t.session.can_start_transaction());
            t.server(b"550 c failed\r\n").unwrap();
            t.expect_events(&[
                "Lmtp tx0 #0 250",
                "Lmtp tx0 #1 550",
                "Done tx0 per-recipient 1 delivered",
            ]);
            assert!(t.session.can_start_transaction());
            t.session.start_transaction(&env2, &mut t.out).unwrap();
            t.expect_client(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<e@x.example>\r\nDATA\r\n");
        });
    }

    #[test]
    fn refused_lhlo_is_not_followed_by_helo() {
        both_splits(|t| {
            t.server(b"220 lmtp\r\n").unwrap();
            t.expect_client(b"LHLO client.example\r\n");
            t.server(b"500 5.5.1 Unknown command\r\n").unwrap();
            t.expect_events(&["Rejected 500"]);
            t.expect_client(b"QUIT\r\n");
        });
    }

    #[test]
    fn a_close_between_replies_leaves_the_rest_in_doubt() {
        both_splits(|t| {
            greet(t);
            let from = ReversePath::Null;
            let to = addrs(&["b@x.example", "c@x.example"]);
            let env = envelope_of(&from, &to);
            let tx = t.session.start_transaction(&env, &mut t.out).unwrap();
            t.client();
            t.server(b"250 OK\r\n250 OK\r\n250 OK\r\n354 OK\r\n")
                .unwrap();
            t.events();
            t.session.send_data(b"x", &mut t.out).unwrap();
            t.session.end_data(&mut t.out).unwrap();
            t.client();
            // A 421 after the data is one recipient's answer, not the end of the session.
            t.server(b"421 4.3.0 <b@x.example> shutting down\r\n")
                .unwrap();
            t.expect_events(&["Lmtp tx0 #0 421"]);
            assert!(!t.session.is_closed());
            assert_eq!(t.session.in_doubt(&t.out).collect::<Vec<_>>(), vec![tx]);
            assert_eq!(
                t.session.handle_close(&[]),
                Err(SessionError::ConnectionClosed {
                    phase: Phase::DataEnd
                })
            );
        });
    }

    #[test]
    fn no_recipient_accepted_data_refused_once() {
        both_splits(|t| {
            greet(t);
            let from = ReversePath::Null;
            let to = addrs(&["nobody@x.example"]);
            let env = envelope_of(&from, &to);
            t.session.start_transaction(&env, &mut t.out).unwrap();
            t.client();
            t.server(
                b"250 OK\r\n550 5.1.1 User doesn't exist\r\n503 5.5.1 No valid recipients\r\n",
            )
            .unwrap();
            t.expect_events(&["Rcpt tx0 #0 550", "Done tx0 failed NoValidRecipients 503"]);
            t.expect_client(b"RSET\r\n");
        });
    }

    #[test]
    fn a_354_with_no_recipient_ends_the_session() {
        let mut t = Talk::new(lmtp_config());
        greet(&mut t);
        let from = ReversePath::Null;
        let to = addrs(&["nobody@x.example"]);
        let env = envelope_of(&from, &to);
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.client();
        // RFC 2033 wants 503; after a 354 no count of the replies to come can be trusted.
        t.server(b"250 OK\r\n550 no\r\n").unwrap();
        t.expect_events(&["Rcpt tx0 #0 550"]);
        let e = t.server(b"354 go anyway\r\n");
        assert_eq!(
            t.events(),
            ["Done tx0 failed NoValidRecipients"],
            "the transaction's end is reported before the session ends"
        );
        let _ = e;
        assert!(t.session.error().is_some());
        t.expect_client(b"");
        assert!(!t.session.can_start_transaction());
    }

    #[test]
    fn a_reply_beyond_the_recipients_is_out_of_turn() {
        let mut t = Talk::new(lmtp_config());
        greet(&mut t);
        let from = ReversePath::Null;
        let to = addrs(&["b@x.example"]);
        let env = envelope_of(&from, &to);
        t.session.start_transaction(&env, &mut t.out).unwrap();
        t.client();
        t.server(b"250 OK\r\n250 OK\r\n354 OK\r\n").unwrap();
        t.events();
        t.session.send_data(b"x", &mut t.out).unwrap();
        t.session.end_data(&mut t.out).unwrap();
        t.client();
        t.server(b"250 b ok\r\n").unwrap();
        t.expect_events(&["Lmtp tx0 #0 250", "Done tx0 per-recipient 1 delivered"]);
        assert!(matches!(
            t.server(b"250 extra\r\n"),
            Err(SessionError::UnexpectedReply { .. })
        ));
    }
}

/// Without the `chunking` feature a session asked for BDAT, talking to a server that offers
/// it, sends DATA: the feature decides, so a device build carries no BDAT code.
#[test]
fn chunking_follows_the_cargo_feature() {
    let mut t = Talk::new({
        let mut c = config();
        c.chunking = true;
        c
    });
    greet(&mut t, POSTFIX_EHLO);
    assert_eq!(t.session.chunking(), cfg!(feature = "chunking"));
    let from = ReversePath::Address(Address::new("a@c.example").unwrap());
    let to = addrs(&["b@x.example"]);
    let env = Envelope {
        from: &from,
        to: &to,
        mail: MailParams::default(),
        rcpt: RcptParams::default(),
    };
    t.session.start_transaction(&env, &mut t.out).unwrap();
    let envelope = String::from_utf8_lossy(t.out.transmit()).into_owned();
    if cfg!(feature = "chunking") {
        assert!(!envelope.contains("DATA"), "{envelope}");
        t.session.send_data(b"hi\r\n", &mut t.out).unwrap();
        let sent = String::from_utf8_lossy(t.out.transmit()).into_owned();
        assert!(sent.ends_with("BDAT 4\r\nhi\r\n"), "{sent}");
    } else {
        // DATA goes out with the envelope; the data waits for the 354.
        assert!(envelope.ends_with("DATA\r\n"), "{envelope}");
        assert!(!envelope.contains("BDAT"), "{envelope}");
    }
}

/// A session built with room for one transaction starts no second message behind the first's
/// end of data (where a default session, with PIPELINING, would), and starts it once the
/// first is answered.
#[test]
fn a_one_transaction_session_waits_for_the_first_answer() {
    use postline_proto::{Outbox, Session};

    fn feed<const T: usize>(
        s: &mut Session<postline_proto::InlineName, T>,
        out: &mut Outbox<Vec<u8>>,
        bytes: &[u8],
    ) -> Vec<String> {
        let (mut pos, mut events) = (0, Vec::new());
        for _ in 0..64 {
            let (n, ev) = s.handle_input(&bytes[pos..], out).unwrap();
            pos += n;
            match ev {
                Some(ev) => events.push(format!("{ev:?}")),
                None if n == 0 => break,
                None => {}
            }
        }
        assert_eq!(pos, bytes.len());
        events
    }
    /// MAIL, RCPT and DATA answered, the data and its end written.
    fn one_message<const T: usize>(
        s: &mut Session<postline_proto::InlineName, T>,
        out: &mut Outbox<Vec<u8>>,
    ) {
        let from = ReversePath::Address(Address::new("a@c.example").unwrap());
        let to = addrs(&["b@x.example"]);
        let env = Envelope {
            from: &from,
            to: &to,
            mail: MailParams::default(),
            rcpt: RcptParams::default(),
        };
        s.start_transaction(&env, out).unwrap();
        let events = feed(s, out, b"250 ok\r\n250 ok\r\n354 go\r\n");
        assert!(
            events.iter().any(|e| e.starts_with("SendData")),
            "{events:?}"
        );
        s.send_data(b"m\r\n", out).unwrap();
        s.end_data(out).unwrap();
    }
    let ehlo = b"250-mx.example.com\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

    let mut many = Session::new(config());
    let mut out = Outbox::new(Vec::new());
    feed(&mut many, &mut out, b"220 hi\r\n");
    feed(&mut many, &mut out, ehlo);
    one_message(&mut many, &mut out);
    assert!(
        many.can_start_transaction(),
        "the default session pipelines the next message"
    );

    let mut one: Session<_, 1> = Session::with_transactions(config());
    let mut out = Outbox::new(Vec::new());
    feed(&mut one, &mut out, b"220 hi\r\n");
    feed(&mut one, &mut out, ehlo);
    assert!(one.can_start_transaction());
    one_message(&mut one, &mut out);
    assert!(!one.can_start_transaction(), "no room for a second message");
    let events = feed(&mut one, &mut out, b"250 queued\r\n");
    assert!(
        events.iter().any(|e| e.starts_with("TransactionDone")),
        "{events:?}"
    );
    assert!(one.can_start_transaction());
    assert!(core::mem::size_of_val(&one) < core::mem::size_of_val(&many));
}

/// A name whose `as_ref` gives a valid domain when checked and a line break when copied
/// (the caller's `AsRef` is the caller's code): the session announces only a checked name,
/// never the injected command.
#[test]
fn a_name_that_changes_after_its_check_is_never_announced() {
    use std::cell::Cell;
    struct Shifty(Cell<u32>);
    impl AsRef<str> for Shifty {
        fn as_ref(&self) -> &str {
            let n = self.0.get();
            self.0.set(n + 1);
            if n == 0 {
                "client.example"
            } else {
                "x\r\nMAIL FROM:<evil@x>"
            }
        }
    }
    let name = Domain::new(Shifty(Cell::new(0))).unwrap();
    let mut t = Talk::new(SessionConfig::new(&name));
    t.server(b"220 mx.example.com ESMTP\r\n").unwrap();
    t.expect_client(b"EHLO localhost\r\n");
}
