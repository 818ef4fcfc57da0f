//! DKIM signing by `postline send` and sendmail mode, verified by a third party: the bytes
//! aiosmtpd stored are checked with dkimpy (tests/interop/dkim_verify.py), which gets the key
//! record from the public key instead of DNS. Keys come from `openssl genpkey`.

use std::path::Path;
use std::time::Duration;

use postline_testkit::{openssl, run_code, stderr, Aiosmtpd, DkimKey, Sandbox};

const STORE_WAIT: Duration = Duration::from_secs(10);

fn genkey(sb: &Sandbox, kind: &'static str) -> DkimKey {
    DkimKey::generate(sb.dir(), kind)
}

fn dkimpy(sb: &Sandbox, key: &DkimKey, message: &[u8], name: &str) -> Result<String, String> {
    key.dkimpy(sb.dir(), name, message)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The stored message verifies, and a copy with one body byte changed does not.
#[track_caller]
fn assert_verifies_and_tamper_fails(sb: &Sandbox, key: &DkimKey, content: &[u8]) {
    let t = text(content);
    assert!(t.starts_with("DKIM-Signature:"), "signature first:\n{t}");
    let alg = if key.kind == "rsa" {
        "a=rsa-sha256"
    } else {
        "a=ed25519-sha256"
    };
    let sig_field: String = t
        .split("\r\n")
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("");
    assert!(sig_field.contains(alg), "{sig_field}");
    assert!(sig_field.contains("c=relaxed/relaxed"), "{sig_field}");
    let ok = dkimpy(sb, key, content, "stored.eml").unwrap_or_else(|e| {
        panic!("dkimpy did not verify the stored message:\n{e}\n--- message:\n{t}")
    });
    assert!(ok.contains("sel._domainkey.example.org"), "{ok}");
    // One body byte changed: the body hash no longer matches.
    let body_at = t.find("\r\n\r\n").expect("header/body separator") + 4;
    let mut tampered = content.to_vec();
    let i = (body_at..tampered.len())
        .find(|&i| tampered[i].is_ascii_alphabetic())
        .expect("a letter in the body");
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    assert!(
        dkimpy(sb, key, &tampered, "tampered.eml").is_err(),
        "dkimpy verified a tampered message"
    );
}

fn dkim_flags(key: &Path) -> [String; 6] {
    [
        "--dkim-key".into(),
        key.to_str().unwrap().into(),
        "--dkim-selector".into(),
        "sel".into(),
        "--dkim-domain".into(),
        "example.org".into(),
    ]
}

#[test]
fn send_composed_multipart_signed_rsa_and_ed25519_verify_with_dkimpy() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let long_line = "long ".repeat(300);
    let body = sb.write(
        "body.txt",
        format!("Hello,\n\n{long_line}\n  indented  with   spaces \t\nend.\n\n\n\n"),
    );
    let attachment: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let attach = sb.write("data.bin", &attachment);
    let keys = [genkey(&sb, "rsa"), genkey(&sb, "ed25519")];
    for key in &keys {
        run_code(
            sb.send(&srv.addr())
                .from("sender@example.org")
                .to("to@example.com")
                .cc("cc@example.com")
                .bcc("hidden@example.net")
                .subject("Grüße: signed")
                .body_file(&body)
                .attach(&attach)
                .args(dkim_flags(&key.private)),
            0,
        );
    }
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    assert_eq!(msgs.len(), 2);
    for (key, m) in keys.iter().zip(&msgs) {
        let t = text(&m.content);
        assert!(t.contains("multipart/mixed"), "{t}");
        assert!(!t.contains("hidden@"), "Bcc removed before signing:\n{t}");
        assert_verifies_and_tamper_fails(&sb, key, &m.content);
    }
}

#[test]
fn send_ready_message_signed_verifies_and_bcc_is_gone() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    // LF line endings, a Bcc line and trailing blank lines: signed as sent (CRLF, no Bcc).
    let message = sb.write(
        "ready.eml",
        "From: Me <me@example.org>\nTo: you@example.com\nBcc: secret@example.net\nSubject: ready\nDate: Mon, 30 Nov 2026 10:00:00 +0000\nMessage-ID: <1@example.org>\n\nA ready message.\n\n\n",
    );
    let keys = [genkey(&sb, "rsa"), genkey(&sb, "ed25519")];
    for key in &keys {
        run_code(
            sb.send(&srv.addr())
                .message(&message)
                .arg("-t")
                .args(dkim_flags(&key.private)),
            0,
        );
    }
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    for (key, m) in keys.iter().zip(&msgs) {
        assert!(m.rcpt_tos.iter().any(|r| r == "secret@example.net"));
        assert!(
            !text(&m.content).contains("secret@"),
            "{}",
            text(&m.content)
        );
        assert_verifies_and_tamper_fails(&sb, key, &m.content);
    }
}

#[test]
fn sendmail_mode_signs_with_the_accounts_dkim_fields() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let key = genkey(&sb, "ed25519");
    // A path relative to the config file.
    sb.config(&format!(
        "default = \"relay\"\n[accounts.relay]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"daemon@example.org\"\ndkim_key = \"ed25519.pem\"\ndkim_selector = \"sel\"\ndkim_domain = \"example.org\"\n",
        srv.port()
    ));
    run_code(
        sb.cmd(&["sendmail", "-t", "-i"])
            .current_dir("/")
            .write_stdin("To: you@example.com\nSubject: from cron\n\nnightly report\n"),
        0,
    );
    let m = srv.wait_for_messages(1, STORE_WAIT).remove(0);
    let t = text(&m.content);
    assert!(t.contains("\r\nDate: "), "Date added before signing:\n{t}");
    assert!(t.contains("\r\nMessage-ID: "), "Message-ID added:\n{t}");
    assert_verifies_and_tamper_fails(&sb, &key, &m.content);
}

#[test]
fn dkim_flag_errors_exit_codes() {
    let sb = Sandbox::new();
    let base = |s: &Sandbox| {
        s.send("127.0.0.1:9")
            .from("a@example.org")
            .to("b@example.com")
            .body("x")
    };
    // Not all three: usage.
    let o = run_code(base(&sb).args(["--dkim-selector", "sel"]), 64);
    assert!(stderr(&o).contains("go together"), "{}", stderr(&o));
    // A missing key file: 66.
    let o = run_code(base(&sb).args(dkim_flags(&sb.path("nope.pem"))), 66);
    assert!(stderr(&o).contains("nope.pem"), "{}", stderr(&o));
    // Not a key, an encrypted key, an EC key: 78, in words.
    let junk = sb.write("junk.pem", "hello\n");
    let o = run_code(base(&sb).args(dkim_flags(&junk)), 78);
    assert!(
        stderr(&o).contains("not a PEM private key"),
        "{}",
        stderr(&o)
    );
    let enc = sb.path("enc.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-aes-128-cbc",
        "-pass",
        "pass:x",
        "-out",
        enc.to_str().unwrap(),
    ]);
    let o = run_code(base(&sb).args(dkim_flags(&enc)), 78);
    assert!(stderr(&o).contains("encrypted"), "{}", stderr(&o));
    let ec = sb.path("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        ec.to_str().unwrap(),
    ]);
    let o = run_code(base(&sb).args(dkim_flags(&ec)), 78);
    assert!(stderr(&o).contains("RSA or an Ed25519"), "{}", stderr(&o));
}

#[test]
fn queued_message_is_signed_before_it_is_stored() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let key = genkey(&sb, "rsa");
    let spool = sb.spool_str();
    let o = run_code(
        sb.send(&srv.addr())
            .from("sender@example.org")
            .to("to@example.com")
            .subject("queued")
            .body("Queued, then sent by the runner.\n")
            .args(["--queue-only", "--queue-dir", &spool])
            .args(dkim_flags(&key.private)),
        0,
    );
    let id = postline_testkit::stdout(&o).trim().to_string();
    // The spool holds the signed message: `queue run` needs no key to send it.
    std::fs::remove_file(&key.private).unwrap();
    run_code(&mut sb.queue("run", &[]), 0);
    let m = srv.wait_for_messages(1, STORE_WAIT).remove(0);
    assert!(text(&m.content).contains("Queued, then sent"), "{id}");
    assert_verifies_and_tamper_fails(&sb, &key, &m.content);
}
