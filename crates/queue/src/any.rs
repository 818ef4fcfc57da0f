//! A store chosen at run time, as a command line or a configuration file names it: a spool
//! directory, or a PostgreSQL URL.

use std::io;
use std::time::{Duration, SystemTime};

use crate::entry::Entry;
#[cfg(feature = "postgres")]
use crate::pg::{Lease, PgStore};
use crate::spool::{LoadError, Lock, Spool};
use crate::store::Store;

/// The spool or a database.
#[derive(Clone)]
pub enum AnyStore {
    /// A local spool directory.
    Spool(Spool),
    /// A PostgreSQL database shared by several nodes.
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
}

/// The lock of an [`AnyStore`].
#[derive(Debug)]
pub enum AnyLock {
    /// A spool's file lock.
    Spool(Lock),
    /// A database lease.
    #[cfg(feature = "postgres")]
    Postgres(Lease),
}

impl AnyStore {
    /// Whether `location` names a database (`postgres://` or `postgresql://`) rather than a
    /// directory.
    pub fn is_database(location: &str) -> bool {
        let l = location.to_ascii_lowercase();
        l.starts_with("postgres://") || l.starts_with("postgresql://")
    }
}

/// Calls the same method on whichever store it is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Spool($s) => $e,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    type Lock = AnyLock;
    fn describe(&self) -> String {
        each!(self, s => Store::describe(s))
    }
    fn ids(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        each!(self, s => Store::ids(s))
    }
    fn load(&self, id: &str) -> Result<Entry, LoadError> {
        each!(self, s => Store::load(s, id))
    }
    fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        each!(self, s => Store::message(s, id))
    }
    fn contains(&self, id: &str) -> bool {
        each!(self, s => Store::contains(s, id))
    }
    fn try_lock(&self, id: &str) -> io::Result<Option<AnyLock>> {
        match self {
            AnyStore::Spool(s) => Ok(Store::try_lock(s, id)?.map(AnyLock::Spool)),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => Ok(Store::try_lock(s, id)?.map(AnyLock::Postgres)),
        }
    }
    fn enqueue_entry(&self, entry: Entry, message: &[u8]) -> io::Result<String> {
        each!(self, s => Store::enqueue_entry(s, entry, message))
    }
    fn save_unsynced(&self, entry: &Entry) -> io::Result<()> {
        each!(self, s => Store::save_unsynced(s, entry))
    }
    fn remove_unsynced(&self, id: &str) -> io::Result<()> {
        each!(self, s => Store::remove_unsynced(s, id))
    }
    fn record_failed(&self, entry: &Entry) -> io::Result<()> {
        each!(self, s => Store::record_failed(s, entry))
    }
    fn sync(&self) -> io::Result<()> {
        each!(self, s => Store::sync(s))
    }
    fn free_bytes(&self) -> io::Result<u64> {
        each!(self, s => Store::free_bytes(s))
    }
    fn quarantine(&self, id: &str) {
        each!(self, s => Store::quarantine(s, id))
    }
    fn quarantine_place(&self) -> &'static str {
        each!(self, s => Store::quarantine_place(s))
    }
    fn sweep_orphans(&self, age: Duration, now: SystemTime) -> usize {
        each!(self, s => Store::sweep_orphans(s, age, now))
    }
    fn load_many(&self, ids: &[String]) -> Vec<Result<Entry, LoadError>> {
        each!(self, s => Store::load_many(s, ids))
    }
    fn abandon(&self, lock: AnyLock) {
        match (self, lock) {
            #[cfg(feature = "postgres")]
            (AnyStore::Postgres(s), AnyLock::Postgres(l)) => Store::abandon(s, l),
            (_, l) => drop(l),
        }
    }
    fn confirm(&self, id: &str) -> io::Result<()> {
        each!(self, s => Store::confirm(s, id))
    }
    fn message_location(&self, id: &str) -> String {
        each!(self, s => Store::message_location(s, id))
    }
}
