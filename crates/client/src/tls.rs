//! rustls configuration: trust roots, the explicit opt-out, and what the handshake negotiated.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::Config;
use crate::error::{ConfigError, Error};

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

fn ca_file_error(path: &std::path::Path, reason: impl std::fmt::Display) -> Error {
    Error::Config(ConfigError::CaFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    })
}

/// Builds the rustls client configuration from `config`'s trust settings.
pub(crate) fn build_client_config(config: &Config) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(ConfigError::TlsSetup(e.to_string())))?;
    let tls = if config.accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
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
        for path in &config.ca_files {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ca_file_error(path, e))?;
            if certs.is_empty() {
                return Err(ca_file_error(path, "no certificate found"));
            }
            for c in certs {
                roots.add(c).map_err(|e| ca_file_error(path, e))?;
            }
        }
        for der in &config.extra_roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| Error::Config(ConfigError::RootCertificate(e.to_string())))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(tls))
}

/// When TLS is required (STARTTLS or implicit), the name the certificate will be checked
/// against must be usable: a configuration fault found before connecting. (Opportunistic TLS
/// falls back to clear text if the handshake cannot start.)
pub(crate) fn check_required_name(config: &Config) -> Result<(), Error> {
    match config.tls {
        crate::Tls::StartTls | crate::Tls::Implicit => server_name(config).map(|_| ()),
        crate::Tls::None | crate::Tls::Opportunistic => Ok(()),
    }
}

/// The name the certificate is checked against.
pub(crate) fn server_name(config: &Config) -> Result<ServerName<'static>, Error> {
    let name = config.tls_name.as_deref().unwrap_or(&config.host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string())
        .map_err(|_| Error::Config(ConfigError::TlsServerName(name.to_string())))
}

/// Maps a handshake failure to the client's error, keeping rustls' explanation.
pub(crate) fn handshake_error(config: &Config, e: io::Error) -> Error {
    Error::Tls {
        host: config
            .tls_name
            .clone()
            .unwrap_or_else(|| config.host.clone()),
        source: Arc::new(e),
    }
}

/// Accepts any certificate but still checks handshake signatures, so the connection is
/// encrypted, just not authenticated. Chosen only through
/// `Config::dangerous_accept_invalid_certificates`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
