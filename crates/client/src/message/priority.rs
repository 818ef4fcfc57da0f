//! Message priority, as mail clients show it.

/// How urgent a message is, written as the two header fields mail clients read:
/// `X-Priority` (Outlook, Thunderbird, Apple Mail) and `Importance` (RFC 2156, Exchange).
/// Servers do not deliver faster for it; it only changes how the message is shown. The
/// embedded SMTP clients this mirrors (NetX Duo, embOS) offer the same three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// `X-Priority: 1 (Highest)`, `Importance: high`.
    High,
    /// `X-Priority: 3 (Normal)`, `Importance: normal`.
    #[default]
    Normal,
    /// `X-Priority: 5 (Lowest)`, `Importance: low`.
    Low,
}

impl Priority {
    /// The `X-Priority` field value.
    pub fn x_priority(self) -> &'static str {
        match self {
            Priority::High => "1 (Highest)",
            Priority::Normal => "3 (Normal)",
            Priority::Low => "5 (Lowest)",
        }
    }

    /// The `Importance` field value.
    pub fn importance(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}
