//! The capability set announced in an EHLO reply (RFC 5321 4.1.1.1 and the extensions' RFCs).
//!
//! STUB: the public API below is fixed; the implementation is being written.

use crate::reply::Reply;
use crate::sasl::Mechanism;

/// The SIZE extension (RFC 1870).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizeLimit {
    /// SIZE was not announced.
    #[default]
    NotAdvertised,
    /// `SIZE` or `SIZE 0`: the server takes SIZE= but states no fixed limit.
    NoLimit,
    /// `SIZE n`: messages over n octets are refused.
    Limit(u64),
}

/// A set of SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mechanisms(u8);

impl Mechanisms {
    /// The empty set.
    pub const fn empty() -> Self {
        Mechanisms(0)
    }
    /// Adds one.
    pub fn insert(&mut self, m: Mechanism) {
        self.0 |= 1 << (m as u8);
    }
    /// Membership.
    pub fn contains(&self, m: Mechanism) -> bool {
        self.0 & (1 << (m as u8)) != 0
    }
    /// True when no mechanism is in the set.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// A single-word extension without parameters, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Extension {
    /// RFC 3207.
    StartTls,
    /// RFC 2920.
    Pipelining,
    /// RFC 3030.
    Chunking,
    /// RFC 3030.
    BinaryMime,
    /// RFC 6152.
    EightBitMime,
    /// RFC 6531.
    SmtpUtf8,
    /// RFC 3461.
    Dsn,
    /// RFC 2034.
    EnhancedStatusCodes,
    /// RFC 8689.
    RequireTls,
}

/// What the server said it supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    flags: u16,
    size: SizeLimit,
    auth: Mechanisms,
    /// Keywords this parser does not know, with their parameters, as sent.
    #[cfg(feature = "alloc")]
    pub unknown: alloc::vec::Vec<(alloc::string::String, alloc::string::String)>,
}

impl Capabilities {
    /// Reads the capabilities from a positive EHLO reply (the first line, the server's name,
    /// is skipped).
    pub fn from_ehlo(reply: &Reply<'_>) -> Capabilities {
        let _ = reply;
        Capabilities::default()
    }
    /// Whether the flag extension was announced.
    pub fn has(&self, e: Extension) -> bool {
        self.flags & (1 << (e as u8)) != 0
    }
    /// The SIZE announcement.
    pub fn size(&self) -> SizeLimit {
        self.size
    }
    /// The SASL mechanisms announced with AUTH (or the old `AUTH=` form).
    pub fn auth(&self) -> Mechanisms {
        self.auth
    }
}
