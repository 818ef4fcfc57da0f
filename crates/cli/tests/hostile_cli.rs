//! The `postline` binary against hostile and broken servers (scripted peers on 127.0.0.1):
//! exit codes, that the error names what went wrong (the phase of a timeout, a delivery that
//! may have happened), and that control characters given on the command line never reach the
//! wire.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use postline_testkit::{
    expect_code, greeting_and_ehlo, stderr, stdout, Sandbox, ScriptReport, ScriptedServer, Step,
};

/// Bound on one run of the binary.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// `send` to `server` with `--timeout 3`, then `extra` (and `--tls none` unless it says), in a
/// sandbox of its own.
fn send(server: &ScriptedServer, extra: &[&str]) -> Output {
    let sb = Sandbox::with_prefix("postline-hostile-").run_timeout(RUN_TIMEOUT);
    let mut cmd = sb
        .send_bare()
        .server(server.addr())
        .timeout(3)
        .from("a@example.com")
        .to("b@example.com")
        .subject("hostile")
        .body("x");
    if !extra.contains(&"--tls") {
        cmd = cmd.tls("none");
    }
    cmd.args(extra)
        .output()
        .expect("run postline (within the time bound)")
}

fn with_ehlo(ehlo: &[&str], mut steps: Vec<Step>) -> ScriptedServer {
    let mut all = greeting_and_ehlo(ehlo);
    all.append(&mut steps);
    ScriptedServer::start(all)
}

fn envelope_steps() -> Vec<Step> {
    vec![
        Step::expect("MAIL FROM:<a@example.com>"),
        Step::reply("250 ok"),
        Step::expect("RCPT TO:<b@example.com>"),
        Step::reply("250 ok"),
        Step::expect("DATA"),
        Step::reply("354 go"),
    ]
}

fn no_message_data(report: &ScriptReport) {
    let got = report.received_str();
    assert!(!got.contains("Subject: hostile"), "{got}");
}

#[test]
fn no_greeting_with_timeout_3_is_75_naming_the_phase() {
    let server = ScriptedServer::start(vec![Step::Hang]);
    let started = Instant::now();
    let o = send(&server, &[]);
    let took = started.elapsed();
    expect_code(&o, 75);
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("timed out after 3s waiting for the greeting reply"),
        "{err}"
    );
    server.finish();
}

#[test]
fn silent_after_rcpt_with_json_is_75_naming_the_phase() {
    let server = with_ehlo(
        &[],
        vec![
            Step::expect("MAIL"),
            Step::reply("250 ok"),
            Step::expect("RCPT"),
            Step::Hang,
        ],
    );
    let started = Instant::now();
    let o = send(&server, &["--json"]);
    assert!(started.elapsed() < Duration::from_secs(8));
    expect_code(&o, 75);
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["retryable"], true, "{v}");
    assert_eq!(v["exit_code"], 75, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("waiting for the RCPT reply"),
        "{v}"
    );
    server.finish();
}

/// Dropped after the final dot: exit 75, and the output says the message may have been
/// delivered (which a plain failure does not).
#[test]
fn dropped_after_final_dot_says_it_may_have_been_delivered() {
    let script = || {
        let mut s = envelope_steps();
        s.extend([Step::ExpectData, Step::Close]);
        with_ehlo(&[], s)
    };
    let server = script();
    let o = send(&server, &[]);
    expect_code(&o, 75);
    assert!(
        stderr(&o).contains("the message may or may not have been delivered"),
        "{}",
        stderr(&o)
    );
    server.finish().assert_ok();

    let server = script();
    let o = send(&server, &["--json"]);
    expect_code(&o, 75);
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("may or may not have been delivered"),
        "{v}"
    );
    assert_eq!(v["status"], "unknown", "{v}");
    assert_eq!(v["retryable"], true, "{v}");
    server.finish().assert_ok();

    // Dropped before the end of data (here: after RCPT): a plain failure, without the "may
    // have been delivered". (A drop right after 354 races with the end of data leaving; the
    // client tests cover it with a slow message source.)
    let server = with_ehlo(
        &[],
        vec![
            Step::expect("MAIL"),
            Step::reply("250 ok"),
            Step::expect("RCPT"),
            Step::Close,
        ],
    );
    let o = send(&server, &[]);
    expect_code(&o, 75);
    let err = stderr(&o);
    assert!(err.contains("waiting for the RCPT reply"), "{err}");
    assert!(!err.contains("may or may not"), "{err}");
    server.finish();
}

/// A misbehaviour: its name, the script, extra flags, the exit code and a piece of stderr.
type Case = (
    &'static str,
    Vec<Step>,
    &'static [&'static str],
    i32,
    &'static str,
);

/// One misbehaviour per row: the exit code and a piece of the error message.
#[test]
fn hostile_servers_exit_codes() {
    let cases: Vec<Case> = vec![
        (
            "reset right after connect",
            vec![Step::Reset],
            &[],
            75,
            "connection closed by the server while waiting for the greeting reply",
        ),
        (
            "554 greeting",
            vec![
                Step::reply("554 5.7.1 go away"),
                Step::expect("QUIT"),
                Step::reply("221 bye"),
            ],
            &[],
            69,
            "554 5.7.1 go away",
        ),
        (
            "421 greeting",
            vec![Step::reply("421 4.3.2 busy")],
            &[],
            75,
            "421 4.3.2 busy",
        ),
        (
            "421 at MAIL",
            {
                let mut s = greeting_and_ehlo(&[]);
                s.extend([Step::expect("MAIL"), Step::reply("421 4.3.2 closing")]);
                s
            },
            &[],
            75,
            "421 4.3.2 closing",
        ),
        (
            "421 after the end of data",
            {
                let mut s = greeting_and_ehlo(&[]);
                s.extend(envelope_steps());
                s.extend([Step::ExpectData, Step::reply("421 4.3.2 closing")]);
                s
            },
            &[],
            75,
            "421 4.3.2 closing",
        ),
        (
            "garbage and NUL bytes",
            vec![Step::send(b"\0\0\xff garbage\r\n")],
            &[],
            76,
            "protocol violation",
        ),
        (
            "a reply before EHLO",
            vec![
                Step::send("220 x ESMTP\r\n250 ok\r\n"),
                Step::Sleep(Duration::from_millis(300)),
            ],
            &[],
            76,
            "server sent reply 250 when no reply was due",
        ),
        (
            "354 when 250 was due",
            {
                let mut s = greeting_and_ehlo(&[]);
                s.extend([Step::expect("MAIL"), Step::reply("354 go")]);
                s
            },
            &[],
            76,
            "server answered MAIL with 354",
        ),
        (
            "1 MiB reply line",
            vec![Step::Send(vec![b'2'; 1 << 20])],
            &[],
            76,
            "reply line longer than",
        ),
        (
            "STARTTLS stripped",
            {
                let mut s = greeting_and_ehlo(&["AUTH PLAIN"]);
                s.extend([Step::expect("QUIT"), Step::reply("221 bye")]);
                s
            },
            &["--tls", "starttls"],
            69,
            "server does not offer STARTTLS",
        ),
        (
            "TLS handshake answered with garbage",
            {
                let mut s = greeting_and_ehlo(&["STARTTLS"]);
                s.extend([
                    Step::expect("STARTTLS"),
                    Step::reply("220 go ahead"),
                    Step::send("garbage, not TLS\r\n"),
                    Step::Sleep(Duration::from_millis(300)),
                ]);
                s
            },
            &["--tls", "starttls"],
            69,
            "TLS with 127.0.0.1 failed",
        ),
    ];
    for (name, script, extra, code, needle) in cases {
        let server = ScriptedServer::start(script);
        let started = Instant::now();
        let o = send(&server, extra);
        assert!(started.elapsed() < Duration::from_secs(8), "{name}");
        assert_eq!(
            o.status.code(),
            Some(code),
            "{name}: stdout:\n{}\nstderr:\n{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stderr(&o).contains(needle), "{name}: {}", stderr(&o));
        let report = server.finish();
        if !name.contains("end of data") {
            no_message_data(&report);
        }
        let got = report.received_str();
        if name == "a reply before EHLO" {
            assert!(!got.contains("MAIL"), "{name}: {got}");
        }
    }
}

/// CR and LF in addresses, the HELO name and header values given as flags are refused
/// (exit 64) before anything but the greeting exchange happens: nothing is injected. (NUL
/// cannot be passed in an argument at all: exec(2) takes C strings.)
#[test]
fn control_characters_on_the_command_line_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("--to", "b@example.com\r\nRCPT TO:<evil@example.com>"),
        ("--from", "a@example.com\nRCPT TO:<evil@example.com>"),
        ("--helo", "client.test\r\nMAIL FROM:<evil@example.com>"),
        ("--header", "X-Test: a\r\nBcc: evil@example.com"),
        ("--header", "X-Test: a\nBcc: evil@example.com"),
        ("--subject", "hi\r\nBcc: evil@example.com"),
        ("--reply-to", "r@example.com\r\nBcc: evil@example.com"),
    ];
    for (flag, value) in cases {
        let mut script = greeting_and_ehlo(&["PIPELINING"]);
        script.extend([Step::expect("QUIT"), Step::reply("221 bye")]);
        let server = ScriptedServer::start(script);
        let o = send(&server, &[flag, value]);
        assert_eq!(
            o.status.code(),
            Some(64),
            "{flag} {value:?}: stdout:\n{}\nstderr:\n{}",
            stdout(&o),
            stderr(&o)
        );
        let report = server.finish();
        let got = report.received_str();
        assert!(
            !got.contains("evil") && !got.contains("MAIL"),
            "{flag} {value:?}: the server received:\n{got}"
        );
    }
}

// ------------------------------------------------------- server text never acts on a terminal

/// A greeting that sets the terminal's title (OSC 0), writes a C1 CSI and keeps an accented
/// letter that must stay readable.
const EVIL_GREETING: &str = "220 mx.test \x1b]0;pwned-title\x07 ESMTP \u{9b}2J caf\u{e9}";
/// An EHLO line that writes the clipboard (OSC 52).
const EVIL_EHLO: &str = "X-EVIL \x1b]52;c;cHduZWQ=\x07";
/// A refusal with colours, BEL, a bidi override and DEL.
const EVIL_550: &str = "550 5.1.1 \x1b[31mno such user\x1b[0m\x07 \u{202e}gnp.exe\x7f";
/// A refusal for now, for the queue.
const EVIL_451: &str = "451 4.3.0 \x1b]0;queued-title\x07 try \u{202e}later";

/// The escaped forms the output must show.
const SHOWN_GREETING: &str = "220 mx.test \\u{1b}]0;pwned-title\\u{7} ESMTP \\u{9b}2J caf\u{e9}";
const SHOWN_EHLO: &str = "X-EVIL \\u{1b}]52;c;cHduZWQ=\\u{7}";
const SHOWN_550: &str = "\\u{1b}[31mno such user\\u{1b}[0m\\u{7} \\u{202e}gnp.exe\\u{7f}";
const SHOWN_451: &str = "\\u{1b}]0;queued-title\\u{7} try \\u{202e}later";

/// Greeting, EHLO (with [`EVIL_EHLO`]), MAIL, then `rcpt_reply` to RCPT; then whatever the
/// client sends (RSET, QUIT) is answered.
fn evil_script(rcpt_reply: &str) -> Vec<Step> {
    vec![
        Step::reply(EVIL_GREETING),
        Step::expect("EHLO"),
        Step::send(format!(
            "250-mx.test\r\n250-{EVIL_EHLO}\r\n250 8BITMIME\r\n"
        )),
        Step::expect("MAIL"),
        Step::reply("250 ok"),
        Step::expect("RCPT"),
        Step::reply(rcpt_reply),
        Step::expect(""),
        Step::reply("250 ok"),
        Step::expect(""),
        Step::reply("221 bye"),
    ]
}

/// No character that acts on a terminal: ESC, BEL, CR, C1 CSI, DEL, a bidi override.
fn assert_inert(what: &str, text: &str) {
    for c in ['\x1b', '\x07', '\r', '\u{9b}', '\x7f', '\u{202e}'] {
        assert!(!text.contains(c), "{what}: raw {c:?} in:\n{text}");
    }
}

#[test]
fn server_text_is_escaped_in_the_transcript_the_refusal_and_the_error_line() {
    let server = ScriptedServer::start(evil_script(EVIL_550));
    let o = send(&server, &["-v"]);
    expect_code(&o, 67);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_inert("stdout", &out);
    assert_inert("stderr", &err);
    // The -v transcript: greeting and EHLO line, escaped, the accented letter kept.
    assert!(err.contains(&format!("S: {SHOWN_GREETING}")), "{err}");
    assert!(err.contains(&format!("S: 250-{SHOWN_EHLO}")), "{err}");
    assert!(err.contains(SHOWN_550), "{err}");
    // The per-recipient line and the final error line.
    assert!(
        out.contains(&format!("refused   b@example.com  550 5.1.1 {SHOWN_550}")),
        "{out}"
    );
    server.finish();

    // The error line quoting the reply: a sender refused.
    let server = ScriptedServer::start(vec![
        Step::reply(EVIL_GREETING),
        Step::expect("EHLO"),
        Step::reply("250 mx.test"),
        Step::expect("MAIL"),
        Step::reply(EVIL_550),
        Step::expect(""),
        Step::reply("221 bye"),
    ]);
    let o = send(&server, &[]);
    expect_code(&o, 69);
    let err = stderr(&o);
    assert_inert("stderr", &err);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("postline: ") && last.contains(SHOWN_550),
        "{err}"
    );
    server.finish();
}

/// `--json` keeps the server's text as its value (JSON escapes the characters itself): the
/// bytes on stdout are inert, the decoded value is what the server said.
#[test]
fn server_text_in_json_is_the_value_with_inert_bytes() {
    let server = ScriptedServer::start(evil_script(EVIL_550));
    let o = send(&server, &["--json"]);
    expect_code(&o, 67);
    let out = stdout(&o);
    assert_inert("stdout", &out);
    let v: Value = serde_json::from_str(out.trim()).expect("JSON");
    let text = v["recipients"][0]["reply"]["text"].as_str().unwrap();
    assert_eq!(text, &EVIL_550["550 5.1.1 ".len()..], "{v}");
    server.finish();
}

/// A bare CR inside a reply line is a protocol violation: refused (76), and nothing of it
/// overwrites the error line.
#[test]
fn a_bare_cr_in_a_reply_is_refused_without_reaching_the_terminal() {
    let server = ScriptedServer::start(vec![
        Step::send("220 mx.test ready\rpostline: delivered OK\r\n"),
        Step::Sleep(Duration::from_millis(300)),
    ]);
    let o = send(&server, &["-v"]);
    expect_code(&o, 76);
    assert_inert("stderr", &stderr(&o));
    assert_inert("stdout", &stdout(&o));
    server.finish();
}

#[test]
fn server_text_is_escaped_by_probe() {
    let script = || {
        vec![
            Step::reply(EVIL_GREETING),
            Step::expect("EHLO"),
            Step::send(format!(
                "250-mx.test\r\n250-{EVIL_EHLO}\r\n250 8BITMIME\r\n"
            )),
            Step::expect("QUIT"),
            Step::reply("221 bye"),
        ]
    };
    let sb = Sandbox::with_prefix("postline-hostile-").run_timeout(RUN_TIMEOUT);
    let server = ScriptedServer::start(script());
    let o = sb
        .cmd(&[
            "probe",
            "--server",
            &server.addr(),
            "--tls",
            "none",
            "--timeout",
            "3",
        ])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let out = stdout(&o);
    assert_inert("stdout", &out);
    assert_inert("stderr", &stderr(&o));
    assert!(
        out.contains(&format!("banner       {SHOWN_GREETING}")),
        "{out}"
    );
    assert!(out.contains(SHOWN_EHLO), "{out}");
    server.finish();

    let server = ScriptedServer::start(script());
    let o = sb
        .cmd(&[
            "probe",
            "--server",
            &server.addr(),
            "--tls",
            "none",
            "--timeout",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let out = stdout(&o);
    assert_inert("stdout", &out);
    let v: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["banner"], EVIL_GREETING, "{v}");
    assert_eq!(v["ehlo"][1], EVIL_EHLO, "{v}");
    server.finish();
}

/// What a server said is stored in the queue; `queue list` and `queue show` show it escaped,
/// as does the note `send --queue` writes.
#[test]
fn server_text_stored_in_the_queue_is_escaped_by_list_and_show() {
    let server = ScriptedServer::start(evil_script(EVIL_451));
    let sb = Sandbox::with_prefix("postline-hostile-").run_timeout(RUN_TIMEOUT);
    let spool = sb.spool_str();
    let o = send_in(&sb, &server, &["--queue", "--queue-dir", &spool]);
    expect_code(&o, 0);
    assert_inert("stdout", &stdout(&o));
    assert_inert("stderr", &stderr(&o));
    assert!(stderr(&o).contains(SHOWN_451), "{}", stderr(&o));
    server.finish();

    let list = sb.queue("list", &[]).output().unwrap();
    expect_code(&list, 0);
    let out = stdout(&list);
    assert_inert("queue list", &out);
    assert!(out.contains(SHOWN_451), "{out}");
    let id = out.split_whitespace().next().unwrap().to_string();
    let show = sb.queue("show", &[&id]).output().unwrap();
    expect_code(&show, 0);
    let out = stdout(&show);
    assert_inert("queue show", &out);
    assert!(
        out.contains(&format!("last error  451 4.3.0 {SHOWN_451}")),
        "{out}"
    );
    let json = sb.queue("list", &["--json"]).output().unwrap();
    assert_inert("queue list --json", &stdout(&json));
}

/// `send` in `sb` to `server`, as [`send`] does it.
fn send_in(sb: &Sandbox, server: &ScriptedServer, extra: &[&str]) -> Output {
    sb.send_bare()
        .server(server.addr())
        .timeout(3)
        .tls("none")
        .from("a@example.com")
        .to("b@example.com")
        .subject("hostile")
        .body("x")
        .args(extra)
        .output()
        .expect("run postline (within the time bound)")
}
