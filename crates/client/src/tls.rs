//! rustls configuration: trust roots, the explicit opt-out, and what the handshake negotiated.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::certificate::CertificateSummary;
use crate::config::Config;
use crate::error::{ConfigError, Error};
use crate::tls_failure::TlsFailure;
use crate::trust::ServerVerifier;

/// What the TLS handshake settled on, for callers that log or check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The server's certificate chain, DER, end entity first.
    pub peer_certificates: Vec<Vec<u8>>,
    /// Channel binding data for SCRAM-SHA-256-PLUS (see [`crate::binding`]); `None` when
    /// built from the common state alone, which cannot export it.
    pub channel_binding: Option<crate::binding::ChannelBindingData>,
}

impl TlsInfo {
    /// What a rustls connection negotiated, without channel binding: a custom driver with a
    /// `ClientConnection` at hand should prefer [`TlsInfo::from_client_connection`], which
    /// enables SCRAM-SHA-256-PLUS.
    pub fn from_connection(conn: &rustls::CommonState) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_string(),
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let peer_certificates = conn
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default();
        TlsInfo {
            version,
            cipher_suite,
            peer_certificates,
            channel_binding: None,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for `config`: the caller's (or one prepared earlier), else
/// built now.
pub(crate) fn client_config(config: &Config) -> Result<Arc<ClientConfig>, Error> {
    match &config.rustls {
        Some(tls) => Ok(tls.clone()),
        None => build_client_config(config),
    }
}

/// A PEM reading error in words (the library's own text shows byte arrays).
fn pem_error(e: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error as P;
    match e {
        P::Io(e) => e.to_string(),
        P::NoItemsFound => format!("no {what} found in it"),
        P::SectionTooLarge => "a PEM section in it is too large".to_string(),
        _ => format!("it is not valid PEM (expected {what})"),
    }
}

/// Why a key file gave no key, with the way out for the usual cases.
fn key_error(path: &std::path::Path, e: rustls::pki_types::pem::Error) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if has(b"ENCRYPTED PRIVATE KEY") || has(b"Proc-Type: 4,ENCRYPTED") {
        return "it is encrypted, which postline cannot read: decrypt it (openssl pkey -in KEY -out plain.pem) and keep the result private".to_string();
    }
    if bytes.first() == Some(&0x30) {
        return "it is DER, not PEM: convert it (openssl pkey -inform der -in KEY -out key.pem)"
            .to_string();
    }
    pem_error(e, "PEM private key (PKCS#8, PKCS#1 or SEC1)")
}

fn ca_file_error(path: &std::path::Path, reason: impl std::fmt::Display) -> Error {
    Error::Config(ConfigError::CaFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    })
}

/// Builds the rustls client configuration from `config`'s trust settings and client
/// certificate.
pub(crate) fn build_client_config(config: &Config) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(ConfigError::TlsSetup(e.to_string())))?;
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(server_verifier(config, provider)?);
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let tls = match &config.client_identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let (chain, key) = id.load()?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => {
                        id.error("the key is not this certificate's private key")
                    }
                    e => id.error(crate::TlsFailure::from_rustls(&e)),
                })?
        }
    };
    Ok(Arc::new(tls))
}

fn server_verifier(
    config: &Config,
    provider: Arc<CryptoProvider>,
) -> Result<ServerVerifier, Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if config.system_roots {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let why = found
                .errors
                .first()
                .map_or_else(|| "no certificate found".to_string(), |e| e.to_string());
            return Err(Error::Config(ConfigError::SystemRoots(why)));
        }
        // Certificates the store holds that webpki cannot use are skipped, as browsers do.
        roots.add_parsable_certificates(found.certs);
    }
    // Every certificate given explicitly is also trusted as itself (see `trust`), so one
    // webpki cannot take as an authority (a self-signed leaf, say) is still usable.
    let mut as_itself = Vec::new();
    for path in &config.ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ca_file_error(path, pem_error(e, "certificate")))?;
        if certs.is_empty() {
            return Err(ca_file_error(path, "no certificate found"));
        }
        for c in certs {
            if CertificateSummary::from_der(&c).is_none() {
                return Err(ca_file_error(path, "a certificate in it cannot be parsed"));
            }
            let _ = roots.add(c.clone());
            as_itself.push(c);
        }
    }
    for der in &config.extra_roots {
        if CertificateSummary::from_der(der).is_none() {
            return Err(Error::Config(ConfigError::RootCertificate(
                "the certificate cannot be parsed".into(),
            )));
        }
        let c = CertificateDer::from(der.clone());
        let _ = roots.add(c.clone());
        as_itself.push(c);
    }
    // Pins win over the opt-out: a pinned server is checked even when verification is off.
    if config.accept_invalid_certs && config.pins.is_empty() {
        return Ok(ServerVerifier::accept_any(provider));
    }
    ServerVerifier::new(roots, as_itself, config.pins.clone(), provider)
        .map_err(|e| Error::Config(ConfigError::TlsSetup(e.to_string())))
}

/// When TLS is required (STARTTLS or implicit), the name the certificate will be checked
/// against must be usable: a configuration fault found before connecting. (Opportunistic TLS
/// falls back to clear text if the handshake cannot start.)
pub(crate) fn check_required_name(config: &Config) -> Result<(), Error> {
    match config.tls {
        crate::Tls::StartTls | crate::Tls::Implicit => server_name(config).map(|_| ()),
        crate::Tls::Opportunistic if config.tls_required() => server_name(config).map(|_| ()),
        crate::Tls::None | crate::Tls::Opportunistic => Ok(()),
    }
}

/// What needs TLS has it: REQUIRETLS needs TLS with a verified certificate (RFC 8689
/// section 4.1), a pin needs TLS to check.
pub(crate) fn check_require_tls(config: &Config) -> Result<(), Error> {
    let why = if config.require_tls && config.tls == crate::Tls::None {
        "REQUIRETLS needs TLS, and TLS is off"
    } else if config.require_tls && !config.verifies_certificates() {
        "REQUIRETLS needs a verified certificate, and verification is off"
    } else if !config.pins.is_empty() && config.tls == crate::Tls::None {
        "a certificate pin needs TLS, and TLS is off"
    } else {
        return Ok(());
    };
    Err(Error::Config(ConfigError::TlsSetup(why.to_string())))
}

/// The name the certificate is checked against.
pub(crate) fn server_name(config: &Config) -> Result<ServerName<'static>, Error> {
    let name = config.tls_name.as_deref().unwrap_or(&config.host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string())
        .map_err(|_| Error::Config(ConfigError::TlsServerName(name.to_string())))
}

/// Maps a handshake failure to the client's error, in words.
pub(crate) fn handshake_error(config: &Config, e: io::Error) -> Error {
    Error::Tls {
        host: config.server_name().to_string(),
        failure: TlsFailure::from_io(e),
    }
}

/// The certificate and key this client proves itself with (RFC 8446 4.4.2, SASL EXTERNAL).
/// `Debug` never shows the key.
#[derive(Clone)]
pub(crate) enum ClientIdentity {
    /// PEM files: the certificate (possibly followed by its chain) and the private key.
    Files { cert: PathBuf, key: PathBuf },
    /// DER, already in memory.
    Der {
        chain: Vec<Vec<u8>>,
        key: Arc<Vec<u8>>,
    },
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientIdentity::Files { cert, .. } => write!(f, "Files {{ cert: {cert:?}, key: *** }}"),
            ClientIdentity::Der { chain, .. } => {
                write!(f, "Der {{ chain: {} certificates, key: *** }}", chain.len())
            }
        }
    }
}

impl ClientIdentity {
    fn path(&self) -> PathBuf {
        match self {
            ClientIdentity::Files { cert, .. } => cert.clone(),
            ClientIdentity::Der { .. } => PathBuf::from("<memory>"),
        }
    }

    fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::Config(ConfigError::ClientCertificate {
            path: self.path(),
            reason: reason.to_string(),
        })
    }

    fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
        match self {
            ClientIdentity::Files { cert, key } => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| self.error(pem_error(e, "certificate")))?;
                if chain.is_empty() {
                    return Err(self.error("no certificate found"));
                }
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    Error::Config(ConfigError::ClientKey {
                        path: key.clone(),
                        reason: key_error(key, e),
                    })
                })?;
                Ok((chain, key))
            }
            ClientIdentity::Der { chain, key } => {
                if chain.is_empty() {
                    return Err(self.error("no certificate given"));
                }
                let chain = chain
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect();
                let key = PrivateKeyDer::try_from(key.as_slice().to_vec()).map_err(|_| {
                    self.error("the key is not a DER private key (PKCS#8, PKCS#1 or SEC1)")
                })?;
                Ok((chain, key))
            }
        }
    }
}
