//! Whole setups several tests share, built from the rigs: a Postfix submission relay that
//! authenticates through Dovecot, and Dovecot's submission service taking SASL EXTERNAL.

use crate::{Aiosmtpd, ClientCert, Dovecot, Postfix, TestCa, TlsLevel};

/// A private Postfix relay authenticating through a private Dovecot that holds one user:
/// STARTTLS on [`Postfix::submission_port`] (TLS optional, AUTH only under TLS), implicit TLS
/// on [`Postfix::smtps_port`], its certificate from `ca`; unauthenticated relaying refused.
pub struct SaslRelay {
    /// The relay (dropped first: it uses Dovecot's socket).
    pub postfix: Postfix,
    /// The SASL server.
    pub dovecot: Dovecot,
    /// The CA of the relay's certificate (for `ca_file`).
    pub ca: TestCa,
}

impl SaslRelay {
    /// `user` with `password`, offering `mechanisms` (Dovecot's names, e.g.
    /// `"plain login scram-sha-256"`).
    pub fn start(user: &str, password: &str, mechanisms: &str) -> SaslRelay {
        let ca = TestCa::new();
        let dovecot = Dovecot::builder()
            .user(user, password)
            .mechanisms(mechanisms)
            .start();
        let postfix = Postfix::builder()
            .tls(&ca)
            .submission(TlsLevel::May)
            .smtps()
            .sasl(&dovecot)
            .tls_auth_only()
            .start();
        SaslRelay {
            postfix,
            dovecot,
            ca,
        }
    }
}

/// Dovecot's submission service (STARTTLS, certificate from `server_ca`) authenticating
/// `user` (password `secret`) by SASL EXTERNAL from a client certificate issued by `clients`,
/// relaying to an aiosmtpd `sink`.
pub struct ExternalSubmission {
    /// The submission service (dropped first).
    pub dovecot: Dovecot,
    /// Where Dovecot relays accepted mail.
    pub sink: Aiosmtpd,
    /// The CA of the service's certificate (for `ca_file`).
    pub server_ca: TestCa,
    /// The CA Dovecot trusts for client certificates.
    pub clients: TestCa,
    /// A client certificate for `user`.
    pub cert: ClientCert,
}

impl ExternalSubmission {
    /// Starts the sink and Dovecot, and issues `user`'s certificate.
    pub fn start(user: &str) -> ExternalSubmission {
        let server_ca = TestCa::new();
        let clients = TestCa::new();
        let cert = clients.client_cert(user);
        let sink = Aiosmtpd::start();
        let dovecot = Dovecot::builder()
            .user(user, "secret")
            .submission(sink.port(), &server_ca)
            .external(&clients)
            .start();
        ExternalSubmission {
            dovecot,
            sink,
            server_ca,
            clients,
            cert,
        }
    }
}
