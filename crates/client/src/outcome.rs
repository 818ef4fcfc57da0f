//! What happened to a message: per recipient, and the server's final word.

use crate::reply::ServerReply;

/// One recipient and what the server said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as given in the envelope.
    pub address: String,
    /// Whether the server accepted it at RCPT.
    pub accepted: bool,
    /// The RCPT reply; `None` when the transaction failed before this recipient's reply
    /// (MAIL refused, connection closed).
    pub reply: Option<ServerReply>,
}

/// A message the server took responsibility for, for at least one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every recipient in envelope order.
    pub recipients: Vec<Recipient>,
    /// The reply to the end of data (often naming the server's queue id).
    pub reply: ServerReply,
}

impl Outcome {
    /// Recipients the server accepted.
    pub fn accepted(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.accepted)
    }

    /// Recipients the server refused (the message did not go to them).
    pub fn rejected(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| !r.accepted)
    }

    /// True when every recipient was accepted.
    pub fn all_accepted(&self) -> bool {
        self.recipients.iter().all(|r| r.accepted)
    }
}
