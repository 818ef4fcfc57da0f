//! DSN flags (`send --dsn-*`, sendmail's `-N`, `-R`, `-V`) and over-long lines in ready
//! messages, end to end: the `postline` binary against aiosmtpd on 127.0.0.1, with DSN
//! offered (`--dsn`: it then records RET/ENVID/NOTIFY/ORCPT as received) and without (it
//! then refuses those parameters with 555, so a message that arrives proves none was sent).
//! aiosmtpd is also a strict server for line length: a line over 999 octets gets "500 Line
//! too long" after the whole upload.

use std::time::Duration;

use serde_json::Value;

use postline_testkit::{run_code, stderr, stdout, Aiosmtpd, Sandbox, StoredMessage};

const STORE_WAIT: Duration = Duration::from_secs(10);

#[track_caller]
fn only_message(srv: &Aiosmtpd) -> StoredMessage {
    let msgs = srv.wait_for_messages(1, STORE_WAIT);
    assert_eq!(msgs.len(), 1, "expected exactly one stored message");
    msgs.into_iter().next().unwrap()
}

/// The DSN parameters among MAIL's options (aiosmtpd records them upper-cased).
fn dsn_mail(m: &StoredMessage) -> Vec<&str> {
    m.mail_options
        .iter()
        .map(String::as_str)
        .filter(|o| o.starts_with("RET=") || o.starts_with("ENVID="))
        .collect()
}

fn sendmail_sandbox(srv: &Aiosmtpd) -> Sandbox {
    let sb = Sandbox::new();
    sb.config(&format!(
        "default = \"relay\"\n[accounts.relay]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"daemon@example.com\"\n",
        srv.port()
    ));
    sb
}

/// Every line of `content` (CRLF-separated) fits in 998 octets.
#[track_caller]
fn lines_fit(content: &[u8]) -> usize {
    let mut longest = 0;
    for line in content.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(!line.contains(&b'\r'), "bare CR on the wire");
        longest = longest.max(line.len());
    }
    assert!(longest <= 998, "a line of {longest} octets went out");
    longest
}

const DSN_FLAGS: [&str; 7] = [
    "--dsn-notify",
    "success,failure",
    "--dsn-ret",
    "hdrs",
    "--dsn-envid",
    "Q+1=2",
    "--dsn-orcpt",
];

// --------------------------------------------------------------------------------------- DSN

#[test]
fn send_dsn_flags_reach_a_server_that_offers_dsn() {
    let srv = Aiosmtpd::builder().dsn().start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .body("hi")
            .args(DSN_FLAGS)
            .json(),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["dsn"], "sent", "{v}");
    let m = only_message(&srv);
    assert_eq!(dsn_mail(&m), ["RET=HDRS", "ENVID=Q+2B1+3D2"]);
    assert_eq!(
        m.rcpt_options,
        ["NOTIFY=SUCCESS,FAILURE", "ORCPT=RFC822;B@EXAMPLE.ORG"]
    );
    // never, alone.
    let srv = Aiosmtpd::builder().dsn().start();
    run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .body("hi")
            .args(["--dsn-notify", "never"]),
        0,
    );
    let m = only_message(&srv);
    assert!(dsn_mail(&m).is_empty(), "{:?}", m.mail_options);
    assert_eq!(m.rcpt_options, ["NOTIFY=NEVER"]);
}

#[test]
fn send_dsn_flags_to_a_server_without_dsn_go_without_them_and_say_so() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .body("hi")
            .args(DSN_FLAGS),
        0,
    );
    let err = stderr(&o);
    assert!(
        err.contains("does not offer DSN") && err.contains("without the DSN parameters"),
        "{err}"
    );
    // This server refuses DSN parameters with 555: the message arriving proves none was sent.
    let m = only_message(&srv);
    assert!(dsn_mail(&m).is_empty(), "{:?}", m.mail_options);
    assert!(m.rcpt_options.is_empty(), "{:?}", m.rcpt_options);
    let srv = Aiosmtpd::start();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .body("hi")
            .args(DSN_FLAGS)
            .json(),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["dsn"], "not offered", "{v}");
    // No DSN asked: nothing said.
    let srv = Aiosmtpd::start();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .body("hi"),
        0,
    );
    assert!(!stderr(&o).contains("DSN"), "{}", stderr(&o));
}

#[test]
fn bad_dsn_values_are_usage_errors_before_connecting() {
    let sb = Sandbox::new();
    // Nothing listens: a usage error comes first.
    let server = format!("127.0.0.1:{}", postline_testkit::free_port());
    let long = "x".repeat(101);
    for (flags, says) in [
        (&["--dsn-notify", "never,success"][..], "never stands alone"),
        (&["--dsn-notify", "sometimes"], "not one of"),
        (&["--dsn-notify", ""], "expected never"),
        (&["--dsn-ret", "body"], "possible values"),
        (&["--dsn-envid", "has space"], "printable US-ASCII"),
        (&["--dsn-envid", "caf\u{e9}"], "printable US-ASCII"),
        (&["--dsn-envid", &long], "at most 100"),
    ] {
        let o = run_code(
            sb.send(&server)
                .from("a@example.com")
                .to("b@example.org")
                .body("hi")
                .args(flags),
            64,
        );
        assert!(stderr(&o).contains(says), "{flags:?}: {}", stderr(&o));
    }
}

#[test]
fn sendmail_dsn_flags_are_honoured_and_quiet_unless_verbose() {
    let msg = "To: b@example.org\r\nSubject: cron\r\n\r\nbody\r\n";
    let srv = Aiosmtpd::builder().dsn().start();
    let sb = sendmail_sandbox(&srv);
    let o = run_code(
        sb.cmd(&[
            "sendmail",
            "-i",
            "-N",
            "never",
            "-Rhdrs",
            "-V",
            "job-42",
            "b@example.org",
        ])
        .write_stdin(msg),
        0,
    );
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let m = only_message(&srv);
    assert_eq!(dsn_mail(&m), ["RET=HDRS", "ENVID=JOB-42"]);
    assert_eq!(m.rcpt_options, ["NOTIFY=NEVER"]);

    // A server without DSN: delivered without them; a note only with -v.
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    let o = run_code(
        sb.cmd(&[
            "sendmail",
            "-i",
            "-N",
            "success,failure,delay",
            "b@example.org",
        ])
        .write_stdin(msg),
        0,
    );
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let o = run_code(
        sb.cmd(&["sendmail", "-i", "-v", "-N", "never", "b@example.org"])
            .write_stdin(msg),
        0,
    );
    assert!(stderr(&o).contains("does not offer DSN"), "{}", stderr(&o));
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().all(|m| m.rcpt_options.is_empty()));

    // A bad value is a usage error.
    let o = run_code(
        sb.cmd(&["sendmail", "-N", "never,failure", "b@example.org"])
            .write_stdin(msg),
        64,
    );
    assert!(stderr(&o).contains("-N"), "{}", stderr(&o));
}

#[test]
fn dsn_parameters_travel_through_the_queue() {
    let srv = Aiosmtpd::builder().dsn().start();
    // One sandbox: `queue flush` resolves sendmail's route (the default account) by it.
    let sb = sendmail_sandbox(&srv);
    let spool = sb.spool_str();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .body("hi")
            .args(DSN_FLAGS)
            .args(["--queue-only", "--queue-dir", &spool]),
        0,
    );
    let id = stdout(&o).trim().to_string();
    let o = run_code(&mut sb.queue("show", &[&id]), 0);
    assert!(
        stdout(&o).contains("dsn         notify=success,failure ret=hdrs envid=Q+1=2 orcpt"),
        "{}",
        stdout(&o)
    );
    // sendmail's default queueing (-odq here) keeps them too.
    run_code(
        sb.cmd(&[
            "sendmail",
            "-odq",
            "-i",
            "-N",
            "never",
            "-V",
            "cron-7",
            "c@example.org",
        ])
        .env("POSTLINE_QUEUE_DIR", &spool)
        .write_stdin("Subject: x\r\n\r\nbody\r\n"),
        0,
    );
    run_code(&mut sb.queue("flush", &[]), 0);
    let mut msgs = srv.wait_for_messages(2, STORE_WAIT);
    msgs.sort_by(|a, b| a.rcpt_tos.cmp(&b.rcpt_tos));
    assert_eq!(dsn_mail(&msgs[0]), ["RET=HDRS", "ENVID=Q+2B1+3D2"]);
    assert_eq!(
        msgs[0].rcpt_options,
        ["NOTIFY=SUCCESS,FAILURE", "ORCPT=RFC822;B@EXAMPLE.ORG"]
    );
    assert_eq!(dsn_mail(&msgs[1]), ["ENVID=CRON-7"]);
    assert_eq!(msgs[1].rcpt_options, ["NOTIFY=NEVER"]);
}

// -------------------------------------------------------------------------------- long lines

/// A ready message whose line 4 is `n` octets long.
fn long_message(n: usize) -> Vec<u8> {
    let mut m = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: long\r\n\r\n".to_vec();
    // Line 4 is the empty line; line 5 the long one.
    m.extend(std::iter::repeat_n(b'x', n));
    m.extend_from_slice(b"\r\nend\r\n");
    m
}

#[test]
fn a_ready_message_with_a_long_line_is_refused_before_connecting() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let path = sb.write("long.eml", long_message(1500));
    // Nothing listens there: 65, not 75, shows nothing was tried.
    let nowhere = format!("127.0.0.1:{}", postline_testkit::free_port());
    let o = run_code(sb.send(&nowhere).to("b@example.org").message(&path), 65);
    let err = stderr(&o);
    assert!(
        err.contains("line 5 is 1500 octets long")
            && err.contains("998")
            && err.contains("--fold-long-lines"),
        "{err}"
    );
    // Not queued either.
    let spool = sb.spool_str();
    run_code(
        sb.send(&srv.addr())
            .to("b@example.org")
            .message(&path)
            .args(["--queue-only", "--queue-dir", &spool]),
        65,
    );
    assert!(sb.queue_list().is_empty());
    // A line of exactly 998 octets goes.
    let path = sb.write("fits.eml", long_message(998));
    run_code(sb.send(&srv.addr()).to("b@example.org").message(&path), 0);
    let m = only_message(&srv);
    assert_eq!(m.content, long_message(998));
}

#[test]
fn fold_long_lines_breaks_them_as_postfix_does_and_a_strict_server_takes_it() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let path = sb.write("long.eml", long_message(2500));
    run_code(
        sb.send(&srv.addr())
            .to("b@example.org")
            .message(&path)
            .arg("--fold-long-lines"),
        0,
    );
    let m = only_message(&srv);
    let expected = [
        &b"From: a@example.com\r\nTo: b@example.org\r\nSubject: long\r\n\r\n"[..],
        &b"x".repeat(998),
        b"\r\n ",
        &b"x".repeat(997),
        b"\r\n ",
        &b"x".repeat(505),
        b"\r\nend\r\n",
    ]
    .concat();
    assert_eq!(m.content, expected);
    lines_fit(&m.content);
}

#[test]
fn a_queued_ready_message_is_checked_and_folded_before_it_is_queued() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let spool = sb.spool_str();
    let path = sb.write("long.eml", long_message(5000));
    run_code(
        sb.send(&srv.addr())
            .to("b@example.org")
            .message(&path)
            .args(["--fold-long-lines", "--queue-only", "--queue-dir", &spool]),
        0,
    );
    run_code(&mut sb.queue("flush", &[]), 0);
    let m = only_message(&srv);
    lines_fit(&m.content);
    assert!(m.content.ends_with(b"\r\nend\r\n"));
}

#[test]
fn sendmail_mode_folds_long_lines_by_default() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    let mut msg = b"To: b@example.org\r\nSubject: php\r\n\r\n".to_vec();
    msg.extend(std::iter::repeat_n(b'y', 300_000));
    msg.extend_from_slice(b"\r\n");
    let o = run_code(
        sb.cmd(&["sendmail", "-t", "-i"]).write_stdin(msg.clone()),
        0,
    );
    assert!(stderr(&o).is_empty(), "quiet: {}", stderr(&o));
    let m = only_message(&srv);
    lines_fit(&m.content);
    // Every octet of the long line is there, with the inserted breaks (CRLF SP) only.
    let body = &m.content[m.content.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let rejoined: Vec<u8> = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .flat_map(|(i, l)| {
            if i == 0 {
                l
            } else {
                l.strip_prefix(b" ").unwrap_or(l)
            }
            .to_vec()
        })
        .collect();
    assert_eq!(rejoined, vec![b'y'; 300_000]);
    // -v says so.
    let o = run_code(sb.cmd(&["sendmail", "-t", "-i", "-v"]).write_stdin(msg), 0);
    assert!(
        stderr(&o).contains("broken as Postfix does"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_composed_message_never_has_long_lines() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    // 300 KB in one line: from a file (Linux caps one argument at 128 KiB), and 100 KB as
    // --body itself.
    let path = sb.write("body.txt", "z".repeat(300_000));
    run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .subject("big")
            .body_file(&path),
        0,
    );
    let m = only_message(&srv);
    assert!(lines_fit(&m.content) <= 78);
    assert!(m.content.len() > 300_000);
    let srv = Aiosmtpd::start();
    run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.org")
            .body("w".repeat(100_000)),
        0,
    );
    let m = only_message(&srv);
    assert!(lines_fit(&m.content) <= 78);
}
