//! postline-proto: the SMTP client protocol as a pure state machine.
//!
//! No sockets, no clock, no allocation on the hot path. A driver (std blocking, tokio, an
//! embedded TCP stack) feeds the bytes the server sent to [`Session::handle_input`], writes out
//! what the session put in its [`Outbox`], and reacts to the [`Event`]s it gets back. The same
//! core therefore runs over any transport and is tested with plain byte strings.
//!
//! Modules, one concept each:
//! - [`reply`]: incremental reply parser with enhanced status codes and hard limits.
//! - [`ehlo`]: the capability set from an EHLO reply.
//! - [`command`]: validated addresses and parameters, and command encoding.
//! - [`sasl`]: SCRAM-SHA-256(-PLUS), PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER and
//!   EXTERNAL exchanges.
//! - [`data`]: the DATA transparency encoder and BDAT framing.
//! - [`negotiate`](mod@negotiate): MAIL and RCPT parameters decided against the server's capabilities.
//! - [`session`]: the whole session: greeting, EHLO, STARTTLS, AUTH, pipelined transactions.
//! - [`buf`]: the caller-owned output storage everything writes into.
//! - [`outbox`]: released and held-back output, so commands wait for their turn without the
//!   session storing an envelope.
//!
//! # Size
//!
//! `size_of::<Session>()` is 576 bytes on x86_64 with `alloc` alone, 640 with the default
//! features (255 of them hold the EHLO name); it holds no envelope, no message data and no credential. Buffers are the caller's:
//! a [`FixedBuf`] over a static slice is enough on a microcontroller.
//!
//! # Cargo features
//!
//! All on by default; a device build takes only what it names (`Cargo.toml` says what each
//! costs):
//! - `alloc`: owned strings and vectors (unknown EHLO keywords, `Vec<u8>` as a buffer).
//! - `fast`: vectorised scans of message data and replies (memchr), memcpy into a `FixedBuf`.
//! - `cram-md5`, `scram`, `oauth`: those SASL mechanisms.
//! - `chunking`: BDAT (RFC 3030).
//! - `lmtp`: LMTP (RFC 2033): `SessionConfig::lmtp`, LHLO, and one reply per accepted
//!   recipient after the data (`Event::LmtpResult`, `TxOutcome::PerRecipient`).
//! - `checks`: envelope checks without a message: `Session::check_envelope`,
//!   `Event::SenderResult`, `TxOutcome::Checked`.
//! - `dsn`: the DSN parameters of RFC 3461 (RET, ENVID, NOTIFY, ORCPT) in
//!   [`MessageOptions`], [`MailParams`] and [`RcptParams`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod buf;
pub mod command;
pub mod data;
pub mod date;
pub mod ehlo;
pub mod negotiate;
pub mod outbox;
pub mod reply;
pub mod sasl;
pub mod session;
#[cfg(feature = "alloc")]
pub mod testing;

pub use buf::{Buffer, BufferFull, FixedBuf};
pub use command::{Address, AddressError, Domain, Envelope, MailParams, RcptParams, ReversePath};
pub use data::DataEncoder;
pub use ehlo::{Capabilities, Extension, SizeLimit};
pub use negotiate::{negotiate, BodyType, MessageOptions, Negotiated, Refusal};
pub use outbox::Outbox;
pub use reply::{Code, EnhancedCode, Reply, ReplyError, ReplyParser};
pub use sasl::{Credentials, Mechanism};
pub use session::{
    Event, FailedAt, InlineName, Phase, Session, SessionConfig, SessionError, TxId, TxOutcome,
    UseError,
};
