//! postline-queue: a durable outbound queue that never loses a message and sends it again
//! only when the protocol leaves no other choice.
//!
//! - [`Spool`]: the directory (crash-safe files, private permissions, per-message locks);
//! - [`Entry`]: a queued message's envelope, per-recipient state and [`Route`];
//! - [`Policy`]: retry schedule, lifetime, bounces, mail in doubt, free-space and size bounds;
//! - [`Runner`]: passes and the daemon loop over a [`Deliver`] implementation, recording
//!   each result as it arrives (group commit, before QUIT);
//! - [`Smtp`]: the [`Deliver`] implementation over postline's client, with connection reuse
//!   and deep pipelining;
//! - [`bounce`]: RFC 3464 delivery status notifications;
//! - [`Enqueue`]: the queue as a [`postline::Transport`], for code written against the trait.
//!
//! ```no_run
//! use postline_queue::{Destination, Policy, Route, Runner, Smtp, Spool};
//! use std::time::SystemTime;
//!
//! let spool = Spool::open("/var/tmp/my-queue")?;
//! let route = Route::relay("smtp.example.com:587");
//! spool.enqueue("me@example.com", &["you@example.org".into()], &route,
//!               b"Subject: hi\r\n\r\nhello\r\n", SystemTime::now())?;
//! let smtp = Smtp::new(|route: &Route| {
//!     let server = route.server.clone().ok_or("no server")?;
//!     let (host, port) = server.rsplit_once(':').unwrap_or((&server, "587"));
//!     let port = port.parse().map_err(|_| "bad port")?;
//!     Ok(Destination::Relay(postline::Config::relay(host).port(port).credentials("me", "pw")))
//! });
//! let mut runner = Runner::new(spool, Policy::default(), smtp);
//! // The observer runs while results are written: it must not panic (a closed stdout
//! // makes `println!` panic; write and ignore the error instead).
//! let report = runner.pass(SystemTime::now(), false, &|| false, &mut |id, d| {
//!     use std::io::Write;
//!     let _ = writeln!(std::io::stdout(), "{id} {} {}", d.address, d.status);
//! });
//! println!("{report:?}");
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod any;
pub mod bounce;
mod enqueue;
mod entry;
#[cfg(feature = "postgres")]
mod pg;
mod policy;
mod route;
mod runner;
mod smtp;
mod spool;
mod store;

pub use any::{AnyLock, AnyStore};
pub use enqueue::Enqueue;
pub use entry::{Dsn, DsnRet, Entry, NotifyOn, Recipient, RecipientStatus};
#[cfg(feature = "postgres")]
pub use pg::{Lease, PgStore, DEFAULT_LEASE, SCHEMA_VERSION};
pub use policy::{InDoubt, Policy};
pub use route::{Route, RouteError, RouteTls, Secret, MAX_TIMEOUT, ROUTE_VERSION};
pub use runner::{Deliver, Flow, Job, Observer, Record, RunReport, Runner};
pub use smtp::{Destination, Limiter, Resolve, SlotGuard, Smtp};
pub use spool::{unix_now, LoadError, Lock, Spool, DEFAULT_MAX_MESSAGE_SIZE};
pub use store::{is_lease_lost, LeaseLost, Store};

pub use postline::delivery::{Delivery, DeliveryStatus};
