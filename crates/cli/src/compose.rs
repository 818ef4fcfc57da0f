//! Composing messages (with mail-builder) and reading ready ones (with mail-parser).
//!
//! STUB: the interface below is fixed; the implementation is being written.

use std::path::PathBuf;

/// `--priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Priority {
    /// X-Priority: 1 (Highest), Importance: high.
    High,
    /// X-Priority: 3 (Normal), Importance: normal.
    Normal,
    /// X-Priority: 5 (Lowest), Importance: low.
    Low,
}

/// Everything `postline send` knows about a message to compose.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    /// The From header: an address, optionally with a display name given separately.
    pub from: String,
    /// Display name for From (sendmail `-F`), if any.
    pub from_name: Option<String>,
    /// To header addresses.
    pub to: Vec<String>,
    /// Cc header addresses.
    pub cc: Vec<String>,
    /// Subject (may be non-ASCII: RFC 2047 encoded).
    pub subject: Option<String>,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body: with `text`, multipart/alternative.
    pub html: Option<String>,
    /// Files to attach; MIME type guessed from the name.
    pub attachments: Vec<PathBuf>,
    /// Extra headers, `(name, value)`, validated: no CR/LF/control characters.
    pub headers: Vec<(String, String)>,
    /// X-Priority and Importance.
    pub priority: Option<Priority>,
    /// Reply-To address.
    pub reply_to: Option<String>,
}

/// Why a message cannot be composed or read.
#[derive(Debug)]
pub enum ComposeError {
    /// An attachment or body file could not be read (exit 66, EX_NOINPUT).
    Input { path: PathBuf, source: std::io::Error },
    /// Something the user gave is invalid (exit 64, EX_USAGE): a header with CR/LF, a bad name.
    Usage(String),
    /// A ready message could not be parsed (exit 65, EX_DATAERR).
    Data(String),
}

impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComposeError::Input { path, source } => write!(f, "{}: {source}", path.display()),
            ComposeError::Usage(m) | ComposeError::Data(m) => f.write_str(m),
        }
    }
}

/// Builds the RFC 5322 message with Date, Message-ID, MIME-Version and proper encodings.
/// Bcc recipients are never in it (they are envelope-only).
pub fn build(c: &Compose) -> Result<Vec<u8>, ComposeError> {
    let _ = c;
    Err(ComposeError::Usage("not implemented".into()))
}

/// Addresses found in a ready message's headers, for `-t`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRecipients {
    /// From To:.
    pub to: Vec<String>,
    /// From Cc:.
    pub cc: Vec<String>,
    /// From Bcc:.
    pub bcc: Vec<String>,
}

/// Reads To, Cc and Bcc (every occurrence, groups and display names handled) from `raw`.
pub fn header_recipients(raw: &[u8]) -> Result<HeaderRecipients, ComposeError> {
    let _ = raw;
    Ok(HeaderRecipients::default())
}

/// The address in the From header, if any (the envelope sender default in sendmail mode).
pub fn header_from(raw: &[u8]) -> Option<String> {
    let _ = raw;
    None
}

/// `raw` without its Bcc header fields (continuation lines included); every other byte kept.
pub fn strip_bcc(raw: &[u8]) -> Vec<u8> {
    raw.to_vec()
}
