//! `postline send --quit-after mail|rcpt` against real servers: the replies are reported,
//! DATA is never sent, and nothing is stored.

use serde_json::Value;

use postline_testkit::{run_code, stderr, stdout, Aiosmtpd, Sandbox, SmtpSink};

/// The client's lines of a `-v` transcript (the commands postline wrote).
fn client_lines(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|l| l.split_once("C: ").map(|(_, c)| c.to_string()))
        .collect()
}

#[test]
fn rcpt_check_reports_each_recipient_and_stores_nothing() {
    let srv = Aiosmtpd::builder().reject_rcpt("refuse").start();
    let sb = Sandbox::new();
    let base = || {
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("ok@example.com,refuse-me@example.com")
            .arg("--quit-after")
            .arg("rcpt")
    };
    // One refused recipient: 67, as `send` gives for the same replies.
    let o = run_code(base().verbose(), 67);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.contains("ok@example.com") && l.contains("accepted") && l.contains("250")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("refuse-me@example.com")
            && l.contains("refused")
            && l.contains("550")),
        "{out}"
    );
    let sent = client_lines(&stderr(&o));
    assert!(sent.iter().any(|l| l.starts_with("MAIL FROM:")), "{sent:?}");
    assert_eq!(
        sent.iter().filter(|l| l.starts_with("RCPT TO:")).count(),
        2,
        "{sent:?}"
    );
    assert!(
        !sent.iter().any(|l| l == "DATA" || l.starts_with("BDAT")),
        "{sent:?}"
    );
    let after_rcpt: Vec<&String> = sent
        .iter()
        .skip_while(|l| !l.starts_with("RCPT TO:"))
        .filter(|l| !l.starts_with("RCPT TO:"))
        .collect();
    assert_eq!(after_rcpt, ["RSET", "QUIT"], "{sent:?}");
    // --partial-ok as for send.
    run_code(base().arg("--partial-ok"), 0);
    // JSON: every reply of the steps taken.
    let o = run_code(base().json(), 67);
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["quit_after"], "rcpt");
    assert_eq!(v["status"], "partial");
    assert_eq!(v["greeting"]["code"], 220);
    assert_eq!(v["mail"]["code"], 250);
    assert_eq!(v["recipients"][0]["address"], "ok@example.com");
    assert_eq!(v["recipients"][0]["status"], "accepted");
    assert_eq!(v["recipients"][0]["reply"]["code"], 250);
    assert_eq!(v["recipients"][1]["status"], "refused");
    assert_eq!(v["recipients"][1]["reply"]["code"], 550);
    assert_eq!(v["exit_code"], 67);
    // Every recipient accepted: 0. Every one refused: 67 (send's NoValidRecipients code).
    run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("ok@example.com")
            .arg("--quit-after=rcpt"),
        0,
    );
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("refuse1@example.com,refuse2@example.com")
            .arg("--quit-after=rcpt"),
        67,
    );
    assert_eq!(
        stdout(&o).lines().filter(|l| l.contains("refused")).count(),
        2,
        "{}",
        stdout(&o)
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(srv.messages().is_empty(), "a check stored a message");
}

#[test]
fn mail_check_sends_mail_only() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .arg("--quit-after")
            .arg("mail")
            .verbose(),
        0,
    );
    assert!(stdout(&o).contains("250"), "{}", stdout(&o));
    let sent = client_lines(&stderr(&o));
    let after_mail: Vec<&String> = sent
        .iter()
        .skip_while(|l| !l.starts_with("MAIL FROM:"))
        .collect();
    assert_eq!(after_mail.len(), 3, "{sent:?}");
    assert_eq!(after_mail[1], "RSET", "{sent:?}");
    assert_eq!(after_mail[2], "QUIT", "{sent:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(srv.messages().is_empty());
}

#[test]
fn refusals_at_the_stage_give_send_exit_codes_smtp_sink() {
    let sb = Sandbox::new();
    // MAIL refused for good: the code send gives for the same refusal.
    let hard = SmtpSink::start(&["-f", "MAIL"]);
    let send_code = run_code_any(
        sb.send(&hard.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
    );
    let o = run_code(
        sb.send(&hard.addr())
            .from("a@example.com")
            .to("b@example.com")
            .arg("--quit-after=rcpt")
            .json(),
        send_code,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["mail"]["code"], 500, "{v}");
    assert_eq!(v["status"], "refused");
    assert_eq!(v["recipients"][0]["status"], "not checked", "{v}");
    run_code(
        sb.send(&hard.addr())
            .from("a@example.com")
            .arg("--quit-after=mail"),
        send_code,
    );
    // RCPT refused for now: the code send gives for the same refusal.
    let soft = SmtpSink::start(&["-r", "RCPT"]);
    let send_code = run_code_any(
        sb.send(&soft.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
    );
    let o = run_code(
        sb.send(&soft.addr())
            .from("a@example.com")
            .to("b@example.com")
            .arg("--quit-after=rcpt")
            .verbose(),
        send_code,
    );
    let sent = client_lines(&stderr(&o));
    assert!(!sent.iter().any(|l| l == "DATA"), "{sent:?}");
    // Accepted by smtp-sink: 0.
    let ok = SmtpSink::start(&[]);
    run_code(
        sb.send(&ok.addr())
            .from("a@example.com")
            .to("b@example.com,c@example.com")
            .arg("--quit-after=rcpt"),
        0,
    );
}

fn run_code_any(cmd: postline_testkit::SendCmd) -> i32 {
    let o = cmd.into_command().output().expect("run postline");
    o.status.code().expect("exit code")
}

const USER: &str = "mailuser";
const PASSWORD: &str = "s3cret-Pa55word";

/// Each setup stage, over STARTTLS and AUTH: what postline wrote ends with the stage, then
/// QUIT (and RSET after MAIL); exit 0; nothing stored.
#[test]
fn each_setup_stage_stops_there() {
    let ca = postline_testkit::TestCa::new();
    let srv = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth(USER, PASSWORD)
        .start();
    let sb = Sandbox::new();
    let run = |stage: &str, code: i32| {
        let o = run_code(
            sb.send_bare()
                .server(srv.addr())
                .tls("starttls")
                .ca_file(&ca.ca_path)
                .timeout(5)
                .user(USER)
                .password_env("POSTLINE_TEST_PW")
                .env("POSTLINE_TEST_PW", PASSWORD)
                .from("a@example.com")
                .arg(format!("--quit-after={stage}"))
                .verbose(),
            code,
        );
        let sent = client_lines(&stderr(&o));
        // Only the verb of each line (EHLO's name and AUTH's redacted data left out).
        let verbs: Vec<String> = sent
            .iter()
            .map(|l| l.split([' ', ':']).next().unwrap_or("").to_string())
            .collect();
        (o, verbs)
    };
    for stage in ["connect", "banner"] {
        let (o, verbs) = run(stage, 0);
        assert_eq!(verbs, ["QUIT"], "{stage}");
        assert!(stdout(&o).contains("220"), "{}", stdout(&o));
    }
    let (_, verbs) = run("helo", 0);
    assert_eq!(verbs, ["EHLO", "QUIT"]);
    let (o, verbs) = run("tls", 0);
    assert_eq!(verbs, ["EHLO", "STARTTLS", "EHLO", "QUIT"]);
    assert!(stdout(&o).contains("tls: "), "{}", stdout(&o));
    let (o, verbs) = run("auth", 0);
    assert!(stdout(&o).contains("auth: 235"), "{}", stdout(&o));
    assert_eq!(verbs[..3], ["EHLO", "STARTTLS", "EHLO"]);
    assert_eq!(verbs[3], "AUTH", "{verbs:?}");
    assert_eq!(verbs.last().map(String::as_str), Some("QUIT"));
    assert!(!verbs.iter().any(|v| v == "MAIL"), "{verbs:?}");
    let (_, verbs) = run("mail", 0);
    assert_eq!(
        verbs[verbs.len() - 3..],
        ["MAIL", "RSET", "QUIT"],
        "{verbs:?}"
    );
    // JSON of a setup stage.
    let o = run_code(
        sb.send_bare()
            .server(srv.addr())
            .tls("starttls")
            .ca_file(&ca.ca_path)
            .timeout(5)
            .arg("--quit-after=tls")
            .json(),
        0,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["quit_after"], "tls");
    assert_eq!(v["greeting"]["code"], 220);
    assert_eq!(v["ehlo"]["code"], 250);
    assert!(v["tls"]["version"].is_string(), "{v}");
    assert_eq!(v["exit_code"], 0);
    // A wrong password at the auth stage: 77, as for send.
    let o = run_code(
        sb.send_bare()
            .server(srv.addr())
            .tls("starttls")
            .ca_file(&ca.ca_path)
            .timeout(5)
            .user(USER)
            .password_env("POSTLINE_TEST_PW")
            .env("POSTLINE_TEST_PW", "wrong")
            .arg("--quit-after=auth"),
        77,
    );
    let _ = o;
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(srv.messages().is_empty(), "a stage stop stored a message");
}

/// Refusals at a setup stage give the exit code `send` gives for them.
#[test]
fn setup_refusals_give_send_exit_codes() {
    let sb = Sandbox::new();
    // No STARTTLS offered, TLS required: at the tls stage as for send.
    let sink = SmtpSink::start(&[]);
    let send_code = run_code_any(
        sb.send_bare()
            .server(sink.addr())
            .tls("starttls")
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
    );
    assert_ne!(send_code, 0);
    run_code(
        sb.send_bare()
            .server(sink.addr())
            .tls("starttls")
            .arg("--quit-after=tls"),
        send_code,
    );
    // EHLO and HELO refused: at the helo stage as for send.
    let refusing = SmtpSink::start(&["-f", "EHLO,HELO"]);
    let send_code = run_code_any(
        sb.send(&refusing.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
    );
    assert_ne!(send_code, 0);
    run_code(
        sb.send(&refusing.addr()).arg("--quit-after=helo"),
        send_code,
    );
    // The banner stage does not say EHLO, so the same server passes it.
    run_code(sb.send(&refusing.addr()).arg("--quit-after=banner"), 0);
}
