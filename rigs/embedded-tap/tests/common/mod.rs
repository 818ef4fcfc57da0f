//! What the rig's tests share.

#![allow(dead_code)]

/// 1 MiB of lines, every other one starting with a dot (some with two).
pub fn dotted_body() -> Vec<u8> {
    let mut body = Vec::new();
    let mut i = 0;
    while body.len() < 1 << 20 {
        let line = match i % 4 {
            0 => format!(".line {i} starts with a dot\r\n"),
            1 => format!("line {i} does not.\r\n"),
            2 => format!("..line {i} starts with two\r\n"),
            _ => format!("line {i} {}\r\n", "x".repeat(i % 97)),
        };
        body.extend_from_slice(line.as_bytes());
        i += 1;
    }
    body
}

/// RFC 5321 4.5.2: a line starting with a dot gets one more.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16);
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}

/// A throwaway CA and a server certificate it signed, both P-256 (the only key share and the
/// curve embedded-tls verifies by default), made with openssl in a temporary directory.
pub struct Certs {
    pub dir: std::path::PathBuf,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The server's certificate (PEM), for aiosmtpd.
    pub cert: std::path::PathBuf,
    /// Its key (PEM).
    pub key: std::path::PathBuf,
}

impl Certs {
    /// A CA named `ca` and a server certificate for the DNS name `server_name`.
    pub fn new(ca: &str, server_name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!(
            "pl-tap-certs-{}-{ca}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let sh = |script: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}: {out:?}");
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        sh(&format!(
            "openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN={ca} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ));
        sh(&format!(
            "openssl req {ec} -keyout server.key -out server.csr -subj /CN={server_name} && \
             printf 'subjectAltName=DNS:{server_name}\\nbasicConstraints=CA:FALSE\\n' > ext && \
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
             -days 2 -extfile ext -out server.pem && \
             openssl x509 -in ca.pem -outform der -out ca.der && chmod 644 server.key"
        ));
        Certs {
            ca_der: std::fs::read(dir.join("ca.der")).unwrap(),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
        }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
