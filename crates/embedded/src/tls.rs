//! STARTTLS and implicit TLS through `embedded-tls` (feature `tls`): TLS 1.3 without an
//! allocator, AES-128-GCM, a P-256 key share. The server's certificate is verified against
//! the CA the caller gives (its DER bytes) and the server name; going without verification
//! is a choice the caller spells out ([`Verify::InsecureNoVerification`]). What TLS needs is
//! the caller's: two record buffers (16,640 bytes each hold any record a server may send; a
//! server that honours a smaller fragment length needs less), a random number generator,
//! the server name. The session, the driver's buffers and the clock carry on across the
//! upgrade.
//!
//! Certificate validity dates are not checked: `embedded-tls` asks a static clock for the
//! time, and a device's clock is the caller's, injected.

use embassy_futures::select::{select, Either};
use embedded_io_async::{Read, Write};
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CertificateEntryRef, CertificateRef, CertificateVerifyRef,
    CryptoProvider, CryptoRngCore, NoClock, TlsCipherSuite, TlsConfig, TlsConnection, TlsContext,
    TlsError, TlsVerifier, UnsecureProvider,
};
use postline_proto::session::Phase;

use crate::client::Client;
use crate::clock::Clock;
use crate::error::{Error, TlsFailure};
use crate::transport::{tls_failure, Guarded, Transport};

/// Room for the server's certificate while its signature is checked.
const CERT_SIZE: usize = 4096;

/// The smallest record buffer [`Tls`] takes: 1,024 bytes, room for a record's overhead and
/// some data (embedded-tls asserts on less). 16,640 bytes hold any record a server may send;
/// a smaller read buffer needs a server that sends smaller records (else a TLS failure), a
/// smaller write buffer sends smaller records.
pub const MIN_RECORD_BUFFER: usize = 1024;

/// When TLS starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// STARTTLS after the first EHLO (RFC 3207, port 587 or 25); a server that does not offer
    /// it is [`Error::TlsUnavailable`], never a fall back to clear text.
    StartTls,
    /// TLS from the first byte (RFC 8314, port 465).
    Implicit,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy)]
pub enum Verify<'b> {
    /// The server's own certificate is signed by this CA (DER) and names the server (a DNS
    /// name in its subject alternative names or common name). Chains through intermediates
    /// are not followed: give the CA, or the intermediate, that signed the server's
    /// certificate.
    Ca(&'b [u8]),
    /// Not at all: anyone on the path can read and change the session, credentials
    /// included. For a test bench, never for a device in the field.
    InsecureNoVerification,
}

/// What TLS needs, lent for the client's life.
pub struct Tls<'b> {
    /// When TLS starts.
    pub mode: Mode,
    /// The server's name, sent in SNI and checked against its certificate.
    pub server_name: &'b str,
    /// How its certificate is checked.
    pub verify: Verify<'b>,
    /// Decrypted records are read into this (16,640 bytes hold any record).
    pub read_record: &'b mut [u8],
    /// Records are encrypted in this.
    pub write_record: &'b mut [u8],
    /// Randomness for the key share and nonces: a hardware or seeded CSPRNG.
    pub rng: &'b mut dyn CryptoRngCore,
}

/// The provider when a CA is given: the caller's randomness and a verifier of the server's
/// certificate and name.
struct Verifying<'a, 'b> {
    rng: &'a mut dyn CryptoRngCore,
    verifier: SignedByTheCa<'b>,
}

/// Checks that the server's own certificate (the first it sends) is signed by the given CA
/// and names the server, and nothing else: the verifier underneath follows a chain without
/// checking that each certificate in it may sign others, so a chain through an intermediate
/// would let any certificate the CA issued vouch for any name. Give the CA (or intermediate)
/// that signed the server's certificate.
struct SignedByTheCa<'b> {
    ca: &'b [u8],
    server_name: &'b str,
    /// Checks the whole chain as sent and keeps the server's certificate for the signature
    /// over the handshake.
    chain: CertVerifier<'b, Aes128GcmSha256, NoClock, CERT_SIZE>,
}

impl TlsVerifier<Aes128GcmSha256> for SignedByTheCa<'_> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        self.chain.set_hostname_verification(hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &<Aes128GcmSha256 as TlsCipherSuite>::Hash,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        // First the server's own certificate alone against the CA (and the name): a chain
        // through another certificate fails here.
        let leaf = match cert.entries.first() {
            Some(CertificateEntryRef::X509(der)) => CertificateEntryRef::X509(der),
            _ => return Err(TlsError::InvalidCertificate),
        };
        let mut only = CertificateRef::with_context(&[]);
        only.add(leaf)?;
        let mut direct: CertVerifier<'_, Aes128GcmSha256, NoClock, CERT_SIZE> =
            CertVerifier::new(Certificate::X509(self.ca));
        direct.set_hostname_verification(self.server_name)?;
        direct.verify_certificate(transcript, only)?;
        self.chain.verify_certificate(transcript, cert)
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        self.chain.verify_signature(verify)
    }
}

impl CryptoProvider for Verifying<'_, '_> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }
}

impl<'b, S: Read + Write, C: Clock> Client<'b, S, C> {
    /// Sets up TLS for [`Client::connect`]: STARTTLS after EHLO, or TLS from the first
    /// byte. With TLS in place, AUTH needs no `allow_plaintext_auth`.
    ///
    /// Once, before [`Client::connect`], with record buffers of at least
    /// [`MIN_RECORD_BUFFER`] bytes: otherwise [`Error::Use`], and the client (taken by value)
    /// is dropped with the error.
    pub fn tls(mut self, tls: Tls<'b>) -> Result<Self, Error<S::Error>> {
        self.engine.use_tls(&tls)?;
        self.tls = Some(tls);
        Ok(self)
    }

    /// The TLS handshake over the plain stream, by `deadline`. The plain stream is given up
    /// first: after a failed handshake nothing more can be sent.
    pub(crate) async fn handshake(&mut self, deadline: u64) -> Result<(), Error<S::Error>> {
        let tls = self.tls.take().ok_or(Error::Tls(TlsFailure::Unusable))?;
        let Transport::Plain(stream) = core::mem::replace(
            &mut self.transport,
            Transport::Gone(core::marker::PhantomData),
        ) else {
            return Err(Error::Tls(TlsFailure::Unusable));
        };
        let mut conn: TlsConnection<'b, Guarded<S>, Aes128GcmSha256> =
            TlsConnection::new(Guarded(stream), tls.read_record, tls.write_record);
        let opened = select(
            open(&mut conn, tls.server_name, tls.verify, tls.rng),
            self.clock.wait_until(deadline),
        )
        .await;
        match opened {
            Either::First(Ok(())) => {
                self.transport = Transport::Tls(conn);
                Ok(())
            }
            Either::First(Err(e)) => Err(tls_failure(e)),
            Either::Second(()) => Err(Error::Timeout(Phase::Command)),
        }
    }
}

/// The handshake on `conn`, the server's certificate checked as `verify` says; the one
/// copy, for the async client and the blocking one (which polls it).
pub(crate) async fn open<'b, S: Read + Write>(
    conn: &mut TlsConnection<'b, S, Aes128GcmSha256>,
    server_name: &'b str,
    verify: Verify<'b>,
    rng: &'b mut dyn CryptoRngCore,
) -> Result<(), TlsError> {
    let config = TlsConfig::new().with_server_name(server_name);
    match verify {
        Verify::Ca(ca) => {
            let provider = Verifying {
                rng,
                verifier: SignedByTheCa {
                    ca,
                    server_name,
                    chain: CertVerifier::new(Certificate::X509(ca)),
                },
            };
            conn.open(TlsContext::new(&config, provider)).await
        }
        Verify::InsecureNoVerification => {
            let provider = UnsecureProvider::new::<Aes128GcmSha256>(rng);
            conn.open(TlsContext::new(&config, provider)).await
        }
    }
}
