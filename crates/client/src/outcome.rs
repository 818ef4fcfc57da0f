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
    /// LMTP only ([`crate::Protocol::Lmtp`]): this recipient's own reply to the end of data
    /// (RFC 2033 4.2), which decides whether its mailbox took the message. `None` over SMTP,
    /// where [`Outcome::reply`] answers for every accepted recipient, and for a recipient
    /// whose reply did not come.
    pub data_reply: Option<ServerReply>,
}

impl Recipient {
    /// Whether the message reached this recipient: accepted at RCPT and, over LMTP, its
    /// own reply after the data was positive too.
    pub fn delivered(&self) -> bool {
        self.accepted && self.data_reply.as_ref().is_none_or(|r| r.code / 100 == 2)
    }

    /// The reply that decided this recipient's fate: its reply after the data over LMTP,
    /// else its RCPT reply.
    pub fn deciding_reply(&self) -> Option<&ServerReply> {
        self.data_reply.as_ref().or(self.reply.as_ref())
    }
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
    /// Recipients the server took the message for ([`Recipient::delivered`]).
    pub fn accepted(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.delivered())
    }

    /// Recipients the message did not go to: refused at RCPT or, over LMTP, after the data.
    pub fn rejected(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| !r.delivered())
    }

    /// True when the message went to every recipient.
    pub fn all_accepted(&self) -> bool {
        self.recipients.iter().all(|r| r.delivered())
    }
}
