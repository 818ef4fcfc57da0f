//! postline-queue: a durable outbound spool, so no message a caller handed over is lost.
//!
//! # On disk
//!
//! One directory. A message is two files: `<id>.eml` (the bytes to send) and `<id>.json` (its
//! envelope, per-recipient state, route, attempts, schedule). Each is written to a temporary
//! name, fsynced, renamed into place, and the directory fsynced. The message file comes first
//! and the metadata last, so a message is queued exactly when its `.json` exists: a crash at
//! any instant leaves it fully queued or not queued at all (an orphaned `.eml` is swept away
//! later). Metadata updates are atomic replacements. A message leaves the spool only after
//! every recipient was accepted or failed for good; at worst a crash between the server's
//! acceptance and the metadata update sends a message twice, never zero times.
//!
//! `<id>.lock` files, locked with `File::try_lock`, keep two runners (threads or processes)
//! off the same message. Unreadable or inconsistent entries move to `corrupt/`; finished
//! failures are recorded in `failed/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RecipientStatus {
    /// Not yet accepted; will be tried again.
    Pending {
        /// The last attempt's error, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// Accepted by a server.
    Delivered {
        /// When (Unix seconds).
        at: u64,
        /// What the server said.
        reply: String,
    },
    /// Failed for good (5xx, or the message expired).
    Failed {
        /// When (Unix seconds).
        at: u64,
        /// Why, quoting the server.
        reason: String,
    },
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address.
    pub address: String,
    /// Its state.
    #[serde(flatten)]
    pub status: RecipientStatus,
}

/// A queued message's metadata (`<id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The id (file stem).
    pub id: String,
    /// Envelope sender (empty: the null sender).
    pub from: String,
    /// Recipients and their states.
    pub recipients: Vec<Recipient>,
    /// How to send it, as the caller described it (never a secret).
    pub route: serde_json::Value,
    /// Size of `<id>.eml`, to tell a truncated file.
    pub size: u64,
    /// When queued (Unix seconds).
    pub created: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// Earliest next attempt (Unix seconds).
    pub next_attempt: u64,
    /// The last attempt's error, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// A bounce report (never bounced itself).
    #[serde(default)]
    pub is_bounce: bool,
}

impl Entry {
    /// Recipients still to be tried.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| matches!(r.status, RecipientStatus::Pending { .. }))
    }

    /// Recipients that failed for good.
    pub fn failed(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| matches!(r.status, RecipientStatus::Failed { .. }))
    }
}

/// What a delivery attempt said about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// Accepted; the server's reply.
    Delivered(String),
    /// Try again later; why.
    Deferred(String),
    /// Never; why (quoting the server).
    Failed(String),
}

/// The caller's delivery step: given the entry, the message bytes and the pending recipients,
/// what happened to each recipient.
pub type Deliver<'a> = dyn FnMut(&Entry, &[u8], &[String]) -> Vec<(String, Attempted)> + 'a;

/// Retry schedule and what to do with failures.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Wait after the first failure (default 1 min); doubles after each attempt.
    pub first_retry: Duration,
    /// Longest wait between attempts (default 1 h).
    pub max_retry: Duration,
    /// After this long in the queue a message fails (default 5 days, as MTAs use).
    pub max_lifetime: Duration,
    /// Queue a bounce report to the sender on permanent failure (default on).
    pub bounce: bool,
    /// The name bounce reports say they come from.
    pub reporting_host: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            first_retry: Duration::from_secs(60),
            max_retry: Duration::from_secs(3600),
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
            bounce: true,
            reporting_host: "localhost".into(),
        }
    }
}

impl Policy {
    /// The wait before attempt `attempts + 1`: exponential, capped, with ±10 % jitter so a
    /// queue of messages does not retry in lockstep.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let base =
            self.first_retry.as_secs_f64() * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        let base = base.min(self.max_retry.as_secs_f64());
        let jitter = 0.9 + 0.2 * (random() as f64 / u64::MAX as f64);
        Duration::from_secs_f64(base * jitter)
    }
}

/// What one pass over the queue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages tried.
    pub attempted: usize,
    /// Messages that left the queue fully delivered.
    pub completed: usize,
    /// Messages still queued after this pass.
    pub deferred: usize,
    /// Messages that left the queue with failed recipients (recorded in `failed/`).
    pub failed: usize,
    /// Bounce reports queued.
    pub bounces: usize,
    /// Messages skipped because another runner holds them.
    pub busy: usize,
    /// Entries moved to `corrupt/`, and other problems, one line each.
    pub problems: Vec<String>,
}

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A held lock on one message; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn now_secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// fsync a directory so a rename in it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync the directory.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".tmp-{name}-{:x}", random()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Spool> {
        let dir = dir.into();
        for d in [dir.clone(), dir.join("corrupt"), dir.join("failed")] {
            fs::create_dir_all(&d)?;
        }
        Ok(Spool { dir })
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

    /// Queues a message; returns its id once it is durably on disk.
    pub fn enqueue(
        &self,
        from: &str,
        recipients: &[String],
        route: serde_json::Value,
        message: &[u8],
        now: SystemTime,
    ) -> io::Result<String> {
        self.enqueue_entry(from, recipients, route, message, now, false)
    }

    /// Queues a message after a first attempt that deferred these recipients (address, why):
    /// the entry records that attempt, and its next one follows `policy`'s schedule.
    pub fn enqueue_deferred(
        &self,
        from: &str,
        deferred: &[(String, String)],
        route: serde_json::Value,
        message: &[u8],
        now: SystemTime,
        policy: &Policy,
    ) -> io::Result<String> {
        let addresses: Vec<String> = deferred.iter().map(|(a, _)| a.clone()).collect();
        self.write_entry(from, &addresses, route, message, now, false, &|entry| {
            for (r, (_, why)) in entry.recipients.iter_mut().zip(deferred) {
                r.status = RecipientStatus::Pending {
                    last_error: Some(why.clone()),
                };
            }
            entry.attempts = 1;
            entry.last_error = deferred.last().map(|(_, why)| why.clone());
            entry.next_attempt = now_secs(now) + policy.backoff(1).as_secs().max(1);
        })
    }

    fn enqueue_entry(
        &self,
        from: &str,
        recipients: &[String],
        route: serde_json::Value,
        message: &[u8],
        now: SystemTime,
        is_bounce: bool,
    ) -> io::Result<String> {
        self.write_entry(from, recipients, route, message, now, is_bounce, &|_| {})
    }

    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &self,
        from: &str,
        recipients: &[String],
        route: serde_json::Value,
        message: &[u8],
        now: SystemTime,
        is_bounce: bool,
        adjust: &dyn Fn(&mut Entry),
    ) -> io::Result<String> {
        let t = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let id = format!(
            "{:x}-{:08x}-{:x}",
            t.as_secs(),
            t.subsec_nanos(),
            random() & 0xffff_ffff
        );
        let entry = Entry {
            id: id.clone(),
            from: from.to_string(),
            recipients: recipients
                .iter()
                .map(|a| Recipient {
                    address: a.clone(),
                    status: RecipientStatus::Pending { last_error: None },
                })
                .collect(),
            route,
            size: message.len() as u64,
            created: t.as_secs(),
            attempts: 0,
            next_attempt: t.as_secs(),
            last_error: None,
            is_bounce,
        };
        let mut entry = entry;
        adjust(&mut entry);
        write_atomic(&self.dir, &self.message_path(&id), message)?;
        self.save(&entry)?;
        Ok(id)
    }

    /// Replaces an entry's metadata atomically.
    pub fn save(&self, entry: &Entry) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        write_atomic(&self.dir, &self.meta_path(&entry.id), &json)
    }

    /// Reads one entry, checking it against its message file.
    pub fn load(&self, id: &str) -> io::Result<Entry> {
        if !valid_id(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a queue id: {id:?}"),
            ));
        }
        let bytes = fs::read(self.meta_path(id))?;
        let entry: Entry = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{id}.json: {e}")))?;
        if entry.id != id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{id}.json names id {:?}", entry.id),
            ));
        }
        let size = fs::metadata(self.message_path(id))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{id}.eml: {e}")))?
            .len();
        if size != entry.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{id}.eml has {size} octets, {} expected (truncated?)",
                    entry.size
                ),
            ));
        }
        Ok(entry)
    }

    /// Reads a message's bytes.
    pub fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(self.message_path(id))?.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Moves a broken entry's files to `corrupt/`.
    fn quarantine(&self, id: &str) {
        for ext in ["json", "eml"] {
            let from = self.dir.join(format!("{id}.{ext}"));
            if from.exists() {
                let _ = fs::rename(&from, self.dir.join("corrupt").join(format!("{id}.{ext}")));
            }
        }
        let _ = fs::remove_file(self.lock_path(id));
        let _ = sync_dir(&self.dir);
    }

    /// Every queued entry, oldest first. Broken ones are moved to `corrupt/` and reported.
    pub fn list(&self) -> (Vec<Entry>, Vec<String>) {
        let mut ids = Vec::new();
        let mut problems = Vec::new();
        if let Ok(dir) = fs::read_dir(&self.dir) {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if let Some(id) = name.strip_suffix(".json") {
                    if valid_id(id) {
                        ids.push(id.to_string());
                    } else {
                        problems.push(format!("ignored odd file {name}"));
                    }
                }
            }
        }
        ids.sort();
        let mut entries = Vec::new();
        for id in ids {
            // Another runner may be rewriting it right now: skip what it holds.
            let Some(_lock) = self.try_lock(&id).ok().flatten() else {
                if let Ok(e) = self.load(&id) {
                    entries.push(e);
                }
                continue;
            };
            match self.load(&id) {
                Ok(e) => entries.push(e),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !self.meta_path(&id).exists() => {}
                Err(e) => {
                    problems.push(format!("moved to corrupt/: {e}"));
                    self.quarantine(&id);
                }
            }
        }
        entries.sort_by_key(|e| (e.created, e.id.clone()));
        (entries, problems)
    }

    /// Takes the lock of one message, or `None` when another runner holds it.
    pub fn try_lock(&self, id: &str) -> io::Result<Option<Lock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_path(id))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Removes a message (after delivery, or by hand). The metadata goes first, so a crash
    /// halfway leaves only an orphaned message file, swept later.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        if !valid_id(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a queue id: {id:?}"),
            ));
        }
        fs::remove_file(self.meta_path(id))?;
        sync_dir(&self.dir)?;
        let _ = fs::remove_file(self.message_path(id));
        let _ = fs::remove_file(self.lock_path(id));
        Ok(())
    }

    /// Message files with no metadata, older than `age`: what a crash during enqueue left.
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
            let orphan = match name.strip_suffix(".eml") {
                Some(id) => !self.meta_path(id).exists(),
                None => name.starts_with(".tmp-"),
            };
            if orphan && stale && fs::remove_file(e.path()).is_ok() {
                swept += 1;
            }
        }
        swept
    }

    /// One pass: every message due (or all, with `force`) is locked, delivered to its pending
    /// recipients through `deliver`, and updated, removed or recorded as failed.
    pub fn run(
        &self,
        now: SystemTime,
        force: bool,
        policy: &Policy,
        deliver: &mut Deliver<'_>,
    ) -> RunReport {
        self.run_until(now, force, policy, deliver, &|| false)
    }

    /// [`Spool::run`], asking `stop` before each message: once it says yes, the pass ends
    /// (the message in hand is finished first), leaving the rest queued as they were.
    pub fn run_until(
        &self,
        now: SystemTime,
        force: bool,
        policy: &Policy,
        deliver: &mut Deliver<'_>,
        stop: &dyn Fn() -> bool,
    ) -> RunReport {
        let mut report = RunReport::default();
        self.sweep_orphans(Duration::from_secs(3600), now);
        let (entries, problems) = self.list();
        report.problems = problems;
        let t = now_secs(now);
        let mut stopped = false;
        for listed in entries {
            stopped = stopped || stop();
            if stopped {
                report.deferred += 1;
                continue;
            }
            if !force && listed.next_attempt > t {
                report.deferred += 1;
                continue;
            }
            let lock = match self.try_lock(&listed.id) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    report.busy += 1;
                    continue;
                }
                Err(e) => {
                    report
                        .problems
                        .push(format!("{}: cannot lock: {e}", listed.id));
                    continue;
                }
            };
            // Reload under the lock: another runner may have finished it meanwhile.
            let mut entry = match self.load(&listed.id) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    report.problems.push(format!("moved to corrupt/: {e}"));
                    drop(lock);
                    self.quarantine(&listed.id);
                    continue;
                }
            };
            if !force && entry.next_attempt > t {
                continue;
            }
            let message = match self.message(&entry.id) {
                Ok(m) => m,
                Err(e) => {
                    report
                        .problems
                        .push(format!("moved to corrupt/: {}.eml: {e}", entry.id));
                    drop(lock);
                    self.quarantine(&entry.id);
                    continue;
                }
            };
            report.attempted += 1;
            let pending: Vec<String> = entry.pending().map(|r| r.address.clone()).collect();
            let results = if pending.is_empty() {
                Vec::new()
            } else {
                deliver(&entry, &message, &pending)
            };
            let mut last_error = None;
            for r in entry.recipients.iter_mut() {
                if !matches!(r.status, RecipientStatus::Pending { .. }) {
                    continue;
                }
                match results
                    .iter()
                    .find(|(a, _)| *a == r.address)
                    .map(|(_, x)| x)
                {
                    Some(Attempted::Delivered(reply)) => {
                        r.status = RecipientStatus::Delivered {
                            at: t,
                            reply: reply.clone(),
                        }
                    }
                    Some(Attempted::Failed(reason)) => {
                        r.status = RecipientStatus::Failed {
                            at: t,
                            reason: reason.clone(),
                        }
                    }
                    Some(Attempted::Deferred(reason)) => {
                        last_error = Some(reason.clone());
                        r.status = RecipientStatus::Pending {
                            last_error: Some(reason.clone()),
                        }
                    }
                    None => {
                        let reason = "no result for this recipient".to_string();
                        last_error = Some(reason.clone());
                        r.status = RecipientStatus::Pending {
                            last_error: Some(reason),
                        }
                    }
                }
            }
            entry.attempts += 1;
            entry.last_error = last_error;
            let expired = t.saturating_sub(entry.created) >= policy.max_lifetime.as_secs();
            if expired {
                for r in entry.recipients.iter_mut() {
                    if let RecipientStatus::Pending { last_error } = &r.status {
                        let reason = format!(
                            "gave up after {} attempts over {} hours{}",
                            entry.attempts,
                            policy.max_lifetime.as_secs() / 3600,
                            last_error
                                .as_ref()
                                .map(|e| format!("; last error: {e}"))
                                .unwrap_or_default()
                        );
                        r.status = RecipientStatus::Failed { at: t, reason };
                    }
                }
            }
            if entry.pending().next().is_some() {
                entry.next_attempt = t + policy.backoff(entry.attempts).as_secs().max(1);
                if let Err(e) = self.save(&entry) {
                    report
                        .problems
                        .push(format!("{}: cannot update: {e}", entry.id));
                }
                report.deferred += 1;
                continue;
            }
            let failed: Vec<Recipient> = entry.failed().cloned().collect();
            if failed.is_empty() {
                report.completed += 1;
            } else {
                report.failed += 1;
                if policy.bounce && !entry.is_bounce && !entry.from.is_empty() {
                    let bounce = bounce_report(&entry, &failed, &message, policy, now);
                    match self.enqueue_entry(
                        "",
                        std::slice::from_ref(&entry.from),
                        entry.route.clone(),
                        &bounce,
                        now,
                        true,
                    ) {
                        Ok(_) => report.bounces += 1,
                        Err(e) => report
                            .problems
                            .push(format!("{}: cannot queue the bounce: {e}", entry.id)),
                    }
                }
                // Keep a record of what failed, then leave the queue.
                let record = serde_json::to_vec_pretty(&entry).unwrap_or_default();
                let _ = write_atomic(
                    &self.dir.join("failed"),
                    &self.dir.join("failed").join(format!("{}.json", entry.id)),
                    &record,
                );
            }
            if let Err(e) = self.remove(&entry.id) {
                report
                    .problems
                    .push(format!("{}: cannot remove: {e}", entry.id));
            }
            drop(lock);
        }
        report
    }
}

/// A plain-text delivery failure report to the sender, quoting each server reply and the
/// original headers.
fn bounce_report(
    entry: &Entry,
    failed: &[Recipient],
    message: &[u8],
    policy: &Policy,
    now: SystemTime,
) -> Vec<u8> {
    let headers_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len().min(4096));
    let original = String::from_utf8_lossy(&message[..headers_end.min(message.len())]);
    let mut body = String::new();
    body.push_str("This is the postline queue");
    body.push_str(&format!(" on {}.\r\n\r\n", policy.reporting_host));
    body.push_str("Your message could not be delivered to these recipients:\r\n\r\n");
    for r in failed {
        if let RecipientStatus::Failed { reason, .. } = &r.status {
            body.push_str(&format!(
                "  <{}>: {}\r\n",
                r.address,
                reason.replace(['\r', '\n'], " ")
            ));
        }
    }
    body.push_str("\r\nThe headers of your message were:\r\n\r\n");
    for line in original.lines() {
        body.push_str("  ");
        body.push_str(line);
        body.push_str("\r\n");
    }
    let date = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: <{to}>\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <{id}.bounce@{host}>\r\nX-Postline-Queue-Id: {id}\r\nX-Postline-Date: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}",
        host = policy.reporting_host,
        to = entry.from,
        id = entry.id,
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> serde_json::Value {
        serde_json::json!({"server": "127.0.0.1", "port": 25})
    }

    #[test]
    fn enqueue_then_deliver_removes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let now = SystemTime::now();
        let id = spool
            .enqueue(
                "a@x",
                &["b@y".into(), "c@y".into()],
                route(),
                b"hello\r\n",
                now,
            )
            .unwrap();
        let (list, problems) = spool.list();
        assert!(problems.is_empty());
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, id);
        let mut calls = 0;
        let report = spool.run(now, false, &Policy::default(), &mut |e, msg, rcpts| {
            calls += 1;
            assert_eq!(msg, b"hello\r\n");
            assert_eq!(e.from, "a@x");
            rcpts
                .iter()
                .map(|r| (r.clone(), Attempted::Delivered("250 ok".into())))
                .collect()
        });
        assert_eq!(calls, 1);
        assert_eq!(report.completed, 1);
        assert!(spool.list().0.is_empty());
        assert!(!spool.message_path(&id).exists());
    }

    #[test]
    fn only_pending_recipients_are_retried_with_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let t0 = SystemTime::now();
        spool
            .enqueue("a@x", &["b@y".into(), "c@y".into()], route(), b"m", t0)
            .unwrap();
        let policy = Policy::default();
        let r = spool.run(t0, false, &policy, &mut |_, _, rcpts| {
            assert_eq!(rcpts, ["b@y", "c@y"]);
            vec![
                ("b@y".into(), Attempted::Delivered("250".into())),
                ("c@y".into(), Attempted::Deferred("451 later".into())),
            ]
        });
        assert_eq!(r.deferred, 1);
        let e = &spool.list().0[0];
        assert_eq!(e.attempts, 1);
        let wait = e.next_attempt - now_secs(t0);
        assert!(
            (54..=66).contains(&wait),
            "first retry after ~1 min, got {wait}"
        );
        // Not due yet: untouched.
        let r = spool.run(
            t0 + Duration::from_secs(10),
            false,
            &policy,
            &mut |_, _, _| panic!("not due"),
        );
        assert_eq!((r.attempted, r.deferred), (0, 1));
        let r = spool.run(
            t0 + Duration::from_secs(70),
            false,
            &policy,
            &mut |_, _, rcpts| {
                assert_eq!(rcpts, ["c@y"]);
                vec![("c@y".into(), Attempted::Delivered("250".into()))]
            },
        );
        assert_eq!(r.completed, 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = Policy::default();
        let secs = |n| p.backoff(n).as_secs_f64();
        assert!((54.0..=66.0).contains(&secs(1)));
        assert!((108.0..=132.0).contains(&secs(2)));
        assert!((432.0..=528.0).contains(&secs(4)));
        assert!((3240.0..=3960.0).contains(&secs(20)));
    }

    #[test]
    fn permanent_failure_bounces_to_sender_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let t0 = SystemTime::now();
        spool
            .enqueue(
                "a@x",
                &["b@y".into()],
                route(),
                b"Subject: hi\r\n\r\nbody\r\n",
                t0,
            )
            .unwrap();
        let r = spool.run(t0, false, &Policy::default(), &mut |_, _, _| {
            vec![(
                "b@y".into(),
                Attempted::Failed("550 5.1.1 User unknown".into()),
            )]
        });
        assert_eq!((r.failed, r.bounces), (1, 1));
        let (list, _) = spool.list();
        assert_eq!(list.len(), 1);
        let bounce = &list[0];
        assert!(bounce.is_bounce);
        assert_eq!(bounce.from, "");
        assert_eq!(bounce.recipients[0].address, "a@x");
        let text = String::from_utf8(spool.message(&bounce.id).unwrap()).unwrap();
        assert!(text.contains("<b@y>: 550 5.1.1 User unknown"), "{text}");
        assert!(text.contains("  Subject: hi"), "{text}");
        assert_eq!(fs::read_dir(dir.path().join("failed")).unwrap().count(), 1);
        // A failing bounce is not bounced again.
        let r = spool.run(t0, false, &Policy::default(), &mut |_, _, _| {
            vec![("a@x".into(), Attempted::Failed("550 no".into()))]
        });
        assert_eq!((r.failed, r.bounces), (1, 0));
        assert!(spool.list().0.is_empty());
    }

    #[test]
    fn expiry_fails_pending_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let t0 = SystemTime::now();
        spool
            .enqueue("a@x", &["b@y".into()], route(), b"m", t0)
            .unwrap();
        let policy = Policy {
            bounce: false,
            ..Policy::default()
        };
        let later = t0 + Duration::from_secs(6 * 24 * 3600);
        let r = spool.run(later, false, &policy, &mut |_, _, _| {
            vec![("b@y".into(), Attempted::Deferred("451".into()))]
        });
        assert_eq!(r.failed, 1);
        assert!(spool.list().0.is_empty());
    }

    #[test]
    fn corrupt_and_truncated_entries_move_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let t0 = SystemTime::now();
        let good = spool
            .enqueue("a@x", &["b@y".into()], route(), b"good", t0)
            .unwrap();
        let truncated = spool
            .enqueue("a@x", &["b@y".into()], route(), b"long message", t0)
            .unwrap();
        fs::write(spool.message_path(&truncated), b"long").unwrap();
        fs::write(dir.path().join("deadbeef-1.json"), b"{not json").unwrap();
        let mut delivered = Vec::new();
        let r = spool.run(t0, false, &Policy::default(), &mut |e, _, rcpts| {
            delivered.push(e.id.clone());
            rcpts
                .iter()
                .map(|r| (r.clone(), Attempted::Delivered("250".into())))
                .collect()
        });
        assert_eq!(delivered, [good]);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(dir.path().join("corrupt/deadbeef-1.json").exists());
        assert!(dir.path().join(format!("corrupt/{truncated}.eml")).exists());
    }

    #[test]
    fn a_held_lock_keeps_other_runners_off() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let t0 = SystemTime::now();
        let id = spool
            .enqueue("a@x", &["b@y".into()], route(), b"m", t0)
            .unwrap();
        let held = spool.try_lock(&id).unwrap().unwrap();
        let r = spool.run(t0, false, &Policy::default(), &mut |_, _, _| {
            panic!("locked")
        });
        assert_eq!(r.busy, 1);
        drop(held);
        let r = spool.run(t0, false, &Policy::default(), &mut |_, _, rcpts| {
            rcpts
                .iter()
                .map(|r| (r.clone(), Attempted::Delivered("250".into())))
                .collect()
        });
        assert_eq!(r.completed, 1);
    }

    #[test]
    fn enqueue_deferred_records_the_first_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let t0 = SystemTime::now();
        let id = spool
            .enqueue_deferred(
                "a@x",
                &[("c@y".into(), "451 4.3.0 later".into())],
                route(),
                b"bytes\r\n",
                t0,
                &Policy::default(),
            )
            .unwrap();
        let e = spool.load(&id).unwrap();
        assert_eq!(e.attempts, 1);
        assert_eq!(e.last_error.as_deref(), Some("451 4.3.0 later"));
        assert_eq!(
            e.recipients[0].status,
            RecipientStatus::Pending {
                last_error: Some("451 4.3.0 later".into())
            }
        );
        assert!((54..=66).contains(&(e.next_attempt - now_secs(t0))));
        assert_eq!(spool.message(&id).unwrap(), b"bytes\r\n");
        // Not due yet; a forced pass tries it.
        let r = spool.run(t0, false, &Policy::default(), &mut |_, _, _| {
            panic!("not due")
        });
        assert_eq!((r.attempted, r.deferred), (0, 1));
        let r = spool.run(t0, true, &Policy::default(), &mut |_, _, rcpts| {
            rcpts
                .iter()
                .map(|r| (r.clone(), Attempted::Delivered("250".into())))
                .collect()
        });
        assert_eq!(r.completed, 1);
    }

    #[test]
    fn run_until_stops_after_the_message_in_hand() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let t0 = SystemTime::now();
        for _ in 0..3 {
            spool
                .enqueue("a@x", &["b@y".into()], route(), b"m", t0)
                .unwrap();
        }
        let calls = std::cell::Cell::new(0);
        let r = spool.run_until(
            t0,
            false,
            &Policy::default(),
            &mut |_, _, rcpts| {
                calls.set(calls.get() + 1);
                rcpts
                    .iter()
                    .map(|r| (r.clone(), Attempted::Delivered("250".into())))
                    .collect()
            },
            &|| calls.get() >= 1,
        );
        assert_eq!((r.completed, r.deferred), (1, 2));
        assert_eq!(spool.list().0.len(), 2);
    }

    #[test]
    fn orphans_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        fs::write(dir.path().join("abc-1.eml"), b"orphan").unwrap();
        fs::write(dir.path().join(".tmp-x-1"), b"half").unwrap();
        assert_eq!(
            spool.sweep_orphans(Duration::from_secs(3600), SystemTime::now()),
            0
        );
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(spool.sweep_orphans(Duration::from_secs(3600), later), 2);
    }
}
