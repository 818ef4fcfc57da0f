//! [`TestCa`]: a throwaway CA and a server certificate it signed, as PEM files.

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
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
