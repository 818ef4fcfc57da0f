//! [`FileTransport`]: messages written to a directory, as files or as a Maildir.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::delivery::{Delivery, DeliveryStatus};
use crate::envelope::Envelope;
use crate::error::Error;

use super::Transport;

/// How the files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `NAME.eml` (the message as given) and `NAME.envelope` (`MAIL FROM:<..>` and one
    /// `RCPT TO:<..>` line per recipient).
    Files,
    /// A Maildir: `tmp/`, `new/`, `cur/`; each message written to `tmp/` and linked into
    /// `new/`, with a `Return-Path:` line first, as a mail server's local delivery writes it.
    Maildir,
}

/// A transport that writes each message to a directory instead of sending it: for tests, for
/// development (open the `.eml` in a mail program) and for handing mail to a program that
/// reads a Maildir (Dovecot, mutt).
///
/// Files are private (0600, directories 0700 when the transport creates them) and appear
/// whole or not at all: each is written under a temporary name, synced, and linked under its
/// own name, which never replaces an existing file. When writing fails (a full disk, no
/// permission) nothing is left behind and every recipient is **deferred**, with the reason:
/// a local fault is not the message's fault.
///
/// ```
/// use postline::transport::{FileTransport, Transport};
/// use postline::{DeliveryStatus, Envelope};
///
/// let dir = std::env::temp_dir().join(format!("postline-doc-{}", std::process::id()));
/// let files = FileTransport::new(&dir);
/// let envelope = Envelope::new("me@example.com", ["you@example.org"])?;
/// let results = files.send(&envelope, b"Subject: hi\r\n\r\nHello\r\n")?;
/// assert_eq!(results[0].status, DeliveryStatus::Delivered);
/// let written = std::fs::read_dir(&dir)?.count();
/// assert_eq!(written, 2); // NAME.eml and NAME.envelope
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
    layout: Layout,
}

/// Names written by this process, so two messages in one microsecond get two names.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl FileTransport {
    /// Writes `NAME.eml` (the message, byte for byte) and `NAME.envelope` (the envelope as
    /// `MAIL FROM:<sender>` and `RCPT TO:<recipient>` lines) into `dir`, creating it.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileTransport {
            dir: dir.into(),
            layout: Layout::Files,
        }
    }

    /// Delivers into the Maildir at `dir` (creating `tmp`, `new` and `cur`): each message
    /// once, in `new/`, preceded by `Return-Path: <sender>`.
    pub fn maildir(dir: impl Into<PathBuf>) -> Self {
        FileTransport {
            dir: dir.into(),
            layout: Layout::Maildir,
        }
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one message; the path of the message file.
    fn write(&self, envelope: &Envelope, message: &[u8]) -> io::Result<PathBuf> {
        let name = unique_name();
        match self.layout {
            Layout::Files => {
                private_dir(&self.dir)?;
                let mut lines = format!("MAIL FROM:<{}>\r\n", envelope.from());
                for to in envelope.to() {
                    lines.push_str(&format!("RCPT TO:<{to}>\r\n"));
                }
                // The envelope first: a `.eml` without its envelope is never seen.
                let tmp = self.dir.join(format!(".{name}.tmp"));
                let envelope_file = self.dir.join(format!("{name}.envelope"));
                write_whole(&tmp, &envelope_file, &[lines.as_bytes()])?;
                let eml = self.dir.join(format!("{name}.eml"));
                let done = write_whole(&tmp, &eml, &[message]).and_then(|()| sync_dir(&self.dir));
                if let Err(e) = done {
                    let _ = fs::remove_file(&eml);
                    let _ = fs::remove_file(&envelope_file);
                    return Err(e);
                }
                Ok(eml)
            }
            Layout::Maildir => {
                for sub in ["", "tmp", "new", "cur"] {
                    private_dir(&self.dir.join(sub))?;
                }
                let return_path = format!("Return-Path: <{}>\r\n", envelope.from());
                let tmp = self.dir.join("tmp").join(&name);
                let new = self.dir.join("new").join(&name);
                write_whole(&tmp, &new, &[return_path.as_bytes(), message])?;
                if let Err(e) = sync_dir(&self.dir.join("new")) {
                    // Not durable: take it back, so "deferred" stays true and a retry
                    // cannot deliver it twice.
                    let _ = fs::remove_file(&new);
                    return Err(e);
                }
                Ok(new)
            }
        }
    }
}

impl Transport for FileTransport {
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        // A name another writer took in the same microsecond: a new name, a few times.
        let mut written = self.write(envelope, message);
        for _ in 0..3 {
            match &written {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    written = self.write(envelope, message);
                }
                _ => break,
            }
        }
        let (status, reason) = match written {
            Ok(path) => (
                DeliveryStatus::Delivered,
                format!("written to {}", path.display()),
            ),
            Err(e) => (
                DeliveryStatus::Deferred,
                format!("cannot write the message into {}: {e}", self.dir.display()),
            ),
        };
        Ok(envelope
            .to()
            .map(|a| Delivery::new(a, status, None, reason.as_str()))
            .collect())
    }
}

#[cfg(feature = "tokio")]
impl super::AsyncTransport for FileTransport {
    /// Writes on tokio's blocking pool, so a slow disk does not stall the runtime.
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        super::send_on_blocking_pool(self, envelope, message)
    }
}

/// `SECONDS.MMICROSPPIDQSEQ.HOST`, the Maildir convention for a name no other delivery
/// uses (a host name with `/` or `:` has them replaced, as Maildir requires).
fn unique_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = crate::hello::host_name()
        .unwrap_or_else(|| "localhost".into())
        .replace('/', "\\057")
        .replace(':', "\\072");
    format!(
        "{}.M{}P{}Q{}.{host}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `dir` (0700) if it is not there.
fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `parts` to `tmp` (0600, new), syncs it and links it as `to`, which must not exist
/// yet (a link never replaces a file, as a rename would: two writers that picked one name
/// cannot overwrite each other's message); `tmp` is removed whatever happens, so a full disk
/// leaves no half file.
fn write_whole(tmp: &Path, to: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
        fs::hard_link(tmp, to)
    })();
    let _ = fs::remove_file(tmp);
    written
}

/// Makes a new name in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_never_replaces_another() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, to) = (dir.path().join("t"), dir.path().join("m"));
        fs::write(&to, b"first").unwrap();
        let e = write_whole(&tmp, &to, &[b"second"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&to).unwrap(), b"first");
        assert!(!tmp.exists(), "no temporary file left");
    }
}
