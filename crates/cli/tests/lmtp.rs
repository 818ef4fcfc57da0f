//! `postline send --protocol lmtp` against real LMTP servers: smtp-sink in LMTP mode here,
//! Dovecot's LMTP (a real mailbox per recipient, over TCP and a Unix socket) in
//! `lmtp_dovecot.rs`.

use serde_json::Value;

use postline_testkit::{run_code, stderr, stdout, Sandbox, SmtpSink};

#[test]
fn lmtp_to_smtp_sink_reports_each_recipient() {
    let sink = SmtpSink::start(&["-L"]);
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&sink.addr())
            .arg("--protocol")
            .arg("lmtp")
            .from("a@example.com")
            .to("b@example.com,c@example.com")
            .subject("lmtp")
            .body("hello")
            .verbose(),
        0,
    );
    let err = stderr(&o);
    assert!(err.contains("C: LHLO "), "{err}");
    assert!(!err.contains("C: EHLO"), "{err}");
    assert_eq!(err.matches("S: 250 2.2.0 Ok").count(), 2, "{err}");
    let out = stdout(&o);
    for a in ["b@example.com", "c@example.com"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("accepted") && l.contains(a) && l.contains("2.2.0")),
            "{out}"
        );
    }
}

#[test]
fn refusals_after_the_data_give_the_exit_code_and_json_per_recipient() {
    let sb = Sandbox::new();
    // 5xx for every recipient after the data: failed, exit 65 (the message was refused).
    for (flag, code, status) in [("-f", 65, "failed"), ("-r", 75, "deferred")] {
        let sink = SmtpSink::start(&["-L", flag, "."]);
        let o = run_code(
            sb.send(&sink.addr())
                .arg("--protocol")
                .arg("lmtp")
                .from("a@example.com")
                .to("b@example.com,c@example.com")
                .body("hello")
                .json(),
            code,
        );
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let recipients = v["recipients"].as_array().unwrap();
        assert_eq!(recipients.len(), 2, "{v}");
        for r in recipients {
            assert_eq!(r["accepted"], true, "{v}");
            assert_eq!(r["status"], status, "{v}");
            assert!(r["data_reply"]["code"].as_u64().is_some(), "{v}");
        }
    }
}

#[test]
fn a_close_after_the_data_is_in_doubt() {
    let sink = SmtpSink::start(&["-L", "-q", "."]);
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&sink.addr())
            .arg("--protocol")
            .arg("lmtp")
            .from("a@example.com")
            .to("b@example.com")
            .body("hello"),
        75,
    );
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("in-doubt") && l.contains("b@example.com")),
        "{out}"
    );
}

#[test]
fn lmtp_needs_a_server_and_an_smtp_server_says_no() {
    let sb = Sandbox::new();
    let o = run_code(
        sb.send_bare()
            .arg("--protocol")
            .arg("lmtp")
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        64,
    );
    assert!(
        stderr(&o).contains("--protocol lmtp needs --server"),
        "{}",
        stderr(&o)
    );
    // A socket path is kept whole (a colon is part of it); nothing there is transient.
    let o = run_code(
        sb.send_bare()
            .server("/run/nothing/lmtp:24")
            .arg("--protocol")
            .arg("lmtp")
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        75,
    );
    assert!(
        stderr(&o).contains("/run/nothing/lmtp:24"),
        "{}",
        stderr(&o)
    );
    // A relative path, a URL, TLS on a socket: told what to give instead.
    for (server, extra, words) in [
        ("./run/lmtp", None, "absolute path"),
        ("lmtp://127.0.0.1:24", None, "not a URL"),
        (
            "/run/nothing/lmtp",
            Some("starttls"),
            "TLS over a Unix socket",
        ),
    ] {
        let mut cmd = sb
            .send_bare()
            .server(server)
            .from("a@example.com")
            .to("b@example.com")
            .body("x");
        if let Some(tls) = extra {
            cmd = cmd.tls(tls);
        }
        let o = run_code(cmd, 64);
        assert!(stderr(&o).contains(words), "{server}: {}", stderr(&o));
    }
    // An SMTP server refuses LHLO; no HELO follows.
    let sink = SmtpSink::start(&[]);
    let o = run_code(
        sb.send(&sink.addr())
            .arg("--protocol")
            .arg("lmtp")
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
            .verbose(),
        69,
    );
    assert!(!stderr(&o).contains("C: HELO"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("hint: the server did not know the greeting command"),
        "{}",
        stderr(&o)
    );
    // swaks spells it LMTP.
    let sink = SmtpSink::start(&["-L"]);
    run_code(
        sb.send(&sink.addr())
            .arg("--protocol")
            .arg("LMTP")
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        0,
    );
}

/// A mail store that delivers to the first recipient and then drops the connection: the
/// first is delivered, the second in doubt, and the exit code is 67, not 75 (a caller that
/// sends it again would give the first a second copy).
#[test]
fn a_close_between_the_replies_keeps_the_delivered_one() {
    use postline_testkit::{lmtp_two_recipients, ScriptedServer, Step};
    let srv = ScriptedServer::start(lmtp_two_recipients(vec![
        Step::reply("250 2.0.0 <b@example.com> Saved"),
        Step::Close,
    ]));
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .arg("--protocol")
            .arg("lmtp")
            .from("a@example.com")
            .to("b@example.com,c@example.com")
            .body("hello")
            .json(),
        67,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["status"], "unknown", "{v}");
    // Not to be sent again whole: b has it.
    assert_eq!(v["retryable"], false, "{v}");
    let r = v["recipients"].as_array().unwrap();
    assert_eq!(r[0]["status"], "delivered", "{v}");
    assert_eq!(r[0]["data_reply"]["code"], 250, "{v}");
    assert_eq!(r[1]["status"], "in-doubt", "{v}");
    srv.finish().assert_ok();
}

/// `--queue` keeps LMTP with the message: the queued route says so, and the retry speaks LHLO
/// again (an EHLO would be refused by the LMTP sink; the 450 after the data proves the
/// transaction got that far).
#[test]
fn a_queued_lmtp_message_is_retried_over_lmtp() {
    let sink = SmtpSink::start(&["-L", "-r", "."]);
    let sb = Sandbox::new();
    let spool = sb.spool_str();
    let o = run_code(
        sb.send(&sink.addr())
            .arg("--protocol")
            .arg("lmtp")
            .args(["--queue", "--queue-dir", &spool])
            .from("a@example.com")
            .to("b@example.com")
            .body("hello"),
        0,
    );
    assert!(
        stderr(&o).contains("postline: queued as "),
        "{}",
        stderr(&o)
    );
    let list = sb.queue_list();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let o = run_code(&mut sb.queue("show", &[&id]), 0);
    assert!(stdout(&o).contains("over LMTP"), "{}", stdout(&o));
    run_code(&mut sb.queue("flush", &[]), 0);
    let list = sb.queue_list();
    assert_eq!(list[0]["attempts"], 2, "{list:?}");
    let last = list[0]["last_error"].as_str().unwrap();
    assert!(last.contains("450 4.3.0"), "{last}");
}

/// Into Dovecot: over its Unix socket from the flags, and over TCP from an account with
/// `protocol = "lmtp"`; a user with a mailbox, one that does not exist and one over quota.
#[test]
fn into_dovecot_over_its_socket_and_from_an_account() {
    use postline_testkit::Dovecot;
    let dovecot = Dovecot::builder()
        .user("alice", "unused")
        .user("carol", "unused")
        .quota("carol", 10)
        .lmtp()
        .start();
    let sb = Sandbox::new();
    let socket = dovecot.lmtp_socket().unwrap().to_str().unwrap().to_string();
    let to = "alice@example.org,bob@example.org,carol@example.org";
    let statuses = |o: &std::process::Output| -> Vec<String> {
        let v: Value = serde_json::from_str(stdout(o).trim()).unwrap();
        v["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_string())
            .collect()
    };
    // No --tls: a Unix socket needs none. Some mailboxes took it and others did not: 67.
    let o = run_code(
        sb.send_bare()
            .server(&socket)
            .arg("--protocol")
            .arg("lmtp")
            .from("sender@example.com")
            .to(to)
            .subject("over the socket")
            .body("hello")
            .json(),
        67,
    );
    assert_eq!(
        statuses(&o),
        ["delivered", "failed", "failed"],
        "{}",
        stdout(&o)
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["recipients"][2]["data_reply"]["code"], 552, "{v}");
    assert_eq!(
        dovecot
            .wait_maildir("alice", 1, std::time::Duration::from_secs(10))
            .len(),
        1
    );

    sb.config(&format!(
        "[accounts.store]\nserver = \"127.0.0.1\"\nport = {}\nprotocol = \"lmtp\"\n",
        dovecot.lmtp_port().unwrap()
    ));
    let o = run_code(
        sb.send_bare()
            .account("store")
            .from("sender@example.com")
            .to("alice@example.org")
            .subject("from the account")
            .body("hello")
            .verbose(),
        0,
    );
    assert!(stderr(&o).contains("C: LHLO "), "{}", stderr(&o));
    let got = dovecot.wait_maildir("alice", 2, std::time::Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&got[1]).contains("Subject: from the account"));
    assert!(dovecot.maildir_messages("carol").is_empty());
}
