//! The pool's policy, once for both pools: which connection a caller gets, when a connection
//! goes back to the idle list, and when a failed send is tried again. Time is an argument;
//! nothing here waits, locks or does I/O, so the blocking and the tokio pool differ only in
//! how a caller waits for a free connection.

use std::time::Instant;

use crate::engine::Engine;
use crate::error::Error;
use crate::outcome::Outcome;

use super::PoolOptions;

/// What the policy needs to see of a connection.
pub(crate) trait Inspect {
    /// The connection's engine: whether it is idle and usable, what the server answered.
    fn engine(&self) -> &Engine;
}

/// A connection waiting in the idle list.
pub(crate) struct Idle<C> {
    pub(crate) conn: C,
    /// When it was last given back.
    pub(crate) since: Instant,
    /// Messages sent on it so far.
    pub(crate) messages: u32,
}

/// What a caller gets.
pub(crate) enum Checkout<C> {
    /// An idle connection, most recently used first.
    Reuse(Idle<C>),
    /// A slot for a connection the caller opens itself.
    Open,
}

/// The idle list and the count of connections in use (checked out, or being opened).
pub(crate) struct Slots<C> {
    idle: Vec<Idle<C>>,
    busy: usize,
    opened: u64,
    retried: u64,
}

impl<C> Default for Slots<C> {
    fn default() -> Self {
        Slots {
            idle: Vec::new(),
            busy: 0,
            opened: 0,
            retried: 0,
        }
    }
}

/// Whether a connection given back may be reused: the engine is idle and still open (no
/// message in flight, no answer outstanding), and the last result left the session in a
/// known state: delivered, or refused by the server (which RSET put back in step). In doubt,
/// cancelled, timed out, lost, a protocol error: never reused.
pub(crate) fn reusable(result: &Result<Outcome, Error>, engine: &Engine) -> bool {
    let known = match result {
        Ok(_) => true,
        Err(e) => !e.is_in_doubt() && e.leaves_session_usable(),
    };
    known && engine.is_idle()
}

/// Whether a send on a *reused* connection failed only because that connection was already
/// dead when it was taken (the server closed it, or said 421, while it sat idle), so that
/// sending the same message once more on a fresh connection cannot deliver it twice.
///
/// It is, only when all of these hold:
/// - the engine says the message was certainly not delivered: not in doubt (the end of data
///   was never on the wire, or a 421 refused it), which `Error::DeliveryUnknown` would say;
/// - the failure is the connection ending ([`Error::ConnectionLost`], a reset included, or
///   [`Error::Closed`]) with no reply at all to this message, or a 421 that was the first
///   and only reply to it ([`Error::ServiceClosing`]): so MAIL was not even answered, no
///   recipient was accepted, and no data was sent (with DATA the data waits for the 354;
///   with BDAT a chunk on the wire makes the message in doubt, excluded above).
///
/// A timeout, a TLS failure, a refusal or anything after the first reply is the server's
/// answer about this attempt and goes back to the caller as it is.
pub(crate) fn stale(result: &Result<Outcome, Error>, replies: u32) -> bool {
    let Err(e) = result else {
        return false;
    };
    if e.is_in_doubt() {
        return false;
    }
    let cause = match e {
        Error::NotSent { cause } => cause.as_ref(),
        e => e,
    };
    match cause {
        Error::ConnectionLost { .. } | Error::Closed => replies == 0,
        Error::ServiceClosing(_) => replies == 1,
        _ => false,
    }
}

impl<C: Inspect> Slots<C> {
    /// A connection for a caller, or `None` when every slot is in use (the caller waits).
    /// Idle connections past the idle timeout, or that the engine already knows are closed,
    /// are moved to `closing` (to be closed, with QUIT where still possible, outside the lock).
    pub(crate) fn checkout(
        &mut self,
        options: &PoolOptions,
        now: Instant,
        closing: &mut Vec<C>,
    ) -> Option<Checkout<C>> {
        self.sweep(options, now, closing);
        if let Some(idle) = self.idle.pop() {
            self.busy += 1;
            return Some(Checkout::Reuse(idle));
        }
        if self.busy + self.idle.len() < options.max_size {
            self.busy += 1;
            self.opened += 1;
            return Some(Checkout::Open);
        }
        None
    }

    /// A connection comes back after `messages` messages: to the idle list when `keep` and
    /// the per-connection message limit allows, else to `closing`. Its slot is free again.
    pub(crate) fn checkin(
        &mut self,
        conn: C,
        messages: u32,
        keep: bool,
        options: &PoolOptions,
        now: Instant,
        closing: &mut Vec<C>,
    ) {
        self.busy = self.busy.saturating_sub(1);
        let spent = options
            .max_messages_per_connection
            .is_some_and(|max| messages >= max);
        if keep && !spent {
            self.idle.push(Idle {
                conn,
                since: now,
                messages,
            });
        } else {
            closing.push(conn);
        }
        self.sweep(options, now, closing);
    }

    /// A checked-out slot ends without a connection to give back (connect failed, the
    /// caller was cancelled).
    pub(crate) fn release(&mut self) {
        self.busy = self.busy.saturating_sub(1);
    }

    /// A slot that was reused is being opened afresh (the retry rule).
    pub(crate) fn reopen(&mut self) {
        self.opened += 1;
        self.retried += 1;
    }

    /// Every idle connection, for closing.
    pub(crate) fn drain_idle(&mut self) -> Vec<C> {
        self.idle.drain(..).map(|i| i.conn).collect()
    }

    /// Counters for [`super::PoolStats`].
    pub(crate) fn stats(&self) -> super::PoolStats {
        super::PoolStats {
            idle: self.idle.len(),
            in_use: self.busy,
            opened: self.opened,
            retried: self.retried,
        }
    }

    fn sweep(&mut self, options: &PoolOptions, now: Instant, closing: &mut Vec<C>) {
        let mut i = 0;
        while i < self.idle.len() {
            let idle = &self.idle[i];
            let expired = now.saturating_duration_since(idle.since) >= options.idle_timeout;
            if expired || !idle.conn.engine().is_idle() {
                closing.push(self.idle.remove(i).conn);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ServerReply;
    use postline_proto::session::{FailedAt, Phase};

    fn reply(code: u16) -> ServerReply {
        ServerReply {
            code,
            enhanced: None,
            lines: vec!["x".into()],
        }
    }

    fn lost(phase: Phase) -> Error {
        Error::ConnectionLost { phase }
    }

    #[test]
    fn retried_only_when_nothing_of_the_message_was_answered() {
        let closed_421 = Error::ServiceClosing(reply(421));
        // Dead on arrival: the close, the reset or the 421 came before any other reply.
        assert!(stale(&Err(lost(Phase::Mail)), 0));
        assert!(stale(&Err(Error::Closed), 0));
        assert!(stale(&Err(closed_421.clone()), 1));
        assert!(stale(
            &Err(Error::NotSent {
                cause: Box::new(lost(Phase::Mail))
            }),
            0
        ));
        // Something was answered first: MAIL accepted, a recipient accepted, 354 given.
        assert!(!stale(&Err(lost(Phase::Rcpt)), 1));
        assert!(!stale(&Err(closed_421.clone()), 2));
        assert!(!stale(&Err(lost(Phase::DataBlock)), 3));
        // The end of data was on the wire: never again.
        let doubt = Error::DeliveryUnknown {
            cause: Box::new(lost(Phase::DataEnd)),
            recipients: Vec::new(),
        };
        assert!(!stale(&Err(doubt), 0));
        // A timeout, a refusal, a delivery: the server's answer, not a stale connection.
        let timeout = Error::Timeout {
            phase: Phase::Mail,
            after: std::time::Duration::from_secs(300),
        };
        assert!(!stale(&Err(timeout), 0));
        let refused = Error::MessageRejected {
            at: FailedAt::Mail,
            reply: Some(reply(451)),
            recipients: vec![],
        };
        assert!(!stale(&Err(refused), 1));
        assert!(!stale(
            &Ok(Outcome {
                recipients: vec![],
                reply: reply(250)
            }),
            0
        ));
    }
}
