//! Connection pools: many callers share a few connections to one server.
//!
//! Opening an SMTP session costs a TCP handshake, the greeting, EHLO, often a TLS handshake
//! and AUTH: several round trips and some CPU, before the first message. A program that sends
//! from many threads or tasks wants those sessions opened once and reused. [`Pool`] (blocking,
//! over [`crate::Client`], in the default build) and [`AsyncPool`] (tokio, over
//! [`crate::AsyncClient`]) keep up to [`PoolOptions::max_size`] connections to the server one
//! [`Config`] names and hand each message to a free one.
//!
//! # One pool, one server and one set of credentials
//!
//! A pool is made from one [`Config`]: host, port, TLS, credentials. Every connection in it
//! is to that server as that user, so a connection is never reused for another account. To
//! send to several servers or as several users, keep one pool for each (for instance in a
//! `HashMap` keyed by whatever names the account in your program); pools are cheap to clone
//! and share. The TLS configuration is built once, when the pool is made, and shared by every
//! connection (a bad CA file is reported there, not on the first message).
//!
//! # What the pool promises
//!
//! - **No probe round trip before reuse.** Some pools send NOOP before reusing a connection;
//!   that costs a round trip per message and still hands out connections that die between
//!   the NOOP and the message. Here the client itself reads, without waiting, whatever the
//!   server sent while the connection was idle before it writes anything (a close, a reset,
//!   a 421): it costs no round trip.
//! - **A connection the server closed while it sat idle never costs a message.** When a send
//!   on a reused connection fails before the server answered anything of that message (the
//!   connection was closed or reset before MAIL was answered, or the first reply was a 421),
//!   the message is sent once more, on a freshly opened connection. This cannot deliver it
//!   twice: the client certifies that the end of data never reached the server (with DATA,
//!   data waits for the 354, which a first reply of 421 or none at all is not; with BDAT, a
//!   chunk on the wire makes the message *in doubt*, which is never retried). The retry
//!   happens at most once, and never after a timeout, a refusal, a TLS failure, or any
//!   failure on a fresh connection: those are the server's answer and reach the caller.
//! - **A connection in an unknown state is never reused.** After a message in doubt (the
//!   end of data was sent and no final reply came), a timeout, a lost connection, a protocol
//!   error, or a send whose future was dropped part-way, the connection is closed, not put
//!   back. A message the server refused (a 4xx or 5xx reply) leaves the session in step
//!   (RSET) and the connection is reused.
//! - **Idle connections expire.** A connection idle for [`PoolOptions::idle_timeout`] is
//!   closed with QUIT instead of being reused (the check is made whenever a caller takes or
//!   gives back a connection; [`Pool::close_idle`] closes them all on demand). Keep the idle
//!   timeout below the server's (Postfix's smtpd waits 300 s): a server that closes first
//!   costs a wasted connect, never a message.
//! - **Every wait is bounded.** A caller waits for a free connection while all
//!   [`PoolOptions::max_size`] are in use. Each send on a connection is bounded by the
//!   engine's RFC 5321 timers ([`crate::Timeouts`]; [`crate::Timeouts::attempt`] caps a
//!   whole message), so a hung server frees its connection with a timeout and the next
//!   caller gets the slot; [`PoolOptions::wait_timeout`] bounds the wait itself, after which
//!   the message is reported [`DeliveryStatus::NotAttempted`](crate::DeliveryStatus).
//! - **Failures are deliveries.** A server that cannot be reached gives every recipient
//!   [`DeliveryStatus::Deferred`](crate::DeliveryStatus) with the reason; nothing panics.
//! - **Dropping the pool says QUIT** on each idle connection (the async pool does it from
//!   spawned tasks when dropped inside a tokio runtime; [`AsyncPool::close_idle`] waits for
//!   it). Connections in use close when their send finishes.

#[cfg(feature = "tokio")]
mod asynchronous;
mod blocking;
mod policy;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
pub use asynchronous::AsyncPool;
pub use blocking::Pool;

use crate::config::Config;
use crate::delivery::{Delivery, DeliveryStatus};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;
use policy::{Checkout, Inspect, Slots};

/// The size and timing rules of a pool: how many connections, how long one may sit idle,
/// how many messages it carries, how long a caller waits for one.
///
/// ```
/// use std::time::Duration;
/// let options = postline::PoolOptions::new()
///     .max_size(8)
///     .idle_timeout(Duration::from_secs(30))
///     .max_messages_per_connection(Some(1000));
/// assert_eq!(options.get_max_size(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    max_size: usize,
    idle_timeout: Duration,
    max_messages_per_connection: Option<u32>,
    wait_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 4,
            idle_timeout: Duration::from_secs(60),
            max_messages_per_connection: None,
            wait_timeout: None,
        }
    }
}

impl PoolOptions {
    /// The defaults: at most 4 connections, closed after 60 s idle, any number of messages
    /// each, callers wait for a connection as long as sends take.
    pub fn new() -> Self {
        PoolOptions::default()
    }

    /// At most `n` connections open at once (at least 1; default 4). Servers limit
    /// connections per client (Postfix: `smtpd_client_connection_count_limit`, 50), and a
    /// few pipelined connections already keep a relay busy; more callers than connections
    /// simply wait their turn.
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n.max(1);
        self
    }

    /// A connection idle this long is closed (QUIT) rather than reused (default 60 s). Keep
    /// it below the server's own idle limit (RFC 5321 4.5.3.2 asks servers to wait at least
    /// 5 minutes; Postfix's smtpd waits 300 s).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// After this many messages a connection is closed (QUIT) and the next caller opens a
    /// fresh one (default: no limit). Some servers limit messages per session, and a new
    /// session spreads load behind a load balancer.
    pub fn max_messages_per_connection(mut self, n: Option<u32>) -> Self {
        self.max_messages_per_connection = n.map(|n| n.max(1));
        self
    }

    /// How long a caller waits for a free connection while all are in use, before its
    /// message is reported [`DeliveryStatus::NotAttempted`] (default: no bound of its own;
    /// each send ahead of it is bounded by the engine's timeouts).
    pub fn wait_timeout(mut self, d: Option<Duration>) -> Self {
        self.wait_timeout = d;
        self
    }

    /// The most connections open at once.
    pub fn get_max_size(&self) -> usize {
        self.max_size
    }

    /// How long a connection may sit idle and still be reused.
    pub fn get_idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

/// A snapshot of a pool, for monitoring and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections open and waiting for a message.
    pub idle: usize,
    /// Connections carrying a message now (or being opened).
    pub in_use: usize,
    /// Connections opened since the pool was made (attempts, failed ones included).
    pub opened: u64,
    /// Messages sent again on a fresh connection because the reused one was found dead.
    pub retried: u64,
}

/// What the pool needs of a client: open one, send a message on it.
pub(crate) trait Connection: Inspect + Sized {
    /// Connects and sets the session up as `config` says.
    async fn open(config: &Config) -> Result<Self, Error>;
    /// Sends one message held in memory.
    async fn transact(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Outcome, Error>;
    /// Says QUIT (bounded by the engine's QUIT timeout) and closes.
    async fn close(self);
}

/// Closes every connection in `closing`, waiting for each: until they are closed they still
/// count at the server, so none may outlive the slot it came from while another opens.
async fn close_all<C: Connection>(closing: &mut Vec<C>) {
    for conn in closing.drain(..) {
        conn.close().await;
    }
}

/// How a caller waits for a free connection: a `Condvar` in the blocking pool, a tokio
/// `Notify` in the async one. Nothing else differs between them.
pub(crate) trait Gate<C> {
    /// The clock the pool measures idle time and waits on.
    fn now(&self) -> Instant;
    /// A connection or a slot from `slots`, waiting while every slot is in use; `None` when
    /// `deadline` passes first. Connections found expired go to `closing`.
    async fn acquire(
        &self,
        slots: &Mutex<Slots<C>>,
        options: &PoolOptions,
        deadline: Option<Instant>,
        closing: &mut Vec<C>,
    ) -> Option<Checkout<C>>;
    /// A slot was freed: one waiting caller may go on.
    fn wake_one(&self);
}

/// The parts of [`Pool`] and [`AsyncPool`] that do not depend on how callers wait: making
/// one, `Debug`, and the getters. Each pool type is `struct $pool { shared: Arc<Shared<..>> }`.
macro_rules! pool_common {
    ($pool:ident, $gate:expr) => {
        impl std::fmt::Debug for $pool {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.shared.describe(stringify!($pool), f)
            }
        }

        impl $pool {
            /// A pool with the default [`PoolOptions`] for the server `config` names. Builds
            /// the TLS configuration now (an unreadable CA file fails here); connects lazily,
            /// on the first message.
            pub fn new(config: Config) -> Result<$pool, Error> {
                $pool::with_options(config, PoolOptions::default())
            }

            /// A pool with these limits; see the `new` function.
            pub fn with_options(config: Config, options: PoolOptions) -> Result<$pool, Error> {
                Ok($pool {
                    shared: std::sync::Arc::new(Shared::new(config, options, $gate)?),
                })
            }

            /// How many connections are idle and in use, how many were opened so far, and
            /// how many messages were sent again after a reused connection was found dead.
            pub fn stats(&self) -> PoolStats {
                self.shared.stats()
            }

            /// The limits this pool applies.
            pub fn options(&self) -> PoolOptions {
                self.shared.options
            }
        }
    };
}
use pool_common;

/// Locks the slots. The lock is never held across a send, so a panic cannot leave them
/// half-changed; a poisoned lock is taken as it is.
fn lock<C>(slots: &Mutex<Slots<C>>) -> MutexGuard<'_, Slots<C>> {
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What both pools share: the configuration, the rules, the slots and the gate.
pub(crate) struct Shared<C, G> {
    config: Config,
    options: PoolOptions,
    slots: Mutex<Slots<C>>,
    gate: G,
}

impl<C: Connection, G: Gate<C>> Shared<C, G> {
    fn new(config: Config, options: PoolOptions, gate: G) -> Result<Self, Error> {
        Ok(Shared {
            config: config.prepare_tls()?,
            options,
            slots: Mutex::new(Slots::default()),
            gate,
        })
    }

    /// One message through the pool: a connection (reused, or opened in a free slot), the
    /// send, the retry rule, and the connection back to the idle list or closed.
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> Vec<Delivery> {
        // Connections to close once this caller's message is done, outside the lock.
        let mut closing = Vec::new();
        let deadline = self
            .options
            .wait_timeout
            .and_then(|d| self.gate.now().checked_add(d));
        let acquired = self
            .gate
            .acquire(&self.slots, &self.options, deadline, &mut closing)
            .await;
        // Expired connections are closed before this caller may open one in their place,
        // so the server never sees more than `max_size` at once.
        close_all(&mut closing).await;
        let Some(checkout) = acquired else {
            return self.not_attempted(envelope);
        };
        let mut lease = Lease {
            shared: self,
            conn: None,
            messages: 0,
        };
        let mut reused = false;
        if let Checkout::Reuse(idle) = checkout {
            lease.conn = Some(idle.conn);
            lease.messages = idle.messages;
            reused = true;
        }
        let result = loop {
            let conn = match &mut lease.conn {
                Some(conn) => conn,
                None => match C::open(&self.config).await {
                    Ok(conn) => {
                        lease.messages = 0;
                        lease.conn.insert(conn)
                    }
                    Err(e) => break Err(e),
                },
            };
            let result = conn.transact(envelope, message).await;
            lease.messages += 1;
            if reused && policy::stale(&result, conn.engine().replies_since_idle()) {
                // Dead on arrival; nothing of this message reached the server. Once more,
                // on a fresh connection in the same slot.
                tracing::debug!(
                    "pooled connection was closed by the server; sending again on a new one"
                );
                // Already closed by the server: dropping it sends nothing and waits for
                // nothing, and it is gone before the fresh one opens.
                drop(lease.conn.take());
                lock(&self.slots).reopen();
                reused = false;
                continue;
            }
            break result;
        };
        lease.give_back(&result, &mut closing);
        close_all(&mut closing).await;
        Delivery::from_result(&result, envelope)
            .into_iter()
            .map(|d| d.at_host(&self.config.host))
            .collect()
    }

    fn not_attempted(&self, envelope: &Envelope) -> Vec<Delivery> {
        let reason = format!(
            "no pooled connection to {} became free within {:?}",
            self.config.host,
            self.options.wait_timeout.unwrap_or_default()
        );
        envelope
            .to()
            .map(|a| {
                Delivery::new(a, DeliveryStatus::NotAttempted, None, reason.as_str())
                    .at_host(&self.config.host)
            })
            .collect()
    }

    /// Takes every idle connection out, for closing.
    fn drain_idle(&self) -> Vec<C> {
        lock(&self.slots).drain_idle()
    }

    fn stats(&self) -> PoolStats {
        lock(&self.slots).stats()
    }

    /// `Debug` for both pools: the configuration (secrets redacted by its own `Debug`), the
    /// limits and the current counts.
    fn describe(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("config", &self.config)
            .field("options", &self.options)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A slot checked out by one caller. Given back with [`Lease::give_back`]; dropped without
/// that (the caller's future was dropped mid-send, or a panic), the slot is freed and the
/// connection closed without QUIT, since its session state is unknown.
struct Lease<'a, C: Connection, G: Gate<C>> {
    shared: &'a Shared<C, G>,
    conn: Option<C>,
    messages: u32,
}

impl<C: Connection, G: Gate<C>> Lease<'_, C, G> {
    fn give_back(mut self, result: &Result<Outcome, Error>, closing: &mut Vec<C>) {
        let shared = self.shared;
        let now = shared.gate.now();
        {
            let mut slots = lock(&shared.slots);
            match self.conn.take() {
                Some(conn) => {
                    let keep = policy::reusable(result, conn.engine());
                    slots.checkin(conn, self.messages, keep, &shared.options, now, closing);
                }
                None => slots.release(),
            }
        }
        shared.gate.wake_one();
        std::mem::forget(self);
    }
}

impl<C: Connection, G: Gate<C>> Drop for Lease<'_, C, G> {
    fn drop(&mut self) {
        let conn = self.conn.take();
        lock(&self.shared.slots).release();
        self.shared.gate.wake_one();
        drop(conn);
    }
}
