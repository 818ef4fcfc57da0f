//! The `postline` binary when its surroundings are hostile or broken: stdout or stderr closed
//! (`postline ... | head`), arguments that are not UTF-8, absurd numbers, servers that send
//! terminal control sequences. Whatever happens, no panic (exit 101) and a clear exit code.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postline_testkit::{expect_code, run_code, stderr, Aiosmtpd, Sandbox, ScriptedServer, Step};

/// Bound on one run of the binary.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Which standard stream a run gets closed: a pipe whose read end is already gone, so the
/// first write fails with EPIPE.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Stdout,
    Stderr,
}

/// What a run with one stream closed left: its status and the other stream's bytes.
struct Run {
    status: ExitStatus,
    open: String,
}

impl Run {
    /// Asserts the exit code, and that nothing panicked (the open stream would tell).
    #[track_caller]
    fn expect(&self, code: i32, what: &str) {
        assert!(
            !self.open.contains("panicked"),
            "{what}: panicked:\n{}",
            self.open
        );
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: expected exit {code}, got {:?}; open stream:\n{}",
            self.status,
            self.open
        );
    }
}

/// Runs `cmd` with `closed` closed and stdin empty, bounded by [`RUN_TIMEOUT`].
fn run_closed(mut cmd: Command, closed: Closed) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdin(Stdio::null());
    match closed {
        Closed::Stdout => cmd.stdout(writer).stderr(Stdio::piped()),
        Closed::Stderr => cmd.stderr(writer).stdout(Stdio::piped()),
    };
    let mut child = cmd.spawn().expect("spawn postline");
    // The command holds the pipe's write end; dropping it leaves only the child's.
    drop(cmd);
    let mut pipe: Box<dyn Read + Send> = match closed {
        Closed::Stdout => Box::new(child.stderr.take().unwrap()),
        Closed::Stderr => Box::new(child.stdout.take().unwrap()),
    };
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("postline still running after {RUN_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let open = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    Run { status, open }
}

/// `postline ARGS` in `sb`, to run with [`run_closed`].
fn postline(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = sb.std_cmd();
    c.args(args);
    c
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// A server for one `postline probe --tls none`: greeting, EHLO (no STARTTLS), QUIT.
fn probe_server(greeting: &str, ehlo: &[&str]) -> ScriptedServer {
    let mut steps = vec![Step::reply(greeting), Step::expect("EHLO")];
    let mut lines = vec!["scripted.test"];
    lines.extend(ehlo);
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        steps.push(Step::reply(&format!("250{sep}{l}")));
    }
    steps.extend([Step::expect("QUIT"), Step::reply("221 bye")]);
    ScriptedServer::start(steps)
}

// -------------------------------------------------------------------- closed stdout / stderr

#[test]
fn probe_into_a_closed_stdout_exits_0() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for extra in [&[][..], &["--json"], &["-v"]] {
        let server = probe_server("220 scripted.test ready", &["PIPELINING", "SIZE 1000"]);
        let mut args = vec!["probe", "--server", "", "--tls", "none", "--timeout", "5"];
        let addr = server.addr();
        args[2] = &addr;
        args.extend(extra);
        run_closed(postline(&sb, &args), Closed::Stdout).expect(0, &format!("probe {extra:?}"));
        server.finish();
    }
}

#[test]
fn probe_transcript_into_a_closed_stderr_exits_0() {
    let sb = Sandbox::with_prefix("postline-robust-");
    let server = probe_server("220 scripted.test ready", &["PIPELINING"]);
    let addr = server.addr();
    let args = [
        "probe",
        "--server",
        &addr,
        "--tls",
        "none",
        "--timeout",
        "5",
        "-v",
    ];
    run_closed(postline(&sb, &args), Closed::Stderr).expect(0, "probe -v");
    server.finish();
}

#[test]
fn help_version_completions_and_man_into_a_closed_stdout_exit_0() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for args in [
        &["--help"][..],
        &["--version"],
        &["send", "--help"],
        &["queue", "--help"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["man"],
    ] {
        run_closed(postline(&sb, args), Closed::Stdout).expect(0, &format!("{args:?}"));
    }
}

#[test]
fn failures_into_a_closed_stderr_keep_their_exit_codes() {
    let sb = Sandbox::with_prefix("postline-robust-");
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let cases: [(&[&str], i32); 4] = [
        // Refused by main after parsing.
        (&["probe"], 64),
        // The probe's own failure line.
        (&["probe", "--server", &unreachable, "--tls", "none"], 75),
        // clap's own error.
        (&["send", "--no-such-flag"], 64),
        // sendmail mode's refusal.
        (&["sendmail", "-Z"], 64),
    ];
    for (args, code) in cases {
        run_closed(postline(&sb, args), Closed::Stderr).expect(code, &format!("{args:?}"));
    }
    // A config file that does not parse.
    let sb = Sandbox::with_prefix("postline-robust-");
    sb.config("not toml at all [");
    run_closed(postline(&sb, &["probe"]), Closed::Stderr).expect(78, "bad config");
}

// ------------------------------------------------------------------- arguments not in UTF-8

/// `-F`'s Latin-1 `été`.
const LATIN1_NAME: &[u8] = b"\xe9t\xe9";

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// A sandbox whose default account sends to `srv` as daemon@example.com.
fn sendmail_sandbox(srv: &Aiosmtpd) -> Sandbox {
    let sb = Sandbox::with_prefix("postline-robust-");
    sb.config(&format!(
        "[accounts.relay]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"daemon@example.com\"\n",
        srv.port()
    ));
    sb
}

/// The header lines of a stored message, as text.
fn headers(content: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(content);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\r\n")
        .map(str::to_string)
        .collect()
}

#[test]
fn sendmail_takes_a_latin1_full_name_both_ways() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    let msg = "Subject: latin1\r\n\r\nbody\r\n";
    // Invoked as `sendmail`, the name as a separate argument.
    run_code(
        sb.sendmail_symlink()
            .arg("-F")
            .arg(os(LATIN1_NAME))
            .args(["-oi", "root@example.org"])
            .write_stdin(msg),
        0,
    );
    // `postline sendmail`, the name inline.
    let mut inline = b"-F".to_vec();
    inline.extend_from_slice(LATIN1_NAME);
    run_code(
        sb.cmd(&["sendmail"])
            .arg(os(&inline))
            .args(["-oi", "root@example.org"])
            .write_stdin(msg),
        0,
    );
    let msgs = srv.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(msgs.len(), 2);
    for m in msgs {
        let h = headers(&m.content);
        assert!(
            h.contains(&"From: \"\u{e9}t\u{e9}\" <daemon@example.com>".to_string()),
            "{h:?}"
        );
    }
}

#[test]
fn sendmail_addresses_not_in_utf8_are_64() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for args in [
        &[&b"-f"[..], b"b\xe9@example.com", b"root@example.org"][..],
        &[b"-i", b"r\xe9@example.org"],
        &[b"-\xe9"],
    ] {
        let o = sb
            .sendmail_symlink()
            .args(args.iter().map(|a| os(a)))
            .write_stdin("Subject: x\r\n\r\nx\r\n")
            .output()
            .unwrap();
        expect_code(&o, 64);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains("\\xE9"), "{err}");
    }
}

#[test]
fn other_subcommands_refuse_arguments_not_in_utf8_with_64() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for args in [
        &[
            &b"send"[..],
            b"--to",
            b"a@example.com",
            b"--subject",
            b"\xe9t\xe9",
        ][..],
        &[b"probe", b"--server", b"mx\xe9.example"],
        &[b"\xe9"],
        &[b"queue", b"show", b"\xe9"],
    ] {
        let o = sb
            .cmd(&[])
            .args(args.iter().map(|a| os(a)))
            .output()
            .unwrap();
        expect_code(&o, 64);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains("UTF-8") || err.contains("unrecognized"),
            "{err}"
        );
    }
    // A file name may be any bytes: this one is simply not there (66).
    let o = sb
        .cmd(&["send", "--server", "127.0.0.1:1", "--tls", "none"])
        .args(["--from", "a@example.com", "--to", "b@example.com"])
        .arg("--body-file")
        .arg(os(b"/nonexistent/\xe9t\xe9.txt"))
        .output()
        .unwrap();
    expect_code(&o, 66);
    // A program name that is not UTF-8.
    let mut c = sb.std_cmd();
    c.arg0(os(b"/usr/local/bin/postline-\xe9")).arg("--version");
    let o = c.output().unwrap();
    expect_code(&o, 0);
}

// ------------------------------------------------------------------------------ absurd numbers

/// Values `--timeout` refuses: infinite, not a number, negative, zero, below a millisecond,
/// above 24 hours, or beyond what a duration holds.
const BAD_TIMEOUTS: [&str; 11] = [
    "1e20", "1e308", "inf", "-inf", "nan", "-1", "0", "-0", "1e-300", "86401", "0.0001",
];

#[test]
fn absurd_timeouts_are_64_at_parsing() {
    let sb = Sandbox::with_prefix("postline-robust-");
    let unreachable = format!("127.0.0.1:{}", closed_port());
    for t in BAD_TIMEOUTS {
        for sub in ["probe", "send"] {
            let mut args = vec![sub, "--server", &unreachable, "--tls", "none"];
            if sub == "send" {
                args.extend(["--from", "a@example.com", "--to", "b@example.com"]);
                args.extend(["--subject", "s", "--body", "b"]);
            }
            let o = sb.cmd(&args).args(["--timeout", t]).output().unwrap();
            expect_code(&o, 64);
            let err = stderr(&o);
            assert!(!err.contains("panicked"), "{t}: {err}");
            assert!(
                err.contains("--timeout") && err.contains("86400"),
                "{t}: {err}"
            );
        }
    }
    // In range: goes on to connect (and finds nothing listening: 75).
    for t in ["0.001", "2.5", "86400"] {
        let o = sb
            .cmd(&["probe", "--server", &unreachable, "--tls", "none"])
            .args(["--timeout", t])
            .output()
            .unwrap();
        expect_code(&o, 75);
    }
}

#[test]
fn ports_out_of_range_are_64() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for server in ["127.0.0.1:0", "127.0.0.1:+25", "127.0.0.1:65536", "[::1]:0"] {
        let o = sb
            .cmd(&["probe", "--server", server, "--tls", "none"])
            .output()
            .unwrap();
        expect_code(&o, 64);
        assert!(stderr(&o).contains("1 to 65535"), "{}", stderr(&o));
    }
    let o = sb
        .cmd(&["send", "--mx-port", "0", "--from", "a@example.com"])
        .args(["--to", "b@example.com", "--subject", "s", "--body", "b"])
        .output()
        .unwrap();
    expect_code(&o, 64);
}

#[test]
fn absurd_numbers_in_the_config_file_are_78() {
    for (line, says) in [
        // Accounts have no timeout key: named as unknown, with the keys there are.
        ("timeout = 1e20", "unknown field \"timeout\""),
        ("timeout = nan", "unknown field \"timeout\""),
        // Every port error names the line (type errors the column too).
        (
            "port = 1e20",
            "line 4, column 8: invalid type: floating point",
        ),
        (
            "port = inf",
            "line 4, column 8: invalid type: floating point",
        ),
        (
            "port = nan",
            "line 4, column 8: invalid type: floating point",
        ),
        ("port = -1", "line 4: "),
        ("port = 0", "line 4: "),
        ("port = 65536", "expected 1 to 65535"),
        ("port = 99999999999999999999", "line 4"),
    ] {
        let sb = Sandbox::with_prefix("postline-robust-");
        sb.config(&format!(
            "[accounts.a]\nserver = \"127.0.0.1\"\ntls = \"none\"\n{line}\n"
        ));
        let o = sb.cmd(&["probe"]).output().unwrap();
        expect_code(&o, 78);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{line}: {err}");
        assert!(
            err.contains("config error") && err.contains(says),
            "{line}: {err}"
        );
    }
}

/// A queued message whose stored route holds an absurd timeout (an old or edited spool): the
/// runner defers it with the reason instead of crashing.
#[test]
fn queued_route_with_an_absurd_timeout_is_deferred_not_a_crash() {
    let sb = Sandbox::with_prefix("postline-robust-");
    let spool = sb.spool_str();
    let unreachable = format!("127.0.0.1:{}", closed_port());
    run_code(
        sb.send(&unreachable)
            .from("a@example.com")
            .to("b@example.com")
            .subject("s")
            .body("b")
            .args(["--queue-only", "--queue-dir", &spool]),
        0,
    );
    let mut edited = 0;
    for entry in std::fs::read_dir(sb.spool()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            // The first route format (the command line's flags), as older versions queued it.
            v["route"] = serde_json::json!({
                "server": {"server": unreachable, "tls": "none", "timeout": 1e20},
                "direct": false,
                "from": "a@example.com"
            });
            std::fs::write(&path, v.to_string()).unwrap();
            edited += 1;
        }
    }
    assert_eq!(edited, 1, "one queued entry");
    let o = sb.queue("run", &[]).output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
    // The absurd number is dropped on reading; the message is tried and deferred.
    let list = sb.queue_list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["attempts"], 1, "{list:?}");
    assert!(list[0]["route"]["timeout_ms"].is_null(), "{list:?}");
    // In the current format the number is out of range: the entry is set aside, once,
    // with the reason, and later passes are clean.
    let id = list[0]["id"].as_str().unwrap().to_string();
    let path = sb.spool().join(format!("{id}.json"));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["route"]["timeout_ms"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, v.to_string()).unwrap();
    let o = sb.queue("run", &[]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("out of range") && err.contains("corrupt/"),
        "{err}"
    );
    let o = sb.queue("run", &[]).output().unwrap();
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

// ----------------------------------------------------------------- server control characters

/// A greeting and EHLO lines laced with terminal controls: ESC sequences (clear the screen,
/// set the window title), BEL, a C1 CSI (U+009B) and a right-to-left override.
const EVIL_GREETING: &str = "220 evil\u{1b}[2J\u{1b}]0;pwned\u{7} ready\u{202e}gpj";
const EVIL_EHLO: [&str; 3] = [
    "PIPELINING\u{1b}[31m",
    "X-CSI \u{9b}31m",
    "AUTH PLAIN\u{1b}[0m",
];

/// Asserts that `bytes` hold nothing a terminal would act on.
#[track_caller]
fn terminal_safe(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {bad:?} reached the terminal:\n{text}"
    );
}

#[test]
fn probe_escapes_server_control_characters() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for extra in [&[][..], &["-v"], &["--json"]] {
        let server = probe_server(EVIL_GREETING, &EVIL_EHLO);
        let mut args = vec!["probe", "--server", "", "--tls", "none", "--timeout", "5"];
        let addr = server.addr();
        args[2] = &addr;
        args.extend(extra);
        let o = run_code(sb.cmd(&args), 0);
        terminal_safe(&format!("{extra:?} stdout"), &o.stdout);
        terminal_safe(&format!("{extra:?} stderr"), &o.stderr);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if extra == ["--json"] {
            // The same strings, escaped the JSON way.
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert!(v["banner"].as_str().unwrap().contains("\u{1b}[2J"), "{v}");
            assert!(v["ehlo"].to_string().contains("X-CSI \u{9b}31m"), "{v}");
        } else {
            assert!(out.contains("\\u{1b}[2J"), "{out}");
            assert!(out.contains("\\u{9b}31m"), "{out}");
            assert!(out.contains("ready\\u{202e}gpj"), "{out}");
        }
        if extra == ["-v"] {
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(err.contains("S: 220 evil\\u{1b}[2J"), "{err}");
        }
        server.finish();
    }
}

#[test]
fn a_refusal_quoting_control_characters_is_escaped() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for extra in [&[][..], &["--json"]] {
        let server = ScriptedServer::start(vec![
            Step::reply("554 go away\u{1b}[2J\u{1b}]0;pwned\u{7} \u{9b}1m"),
            Step::expect("QUIT"),
            Step::reply("221 bye"),
        ]);
        let mut args = vec!["probe", "--server", "", "--tls", "none", "--timeout", "5"];
        let addr = server.addr();
        args[2] = &addr;
        args.extend(extra);
        let o = sb.cmd(&args).output().unwrap();
        assert_ne!(o.status.code(), Some(0));
        assert_ne!(o.status.code(), Some(101));
        terminal_safe(&format!("{extra:?} stdout"), &o.stdout);
        terminal_safe(&format!("{extra:?} stderr"), &o.stderr);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(all.contains("go away"), "{all}");
        drop(server);
    }
}

#[test]
fn failure_messages_escape_what_they_quote() {
    // A config file's own text quoted in its error message.
    let sb = Sandbox::with_prefix("postline-robust-");
    sb.config(
        "default = \"x\\u001b[2J\\u001b]0;pwned\\u0007\"\n[accounts.a]\nserver = \"127.0.0.1\"\n",
    );
    let o = sb.cmd(&["probe"]).output().unwrap();
    expect_code(&o, 78);
    terminal_safe("stderr", &o.stderr);
    let err = stderr(&o);
    assert!(err.contains("x\\u{1b}[2J"), "{err}");
}
