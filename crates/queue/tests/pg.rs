//! The queue in PostgreSQL, against a real server started for each test (Debian's
//! postgresql, private data directory, loopback port): the schema and its migrations, the
//! store's contract, leases that keep nodes apart and run out when a node dies, the runner
//! draining a database queue to aiosmtpd (bounces and failure records in the database), and
//! three sender processes draining 10,000 messages while one is killed and another started:
//! every message arrives, a duplicate only among those reported in doubt, never more
//! connections than the shared limit (counted at the server).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use postline::{Config, Tls};
use postline_queue::{
    Deliver, Delivery, DeliveryStatus, Destination, Entry, Job, PgStore, Policy, RecipientStatus,
    Record, Route, Runner, Smtp, Store,
};
use postline_testkit::{Aiosmtpd, Postgres};

fn entry(to: &[&str], body: &[u8]) -> Entry {
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    Entry::fresh(
        "sender@example.com",
        &to,
        &Route::relay("127.0.0.1:25"),
        body,
        SystemTime::now(),
    )
}

fn migrated(db: &Postgres) -> PgStore {
    PgStore::migrate(&db.url()).unwrap();
    PgStore::connect(&db.url()).unwrap()
}

fn quiet_policy() -> Policy {
    Policy {
        min_free_bytes: 0,
        first_retry: Duration::from_secs(1),
        ..Policy::default()
    }
}

#[test]
fn the_schema_is_made_once_and_checked_on_connect() {
    let db = Postgres::start();
    let err = PgStore::connect(&db.url()).expect_err("no schema yet");
    assert!(err.to_string().contains("postline queue migrate"), "{err}");
    assert_eq!(PgStore::migrate(&db.url()).unwrap(), 0);
    assert_eq!(PgStore::migrate(&db.url()).unwrap(), 1);
    PgStore::connect(&db.url()).unwrap();
    // A newer schema than this postline knows is refused, not used, and not "migrated".
    db.psql("INSERT INTO postline_schema (version) VALUES (99)");
    let err = PgStore::connect(&db.url()).expect_err("newer schema");
    assert!(err.to_string().contains("newer"), "{err}");
    let err = PgStore::migrate(&db.url()).expect_err("no downgrade");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_remote_server_without_tls_is_refused_unless_allowed() {
    let err = PgStore::connect("postgres://u:secret@db.example.net/q")
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("sslmode=disable"), "{text}");
    assert!(!text.contains("secret"), "the password leaked: {text}");
    // A server that is down is an error naming the URL without its password.
    let err = PgStore::connect("postgres://u:secret@127.0.0.1:1/q")
        .err()
        .unwrap();
    assert!(!err.to_string().contains("secret"), "{err}");
}

/// No password reaches a message, wherever the URL carries it, and the clear-text policy
/// reads the parsed URL: a `sslmode=disable` in a password or a database name, a `hostaddr`
/// behind `localhost`, or no host at all does not pass.
#[test]
fn passwords_stay_hidden_and_the_tls_policy_cannot_be_talked_around() {
    for url in [
        "postgres://u@127.0.0.1:1/q?password=hunter2",
        "postgres://u:hunter2@127.0.0.1:1/q",
    ] {
        let err = PgStore::connect(url).err().unwrap().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(PgStore::has_password(url));
        assert!(!PgStore::shown(url).contains("hunter2"));
    }
    for url in [
        "postgres://u:sslmode=disable@192.0.2.1/q",
        "postgres://u@192.0.2.1/sslmode=disable",
        "postgres://u@localhost/q?hostaddr=192.0.2.1",
        "postgres://u@db.example.net/q",
    ] {
        let err = PgStore::connect(url).err().unwrap();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{url}: {err}"
        );
        assert!(err.to_string().contains("sslmode=disable"), "{err}");
    }
}

/// Under the hold policy, a message taken over from a node whose lease ran out is not sent
/// again: its recipients are held (in doubt) for someone to release.
#[test]
fn a_takeover_under_the_hold_policy_sends_nothing() {
    let db = Postgres::start();
    let a = migrated(&db);
    let id = a
        .enqueue_entry(entry(&["a@x.example"], b"m\r\n"), b"m\r\n")
        .unwrap();
    let lease = a.try_lock(&id).unwrap().expect("free");
    std::mem::forget(lease);
    db.psql("UPDATE postline_entries SET lease_until = now() - interval '1 second'");
    let b = PgStore::connect(&db.url()).unwrap();
    let server = Aiosmtpd::start();
    let policy = Policy {
        in_doubt: postline_queue::InDoubt::Hold,
        ..quiet_policy()
    };
    let mut runner = Runner::new(b.clone(), policy, Smtp::new(relay_to(server.port())));
    let report = runner.pass(SystemTime::now(), true, &|| false, &mut |_, _| {});
    assert_eq!(report.attempted, 0, "{report:?}");
    assert!(server.messages().is_empty());
    let e = b.load(&id).unwrap();
    assert!(
        matches!(e.recipients[0].status, RecipientStatus::Held { .. }),
        "{e:?}"
    );
}

#[test]
fn the_store_keeps_messages_once_and_whole() {
    let db = Postgres::start();
    let store = migrated(&db);
    let e = entry(&["a@x.example", "b@x.example"], b"hello\r\n");
    let id = store.enqueue_entry(e.clone(), b"hello\r\n").unwrap();
    // The same id again is refused, and the first stays as it was.
    let again = store.enqueue_entry(e, b"other\r\n").unwrap_err();
    assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(store.ids().unwrap().0, vec![id.clone()]);
    assert_eq!(store.message(&id).unwrap(), b"hello\r\n");
    let loaded = store.load(&id).unwrap();
    assert_eq!(loaded.recipients.len(), 2);
    assert!(store.contains(&id));
    // Stored once for both recipients.
    assert_eq!(
        db.psql("SELECT count(*) FROM postline_messages").trim(),
        "1"
    );
    // A message over the limit is refused before anything is written.
    let big = vec![b'x'; (64 << 20) + 1];
    let err = store
        .enqueue_entry(entry(&["a@x.example"], &big), &big)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
    assert_eq!(store.ids().unwrap().0.len(), 1);
    // A message whose bytes do not match its entry is corrupt, not sent.
    db.psql(&format!(
        "UPDATE postline_messages SET body = 'hel' WHERE id = '{id}'"
    ));
    assert!(matches!(
        store.load(&id),
        Err(postline_queue::LoadError::Corrupt(_))
    ));
    assert!(matches!(
        store.load("../etc"),
        Err(postline_queue::LoadError::BadId(_))
    ));
}

#[test]
fn a_lease_keeps_other_nodes_off_and_fences_their_writes() {
    let db = Postgres::start();
    let a = migrated(&db);
    let b = PgStore::connect(&db.url()).unwrap();
    let id = a
        .enqueue_entry(entry(&["a@x.example"], b"m\r\n"), b"m\r\n")
        .unwrap();
    let lease = a.try_lock(&id).unwrap().expect("free");
    assert!(b.try_lock(&id).unwrap().is_none(), "two nodes held it");
    // Node b cannot write over what node a is working on.
    let mut e = b.load(&id).unwrap();
    e.attempts = 7;
    assert!(b.save_unsynced(&e).is_err());
    assert!(b.remove_unsynced(&id).is_err());
    a.save_unsynced(&e).unwrap();
    drop(lease);
    // Given back: b takes it, and it was not a takeover (nothing in doubt).
    let _lease = b.try_lock(&id).unwrap().expect("given back");
    let e = b.load(&id).unwrap();
    assert_eq!(e.attempts, 7);
    assert!(matches!(
        e.recipients[0].status,
        RecipientStatus::Pending {
            in_doubt: false,
            ..
        }
    ));
    assert_eq!(
        db.psql("SELECT count(*) FROM postline_takeovers").trim(),
        "0"
    );
}

#[test]
fn a_lease_that_runs_out_is_taken_over_in_doubt() {
    let db = Postgres::start();
    let a = migrated(&db);
    let b = PgStore::connect(&db.url()).unwrap();
    let id = a
        .enqueue_entry(entry(&["a@x.example"], b"m\r\n"), b"m\r\n")
        .unwrap();
    let lease = a.try_lock(&id).unwrap().expect("free");
    // Node a stalls: its lease runs out (as a dead node's does) without being given back.
    db.psql("UPDATE postline_entries SET lease_until = now() - interval '1 second'");
    let _taken = b.try_lock(&id).unwrap().expect("a lease that ran out");
    let e = b.load(&id).unwrap();
    assert!(
        matches!(
            e.recipients[0].status,
            RecipientStatus::Pending { in_doubt: true, .. }
        ),
        "{e:?}"
    );
    assert!(
        e.last_error.as_deref().unwrap_or("").contains(a.owner()),
        "{e:?}"
    );
    assert_eq!(
        db.psql(&format!(
            "SELECT previous_owner FROM postline_takeovers WHERE id = '{id}'"
        ))
        .trim(),
        a.owner()
    );
    // Node a wakes up: it can no longer write, and giving back its old lease does not free
    // the message from b.
    let mut stale = e.clone();
    stale.attempts = 99;
    assert!(postline_queue::is_lease_lost(
        &a.save_unsynced(&stale).unwrap_err()
    ));
    drop(lease);
    assert!(a.try_lock(&id).unwrap().is_none());
}

#[test]
fn leases_are_renewed_while_held() {
    let db = Postgres::start();
    PgStore::migrate(&db.url()).unwrap();
    let a = PgStore::connect_with_lease(&db.url(), Duration::from_secs(1)).unwrap();
    let b = PgStore::connect(&db.url()).unwrap();
    let id = a
        .enqueue_entry(entry(&["a@x.example"], b"m\r\n"), b"m\r\n")
        .unwrap();
    let _lease = a.try_lock(&id).unwrap().expect("free");
    // Three lease lengths later the holder still has it: it renewed.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        b.try_lock(&id).unwrap().is_none(),
        "the lease was not renewed"
    );
}

fn relay_to(port: u16) -> impl Fn(&Route) -> Result<Destination, String> + Send + Sync {
    move |_: &Route| {
        Ok(Destination::Relay(
            Config::relay("127.0.0.1").port(port).tls(Tls::None),
        ))
    }
}

#[test]
fn the_runner_drains_a_database_queue_with_bounces_and_failure_records() {
    let db = Postgres::start();
    let store = migrated(&db);
    let server = Aiosmtpd::builder().reject_rcpt("nobody").start();
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        let to: &[&str] = if i == 0 {
            &["ok@x.example", "nobody@x.example"]
        } else {
            &["ok@x.example"]
        };
        ids.push(
            store
                .enqueue_entry(entry(to, body.as_bytes()), body.as_bytes())
                .unwrap(),
        );
    }
    let mut runner = Runner::new(
        store.clone(),
        quiet_policy(),
        Smtp::new(relay_to(server.port())),
    );
    let mut told = Vec::new();
    let report = runner.pass(SystemTime::now(), false, &|| false, &mut |id, d| {
        told.push((id.to_string(), d.status))
    });
    assert_eq!(report.completed + report.failed, 20, "{report:?}");
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.bounces, 1, "{report:?}");
    assert_eq!(told.len(), 21);
    assert_eq!(server.messages().len(), 20);
    // The failed message's record, and its bounce queued in the database.
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM postline_failed WHERE id = '{}'",
            ids[0]
        ))
        .trim(),
        "1"
    );
    let left = store.list().0;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].is_bounce);
    assert_eq!(left[0].recipients[0].address, "sender@example.com");
}

/// A deliverer that, while it works, lets its lease run out and another node take the
/// message: its result is not this node's to record any more.
struct Stalls {
    db_url: String,
    other: PgStore,
    calls: Arc<AtomicUsize>,
}

impl Deliver for Stalls {
    fn deliver(&mut self, _route: &Route, jobs: &[Job<'_>], record: &Record<'_>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let out = Command::new("psql")
            .args([
                "-q",
                &self.db_url,
                "-c",
                "UPDATE postline_entries SET lease_until = now() - interval '1 second'",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let taken = self.other.try_lock(&jobs[0].entry.id).unwrap();
        assert!(taken.is_some());
        std::mem::forget(taken);
        let list = jobs[0]
            .recipients
            .iter()
            .map(|a| Delivery::new(*a, DeliveryStatus::Delivered, None, "250 ok"))
            .collect();
        record(vec![(0, list)]);
    }
}

#[test]
fn a_result_whose_lease_was_lost_is_let_go_not_retried_forever() {
    let db = Postgres::start();
    let store = migrated(&db);
    let id = store
        .enqueue_entry(entry(&["a@x.example"], b"m\r\n"), b"m\r\n")
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let d = Stalls {
        db_url: db.url(),
        other: PgStore::connect(&db.url()).unwrap(),
        calls: calls.clone(),
    };
    let mut runner = Runner::new(store.clone(), quiet_policy(), d);
    let report = runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| {
        panic!("a result that was not recorded must not be told")
    });
    assert_eq!(report.lost, 1, "{report:?}");
    assert!(!report.blocked, "{report:?}");
    assert!(runner.unrecorded().is_empty());
    assert!(
        report.problems.iter().any(|p| p.contains("lease")),
        "{report:?}"
    );
    // The message is still queued, in the other node's hands and marked in doubt.
    let e = store.load(&id).unwrap();
    assert!(matches!(
        e.recipients[0].status,
        RecipientStatus::Pending { in_doubt: true, .. }
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// `examples/queue_node`, built by `cargo test` beside the test binaries.
fn queue_node() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples/queue_node"))
        .unwrap();
    assert!(
        path.exists(),
        "{path:?} not built: run `cargo test -p postline-queue` (which builds examples)"
    );
    path
}

/// The proof: three sender processes drain 10,000 messages from one database into
/// aiosmtpd; one is SIGKILLed mid-run and another started. Every message arrives; one that
/// arrives twice is among those reported in doubt (taken over from the killed node); no more
/// connections are open at once than the shared limit, counted by the server.
#[test]
fn three_nodes_drain_ten_thousand_messages_through_a_killed_node() {
    const N: usize = 10_000;
    const LIMIT: usize = 2;
    let db = Postgres::start();
    let server = Aiosmtpd::builder().count_sessions().start();
    let node = queue_node();
    let url = db.url();
    // Queued by four processes at once.
    let fillers: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(&node)
                .args([&url, &server.addr(), "--fill", &(N / 4).to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Which message (`X-Seq`) each queue id is.
    let mut seq_of: HashMap<String, String> = HashMap::new();
    for mut child in fillers {
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            let (id, seq) = line.split_once(' ').unwrap();
            seq_of.insert(id.to_string(), seq.to_string());
        }
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(seq_of.len(), N);
    let start = |_: usize| -> Child {
        Command::new(&node)
            .args([&url, &server.addr(), &LIMIT.to_string(), "3", "900"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut nodes: Vec<Child> = (0..3).map(start).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while server.messages().len() < N / 3 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes[0].kill().unwrap(); // SIGKILL: no lease is given back
    nodes[0].wait().unwrap();
    nodes.push(start(3));
    for n in nodes.iter_mut().skip(1) {
        let out = n.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(n.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(out.success(), "a node failed: {out}\n{err}");
    }
    // What arrived, by message.
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in server.messages() {
        let text = String::from_utf8_lossy(&m.content);
        let seq = text
            .split("X-Seq: ")
            .nth(1)
            .and_then(|t| t.split('\r').next())
            .unwrap()
            .to_string();
        *count.entry(seq).or_default() += 1;
    }
    let in_doubt: Vec<&String> = db
        .psql("SELECT id FROM postline_takeovers")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|id| &seq_of[id])
        .collect();
    let missing: Vec<&String> = seq_of
        .values()
        .filter(|s| !count.contains_key(*s))
        .collect();
    let twice: Vec<(&String, &usize)> = count.iter().filter(|(_, n)| **n > 1).collect();
    let sessions = server.sessions();
    eprintln!(
        "{} messages arrived for {N} queued; {} twice; {} taken over in doubt; sessions \
         {sessions:?}",
        count.values().sum::<usize>(),
        twice.len(),
        in_doubt.len()
    );
    assert_eq!(db.psql("SELECT count(*) FROM postline_entries").trim(), "0");
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert_eq!(count.len(), N, "messages nobody queued arrived");
    for (seq, n) in &twice {
        assert!(
            **n == 2 && in_doubt.contains(seq),
            "{seq} arrived {n} times without being reported in doubt"
        );
    }
    assert!(
        sessions.peak <= LIMIT as u64,
        "{} connections at once, limit {LIMIT}",
        sessions.peak
    );
}

/// Two nodes sharing a rate of 20 messages a second to one relay: 60 messages take at least
/// two seconds between the first and the last arrival, and no second at the server sees more
/// than two seconds' worth (a reservation is sent as one burst).
#[test]
fn two_nodes_keep_one_shared_rate() {
    const RATE: f64 = 20.0;
    let db = Postgres::start();
    let first = migrated(&db);
    let server = Aiosmtpd::start();
    for i in 0..60 {
        let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        first
            .enqueue_entry(entry(&["ok@x.example"], body.as_bytes()), body.as_bytes())
            .unwrap();
    }
    let port = server.port();
    let nodes: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url();
            std::thread::spawn(move || {
                let store = PgStore::connect(&url).unwrap();
                let smtp = Smtp::new(relay_to(port))
                    .shared_limit(store.clone(), 4)
                    .shared_rate(RATE);
                let mut runner = Runner::new(store.clone(), quiet_policy(), smtp);
                let deadline = Instant::now() + Duration::from_secs(60);
                while !store.ids().unwrap().0.is_empty() {
                    assert!(Instant::now() < deadline, "not drained");
                    let r = runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| {});
                    assert!(r.problems.is_empty(), "{r:?}");
                    if r.attempted == 0 {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    for n in nodes {
        n.join().unwrap();
    }
    // Arrival times, from the store's files.
    let mut times: Vec<SystemTime> = std::fs::read_dir(server.store_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .map(|e| e.metadata().unwrap().modified().unwrap())
        .collect();
    assert_eq!(times.len(), 60);
    times.sort();
    let span = times[59].duration_since(times[0]).unwrap();
    assert!(
        span >= Duration::from_millis(1900),
        "60 messages in {span:?}"
    );
    for (i, t) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t).unwrap() < Duration::from_secs(1))
            .count();
        assert!(
            within <= 2 * RATE as usize,
            "{within} messages within a second"
        );
    }
}

/// Delivers everything, after cutting every connection the database has (as a database
/// restart or a network cut would): the results cannot be written at once.
struct CutsTheDatabase {
    db_url: String,
}

impl Deliver for CutsTheDatabase {
    fn deliver(&mut self, _route: &Route, jobs: &[Job<'_>], record: &Record<'_>) {
        let out = Command::new("psql")
            .args([
                "-q",
                &self.db_url,
                "-c",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = 'postline' AND pid <> pg_backend_pid()",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let results = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let list = j
                    .recipients
                    .iter()
                    .map(|a| Delivery::new(*a, DeliveryStatus::Delivered, None, "250 ok"))
                    .collect();
                (i, list)
            })
            .collect();
        record(results);
    }
}

/// The database connection is cut while results come in: what could not be written is kept
/// in memory (the messages still leased, so no other node takes them), nothing more is
/// delivered, and the next pass writes it over a new connection without sending anything
/// again.
#[test]
fn results_that_meet_a_cut_connection_are_kept_and_written_after() {
    let db = Postgres::start();
    let store = migrated(&db);
    for i in 0..3 {
        let body = format!("Subject: {i}\r\n\r\nbody\r\n");
        store
            .enqueue_entry(entry(&["a@x.example"], body.as_bytes()), body.as_bytes())
            .unwrap();
    }
    let mut runner = Runner::new(
        store.clone(),
        quiet_policy(),
        CutsTheDatabase { db_url: db.url() },
    );
    let mut told = 0;
    let first = runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| told += 1);
    // The first write meets the cut connection; the ones after it go over a new one.
    assert!(first.blocked, "{first:?}");
    assert!(first.unrecorded >= 1, "{first:?}");
    assert_eq!(first.completed + first.unrecorded, 3, "{first:?}");
    assert_eq!(told, first.completed, "told before it was written");
    // Another node cannot take them meanwhile: their leases are held.
    let other = PgStore::connect(&db.url()).unwrap();
    for id in runner.unrecorded() {
        assert!(other.try_lock(id).unwrap().is_none());
    }
    // The next pass reconnects and writes them first; nothing is delivered again.
    let mut runner = runner;
    let second = runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| told += 1);
    assert_eq!(second.completed, first.unrecorded, "{second:?}");
    assert_eq!(second.attempted, 0, "{second:?}");
    assert!(!second.blocked, "{second:?}");
    assert_eq!(told, 3);
    assert!(store.ids().unwrap().0.is_empty());
}
