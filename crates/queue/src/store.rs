//! Where the queue lives. The [`Runner`](crate::Runner), the retry policy, bounces and the
//! per-recipient state are one piece of code over every store; a store only keeps entries
//! and messages, and keeps two runners off the same message.
//!
//! The contract a store keeps, whatever it is made of:
//! - an entry is queued exactly when [`Store::load`] finds it; [`Store::enqueue_entry`] makes
//!   the message and its entry durable before it returns, both or neither;
//! - [`Store::try_lock`] gives one runner (thread, process or node) a message at a time;
//!   another runner gets `None` until the lock drops (or, for a store shared by machines,
//!   until a dead holder's lease runs out);
//! - writes made by [`Store::save_unsynced`], [`Store::remove_unsynced`] and
//!   [`Store::record_failed`] are durable once [`Store::sync`] returns `Ok` (a store may make
//!   each durable at once), in the order they were made: the runner writes a bounce and the
//!   `failed` record before it removes the entry, so a crash between them repeats the ending
//!   rather than lose it.

use std::io;
use std::time::{Duration, SystemTime};

use crate::entry::Entry;
use crate::spool::LoadError;

/// A queue's storage: the local [`Spool`](crate::Spool) (the default), or a database shared
/// by several sender nodes.
pub trait Store: Send + Sync {
    /// What keeps other runners off a message while one works on it: a file lock, a
    /// lease. Released when dropped.
    type Lock: Send + Sync;

    /// Where the store is, for messages: a directory, a database without its password.
    fn describe(&self) -> String;

    /// Ids of every queued message, oldest first, and a line for each oddity found.
    fn ids(&self) -> io::Result<(Vec<String>, Vec<String>)>;

    /// One entry.
    fn load(&self, id: &str) -> Result<Entry, LoadError>;

    /// A message's bytes.
    fn message(&self, id: &str) -> io::Result<Vec<u8>>;

    /// Whether an entry with this id is queued.
    fn contains(&self, id: &str) -> bool;

    /// Takes a message for this runner, or `None` when another holds it.
    fn try_lock(&self, id: &str) -> io::Result<Option<Self::Lock>>;

    /// Queues a message whose entry is ready (its id new); durable when it returns.
    fn enqueue_entry(&self, entry: Entry, message: &[u8]) -> io::Result<String>;

    /// Replaces an entry (its recipients' state, its schedule); durable after
    /// [`Store::sync`].
    fn save_unsynced(&self, entry: &Entry) -> io::Result<()>;

    /// Removes a message and its entry; durable after [`Store::sync`].
    fn remove_unsynced(&self, id: &str) -> io::Result<()>;

    /// Keeps the record of a message that left the queue with failed recipients.
    fn record_failed(&self, entry: &Entry) -> io::Result<()>;

    /// Makes every write so far durable.
    fn sync(&self) -> io::Result<()>;

    /// Room left for results, in bytes; the runner delivers nothing while it is below
    /// [`Policy::min_free_bytes`](crate::Policy::min_free_bytes). A store whose room is not
    /// this machine's disk says `u64::MAX`.
    fn free_bytes(&self) -> io::Result<u64>;

    /// Sets aside an entry that can never be sent as it is (called under its lock), in
    /// [`Store::quarantine_place`].
    fn quarantine(&self, id: &str);

    /// Where [`Store::quarantine`] puts entries, for messages.
    fn quarantine_place(&self) -> &'static str;

    /// Removes what an interrupted enqueue left behind, older than `age`; how many.
    fn sweep_orphans(&self, age: Duration, now: SystemTime) -> usize;

    /// Several entries, as [`Store::load`] would read them one by one (a database reads
    /// them in one query).
    fn load_many(&self, ids: &[String]) -> Vec<Result<Entry, LoadError>> {
        ids.iter().map(|id| self.load(id)).collect()
    }

    /// Lets go of a message whose results could not be recorded: a lock that can be left to
    /// run out (a lease) is, so whoever takes the message next knows it may have been sent.
    fn abandon(&self, lock: Self::Lock) {
        drop(lock);
    }

    /// Whether this runner still holds `id` (its lease has not run out and gone to another
    /// node): checked before an ending that cannot be fenced (a bounce) is written.
    fn confirm(&self, id: &str) -> io::Result<()> {
        let _ = id;
        Ok(())
    }

    /// Where a message's bytes are, for people: a file, a row.
    fn message_location(&self, id: &str) -> String {
        format!("{} (message {id})", self.describe())
    }

    /// Replaces an entry, durably.
    fn save(&self, entry: &Entry) -> io::Result<()> {
        self.save_unsynced(entry)?;
        self.sync()
    }

    /// Removes a message, durably.
    fn remove(&self, id: &str) -> io::Result<()> {
        self.remove_unsynced(id)?;
        self.sync()
    }

    /// Every queued entry, oldest first, and a line for each problem. An entry that can
    /// never be sent as it is gets set aside (when no runner holds it); one that cannot be
    /// read now is reported and left for later.
    fn list(&self) -> (Vec<Entry>, Vec<String>) {
        let (ids, mut problems) = match self.ids() {
            Ok(x) => x,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![format!("cannot read {}: {e}", self.describe())],
                )
            }
        };
        let mut entries = Vec::new();
        for id in ids {
            match self.load(&id) {
                Ok(e) => entries.push(e),
                Err(LoadError::Gone) => {}
                Err(e @ LoadError::Corrupt(_)) => {
                    // Only under its lock: a runner may be replacing it right now.
                    if let Ok(Some(_lock)) = self.try_lock(&id) {
                        match self.load(&id) {
                            Ok(entry) => entries.push(entry),
                            Err(LoadError::Corrupt(_)) => {
                                problems.push(format!("moved to {}: {e}", self.quarantine_place()));
                                self.quarantine(&id);
                            }
                            Err(_) => {}
                        }
                    }
                }
                Err(e) => problems.push(format!("{id}: skipped: {e}")),
            }
        }
        entries.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        (entries, problems)
    }
}

/// Why a store refused to write a runner's results: the message is no longer this runner's
/// (a shared store's lease ran out while the runner stalled, and another node may have taken
/// the message). What the runner learnt is not recorded; the runner that holds the message
/// now decides, and this one lets it go rather than retry forever.
#[derive(Debug)]
pub struct LeaseLost(pub String);

impl std::fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: this runner's lease on it ran out (another node may have taken it)",
            self.0
        )
    }
}

impl std::error::Error for LeaseLost {}

/// Whether `e` is a [`LeaseLost`].
pub fn is_lease_lost(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LeaseLost>())
}
