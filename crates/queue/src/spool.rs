//! The spool directory: crash-safe files, private permissions, per-message locks.
//!
//! A message is two files: `<id>.eml` (the bytes to send) and `<id>.json` (its [`Entry`]).
//! Each is written to a temporary name, fsynced and renamed into place; the message file
//! comes first and the metadata last, so a message is queued exactly when its `.json`
//! exists. A crash at any instant leaves it fully queued or not at all (an orphaned `.eml` is
//! swept later). `<id>.lock` files, locked with `File::try_lock`, keep two runners (threads or
//! processes) off the same message.
//!
//! The spool is private: directories 0700, files 0600, and a spool directory that other
//! users could write, or that belongs to someone else, is refused (queued mail and Bcc lists
//! are not for other local users to read, and nothing in a spool may be trusted that another
//! user could have written). It is one user's spool; there is no shared mode.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::entry::Entry;
use crate::policy::{random, secs};
use crate::route::Route;

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    max_message_size: u64,
}

/// The largest message a spool takes unless told otherwise (64 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

/// A held lock on one message; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Why an entry could not be read.
#[derive(Debug)]
pub enum LoadError {
    /// It is no longer there (delivered or removed meanwhile).
    Gone,
    /// Its files are inconsistent or unparsable: it can never be sent as it is.
    Corrupt(String),
    /// Reading failed (permissions, I/O, too many open files): it may work later.
    Unreadable(io::Error),
    /// It was written by a newer postline.
    Newer(String),
    /// Not a queue id.
    BadId(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Gone => f.write_str("no such message"),
            LoadError::Corrupt(s) | LoadError::Newer(s) => f.write_str(s),
            LoadError::Unreadable(e) => write!(f, "cannot read: {e}"),
            LoadError::BadId(id) => write!(f, "not a queue id: {id:?}"),
        }
    }
}

/// An entry from its JSON, checked: the id it names, a route this postline can send (a
/// newer format is [`LoadError::Newer`], not corrupt). `place` names where it was read, for
/// messages. Every store reads entries through this.
pub(crate) fn parse_entry(id: &str, place: &str, bytes: &[u8]) -> Result<Entry, LoadError> {
    let entry: Entry = serde_json::from_slice(bytes).map_err(|e| {
        // A route of a newer format is not corrupt: a newer postline can send it.
        let v: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
        match v.as_ref().and_then(|v| v["route"]["version"].as_u64()) {
            Some(n) if n > crate::route::ROUTE_VERSION as u64 => LoadError::Newer(format!(
                "{place}: route format {n} is newer than this postline"
            )),
            _ => LoadError::Corrupt(format!("{place}: {e}")),
        }
    })?;
    if entry.id != id {
        return Err(LoadError::Corrupt(format!(
            "{place} names id {:?}",
            entry.id
        )));
    }
    if let Err(e) = entry.route.validate() {
        return Err(match e {
            crate::route::RouteError::Version(_) => LoadError::Newer(format!("{place}: {e}")),
            _ => LoadError::Corrupt(format!("{place}: {e}")),
        });
    }
    Ok(entry)
}

/// fsync a directory so renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a private (0600) file that must not exist yet.
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to `path` through a fsynced temporary file and a rename. The directory is
/// not fsynced: the caller does that once for a group of changes (or calls
/// [`write_durable`]).
fn write_replace(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".tmp-{name}-{:x}", random()));
    let result = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_replace`], then the directory fsynced.
fn write_durable(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replace(dir, path, bytes)?;
    sync_dir(dir)
}

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// [`valid_id`] as the error every store gives for a name that is not a queue id.
pub(crate) fn checked_id(id: &str) -> io::Result<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a queue id: {id:?}"),
        ))
    }
}

/// The error every store gives for a message over its size limit, before anything is
/// written.
pub(crate) fn checked_size(len: usize, max: u64) -> io::Result<()> {
    if len as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("the message ({len} octets) is larger than the queue takes ({max} octets)"),
        ));
    }
    Ok(())
}

/// Creates `dir` (0700) if missing; refuses it when others could write it or it is not ours;
/// tightens an own directory that others could read.
fn private_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?
        }
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing the spool {}: {why}", dir.display()),
        ))
    };
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!(
                "{} is not a directory (a symbolic link is not accepted)",
                dir.display()
            ),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return refuse(format!(
            "owned by uid {}, not by this user ({me})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "writable by other users (mode {mode:o}); chmod 700 it"
        ));
    }
    if mode & 0o077 != 0 {
        // A spool an older version made readable (the caller checked it is one).
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// True when `dir` is (or is about to be) a spool: empty, or holding `failed/` and
/// `corrupt/` as every spool does.
fn is_spool(dir: &Path) -> bool {
    let empty = fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    empty || (dir.join("failed").is_dir() && dir.join("corrupt").is_dir())
}

impl Spool {
    /// Opens (creating if needed, 0700) the spool at `dir`. Refused when other users could
    /// write it or it belongs to someone else; an existing directory that others can read is
    /// made private only when it is a spool (or empty), else refused.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Spool> {
        let dir = dir.into();
        // `link/` would follow the link: the check is on the name itself.
        let dir = match dir.to_str() {
            Some(s) if s.len() > 1 && s.ends_with('/') => PathBuf::from(s.trim_end_matches('/')),
            _ => dir,
        };
        // An existing directory must be a spool already (or empty): the runner moves and
        // deletes files in it, which must never be someone's own.
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) && !is_spool(&dir) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing the spool {}: it is not a postline queue (it holds other files and \
                     no failed/ and corrupt/); give an empty or new directory",
                    dir.display()
                ),
            ));
        }
        for d in [dir.clone(), dir.join("corrupt"), dir.join("failed")] {
            private_dir(&d)?;
        }
        Ok(Spool {
            dir,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        })
    }

    /// Opens the spool at `dir` only if it exists (for commands that read or change what is
    /// queued: nothing is created); `NotFound` otherwise.
    pub fn open_existing(dir: impl Into<PathBuf>) -> io::Result<Spool> {
        let dir = dir.into();
        if !dir.exists() && fs::symlink_metadata(&dir).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no spool at {}", dir.display()),
            ));
        }
        Spool::open(dir)
    }

    /// Refuse messages larger than `octets` (default [`DEFAULT_MAX_MESSAGE_SIZE`]): a queue
    /// is not a place for a message no server would take.
    pub fn max_message_size(mut self, octets: u64) -> Self {
        self.max_message_size = octets;
        self
    }

    /// `$XDG_STATE_HOME/postline/queue`, else `$HOME/.local/state/postline/queue`.
    pub fn default_dir() -> Option<PathBuf> {
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
        Some(state.join("postline/queue"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Where a message's bytes are.
    pub fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.lock"))
    }

    /// Bytes free for this user on the spool's file system.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let s = rustix::fs::statvfs(&self.dir).map_err(io::Error::from)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Queues a message for `recipients`; returns its id once it is durably on disk.
    pub fn enqueue(
        &self,
        from: &str,
        recipients: &[String],
        route: &Route,
        message: &[u8],
        now: SystemTime,
    ) -> io::Result<String> {
        let entry = self.new_entry(from, recipients, route, message, now);
        self.write_new(entry, message)
    }

    /// Queues a message whose recipients already have a state (a first attempt made by the
    /// caller): those still pending are tried on `next_attempt`.
    pub fn enqueue_entry(&self, mut entry: Entry, message: &[u8]) -> io::Result<String> {
        entry.size = message.len() as u64;
        self.write_new(entry, message)
    }

    /// A fresh entry (not yet written) with a new id and every recipient pending now.
    pub fn new_entry(
        &self,
        from: &str,
        recipients: &[String],
        route: &Route,
        message: &[u8],
        now: SystemTime,
    ) -> Entry {
        Entry::fresh(from, recipients, route, message, now)
    }

    fn write_new(&self, entry: Entry, message: &[u8]) -> io::Result<String> {
        checked_size(message.len(), self.max_message_size)?;
        checked_id(&entry.id)?;
        if self.meta_path(&entry.id).exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is already queued", entry.id),
            ));
        }
        write_replace(&self.dir, &self.message_path(&entry.id), message)?;
        self.save(&entry)?;
        Ok(entry.id)
    }

    /// Replaces an entry's metadata, durably.
    pub fn save(&self, entry: &Entry) -> io::Result<()> {
        self.save_unsynced(entry)?;
        sync_dir(&self.dir)
    }

    /// Replaces an entry's metadata; durable once the directory is synced
    /// ([`Spool::sync`]).
    pub(crate) fn save_unsynced(&self, entry: &Entry) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        write_replace(&self.dir, &self.meta_path(&entry.id), &json)
    }

    /// Makes every rename and removal so far durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    /// Reads one entry, checking it against its message file.
    pub fn load(&self, id: &str) -> Result<Entry, LoadError> {
        if !valid_id(id) {
            return Err(LoadError::BadId(id.into()));
        }
        let bytes = match fs::read(self.meta_path(id)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Gone),
            Err(e) => return Err(LoadError::Unreadable(e)),
        };
        let entry = parse_entry(id, &format!("{id}.json"), &bytes)?;
        let size = match fs::metadata(self.message_path(id)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LoadError::Corrupt(format!("{id}.eml is missing")))
            }
            Err(e) => return Err(LoadError::Unreadable(e)),
        };
        if size != entry.size {
            return Err(LoadError::Corrupt(format!(
                "{id}.eml has {size} octets, {} expected (truncated?)",
                entry.size
            )));
        }
        Ok(entry)
    }

    /// Reads a message's bytes.
    pub fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(self.message_path(id))?.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Moves a broken entry's files to `corrupt/` (under its lock).
    pub(crate) fn quarantine(&self, id: &str) {
        for ext in ["json", "eml"] {
            let from = self.dir.join(format!("{id}.{ext}"));
            if from.exists() {
                let _ = fs::rename(&from, self.dir.join("corrupt").join(format!("{id}.{ext}")));
            }
        }
        let _ = fs::remove_file(self.lock_path(id));
        let _ = sync_dir(&self.dir);
    }

    /// Ids of every queued message, oldest first (ids start with the queueing time).
    pub fn ids(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        let mut ids = Vec::new();
        let mut odd = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".json") {
                if valid_id(id) {
                    ids.push(id.to_string());
                } else {
                    odd.push(format!("ignored odd file {name:?}"));
                }
            }
        }
        ids.sort();
        Ok((ids, odd))
    }

    /// Every queued entry, oldest first, and a line for each problem. Corrupt entries are
    /// moved to `corrupt/` (when no runner holds them); unreadable ones are skipped and
    /// reported, to be tried again later.
    pub fn list(&self) -> (Vec<Entry>, Vec<String>) {
        crate::store::Store::list(self)
    }

    /// Takes the lock of one message, or `None` when another runner holds it.
    pub fn try_lock(&self, id: &str) -> io::Result<Option<Lock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.lock_path(id))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Removes a message (after delivery, or by hand), durably. The metadata goes first, so
    /// a crash halfway leaves only an orphaned message file, swept later.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.remove_unsynced(id)?;
        sync_dir(&self.dir)
    }

    /// [`Spool::remove`], durable once the directory is synced.
    pub(crate) fn remove_unsynced(&self, id: &str) -> io::Result<()> {
        checked_id(id)?;
        fs::remove_file(self.meta_path(id))?;
        let _ = fs::remove_file(self.message_path(id));
        let _ = fs::remove_file(self.lock_path(id));
        Ok(())
    }

    /// Writes the record of a message that left the queue with failures to `failed/`.
    pub(crate) fn record_failed(&self, entry: &Entry) -> io::Result<()> {
        let dir = self.dir.join("failed");
        let json = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        write_durable(&dir, &dir.join(format!("{}.json", entry.id)), &json)
    }

    /// Whether an entry with this id is queued.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.meta_path(id).exists()
    }

    /// Message files with no metadata, and temporary files, older than `age`: what a crash
    /// during enqueue left.
    pub fn sweep_orphans(&self, age: Duration, now: SystemTime) -> usize {
        let mut swept = 0;
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return 0;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|m| now.duration_since(m).unwrap_or_default() > age)
                .unwrap_or(false);
            let orphan = match (name.strip_suffix(".eml"), name.strip_suffix(".lock")) {
                (Some(id), _) => !self.meta_path(id).exists(),
                // A lock file left by a runner that looked at a message just removed: only
                // when no one holds it.
                (_, Some(id)) => {
                    !self.meta_path(id).exists()
                        && valid_id(id)
                        && matches!(self.try_lock(id), Ok(Some(_)))
                }
                _ => name.starts_with(".tmp-"),
            };
            if orphan && stale && fs::remove_file(e.path()).is_ok() {
                swept += 1;
            }
        }
        swept
    }
}

impl crate::store::Store for Spool {
    type Lock = Lock;
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
    fn ids(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        Spool::ids(self)
    }
    fn load(&self, id: &str) -> Result<Entry, LoadError> {
        Spool::load(self, id)
    }
    fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        Spool::message(self, id)
    }
    fn contains(&self, id: &str) -> bool {
        Spool::contains(self, id)
    }
    fn try_lock(&self, id: &str) -> io::Result<Option<Lock>> {
        Spool::try_lock(self, id)
    }
    fn enqueue_entry(&self, entry: Entry, message: &[u8]) -> io::Result<String> {
        Spool::enqueue_entry(self, entry, message)
    }
    fn save_unsynced(&self, entry: &Entry) -> io::Result<()> {
        Spool::save_unsynced(self, entry)
    }
    fn remove_unsynced(&self, id: &str) -> io::Result<()> {
        Spool::remove_unsynced(self, id)
    }
    fn record_failed(&self, entry: &Entry) -> io::Result<()> {
        Spool::record_failed(self, entry)
    }
    fn sync(&self) -> io::Result<()> {
        Spool::sync(self)
    }
    fn free_bytes(&self) -> io::Result<u64> {
        Spool::free_bytes(self)
    }
    fn quarantine(&self, id: &str) {
        Spool::quarantine(self, id)
    }
    fn quarantine_place(&self) -> &'static str {
        "corrupt/"
    }
    fn sweep_orphans(&self, age: Duration, now: SystemTime) -> usize {
        Spool::sweep_orphans(self, age, now)
    }
    fn message_location(&self, id: &str) -> String {
        self.message_path(id).display().to_string()
    }
}

/// Seconds now, for callers building entries by hand.
pub fn unix_now(now: SystemTime) -> u64 {
    secs(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_is_private_and_a_shared_one_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("q");
        let spool = Spool::open(&dir).unwrap();
        let id = spool
            .enqueue(
                "a@x",
                &["b@y".into()],
                &Route::relay("h"),
                b"m",
                SystemTime::now(),
            )
            .unwrap();
        for p in [dir.clone(), dir.join("failed"), dir.join("corrupt")] {
            assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o700, "{p:?}");
        }
        for f in [format!("{id}.json"), format!("{id}.eml")] {
            assert_eq!(
                fs::metadata(dir.join(&f)).unwrap().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
        // A readable one of ours is tightened; a writable one is refused.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Spool::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = Spool::open(&dir).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("writable by other users"), "{e}");
        // Someone else's spool is refused (the test runs as root, so chown works).
        if rustix::process::geteuid().is_root() {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let e = Spool::open(&dir).unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
    }
}
