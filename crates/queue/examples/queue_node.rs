//! One sender node of a queue: a spool directory, or a PostgreSQL database shared by several
//! nodes. It runs passes, taking due messages (with leases, in a database), and delivers
//! them through one relay with at most LIMIT connections (across every node sharing the
//! database). Run several against the same database: each message is delivered by one of
//! them; a node that is killed loses its leases when they run out and the others finish its
//! work.
//!
//! ```text
//! cargo run -p postline-queue --example queue_node -- LOCATION HOST:PORT LIMIT LEASE_SECS [SECS]
//! cargo run -p postline-queue --example queue_node -- LOCATION HOST:PORT --fill N
//! ```
//!
//! LOCATION is a directory or `postgres://...` (created or migrated as needed). The first
//! form prints a line per recipient result once it is recorded (`ID STATUS ADDRESS`) and
//! exits when the queue is empty, or fails after SECS (default 600). The second queues N
//! small messages (`X-Seq: PID-i` in each, printed beside its queue id) routed to HOST:PORT and exits. The relay is spoken to
//! in clear text, for a local test server.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use postline::{Config, Tls};
use postline_queue::{
    AnyStore, Destination, Entry, PgStore, Policy, Route, Runner, Smtp, Spool, Store,
};

fn open(location: &str, lease: Duration) -> std::io::Result<AnyStore> {
    if AnyStore::is_database(location) {
        PgStore::migrate(location)?;
        Ok(AnyStore::Postgres(PgStore::connect_with_lease(
            location, lease,
        )?))
    } else {
        Ok(AnyStore::Spool(Spool::open(location)?))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: queue_node LOCATION HOST:PORT LIMIT LEASE_SECS [SECS] \
                 | queue_node LOCATION HOST:PORT --fill N";
    let [location, relay, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    if let [flag, n] = rest {
        if flag == "--fill" {
            return fill(&open(location, Duration::from_secs(60))?, relay, n.parse()?);
        }
    }
    let [limit, lease, rest @ ..] = rest else {
        return Err(usage.into());
    };
    let limit: usize = limit.parse()?;
    let lease = Duration::from_secs(lease.parse()?);
    let secs: u64 = rest.first().map_or(Ok(600), |s| s.parse())?;
    let (host, port) = relay.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let (host, port) = (host.to_string(), port.parse::<u16>()?);

    let store = open(location, lease)?;
    let mut smtp = Smtp::new(move |_: &Route| {
        Ok(Destination::Relay(
            Config::relay(&host).port(port).tls(Tls::None),
        ))
    })
    .connections(limit)
    .round(50);
    if let AnyStore::Postgres(db) = &store {
        smtp = smtp.shared_limit(db.clone(), limit);
    }
    let policy = Policy {
        first_retry: Duration::from_secs(1),
        min_free_bytes: 0,
        ..Policy::default()
    };
    let mut runner = Runner::new(store.clone(), policy, smtp);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let report = runner.pass(SystemTime::now(), false, &|| false, &mut |id, d| {
            // A closed stdout must not panic the observer.
            let _ = writeln!(std::io::stdout(), "{id} {} {}", d.status, d.address);
        });
        for p in &report.problems {
            eprintln!("problem: {p}");
        }
        if store.ids()?.0.is_empty() {
            let _ = writeln!(std::io::stdout(), "queue empty");
            return Ok(());
        }
        if report.attempted == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        if Instant::now() > deadline {
            return Err(format!("messages still queued after {secs} s").into());
        }
    }
}

/// Queues `n` messages for one recipient, routed to `relay`.
fn fill(store: &AnyStore, relay: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let route = Route::relay(relay);
    let to = ["rcpt@example.com".to_string()];
    let pid = std::process::id();
    for i in 0..n {
        // Unique across fillers running at once: the process id, then the number.
        let seq = format!("{pid}-{i}");
        let message = format!(
            "From: <sender@example.com>\r\nTo: <rcpt@example.com>\r\nSubject: {seq}\r\n\
             X-Seq: {seq}\r\n\r\nmessage {seq}\r\n"
        );
        let entry = Entry::fresh(
            "sender@example.com",
            &to,
            &route,
            message.as_bytes(),
            SystemTime::now(),
        );
        let id = store.enqueue_entry(entry, message.as_bytes())?;
        let _ = writeln!(std::io::stdout(), "{id} {seq}");
    }
    Ok(())
}
