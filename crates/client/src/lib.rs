//! postline: an SMTP client that is correct to the RFCs, fast on the wire and hard to trick.
//!
//! Compose a message, hand it to a transport, and learn what happened to each recipient:
//!
//! ```no_run
//! use postline::{Config, DeliveryStatus, Message, Pool, Transport};
//!
//! let message = Message::builder()
//!     .from("Alice <alice@example.com>")
//!     .to("Bob <bob@example.org>")
//!     .subject("Hello")
//!     .text("Sent with postline.")
//!     .build()?;
//! // STARTTLS on 587 with a verified certificate, unless told otherwise.
//! let mailer = Pool::new(Config::relay("smtp.example.com").credentials("alice", "secret"))?;
//! for d in mailer.send_message(&message)? {
//!     if d.status != DeliveryStatus::Delivered {
//!         eprintln!("{}: {} ({})", d.address, d.status, d.detail());
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The layers, each usable alone:
//!
//! - [`message`] (feature `message`, default): [`Message::builder`] and
//!   [`Message::from_bytes`] make the RFC 5322 bytes and the [`Envelope`] (Bcc in the envelope
//!   only).
//! - [`transport`]: the [`Transport`] and `AsyncTransport` traits, answering one
//!   [`Delivery`] per recipient, implemented by [`Pool`] and `AsyncPool` (reused
//!   connections), `Mailer` (a relay, or direct delivery to each domain's exchangers),
//!   `dkim::Signing` (feature `dkim`), the queue's `Enqueue`, and the test transports
//!   [`transport::StubTransport`] and [`transport::FileTransport`].
//! - [`Client`] (blocking) and `AsyncClient` (tokio): one connection, with rustls for
//!   STARTTLS and implicit TLS, an authentication policy that never sends a password in clear
//!   text unless told to, RFC 5321 timeouts for every phase, and deep pipelining.
//! - [`Engine`]: the whole client policy without I/O, for a driver of your own; the protocol
//!   itself is [`postline_proto`] (`no_std`).
//!
//! Features: the default build has the blocking client, the blocking [`Pool`] and the
//! message builder, with neither tokio nor a DNS resolver; `tokio` adds `AsyncClient`,
//! `AsyncPool` and `Mailer`; `dkim` adds DKIM signing.
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
mod connection;
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
pub mod escape;
mod hello;
mod line_endings;
#[cfg(feature = "message")]
pub mod message;
mod outcome;
pub mod pool;
pub mod proxy;
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
pub use config::{Auth, Config, Direction, Protocol, StopAfter, Timeouts, Tls, TranscriptSink};
#[cfg(feature = "tokio")]
pub use connection::AsyncConnection;
pub use connection::Connection;
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
pub use proxy::{Proxy, ProxyFailure, Socks5Reply};
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
