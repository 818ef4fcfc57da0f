//! `postline send --quit-after` and `postline probe --quit-after` against real servers: the
//! replies are reported, nothing is sent beyond the stage (never DATA), nothing is stored.

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

// ------------------------------------------------------------------------- probe --quit-after

/// The verb of each line postline wrote (EHLO's name and AUTH's redacted data left out).
fn verbs(transcript: &str) -> Vec<String> {
    client_lines(transcript)
        .iter()
        .map(|l| l.split([' ', ':']).next().unwrap_or("").to_string())
        .collect()
}

/// Each stage of `probe --quit-after` over STARTTLS and AUTH: QUIT right after the stage,
/// nothing beyond it, the replies in the text and in the JSON; a wrong password is 77.
#[test]
fn probe_stops_after_each_stage() {
    let ca = postline_testkit::TestCa::new();
    let srv = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth(USER, PASSWORD)
        .start();
    let sb = Sandbox::new();
    let addr = srv.addr();
    let ca_path = ca.ca_path.to_str().expect("CA path").to_string();
    let probe = |extra: &[&str], password: &str, code: i32| {
        let mut args = vec![
            "probe",
            "--server",
            &addr,
            "--tls",
            "starttls",
            "--ca-file",
            &ca_path,
            "--timeout",
            "5",
            "--user",
            USER,
            "--password-env",
            "POSTLINE_TEST_PW",
        ];
        args.extend(extra);
        let mut cmd = sb.cmd(&args);
        cmd.env("POSTLINE_TEST_PW", password);
        run_code(cmd, code)
    };
    let json = |stage: &str| -> Value {
        let o = probe(&["--quit-after", stage, "--json"], PASSWORD, 0);
        serde_json::from_str(stdout(&o).trim()).expect("JSON")
    };

    // connect and banner: the greeting, then QUIT; no EHLO.
    for stage in ["connect", "banner"] {
        let o = probe(&["--quit-after", stage, "-v"], PASSWORD, 0);
        assert_eq!(verbs(&stderr(&o)), ["QUIT"], "{stage}");
        let out = stdout(&o);
        assert!(
            out.lines()
                .any(|l| l.starts_with("banner") && l.contains("220")),
            "{out}"
        );
        assert!(!out.contains("extensions"), "{out}");
        assert!(out.contains("stopped after banner"), "{out}");
    }
    let v = json("banner");
    assert_eq!(v["quit_after"], "banner");
    assert!(v["banner"].as_str().unwrap().starts_with("220 "), "{v}");
    assert_eq!(v["ehlo"], serde_json::json!([]), "{v}");
    assert!(v["tls"].is_null(), "{v}");
    assert_eq!(v["exit_code"], 0);

    // helo: the EHLO reply in clear text, then QUIT; no STARTTLS.
    let o = probe(&["--quit-after", "helo", "-v"], PASSWORD, 0);
    assert_eq!(verbs(&stderr(&o)), ["EHLO", "QUIT"]);
    let out = stdout(&o);
    assert!(out.lines().any(|l| l.starts_with("extensions")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("STARTTLS") && l.contains("offered")),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("TLS ")), "{out}");
    let v = json("helo");
    assert!(v["ehlo"].as_array().unwrap().len() > 1, "{v}");
    assert_eq!(v["starttls_offered"], true);
    assert!(v["tls"].is_null(), "{v}");

    // tls, and no --quit-after: the full probe (clear text, then STARTTLS); no AUTH.
    for extra in [&["--quit-after", "tls", "-v"][..], &["-v"][..]] {
        let o = probe(extra, PASSWORD, 0);
        assert_eq!(
            verbs(&stderr(&o)),
            ["EHLO", "QUIT", "EHLO", "STARTTLS", "EHLO", "QUIT"],
            "{extra:?}"
        );
        let out = stdout(&o);
        assert!(out.contains("verifies: yes"), "{out}");
        assert!(!out.contains("auth result"), "{out}");
    }
    let v = json("tls");
    assert_eq!(v["quit_after"], "tls");
    assert!(v["tls"]["version"].is_string(), "{v}");
    assert!(v["tls"]["ehlo"].as_array().unwrap().len() > 1, "{v}");
    assert!(v.get("authentication").is_none(), "{v}");

    // auth: the probe, then a session as `send` opens it authenticates, then QUIT.
    let o = probe(&["--quit-after", "auth", "-v"], PASSWORD, 0);
    let sent = verbs(&stderr(&o));
    let auth_at = sent.iter().position(|v| v == "AUTH").expect("AUTH");
    assert_eq!(
        sent[..auth_at],
        ["EHLO", "QUIT", "EHLO", "STARTTLS", "EHLO", "QUIT", "EHLO", "STARTTLS", "EHLO"],
        "{sent:?}"
    );
    assert_eq!(sent.iter().filter(|v| *v == "AUTH").count(), 1, "{sent:?}");
    assert_eq!(sent.last().map(String::as_str), Some("QUIT"), "{sent:?}");
    assert!(!sent.iter().any(|v| v == "MAIL"), "{sent:?}");
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("auth result") && l.contains("accepted") && l.contains("235")),
        "{out}"
    );
    let v = json("auth");
    assert_eq!(v["quit_after"], "auth");
    assert_eq!(v["authentication"]["status"], "accepted", "{v}");
    assert!(
        v["authentication"]["reply"]
            .as_str()
            .unwrap()
            .starts_with("235"),
        "{v}"
    );
    assert!(v["tls"]["version"].is_string(), "{v}");

    // A wrong password: 77, as for send, with the server's refusal.
    let o = probe(&["--quit-after", "auth", "--json"], "wrong", 77);
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["authentication"]["status"], "refused", "{v}");
    assert!(
        v["authentication"]["reply"]
            .as_str()
            .unwrap()
            .starts_with("535"),
        "{v}"
    );
    assert_eq!(v["exit_code"], 77);
    let o = probe(&["--quit-after", "auth"], "wrong", 77);
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("auth result") && l.contains("refused") && l.contains("535")),
        "{}",
        stdout(&o)
    );

    // A certificate that does not verify: no credentials go; 69 as for send.
    let o = run_code(
        {
            let mut c = sb.cmd(&[
                "probe",
                "--server",
                &addr,
                "--tls",
                "starttls",
                "--timeout",
                "5",
                "--user",
                USER,
                "--password-env",
                "POSTLINE_TEST_PW",
                "--quit-after",
                "auth",
                "-v",
            ]);
            c.env("POSTLINE_TEST_PW", PASSWORD);
            c
        },
        69,
    );
    assert!(
        !verbs(&stderr(&o)).iter().any(|v| v == "AUTH"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("not attempted"), "{}", stdout(&o));

    // mail and rcpt need an envelope; auth needs credentials: usage errors, nothing sent.
    for stage in ["mail", "rcpt"] {
        let o = probe(&["--quit-after", stage], PASSWORD, 64);
        assert!(stderr(&o).contains("postline send"), "{}", stderr(&o));
    }
    let o = run_code(
        sb.cmd(&[
            "probe",
            "--server",
            &addr,
            "--timeout",
            "5",
            "--quit-after",
            "auth",
        ]),
        64,
    );
    assert!(stderr(&o).contains("credentials"), "{}", stderr(&o));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(srv.messages().is_empty(), "a probe stored a message");
}

/// Refusals: a refused greeting, a refused EHLO/HELO, no STARTTLS, with the codes `send`
/// gives for them.
#[test]
fn probe_refusals_give_send_exit_codes() {
    let sb = Sandbox::new();
    let probe = |addr: &str, extra: &[&str], code: i32| {
        let mut args = vec!["probe", "--server", addr, "--timeout", "5"];
        args.extend(extra);
        run_code(sb.cmd(&args), code)
    };
    // The greeting refused for good (554): as send.
    let refusing = SmtpSink::start(&["-f", "CONNECT"]);
    let send_code = run_code_any(
        sb.send(&refusing.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
    );
    assert_ne!(send_code, 0);
    let o = probe(
        &refusing.addr(),
        &["--tls", "none", "--quit-after", "banner", "--json"],
        send_code,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert!(v["reply"].as_str().unwrap().starts_with('5'), "{v}");
    assert_eq!(v["exit_code"], send_code);
    let o = probe(
        &refusing.addr(),
        &["--tls", "none", "--quit-after", "connect"],
        send_code,
    );
    assert!(stderr(&o).contains("postline:"), "{}", stderr(&o));
    // EHLO and HELO refused: the banner stage passes, helo fails as for send.
    let no_ehlo = SmtpSink::start(&["-f", "EHLO,HELO"]);
    let send_code = run_code_any(
        sb.send(&no_ehlo.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
    );
    assert_ne!(send_code, 0);
    let o = probe(
        &no_ehlo.addr(),
        &["--tls", "none", "--quit-after", "banner", "-v"],
        0,
    );
    assert_eq!(verbs(&stderr(&o)), ["QUIT"]);
    probe(
        &no_ehlo.addr(),
        &["--tls", "none", "--quit-after", "helo"],
        send_code,
    );
    // No STARTTLS offered, TLS required: helo passes; tls gives send's code.
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
    let o = probe(
        &sink.addr(),
        &["--tls", "starttls", "--quit-after", "helo"],
        0,
    );
    assert!(stdout(&o).contains("not offered"), "{}", stdout(&o));
    probe(
        &sink.addr(),
        &["--tls", "starttls", "--quit-after", "tls"],
        send_code,
    );
}

/// The check asks what the send would: recipients from the message with -t, the message's
/// SIZE and the DSN parameters; every recipient refused keeps the MAIL reply and exits as
/// send would (67), without talking of a message.
#[test]
fn rcpt_check_sends_the_envelope_a_send_would() {
    let srv = Aiosmtpd::builder().dsn().reject_rcpt("refuse").start();
    let sb = Sandbox::new();
    let file = sb.write(
        "m.eml",
        "From: a@example.com\r\nTo: ok@example.com\r\nSubject: t\r\n\r\nbody\r\n",
    );
    let o = run_code(
        sb.send(&srv.addr())
            .message(&file)
            .arg("-t")
            .args([
                "--dsn-notify",
                "success,failure",
                "--dsn-ret",
                "hdrs",
                "--dsn-orcpt",
            ])
            .arg("--quit-after")
            .arg("rcpt")
            .verbose(),
        0,
    );
    let sent = client_lines(&stderr(&o));
    let mail = sent.iter().find(|l| l.starts_with("MAIL FROM:")).unwrap();
    assert!(
        mail.contains("SIZE=") && mail.contains("RET=HDRS"),
        "{sent:?}"
    );
    let rcpt = sent.iter().find(|l| l.starts_with("RCPT TO:")).unwrap();
    assert!(
        rcpt.starts_with("RCPT TO:<ok@example.com>") && rcpt.contains("NOTIFY=SUCCESS,FAILURE"),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|l| l == "DATA"), "{sent:?}");
    assert!(srv.messages().is_empty());

    // Every recipient refused: the MAIL reply is still shown; 67.
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("refuse-1@example.com")
            .arg("--quit-after")
            .arg("rcpt"),
        67,
    );
    let out = stdout(&o);
    assert!(out.contains("MAIL FROM:<a@example.com>: 250"), "{out}");
    assert!(
        out.contains("RCPT TO:<refuse-1@example.com>: refused 550"),
        "{out}"
    );
    assert!(
        !stderr(&o).contains("message not accepted"),
        "{}",
        stderr(&o)
    );
}

/// swaks' spellings are taken; `auth` with no credentials is a usage error, not a pass.
#[test]
fn swaks_names_and_auth_without_credentials() {
    let srv = Aiosmtpd::builder().start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("ok@example.com")
            .arg("--quit-after")
            .arg("RCPT"),
        0,
    );
    assert!(
        stdout(&o).contains("RCPT TO:<ok@example.com>: accepted"),
        "{}",
        stdout(&o)
    );
    run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .arg("--quit-after")
            .arg("from"),
        0,
    );
    let o = run_code(
        sb.send(&srv.addr())
            .arg("--quit-after")
            .arg("first-helo")
            .verbose(),
        0,
    );
    let sent = client_lines(&stderr(&o));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[0].starts_with("EHLO ") && sent[1] == "QUIT",
        "{sent:?}"
    );
    let o = run_code(sb.send(&srv.addr()).arg("--quit-after").arg("auth"), 64);
    assert!(stderr(&o).contains("needs credentials"), "{}", stderr(&o));
    assert!(srv.messages().is_empty());
}
