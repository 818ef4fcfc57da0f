//! [`StubTransport`]: a transport for tests that keeps what it is given.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::delivery::{Delivery, DeliveryStatus};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::reply::ServerReply;

use super::Transport;

/// One message a [`StubTransport`] was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The envelope it came with.
    pub envelope: Envelope,
    /// The message, byte for byte.
    pub message: Vec<u8>,
}

/// A reply the stub gives to recipients it was told about.
#[derive(Debug, Clone)]
struct Rule {
    /// Lower-cased address.
    address: String,
    status: DeliveryStatus,
    reply: ServerReply,
}

#[derive(Debug, Default)]
struct State {
    sent: Vec<Sent>,
    rules: Vec<Rule>,
}

/// A transport for tests: it sends nothing, keeps every message it is given (read them back
/// with [`StubTransport::sent`]) and answers each recipient as told: delivered with
/// `250 2.0.0 Ok` unless [`StubTransport::answer`] set something else for that address, so
/// the code under test can be tried against refusals, deferrals and doubt.
///
/// Clones share their state: give one clone to the code under test and read from another.
///
/// ```
/// use postline::transport::{StubTransport, Transport};
/// use postline::{DeliveryStatus, Envelope};
///
/// let stub = StubTransport::new()
///     .answer("gone@example.org", DeliveryStatus::Failed, "550 5.1.1 No such user");
/// let envelope = Envelope::new("me@example.com", ["you@example.org", "gone@example.org"])?;
/// let results = stub.send(&envelope, b"Subject: hi\r\n\r\nHello\r\n")?;
/// assert_eq!(results[0].status, DeliveryStatus::Delivered);
/// assert_eq!(results[1].status, DeliveryStatus::Failed);
/// assert_eq!(results[1].reply.as_ref().unwrap().code, 550);
/// assert_eq!(stub.sent().len(), 1);
/// # Ok::<(), postline::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StubTransport {
    state: Arc<Mutex<State>>,
}

impl StubTransport {
    /// A stub that delivers every recipient.
    pub fn new() -> Self {
        StubTransport::default()
    }

    /// Answers `address` (compared without regard to case) with `status` and `reply`, which
    /// is read as a server reply: a three-digit code, then the text (an enhanced status code
    /// at the start of the text is taken as one). A reply without a valid code is given as
    /// `451` with the whole text, so a typo in a test shows rather than passes.
    pub fn answer(self, address: &str, status: DeliveryStatus, reply: &str) -> Self {
        self.lock().rules.push(Rule {
            address: address.to_ascii_lowercase(),
            status,
            reply: reply_from_text(reply),
        });
        self
    }

    /// Every message given so far, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    /// Forgets the messages given so far (the answers stay).
    pub fn clear(&self) {
        self.lock().sent.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left whole values behind: go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Transport for StubTransport {
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        let mut state = self.lock();
        let ok = reply_from_text("250 2.0.0 Ok");
        let results = envelope
            .to()
            .map(|address| {
                let lower = address.to_ascii_lowercase();
                match state.rules.iter().find(|r| r.address == lower) {
                    Some(rule) => Delivery::new(address, rule.status, Some(&rule.reply), ""),
                    None => Delivery::new(address, DeliveryStatus::Delivered, Some(&ok), ""),
                }
            })
            .collect();
        state.sent.push(Sent {
            envelope: envelope.clone(),
            message: message.to_vec(),
        });
        Ok(results)
    }
}

#[cfg(feature = "tokio")]
impl super::AsyncTransport for StubTransport {
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        std::future::ready(Transport::send(self, envelope, message))
    }
}

/// `"550 5.1.1 text"` as a reply, read by the same parser as a server's; anything that is
/// not a reply becomes `451` with the text.
fn reply_from_text(text: &str) -> ServerReply {
    let line = format!("{}\r\n", text.replace(['\r', '\n'], " "));
    match postline_proto::reply::Reply::parse_complete(line.as_bytes()) {
        Ok(reply) => ServerReply::from_reply(&reply),
        Err(_) => ServerReply {
            code: 451,
            enhanced: None,
            lines: vec![text.to_string()],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_from_text() {
        let r = reply_from_text("550 5.1.1 No such user");
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced.map(|e| e.to_string()).as_deref(), Some("5.1.1"));
        assert_eq!(r.lines, ["No such user"]);
        let r = reply_from_text("421 try later");
        assert_eq!(
            (r.code, r.enhanced, r.lines[0].as_str()),
            (421, None, "try later")
        );
        let r = reply_from_text("oops");
        assert_eq!((r.code, r.lines[0].as_str()), (451, "oops"));
    }

    #[test]
    fn clones_share_what_was_sent_and_answers_ignore_case() {
        let stub = StubTransport::new().answer("B@X.ORG", DeliveryStatus::Deferred, "451 later");
        let other = stub.clone();
        let env = Envelope::new("a@x.org", ["b@x.org", "c@x.org"]).unwrap();
        let d = Transport::send(&other, &env, b"x\r\n").unwrap();
        assert_eq!(d[0].status, DeliveryStatus::Deferred);
        assert_eq!(d[1].status, DeliveryStatus::Delivered);
        assert_eq!(stub.sent()[0].message, b"x\r\n");
        stub.clear();
        assert!(other.sent().is_empty());
    }
}
