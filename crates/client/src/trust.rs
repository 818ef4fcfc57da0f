//! Deciding whether to trust a server certificate, and explaining a refusal.
//!
//! Three ways to trust, in this order:
//! 1. **Pins** (`--tls-fingerprint`, `--pinned-pubkey`): when any is given, the certificate is
//!    trusted if and only if one matches; chain and name are not checked, as with msmtp's
//!    `tls_fingerprint` (curl checks its `--pinnedpubkey` on top of the chain instead). The
//!    handshake signature is still verified, so the server must hold the pinned key.
//! 2. **A certificate given as itself**: a certificate from a CA file (or
//!    `Config::add_root_certificate`) that is byte for byte the server's own is trusted
//!    whatever its basic constraints, as OpenSSL's partial-chain mode and msmtp do. This is
//!    how `openssl req -x509` certificates (self-signed, `CA:TRUE`) are used. Its validity
//!    period and names are still checked, the common name standing in when the certificate
//!    has no alternative names.
//! 3. **A chain** to a trusted authority, checked by webpki (compiled-in roots, CA files,
//!    optionally the system store).
//!
//! Or, only through `Config::dangerous_accept_invalid_certificates` without a pin, no check of
//! the certificate at all: the connection is encrypted, just not authenticated.
//!
//! A refusal carries a [`TlsFailure`] naming what the certificate holds and how to trust it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::certificate::{CertificateSummary, Fingerprint, Pin};
use crate::tls_failure::TlsFailure;

/// The server certificate verifier every postline TLS connection uses (unless the caller
/// brings its own rustls configuration or turns verification off).
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    /// `None`: any certificate is accepted (handshake signatures are still checked).
    chain: Option<Arc<WebPkiServerVerifier>>,
    trusted_as_itself: Vec<CertificateDer<'static>>,
    pins: Vec<Pin>,
    provider: Arc<CryptoProvider>,
}

impl ServerVerifier {
    pub(crate) fn new(
        roots: RootCertStore,
        trusted_as_itself: Vec<CertificateDer<'static>>,
        pins: Vec<Pin>,
        provider: Arc<CryptoProvider>,
    ) -> Result<ServerVerifier, rustls::client::VerifierBuilderError> {
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?;
        Ok(ServerVerifier {
            chain: Some(chain),
            trusted_as_itself,
            pins,
            provider,
        })
    }

    /// Accepts any certificate: for `dangerous_accept_invalid_certificates` only.
    pub(crate) fn accept_any(provider: Arc<CryptoProvider>) -> ServerVerifier {
        ServerVerifier {
            chain: None,
            trusted_as_itself: Vec::new(),
            pins: Vec::new(),
            provider,
        }
    }

    fn check_pins(&self, end_entity: &CertificateDer<'_>) -> Result<(), TlsFailure> {
        let fingerprint = Fingerprint::of(end_entity);
        let summary = CertificateSummary::from_der(end_entity);
        let matched = self.pins.iter().any(|pin| match pin {
            Pin::Certificate(f) => *f == fingerprint,
            Pin::PublicKey(k) => summary.as_ref().is_some_and(|s| s.public_key_pin == *k),
        });
        if matched {
            return Ok(());
        }
        Err(match summary {
            Some(s) => TlsFailure::PinMismatch {
                pins: self.pins.clone(),
                certificate: Arc::new(s),
            },
            None => unreadable(),
        })
    }

    /// A certificate trusted as itself: still within its validity and for this name.
    fn check_as_itself(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: SystemTime,
    ) -> Result<(), TlsFailure> {
        let Some(c) = CertificateSummary::from_der(end_entity) else {
            return Err(unreadable());
        };
        let c = Arc::new(c);
        if now > c.not_after {
            return Err(TlsFailure::Expired {
                certificate: c,
                now,
            });
        }
        if now < c.not_before {
            return Err(TlsFailure::NotYetValid {
                certificate: c,
                now,
            });
        }
        let name = name_text(server_name);
        if !c.matches_name(&name) {
            return Err(TlsFailure::WrongName {
                expected: name,
                certificate: c,
            });
        }
        Ok(())
    }
}

fn unreadable() -> TlsFailure {
    TlsFailure::BadCertificate {
        reason: "it cannot be parsed".into(),
        certificate: None,
    }
}

fn name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

fn system_time(now: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(now.as_secs())
}

/// Puts webpki's refusal in words, with what the certificate holds.
fn explain(
    e: rustls::Error,
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: SystemTime,
) -> TlsFailure {
    let rustls::Error::InvalidCertificate(kind) = &e else {
        return TlsFailure::from_rustls(&e);
    };
    let Some(c) = CertificateSummary::from_der(end_entity) else {
        return TlsFailure::from_rustls(&e);
    };
    let c = Arc::new(c);
    match kind {
        // Whatever else is wrong with it, nobody vouches for a self-signed certificate: say
        // that first, with the way to trust it.
        _ if c.self_signed => TlsFailure::SelfSigned(c),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            TlsFailure::Expired {
                certificate: c,
                now,
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            TlsFailure::NotYetValid {
                certificate: c,
                now,
            }
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            TlsFailure::WrongName {
                expected: name_text(server_name),
                certificate: c,
            }
        }
        CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer(c),
        _ if c.is_ca => TlsFailure::CaUsedAsLeaf(c),
        _ => match TlsFailure::from_rustls(&e) {
            TlsFailure::BadCertificate { reason, .. } => TlsFailure::BadCertificate {
                reason,
                certificate: Some(c),
            },
            other => other,
        },
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let clock = system_time(now);
        if !self.pins.is_empty() {
            self.check_pins(end_entity)?;
            return Ok(ServerCertVerified::assertion());
        }
        if self
            .trusted_as_itself
            .iter()
            .any(|t| t.as_ref() == end_entity.as_ref())
        {
            self.check_as_itself(end_entity, server_name, clock)?;
            return Ok(ServerCertVerified::assertion());
        }
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map_err(|e| explain(e, end_entity, server_name, clock).into())
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
