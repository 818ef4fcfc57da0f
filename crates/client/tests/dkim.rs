//! `postline::dkim` signatures checked by a third-party verifier (dkimpy, through
//! tests/interop/dkim_verify.py with the key record made from the public key): RSA in PKCS #8
//! and PKCS #1 PEM, Ed25519, relaxed and simple canonicalisation, a chosen header list; the
//! `Signing` transport, to a stub and through a relay to aiosmtpd.

use std::path::Path;

use postline::dkim::{Algorithm, Canonicalization, DkimOptions, DkimSigner, Signing};
use postline::transport::{AsyncTransport, StubTransport, Transport};
use postline::{Config, DeliveryStatus, Envelope, Mailer, Tls};
use postline_testkit::{Aiosmtpd, DkimKey};

const MESSAGE: &[u8] = b"From: Me <me@example.org>\r\nTo: you@example.com\r\nSubject: a  fixed\r\n message\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <fixed@example.org>\r\n\r\nLine one.  \r\n\r\n\r\n";

/// Makes a key; its PEM and the key for the verifier.
fn key(dir: &Path, kind: &'static str) -> (Vec<u8>, DkimKey) {
    let key = DkimKey::generate(dir, kind);
    (key.pem(), key)
}

fn dkimpy(dir: &Path, key: &DkimKey, message: &[u8]) -> bool {
    key.dkimpy(dir, "message.eml", message).is_ok()
}

#[test]
fn signatures_verify_with_dkimpy() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["rsa", "rsa-pkcs1", "ed25519"] {
        let (pem, der) = key(dir.path(), kind);
        for c in [Canonicalization::Relaxed, Canonicalization::Simple] {
            let options = DkimOptions {
                header_canonicalization: c,
                body_canonicalization: c,
                ..DkimOptions::default()
            };
            let signer = DkimSigner::with_options(&pem, "sel", "example.org", options).unwrap();
            let expected = if kind == "ed25519" {
                Algorithm::Ed25519Sha256
            } else {
                Algorithm::RsaSha256
            };
            assert_eq!(signer.algorithm(), expected);
            // The default list: the fields present bottom up, then the absent ones (so adding
            // one of those later breaks the signature).
            let header = String::from_utf8(signer.sign(MESSAGE).unwrap()).unwrap();
            let unfolded = header.replace(['\r', '\n', '\t', ' '], "");
            assert!(
                unfolded.contains("h=Message-ID:Date:Subject:To:From:Cc:Reply-To:MIME-Version:Content-Type:In-Reply-To:References;"),
                "{header}"
            );
            let signed = signer.sign_message(MESSAGE).unwrap();
            assert!(
                dkimpy(dir.path(), &der, &signed),
                "{kind} {c:?}: not verified:\n{}",
                String::from_utf8_lossy(&signed)
            );
            // A signed header changed: fails.
            let text = String::from_utf8(signed.clone()).unwrap();
            let changed = text.replace("To: you@example.com", "To: them@example.com");
            assert!(
                !dkimpy(dir.path(), &der, changed.as_bytes()),
                "{kind} {c:?}"
            );
        }
        // Only From and Subject signed: changing To keeps the signature valid.
        let options = DkimOptions {
            headers: vec!["From".into(), "Subject".into()],
            ..DkimOptions::default()
        };
        let signer = DkimSigner::with_options(&pem, "sel", "example.org", options).unwrap();
        let signed = String::from_utf8(signer.sign_message(MESSAGE).unwrap()).unwrap();
        assert!(signed.contains("h=Subject:From;"), "{signed}");
        let changed = signed.replace("To: you@example.com", "To: them@example.com");
        assert!(
            dkimpy(dir.path(), &der, changed.as_bytes()),
            "{kind}: {signed}"
        );
    }
}

/// A message with bare LF line endings, a multipart body with an attachment, trailing blank
/// lines and a long line: what `Signing` hands on verifies, and the recipient sees it as
/// sent.
const LF_MESSAGE: &[u8] = b"From: Me <me@example.org>\nTo: you@example.com\nSubject: signed by the transport\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nHello.\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAwQFBgcICQ==\n--b--\n\n\n";

#[test]
fn the_signing_transport_hands_on_signed_bytes_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, key) = key(dir.path(), "ed25519");
    let signer = DkimSigner::from_pem(&pem, "sel", "example.org").unwrap();
    let stub = StubTransport::new();
    let mail = Signing::new(signer, stub.clone());
    let envelope = Envelope::new("me@example.org", ["you@example.com"]).unwrap();
    let mut long = LF_MESSAGE.to_vec();
    long.extend(std::iter::repeat_n(b'x', 990));
    long.push(b'\n');
    let d = Transport::send(&mail, &envelope, &long).unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered);
    let sent = &stub.sent()[0].message;
    assert!(sent.starts_with(b"DKIM-Signature:"));
    assert!(
        !sent.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "handed on with CRLF line endings"
    );
    key.dkimpy(dir.path(), "sent.eml", sent)
        .unwrap_or_else(|e| panic!("not verified: {e}"));
    // A changed body fails.
    let text = String::from_utf8(sent.clone()).unwrap();
    let changed = text.replace("Hello.", "Hellp.");
    assert!(key
        .dkimpy(dir.path(), "changed.eml", changed.as_bytes())
        .is_err());
}

#[test]
fn a_message_that_cannot_be_signed_fails_and_is_not_sent_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = key(dir.path(), "ed25519");
    let stub = StubTransport::new();
    let mail = Signing::new(
        DkimSigner::from_pem(&pem, "sel", "example.org").unwrap(),
        stub.clone(),
    );
    let envelope = Envelope::new("me@example.org", ["a@example.com", "b@example.com"]).unwrap();
    let d = Transport::send(&mail, &envelope, b"Subject: no From\r\n\r\nbody\r\n").unwrap();
    assert!(
        d.iter().all(|d| d.status == DeliveryStatus::Failed),
        "{d:?}"
    );
    assert!(d[0].reason.contains("From"), "{}", d[0].reason);
    assert!(stub.sent().is_empty(), "nothing sent unsigned");
}

#[tokio::test]
async fn signed_through_a_relay_the_server_stores_a_verifying_message() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, key) = key(dir.path(), "rsa");
    let server = Aiosmtpd::start();
    let relay = Mailer::relay(
        Config::relay("127.0.0.1")
            .port(server.port())
            .tls(Tls::None)
            .hello_name("client.test"),
    );
    let mail = Signing::new(
        DkimSigner::from_pem(&pem, "sel", "example.org").unwrap(),
        relay,
    );
    let envelope = Envelope::new("me@example.org", ["you@example.com"]).unwrap();
    let d = AsyncTransport::send(&mail, &envelope, LF_MESSAGE)
        .await
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered, "{d:?}");
    let got = server.wait_for_messages(1, std::time::Duration::from_secs(20));
    key.dkimpy(dir.path(), "stored.eml", &got[0].content)
        .unwrap_or_else(|e| panic!("the stored message does not verify: {e}"));
}
