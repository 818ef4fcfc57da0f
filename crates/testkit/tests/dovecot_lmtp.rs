//! Self-test of the Dovecot LMTP rig, spoken to by a bare LMTP client over std's Unix and TCP
//! streams: nothing here uses postline's own API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use postline_testkit::*;

const WAIT: Duration = Duration::from_secs(10);

/// Reads one (possibly multiline) reply: (code, lines without CRLF).
fn reply(r: &mut impl BufRead) -> (u16, Vec<String>) {
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        let n = r.read_line(&mut l).expect("read reply");
        assert!(n > 0, "EOF while reading a reply; got {lines:?}");
        let l = l.trim_end_matches(['\r', '\n']).to_owned();
        let more = l.as_bytes().get(3) == Some(&b'-');
        lines.push(l);
        if !more {
            break;
        }
    }
    (lines[0][..3].parse().expect("reply code"), lines)
}

/// One LMTP transaction: alice (known) and bob (unknown) as recipients; `subject` tells the
/// message apart.
fn session<S: Read + Write>(stream: S, subject: &str) {
    let mut r = BufReader::new(stream);
    let cmd = |r: &mut BufReader<S>, line: &str, code: u16| -> Vec<String> {
        r.get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        let (c, lines) = reply(r);
        assert_eq!(c, code, "{line:?} -> {lines:?}");
        lines
    };
    let (c, greeting) = reply(&mut r);
    assert_eq!(c, 220, "{greeting:?}");
    assert!(greeting[0].contains("lmtp.postline.test"), "{greeting:?}");
    let lhlo = cmd(&mut r, "LHLO client.postline.test", 250);
    assert!(lhlo.iter().any(|l| l.ends_with("PIPELINING")), "{lhlo:?}");
    cmd(&mut r, "MAIL FROM:<sender@postline.test>", 250);
    cmd(&mut r, "RCPT TO:<alice@example.org>", 250);
    let bob = cmd(&mut r, "RCPT TO:<bob@example.org>", 550);
    assert!(bob[0].contains("User doesn't exist"), "{bob:?}");
    cmd(&mut r, "DATA", 354);
    let body = format!("Subject: {subject}\r\n\r\nHello over LMTP.\r\n.\r\n");
    // One reply per accepted recipient: alice only.
    let done = cmd(&mut r, body.trim_end_matches("\r\n"), 250);
    assert!(done[0].contains("<alice@example.org>"), "{done:?}");
    cmd(&mut r, "QUIT", 221);
    // Nothing more: the server closes after 221.
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "after QUIT: {:?}", lossy(&rest));
}

#[test]
fn dovecot_lmtp_over_unix_socket_and_tcp_into_maildir() {
    let dovecot = Dovecot::builder()
        .user("alice", "secret")
        .hostname("lmtp.postline.test")
        .lmtp()
        .start();
    eprintln!("Dovecot (LMTP) up in {:?}", dovecot.startup_time());
    assert!(dovecot.maildir_messages("alice").is_empty());

    let sock = dovecot.lmtp_socket().expect("lmtp socket");
    let unix = UnixStream::connect(sock).expect("connect to the LMTP socket");
    unix.set_read_timeout(Some(WAIT)).unwrap();
    unix.set_write_timeout(Some(WAIT)).unwrap();
    session(unix, "over unix");
    let m = dovecot.wait_maildir("alice", 1, WAIT);
    assert_eq!(m.len(), 1);
    let text = lossy(&m[0]);
    assert!(
        text.starts_with("Return-Path: <sender@postline.test>\n"),
        "{text}"
    );
    assert!(text.contains("Delivered-To: alice@example.org\n"), "{text}");
    assert!(text.contains("by lmtp.postline.test with LMTP"), "{text}");
    assert!(
        text.ends_with("Subject: over unix\n\nHello over LMTP.\n"),
        "{text}"
    );

    let port = dovecot.lmtp_port().expect("lmtp port");
    let tcp = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), WAIT).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.set_write_timeout(Some(WAIT)).unwrap();
    session(tcp, "over tcp");
    let m = dovecot.wait_maildir("alice", 2, WAIT);
    assert_eq!(m.len(), 2);
    assert!(
        lossy(&m[1]).ends_with("Subject: over tcp\n\nHello over LMTP.\n"),
        "{}",
        lossy(&m[1])
    );
    assert!(dovecot.maildir_messages("bob").is_empty());
}
