//! The log line per message (msmtp's `logfile` / `syslog`): `--log-file` on `send` and
//! `sendmail`, `log_file` and `log = "syslog"` in an account, against aiosmtpd (delivered,
//! a refused recipient, STARTTLS with AUTH), a port nobody listens on, a scripted hostile
//! server, and a Unix datagram socket standing in for /dev/log.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use postline_testkit::{
    free_port, greeting_and_ehlo, run_code, stderr, Aiosmtpd, Sandbox, ScriptedServer, Step, TestCa,
};

const USER: &str = "loguser";
const PASSWORD: &str = "l0g-s3cret-Pa55";
const STORE_WAIT: Duration = Duration::from_secs(10);
const MESSAGE: &str = "Subject: logged\r\n\r\nbody\r\n";

/// The lines of a log file, each checked to start with msmtp's time stamp (`Dec 02
/// 14:00:00 `) and to hold no control character.
fn log_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    for l in &lines {
        let b = l.as_bytes();
        assert!(
            b.len() > 16
                && b[..3].iter().all(u8::is_ascii_alphabetic)
                && b[3] == b' '
                && b[4..6].iter().all(u8::is_ascii_digit)
                && &b[6..7] == b" "
                && b[9] == b':'
                && b[12] == b':'
                && b[15] == b' ',
            "no time stamp: {l}"
        );
        assert!(!l.chars().any(char::is_control), "control character: {l:?}");
    }
    assert!(text.ends_with('\n'));
    lines
}

/// The value of `key=` in a line (up to the next space, or in quotes).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('\'') {
        return q.find('\'').map(|end| &q[..end]);
    }
    Some(rest.split(' ').next().unwrap_or_default())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A sandbox whose default account sends to `port` over STARTTLS trusting `ca`, as [`USER`],
/// with the password from `$LOG_TEST_PW`, and `extra` account lines.
fn auth_sandbox(port: u16, ca: &TestCa, extra: &str) -> Sandbox {
    let sb = Sandbox::with_prefix("postline-log-");
    sb.config(&format!(
        "default = \"relay\"\n[accounts.relay]\nserver = \"localhost\"\nport = {port}\n\
         tls = \"starttls\"\nca_file = \"{}\"\nuser = \"{USER}\"\npassword_env = \"LOG_TEST_PW\"\n\
         from = \"daemon@example.com\"\n{extra}",
        ca.ca_path.display()
    ));
    sb
}

/// sendmail with `log_file` in the account (relative: next to the config file): a delivered
/// message gives one line with msmtp's fields, user but never the password, mode 0600.
#[test]
fn sendmail_logs_a_delivered_message_from_the_account_setting() {
    let ca = TestCa::new();
    let srv = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth(USER, PASSWORD)
        .start();
    let sb = auth_sandbox(srv.port(), &ca, "log_file = \"logs.txt\"\n");
    for _ in 0..2 {
        run_code(
            sb.cmd(&["sendmail", "-i", "rcpt@example.com,other@example.com"])
                .env("LOG_TEST_PW", PASSWORD)
                .write_stdin(MESSAGE),
            0,
        );
    }
    srv.wait_for_messages(2, STORE_WAIT);
    let path = sb.path("logs.txt");
    assert_eq!(mode(&path), 0o600);
    let lines = log_lines(&path);
    assert_eq!(lines.len(), 2, "appended, a line per message: {lines:?}");
    let l = &lines[0];
    assert_eq!(field(l, "host"), Some("localhost"), "{l}");
    assert_eq!(field(l, "tls"), Some("on"), "{l}");
    assert_eq!(field(l, "auth"), Some("on"), "{l}");
    assert_eq!(field(l, "user"), Some(USER), "{l}");
    assert_eq!(field(l, "from"), Some("daemon@example.com"), "{l}");
    assert_eq!(
        field(l, "recipients"),
        Some("rcpt@example.com,other@example.com"),
        "{l}"
    );
    let size: usize = field(l, "mailsize").unwrap().parse().unwrap();
    assert!(size >= MESSAGE.len(), "{l}");
    assert_eq!(field(l, "smtpstatus"), Some("250"), "{l}");
    assert!(field(l, "smtpmsg").unwrap().starts_with("250 "), "{l}");
    assert_eq!(field(l, "errormsg"), None, "{l}");
    assert_eq!(field(l, "exitcode"), Some("EX_OK"), "{l}");
    assert!(l.ends_with("exitcode=EX_OK"), "{l}");
    let all = fs::read_to_string(&path).unwrap();
    assert!(!all.contains(PASSWORD), "{all}");
}

/// `send --log-file`: a refused recipient (the other accepted) and a server nobody listens
/// on, each a line with what went wrong and the exit code's name.
#[test]
fn send_logs_a_refused_recipient_and_a_connection_failure() {
    let srv = Aiosmtpd::builder().reject_rcpt("refuse").start();
    let sb = Sandbox::with_prefix("postline-log-");
    let log = sb.path("send.log");
    let log_s = log.to_str().unwrap();
    run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("ok@example.com,refuse@example.com")
            .body("x")
            .args(["--log-file", log_s]),
        67,
    );
    let dead = format!("127.0.0.1:{}", free_port());
    let o = run_code(
        sb.send(&dead)
            .from("a@example.com")
            .to("ok@example.com")
            .body("x")
            .args(["--log-file", log_s]),
        75,
    );
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let l = &lines[0];
    assert_eq!(field(l, "tls"), Some("off"), "{l}");
    assert_eq!(field(l, "auth"), Some("off"), "{l}");
    assert_eq!(field(l, "user"), None, "{l}");
    assert_eq!(
        field(l, "recipients"),
        Some("ok@example.com,refuse@example.com"),
        "{l}"
    );
    assert_eq!(field(l, "smtpstatus"), Some("550"), "{l}");
    assert!(
        field(l, "errormsg").unwrap().contains("refuse@example.com"),
        "{l}"
    );
    assert_eq!(field(l, "exitcode"), Some("EX_NOUSER"), "{l}");
    let l = &lines[1];
    assert_eq!(field(l, "host"), Some("127.0.0.1"), "{l}");
    assert_eq!(field(l, "smtpstatus"), None, "{l}");
    let err = field(l, "errormsg").unwrap();
    assert!(err.contains("127.0.0.1"), "{l}");
    assert!(
        stderr(&o).contains(err),
        "the log says what stderr said: {l}\n{}",
        stderr(&o)
    );
    assert_eq!(field(l, "exitcode"), Some("EX_TEMPFAIL"), "{l}");
}

/// sendmail queues what it could not deliver now, exits 0, and logs it with the queue id
/// (the `--log-file` flag here, msmtp's `--logfile`).
#[test]
fn sendmail_logs_a_queued_message() {
    let sb = Sandbox::with_prefix("postline-log-");
    let port = free_port();
    sb.config(&format!(
        "default = \"relay\"\n[accounts.relay]\nserver = \"127.0.0.1\"\nport = {port}\n\
         tls = \"none\"\nfrom = \"daemon@example.com\"\n"
    ));
    let log = sb.path("q.log");
    let arg = format!("--log-file={}", log.display());
    run_code(
        sb.cmd(&["sendmail", &arg, "-i", "rcpt@example.com"])
            .env("POSTLINE_QUEUE_DIR", sb.spool())
            .write_stdin(MESSAGE),
        0,
    );
    let queued = sb.queue_list();
    let id = queued[0]["id"].as_str().unwrap();
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(field(l, "queued"), Some(id), "{l}");
    assert!(field(l, "errormsg").is_some(), "{l}");
    assert_eq!(field(l, "exitcode"), Some("EX_OK"), "{l}");

    // -odq: queued without an attempt.
    run_code(
        sb.cmd(&[
            "sendmail",
            "-odq",
            "--log-file",
            log.to_str().unwrap(),
            "-i",
            "r@example.com",
        ])
        .env("POSTLINE_QUEUE_DIR", sb.spool())
        .write_stdin(MESSAGE),
        0,
    );
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(field(&lines[1], "queued").is_some(), "{}", lines[1]);
    assert_eq!(field(&lines[1], "smtpstatus"), None, "{}", lines[1]);
}

/// A log that cannot be written is a warning: the message is delivered and the exit code is 0.
#[test]
fn an_unwritable_log_never_fails_the_message() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::with_prefix("postline-log-");
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
            .args(["--log-file", "/nonexistent-dir/postline.log"]),
        0,
    );
    assert!(
        stderr(&o).contains("warning: cannot write the log file /nonexistent-dir/postline.log"),
        "{}",
        stderr(&o)
    );
    assert_eq!(srv.wait_for_messages(1, STORE_WAIT).len(), 1);
}

/// A log path that is a symbolic link is not followed (a log in a shared directory cannot
/// be pointed at another file), and a FIFO with no reader does not hold the command: both
/// are warnings, and the message goes.
#[test]
fn a_symlinked_or_fifo_log_is_not_written_through() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::with_prefix("postline-log-");
    let victim = sb.write("victim", "untouched\n");
    let link = sb.path("link.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = sb.path("fifo.log");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (n, path) in [&link, &fifo].into_iter().enumerate() {
        let o = run_code(
            sb.send(&srv.addr())
                .from("a@example.com")
                .to("b@example.com")
                .body("x")
                .args(["--log-file", path.to_str().unwrap()]),
            0,
        );
        assert!(
            stderr(&o).contains("warning: cannot write the log file"),
            "{}",
            stderr(&o)
        );
        assert_eq!(srv.wait_for_messages(n + 1, STORE_WAIT).len(), n + 1);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}

/// A hostile server's reply arrives in the log escaped: no ESC, BEL or bidi override in it.
#[test]
fn server_text_in_the_log_is_escaped() {
    let mut script = greeting_and_ehlo(&[]);
    script.extend([
        Step::expect("MAIL"),
        Step::reply("250 ok"),
        Step::expect("RCPT"),
        Step::reply("550 5.1.1 \x1b]0;pwned\x07 \u{202e}no\x1b[2J"),
        Step::expect(""),
        Step::reply("250 ok"),
        Step::expect(""),
        Step::reply("221 bye"),
    ]);
    let server = ScriptedServer::start(script);
    let sb = Sandbox::with_prefix("postline-log-");
    let log = sb.path("evil.log");
    run_code(
        sb.send(&server.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
            .args(["--log-file", log.to_str().unwrap()]),
        67,
    );
    server.finish();
    let lines = log_lines(&log);
    let l = &lines[0];
    assert_eq!(
        field(l, "smtpmsg"),
        // Escaped, then backslashes doubled inside the quotes (so no value can close them).
        Some("550 5.1.1 \\\\u{1b}]0;pwned\\\\u{7} \\\\u{202e}no\\\\u{1b}[2J"),
        "{l}"
    );
    assert!(!l.contains('\u{202e}'), "{l}");
}

/// `log = "syslog"`: one RFC 3164 datagram per message, facility mail, `info` when it went
/// and `err` when not, to the socket `POSTLINE_SYSLOG_SOCKET` names (here a socket the test
/// binds in place of /dev/log).
#[test]
fn syslog_gets_a_datagram_per_message() {
    let ca = TestCa::new();
    let srv = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth(USER, PASSWORD)
        .reject_rcpt("refuse")
        .start();
    let sb = auth_sandbox(srv.port(), &ca, "log = \"syslog\"\n");
    let socket_path = sb.path("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut recv = || {
        let n = socket.recv(&mut buf).expect("a syslog datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    for (rcpt, code) in [("ok@example.com", 0), ("refuse@example.com", 67)] {
        run_code(
            sb.cmd(&["sendmail", "-i", rcpt])
                .env("LOG_TEST_PW", PASSWORD)
                .env("POSTLINE_SYSLOG_SOCKET", &socket_path)
                .write_stdin(MESSAGE),
            code,
        );
    }
    let ok = recv();
    assert!(ok.starts_with("<22>"), "mail.info: {ok}");
    assert!(ok.contains(" postline["), "{ok}");
    assert!(
        ok.contains("]: host=localhost tls=on auth=on user=loguser "),
        "{ok}"
    );
    assert!(ok.ends_with("exitcode=EX_OK"), "{ok}");
    let refused = recv();
    assert!(refused.starts_with("<19>"), "mail.err: {refused}");
    assert!(refused.contains("smtpstatus=550"), "{refused}");
    assert!(refused.ends_with("exitcode=EX_NOUSER"), "{refused}");
    for d in [&ok, &refused] {
        assert!(!d.contains(PASSWORD), "{d}");
    }
    // No listener: a warning, and the message still goes.
    drop(socket);
    let o = run_code(
        sb.cmd(&["sendmail", "-i", "ok2@example.com"])
            .env("LOG_TEST_PW", PASSWORD)
            .env("POSTLINE_SYSLOG_SOCKET", &socket_path)
            .write_stdin(MESSAGE),
        0,
    );
    assert!(
        stderr(&o).contains("warning: cannot write to syslog"),
        "{}",
        stderr(&o)
    );
    assert_eq!(srv.wait_for_messages(2, STORE_WAIT).len(), 2);
}
