//! End-to-end tests of the `postline` binary: every test runs the real executable against real
//! servers on 127.0.0.1 (aiosmtpd storing the bytes it received, Postfix's smtp-sink), or a
//! scripted peer where a real server cannot misbehave as needed.
//!
//! Every invocation runs in a [`Sandbox`]: `POSTLINE_CONFIG`, `HOME` and the XDG directories
//! point into a tempdir, so the developer's own configuration never leaks in.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use postline_testkit::{
    free_port, greeting_and_ehlo, run_code, stderr, stdout, Aiosmtpd, Sandbox, ScriptedServer,
    SendCmd, SmtpSink, Step, StoredMessage, TestCa,
};

/// Bound on waiting for aiosmtpd to store a message.
const STORE_WAIT: Duration = Duration::from_secs(10);

const USER: &str = "mailuser";
const PASSWORD: &str = "s3cret-Pa55word";

// ------------------------------------------------------------------------------------- helpers

/// The one message aiosmtpd stored.
#[track_caller]
fn only_message(srv: &Aiosmtpd) -> StoredMessage {
    let msgs = srv.wait_for_messages(1, STORE_WAIT);
    assert_eq!(msgs.len(), 1, "expected exactly one stored message");
    msgs.into_iter().next().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The top-level header section (up to the first empty line).
fn header_section(msg: &[u8]) -> String {
    let t = text(msg);
    match t.find("\r\n\r\n") {
        Some(i) => t[..i + 2].to_string(),
        None => t,
    }
}

/// The unfolded values of the top-level header fields named `name`.
fn header_values(msg: &[u8], name: &str) -> Vec<String> {
    let hs = header_section(msg);
    let mut fields: Vec<String> = Vec::new();
    for line in hs.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push_str(line);
            }
        } else if !line.is_empty() {
            fields.push(line.to_string());
        }
    }
    fields
        .into_iter()
        .filter_map(|f| {
            let (n, v) = f.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

#[track_caller]
fn header(msg: &[u8], name: &str) -> String {
    let v = header_values(msg, name);
    assert_eq!(
        v.len(),
        1,
        "expected one {name} header, got {v:?} in:\n{}",
        header_section(msg)
    );
    v.into_iter().next().unwrap()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64, ignoring white space; panics on anything else that is not base64.
fn b64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            break;
        }
        let v = B64
            .iter()
            .position(|&x| x == c)
            .unwrap_or_else(|| panic!("not base64: {c:?} in {s:?}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Decodes a header value made of RFC 2047 encoded words (B or Q, UTF-8), with plain text
/// between them kept and white space between adjacent encoded words dropped.
fn decode_2047(v: &str) -> String {
    let mut out: Vec<u8> = Vec::new();
    let mut rest = v;
    let mut pending_ws = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("=?") {
            let parts: Vec<&str> = after.splitn(3, '?').collect();
            assert_eq!(parts.len(), 3, "bad encoded word in {v:?}");
            let (charset, enc, tail) = (parts[0], parts[1], parts[2]);
            assert!(
                charset.eq_ignore_ascii_case("utf-8"),
                "charset {charset} in {v:?}"
            );
            let end = tail.find("?=").expect("encoded word end");
            let data = &tail[..end];
            let bytes = if enc.eq_ignore_ascii_case("b") {
                b64_decode(data)
            } else {
                let mut b = Vec::new();
                let d = data.as_bytes();
                let mut i = 0;
                while i < d.len() {
                    match d[i] {
                        b'_' => b.push(b' '),
                        b'=' => {
                            let h = std::str::from_utf8(&d[i + 1..i + 3]).unwrap();
                            b.push(u8::from_str_radix(h, 16).unwrap());
                            i += 2;
                        }
                        c => b.push(c),
                    }
                    i += 1;
                }
                b
            };
            if !last_was_word {
                out.extend_from_slice(pending_ws.as_bytes());
            }
            pending_ws.clear();
            out.extend_from_slice(&bytes);
            last_was_word = true;
            rest = &tail[end + 2..];
        } else {
            let c = rest.chars().next().unwrap();
            if c.is_whitespace() {
                pending_ws.push(c);
            } else {
                out.extend_from_slice(pending_ws.as_bytes());
                pending_ws.clear();
                out.extend_from_slice(c.to_string().as_bytes());
                last_was_word = false;
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    out.extend_from_slice(pending_ws.as_bytes());
    String::from_utf8(out).expect("decoded header is UTF-8")
}

/// The base64 body of the MIME part whose headers contain `marker`, decoded.
fn part_body_after(msg: &[u8], marker: &str) -> Vec<u8> {
    let t = text(msg);
    let at = t
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in the message:\n{t}"));
    let headers_end = at + t[at..].find("\r\n\r\n").expect("end of part headers");
    let part_headers = &t[..headers_end];
    let part_start = part_headers.rfind("\r\n--").unwrap_or(0);
    assert!(
        part_headers[part_start..]
            .to_ascii_lowercase()
            .contains("content-transfer-encoding: base64"),
        "the part is not base64:\n{}",
        &part_headers[part_start..]
    );
    let body = &t[headers_end + 4..];
    let mut encoded = String::new();
    for line in body.split("\r\n") {
        if line.starts_with("--") {
            break;
        }
        encoded.push_str(line);
    }
    b64_decode(&encoded)
}

/// Checks what sendmail mode delivered: the original message (every byte kept) after header
/// fields it prepends, which may only be the From, Date and Message-ID the original lacks
/// (RFC 5322 requires From and Date; RFC 6409 lets a submission agent add Message-ID).
/// Returns the prepended header lines.
#[track_caller]
fn sendmail_added_headers(content: &[u8], original: &str) -> Vec<String> {
    let got = text(content);
    let prefix = got.strip_suffix(original).unwrap_or_else(|| {
        panic!("the original message is not kept byte for byte:\n--- got:\n{got}\n--- original:\n{original}")
    });
    let added: Vec<String> = prefix
        .split_terminator("\r\n")
        .map(str::to_string)
        .collect();
    assert_eq!(
        prefix,
        added.iter().map(|l| format!("{l}\r\n")).collect::<String>(),
        "the prepended part is not CRLF-terminated header lines: {prefix:?}"
    );
    let original_headers = header_section(original.as_bytes()).to_ascii_lowercase();
    for name in ["From", "Date", "Message-ID"] {
        let lname = name.to_ascii_lowercase();
        let n = added
            .iter()
            .filter(|l| l.to_ascii_lowercase().starts_with(&format!("{lname}:")))
            .count();
        let in_original = original_headers.starts_with(&format!("{lname}:"))
            || original_headers.contains(&format!("\n{lname}:"));
        assert_eq!(
            n,
            usize::from(!in_original),
            "{name}: added {n} time(s), present in the original: {in_original}: {added:?}"
        );
    }
    assert_eq!(
        added.len(),
        added
            .iter()
            .filter(|l| ["from:", "date:", "message-id:"]
                .iter()
                .any(|p| l.to_ascii_lowercase().starts_with(p)))
            .count(),
        "unexpected added header lines: {added:?}"
    );
    added
}

/// A TCP port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

/// `[accounts.NAME]` for a plain-text server on 127.0.0.1.
fn account_toml(name: &str, port: u16, from: &str) -> String {
    format!(
        "[accounts.{name}]\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"{from}\"\n"
    )
}

// ----------------------------------------------------------------------------- send: composing

#[test]
fn send_composes_with_every_message_flag() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let body = sb.write("body.txt", "Hello from the body file.\nSecond line.\n");
    let html = sb.write(
        "page.html",
        "<html><body><p>Hello in HTML</p></body></html>\n",
    );
    let attachment: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let attach = sb.write("data.bin", &attachment);
    let subject = "Grüße aus Köln – 東京 ✓";
    let o = run_code(
        sb.send(&srv.addr())
            .helo("client.postline.test")
            .from("sender@example.com")
            .to("to1@example.com")
            .to("to2@example.com,to3@example.com")
            .cc("cc1@example.com")
            .bcc("hidden@example.net")
            .subject(subject)
            .body_file(&body)
            .args(["--html-file", html.to_str().unwrap()])
            .attach(&attach)
            .args(["--header", "X-Test: 1"])
            .args(["--header", "Sender: Desk <desk@example.com>"])
            .args(["--priority", "high"])
            .args(["--reply-to", "replies@example.org"]),
        0,
    );
    let m = only_message(&srv);
    assert_eq!(m.mail_from, "sender@example.com");
    assert_eq!(
        m.rcpt_tos,
        [
            "to1@example.com",
            "to2@example.com",
            "to3@example.com",
            "cc1@example.com",
            "hidden@example.net"
        ]
    );
    let c = &m.content;
    let all = text(c);
    // Bcc: envelope only.
    assert!(!all.contains("hidden@example.net"), "Bcc leaked:\n{all}");
    assert!(header_values(c, "Bcc").is_empty(), "Bcc header:\n{all}");
    // Headers.
    let to = header(c, "To");
    for a in ["to1@example.com", "to2@example.com", "to3@example.com"] {
        assert!(to.contains(a), "To: {to}");
    }
    assert!(header(c, "Cc").contains("cc1@example.com"));
    assert!(header(c, "From").contains("sender@example.com"));
    assert!(header(c, "Reply-To").contains("replies@example.org"));
    let subj = header(c, "Subject");
    assert!(
        subj.to_ascii_lowercase().contains("=?utf-8?"),
        "Subject not RFC 2047 encoded: {subj}"
    );
    assert_eq!(decode_2047(&subj), subject);
    assert!(
        header_section(c).is_ascii(),
        "raw 8-bit in the header:\n{}",
        header_section(c)
    );
    assert_eq!(header(c, "X-Test"), "1");
    // Sender is a header only: the envelope sender stays --from.
    assert!(header(c, "Sender").contains("<desk@example.com>"), "{all}");
    assert!(header(c, "X-Priority").starts_with('1'));
    assert_eq!(header(c, "Importance").to_ascii_lowercase(), "high");
    assert!(!header(c, "Date").is_empty());
    let mid = header(c, "Message-ID");
    assert!(
        mid.starts_with('<') && mid.ends_with('>') && mid.contains('@'),
        "{mid}"
    );
    assert_eq!(header(c, "MIME-Version"), "1.0");
    // Structure: mixed (alternative (text, html), attachment).
    assert!(
        header(c, "Content-Type").starts_with("multipart/mixed"),
        "{all}"
    );
    assert!(all.contains("multipart/alternative"), "{all}");
    assert!(all.contains("text/plain"), "{all}");
    assert!(all.contains("text/html"), "{all}");
    assert!(all.contains("Hello from the body file."), "{all}");
    assert!(all.contains("<p>Hello in HTML</p>"), "{all}");
    let lower = all.to_ascii_lowercase();
    assert!(
        lower.contains("content-disposition: attachment; filename=\"data.bin\""),
        "{all}"
    );
    assert_eq!(
        part_body_after(c, "filename=\"data.bin\""),
        attachment,
        "the attachment does not decode to the file"
    );
    // Lines within limits, CRLF only.
    for line in c.split(|&b| b == b'\n') {
        assert!(line.len() <= 1000, "line too long");
    }
    assert!(
        !all.replace("\r\n", "").contains('\n'),
        "bare LF in the message"
    );
    // One summary line per recipient, then the message line.
    let out = stdout(&o);
    let accepted: Vec<&str> = out.lines().filter(|l| l.starts_with("accepted")).collect();
    assert_eq!(accepted.len(), 5, "stdout:\n{out}");
    for a in &m.rcpt_tos {
        assert!(
            accepted
                .iter()
                .any(|l| l.contains(a.as_str()) && l.contains("250")),
            "no summary line for {a}:\n{out}"
        );
    }
    assert!(
        out.contains("message accepted by 127.0.0.1"),
        "stdout:\n{out}"
    );
}

#[test]
fn send_body_flag_and_body_file_from_stdin_and_helo() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.com")
            .subject("plain ascii")
            .body("Body given as an argument."),
        0,
    );
    let o = run_code(
        sb.send(&srv.addr())
            .verbose()
            .helo("client.postline.test")
            .from("a@example.com")
            .to("b@example.com")
            .body_file("-")
            .write_stdin("Body read from standard input.\n"),
        0,
    );
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    let first = text(&msgs[0].content);
    assert!(first.contains("Body given as an argument."), "{first}");
    assert_eq!(header(&msgs[0].content, "Subject"), "plain ascii");
    let second = text(&msgs[1].content);
    assert!(
        second.contains("Body read from standard input."),
        "{second}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("C: EHLO client.postline.test"),
        "--helo not used:\n{err}"
    );
}

#[test]
fn send_to_smtp_sink() {
    let sink = SmtpSink::start(&[]);
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&sink.addr())
            .from("a@example.com")
            .to("x@example.com,y@example.com")
            .subject("to smtp-sink")
            .body("hello"),
        0,
    );
    let out = stdout(&o);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("accepted")).count(),
        2,
        "{out}"
    );
}

// --------------------------------------------------------------------------- send: --message

/// A ready message with CRLF line endings, a line that needs dot-stuffing and a lone dot line.
const READY: &str = "From: Sender <sender@example.com>\r\n\
To: rcpt@example.com\r\n\
Subject: ready-made\r\n\
Message-ID: <ready-1@example.com>\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
\r\n\
First line.\r\n\
.leading dot\r\n\
.\r\n\
..two dots\r\n\
Last line.\r\n";

#[test]
fn send_message_file_is_sent_byte_for_byte() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let path = sb.write("ready.eml", READY);
    run_code(
        sb.send(&srv.addr())
            .from("envelope@example.com")
            .to("rcpt@example.com")
            .message(&path),
        0,
    );
    let m = only_message(&srv);
    assert_eq!(m.mail_from, "envelope@example.com");
    assert_eq!(m.rcpt_tos, ["rcpt@example.com"]);
    assert_eq!(
        text(&m.content),
        READY,
        "the server did not receive the file byte for byte"
    );
}

#[test]
fn send_message_from_stdin_takes_sender_from_header() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    run_code(
        sb.send(&srv.addr())
            .to("rcpt@example.com")
            .message("-")
            .write_stdin(READY),
        0,
    );
    let m = only_message(&srv);
    assert_eq!(m.mail_from, "sender@example.com");
    assert_eq!(text(&m.content), READY);
}

const WITH_BCC: &str = "From: Sender <sender@example.com>\r\n\
To: To One <to1@example.com>, to2@example.com\r\n\
Cc: cc1@example.com\r\n\
Bcc: hidden1@example.net,\r\n\
\x20hidden2@example.net\r\n\
Subject: extraction\r\n\
\r\n\
Bcc: this body line is not a header\r\n";

/// [`WITH_BCC`] as it must arrive: without the (folded) Bcc field.
const WITHOUT_BCC: &str = "From: Sender <sender@example.com>\r\n\
To: To One <to1@example.com>, to2@example.com\r\n\
Cc: cc1@example.com\r\n\
Subject: extraction\r\n\
\r\n\
Bcc: this body line is not a header\r\n";

#[test]
fn send_extract_recipients_strips_bcc() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let path = sb.write("bcc.eml", WITH_BCC);
    run_code(sb.send(&srv.addr()).arg("-t").message(&path), 0);
    let m = only_message(&srv);
    assert_eq!(m.mail_from, "sender@example.com");
    let mut got = m.rcpt_tos.clone();
    got.sort();
    assert_eq!(
        got,
        [
            "cc1@example.com",
            "hidden1@example.net",
            "hidden2@example.net",
            "to1@example.com",
            "to2@example.com"
        ]
    );
    assert_eq!(text(&m.content), WITHOUT_BCC);
}

#[test]
fn send_message_without_extract_still_strips_bcc() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let path = sb.write("bcc.eml", WITH_BCC);
    run_code(
        sb.send(&srv.addr()).to("only@example.com").message(&path),
        0,
    );
    let m = only_message(&srv);
    assert_eq!(m.rcpt_tos, ["only@example.com"]);
    assert_eq!(text(&m.content), WITHOUT_BCC);
}

/// A Bcc field after a bare CR: on the wire the CR is a line break, so the field is a
/// header field there, and must go (its address getting an RCPT) like any other Bcc.
const BARE_CR_BCC: &str = "From: sender@example.com\n\
To: to1@example.com\n\
Subject: hi\rBcc: secret@example.net\n\
\n\
body\n";

#[test]
fn send_extract_bcc_after_a_bare_cr_is_stripped_and_sent_to() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let path = sb.write("cr.eml", BARE_CR_BCC);
    run_code(sb.send(&srv.addr()).arg("-t").message(&path), 0);
    let m = only_message(&srv);
    let mut got = m.rcpt_tos.clone();
    got.sort();
    assert_eq!(got, ["secret@example.net", "to1@example.com"]);
    let content = text(&m.content);
    assert!(!content.contains("secret"), "{content}");
    assert!(!content.to_ascii_lowercase().contains("bcc:"), "{content}");
}

// -------------------------------------------------------------------------- output and codes

#[test]
fn refused_recipient_exit_codes_and_json() {
    let srv = Aiosmtpd::builder().reject_rcpt("refuse").start();
    let sb = Sandbox::new();
    let base = || {
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("ok@example.com,refuse-me@example.com")
            .body("x")
    };
    // Some refused: 67 by default, with one line per recipient.
    let o = run_code(base(), 67);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("accepted") && l.contains("ok@example.com")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("refused")
            && l.contains("refuse-me@example.com")
            && l.contains("550")),
        "{out}"
    );
    assert!(stderr(&o).contains("--partial-ok"), "{}", stderr(&o));
    // 0 with --partial-ok.
    run_code(base().arg("--partial-ok"), 0);
    // JSON.
    let o = run_code(base().json(), 67);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| {
        panic!("--json output is not JSON ({e}):\n{}", stdout(&o));
    });
    assert_eq!(v["server"], "127.0.0.1");
    assert_eq!(v["port"], srv.port());
    assert_eq!(v["status"], "partial");
    assert_eq!(v["exit_code"], 67);
    assert_eq!(v["reply"]["code"], 250);
    let rs = v["recipients"].as_array().expect("recipients array");
    assert_eq!(rs.len(), 2, "{v}");
    assert_eq!(rs[0]["address"], "ok@example.com");
    assert_eq!(rs[0]["accepted"], true);
    assert_eq!(rs[0]["reply"]["code"], 250);
    assert_eq!(rs[1]["address"], "refuse-me@example.com");
    assert_eq!(rs[1]["accepted"], false);
    assert_eq!(rs[1]["reply"]["code"], 550);
    // Three runs, each delivered to the accepted recipient only.
    let msgs = srv.wait_for_messages(3, STORE_WAIT);
    assert_eq!(msgs.len(), 3);
    for m in msgs {
        assert_eq!(m.rcpt_tos, ["ok@example.com"]);
    }
}

#[test]
fn all_recipients_refused_is_67() {
    let srv = Aiosmtpd::builder().reject_rcpt("refuse").start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("refuse1@example.com,refuse2@example.com")
            .body("x")
            .arg("--partial-ok"),
        67,
    );
    let out = stdout(&o);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("refused")).count(),
        2,
        "{out}"
    );
    let o = run_code(
        sb.send(&srv.addr())
            .json()
            .from("a@example.com")
            .to("refuse1@example.com")
            .body("x"),
        67,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["exit_code"], 67);
    assert_eq!(v["recipients"][0]["accepted"], false);
    assert_eq!(v["recipients"][0]["reply"]["code"], 550);
    assert!(srv.messages().is_empty(), "a message was stored");
}

#[test]
fn delivered_json() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send_bare()
            .server(srv.addr())
            .tls("opportunistic")
            .timeout(5)
            .json()
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        0,
    );
    let out = stdout(&o);
    assert_eq!(out.trim().lines().count(), 1, "one JSON object:\n{out}");
    let v: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["status"], "delivered");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["server"], "127.0.0.1");
    assert_eq!(v["reply"]["code"], 250);
    assert_eq!(v["recipients"][0]["address"], "b@example.com");
    assert_eq!(v["recipients"][0]["accepted"], true);
    assert!(v["tls"].is_null(), "{v}");
    only_message(&srv);
}

#[test]
fn unreachable_server_is_75() {
    let sb = Sandbox::new();
    let port = closed_port();
    let server = format!("127.0.0.1:{port}");
    let o = run_code(
        sb.send(&server)
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        75,
    );
    assert!(stderr(&o).contains("postline:"), "{}", stderr(&o));
    let o = run_code(
        sb.send(&server)
            .json()
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        75,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["exit_code"], 75);
    assert_eq!(v["retryable"], true);
}

#[test]
fn unknown_host_is_68() {
    let sb = Sandbox::new();
    run_code(
        sb.send("nonexistent.invalid:2525")
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        68,
    );
}

#[test]
fn tempfail_is_75() {
    let srv = Aiosmtpd::builder().tempfail_first(1).start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        75,
    );
    assert!(stderr(&o).contains("451"), "{}", stderr(&o));
    assert!(srv.messages().is_empty());
}

#[test]
fn smtp_sink_soft_rcpt_refusal_is_75_and_hard_data_refusal_is_65() {
    let sb = Sandbox::new();
    let send = |addr: &str| -> SendCmd {
        sb.send(addr)
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
    };
    let soft = SmtpSink::start(&["-r", "RCPT"]);
    let o = run_code(send(&soft.addr()), 75);
    assert!(
        stdout(&o).contains("deferred  b@example.com  4"),
        "{}",
        stdout(&o)
    );
    let hard = SmtpSink::start(&["-f", "DATA"]);
    run_code(send(&hard.addr()), 65);
}

#[test]
fn bad_config_syntax_is_78_with_file_and_line() {
    let sb = Sandbox::new();
    let cfg = sb.config("default = \"a\"\n[accounts.a]\nserver = = \"x\"\n");
    let o = run_code(
        sb.send_bare()
            .server(format!("127.0.0.1:{}", closed_port()))
            .tls("none")
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        78,
    );
    let err = stderr(&o);
    assert!(err.contains(cfg.to_str().unwrap()), "no file name:\n{err}");
    assert!(err.contains("line 3"), "no line number:\n{err}");
}

/// A scripted server that records whatever arrives: nothing should.
fn silent_server() -> ScriptedServer {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.push(Step::expect("QUIT"));
    script.push(Step::reply("221 bye"));
    ScriptedServer::start(script)
}

#[test]
fn malformed_addresses_are_64_before_any_mail() {
    let sb = Sandbox::new();
    for (flag, bad) in [
        ("--to", "a@b\r\nRCPT TO:<x@example.com>"),
        ("--to", "bad address"),
        ("--cc", "a@b\nDATA"),
        ("--from", "a@example.com>\r\nRCPT TO:<x@example.com"),
    ] {
        let srv = silent_server();
        let mut send = sb.send(&srv.addr()).body("x");
        if flag != "--from" {
            send = send.from("a@example.com");
        }
        if flag != "--to" {
            send = send.to("ok@example.com");
        }
        let o = run_code(send.args([flag, bad]), 64);
        let report = srv.finish();
        let got = report.received_str();
        assert!(
            !got.contains("MAIL") && !got.contains("RCPT"),
            "{flag} {bad:?}: the server received:\n{got}"
        );
        assert!(
            stderr(&o).contains(flag),
            "{flag} {bad:?}: stderr does not name the flag:\n{}",
            stderr(&o)
        );
    }
}

#[test]
fn usage_errors() {
    let sb = Sandbox::new();
    let server = format!("127.0.0.1:{}", closed_port());
    // `send --server SERVER --tls none`, no --timeout.
    let send = || sb.send_bare().server(&server).tls("none");
    // Missing attachment: 66.
    let o = run_code(
        send()
            .from("a@example.com")
            .to("b@example.com")
            .attach(sb.path("missing.pdf")),
        66,
    );
    assert!(stderr(&o).contains("missing.pdf"), "{}", stderr(&o));
    // Missing --body-file and --message: 66.
    run_code(
        send()
            .from("a@example.com")
            .to("b@example.com")
            .body_file(sb.path("missing.txt")),
        66,
    );
    run_code(
        send().to("b@example.com").message(sb.path("missing.eml")),
        66,
    );
    // Header injection through --header or --subject: 64.
    for (flag, value) in [
        ("--header", "X-A: 1\r\nBcc: evil@example.com"),
        ("--header", "no colon here"),
        ("--subject", "hi\r\nBcc: evil@example.com"),
        ("--reply-to", "r@example.com\r\nBcc: evil@example.com"),
    ] {
        run_code(
            send()
                .from("a@example.com")
                .to("b@example.com")
                .body("x")
                .args([flag, value]),
            64,
        );
    }
    // Bad --server, --timeout, --helo: 64.
    for extra in [
        ["--server", "127.0.0.1:notaport"],
        ["--timeout", "-1"],
        ["--helo", "bad name"],
    ] {
        run_code(
            send()
                .from("a@example.com")
                .to("b@example.com")
                .body("x")
                .args(extra),
            64,
        );
    }
    // Unknown flag: 64.
    run_code(sb.cmd(&["send", "--no-such-flag"]), 64);
    run_code(sb.cmd(&["frobnicate"]), 64);
    // No way to give a password as an argument.
    let o = run_code(
        sb.send_bare()
            .server(&server)
            .user("u")
            .args(["--password", "hunter2"])
            .from("a@example.com")
            .to("b@example.com"),
        64,
    );
    assert!(!stdout(&o).contains("hunter2"));
    // --user without a password source: 64.
    run_code(
        send()
            .user("u")
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        64,
    );
    // No recipients: 64.
    run_code(
        sb.send_bare()
            .server(&server)
            .from("a@example.com")
            .body("x"),
        64,
    );
    // (No server at all means direct delivery by MX: tests/direct.rs.)
    // -t needs --message; --message conflicts with composing flags.
    run_code(
        sb.send_bare().server(&server).arg("-t").to("b@example.com"),
        64,
    );
    run_code(
        sb.send_bare()
            .server(&server)
            .to("b@example.com")
            .message("-")
            .subject("x"),
        64,
    );
    // --help and --version are not errors.
    let o = run_code(sb.cmd(&["send", "--help"]), 0);
    assert!(stdout(&o).contains("--partial-ok"));
    let o = run_code(sb.cmd(&["--version"]), 0);
    assert!(stdout(&o).starts_with("postline "));
}

// -------------------------------------------------------------------------------------- auth

fn tls_auth_server(ca: &TestCa) -> Aiosmtpd {
    Aiosmtpd::builder()
        .starttls_with(ca)
        .auth(USER, PASSWORD)
        .start()
}

/// `send` over STARTTLS trusting `ca`, as [`USER`], with no password source yet.
fn auth_send(sb: &Sandbox, srv: &str, ca: &Path) -> SendCmd {
    sb.send_bare()
        .server(srv)
        .tls("starttls")
        .ca_file(ca)
        .timeout(5)
        .user(USER)
        .from("a@example.com")
        .to("b@example.com")
        .body("authenticated")
}

#[test]
fn auth_password_env_and_wrong_password() {
    let ca = TestCa::new();
    let srv = tls_auth_server(&ca);
    let sb = Sandbox::new();
    let addr = srv.addr();
    let send = || auth_send(&sb, &addr, &ca.ca_path).password_env("POSTLINE_TEST_PW");
    run_code(send().env("POSTLINE_TEST_PW", PASSWORD), 0);
    let m = only_message(&srv);
    assert!(m.tls, "not under TLS");
    assert_eq!(m.auth_user.as_deref(), Some(USER));
    // Wrong password: 77.
    run_code(send().env("POSTLINE_TEST_PW", "wrong-password"), 77);
    // An unset variable is a configuration error, and nothing is sent.
    run_code(send().env_remove("POSTLINE_TEST_PW"), 78);
    assert_eq!(srv.messages().len(), 1);
}

#[test]
fn auth_password_file_permissions() {
    let ca = TestCa::new();
    let srv = tls_auth_server(&ca);
    let sb = Sandbox::new();
    let addr = srv.addr();
    let pw = sb.write("password", format!("{PASSWORD}\n"));
    let send =
        || auth_send(&sb, &addr, &ca.ca_path).args(["--password-file", pw.to_str().unwrap()]);
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    run_code(send(), 0);
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_code(send(), 78);
    assert!(
        stderr(&o).contains(pw.to_str().unwrap()),
        "the refusal does not name the file:\n{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(PASSWORD));
    run_code(send().arg("--allow-world-readable-password"), 0);
    assert_eq!(srv.wait_for_messages(2, STORE_WAIT).len(), 2);
    // A missing password file: 78 too, before anything is sent.
    let missing = sb.path("no-such-password");
    run_code(
        auth_send(&sb, &addr, &ca.ca_path).args(["--password-file", missing.to_str().unwrap()]),
        78,
    );
}

#[test]
fn auth_password_cmd() {
    let ca = TestCa::new();
    let srv = tls_auth_server(&ca);
    let sb = Sandbox::new();
    let addr = srv.addr();
    let cmd = format!("printf '{PASSWORD}'");
    run_code(
        auth_send(&sb, &addr, &ca.ca_path).args(["--password-cmd", &cmd]),
        0,
    );
    assert_eq!(only_message(&srv).auth_user.as_deref(), Some(USER));
    // A failing command: 78.
    run_code(
        auth_send(&sb, &addr, &ca.ca_path).args(["--password-cmd", "exit 3"]),
        78,
    );
}

#[test]
fn tls_verification_insecure_and_refused_certificate() {
    let ca = TestCa::new();
    let srv = tls_auth_server(&ca);
    let sb = Sandbox::new();
    let addr = srv.addr();
    let send = |extra: &[&str]| {
        sb.send_bare()
            .server(&addr)
            .tls("starttls")
            .timeout(5)
            .user(USER)
            .password_env("POSTLINE_TEST_PW")
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
            .args(extra)
            .env("POSTLINE_TEST_PW", PASSWORD)
    };
    // Unknown CA: 69, nothing delivered.
    let o = run_code(send(&[]), 69);
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    assert!(srv.messages().is_empty());
    // --insecure: delivered, with a warning.
    let o = run_code(send(&["--insecure"]), 0);
    let err = stderr(&o);
    assert!(
        err.contains("warning") && err.contains("--insecure"),
        "{err}"
    );
    // Another CA's file does not help.
    let other = TestCa::other();
    run_code(send(&["--ca-file", other.ca_path.to_str().unwrap()]), 69);
    // A missing CA file: 66.
    run_code(
        send(&["--ca-file", sb.path("nope.pem").to_str().unwrap()]),
        66,
    );
    assert_eq!(srv.messages().len(), 1);
}

/// Strings that must never appear in a transcript.
fn secret_forms() -> Vec<String> {
    vec![
        PASSWORD.to_string(),
        b64_encode(PASSWORD.as_bytes()),
        b64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes()),
        b64_encode(format!("{USER}\0{USER}\0{PASSWORD}").as_bytes()),
        b64_encode(format!("{USER}\0{PASSWORD}").as_bytes()),
    ]
}

#[test]
fn verbose_transcript_redacts_credentials() {
    let ca = TestCa::new();
    let srv = tls_auth_server(&ca);
    let sb = Sandbox::new();
    let addr = srv.addr();
    for mech in ["plain", "login"] {
        let o = run_code(
            auth_send(&sb, &addr, &ca.ca_path)
                .password_env("POSTLINE_TEST_PW")
                .verbose()
                .args(["--auth", mech])
                .env("POSTLINE_TEST_PW", PASSWORD),
            0,
        );
        let err = stderr(&o);
        assert!(err.lines().any(|l| l.starts_with("C: ")), "{err}");
        assert!(err.lines().any(|l| l.starts_with("S: 220")), "{err}");
        assert!(err.contains("C: STARTTLS"), "{err}");
        let auth_line = format!("C: AUTH {}", mech.to_uppercase());
        assert!(err.contains(&auth_line), "no {auth_line:?}:\n{err}");
        assert!(err.contains("***"), "no redaction marker:\n{err}");
        for s in secret_forms() {
            assert!(
                !err.contains(&s),
                "{mech}: transcript contains {s:?}:\n{err}"
            );
            assert!(!stdout(&o).contains(&s));
        }
        if mech == "login" {
            assert_eq!(err.lines().filter(|l| *l == "C: ***").count(), 2, "{err}");
            // The user name's base64 is a credential line too.
            assert!(!err.contains(&b64_encode(USER.as_bytes())), "{err}");
        }
    }
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    assert!(msgs.iter().all(|m| m.auth_user.as_deref() == Some(USER)));
}

#[test]
fn plaintext_auth_refused_without_flag() {
    let sb = Sandbox::new();
    let mut script = greeting_and_ehlo(&["AUTH PLAIN LOGIN", "PIPELINING"]);
    script.push(Step::expect("QUIT"));
    script.push(Step::reply("221 bye"));
    let srv = ScriptedServer::start(script);
    let o = run_code(
        sb.send(&srv.addr())
            .user(USER)
            .password_env("POSTLINE_TEST_PW")
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
            .env("POSTLINE_TEST_PW", PASSWORD),
        78,
    );
    let report = srv.finish();
    let got = report.received_str();
    assert!(!got.contains("AUTH"), "AUTH sent in clear text:\n{got}");
    assert!(!got.contains("MAIL"), "{got}");
    assert!(!got.contains(PASSWORD) && !got.contains(&b64_encode(PASSWORD.as_bytes())));
    assert!(
        stderr(&o).contains("--allow-plaintext-auth") || stderr(&o).contains("TLS"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plaintext_auth_with_flag() {
    let srv = Aiosmtpd::builder()
        .auth(USER, PASSWORD)
        .auth_plaintext()
        .start();
    let sb = Sandbox::new();
    run_code(
        sb.send(&srv.addr())
            .arg("--allow-plaintext-auth")
            .user(USER)
            .password_env("POSTLINE_TEST_PW")
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
            .env("POSTLINE_TEST_PW", PASSWORD),
        0,
    );
    let m = only_message(&srv);
    assert!(!m.tls);
    assert_eq!(m.auth_user.as_deref(), Some(USER));
}

/// A server offering OAuth mechanisms (in clear text), expecting `AUTH <mech> <initial
/// response>` and then one message.
fn oauth_server(mech: &str) -> ScriptedServer {
    let mut script = greeting_and_ehlo(&["AUTH XOAUTH2 OAUTHBEARER"]);
    script.extend([
        Step::expect(&format!("AUTH {mech} ")),
        Step::reply("235 2.7.0 Accepted"),
        Step::expect("MAIL FROM:<a@example.com>"),
        Step::reply("250 2.1.0 Ok"),
        Step::expect("RCPT TO:<b@example.com>"),
        Step::reply("250 2.1.5 Ok"),
        Step::expect("DATA"),
        Step::reply("354 Go ahead"),
        Step::ExpectData,
        Step::reply("250 2.0.0 Queued"),
        Step::expect("QUIT"),
        Step::reply("221 2.0.0 Bye"),
    ]);
    ScriptedServer::start(script)
}

/// The decoded initial response of the `AUTH <mech> ...` line the server received.
fn oauth_initial_response(received: &str, mech: &str) -> String {
    let prefix = format!("AUTH {mech} ");
    let line = received
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{received}"));
    text(&b64_decode(line.trim()))
}

#[test]
fn oauth_token_env_and_cmd() {
    const TOKEN: &str = "ya29.test-token-0123456789";
    let sb = Sandbox::new();
    let common = |addr: &str| -> SendCmd {
        sb.send_bare()
            .server(addr)
            .tls("none")
            .arg("--allow-plaintext-auth")
            .timeout(5)
            .verbose()
            .user(USER)
            .from("a@example.com")
            .to("b@example.com")
            .body("x")
    };
    // XOAUTH2 with the token from the environment.
    let srv = oauth_server("XOAUTH2");
    let o = run_code(
        common(&srv.addr())
            .args(["--auth", "xoauth2"])
            .args(["--oauth-token-env", "POSTLINE_TEST_TOKEN"])
            .env("POSTLINE_TEST_TOKEN", TOKEN),
        0,
    );
    let report = srv.finish();
    report.assert_ok();
    assert_eq!(
        oauth_initial_response(&report.received_str(), "XOAUTH2"),
        format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01")
    );
    let err = stderr(&o);
    assert!(err.contains("C: AUTH XOAUTH2 ***"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    // OAUTHBEARER with the token from a command.
    let srv = oauth_server("OAUTHBEARER");
    let cmd = format!("echo {TOKEN}");
    let o = run_code(
        common(&srv.addr())
            .args(["--auth", "oauthbearer"])
            .args(["--oauth-token-cmd", &cmd]),
        0,
    );
    let report = srv.finish();
    report.assert_ok();
    let ir = oauth_initial_response(&report.received_str(), "OAUTHBEARER");
    assert!(ir.starts_with(&format!("n,a={USER},")), "{ir:?}");
    assert!(
        ir.ends_with(&format!("\x01auth=Bearer {TOKEN}\x01\x01")),
        "{ir:?}"
    );
    assert!(!stderr(&o).contains(TOKEN), "{}", stderr(&o));
}

#[test]
fn implicit_tls_send_and_probe() {
    let ca = TestCa::new();
    let srv = Aiosmtpd::builder().implicit_tls_with(&ca).start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send_bare()
            .server(srv.addr())
            .tls("implicit")
            .ca_file(&ca.ca_path)
            .timeout(5)
            .json()
            .from("a@example.com")
            .to("b@example.com")
            .body("over implicit TLS"),
        0,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert!(v["tls"]["version"].as_str().unwrap().contains('1'), "{v}");
    assert!(text(&only_message(&srv).content).contains("over implicit TLS"));
    let o = run_code(
        sb.cmd(&[
            "probe",
            "--server",
            &srv.addr(),
            "--tls",
            "implicit",
            "--ca-file",
            ca.ca_path.to_str().unwrap(),
            "--timeout",
            "5",
        ]),
        0,
    );
    let out = stdout(&o);
    assert!(out.lines().any(|l| l.starts_with("TLS ")), "{out}");
    assert!(out.contains("verifies: yes"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("extensions")), "{out}");
}

// ---------------------------------------------------------------------------------- accounts

#[test]
fn accounts_default_named_and_overrides() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let dead = closed_port();
    sb.config(&format!(
        "default = \"main\"\n\n{}\n{}",
        account_toml("main", srv.port(), "main@example.com"),
        account_toml("dead", dead, "dead@example.com"),
    ));
    // Named.
    run_code(
        sb.send_bare()
            .account("main")
            .timeout(5)
            .to("r1@example.com")
            .body("1"),
        0,
    );
    // Default, no --account.
    run_code(sb.send_bare().timeout(5).to("r2@example.com").body("2"), 0);
    // Flags override the account's settings.
    run_code(
        sb.send_bare()
            .timeout(5)
            .from("override@example.com")
            .to("r3@example.com")
            .body("3"),
        0,
    );
    run_code(
        sb.send_bare()
            .account("dead")
            .server(srv.addr())
            .timeout(5)
            .to("r4@example.com")
            .body("4"),
        0,
    );
    // The dead account really is dead.
    run_code(
        sb.send_bare()
            .account("dead")
            .timeout(5)
            .to("r5@example.com")
            .body("5"),
        75,
    );
    let msgs = srv.wait_for_messages(4, STORE_WAIT);
    let got: Vec<(&str, &str)> = msgs
        .iter()
        .map(|m| (m.mail_from.as_str(), m.rcpt_tos[0].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("main@example.com", "r1@example.com"),
            ("main@example.com", "r2@example.com"),
            ("override@example.com", "r3@example.com"),
            ("dead@example.com", "r4@example.com"),
        ]
    );
    // The From header follows the envelope sender.
    assert!(header(&msgs[2].content, "From").contains("override@example.com"));
    // Unknown account: 78, naming it.
    let o = run_code(sb.send_bare().account("nope").to("x@example.com"), 78);
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

#[test]
fn account_without_config_file_is_78() {
    let sb = Sandbox::new();
    run_code(sb.send_bare().account("work").to("x@example.com"), 78);
}

#[test]
fn account_with_tls_and_password_env() {
    let ca = TestCa::new();
    let srv = tls_auth_server(&ca);
    let sb = Sandbox::new();
    sb.config(&format!(
        "[accounts.secure]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nuser = \"{USER}\"\npassword_env = \"POSTLINE_TEST_PW\"\nfrom = \"secure@example.com\"\nca_file = \"{}\"\nhelo = \"acct.postline.test\"\n",
        srv.port(),
        ca.ca_path.display()
    ));
    let o = run_code(
        sb.send_bare()
            .account("secure")
            .timeout(5)
            .verbose()
            .to("b@example.com")
            .body("x")
            .env("POSTLINE_TEST_PW", PASSWORD),
        0,
    );
    let m = only_message(&srv);
    assert!(m.tls);
    assert_eq!(m.auth_user.as_deref(), Some(USER));
    assert_eq!(m.mail_from, "secure@example.com");
    let err = stderr(&o);
    assert!(err.contains("C: EHLO acct.postline.test"), "{err}");
    assert!(!err.contains(PASSWORD));
}

// ---------------------------------------------------------------------------------- sendmail

fn sendmail_sandbox(srv: &Aiosmtpd) -> Sandbox {
    let sb = Sandbox::new();
    sb.config(&format!(
        "default = \"relay\"\n{}",
        account_toml("relay", srv.port(), "daemon@example.com")
    ));
    sb
}

#[test]
fn sendmail_extract_recipients_strips_bcc() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    let o = run_code(sb.cmd(&["sendmail", "-t", "-i"]).write_stdin(WITH_BCC), 0);
    assert!(stdout(&o).is_empty(), "sendmail is quiet: {}", stdout(&o));
    let m = only_message(&srv);
    assert_eq!(m.mail_from, "daemon@example.com");
    let mut got = m.rcpt_tos.clone();
    got.sort();
    assert_eq!(
        got,
        [
            "cc1@example.com",
            "hidden1@example.net",
            "hidden2@example.net",
            "to1@example.com",
            "to2@example.com"
        ]
    );
    sendmail_added_headers(&m.content, WITHOUT_BCC);
    assert!(!text(&m.content).contains("hidden"));
}

#[test]
fn sendmail_extract_bcc_after_a_bare_cr_is_stripped_and_sent_to() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    run_code(
        sb.cmd(&["sendmail", "-t", "-i"]).write_stdin(BARE_CR_BCC),
        0,
    );
    let m = only_message(&srv);
    let mut got = m.rcpt_tos.clone();
    got.sort();
    assert_eq!(got, ["secret@example.net", "to1@example.com"]);
    let content = text(&m.content);
    assert!(!content.contains("secret"), "{content}");
    assert!(!content.to_ascii_lowercase().contains("bcc:"), "{content}");
}

/// A resent message goes to its Resent- recipients only, and Resent-Bcc is not sent.
#[test]
fn sendmail_extract_resent_recipients() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    let msg = "Resent-From: fwd@example.com\r\n\
Resent-To: new@example.org\r\n\
Resent-Bcc: hidden@example.net\r\n\
From: sender@example.com\r\n\
To: old@example.org\r\n\
Subject: resent\r\n\
\r\n\
body\r\n";
    run_code(sb.cmd(&["sendmail", "-t", "-i"]).write_stdin(msg), 0);
    let m = only_message(&srv);
    let mut got = m.rcpt_tos.clone();
    got.sort();
    assert_eq!(got, ["hidden@example.net", "new@example.org"]);
    let content = text(&m.content);
    assert!(!content.contains("hidden"), "{content}");
    assert!(content.contains("Resent-To: new@example.org\r\nFrom: sender@example.com\r\n"));
}

/// A recipient field with an entry that is not an address is refused, not half sent.
#[test]
fn sendmail_extract_refuses_a_recipient_field_with_a_non_address() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    let msg = "From: sender@example.com\r\n\
To: a@example.org, not an address, b@example.org\r\n\
\r\n\
body\r\n";
    let o = run_code(sb.cmd(&["sendmail", "-t", "-i"]).write_stdin(msg), 65);
    let err = stderr(&o);
    assert!(
        err.contains("To field") && err.contains("not an address"),
        "{err}"
    );
    assert!(srv.messages().is_empty());
}

#[test]
fn sendmail_envelope_sender_and_argument_recipients() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    let msg = "From: Someone <someone@example.com>\r\nSubject: args\r\n\r\nbody\r\n";
    run_code(
        sb.cmd(&[
            "sendmail",
            "-i",
            "-f",
            "bounces@example.com",
            "--",
            "r1@example.com",
            "r2@example.com",
        ])
        .write_stdin(msg),
        0,
    );
    let m = only_message(&srv);
    assert_eq!(m.mail_from, "bounces@example.com");
    assert_eq!(m.rcpt_tos, ["r1@example.com", "r2@example.com"]);
    sendmail_added_headers(&m.content, msg);
}

#[test]
fn sendmail_symlink_and_dot_line() {
    let srv = Aiosmtpd::start();
    let sb = sendmail_sandbox(&srv);
    // Invoked as `sendmail`, cron's way: -oi, a full name, recipient as argument.
    let msg = "Subject: cron\r\n\r\nline one\r\n.\r\nstill here with -oi\r\n";
    run_code(
        sb.sendmail_symlink()
            .args(["-FCron Daemon", "-oi", "root@example.org"])
            .write_stdin(msg),
        0,
    );
    // Without -i a line with a single dot ends the message.
    run_code(
        sb.sendmail_symlink()
            .args(["root@example.org"])
            .write_stdin("Subject: dot\r\n\r\nbefore the dot\r\n.\r\nafter the dot\r\n"),
        0,
    );
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    assert_eq!(msgs[0].rcpt_tos, ["root@example.org"]);
    assert_eq!(msgs[0].mail_from, "daemon@example.com");
    let first = text(&msgs[0].content);
    // A From header is added (with -F's name), and with -oi the lone dot is message text.
    let added = sendmail_added_headers(&msgs[0].content, msg);
    assert!(
        added.contains(&"From: \"Cron Daemon\" <daemon@example.com>".to_string()),
        "{first}"
    );
    let second = text(&msgs[1].content);
    assert!(second.contains("before the dot"), "{second}");
    assert!(!second.contains("after the dot"), "{second}");
}

#[test]
fn sendmail_errors() {
    let srv = Aiosmtpd::builder().reject_rcpt("refuse").start();
    // No config: 78.
    let bare = Sandbox::new();
    run_code(
        bare.cmd(&["sendmail", "-i", "x@example.com"])
            .write_stdin("Subject: x\r\n\r\nx\r\n"),
        78,
    );
    let sb = sendmail_sandbox(&srv);
    // A refused recipient: 67, on stderr.
    let o = run_code(
        sb.cmd(&["sendmail", "-i", "ok@example.com", "refuse@example.com"])
            .write_stdin("Subject: x\r\n\r\nx\r\n"),
        67,
    );
    assert!(stderr(&o).contains("refuse@example.com"), "{}", stderr(&o));
    // No recipients: 64. Unsupported mode: 64.
    run_code(
        sb.cmd(&["sendmail", "-i"])
            .write_stdin("Subject: x\r\n\r\nx\r\n"),
        64,
    );
    run_code(sb.cmd(&["sendmail", "-bp"]), 64);
}

// ------------------------------------------------------------------------------------- probe

#[test]
fn probe_reports_banner_extensions_and_tls() {
    let ca = TestCa::new();
    let srv = Aiosmtpd::builder().starttls_with(&ca).start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.cmd(&[
            "probe",
            "--server",
            &srv.addr(),
            "--tls",
            "none",
            "--timeout",
            "5",
        ]),
        0,
    );
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("banner") && l.contains("220")
                || l.starts_with("banner") && l.contains("aiosmtpd.postline.test")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("extensions")), "{out}");
    assert!(out.contains("STARTTLS"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("STARTTLS") && l.contains("offered")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("TLS ") && l.contains("TLS") && l.contains('1')),
        "{out}"
    );
    assert!(out.contains("certificate"), "{out}");
    assert!(out.contains("subject:") && out.contains("issuer:"), "{out}");
    assert!(out.contains("postline test CA"), "{out}");
    assert!(out.contains("verifies: NO"), "{out}");

    let json = |extra: &[&str]| -> Value {
        let mut args = vec![
            "probe",
            "--server",
            "",
            "--tls",
            "none",
            "--timeout",
            "5",
            "--json",
        ];
        let addr = srv.addr();
        args[2] = &addr;
        args.extend(extra);
        let o = run_code(sb.cmd(&args), 0);
        serde_json::from_str(stdout(&o).trim())
            .unwrap_or_else(|e| panic!("probe --json: {e}:\n{}", stdout(&o)))
    };
    let v = json(&[]);
    assert_eq!(v["server"], "127.0.0.1");
    assert_eq!(v["starttls_offered"], true);
    assert!(v["banner"]
        .as_str()
        .unwrap()
        .contains("aiosmtpd.postline.test"));
    assert!(v["ehlo"].as_array().unwrap().len() > 1);
    assert_eq!(v["tls"]["verified"], false, "{v}");
    assert!(v["tls"]["version"].as_str().unwrap().contains('1'), "{v}");
    assert!(v["tls"]["certificate"]["issuer"]
        .as_str()
        .unwrap()
        .contains("postline test CA"));
    let v = json(&["--ca-file", ca.ca_path.to_str().unwrap()]);
    assert_eq!(v["tls"]["verified"], true, "{v}");
}

#[test]
fn probe_unreachable_is_75() {
    let sb = Sandbox::new();
    run_code(
        sb.cmd(&[
            "probe",
            "--server",
            &format!("127.0.0.1:{}", closed_port()),
            "--tls",
            "none",
            "--timeout",
            "5",
        ]),
        75,
    );
}

// ------------------------------------------------------------------------ completions and man

#[test]
fn completions_and_man_page() {
    let sb = Sandbox::new();
    let o = run_code(sb.cmd(&["completions", "bash"]), 0);
    let out = stdout(&o);
    assert!(out.contains("postline"), "{out}");
    assert!(out.contains("--partial-ok"), "{out}");
    let o = run_code(sb.cmd(&["completions", "zsh"]), 0);
    assert!(stdout(&o).contains("postline"));
    let o = run_code(sb.cmd(&["man"]), 0);
    let out = stdout(&o);
    assert!(out.contains(".TH"), "{out}");
    assert!(out.to_lowercase().contains("postline"), "{out}");
    run_code(sb.cmd(&["completions", "no-such-shell"]), 64);
}

/// Recipients refused for now (4xx) and none accepted: exit 75, even with `--partial-ok`
/// (which covers refusals for good only); the line says deferred and the JSON status too.
/// (Some accepted and one refused, for good or for now: 67, never 75, so a caller does not
/// send the whole message again.)
#[test]
fn recipients_refused_for_now_are_75_and_partial_ok_does_not_hide_them() {
    let srv = Aiosmtpd::builder().reject_rcpt("refuse").start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .from("a@example.com")
            .to("ok@example.com")
            .to("refuse@example.com")
            .body("x"),
        67,
    );
    assert!(
        stdout(&o).contains("refused   refuse@example.com  550"),
        "{}",
        stdout(&o)
    );
    let soft = SmtpSink::start(&["-r", "RCPT"]);
    for extra in [&[][..], &["--partial-ok"][..], &["--json"][..]] {
        let o = run_code(
            sb.send(&soft.addr())
                .from("a@example.com")
                .to("b@example.com")
                .to("c@example.com")
                .body("x")
                .args(extra),
            75,
        );
        if extra == ["--json"] {
            let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
            assert_eq!(v["recipients"][0]["status"], "deferred", "{v}");
        }
    }
}
