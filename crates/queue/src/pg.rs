//! The queue in PostgreSQL, shared by every sender node that points at the same database.
//!
//! A message is a row of `postline_messages` (its bytes, stored once whatever the number of
//! recipients) and a row of `postline_entries` (its [`Entry`] as JSON, the same document the
//! spool writes, with the schedule copied out for the index). A node takes a message with a
//! **lease**: `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)` sets its name and a
//! deadline, which the node renews while it holds the message. Every write of a runner's
//! results is fenced by the lease (`WHERE lease_owner = me`): a node that lost its lease (it
//! stalled past the deadline and another node took the message) cannot overwrite what the
//! other recorded. A node that dies simply stops renewing; once its leases run out, another
//! node finishes its work. Rows are written in autocommit, so each write is durable when it
//! returns (PostgreSQL's `synchronous_commit`), and [`Store::sync`] has nothing left to do.
//!
//! The connection runs on a thread of its own (a runner's results may be recorded from
//! inside an async runtime, where the blocking client must not run), which also renews the
//! leases. It is opened again after a failure.
//!
//! The schema is created and upgraded by [`PgStore::migrate`] (`postline queue migrate`);
//! [`PgStore::connect`] refuses a database whose schema is missing or newer.

use std::collections::HashSet;
use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use postgres::{Client, NoTls};

use crate::entry::{Entry, RecipientStatus};
use crate::spool::{
    checked_id, checked_size, parse_entry, valid_id, LoadError, DEFAULT_MAX_MESSAGE_SIZE,
};
use crate::store::{LeaseLost, Store};

/// The schema version this postline writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// Each version's migration, in order: `MIGRATIONS[n]` takes a database from version `n` to
/// `n + 1`.
const MIGRATIONS: &[&str] = &[include_str!("pg/0001_queue.sql")];

/// How long a lease lasts unless told otherwise; renewed every third of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// A queue in PostgreSQL. Cheap to share: clones use the same connection.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Sender<Job>>,
    /// The URL without its password, for messages.
    shown: String,
    /// This node's name in `lease_owner`.
    owner: String,
    lease: Duration,
    max_message_size: u64,
    /// Ids whose lease this node holds (renewed by the connection thread).
    held: Arc<Mutex<HashSet<String>>>,
    _thread: JoinHandle<()>,
}

type Job = Box<dyn FnOnce(&mut Option<Client>, &postgres::Config) + Send>;

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.inner.shown)
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

/// A message leased by this node; the lease is given back when it drops.
pub struct Lease {
    store: PgStore,
    id: String,
    /// Left to run out rather than given back: what was done under it is not recorded.
    abandoned: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.store.held().remove(&self.id);
        // Abandoned, or dropped by a panic (perhaps with the message on the wire): the lease
        // is left to run out, so the node that takes the message next marks it in doubt.
        if self.abandoned || std::thread::panicking() {
            return;
        }
        let (id, owner) = (self.id.clone(), self.store.inner.owner.clone());
        // Best effort: a lease not given back runs out by itself.
        let _ = self.store.call(move |c| {
            c.execute(
                "UPDATE postline_entries SET lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2",
                &[&id, &owner],
            )
            .map(|_| ())
        });
    }
}

fn db_err(e: postgres::Error) -> io::Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Authentication, a database that does not exist, missing rights: the same next
        // time, a configuration to fix (`PermissionDenied`); the rest may pass.
        let kind = if code.starts_with("28") || code == "3D000" || code == "42501" {
            io::ErrorKind::PermissionDenied
        } else {
            io::ErrorKind::Other
        };
        return io::Error::new(kind, format!("PostgreSQL: {} ({code})", db.message()));
    }
    let text = match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    };
    let kind = if e.is_closed() {
        io::ErrorKind::BrokenPipe
    } else if text.contains("TLS") {
        // The server wants TLS, which postline does not speak to PostgreSQL.
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("PostgreSQL: {text}"))
}

/// The URL as messages show it: rebuilt from what was parsed (user, hosts, ports,
/// database), so no password, wherever it was written, can appear.
fn without_password(url: &str) -> String {
    let Ok(config) = url.parse::<postgres::Config>() else {
        return "postgres://(a URL that could not be read)".to_string();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// Whether the connection stays on this machine (every host a loopback address or a Unix
/// socket, and so every `hostaddr`), so it may go without TLS; anything else needs
/// `sslmode=disable` set in the URL's parameters.
fn local_or_allowed(config: &postgres::Config) -> bool {
    if config.get_ssl_mode() == postgres::config::SslMode::Disable {
        return true;
    }
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            postgres::config::Host::Unix(_) => true,
            postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
        && config.get_hostaddrs().iter().all(|a| a.is_loopback())
}

impl PgStore {
    /// Connects to the queue at `url` (`postgres://user@host/db`; the password from the URL,
    /// or else from the `PGPASSWORD` environment variable). The schema must be there and not newer
    /// than this postline (see [`PgStore::migrate`]). Without TLS, so only a loopback address
    /// or a Unix socket is accepted, unless the URL says `sslmode=disable`.
    pub fn connect(url: &str) -> io::Result<PgStore> {
        PgStore::connect_with_lease(url, DEFAULT_LEASE)
    }

    /// [`PgStore::connect`] with leases of this length (at least a second): a shorter one
    /// lets other nodes take over a dead node's messages sooner, and costs more renewals.
    pub fn connect_with_lease(url: &str, lease: Duration) -> io::Result<PgStore> {
        let store = PgStore::open(url, lease.max(Duration::from_secs(1)))?;
        let version = store.schema_version()?;
        match version {
            v if v == SCHEMA_VERSION => Ok(store),
            0 => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no postline queue yet: run `postline queue migrate --queue URL`",
                    store.inner.shown
                ),
            )),
            v if v < SCHEMA_VERSION => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds queue schema {v}, this postline needs {SCHEMA_VERSION}: run \
                     `postline queue migrate`",
                    store.inner.shown
                ),
            )),
            v => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds queue schema {v}, newer than this postline ({SCHEMA_VERSION})",
                    store.inner.shown
                ),
            )),
        }
    }

    /// Creates or upgrades the schema to [`SCHEMA_VERSION`], in one transaction under a lock
    /// (two nodes migrating at once do it once). Returns the version found before.
    pub fn migrate(url: &str) -> io::Result<i32> {
        let store = PgStore::open(url, DEFAULT_LEASE)?;
        let found = store.call(|c| {
            let mut tx = c.transaction()?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7402211); \
                 CREATE TABLE IF NOT EXISTS postline_schema (version integer NOT NULL); ",
            )?;
            let found: i32 = tx
                .query_opt("SELECT max(version) FROM postline_schema", &[])?
                .and_then(|r| r.get::<_, Option<i32>>(0))
                .unwrap_or(0);
            if found > SCHEMA_VERSION {
                // Nothing to do, and nothing this postline may touch.
                return Ok(found);
            }
            for (n, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
                tx.batch_execute(sql)?;
                tx.execute(
                    "INSERT INTO postline_schema (version) VALUES ($1)",
                    &[&(n as i32 + 1)],
                )?;
            }
            tx.commit()?;
            Ok(found)
        })?;
        if found > SCHEMA_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds queue schema {found}, newer than this postline \
                     ({SCHEMA_VERSION}): nothing was changed",
                    store.inner.shown
                ),
            ));
        }
        Ok(found)
    }

    fn open(url: &str, lease: Duration) -> io::Result<PgStore> {
        let mut config: postgres::Config = url.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a PostgreSQL URL: {e}"),
            )
        })?;
        // Bounded waits: a database that hangs must not outlast the leases.
        config.connect_timeout(Duration::from_secs(10));
        config.keepalives_idle(Duration::from_secs(30));
        config.options("-c statement_timeout=30000");
        if config.get_password().is_none() {
            if let Some(password) = std::env::var_os("PGPASSWORD") {
                config.password(password.as_encoded_bytes());
            }
        }
        let shown = without_password(url);
        if !local_or_allowed(&config) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{shown}: postline talks to PostgreSQL without TLS; for a server that is not \
                     on this machine add sslmode=disable to the URL to accept that"
                ),
            ));
        }
        let held: Arc<Mutex<HashSet<String>>> = Arc::default();
        let owner = format!(
            "{}:{}:{:08x}",
            rustix::system::uname().nodename().to_string_lossy(),
            std::process::id(),
            crate::policy::random() as u32
        );
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = {
            let (held, owner) = (held.clone(), owner.clone());
            let config = config.clone();
            std::thread::Builder::new()
                .name("postline-pg".into())
                .spawn(move || serve(rx, &config, &owner, &held, lease))?
        };
        let store = PgStore {
            inner: Arc::new(Inner {
                jobs: Mutex::new(tx),
                shown,
                owner,
                lease,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                held,
                _thread: thread,
            }),
        };
        // Connect now, so a wrong URL or a server that is down is known at once.
        store.call(|_| Ok(()))?;
        Ok(store)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `url` as messages show it: without its password.
    pub fn shown(url: &str) -> String {
        without_password(url)
    }

    /// Whether `url` carries a password (in its user part or its parameters).
    pub fn has_password(url: &str) -> bool {
        url.parse::<postgres::Config>()
            .is_ok_and(|c| c.get_password().is_some())
    }

    /// This node's name in the leases it takes (host, process, a random part).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// How long a lease lasts before another node may take the message.
    pub fn lease_duration(&self) -> Duration {
        self.inner.lease
    }

    fn schema_version(&self) -> io::Result<i32> {
        self.call(|c| {
            let exists: bool = c
                .query_one("SELECT to_regclass('postline_schema') IS NOT NULL", &[])?
                .get(0);
            if !exists {
                return Ok(0);
            }
            Ok(
                c.query_one("SELECT coalesce(max(version), 0) FROM postline_schema", &[])?
                    .get(0),
            )
        })
    }

    /// Runs `f` on the connection thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client, config| {
            let result = match connected(client, config) {
                Ok(c) => {
                    let r = f(c).map_err(db_err);
                    // A broken connection is opened again on the next call.
                    if c.is_closed() {
                        *client = None;
                    }
                    r
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(result);
        });
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| io::Error::other("the PostgreSQL connection thread is gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the PostgreSQL connection thread is gone"))?
    }

    /// A message's id as the row key, refusing what is not a queue id.
    fn checked(id: &str) -> io::Result<String> {
        checked_id(id).map(|()| id.to_string())
    }

    /// Whether an entry with this id is queued; a failure to ask is an error, never "no".
    fn exists(&self, id: &str) -> io::Result<bool> {
        let key = PgStore::checked(id)?;
        self.call(move |c| {
            c.query_opt("SELECT 1 FROM postline_entries WHERE id = $1", &[&key])
                .map(|r| r.is_some())
        })
    }

    /// Lease-fenced writes fail with this when the lease is no longer this node's.
    fn lease_lost(id: &str) -> io::Error {
        io::Error::other(LeaseLost(id.to_string()))
    }
}

/// A taken-over entry with its pending recipients marked in doubt (the node whose lease ran
/// out may have sent them) and why: its JSON, schedule and whether anything is pending.
/// `None` when it cannot be read: the runner deals with it as with any corrupt entry.
fn in_doubt(json: &str, previous: &str) -> Option<(String, i64, bool)> {
    let mut entry: Entry = serde_json::from_str(json).ok()?;
    for r in &mut entry.recipients {
        if let RecipientStatus::Pending { in_doubt, .. } = &mut r.status {
            *in_doubt = true;
        }
    }
    entry.last_error = Some(format!(
        "taken over from {previous}, whose lease ran out while it held the message (it may \
         have sent it)"
    ));
    let pending = entry.pending().next().is_some();
    Some((
        serde_json::to_string(&entry).ok()?,
        entry.next_attempt as i64,
        pending,
    ))
}

/// An entry read from its row, checked against its message's length.
fn checked_entry(id: &str, json: &str, size: Option<i32>) -> Result<Entry, LoadError> {
    let entry = parse_entry(id, &format!("entry {id}"), json.as_bytes())?;
    match size {
        Some(n) if n as u64 == entry.size => Ok(entry),
        Some(n) => Err(LoadError::Corrupt(format!(
            "message {id} has {n} octets, {} expected",
            entry.size
        ))),
        None => Err(LoadError::Corrupt(format!("message {id} is missing"))),
    }
}

/// The open connection, opened when needed.
fn connected<'c>(
    client: &'c mut Option<Client>,
    config: &postgres::Config,
) -> io::Result<&'c mut Client> {
    if client.is_none() {
        *client = Some(config.connect(NoTls).map_err(db_err)?);
    }
    client
        .as_mut()
        .ok_or_else(|| io::Error::other("no PostgreSQL connection"))
}

/// The connection thread: runs jobs, and renews this node's leases every third of their
/// length, until every [`PgStore`] is gone.
fn serve(
    rx: Receiver<Job>,
    config: &postgres::Config,
    owner: &str,
    held: &Mutex<HashSet<String>>,
    lease: Duration,
) {
    let mut client: Option<Client> = None;
    let every = lease / 3;
    let mut next_renewal = Instant::now() + every;
    loop {
        let wait = next_renewal.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(job) => {
                // A job that panics costs its caller an answer (it sees the channel close),
                // never the thread: the node goes on with a fresh connection.
                let run = std::panic::AssertUnwindSafe(|| job(&mut client, config));
                if std::panic::catch_unwind(run).is_err() {
                    client = None;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= next_renewal {
            let ids: Vec<String> = held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            if client.is_some() || !ids.is_empty() {
                if let Ok(c) = connected(&mut client, config) {
                    let secs = lease.as_secs_f64();
                    if !ids.is_empty() {
                        let _ = c.execute(
                            "UPDATE postline_entries \
                             SET lease_until = now() + make_interval(secs => $3) \
                             WHERE lease_owner = $1 AND id = ANY($2)",
                            &[&owner, &ids, &secs],
                        );
                    }
                    let _ = c.execute(
                        "UPDATE postline_slots SET until = now() + make_interval(secs => $2) \
                         WHERE owner = $1",
                        &[&owner, &secs],
                    );
                    if c.is_closed() {
                        client = None;
                    }
                }
            }
            next_renewal = Instant::now() + every;
        }
    }
}

impl Store for PgStore {
    type Lock = Lease;

    fn describe(&self) -> String {
        self.inner.shown.clone()
    }

    fn ids(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        let ids = self.call(|c| {
            Ok(c.query("SELECT id FROM postline_entries ORDER BY id", &[])?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<String>>())
        })?;
        Ok((ids, Vec::new()))
    }

    fn load(&self, id: &str) -> Result<Entry, LoadError> {
        let key = PgStore::checked(id).map_err(|_| LoadError::BadId(id.into()))?;
        let row = self
            .call(move |c| {
                c.query_opt(
                    "SELECT e.entry::text, length(m.body) FROM postline_entries e \
                     LEFT JOIN postline_messages m ON m.id = e.id WHERE e.id = $1",
                    &[&key],
                )
                .map(|r| r.map(|r| (r.get::<_, String>(0), r.get::<_, Option<i32>>(1))))
            })
            .map_err(LoadError::Unreadable)?;
        let Some((json, size)) = row else {
            return Err(LoadError::Gone);
        };
        checked_entry(id, &json, size)
    }

    fn load_many(&self, ids: &[String]) -> Vec<Result<Entry, LoadError>> {
        let keys: Vec<String> = ids.iter().filter(|id| valid_id(id)).cloned().collect();
        let rows = self.call(move |c| {
            let rows = c.query(
                "SELECT e.id, e.entry::text, length(m.body) FROM postline_entries e \
                 LEFT JOIN postline_messages m ON m.id = e.id WHERE e.id = ANY($1)",
                &[&keys],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        (r.get::<_, String>(1), r.get::<_, Option<i32>>(2)),
                    )
                })
                .collect::<std::collections::HashMap<String, (String, Option<i32>)>>())
        });
        let mut rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                let kind = e.kind();
                return ids
                    .iter()
                    .map(|_| Err(LoadError::Unreadable(io::Error::new(kind, e.to_string()))))
                    .collect();
            }
        };
        ids.iter()
            .map(|id| {
                if !valid_id(id) {
                    return Err(LoadError::BadId(id.clone()));
                }
                let (json, size) = rows.remove(id).ok_or(LoadError::Gone)?;
                checked_entry(id, &json, size)
            })
            .collect()
    }

    fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        let key = PgStore::checked(id)?;
        self.call(move |c| {
            c.query_opt("SELECT body FROM postline_messages WHERE id = $1", &[&key])
                .map(|r| r.map(|r| r.get::<_, Vec<u8>>(0)))
        })?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no message {id}")))
    }

    fn contains(&self, id: &str) -> bool {
        self.exists(id).unwrap_or(false)
    }

    fn try_lock(&self, id: &str) -> io::Result<Option<Lease>> {
        let key = PgStore::checked(id)?;
        let (owner, secs) = (self.inner.owner.clone(), self.inner.lease.as_secs_f64());
        // The lease, and for a takeover the in-doubt marking and its record, in one
        // transaction: if any part fails nothing is changed, the dead node stays the owner,
        // and the next taker does it all again.
        let got = self.call(move |c| {
            let mut tx = c.transaction()?;
            let Some(row) = tx.query_opt(
                "SELECT lease_owner, entry::text FROM postline_entries WHERE id = $1 \
                 AND (lease_until IS NULL OR lease_until < now()) FOR UPDATE SKIP LOCKED",
                &[&key],
            )?
            else {
                return Ok(false);
            };
            let previous: Option<String> = row.get(0);
            tx.execute(
                "UPDATE postline_entries \
                 SET lease_owner = $2, lease_until = now() + make_interval(secs => $3) \
                 WHERE id = $1",
                &[&key, &owner, &secs],
            )?;
            if let Some(previous) = previous {
                if let Some((json, next, pending)) = in_doubt(&row.get::<_, String>(1), &previous) {
                    tx.execute(
                        "UPDATE postline_entries SET entry = $2::text::jsonb, \
                         next_attempt = $3, pending = $4 WHERE id = $1",
                        &[&key, &json, &next, &pending],
                    )?;
                }
                tx.execute(
                    "INSERT INTO postline_takeovers (id, previous_owner) VALUES ($1, $2)",
                    &[&key, &previous],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })?;
        if !got {
            return Ok(None);
        }
        self.held().insert(id.to_string());
        Ok(Some(Lease {
            store: self.clone(),
            id: id.to_string(),
            abandoned: false,
        }))
    }

    fn abandon(&self, mut lock: Lease) {
        lock.abandoned = true;
    }

    fn confirm(&self, id: &str) -> io::Result<()> {
        let key = PgStore::checked(id)?;
        let owner = self.inner.owner.clone();
        let ours = self.call(move |c| {
            c.query_opt(
                "SELECT 1 FROM postline_entries WHERE id = $1 AND lease_owner = $2",
                &[&key, &owner],
            )
            .map(|r| r.is_some())
        })?;
        if ours {
            Ok(())
        } else {
            Err(PgStore::lease_lost(id))
        }
    }

    fn enqueue_entry(&self, mut entry: Entry, message: &[u8]) -> io::Result<String> {
        checked_size(message.len(), self.inner.max_message_size)?;
        let id = PgStore::checked(&entry.id)?;
        entry.size = message.len() as u64;
        let json = serde_json::to_string(&entry).map_err(io::Error::other)?;
        let (body, next, pending) = (
            message.to_vec(),
            entry.next_attempt as i64,
            entry.pending().next().is_some(),
        );
        let key = id.clone();
        let inserted = self.call(move |c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "INSERT INTO postline_messages (id, body) VALUES ($1, $2) \
                 ON CONFLICT (id) DO NOTHING",
                &[&key, &body],
            )?;
            if n == 1 {
                tx.execute(
                    "INSERT INTO postline_entries (id, entry, next_attempt, pending) \
                     VALUES ($1, $2::text::jsonb, $3, $4)",
                    &[&key, &json, &next, &pending],
                )?;
            }
            tx.commit()?;
            Ok(n == 1)
        })?;
        if !inserted {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{id} is already queued"),
            ));
        }
        Ok(id)
    }

    fn save_unsynced(&self, entry: &Entry) -> io::Result<()> {
        let key = PgStore::checked(&entry.id)?;
        let json = serde_json::to_string(entry).map_err(io::Error::other)?;
        let (next, pending) = (entry.next_attempt as i64, entry.pending().next().is_some());
        let owner = self.inner.owner.clone();
        let fenced = self.held().contains(&entry.id);
        let n = self.call(move |c| {
            if fenced {
                c.execute(
                    "UPDATE postline_entries SET entry = $2::text::jsonb, next_attempt = $3, \
                     pending = $4 WHERE id = $1 AND lease_owner = $5",
                    &[&key, &json, &next, &pending, &owner],
                )
            } else {
                // Not leased by this node (a change by hand): only while no one holds it.
                c.execute(
                    "UPDATE postline_entries SET entry = $2::text::jsonb, next_attempt = $3, \
                     pending = $4 WHERE id = $1 \
                     AND (lease_until IS NULL OR lease_until < now())",
                    &[&key, &json, &next, &pending],
                )
            }
        })?;
        if n == 1 {
            Ok(())
        } else {
            Err(PgStore::lease_lost(&entry.id))
        }
    }

    fn remove_unsynced(&self, id: &str) -> io::Result<()> {
        let key = PgStore::checked(id)?;
        let owner = self.inner.owner.clone();
        let fenced = self.held().contains(id);
        let n = self.call(move |c| {
            let mut tx = c.transaction()?;
            let n = if fenced {
                tx.execute(
                    "DELETE FROM postline_entries WHERE id = $1 AND lease_owner = $2",
                    &[&key, &owner],
                )?
            } else {
                tx.execute(
                    "DELETE FROM postline_entries WHERE id = $1 \
                     AND (lease_until IS NULL OR lease_until < now())",
                    &[&key],
                )?
            };
            if n == 1 {
                tx.execute("DELETE FROM postline_messages WHERE id = $1", &[&key])?;
            }
            tx.commit()?;
            Ok(n)
        })?;
        if n == 1 {
            return Ok(());
        }
        // Nothing deleted: gone already, or another node's now (an error to ask that is an
        // error, never taken for "gone").
        if self.exists(id)? {
            Err(PgStore::lease_lost(id))
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no message {id}"),
            ))
        }
    }

    fn record_failed(&self, entry: &Entry) -> io::Result<()> {
        let key = PgStore::checked(&entry.id)?;
        let json = serde_json::to_string(entry).map_err(io::Error::other)?;
        self.call(move |c| {
            c.execute(
                "INSERT INTO postline_failed (id, entry) VALUES ($1, $2::text::jsonb) \
                 ON CONFLICT (id) DO UPDATE SET entry = excluded.entry, at = now()",
                &[&key, &json],
            )
            .map(|_| ())
        })
    }

    fn sync(&self) -> io::Result<()> {
        // Every write was committed when it returned.
        Ok(())
    }

    fn free_bytes(&self) -> io::Result<u64> {
        // The database's disk is not this machine's to measure; a full one fails the write,
        // which the runner keeps in memory and retries.
        Ok(u64::MAX)
    }

    fn quarantine(&self, id: &str) {
        let Ok(key) = PgStore::checked(id) else {
            return;
        };
        let _ = self.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO postline_corrupt (id, entry, body) \
                 SELECT e.id, e.entry::text, m.body FROM postline_entries e \
                 LEFT JOIN postline_messages m ON m.id = e.id WHERE e.id = $1 \
                 ON CONFLICT (id) DO NOTHING",
                &[&key],
            )?;
            tx.execute("DELETE FROM postline_entries WHERE id = $1", &[&key])?;
            tx.execute("DELETE FROM postline_messages WHERE id = $1", &[&key])?;
            tx.commit()
        });
    }

    fn quarantine_place(&self) -> &'static str {
        "postline_corrupt"
    }

    fn sweep_orphans(&self, _age: Duration, _now: SystemTime) -> usize {
        // A message and its entry are written in one transaction: nothing is left half.
        0
    }
}

/// A connection slot this node holds; given back when dropped.
struct Slot {
    store: PgStore,
    destination: String,
    slot: i32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (destination, slot, owner) = (
            self.destination.clone(),
            self.slot,
            self.store.inner.owner.clone(),
        );
        // Best effort: a slot not given back runs out with its lease.
        let _ = self.store.call(move |c| {
            c.execute(
                "UPDATE postline_slots SET owner = NULL, until = NULL \
                 WHERE destination = $1 AND slot = $2 AND owner = $3",
                &[&destination, &slot, &owner],
            )
            .map(|_| ())
        });
    }
}

/// Connection slots in the database: every node sharing it counts against one limit per
/// destination. A slot is leased (renewed with the node's message leases), so a dead node's
/// slots come back when their leases run out.
impl crate::smtp::Limiter for PgStore {
    fn acquire(
        &self,
        destination: &str,
        limit: usize,
    ) -> io::Result<Option<crate::smtp::SlotGuard>> {
        Self::acquire_slot(self, destination, limit)
    }

    fn reserve(&self, destination: &str, n: usize, per_second: f64) -> io::Result<Duration> {
        let dest = destination.to_ascii_lowercase();
        let span = n as f64 / per_second.max(f64::MIN_POSITIVE);
        let wait: f64 = self.call(move |c| {
            c.execute(
                "INSERT INTO postline_rates (destination, next_free) VALUES ($1, now()) \
                 ON CONFLICT DO NOTHING",
                &[&dest],
            )?;
            Ok(c.query_one(
                "WITH cur AS (SELECT greatest(next_free, clock_timestamp()) AS start \
                              FROM postline_rates WHERE destination = $1 FOR UPDATE) \
                 UPDATE postline_rates r SET next_free = cur.start + make_interval(secs => $2) \
                 FROM cur WHERE r.destination = $1 \
                 RETURNING extract(epoch FROM cur.start - clock_timestamp())::float8",
                &[&dest, &span],
            )?
            .get(0))
        })?;
        Ok(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
    }
}

impl PgStore {
    fn acquire_slot(
        &self,
        destination: &str,
        limit: usize,
    ) -> io::Result<Option<crate::smtp::SlotGuard>> {
        let dest = destination.to_ascii_lowercase();
        let limit = i32::try_from(limit).unwrap_or(i32::MAX).max(1);
        let (owner, secs) = (self.inner.owner.clone(), self.inner.lease.as_secs_f64());
        let key = dest.clone();
        let got = self.call(move |c| {
            c.execute(
                "INSERT INTO postline_slots (destination, slot) \
                 SELECT $1, g FROM generate_series(0, $2 - 1) AS g ON CONFLICT DO NOTHING",
                &[&key, &limit],
            )?;
            c.query_opt(
                "UPDATE postline_slots SET owner = $3, until = now() + make_interval(secs => $4) \
                 WHERE (destination, slot) = ( \
                     SELECT destination, slot FROM postline_slots \
                     WHERE destination = $1 AND slot < $2 \
                     AND (until IS NULL OR until < now()) \
                     ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING slot",
                &[&key, &limit, &owner, &secs],
            )
            .map(|r| r.map(|r| r.get::<_, i32>(0)))
        })?;
        Ok(got.map(|slot| {
            crate::smtp::SlotGuard(Box::new(Slot {
                store: self.clone(),
                destination: dest,
                slot,
            }))
        }))
    }
}
