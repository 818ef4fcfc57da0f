//! [`Enqueue`]: the queue as a [`Transport`]: a message handed to it is stored in the spool
//! for the runner to deliver.

use std::io;
use std::time::SystemTime;

use postline::transport::{AsyncTransport, Transport};
use postline::{Delivery, DeliveryStatus, Envelope, Error};

use crate::route::Route;
use crate::spool::Spool;

/// Puts messages into a [`Spool`] along a [`Route`], for code written against postline's
/// [`Transport`] trait: the same program can send straight through a pool in one deployment
/// and through the durable queue in another.
///
/// What the deliveries mean here, by the one vocabulary:
/// - **delivered**, with the reason `queued as ID`: the spool holds the message durably (on
///   disk and synced), and the queue took responsibility for it, as a relay does when it
///   answers `250 queued as ...`. What becomes of it later is the runner's (retries, and a
///   bounce to the sender if it fails);
/// - **failed**: the message is larger than the spool takes, or its envelope asks for what
///   the queue would not keep (an explicit body type, REQUIRETLS on a route without it):
///   storing it again cannot help, and sending it with less is not done;
///
/// DSN parameters (RET, ENVID, NOTIFY, ORCPT) are kept with the entry ([`crate::Dsn`]) and
/// sent on every attempt to a server that offers DSN.
/// - **deferred**: it could not be stored (a full disk, no permission): nothing was kept,
///   and the caller still holds the only copy.
///
/// ```no_run
/// use postline::transport::Transport;
/// use postline_queue::{Enqueue, Route, Spool};
///
/// let queue = Enqueue::new(Spool::open("/var/tmp/my-queue")?, Route::relay("smtp.example.com:587"));
/// let envelope = postline::Envelope::new("me@example.com", ["you@example.org"])?;
/// for d in queue.send(&envelope, b"Subject: hi\r\n\r\nhello\r\n")? {
///     println!("{}: {} ({})", d.address, d.status, d.reason);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Enqueue {
    spool: Spool,
    route: Route,
}

impl Enqueue {
    /// Stores messages in `spool`, to be sent along `route`.
    pub fn new(spool: Spool, route: Route) -> Self {
        Enqueue { spool, route }
    }

    /// The spool written to.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// What the envelope asks for that the queue would not keep, in words. A spool entry
    /// holds the sender, recipients and DSN parameters; the runner sends with the route's
    /// settings. So an explicit body type would be lost, and REQUIRETLS is kept only by a
    /// route that carries it ([`Route::require_tls`], which the runner's resolver turns into
    /// `Config::require_tls`): a message is refused rather than sent with less than asked.
    fn unkept(&self, envelope: &Envelope) -> Option<String> {
        if envelope.requires_tls() && !self.route.require_tls {
            return Some(
                "not queued: the message asks for REQUIRETLS and the queue's route does not carry it (make the Enqueue with a route whose require_tls is set)".into(),
            );
        }
        if envelope.body_type() != postline::BodyType::Auto {
            return Some(
                "not queued: the queue does not keep an explicit body type (it sends with BODY chosen from the message)".into(),
            );
        }
        None
    }
}

impl Transport for Enqueue {
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        if let Some(reason) = self.unkept(envelope) {
            return Ok(envelope
                .to()
                .map(|a| Delivery::new(a, DeliveryStatus::Failed, None, reason.as_str()))
                .collect());
        }
        let recipients: Vec<String> = envelope.to().map(str::to_string).collect();
        let mut entry = self.spool.new_entry(
            envelope.from(),
            &recipients,
            &self.route,
            message,
            SystemTime::now(),
        );
        entry.dsn = crate::entry::Dsn::of(envelope);
        let stored = self.spool.enqueue_entry(entry, message);
        let (status, reason) = match stored {
            Ok(id) => (DeliveryStatus::Delivered, format!("queued as {id}")),
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                (DeliveryStatus::Failed, format!("not queued: {e}"))
            }
            Err(e) => (
                DeliveryStatus::Deferred,
                format!("not queued: {}: {e}", self.spool.dir().display()),
            ),
        };
        Ok(recipients
            .iter()
            .map(|a| Delivery::new(a.as_str(), status, None, reason.as_str()))
            .collect())
    }
}

impl AsyncTransport for Enqueue {
    /// Stores on tokio's blocking pool: a synced write must not stall the runtime.
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        postline::transport::send_on_blocking_pool(self, envelope, message)
    }
}
