//! postline on a device's TCP/IP stack: an SMTP client that allocates nothing, over any
//! stream implementing [`embedded_io_async`] `Read + Write` (an embassy-net or smoltcp socket,
//! an ESP stack, a test adapter), with buffers the caller owns and a clock the caller injects.
//!
//! The protocol and its policy are the core's ([`postline_proto`]): the session state machine
//! (greeting, EHLO with HELO fallback, AUTH, pipelined MAIL/RCPT/DATA, dot-stuffing), the AUTH
//! mechanism preference, the parameters a server's capabilities allow and the rule that ends a
//! session whose server answers before it was asked. This crate adds a small engine without
//! I/O (what each call does next, what a failure means for the message) and two loops that do
//! what it asks, the async [`Client`] and the blocking [`blocking::BlockingClient`]: each
//! read and write is bounded by a deadline from the RFC 5321 timers (or the caller's cap), and
//! a message whose end of data was written and never answered is reported *in doubt*, never as
//! sent or not sent.
//!
//! ```no_run
//! # async fn demo<S: embedded_io_async::Read + embedded_io_async::Write, C: postline_embedded::Clock>(
//! #     socket: S, clock: C) -> Result<(), postline_embedded::Error<S::Error>> {
//! use postline_embedded::{Address, Client, Config};
//! let mut out = [0u8; 512];
//! let mut input = [0u8; 512];
//! let config = Config::new("device.example").credentials("dev", "secret").allow_plaintext_auth(true);
//! let mut client = Client::new(socket, clock, config, &mut out, &mut input)?;
//! client.connect().await?;
//! let to = [Address::new("ops@example.com").unwrap()];
//! let mut codes = [0u16; 1];
//! let status = client
//!     .send(Address::new("dev@example.com").unwrap(), &to, b"Subject: hi\r\n\r\nup\r\n", &mut codes)
//!     .await?;
//! assert!(status.delivered);
//! client.quit().await
//! # }
//! ```
#![no_std]
#![forbid(unsafe_code)]

pub mod blocking;
mod client;
mod clock;
mod engine;
mod error;
pub mod mail;
mod reply;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;

pub use client::{Client, Config, Status};
pub use clock::Clock;
pub use error::{Error, TlsFailure};
pub use postline_proto as proto;
pub use postline_proto::command::Address;
pub use postline_proto::reply::Code;
pub use postline_proto::session::{FailedAt, Phase};
pub use reply::Reply;
