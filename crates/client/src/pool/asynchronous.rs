//! [`AsyncPool`]: the pool for tokio tasks, over [`AsyncClient`]. Callers wait on a `Notify`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::policy::{Checkout, Inspect, Slots};
use super::{lock, Connection, Gate, PoolOptions, PoolStats, Shared};
use crate::asynchronous::AsyncClient;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::engine::Engine;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;

/// How long [`AsyncPool::close_idle`] waits for each server's answer to QUIT.
const QUIT_WAIT: Duration = Duration::from_secs(5);

impl Inspect for AsyncClient {
    fn engine(&self) -> &Engine {
        AsyncClient::engine(self)
    }
}

impl Connection for AsyncClient {
    async fn open(config: &Config) -> Result<Self, Error> {
        AsyncClient::connect(config.clone()).await
    }

    async fn transact(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Outcome, Error> {
        self.send_bytes(envelope, message).await
    }

    async fn close(self) {
        let _ = self.quit().await;
    }
}

/// Tasks wait for a free connection on a `Notify`, on tokio's clock (so tests on a paused
/// clock see idle timeouts in virtual time).
pub(crate) struct Tasks {
    freed: Notify,
}

impl<C: Inspect> Gate<C> for Tasks {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    async fn acquire(
        &self,
        slots: &Mutex<Slots<C>>,
        options: &PoolOptions,
        deadline: Option<Instant>,
        closing: &mut Vec<C>,
    ) -> Option<Checkout<C>> {
        loop {
            // Registered before looking, so a slot freed in between still wakes this task.
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            {
                let now = <Tasks as Gate<C>>::now(self);
                if let Some(c) = lock(slots).checkout(options, now, closing) {
                    return Some(c);
                }
            }
            match deadline {
                None => freed.await,
                Some(d) => {
                    let d = tokio::time::Instant::from_std(d);
                    // A wake-up lost to the timeout passes on to the next waiter (tokio's
                    // `Notified` forwards it when dropped).
                    if tokio::time::timeout_at(d, freed).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    fn wake_one(&self) {
        self.freed.notify_one();
    }
}

/// A pool of tokio SMTP connections to one server, shared by tasks.
///
/// Clone it into each task (clones share the connections); [`AsyncPool::send`] takes an
/// idle connection or opens one while fewer than [`PoolOptions::max_size`] are open, else
/// waits for one. The future is `Send`, so tasks on a multi-threaded runtime can hold it;
/// dropping it part-way frees the slot and closes that connection (its state is unknown).
/// See [the module documentation](crate::pool) for the reuse and retry rules.
///
/// ```no_run
/// use postline::{AsyncPool, Config, DeliveryStatus, Envelope, PoolOptions, Tls};
///
/// # async fn run() -> Result<(), postline::Error> {
/// let config = Config::relay("smtp.example.com")
///     .port(587)
///     .tls(Tls::StartTls)
///     .credentials("me", "secret");
/// let pool = AsyncPool::with_options(config, PoolOptions::new().max_size(4))?;
/// let mut tasks = Vec::new();
/// for i in 0..16 {
///     let pool = pool.clone();
///     tasks.push(tokio::spawn(async move {
///         let envelope = Envelope::new("me@example.com", [format!("user{i}@example.org")])?;
///         let message = format!("Subject: note {i}\r\n\r\nHello\r\n");
///         let deliveries = pool.send(&envelope, message.as_bytes()).await?;
///         Ok::<_, postline::Error>(
///             deliveries.iter().all(|d| d.status == DeliveryStatus::Delivered),
///         )
///     }));
/// }
/// for t in tasks {
///     println!("all delivered: {}", t.await.expect("task")?);
/// }
/// pool.close_idle().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncPool {
    shared: Arc<Shared<AsyncClient, Tasks>>,
}

super::pool_common!(
    AsyncPool,
    Tasks {
        freed: Notify::new(),
    }
);

impl AsyncPool {
    /// Sends `message` to every recipient of `envelope` on a pooled connection; one
    /// [`Delivery`] per recipient, in envelope order. Waits while every connection is busy
    /// (at most [`PoolOptions::wait_timeout`]); the send itself is bounded by the engine's
    /// timeouts. Every failure, a server that cannot be reached included, is a delivery
    /// status; `Err` is kept for the [`crate::AsyncTransport`] contract and is not returned
    /// today.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        Ok(self.shared.send(envelope, message).await)
    }

    /// Sends a [`crate::Message`] to the recipients of its envelope (Bcc included); the
    /// same as [`crate::AsyncTransport::send_message`], without importing the trait.
    #[cfg(feature = "message")]
    pub async fn send_message(&self, message: &crate::Message) -> Result<Vec<Delivery>, Error> {
        self.send(message.envelope(), message.as_bytes()).await
    }

    /// Closes every idle connection now: QUIT on each, at once, waiting at most 5 s for each
    /// answer. Call it before the runtime shuts down for a clean goodbye (dropping the pool
    /// says QUIT from spawned tasks, which a runtime that is shutting down may not run). The
    /// pool stays usable.
    pub async fn close_idle(&self) {
        let quits: Vec<_> = self
            .shared
            .drain_idle()
            .into_iter()
            .map(|c| tokio::spawn(tokio::time::timeout(QUIT_WAIT, c.quit())))
            .collect();
        for q in quits {
            let _ = q.await;
        }
    }
}

impl crate::transport::AsyncTransport for AsyncPool {
    /// [`AsyncPool::send`].
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        AsyncPool::send(self, envelope, message)
    }
}
