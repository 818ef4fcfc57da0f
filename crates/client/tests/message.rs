//! postline::message: what the builder writes, read back with mail-parser; ready messages;
//! and a built message sent through a real aiosmtpd server, compared byte for byte.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use mail_parser::{MessageParser, MimeHeaders, PartType};
use postline::message::{ready, HeaderRecipients};
use postline::{Client, Config, Mailbox, Message, MessageBuilder, MessageError, Priority, Tls};
use postline_testkit::Aiosmtpd;

fn base() -> MessageBuilder {
    Message::builder()
        .from("alice@example.org")
        .to("bob@example.com")
}

fn built(b: MessageBuilder) -> Vec<u8> {
    match b.build() {
        Ok(m) => {
            check_wire_format(m.as_bytes());
            m.into_parts().1
        }
        Err(e) => panic!("build failed: {e}"),
    }
}

/// The header section (up to the first empty line) as a string.
fn head(m: &[u8]) -> String {
    let s = String::from_utf8_lossy(m);
    match s.find("\r\n\r\n") {
        Some(i) => s[..i + 2].to_string(),
        None => s.into_owned(),
    }
}

/// The unfolded value of every top-level header named `name`.
fn header_values(m: &[u8], name: &str) -> Vec<String> {
    let h = head(m).replace("\r\n\t", " ").replace("\r\n ", " ");
    h.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// CRLF only, and no line over 998 octets.
fn check_wire_format(m: &[u8]) {
    for (i, &b) in m.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && m[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(m.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for line in m.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len());
    }
}

fn temp_file(name: &str, data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, data).expect("write temp file");
    (dir, path)
}

fn ctype<'x>(p: &impl MimeHeaders<'x>) -> (String, Option<String>) {
    let ct = p.content_type().expect("content type");
    (ct.ctype().to_string(), ct.subtype().map(str::to_string))
}

/// (display name, address) of each mailbox of an address field.
fn mailboxes<'a>(a: Option<&'a mail_parser::Address<'_>>) -> Vec<(Option<&'a str>, &'a str)> {
    a.expect("the field")
        .iter()
        .map(|a| (a.name(), a.address().unwrap_or("")))
        .collect()
}

fn pair(t: &str, s: &str) -> (String, Option<String>) {
    (t.to_string(), Some(s.to_string()))
}

#[test]
fn minimal_message_has_required_headers() {
    let m = built(base());
    assert_eq!(header_values(&m, "From"), ["<alice@example.org>"]);
    assert_eq!(header_values(&m, "To"), ["<bob@example.com>"]);
    assert_eq!(header_values(&m, "MIME-Version"), ["1.0"]);
    assert!(header_values(&m, "Cc").is_empty());
    assert!(header_values(&m, "Bcc").is_empty());
    let ids = header_values(&m, "Message-ID");
    assert_eq!(ids.len(), 1);
    assert!(
        ids[0].starts_with('<') && ids[0].ends_with("@example.org>"),
        "{ids:?}"
    );
    assert_eq!(header_values(&m, "Date").len(), 1);
    let parsed = MessageParser::new().parse(&m).expect("parses");
    let date = parsed.date().expect("a valid Date");
    assert!(date.year >= 2024, "{date:?}");
    // No body: an empty text/plain.
    let ct = parsed.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
    assert_eq!(parsed.body_text(0).as_deref().map(str::trim), Some(""));
}

#[test]
fn message_ids_are_unique_and_reported() {
    let a = base().build().unwrap();
    let b = base().build().unwrap();
    assert_ne!(a.message_id(), b.message_id());
    let id = a.message_id().expect("an id");
    assert!(id.ends_with("@example.org") && !id.starts_with('<'), "{id}");
    assert_eq!(
        header_values(a.as_bytes(), "Message-ID"),
        [format!("<{id}>")]
    );
    // An internationalised or missing domain falls back to localhost.
    let m = Message::builder()
        .from("root")
        .to("bob@example.com")
        .build()
        .unwrap();
    assert!(m.message_id().unwrap().ends_with("@localhost"));
}

#[test]
fn every_address_field_round_trips() {
    let m = Message::builder()
        .from(("Alice Ärger \"the boss\"", "alice@example.org"))
        .sender("Secretary <sec@example.org>")
        .to("bob@example.com")
        .to("\"Eve, E.\" <eve@example.com>")
        .cc("Carol <carol@example.net>")
        .cc("dave@example.net")
        .reply_to("replies@example.org")
        .reply_to(Mailbox::named("日本 Desk", "desk@example.org").unwrap())
        .build()
        .unwrap();
    let raw = m.as_bytes();
    check_wire_format(raw);
    assert!(head(raw).is_ascii(), "{}", head(raw));
    let p = MessageParser::new().parse(raw).expect("parses");
    let from = p.from().and_then(|a| a.first()).expect("from");
    assert_eq!(from.address(), Some("alice@example.org"));
    assert_eq!(from.name(), Some("Alice Ärger \"the boss\""));
    let sender = p.sender().and_then(|a| a.first()).expect("sender");
    assert_eq!(
        (sender.name(), sender.address()),
        (Some("Secretary"), Some("sec@example.org"))
    );
    let to = mailboxes(p.to());
    assert_eq!(
        to,
        [
            (None, "bob@example.com"),
            (Some("Eve, E."), "eve@example.com")
        ]
    );
    let cc = mailboxes(p.cc());
    assert_eq!(
        cc,
        [
            (Some("Carol"), "carol@example.net"),
            (None, "dave@example.net")
        ]
    );
    let reply = mailboxes(p.reply_to());
    assert_eq!(
        reply,
        [
            (None, "replies@example.org"),
            (Some("日本 Desk"), "desk@example.org")
        ]
    );
    // The Sender is the envelope sender; every header recipient is a RCPT.
    assert_eq!(m.envelope().from(), "sec@example.org");
    let rcpt: Vec<_> = m.envelope().to().collect();
    assert_eq!(
        rcpt,
        [
            "bob@example.com",
            "eve@example.com",
            "carol@example.net",
            "dave@example.net"
        ]
    );
}

#[test]
fn bcc_is_in_the_envelope_only() {
    let m = base()
        .cc("carol@example.net")
        .bcc("Audit <audit@example.org>")
        .bcc("hidden@example.net")
        .build()
        .unwrap();
    let text = String::from_utf8_lossy(m.as_bytes());
    assert!(
        !text.contains("audit@") && !text.contains("hidden@"),
        "{text}"
    );
    // No Bcc field ("bcc" alone can occur in the generated Message-ID's hex digits).
    assert!(!text.to_ascii_lowercase().contains("bcc:"), "{text}");
    let r = ready::recipients(m.as_bytes()).unwrap();
    assert_eq!(r.to, ["bob@example.com"]);
    assert_eq!(r.cc, ["carol@example.net"]);
    assert!(r.bcc.is_empty());
    let rcpt: Vec<_> = m.envelope().to().collect();
    assert_eq!(
        rcpt,
        [
            "bob@example.com",
            "carol@example.net",
            "audit@example.org",
            "hidden@example.net"
        ]
    );
    assert_eq!(m.envelope().from(), "alice@example.org");
}

#[test]
fn duplicate_recipients_are_sent_once_domain_case_insensitive() {
    let m = Message::builder()
        .from("alice@example.org")
        .to("Bob@Example.COM")
        .cc("Bob@example.com")
        .bcc("bob@example.com")
        .bcc("Bob <Bob@EXAMPLE.com>")
        .build()
        .unwrap();
    // The local part's case may matter to the receiving server; the domain's does not.
    let rcpt: Vec<_> = m.envelope().to().collect();
    assert_eq!(rcpt, ["Bob@Example.COM", "bob@example.com"]);
}

#[test]
fn envelope_from_overrides_the_sender_only_in_the_envelope() {
    let m = base()
        .sender("sec@example.org")
        .envelope_from("bounces+42@example.org")
        .build()
        .unwrap();
    assert_eq!(m.envelope().from(), "bounces+42@example.org");
    assert_eq!(header_values(m.as_bytes(), "From"), ["<alice@example.org>"]);
    assert!(!String::from_utf8_lossy(m.as_bytes()).contains("bounces+42"));
    let m = base().envelope_from("<>").build().unwrap();
    assert_eq!(m.envelope().from(), "");
    let e = base().envelope_from("a@b\r\nRSET").build().unwrap_err();
    assert!(matches!(e, MessageError::Address { .. }), "{e}");
}

#[test]
fn invalid_addresses_are_refused_naming_them() {
    for bad in [
        "bob@example.com\r\nBcc: evil@example.com",
        "bob@example.com\n",
        "bob\0@example.com",
        "",
        "bob@example.com, eve@example.com",
        "bob @example.com",
        "<bob@example.com",
        "Bob <bob@example.com> x",
        "\"unterminated@example.com",
    ] {
        for b in [
            Message::builder().from(bad).to("b@example.com"),
            base().to(bad),
            base().cc(bad),
            base().bcc(bad),
            base().reply_to(bad),
            base().sender(bad),
        ] {
            match b.build() {
                Err(MessageError::Address { input, .. }) => assert_eq!(input, bad),
                other => panic!("{bad:?}: expected an Address error, got {other:?}"),
            }
        }
        let e = base().to(bad).build().unwrap_err().to_string();
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
    // The first error is the one reported, whatever follows it.
    let e = base()
        .to("first\n@example.com")
        .cc("second\n@example.com")
        .subject("x\r\ny")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("first"), "{e}");
    assert!(Message::builder()
        .from(("Alice\r\nBcc: evil", "a@example.org"))
        .to("b@example.com")
        .build()
        .is_err());
    // A quoted local part may hold spaces.
    let m = base().to("\"john doe\"@example.com").build().unwrap();
    assert!(m.envelope().to().any(|a| a == "\"john doe\"@example.com"));
}

#[test]
fn missing_from_or_recipients_is_an_error() {
    assert!(matches!(
        Message::builder().to("b@example.com").build(),
        Err(MessageError::NoFrom)
    ));
    assert!(matches!(
        Message::builder().from("a@example.com").build(),
        Err(MessageError::NoRecipients)
    ));
    // Reply-To is no recipient.
    assert!(matches!(
        Message::builder()
            .from("a@example.com")
            .reply_to("r@example.com")
            .build(),
        Err(MessageError::NoRecipients)
    ));
}

#[test]
fn subject_non_ascii_is_rfc2047_encoded() {
    let m = built(base().subject("Grüße 日本"));
    let h = head(&m);
    assert!(h.is_ascii(), "header section must be ASCII: {h}");
    let subj = header_values(&m, "Subject");
    assert!(subj[0].contains("=?utf-8?"), "{subj:?}");
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(p.subject(), Some("Grüße 日本"));
}

#[test]
fn long_subject_is_folded_and_round_trips() {
    for subject in [
        "word ".repeat(300) + &"x".repeat(1500),
        "ü".repeat(2000),
        "y".repeat(5000),
    ] {
        let m = built(base().subject(subject.as_str()));
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(p.subject(), Some(subject.as_str()));
    }
}

#[test]
fn subject_with_line_break_is_refused() {
    for s in ["hi\r\nBcc: evil@example.com", "a\nb", "a\rb", "a\0b"] {
        match base().subject(s).build() {
            Err(MessageError::Header { name, .. }) => assert_eq!(name, "Subject"),
            other => panic!("{s:?}: {other:?}"),
        }
    }
    // Tab is fine.
    built(base().subject("a\tb"));
}

#[test]
fn ascii_text_is_7bit() {
    let m = built(base().text("Hello,\nthis is a test.\n"));
    let s = String::from_utf8_lossy(&m);
    assert!(
        s.contains("Content-Type: text/plain; charset=\"utf-8\"\r\n"),
        "{s}"
    );
    assert!(s.contains("Content-Transfer-Encoding: 7bit\r\n"), "{s}");
    assert!(s.contains("\r\n\r\nHello,\r\nthis is a test.\r\n"), "{s}");
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(
        p.body_text(0).as_deref(),
        Some("Hello,\r\nthis is a test.\r\n")
    );
}

#[test]
fn non_ascii_text_and_long_lines_are_encoded() {
    let text = format!("Grüße aus Köln — 日本\n{}\nend\n", "y".repeat(2000));
    let m = built(base().text(text.as_str()));
    assert!(m.is_ascii());
    let s = String::from_utf8_lossy(&m);
    assert!(
        s.contains("Content-Transfer-Encoding: quoted-printable")
            || s.contains("Content-Transfer-Encoding: base64"),
        "{s}"
    );
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(
        p.body_text(0).as_deref(),
        Some(text.replace('\n', "\r\n").as_str())
    );
}

#[test]
fn a_300_kb_single_line_body_stays_within_998_octets() {
    let long: String = "abcdefghij".repeat(30_000);
    let m = built(base().text(long.as_str()).html(format!("<p>{long}</p>")));
    assert!(m.split(|&b| b == b'\n').all(|l| l.len() <= 999));
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(p.body_text(0).as_deref(), Some(long.as_str()));
    assert_eq!(
        p.body_html(0).as_deref(),
        Some(format!("<p>{long}</p>").as_str())
    );
}

#[test]
fn text_line_endings_are_normalised() {
    let m = built(base().text("a\rb\r\nc\nd"));
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(p.body_text(0).as_deref(), Some("a\r\nb\r\nc\r\nd"));
}

#[test]
fn text_with_control_characters_is_base64() {
    let m = built(base().text("nul\0 and escape \u{1b}[0m\n"));
    assert!(String::from_utf8_lossy(&m).contains("Content-Transfer-Encoding: base64"));
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(
        p.body_text(0).as_deref(),
        Some("nul\0 and escape \u{1b}[0m\r\n")
    );
}

#[test]
fn text_and_html_make_multipart_alternative() {
    let m = built(base().text("plain ü").html("<p>html ü</p>"));
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(ctype(p.root_part()), pair("multipart", "alternative"));
    assert_eq!(p.body_text(0).as_deref(), Some("plain ü"));
    assert_eq!(p.body_html(0).as_deref(), Some("<p>html ü</p>"));
    assert_eq!(p.attachment_count(), 0);
}

#[test]
fn html_only_is_text_html() {
    let m = built(base().html("<b>hi</b>"));
    let p = MessageParser::new().parse(&m).expect("parses");
    let ct = p.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("html")));
    assert_eq!(ct.attribute("charset"), Some("utf-8"));
    assert_eq!(p.body_html(0).as_deref(), Some("<b>hi</b>"));
}

#[test]
fn attachments_round_trip_byte_exact() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let latin1 = b"caf\xe9\r\nna\xefve\n".to_vec();
    let odd_text = "a\rb\r\nc\nd\x01e ü".as_bytes().to_vec();
    let m = built(
        base()
            .text("see attached")
            .attachment("report.pdf", "application/pdf", binary.clone())
            .attachment(
                "latin1.txt",
                "text/plain; charset=iso-8859-1",
                latin1.clone(),
            )
            .attachment("odd.txt", "text/plain", odd_text.clone())
            .attachment("notes.txt", "text/plain", "line one\nline two ü\n")
            .attachment("Grüße 日本.bin", "application/octet-stream", &b"abc"[..]),
    );
    assert!(m.is_ascii());
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(ctype(p.root_part()), pair("multipart", "mixed"));
    assert_eq!(p.body_text(0).as_deref(), Some("see attached"));
    assert_eq!(p.attachment_count(), 5);
    let want: [(&str, (&str, &str), &[u8]); 5] = [
        ("report.pdf", ("application", "pdf"), &binary),
        ("latin1.txt", ("text", "plain"), &latin1),
        ("odd.txt", ("text", "plain"), &odd_text),
        (
            "notes.txt",
            ("text", "plain"),
            "line one\nline two ü\n".as_bytes(),
        ),
        ("Grüße 日本.bin", ("application", "octet-stream"), b"abc"),
    ];
    for (i, (name, (t, s), data)) in want.into_iter().enumerate() {
        let a = p.attachment(i as u32).expect("attachment");
        assert_eq!(a.attachment_name(), Some(name));
        assert_eq!(ctype(a), pair(t, s), "{name}");
        if name == "latin1.txt" {
            // mail-parser hands text in its charset over as UTF-8; on the wire the bytes
            // are the file's, base64 encoded.
            assert_eq!(a.contents(), "café\r\nnaïve\n".as_bytes());
            let b64 = mail_builder::encoders::base64::base64_encode(data).unwrap();
            assert!(m.windows(b64.len()).any(|w| w == b64), "{name}");
        } else {
            assert_eq!(a.contents(), data, "{name}");
        }
    }
    let latin = p.attachment(1).unwrap().content_type().unwrap();
    assert_eq!(latin.attribute("charset"), Some("iso-8859-1"));
    let notes = p.attachment(3).unwrap().content_type().unwrap();
    assert_eq!(notes.attribute("charset"), Some("utf-8"));
}

#[test]
fn attachment_files_get_guessed_types() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let (_d1, pdf) = temp_file("report.pdf", &binary);
    let (_d2, txt) = temp_file("notes.txt", "line one\nline two ü\n".as_bytes());
    let (_d3, unknown) = temp_file("data.unknownext", b"\x00\x01\x02");
    let (_d4, png) = temp_file("logo.png", b"\x89PNG\r\n\x1a\n");
    let m = built(
        base()
            .text("see attached")
            .html("<p>see attached</p>")
            .attachment_file(&pdf)
            .attachment_file(&txt)
            .attachment_file(&unknown)
            .attachment_file(&png),
    );
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(ctype(p.root_part()), pair("multipart", "mixed"));
    // The alternative sits inside the mixed part.
    let PartType::Multipart(children) = &p.root_part().body else {
        panic!("root is not multipart");
    };
    let first = p.part(children[0]).expect("first child");
    assert_eq!(ctype(first), pair("multipart", "alternative"));
    assert_eq!(p.body_html(0).as_deref(), Some("<p>see attached</p>"));
    let want: [(&str, (&str, &str), &[u8]); 4] = [
        ("report.pdf", ("application", "pdf"), &binary),
        (
            "notes.txt",
            ("text", "plain"),
            "line one\nline two ü\n".as_bytes(),
        ),
        (
            "data.unknownext",
            ("application", "octet-stream"),
            b"\x00\x01\x02",
        ),
        ("logo.png", ("image", "png"), b"\x89PNG\r\n\x1a\n"),
    ];
    for (i, (name, (t, s), data)) in want.into_iter().enumerate() {
        let a = p.attachment(i as u32).expect("attachment");
        assert_eq!(a.attachment_name(), Some(name));
        assert_eq!(ctype(a), pair(t, s), "{name}");
        assert_eq!(a.contents(), data, "{name}");
    }
}

#[test]
fn attachment_only_message() {
    let m = built(base().attachment("a.bin", "application/octet-stream", &b"xyz"[..]));
    let p = MessageParser::new().parse(&m).expect("parses");
    assert_eq!(p.attachment_count(), 1);
    assert_eq!(p.attachment(0).expect("att").contents(), b"xyz");
}

#[test]
fn unreadable_attachment_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pdf");
    match base().attachment_file(&missing).build() {
        Err(MessageError::ReadFile { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ReadFile, got {other:?}"),
    }
    let e = base().attachment_file(&missing).build().unwrap_err();
    assert!(e.to_string().contains("missing.pdf"), "{e}");
}

#[test]
fn bad_content_types_are_refused() {
    for ct in ["pdf", "", "text/", "multipart/mixed", "text/plain; charset"] {
        match base().attachment("a.bin", ct, Vec::new()).build() {
            Err(MessageError::Part { part, .. }) => assert_eq!(part, "a.bin"),
            other => panic!("{ct:?}: {other:?}"),
        }
    }
}

#[test]
fn inline_image_is_related_to_the_html() {
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain(0..=255)
        .collect();
    let m = built(
        base()
            .text("plain")
            .html(r#"<p><img src="cid:logo@example.org"></p>"#)
            .inline("<logo@example.org>", "image/png", png.clone())
            .attachment("a.txt", "text/plain", "attached"),
    );
    let p = MessageParser::new().parse(&m).expect("parses");
    // mixed(alternative(text, related(html, image)), attachment)
    assert_eq!(ctype(p.root_part()), pair("multipart", "mixed"));
    let PartType::Multipart(top) = &p.root_part().body else {
        panic!("not multipart")
    };
    let alt = p.part(top[0]).unwrap();
    assert_eq!(ctype(alt), pair("multipart", "alternative"));
    let PartType::Multipart(alt_parts) = &alt.body else {
        panic!("not multipart")
    };
    assert_eq!(ctype(p.part(alt_parts[0]).unwrap()), pair("text", "plain"));
    let related = p.part(alt_parts[1]).unwrap();
    assert_eq!(ctype(related), pair("multipart", "related"));
    let rel_ct = related.content_type().unwrap();
    assert_eq!(rel_ct.attribute("type"), Some("text/html"));
    let PartType::Multipart(rel_parts) = &related.body else {
        panic!("not multipart")
    };
    let html = p.part(rel_parts[0]).unwrap();
    assert_eq!(ctype(html), pair("text", "html"));
    let image = p.part(rel_parts[1]).unwrap();
    assert_eq!(ctype(image), pair("image", "png"));
    assert_eq!(image.content_id(), Some("logo@example.org"));
    assert_eq!(
        image.content_disposition().map(|d| d.ctype()),
        Some("inline")
    );
    assert_eq!(image.contents(), &png[..]);
    // The HTML refers to exactly that Content-ID.
    let body = p.body_html(0).unwrap();
    let cid = body.split("cid:").nth(1).and_then(|r| r.split('"').next());
    assert_eq!(cid, image.content_id());
    let a = p.attachment(p.attachment_count() as u32 - 1).unwrap();
    assert_eq!(a.attachment_name(), Some("a.txt"));
}

#[test]
fn inline_parts_need_html_and_a_clean_id() {
    let e = base()
        .text("t")
        .inline("logo", "image/png", vec![1])
        .build()
        .unwrap_err();
    assert!(matches!(e, MessageError::Part { .. }), "{e}");
    assert!(e.to_string().contains("html"), "{e}");
    for cid in ["", "a b", "a\r\nX: y", "<>", "a>b"] {
        let e = base()
            .html("h")
            .inline(cid, "image/png", vec![1])
            .build()
            .unwrap_err();
        assert!(matches!(e, MessageError::Part { .. }), "{cid:?}: {e}");
    }
}

#[test]
fn priority_headers() {
    for (p, x, imp) in [
        (Priority::High, "1 (Highest)", "high"),
        (Priority::Normal, "3 (Normal)", "normal"),
        (Priority::Low, "5 (Lowest)", "low"),
    ] {
        let m = built(base().priority(p));
        assert_eq!(header_values(&m, "X-Priority"), [x]);
        assert_eq!(header_values(&m, "Importance"), [imp]);
    }
    let m = built(base());
    assert!(header_values(&m, "X-Priority").is_empty());
    assert!(header_values(&m, "Importance").is_empty());
}

#[test]
fn custom_headers() {
    let m = built(
        base()
            .header("X-Mailer", "postline")
            .header("X-Tab", "a\tb")
            .header("X-Intl", "Grüße")
            .header(
                "List-Unsubscribe",
                &format!("<https://example.org/{}>", "u".repeat(120)),
            ),
    );
    assert_eq!(header_values(&m, "X-Mailer"), ["postline"]);
    assert_eq!(header_values(&m, "X-Tab"), ["a\tb"]);
    assert_eq!(
        header_values(&m, "List-Unsubscribe"),
        [format!("<https://example.org/{}>", "u".repeat(120))]
    );
    assert!(head(&m).is_ascii());
    // Decoded through RFC 2047.
    let decoded = MessageParser::new()
        .parse_headers(format!("Subject: {}\r\n\r\n", header_values(&m, "X-Intl")[0]).as_bytes())
        .and_then(|p| p.subject().map(str::to_string));
    assert_eq!(decoded.as_deref(), Some("Grüße"));
}

#[test]
fn header_injection_and_owned_fields_are_refused() {
    let cases: Vec<(&str, &str)> = vec![
        ("X-Test", "a\r\nBcc: evil@example.com"),
        ("X-Test", "a\nb"),
        ("X-Test", "a\rb"),
        ("X-Test", "a\0b"),
        ("X-Test", "a\u{7f}"),
        ("X-Test: a\r\nBcc", "evil"),
        ("X Test", "a"),
        ("X:Test", "a"),
        ("", "a"),
        ("X-Tëst", "a"),
        ("Bcc", "evil@example.com"),
        ("bcc", "evil@example.com"),
        ("Content-Type", "text/html"),
        ("MIME-Version", "1.0"),
        ("To", "x@example.com"),
        ("from", "x@example.com"),
        ("Subject", "x"),
        ("Resent-Bcc", "evil@example.com"),
        ("resent-bcc", "evil@example.com"),
        ("Resent-To", "x@example.com"),
        ("Resent-Cc", "x@example.com"),
        ("Message-ID", "not an id with spaces"),
        ("Message-ID", "no-at-sign"),
        ("message-id", "<a@b> <c@d>"),
        ("Message-ID", ""),
    ];
    for (name, value) in cases {
        match base().header(name, value).build() {
            Err(e @ MessageError::Header { .. }) => {
                if !name.is_empty() && !name.contains(['\r', '\n']) {
                    assert!(e.to_string().contains(name), "{e} should name {name:?}");
                }
            }
            other => panic!("{name:?}: {value:?}: expected a Header error, got {other:?}"),
        }
    }
}

#[test]
fn date_and_message_id_overrides() {
    let when = UNIX_EPOCH + Duration::from_secs(1_704_067_200); // 2024-01-01 00:00:00 UTC
    let m = base()
        .date(when)
        .message_id("<fixed.1@example.org>")
        .build()
        .unwrap();
    assert_eq!(m.message_id(), Some("fixed.1@example.org"));
    let raw = m.as_bytes();
    assert_eq!(header_values(raw, "Message-ID"), ["<fixed.1@example.org>"]);
    assert_eq!(
        header_values(raw, "Date"),
        ["Mon, 01 Jan 2024 00:00:00 +0000"]
    );
    let p = MessageParser::new().parse(raw).unwrap();
    assert_eq!(p.date().unwrap().to_timestamp(), 1_704_067_200);
    assert_eq!(p.message_id(), Some("fixed.1@example.org"));
    // Without brackets too; a bad id is refused.
    let m = base().message_id("plain@example.org").build().unwrap();
    assert_eq!(m.message_id(), Some("plain@example.org"));
    for bad in ["no-at", "a b@c", "x@y>\r\nBcc: z", ""] {
        assert!(
            matches!(
                base().message_id(bad).build(),
                Err(MessageError::Header { .. })
            ),
            "{bad:?}"
        );
    }
    // As custom headers they replace the generated ones, once each.
    let m = built(
        base()
            .header("message-id", "<fixed@example.org>")
            .header("Date", "Mon, 1 Jan 2024 00:00:00 +0000"),
    );
    assert_eq!(header_values(&m, "Message-ID"), ["<fixed@example.org>"]);
    assert_eq!(
        header_values(&m, "Date"),
        ["Mon, 1 Jan 2024 00:00:00 +0000"]
    );
    assert!(base()
        .header("Date", "x")
        .header("date", "y")
        .build()
        .is_err());
    assert!(base().date(when).header("Date", "y").build().is_err());
    assert!(base()
        .message_id("a@b")
        .header("Message-ID", "<c@d>")
        .build()
        .is_err());
    assert!(base()
        .header("X-Priority", "1")
        .priority(Priority::High)
        .build()
        .is_err());
    // Before 1970 is a date too.
    let m = base()
        .date(UNIX_EPOCH - Duration::from_secs(86_400))
        .build()
        .unwrap();
    assert_eq!(
        header_values(m.as_bytes(), "Date"),
        ["Wed, 31 Dec 1969 00:00:00 +0000"]
    );
}

#[test]
fn overlong_lines_are_refused() {
    match base().header("X-Long", &"a".repeat(2000)).build() {
        Err(MessageError::Header { name, .. }) => assert_eq!(name, "X-Long"),
        other => panic!("{other:?}"),
    }
    let long_name = format!("{}.pdf", "n".repeat(3000));
    match base()
        .attachment(&long_name, "application/pdf", vec![1])
        .build()
    {
        // Either mail-builder folds the parameter, or the builder says why it cannot.
        Ok(m) => check_wire_format(m.as_bytes()),
        Err(MessageError::LineTooLong { len }) => assert!(len > 998),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn ready_message_envelope_and_bcc() {
    let raw = b"From: \"Sender, S.\" <sender@example.org>\n\
To: Bob <bob@example.com>,\n\
\x20\"Doe, Jane\" <jane@example.com>\n\
Cc: Friends: ann@example.net, Ben <ben@example.net>;\n\
Bcc: secret@example.org,\n\
\tBOB@example.com\n\
Message-ID: <ready.1@example.org>\n\
Subject: hello\n\
\n\
Bcc: in the body stays\n";
    let m = Message::from_bytes(&raw[..]).unwrap();
    assert_eq!(m.envelope().from(), "sender@example.org");
    let rcpt: Vec<_> = m.envelope().to().collect();
    assert_eq!(
        rcpt,
        [
            "bob@example.com",
            "jane@example.com",
            "ann@example.net",
            "ben@example.net",
            "secret@example.org",
            "BOB@example.com"
        ]
    );
    assert_eq!(m.message_id(), Some("ready.1@example.org"));
    let want = b"From: \"Sender, S.\" <sender@example.org>\r\n\
To: Bob <bob@example.com>,\r\n\
\x20\"Doe, Jane\" <jane@example.com>\r\n\
Cc: Friends: ann@example.net, Ben <ben@example.net>;\r\n\
Message-ID: <ready.1@example.org>\r\n\
Subject: hello\r\n\
\r\n\
Bcc: in the body stays\r\n";
    assert_eq!(m.as_bytes(), &want[..]);
    // Sender, when present, is the envelope sender.
    let m = Message::from_bytes(
        &b"From: a@example.org\r\nSender: s@example.org\r\nTo: b@example.com\r\n\r\nx"[..],
    )
    .unwrap();
    assert_eq!(m.envelope().from(), "s@example.org");
}

#[test]
fn ready_message_errors() {
    assert!(matches!(
        Message::from_bytes(Vec::new()),
        Err(MessageError::Malformed { .. })
    ));
    assert!(matches!(
        Message::from_bytes(&b"To: b@example.com\r\n\r\nx"[..]),
        Err(MessageError::NoFrom)
    ));
    assert!(matches!(
        Message::from_bytes(&b"From: a@example.com\r\n\r\nx"[..]),
        Err(MessageError::NoRecipients)
    ));
    for to in ["\"a\x01\"@example.com", "@example.com", "a b@example.com"] {
        let raw = format!("From: a@example.com\r\nTo: {to}\r\n\r\nx");
        match Message::from_bytes(raw) {
            Err(MessageError::Address { .. }) => {}
            other => panic!("{to:?}: {other:?}"),
        }
    }
}

#[test]
fn ready_message_with_own_envelope_and_completed_headers() {
    let envelope = postline::Envelope::new("bounce@example.org", ["x@example.net"]).unwrap();
    let m =
        Message::from_bytes_with_envelope(&b"Bcc: a@b\nSubject: s\n\nbody\n"[..], envelope.clone());
    assert_eq!(m.envelope(), &envelope);
    assert_eq!(m.as_bytes(), b"Subject: s\r\n\r\nbody\r\n");
    assert_eq!(m.message_id(), None);
    let m = m.complete_headers(Some("Bounce Handler"));
    let text = String::from_utf8(m.as_bytes().to_vec()).unwrap();
    assert!(
        text.starts_with("From: \"Bounce Handler\" <bounce@example.org>\r\nDate: "),
        "{text}"
    );
    assert!(m.message_id().unwrap().ends_with("@example.org"), "{text}");
    assert!(text.ends_with("Subject: s\r\n\r\nbody\r\n"));
    let p = MessageParser::new().parse(m.as_bytes()).unwrap();
    assert!(p.date().is_some());
}

#[test]
fn what_the_builder_writes_reads_back_as_a_ready_message() {
    let built = base()
        .cc("carol@example.net")
        .bcc("hidden@example.net")
        .text("x")
        .build()
        .unwrap();
    let read = Message::from_bytes(built.as_bytes()).unwrap();
    assert_eq!(read.as_bytes(), built.as_bytes());
    assert_eq!(read.message_id(), built.message_id());
    let r: HeaderRecipients = ready::recipients(read.as_bytes()).unwrap();
    assert_eq!(
        r.all().collect::<Vec<_>>(),
        ["bob@example.com", "carol@example.net"]
    );
    // Bcc is not in the bytes, so reading them back cannot find it.
    assert_eq!(read.envelope().to().count(), 2);
    assert_eq!(built.envelope().to().count(), 3);
}

/// A built message with an attachment through aiosmtpd with the blocking client: the server
/// stores exactly the bytes built, and the envelope, Bcc included.
#[test]
fn sent_through_aiosmtpd_byte_for_byte() {
    let server = Aiosmtpd::start();
    let pdf: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let message = Message::builder()
        .from("Alice Ärger <alice@client.test>")
        .to("Bob <bob@server.test>")
        .cc("carol@server.test")
        .bcc("audit@server.test")
        .subject("Quarterly report — Q3")
        .text("Hi Bob,\n.\nthe report is attached.\n.leading dot\n")
        .html("<p>Hi Bob, the report is attached.</p>")
        .attachment("report.pdf", "application/pdf", pdf.clone())
        .build()
        .unwrap();
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .hello_name("client.test");
    let mut client = Client::connect(config).unwrap();
    let outcome = client
        .send_bytes(message.envelope(), message.as_bytes())
        .unwrap();
    assert!(outcome.all_accepted());
    client.quit().unwrap();
    let got = server.wait_for_messages(1, Duration::from_secs(20));
    let stored = &got[0];
    assert!(
        stored.content == message.as_bytes(),
        "{} octets stored, {} built; first difference at {:?}",
        stored.content.len(),
        message.as_bytes().len(),
        stored
            .content
            .iter()
            .zip(message.as_bytes())
            .position(|(a, b)| a != b)
    );
    assert_eq!(stored.mail_from, "alice@client.test");
    assert_eq!(
        stored.rcpt_tos,
        ["bob@server.test", "carol@server.test", "audit@server.test"]
    );
    let p = MessageParser::new().parse(&stored.content).unwrap();
    assert_eq!(p.attachment(0).unwrap().contents(), &pdf[..]);
    assert_eq!(p.subject(), Some("Quarterly report — Q3"));
    assert!(!String::from_utf8_lossy(&stored.content).contains("audit@"));
}

/// Encoded words stand bare in address fields (RFC 2047 5: not inside a quoted string), and
/// a reader that is not ours (Python's email package) decodes every name and address.
#[test]
fn display_names_read_back_by_pythons_email_package() {
    let m = Message::builder()
        .from(("Alice Ärger", "alice@example.com"))
        .to(("Bob \"the builder\", Jr.", "bob@example.org"))
        .to(("Zoë", "zoe@example.org"))
        .cc("plain@example.net")
        .subject("names")
        .text("hi")
        .build()
        .unwrap();
    let text = String::from_utf8_lossy(m.as_bytes()).into_owned();
    assert!(!text.contains("\"=?"), "an encoded word in quotes:\n{text}");
    let script = r#"
import sys, email, email.policy
msg = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)
for field in ('From', 'To', 'Cc'):
    for a in msg[field].addresses:
        print(field, repr(a.display_name), a.addr_spec)
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.eml");
    std::fs::write(&path, m.as_bytes()).unwrap();
    let out = std::process::Command::new(
        postline_testkit::repo_root().join("tests/interop/.venv/bin/python"),
    )
    .args(["-c", script])
    .arg(&path)
    .output()
    .expect("the interop venv's python (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "From 'Alice Ärger' alice@example.com\n\
         To 'Bob \"the builder\", Jr.' bob@example.org\n\
         To 'Zoë' zoe@example.org\n\
         Cc '' plain@example.net\n"
    );
}

/// A Message-ID given as a header is checked like one given to message_id(), and written in
/// angle brackets.
#[test]
fn message_id_header_is_checked_and_bracketed() {
    let m = built(base().header("Message-ID", "bare.1@example.org").text("x"));
    assert_eq!(header_values(&m, "Message-ID"), ["<bare.1@example.org>"]);
    let m = built(
        base()
            .header("Message-ID", "  <b.2@example.org> ")
            .text("x"),
    );
    assert_eq!(header_values(&m, "Message-ID"), ["<b.2@example.org>"]);
    let e = base()
        .header("Message-ID", "not an id with spaces")
        .build()
        .unwrap_err();
    assert!(
        matches!(e, MessageError::Header { ref name, .. } if name == "Message-ID"),
        "{e}"
    );
}

/// Ready messages are read with the lines they will have on the wire: a bare CR ends a
/// line there, so a Bcc field after one is removed and its address is a recipient.
#[test]
fn bare_cr_cannot_hide_a_bcc_field() {
    let raw: &[u8] =
        b"From: a@example.com\nTo: b@example.org\nSubject: hi\rBcc: secret@example.org\n\nbody\n";
    let found = ready::recipients(raw).unwrap();
    assert_eq!(found.to, ["b@example.org"]);
    assert_eq!(found.bcc, ["secret@example.org"]);
    let stripped = ready::strip_bcc(raw);
    assert_eq!(
        stripped,
        b"From: a@example.com\nTo: b@example.org\nSubject: hi\r\n\nbody\n"
    );
    let wire = ready::crlf_line_endings(stripped);
    assert!(!String::from_utf8_lossy(&wire).contains("secret"));
    assert!(ready::recipients(&wire).unwrap().bcc.is_empty());

    let m = Message::from_bytes(raw).unwrap();
    assert_eq!(
        m.envelope().to().collect::<Vec<_>>(),
        ["b@example.org", "secret@example.org"]
    );
    assert_eq!(
        m.as_bytes(),
        b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    );
    // Bare CR lines end headers for has_header (and so complete_headers) too.
    assert!(ready::has_header(b"Subject: x\rDate: now\n\nb", "Date"));
    // A bare CR on its own is the empty line: what follows is body.
    let raw: &[u8] = b"From: a@example.com\nTo: b@example.org\r\rBcc: body@example.org\n";
    assert!(ready::recipients(raw).unwrap().bcc.is_empty());
    assert_eq!(ready::strip_bcc(raw), raw);
}

/// With Resent- recipient fields, the message goes to those only, and Resent-Bcc is removed.
#[test]
fn resent_fields_decide_the_recipients() {
    let raw: &[u8] = b"Resent-From: r@example.com\n\
Resent-To: new@example.org\n\
Resent-Bcc: secret@example.org,\n\
\x20secret2@example.org\n\
Resent-Date: Mon, 1 Jan 2024 00:00:00 +0000\n\
Resent-Cc: Copy <copy@example.org>\n\
From: a@example.com\n\
To: b@example.org\n\
Bcc: oldbcc@example.org\n\
\n\
Resent-Bcc: body@example.org\n";
    let found = ready::recipients(raw).unwrap();
    assert!(found.resent);
    assert_eq!(found.to, ["new@example.org"]);
    assert_eq!(found.cc, ["copy@example.org"]);
    assert_eq!(found.bcc, ["secret@example.org", "secret2@example.org"]);
    let m = Message::from_bytes(raw).unwrap();
    assert_eq!(m.envelope().from(), "r@example.com");
    assert_eq!(
        m.envelope().to().collect::<Vec<_>>(),
        [
            "new@example.org",
            "copy@example.org",
            "secret@example.org",
            "secret2@example.org"
        ]
    );
    let text = String::from_utf8(m.as_bytes().to_vec()).unwrap();
    assert!(!text.contains("secret"), "{text}");
    assert!(!text.contains("oldbcc"), "{text}");
    assert!(text
        .starts_with("Resent-From: r@example.com\r\nResent-To: new@example.org\r\nResent-Date:"));
    assert!(
        text.ends_with("\r\n\r\nResent-Bcc: body@example.org\r\n"),
        "{text}"
    );
    assert_eq!(
        ready::strip_bcc(
            b"resent-bcc : x@example.org\nRESENT-BCC:\n\ty@example.org\nResent-Bcc-X: k\n\n"
        ),
        b"Resent-Bcc-X: k\n\n"
    );

    // Only Resent-Bcc: the envelope is that address alone.
    let m = Message::from_bytes(
        &b"From: a@example.com\nTo: b@example.org\nResent-Bcc: only@example.org\n\nx\n"[..],
    )
    .unwrap();
    assert_eq!(m.envelope().to().collect::<Vec<_>>(), ["only@example.org"]);
    assert_eq!(m.envelope().from(), "a@example.com");
    // Resent-From alone changes nothing about the recipients.
    let found = ready::recipients(b"Resent-From: r@example.com\nTo: b@example.org\n\nx\n").unwrap();
    assert!(!found.resent);
    assert_eq!(found.to, ["b@example.org"]);
}

/// Every address taken from a recipient field is one the field holds as it is; an entry
/// that is not an address makes the message malformed, naming the field and the entry.
#[test]
fn recipient_fields_are_read_exactly() {
    for (raw, field, entry) in [
        (
            &b"From: a@example.com\nTo: Bob <bob@example.org> <carol@example.org>\n\nx\n"[..],
            "To",
            "bob@example.orgcarol@example.org",
        ),
        (
            b"From: a@example.com\nTo: bob@example.org, invalid address, carol@example.org\n\nx\n",
            "To",
            "invalid address",
        ),
        (
            b"From: a@example.com\nTo: b@example.org\nCc: Friends: ann@example.net, not one;\n\nx\n",
            "Cc",
            "not one",
        ),
        (
            b"From: a@example.com\nTo: b@example.org\nResent-Bcc: Bob Smith\n\nx\n",
            "Resent-Bcc",
            "Bob Smith",
        ),
    ] {
        for e in [
            ready::recipients(raw).unwrap_err(),
            Message::from_bytes(raw).unwrap_err(),
        ] {
            let MessageError::Malformed { ref reason } = e else {
                panic!("{e:?}");
            };
            assert!(
                reason.contains(&format!("the {field} field")) && reason.contains(entry),
                "{reason}"
            );
        }
    }
    // Legitimate forms still read as before.
    for (raw, to) in [
        (
            &b"From: a@example.com\nTo: undisclosed-recipients:;\nBcc: bob@example.org\n\nx\n"[..],
            &["bob@example.org"][..],
        ),
        (
            b"From: a@example.com\nTo: \"Doe, Jane\" <jane@example.org>, \"x, <y@z>\" <k@example.org>\n\nx\n",
            &["jane@example.org", "k@example.org"],
        ),
        (
            b"From: a@example.com\nTo: =?utf-8?q?Bob?= <bob@example.org>, =?utf-8?q?a,b?= <carol@example.org>\n\nx\n",
            &["bob@example.org", "carol@example.org"],
        ),
        (
            b"From: a@example.com\nTo: bob@example.org (comment, carol@example.org)\n\nx\n",
            &["bob@example.org"],
        ),
        (
            b"From: a@example.com\nTo: Bob (the builder) <BOB@Example.org>,\n\tFriends: ann@example.net;\n\nx\n",
            &["BOB@Example.org", "ann@example.net"],
        ),
        (
            b"From: a@example.com\nTo: b@example.org\nCc:\nBcc: Empty:;\n\nx\n",
            &["b@example.org"],
        ),
    ] {
        let m = Message::from_bytes(raw)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(raw)));
        assert_eq!(m.envelope().to().collect::<Vec<_>>(), to);
    }
}
