//! postline: an SMTP client that is correct to the RFCs, fast on the wire and hard to trick.
//!
//! The protocol lives in the sans-IO core, [`postline_proto`]; this crate drives it over real
//! connections: [`Client`] over blocking sockets, [`AsyncClient`] over tokio, both with rustls
//! for STARTTLS and implicit TLS, an authentication policy that never sends a password in clear
//! text unless told to, RFC 5321 timeouts for every phase, and per-recipient outcomes.
//!
//! ```no_run
//! use postline::{Client, Config, Envelope};
//! let mut client = Client::connect(Config::relay("smtp.example.com").credentials("me", "pw"))?;
//! let envelope = Envelope::new("me@example.com", ["you@example.org", "them@example.net"])?;
//! let outcome = client.send(&envelope, std::fs::File::open("message.eml")?)?;
//! for r in outcome.rejected() {
//!     eprintln!("{} refused: {:?}", r.address, r.reply);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "tokio")]
mod asynchronous;
mod auth;
pub mod binding;
mod blocking;
pub mod certificate;
mod config;
mod config_url;
mod connect;
pub mod date;
pub mod delivery;
#[cfg(feature = "tokio")]
mod direct;
#[cfg(feature = "dkim")]
pub mod dkim;
mod driver;
pub mod engine;
mod envelope;
mod error;
mod hello;
mod line_endings;
#[cfg(feature = "message")]
pub mod message;
mod outcome;
pub mod pool;
mod reply;
mod server;
mod tls;
pub mod tls_failure;
pub mod transport;
mod trust;

#[cfg(feature = "tokio")]
pub use asynchronous::AsyncClient;
pub use blocking::{BlockingStream, Client};
pub use certificate::{CertificateSummary, Fingerprint, Pin, PublicKeyPin};
pub use config::{Auth, Config, Direction, Timeouts, Tls, TranscriptSink};
pub use delivery::{Delivery, DeliveryStatus};
#[cfg(feature = "tokio")]
pub use direct::{Mailer, Route};
pub use engine::{Engine, Io};
pub use envelope::{BodyType, Envelope};
pub use error::{ConfigError, Error, Fault, Result};
#[cfg(feature = "message")]
pub use message::{Mailbox, Message, MessageBuilder, MessageError, Priority};
pub use outcome::{Outcome, Recipient};
#[cfg(feature = "tokio")]
pub use pool::AsyncPool;
pub use pool::{Pool, PoolOptions, PoolStats};
pub use reply::ServerReply;
pub use server::{parse_server, ServerError};
pub use tls::TlsInfo;
pub use tls_failure::TlsFailure;
#[cfg(feature = "tokio")]
pub use transport::AsyncTransport;
pub use transport::Transport;

pub use postline_proto as proto;
pub use postline_proto::command::{Notify, Ret};
pub use postline_proto::ehlo::{Capabilities, Extension, SizeLimit};
pub use postline_proto::negotiate::Refusal;
pub use postline_proto::session::{FailedAt, Phase, TxId};
pub use postline_proto::{EnhancedCode, Mechanism};
/// The TLS library postline uses, for callers that bring their own configuration.
pub use rustls;
