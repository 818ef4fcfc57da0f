//! Self-tests of the test support code (this crate), with plain std TCP (and the `openssl`
//! command-line tool for the TLS checks) only: nothing here uses postline's own API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postline_testkit::*;

const WAIT: Duration = Duration::from_secs(10);

/// A bare SMTP client over std TCP.
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Reads one (possibly multiline) reply: (code, lines without CRLF).
    fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).expect("read reply");
            assert!(n > 0, "EOF while reading a reply; got {lines:?}");
            let l = l.trim_end_matches(['\r', '\n']).to_owned();
            let more = l.as_bytes().get(3) == Some(&b'-');
            lines.push(l);
            if !more {
                break;
            }
        }
        let code = lines[0][..3].parse().expect("reply code");
        (code, lines)
    }

    fn send(&mut self, data: &[u8]) {
        self.w.write_all(data).expect("write");
    }

    fn cmd(&mut self, line: &str) -> (u16, Vec<String>) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn expect(&mut self, line: &str, code: u16) -> Vec<String> {
        let (c, lines) = self.cmd(line);
        assert_eq!(c, code, "{line:?} -> {lines:?}");
        lines
    }
}

/// Runs `openssl s_client` against 127.0.0.1:port trusting `ca_file`, sending QUIT; returns
/// (success, stdout + stderr). Bounded to 20 s.
fn s_client(port: u16, ca_file: &std::path::Path, starttls: bool) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(ca_file)
        .args([
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-servername",
            "localhost",
            "-crlf",
            "-ign_eof",
        ]);
    if starttls {
        cmd.args(["-starttls", "smtp"]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl (installed by .ci/install-deps)");
    child.stdin.take().unwrap().write_all(b"QUIT\n").unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t1 = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t2 = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let text = format!("{}{}", t1.join().unwrap(), t2.join().unwrap());
    (status.is_some_and(|s| s.success()), text)
}

fn openssl(args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------------- TestCa

#[test]
fn test_ca_files_parse_and_verify() {
    let ca = TestCa::new();
    for f in [&ca.ca_path, &ca.cert_path, &ca.chain_path, &ca.key_path] {
        assert!(f.exists(), "{} missing", f.display());
    }
    assert!(ca.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(std::fs::read_to_string(&ca.ca_path).unwrap(), ca.ca_pem);
    let chain = std::fs::read_to_string(&ca.chain_path).unwrap();
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(std::fs::read_to_string(&ca.key_path)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(ca.ca_der[0], 0x30, "DER SEQUENCE");
    assert_eq!(ca.server_cert_der[0], 0x30);

    let other = TestCa::other();
    assert_ne!(other.ca_der, ca.ca_der);

    // A real X.509 implementation agrees.
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        p(&ca.ca_path),
        "-verify_hostname",
        "localhost",
        "-purpose",
        "sslserver",
        p(&ca.cert_path),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&["verify", "-CAfile", p(&other.ca_path), p(&ca.cert_path)]);
    assert!(!ok, "a certificate from another CA verified: {out}");
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", p(&ca.cert_path)]);
    assert!(ok, "{text}");
    for needle in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", p(&ca.ca_path)]);
    assert!(ok && text.contains("CA:TRUE"), "{text}");

    let expired = TestCa::expired();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        p(&expired.ca_path),
        p(&expired.cert_path),
    ]);
    assert!(!ok && out.contains("expired"), "{out}");

    let named = TestCa::with_server_names(&["mail.example.test"]);
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        p(&named.ca_path),
        "-verify_hostname",
        "localhost",
        p(&named.cert_path),
    ]);
    assert!(!ok, "hostname mismatch not detected: {out}");
}

// ---------------------------------------------------------------------------------- Aiosmtpd

#[test]
fn aiosmtpd_plain_stores_exact_bytes() {
    let srv = Aiosmtpd::start();
    assert!(srv.messages().is_empty());
    let mut c = Raw::connect(srv.port());
    assert_eq!(c.reply().0, 220);
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert!(ehlo.iter().any(|l| l.contains("SIZE")), "{ehlo:?}");
    c.expect("MAIL FROM:<a@example.test> BODY=8BITMIME", 250);
    c.expect("RCPT TO:<b@example.test>", 250);
    c.expect("RCPT TO:<c@example.test>", 250);
    c.expect("DATA", 354);
    c.send(b"Subject: t\r\n\r\n..leading dot\r\nbare\nlf\r\nlast\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    c.expect("MAIL FROM:<>", 250);
    c.expect("RCPT TO:<d@example.test>", 250);
    c.expect("DATA", 354);
    c.send(b".\r\n");
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);

    let msgs = srv.wait_for_messages(2, WAIT);
    assert_eq!(msgs.len(), 2);
    let m = &msgs[0];
    assert_eq!(m.index, 1);
    assert_eq!(
        m.content,
        b"Subject: t\r\n\r\n.leading dot\r\nbare\nlf\r\nlast\r\n"
    );
    assert_eq!(m.mail_from, "a@example.test");
    assert_eq!(m.rcpt_tos, ["b@example.test", "c@example.test"]);
    assert_eq!(m.mail_options, ["BODY=8BITMIME"]);
    assert!(m.rcpt_options.is_empty());
    assert_eq!(m.size, m.content.len() as u64);
    assert!(!m.tls && !m.smtp_utf8 && m.auth_user.is_none());
    assert!(m.raw_json.contains("\"mail_from\""));
    assert_eq!(msgs[1].content, b"");
    assert_eq!(
        msgs[1].mail_from, "<>",
        "aiosmtpd records the null sender as <>"
    );
    assert_eq!(msgs[1].rcpt_tos, ["d@example.test"]);
}

#[test]
fn aiosmtpd_reject_rcpt_and_tempfail() {
    let srv = Aiosmtpd::builder()
        .reject_rcpt("bad")
        .reject_rcpt("evil")
        .tempfail_first(1)
        .start();
    let mut c = Raw::connect(srv.port());
    assert_eq!(c.reply().0, 220);
    c.expect("EHLO client.test", 250);
    for round in 0..2 {
        c.expect("MAIL FROM:<a@example.test>", 250);
        let l = c.expect("RCPT TO:<bad@example.test>", 550);
        assert!(l[0].starts_with("550 5.1.1"), "{l:?}");
        c.expect("RCPT TO:<good@example.test>", 250);
        c.expect("RCPT TO:<evil@example.test>", 550);
        c.expect("DATA", 354);
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n");
        let (code, l) = c.reply();
        if round == 0 {
            assert_eq!(code, 451, "{l:?}");
        } else {
            assert_eq!(code, 250, "{l:?}");
        }
    }
    c.expect("QUIT", 221);
    let msgs = srv.wait_for_messages(1, WAIT);
    assert_eq!(msgs.len(), 1, "the tempfailed message is not stored");
    assert_eq!(msgs[0].rcpt_tos, ["good@example.test"]);
}

#[test]
fn aiosmtpd_smtputf8_auth_plaintext_max_size() {
    let srv = Aiosmtpd::builder()
        .smtputf8()
        .auth("user", "secret")
        .auth_plaintext()
        .max_size(1000)
        .start();
    let mut c = Raw::connect(srv.port());
    assert_eq!(c.reply().0, 220);
    let ehlo = c.expect("EHLO client.test", 250);
    for kw in ["SMTPUTF8", "AUTH", "SIZE 1000"] {
        assert!(
            ehlo.iter().any(|l| l[4..].starts_with(kw)),
            "{kw}: {ehlo:?}"
        );
    }
    c.expect("MAIL FROM:<a@example.test>", 530);
    c.expect("AUTH PLAIN AHVzZXIAd3Jvbmc=", 535); // user / wrong
    c.expect("AUTH PLAIN AHVzZXIAc2VjcmV0", 235); // user / secret
    c.expect("MAIL FROM:<a@example.test> SIZE=5000", 552);
    c.expect("MAIL FROM:<jürgen@exämple.test> SMTPUTF8", 250);
    c.expect("RCPT TO:<😀@example.test>", 250);
    c.expect("DATA", 354);
    c.send("Subject: ü\r\n\r\n✓\r\n.\r\n".as_bytes());
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
    let m = &srv.wait_for_messages(1, WAIT)[0];
    assert_eq!(m.mail_from, "jürgen@exämple.test");
    assert_eq!(m.rcpt_tos, ["😀@example.test"]);
    assert!(m.smtp_utf8);
    assert_eq!(m.auth_user.as_deref(), Some("user"));
    assert_eq!(m.content, "Subject: ü\r\n\r\n✓\r\n".as_bytes());
}

#[test]
fn aiosmtpd_starttls_advertised_and_handshakes() {
    let ca = TestCa::new();
    let srv = Aiosmtpd::builder()
        .starttls_with(&ca)
        .require_starttls()
        .start();
    let mut c = Raw::connect(srv.port());
    assert_eq!(c.reply().0, 220);
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.iter().any(|l| &l[4..] == "STARTTLS"), "{ehlo:?}");
    c.expect("MAIL FROM:<a@example.test>", 530);
    c.expect("QUIT", 221);

    let (ok, out) = s_client(srv.port(), &ca.ca_path, true);
    assert!(ok, "STARTTLS handshake trusting the CA failed:\n{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("221"), "{out}");
    let other = TestCa::other();
    let (ok, out) = s_client(srv.port(), &other.ca_path, true);
    assert!(
        !ok,
        "a server certificate from another CA was accepted:\n{out}"
    );
}

#[test]
fn aiosmtpd_implicit_tls_handshakes() {
    let ca = TestCa::new();
    let srv = Aiosmtpd::builder().implicit_tls_with(&ca).start();
    let (ok, out) = s_client(srv.port(), &ca.ca_path, false);
    assert!(ok, "implicit TLS handshake failed:\n{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("220 aiosmtpd.postline.test"), "{out}");
    let (ok, out) = s_client(srv.port(), &TestCa::other().ca_path, false);
    assert!(
        !ok,
        "a server certificate from another CA was accepted:\n{out}"
    );
}

#[test]
fn aiosmtpd_stops_on_drop() {
    let srv = Aiosmtpd::builder().hostname("drop.test").start();
    let port = srv.port();
    let mut c = Raw::connect(port);
    let (code, l) = c.reply();
    assert_eq!(code, 220);
    assert!(l[0].contains("drop.test"), "{l:?}");
    drop(c);
    drop(srv);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

// ---------------------------------------------------------------------------------- SmtpSink

#[test]
fn smtp_sink_greets_and_accepts() {
    let sink = SmtpSink::start(&[]);
    let mut c = Raw::connect(sink.port());
    let (code, l) = c.reply();
    assert_eq!(code, 220, "{l:?}");
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.iter().any(|l| l.ends_with("PIPELINING")), "{ehlo:?}");
    c.expect("MAIL FROM:<a@example.test>", 250);
    c.expect("RCPT TO:<b@example.test>", 250);
    c.expect("DATA", 354);
    c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
}

#[test]
fn smtp_sink_flags() {
    let sink = SmtpSink::start(&["-p"]);
    let other = SmtpSink::start(&["-f", "rcpt"]);
    assert_ne!(sink.port(), other.port());
    let mut c = Raw::connect(sink.port());
    assert_eq!(c.reply().0, 220);
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.iter().any(|l| l.contains("PIPELINING")), "{ehlo:?}");
    c.expect("QUIT", 221);

    let mut c = Raw::connect(other.port());
    assert_eq!(c.reply().0, 220);
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@example.test>", 250);
    c.expect("RCPT TO:<b@example.test>", 500);
}

#[test]
fn smtp_sink_stops_on_drop() {
    let sink = SmtpSink::start(&["-c"]);
    let port = sink.port();
    let mut c = Raw::connect(port);
    assert_eq!(c.reply().0, 220);
    c.expect("QUIT", 221);
    drop(c);
    let t = Instant::now();
    drop(sink);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn smtp_sink_start_failure_is_reported() {
    let t = Instant::now();
    let r = std::panic::catch_unwind(|| SmtpSink::start(&["-Z"]));
    let msg = match r {
        Ok(_) => panic!("smtp-sink started with a bogus flag"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        msg.contains("did not start") && msg.contains("exited"),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------- ScriptedServer

#[test]
fn scripted_server_plays_script() {
    let mut script = greeting_and_ehlo(&["PIPELINING", "CHUNKING", "SIZE 1000"]);
    script.extend([
        Step::expect("mail from:"),
        Step::reply("250 ok"),
        Step::expect("RCPT TO:<b@x>"),
        Step::reply("250 ok"),
        Step::expect("DATA"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 queued"),
        Step::expect("BDAT 5 LAST"),
        Step::ExpectBytes(5),
        Step::reply("250 chunk"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
        Step::Close,
    ]);
    let srv = ScriptedServer::start(script);
    let mut c = Raw::connect(srv.port());
    assert_eq!(
        c.reply(),
        (
            220,
            vec!["220 scripted.test ESMTP postline scripted server".into()]
        )
    );
    let (code, ehlo) = c.cmd("EHLO me");
    assert_eq!(code, 250);
    assert_eq!(
        ehlo,
        [
            "250-scripted.test",
            "250-PIPELINING",
            "250-CHUNKING",
            "250 SIZE 1000"
        ]
    );
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    // A line that is just "." after a bare LF does not end the data; CRLF.CRLF does.
    c.send(b"a\n.\r\nb\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    c.send(b"BDAT 5 LAST\r\nhello");
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
    let mut rest = Vec::new();
    assert_eq!(c.r.read_to_end(&mut rest).unwrap(), 0, "closed after Close");
    let report = srv.finish();
    report.assert_ok();
    assert_eq!(
        report.received_str(),
        "EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\na\n.\r\nb\r\n.\r\nBDAT 5 LAST\r\nhelloQUIT\r\n"
    );
    assert_eq!(report.connections.len(), 1);
}

#[test]
fn scripted_server_records_failures() {
    let mut script = greeting_and_ehlo(&[]);
    script.extend([
        Step::expect("RCPT"),
        Step::reply("250 ok"),
        Step::expect("NOOP"),
        Step::expect("DATA"),
    ]);
    let srv = ScriptedServer::start(script);
    let mut c = Raw::connect(srv.port());
    assert_eq!(c.reply().0, 220);
    let (code, ehlo) = c.cmd("EHLO me");
    assert_eq!((code, ehlo), (250, vec!["250 scripted.test".into()]));
    c.expect("MAIL FROM:<a@x>", 250); // mismatch: recorded, the script goes on
    c.send(b"NOOP\n"); // bare LF: recorded
    drop(c); // EOF while expecting DATA: recorded, the connection ends
    let report = srv.finish();
    assert_eq!(report.failures.len(), 3, "{:?}", report.failures);
    assert!(
        report.failures[0].contains("\"RCPT\""),
        "{:?}",
        report.failures
    );
    assert!(report.failures[1].contains("CRLF"), "{:?}", report.failures);
    assert!(report.failures[2].contains("EOF"), "{:?}", report.failures);
    assert_eq!(report.received, b"EHLO me\r\nMAIL FROM:<a@x>\r\nNOOP\n");
}

#[test]
fn scripted_server_send_slowly_and_hang() {
    let script = vec![
        Step::SendSlowly(b"220 slow\r\n".to_vec(), Duration::from_millis(30)),
        Step::expect("EHLO"),
        Step::Hang,
    ];
    let srv = ScriptedServer::start(script);
    let mut c = Raw::connect(srv.port());
    let t = Instant::now();
    assert_eq!(c.reply(), (220, vec!["220 slow".into()]));
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    c.send(b"EHLO me\r\n");
    // The server hangs: no reply, no close.
    c.w.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    let e = c.r.read(&mut b).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    c.send(b"NOOP\r\n"); // unread by the script, still recorded when the connection closes
    thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let report = srv.finish();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "finish took {:?}",
        t.elapsed()
    );
    report.assert_ok();
    assert_eq!(report.received, b"EHLO me\r\nNOOP\r\n");
    // finish() ended the hang: the socket is closed now.
    c.w.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(c.r.read(&mut b).unwrap(), 0);
}

#[test]
fn scripted_server_accept_n_replays() {
    let script = vec![
        Step::reply("220 hi"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
    ];
    let srv = ScriptedServer::accept_n(script, 3);
    for _ in 0..3 {
        let mut c = Raw::connect(srv.port());
        assert_eq!(c.reply().0, 220);
        c.expect("QUIT", 221);
    }
    let report = srv.finish();
    report.assert_ok();
    assert_eq!(report.connections, vec![b"QUIT\r\n".to_vec(); 3]);
    assert_eq!(report.received, b"QUIT\r\nQUIT\r\nQUIT\r\n");
}

#[test]
fn scripted_server_reports_missing_client() {
    let srv = ScriptedServer::start(vec![Step::reply("220 hi")]);
    let report = srv.finish();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(report.received.is_empty());
}

#[test]
fn free_port_and_repo_root() {
    let p = free_port();
    assert_ne!(p, 0);
    std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port is bindable");
    assert!(repo_root()
        .join("tests/interop/aiosmtpd_server.py")
        .exists());
}
