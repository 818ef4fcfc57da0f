//! [`TestCa`]: a throwaway CA and a server certificate it signed, as PEM files; client
//! certificates it signs ([`TestCa::client_cert`]); and [`SelfSigned`], a self-signed
//! certificate made by the `openssl` tool exactly as a user makes one.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A throwaway CA and a server certificate it signed, written as PEM files into a tempdir.
///
/// The server certificate (ECDSA P-256) is for `localhost`, 127.0.0.1 and ::1 unless made
/// with [`TestCa::with_server_names`]. Files: `ca.pem` (the CA certificate), `server.pem`
/// (the leaf only), `server-chain.pem` (leaf then CA), `server.key` (PKCS#8 key of the leaf).
pub struct TestCa {
    dir: tempfile::TempDir,
    /// `ca.pem`.
    pub ca_path: PathBuf,
    /// `server.pem`: the server's leaf certificate.
    pub cert_path: PathBuf,
    /// `server-chain.pem`: the leaf followed by the CA certificate.
    pub chain_path: PathBuf,
    /// `server.key`: the server's private key (PKCS#8 PEM).
    pub key_path: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The server's leaf certificate, PEM.
    pub server_cert_pem: String,
    /// The server's leaf certificate, DER.
    pub server_cert_der: Vec<u8>,
    /// The server's private key, PKCS#8 PEM.
    pub server_key_pem: String,
    /// The server's private key, PKCS#8 DER.
    pub server_key_der: Vec<u8>,
    /// The CA's certificate and key, to sign client certificates.
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

/// A client certificate signed by a [`TestCa`] (see [`TestCa::client_cert`]).
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// The user name: the certificate's subject common name.
    pub user: String,
    /// `client-<user>-<n>.pem`: the leaf certificate only.
    pub cert_path: PathBuf,
    /// `client-<user>-<n>.key`: its private key (PKCS#8 PEM, ECDSA P-256).
    pub key_path: PathBuf,
    /// `client-<user>-<n>-combined.pem`: the certificate followed by the key (one file, as some
    /// clients take it).
    pub combined_path: PathBuf,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    pub key_der: Vec<u8>,
}

static CA_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestCa {
    /// A new CA and a server certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn new() -> TestCa {
        Self::generate(&["localhost", "127.0.0.1", "::1"], false)
    }

    /// Another, independent CA (its own key and name) with the same kind of server
    /// certificate: a client that trusts only [`TestCa::new`]'s CA must reject its server.
    pub fn other() -> TestCa {
        Self::new()
    }

    /// A CA whose server certificate is for exactly these names (DNS names or IP addresses),
    /// e.g. `&["mail.example.test"]` to show a hostname mismatch for `localhost`.
    pub fn with_server_names(names: &[&str]) -> TestCa {
        Self::generate(names, false)
    }

    /// A CA whose server certificate (for `localhost`, 127.0.0.1, ::1) expired in 2001.
    pub fn expired() -> TestCa {
        Self::generate(&["localhost", "127.0.0.1", "::1"], true)
    }

    /// The tempdir holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client certificate for `user` signed by this CA: subject `CN=<user>`, extended key usage
    /// clientAuth only (no SAN), ECDSA P-256, valid 2000–2099; written as PEM files into this CA's
    /// directory (a new set of files on each call). A server that trusts [`TestCa::ca_path`] for
    /// client certificates accepts it; Dovecot with `ssl_cert_username_field = commonName` takes
    /// `user` as the login name.
    pub fn client_cert(&self, user: &str) -> ClientCert {
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let n = CA_COUNTER.fetch_add(1, Ordering::Relaxed);
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign client certificate");
        let safe: String = user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = format!("client-{safe}-{n}");
        let cert_path = self.dir().join(format!("{base}.pem"));
        let key_path = self.dir().join(format!("{base}.key"));
        let combined_path = self.dir().join(format!("{base}-combined.pem"));
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        fs::write(&cert_path, &cert_pem).expect("write client certificate");
        fs::write(&key_path, &key_pem).expect("write client key");
        fs::write(&combined_path, format!("{cert_pem}{key_pem}"))
            .expect("write client certificate and key");
        ClientCert {
            user: user.to_owned(),
            cert_path,
            key_path,
            combined_path,
            cert_der: cert.der().to_vec(),
            cert_pem,
            key_der: key.serialize_der(),
            key_pem,
        }
    }

    fn generate(names: &[&str], expired: bool) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let n = CA_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{} {}", std::process::id(), n);

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("postline test CA {tag}"));
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "postline tests");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let server_key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "server".into()),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        }
        let server_cert = params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("sign server certificate");

        let dir = tempfile::Builder::new()
            .prefix("postline-ca-")
            .tempdir()
            .expect("tempdir");
        let ca_pem = ca_cert.pem();
        let server_cert_pem = server_cert.pem();
        let server_key_pem = server_key.serialize_pem();
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("server.pem");
        let chain_path = dir.path().join("server-chain.pem");
        let key_path = dir.path().join("server.key");
        fs::write(&ca_path, &ca_pem).expect("write ca.pem");
        fs::write(&cert_path, &server_cert_pem).expect("write server.pem");
        fs::write(&chain_path, format!("{server_cert_pem}{ca_pem}"))
            .expect("write server-chain.pem");
        fs::write(&key_path, &server_key_pem).expect("write server.key");
        TestCa {
            ca_path,
            cert_path,
            chain_path,
            key_path,
            ca_der: ca_cert.der().to_vec(),
            ca_pem,
            server_cert_der: server_cert.der().to_vec(),
            server_cert_pem,
            server_key_der: server_key.serialize_der(),
            server_key_pem,
            dir,
            ca_cert,
            ca_key,
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A self-signed certificate made by the `openssl` command-line tool exactly as a user makes one:
///
/// ```text
/// openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost
/// ```
///
/// (OpenSSL 3 makes it a CA, `basicConstraints CA:TRUE`, with no subjectAltName), with the
/// fingerprints computed by openssl too, so tests can compare postline's output with openssl's.
pub struct SelfSigned {
    dir: tempfile::TempDir,
    /// `cert.pem`.
    pub cert_path: PathBuf,
    /// `key.pem` (unencrypted PKCS#8 RSA key).
    pub key_path: PathBuf,
    pub cert_pem: String,
    /// As `openssl x509 -noout -fingerprint -sha256` prints it after `=`: upper-case hex pairs
    /// separated by colons, e.g. `AB:CD:…` (SHA-256 of the certificate's DER).
    pub fingerprint_sha256: String,
    /// The curl-style public-key pin `sha256//BASE64`: base64 of the SHA-256 of the DER
    /// SubjectPublicKeyInfo (`openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
    /// openssl dgst -sha256 -binary | base64`).
    pub spki_pin: String,
}

impl SelfSigned {
    /// Runs openssl (each step bounded to 60 s); panics with openssl's output if it fails.
    pub fn new() -> SelfSigned {
        use crate::process::run_bounded;
        use std::process::Command;
        use std::time::Duration;
        let t = Duration::from_secs(60);
        let dir = tempfile::Builder::new()
            .prefix("postline-selfsigned-")
            .tempdir()
            .expect("tempdir");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let (ok, out) = run_bounded(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
                .arg(&key_path)
                .arg("-out")
                .arg(&cert_path)
                .args(["-days", "30", "-subj", "/CN=localhost"]),
            t,
        );
        assert!(ok, "openssl req -x509 failed: {out}");
        let (ok, out) = run_bounded(
            Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
                .arg(&cert_path),
            t,
        );
        assert!(ok, "openssl x509 -fingerprint failed: {out}");
        // "sha256 Fingerprint=AB:CD:..." (OpenSSL 3) or "SHA256 Fingerprint=..." (1.1).
        let fingerprint_sha256 = out
            .lines()
            .find_map(|l| {
                l.split_once("Fingerprint=")
                    .map(|(_, f)| f.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no fingerprint in openssl's output: {out}"));
        let pipeline = "openssl x509 -pubkey -noout -in \"$1\" | openssl pkey -pubin -outform der \
            | openssl dgst -sha256 -binary | base64";
        let (ok, out) = run_bounded(
            Command::new("sh")
                .args(["-c", pipeline, "sh"])
                .arg(&cert_path),
            t,
        );
        assert!(ok, "openssl SPKI pin pipeline failed: {out}");
        let spki_pin = format!("sha256//{}", out.trim());
        let cert_pem = fs::read_to_string(&cert_path).expect("read cert.pem");
        SelfSigned {
            dir,
            cert_path,
            key_path,
            cert_pem,
            fingerprint_sha256,
            spki_pin,
        }
    }

    /// The tempdir holding `cert.pem` and `key.pem`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// [`fingerprint_sha256`](Self::fingerprint_sha256) as lower-case hex without colons.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint_sha256
            .replace(':', "")
            .to_ascii_lowercase()
    }
}

impl Default for SelfSigned {
    fn default() -> Self {
        Self::new()
    }
}
