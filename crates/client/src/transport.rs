//! One way to hand over a message, whatever carries it: the [`Transport`] trait (and
//! [`AsyncTransport`] with the `tokio` feature).
//!
//! Code that sends mail programs against the trait and is given a real transport in
//! production (a pool, [`crate::Mailer`] for a relay or direct delivery, the queue's
//! enqueue) and a test transport in its tests ([`StubTransport`] records what it was given;
//! [`FileTransport`] writes files or a Maildir). Every implementation answers in the same
//! vocabulary: one [`Delivery`] per recipient, in envelope order, saying whether it was
//! delivered, deferred, failed, is in doubt, or was not attempted.
//!
//! `Err` is kept for what makes the call itself meaningless (a transport that cannot be set
//! up at all); anything that happens to the message, down to a full disk or a dead server,
//! is a [`Delivery`], so a caller has one place to look.
//!
//! ```
//! use postline::transport::{StubTransport, Transport};
//! use postline::{DeliveryStatus, Envelope};
//!
//! /// Application code: generic over how mail leaves.
//! fn welcome(mail: &impl Transport, to: &str) -> Result<bool, postline::Error> {
//!     let envelope = Envelope::new("noreply@example.com", [to])?;
//!     let message = b"From: noreply@example.com\r\nSubject: Welcome\r\n\r\nHello!\r\n";
//!     let results = mail.send(&envelope, message)?;
//!     Ok(results.iter().all(|d| d.status == DeliveryStatus::Delivered))
//! }
//!
//! // In a test: nothing leaves the process, and what was sent can be read back.
//! let stub = StubTransport::new();
//! assert!(welcome(&stub, "new.user@example.org")?);
//! assert_eq!(stub.sent()[0].envelope.to().collect::<Vec<_>>(), ["new.user@example.org"]);
//!
//! // Chosen at run time: the trait is object-safe.
//! let mail: Box<dyn Transport + Send + Sync> = Box::new(stub.clone());
//! assert!(welcome(&mail, "second@example.org")?);
//! # Ok::<(), postline::Error>(())
//! ```

mod file;
mod stub;

use std::sync::Arc;

pub use file::FileTransport;
pub use stub::{Sent, StubTransport};

use crate::delivery::Delivery;
use crate::envelope::Envelope;
use crate::error::Error;

/// Something that takes a message for its recipients, from synchronous code.
///
/// `send` takes `&self` so that one transport can be shared by threads (behind an `Arc` or
/// a reference); implementations that hold connections keep them inside.
pub trait Transport {
    /// Hands `message` (the whole RFC 5322 message, headers and body) to the transport for
    /// every recipient of `envelope`. Returns one [`Delivery`] per recipient, in envelope
    /// order. `Err` only when the transport cannot work at all (for instance a resolver that
    /// cannot be set up); what happened to the message is always in the deliveries.
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error>;

    /// Sends a [`crate::Message`] (built with [`crate::Message::builder`] or read with
    /// [`crate::Message::from_bytes`]) to the recipients of its envelope, Bcc included.
    #[cfg(feature = "message")]
    fn send_message(&self, message: &crate::Message) -> Result<Vec<Delivery>, Error> {
        self.send(message.envelope(), message.as_bytes())
    }
}

/// Something that takes a message for its recipients, from async code (tokio).
///
/// The same contract as [`Transport`]: one [`Delivery`] per recipient, in envelope order.
/// The future is `Send`, so it can run on a multi-threaded runtime's tasks.
///
/// The trait returns `impl Future`, so it is used through generics (`impl AsyncTransport`,
/// `T: AsyncTransport`), not as `dyn AsyncTransport`; choose between transports at run time
/// with an enum of them. [`Transport`] is object-safe (`Box<dyn Transport + Send + Sync>`).
#[cfg(feature = "tokio")]
pub trait AsyncTransport {
    /// Hands `message` to the transport for every recipient of `envelope`; see
    /// [`Transport::send`].
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send;

    /// Sends a [`crate::Message`] to the recipients of its envelope, Bcc included; see
    /// [`Transport::send_message`].
    #[cfg(feature = "message")]
    fn send_message(
        &self,
        message: &crate::Message,
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        self.send(message.envelope(), message.as_bytes())
    }
}

impl<T: Transport + ?Sized> Transport for &T {
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        (**self).send(envelope, message)
    }
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        (**self).send(envelope, message)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        (**self).send(envelope, message)
    }
}

#[cfg(feature = "tokio")]
impl<T: AsyncTransport + Sync + ?Sized> AsyncTransport for &T {
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        (**self).send(envelope, message)
    }
}

#[cfg(feature = "tokio")]
impl<T: AsyncTransport + Send + Sync + ?Sized> AsyncTransport for Box<T> {
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        (**self).send(envelope, message)
    }
}

#[cfg(feature = "tokio")]
impl<T: AsyncTransport + Send + Sync + ?Sized> AsyncTransport for Arc<T> {
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        (**self).send(envelope, message)
    }
}

/// Runs a synchronous transport's [`Transport::send`] on tokio's blocking pool, for an
/// [`AsyncTransport`] implementation whose work blocks (a synced file write): the runtime's
/// threads go on with other tasks meanwhile. A panic in `send` is resumed in the caller.
#[cfg(feature = "tokio")]
pub fn send_on_blocking_pool<T: Transport + Clone + Send + 'static>(
    transport: &T,
    envelope: &Envelope,
    message: &[u8],
) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
    let transport = transport.clone();
    let envelope = envelope.clone();
    let message = message.to_vec();
    async move {
        let join = tokio::task::spawn_blocking(move || transport.send(&envelope, &message));
        match join.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Io(Arc::new(std::io::Error::other(e)))),
        }
    }
}

#[cfg(feature = "tokio")]
impl Transport for crate::Mailer {
    /// [`crate::Mailer::send_blocking`].
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        self.send_blocking(envelope, message)
    }
}

#[cfg(feature = "tokio")]
impl AsyncTransport for crate::Mailer {
    /// [`crate::Mailer::send`].
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        crate::Mailer::send(self, envelope, message)
    }
}
