//! A scripted-peer harness: drive a [`Session`] with byte strings, no socket involved.
//!
//! Tests play the server: they feed what it says with [`Talk::server`] (whole, or one byte at
//! a time to prove the session copes with any split) and check what the client wrote with
//! [`Talk::expect_client`]. Events are recorded as short strings so a test reads like a
//! transcript. Drivers in other crates reuse it to test their own policies.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::reply::Reply;
use crate::session::{Event, Outbox, Session, SessionConfig, SessionError, TxOutcome};

/// A session, its outbox, and the server's unconsumed bytes.
#[derive(Debug)]
pub struct Talk {
    /// The session under test.
    pub session: Session,
    /// Its output.
    pub out: Outbox<Vec<u8>>,
    input: Vec<u8>,
    events: Vec<String>,
    /// Feed server bytes one at a time.
    pub byte_at_a_time: bool,
}

impl Talk {
    /// A new session with `config`.
    pub fn new(config: SessionConfig) -> Self {
        Talk {
            session: Session::new(config),
            out: Outbox::new(Vec::new()),
            input: Vec::new(),
            events: Vec::new(),
            byte_at_a_time: false,
        }
    }

    /// The server sends `bytes`; every complete reply is handled and its event recorded.
    pub fn server(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        if self.byte_at_a_time {
            for b in bytes {
                self.feed(core::slice::from_ref(b))?;
            }
            Ok(())
        } else {
            self.feed(bytes)
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.input.extend_from_slice(bytes);
        let mut pos = 0;
        // Bounded: every turn consumes input or yields an event, and events without input
        // come at most one per reply.
        for _ in 0..self.input.len() * 2 + 8 {
            let (n, ev) = self
                .session
                .handle_input(&self.input[pos..], &mut self.out)?;
            pos += n;
            match ev {
                Some(Event::StartTls) => {
                    self.events.push("StartTls".to_string());
                    pos = self.input.len();
                    // The harness has no TLS: the handshake "succeeds" at once.
                    self.session
                        .tls_established(&mut self.out)
                        .expect("tls_established");
                }
                Some(ev) => self.events.push(describe(&ev)),
                None if n == 0 => break,
                None => {}
            }
        }
        self.input.drain(..pos);
        Ok(())
    }

    /// Everything the client has released, drained.
    pub fn client(&mut self) -> Vec<u8> {
        let bytes = self.out.transmit().to_vec();
        self.out.advance(bytes.len());
        bytes
    }

    /// Asserts the client wrote exactly `want` since the last check.
    #[track_caller]
    pub fn expect_client(&mut self, want: &[u8]) {
        let got = self.client();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "client output differs"
        );
    }

    /// Events recorded since the last call.
    pub fn events(&mut self) -> Vec<String> {
        core::mem::take(&mut self.events)
    }

    /// Asserts the events since the last call.
    #[track_caller]
    pub fn expect_events(&mut self, want: &[&str]) {
        let got = self.events();
        assert_eq!(got, want, "events differ");
    }

    /// Bytes received but not yet a complete reply.
    pub fn unconsumed(&self) -> &[u8] {
        &self.input
    }
}

fn code(r: &Reply<'_>) -> u16 {
    r.code().value()
}

/// A one-line description of an event, for transcript-style assertions.
pub fn describe(ev: &Event<'_>) -> String {
    match ev {
        Event::Ready => "Ready".to_string(),
        Event::Rejected(r) => format!("Rejected {}", code(r)),
        Event::ServiceClosing(r) => format!("ServiceClosing {}", code(r)),
        Event::StartTls => "StartTls".to_string(),
        Event::StartTlsRefused(r) => format!("StartTlsRefused {}", code(r)),
        Event::AuthChallenge(c) => format!("AuthChallenge {}", String::from_utf8_lossy(c)),
        Event::Authenticated => "Authenticated".to_string(),
        Event::AuthFailed(r) => format!("AuthFailed {}", code(r)),
        Event::AuthServerUnverified(r) => format!("AuthServerUnverified {}", code(r)),
        Event::RecipientResult { tx, index, reply } => {
            format!("Rcpt tx{} #{} {}", tx.0, index, code(reply))
        }
        #[cfg(feature = "checks")]
        Event::SenderResult { tx, reply } => format!("Mail tx{} {}", tx.0, code(reply)),
        #[cfg(feature = "lmtp")]
        Event::LmtpResult {
            tx,
            accepted_index,
            reply,
        } => format!("Lmtp tx{} #{} {}", tx.0, accepted_index, code(reply)),
        Event::SendData(tx) => format!("SendData tx{}", tx.0),
        Event::TransactionDone { tx, outcome } => match outcome {
            TxOutcome::Delivered(r) => format!("Done tx{} delivered {}", tx.0, code(r)),
            TxOutcome::Failed { at, reply: Some(r) } => {
                format!("Done tx{} failed {:?} {}", tx.0, at, code(r))
            }
            TxOutcome::Failed { at, reply: None } => format!("Done tx{} failed {:?}", tx.0, at),
            #[cfg(feature = "checks")]
            TxOutcome::Checked => format!("Done tx{} checked", tx.0),
            #[cfg(feature = "lmtp")]
            TxOutcome::PerRecipient { delivered } => {
                format!("Done tx{} per-recipient {delivered} delivered", tx.0)
            }
        },
        Event::Reply(r) => format!("Reply {}", code(r)),
        Event::Closed => "Closed".to_string(),
    }
}
