//! The connection under the session: the caller's stream, or (with the `tls` feature) TLS
//! over it once STARTTLS or implicit TLS has set it up. One value, so the session, the
//! buffers and the clock carry on across the upgrade.

use embedded_io_async::{Read, Write};

use postline_proto::session::Phase;

use crate::error::{Error, TlsFailure};

/// The stream as the driver uses it. The TLS state (about 1.3 KB besides the caller's record
/// buffers) sits inline: there is no allocator to box it, and before the upgrade the same
/// memory holds the plain stream.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transport<'b, S: Read + Write> {
    /// The caller's stream, in clear text.
    Plain(S),
    /// TLS 1.3 over the caller's stream.
    #[cfg(feature = "tls")]
    Tls(embedded_tls::TlsConnection<'b, Guarded<S>, embedded_tls::Aes128GcmSha256>),
    /// Given to a handshake that failed: nothing more can be sent. (Without TLS, never made:
    /// it only carries the buffers' lifetime.)
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Gone(core::marker::PhantomData<&'b ()>),
}

impl<'b, S: Read + Write> Transport<'b, S> {
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error<S::Error>> {
        match self {
            Transport::Plain(s) => s.read(buf).await.map_err(Error::Io),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => tls_io(t.read(buf).await),
            Transport::Gone(_) => Err(Error::Tls(TlsFailure::Unusable)),
        }
    }

    pub(crate) async fn write(&mut self, buf: &[u8]) -> Result<usize, Error<S::Error>> {
        match self {
            Transport::Plain(s) => s.write(buf).await.map_err(Error::Io),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => tls_io(t.write(buf).await),
            Transport::Gone(_) => Err(Error::Tls(TlsFailure::Unusable)),
        }
    }

    /// `phase`: what a close found here is reported in, as for a write.
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    pub(crate) async fn flush(&mut self, phase: Phase) -> Result<(), Error<S::Error>> {
        match self {
            Transport::Plain(s) => s.flush().await.map_err(Error::Io),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => tls_flushed(t.flush().await, phase),
            Transport::Gone(_) => Err(Error::Tls(TlsFailure::Unusable)),
        }
    }
}

/// The caller's stream as TLS uses it (the async client's, and the blocking twin's through
/// its polling adapter): a write that takes nothing of a non-empty buffer
/// (`Ok(0)`, which `embedded-io` asks streams not to return) is `WriteZero`, which
/// [`tls_io`] and [`tls_flushed`] turn into the close a write of 0 bytes is without TLS
/// (inside embedded-tls's `write_all` it was a panic). Errors reach TLS as their kind only,
/// which is all embedded-tls keeps of them.
#[cfg(feature = "tls")]
pub(crate) struct Guarded<S>(pub(crate) S);

#[cfg(feature = "tls")]
impl<S: embedded_io_async::ErrorType> embedded_io_async::ErrorType for Guarded<S> {
    type Error = embedded_io::ErrorKind;
}

#[cfg(feature = "tls")]
impl<S: Read> Read for Guarded<S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0
            .read(buf)
            .await
            .map_err(|e| embedded_io::Error::kind(&e))
    }
}

#[cfg(feature = "tls")]
impl<S: Write> Write for Guarded<S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        match self.0.write(buf).await {
            Ok(0) if !buf.is_empty() => Err(embedded_io::ErrorKind::WriteZero),
            r => r.map_err(|e| embedded_io::Error::kind(&e)),
        }
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.0
            .flush()
            .await
            .map_err(|e| embedded_io::Error::kind(&e))
    }
}

/// A read or write under TLS as the driver sees it: the peer's close_notify, the stream
/// closing under TLS, or the stream taking nothing of a write ([`Guarded`]), is a close (0
/// bytes), for the session to judge (after QUIT it is expected), as it is without TLS; any
/// other failure is [`tls_failure`].
#[cfg(feature = "tls")]
pub(crate) fn tls_io<E>(r: Result<usize, embedded_tls::TlsError>) -> Result<usize, Error<E>> {
    match r {
        Err(e) if closes(&e) => Ok(0),
        r => r.map_err(tls_failure),
    }
}

/// A flush under TLS (where a record goes out) as the driver sees it: a close, as in
/// [`tls_io`], is [`Error::Closed`] in `phase`, as a write of 0 bytes is without TLS.
#[cfg(feature = "tls")]
pub(crate) fn tls_flushed<E>(
    r: Result<(), embedded_tls::TlsError>,
    phase: Phase,
) -> Result<(), Error<E>> {
    match r {
        Err(e) if closes(&e) => Err(Error::Closed(phase)),
        r => r.map_err(tls_failure),
    }
}

/// Whether a TLS error is the connection ending: the peer's close_notify, the stream closed,
/// or the stream taking nothing of a write.
#[cfg(feature = "tls")]
fn closes(e: &embedded_tls::TlsError) -> bool {
    use embedded_tls::TlsError as T;
    matches!(
        e,
        T::ConnectionClosed | T::IoError | T::Io(embedded_io::ErrorKind::WriteZero)
    )
}

/// What a TLS error means for the caller.
#[cfg(feature = "tls")]
pub(crate) fn tls_failure<E>(e: embedded_tls::TlsError) -> Error<E> {
    use embedded_tls::TlsError as T;
    Error::Tls(match e {
        // The certificate, or what was configured to check it (a chain over the room for
        // it, a server name over 64 octets): the same again next time.
        T::InvalidCertificate
        | T::InvalidSignature
        | T::InvalidSignatureScheme
        | T::InvalidCertificateEntry
        | T::ParseError(_)
        | T::OutOfMemory
        | T::InsufficientSpace => TlsFailure::Certificate,
        _ if closes(&e) => TlsFailure::Closed,
        T::Io(_) => TlsFailure::Stream,
        _ => TlsFailure::Protocol,
    })
}
