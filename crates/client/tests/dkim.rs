//! `postline::dkim` signatures checked by a third-party verifier (dkimpy, through
//! tests/interop/dkim_verify.py with the key record made from the public key): RSA in PKCS #8
//! and PKCS #1 PEM, Ed25519, relaxed and simple canonicalisation, a chosen header list.

use std::path::Path;
use std::process::Command;

use postline::dkim::{Algorithm, Canonicalization, DkimOptions, DkimSigner};
use postline_testkit::repo_root;

const MESSAGE: &[u8] = b"From: Me <me@example.org>\r\nTo: you@example.com\r\nSubject: a  fixed\r\n message\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <fixed@example.org>\r\n\r\nLine one.  \r\n\r\n\r\n";

fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Makes a key with `openssl genpkey` (`rsa`, `rsa-pkcs1` or `ed25519`); returns its PEM and
/// the path of its DER public key.
fn key(dir: &Path, kind: &str) -> (Vec<u8>, std::path::PathBuf) {
    let pem = dir.join(format!("{kind}.pem"));
    let p = pem.to_str().unwrap();
    match kind {
        "rsa" | "rsa-pkcs1" => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            p,
        ]),
        _ => openssl(&["genpkey", "-algorithm", "ed25519", "-out", p]),
    }
    if kind == "rsa-pkcs1" {
        let pkcs8 = dir.join("rsa-pkcs8.pem");
        std::fs::rename(&pem, &pkcs8).unwrap();
        openssl(&[
            "pkey",
            "-in",
            pkcs8.to_str().unwrap(),
            "-traditional",
            "-out",
            p,
        ]);
        let text = std::fs::read_to_string(&pem).unwrap();
        assert!(
            text.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "{text}"
        );
    }
    let der = dir.join(format!("{kind}.pub.der"));
    openssl(&[
        "pkey",
        "-in",
        p,
        "-pubout",
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    (std::fs::read(&pem).unwrap(), der)
}

fn dkimpy(dir: &Path, der: &Path, kind: &str, message: &[u8]) -> bool {
    let root = repo_root();
    let path = dir.join("message.eml");
    std::fs::write(&path, message).unwrap();
    let o = Command::new(root.join("tests/interop/.venv/bin/python"))
        .arg(root.join("tests/interop/dkim_verify.py"))
        .args([path.as_os_str(), der.as_os_str()])
        .arg(if kind == "ed25519" { "ed25519" } else { "rsa" })
        .output()
        .expect("run dkim_verify.py (run .ci/install-deps for dkimpy)");
    match o.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("dkim_verify.py: {}", String::from_utf8_lossy(&o.stderr)),
    }
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
                dkimpy(dir.path(), &der, kind, &signed),
                "{kind} {c:?}: not verified:\n{}",
                String::from_utf8_lossy(&signed)
            );
            // A signed header changed: fails.
            let text = String::from_utf8(signed.clone()).unwrap();
            let changed = text.replace("To: you@example.com", "To: them@example.com");
            assert!(
                !dkimpy(dir.path(), &der, kind, changed.as_bytes()),
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
            dkimpy(dir.path(), &der, kind, changed.as_bytes()),
            "{kind}: {signed}"
        );
    }
}
