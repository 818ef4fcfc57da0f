//! [`Pool`]: the pool for threads, over the blocking [`Client`]. Callers wait on a `Condvar`.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use super::policy::{Checkout, Inspect, Slots};
use super::{lock, Connection, Gate, PoolOptions, PoolStats, Shared};
use crate::blocking::Client;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::driver::block_on;
use crate::engine::Engine;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;

impl Inspect for Client {
    fn engine(&self) -> &Engine {
        Client::engine(self)
    }
}

impl Connection for Client {
    async fn open(config: &Config) -> Result<Self, Error> {
        Client::connect(config.clone())
    }

    async fn transact(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Outcome, Error> {
        self.send_bytes(envelope, message)
    }

    async fn close(self) {
        let _ = self.quit();
    }
}

/// Threads wait for a free connection on a condition variable.
pub(crate) struct Threads {
    freed: Condvar,
}

impl<C: Inspect> Gate<C> for Threads {
    fn now(&self) -> Instant {
        Instant::now()
    }

    async fn acquire(
        &self,
        slots: &Mutex<Slots<C>>,
        options: &PoolOptions,
        deadline: Option<Instant>,
        closing: &mut Vec<C>,
    ) -> Option<Checkout<C>> {
        let mut guard = lock(slots);
        loop {
            if let Some(c) = guard.checkout(options, Instant::now(), closing) {
                return Some(c);
            }
            guard = match deadline {
                None => self
                    .freed
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // A wake-up this thread may have taken goes to the next waiter.
                        self.freed.notify_one();
                        return None;
                    }
                    self.freed
                        .wait_timeout(guard, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    fn wake_one(&self) {
        self.freed.notify_one();
    }
}

/// A pool of blocking SMTP connections to one server, shared by threads.
///
/// Clone it into each thread (clones share the connections); [`Pool::send`] takes an idle
/// connection or opens one while fewer than [`PoolOptions::max_size`] are open, else waits
/// for one. See [the module documentation](crate::pool) for the reuse and retry rules.
/// Works in the default build (no tokio).
///
/// ```no_run
/// use postline::{Config, DeliveryStatus, Envelope, Pool, PoolOptions, Tls};
///
/// let config = Config::relay("smtp.example.com")
///     .port(587)
///     .tls(Tls::StartTls)
///     .credentials("me", "secret");
/// let pool = Pool::with_options(config, PoolOptions::new().max_size(4))?;
/// let threads: Vec<_> = (0..16)
///     .map(|i| {
///         let pool = pool.clone();
///         std::thread::spawn(move || -> Result<usize, postline::Error> {
///             let envelope = Envelope::new("me@example.com", [format!("user{i}@example.org")])?;
///             let message = format!("Subject: note {i}\r\n\r\nHello\r\n");
///             let deliveries = pool.send(&envelope, message.as_bytes())?;
///             Ok(deliveries
///                 .iter()
///                 .filter(|d| d.status == DeliveryStatus::Delivered)
///                 .count())
///         })
///     })
///     .collect();
/// for t in threads {
///     println!("delivered: {}", t.join().unwrap()?);
/// }
/// # Ok::<(), postline::Error>(())
/// ```
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared<Client, Threads>>,
}

super::pool_common!(
    Pool,
    Threads {
        freed: Condvar::new(),
    }
);

impl Pool {
    /// Sends `message` to every recipient of `envelope` on a pooled connection; one
    /// [`Delivery`] per recipient, in envelope order. Blocks while every connection is busy
    /// (at most [`PoolOptions::wait_timeout`]), then for the send itself (bounded by the
    /// engine's timeouts). Every failure, a server that cannot be reached included, is a
    /// delivery status; `Err` is kept for the [`crate::Transport`] contract and is not
    /// returned today.
    pub fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        Ok(block_on(self.shared.send(envelope, message)))
    }

    /// Sends a [`crate::Message`] to the recipients of its envelope (Bcc included); the
    /// same as [`crate::Transport::send_message`], without importing the trait.
    #[cfg(feature = "message")]
    pub fn send_message(&self, message: &crate::Message) -> Result<Vec<Delivery>, Error> {
        self.send(message.envelope(), message.as_bytes())
    }

    /// Closes every idle connection now, saying QUIT (each waits at most 5 s for the
    /// server's answer). The pool stays usable: the next message opens a new connection.
    pub fn close_idle(&self) {
        drop(self.shared.drain_idle());
    }
}

impl crate::transport::Transport for Pool {
    /// [`Pool::send`].
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        Pool::send(self, envelope, message)
    }
}
