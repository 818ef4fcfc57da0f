//! DKIM keys made by openssl and verdicts from dkimpy (tests/interop/dkim_verify.py, which
//! builds the key record from the public key instead of asking DNS).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo_root;

/// A key pair made by `openssl genpkey`.
#[derive(Debug, Clone)]
pub struct DkimKey {
    /// The PEM private key file.
    pub private: PathBuf,
    /// The DER public key file (what the verifier's key record is made from).
    pub public_der: PathBuf,
    /// `rsa`, `rsa-pkcs1` (the same RSA key in PKCS #1 PEM) or `ed25519`.
    pub kind: &'static str,
}

/// Runs `openssl` with `args`; panics with its stderr when it fails.
pub fn openssl(args: &[&str]) {
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

impl DkimKey {
    /// Makes a `kind` key (`rsa` 2048 bits in PKCS #8, `rsa-pkcs1`, or `ed25519`) in `dir`.
    pub fn generate(dir: &Path, kind: &'static str) -> DkimKey {
        let private = dir.join(format!("{kind}.pem"));
        let p = private.to_str().unwrap();
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
            "ed25519" => openssl(&["genpkey", "-algorithm", "ed25519", "-out", p]),
            _ => panic!("unknown DKIM key kind {kind}"),
        }
        if kind == "rsa-pkcs1" {
            let pkcs8 = dir.join("rsa-pkcs8.pem");
            std::fs::rename(&private, &pkcs8).unwrap();
            openssl(&[
                "pkey",
                "-in",
                pkcs8.to_str().unwrap(),
                "-traditional",
                "-out",
                p,
            ]);
            let text = std::fs::read_to_string(&private).unwrap();
            assert!(
                text.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
                "{text}"
            );
        }
        let public_der = dir.join(format!("{kind}.pub.der"));
        openssl(&[
            "pkey",
            "-in",
            p,
            "-pubout",
            "-outform",
            "DER",
            "-out",
            public_der.to_str().unwrap(),
        ]);
        DkimKey {
            private,
            public_der,
            kind,
        }
    }

    /// The private key's PEM text.
    pub fn pem(&self) -> Vec<u8> {
        std::fs::read(&self.private).unwrap()
    }

    /// dkimpy's verdict on `message` (written to `dir/name`), with selector `sel` and domain
    /// `example.org`: `Ok(output)` when it verifies, `Err(output)` when not. Panics when the
    /// verifier cannot run.
    pub fn dkimpy(&self, dir: &Path, name: &str, message: &[u8]) -> Result<String, String> {
        let root = repo_root();
        let path = dir.join(name);
        std::fs::write(&path, message).unwrap();
        let algorithm = if self.kind == "ed25519" {
            "ed25519"
        } else {
            "rsa"
        };
        let o = Command::new(root.join("tests/interop/.venv/bin/python"))
            .arg(root.join("tests/interop/dkim_verify.py"))
            .arg(&path)
            .arg(&self.public_der)
            .arg(algorithm)
            .output()
            .expect("run dkim_verify.py (run .ci/install-deps for dkimpy)");
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        match o.status.code() {
            Some(0) => Ok(out),
            Some(1) => Err(out),
            _ => panic!("dkim_verify.py failed to run: {out}"),
        }
    }
}
