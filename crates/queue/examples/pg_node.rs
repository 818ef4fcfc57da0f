//! One sender node of a queue shared in PostgreSQL: it runs passes over the database,
//! taking due messages with leases, and delivers them through one relay with at most LIMIT
//! connections across every node that shares the database. Run several (on one machine or
//! many) against the same database: each message is delivered by one of them; a node that is
//! killed loses its leases when they run out and the others finish its work.
//!
//! ```text
//! cargo run -p postline-queue --example pg_node -- URL HOST:PORT LIMIT LEASE_SECS [SECS]
//! ```
//!
//! Prints a line per recipient result once it is recorded (`ID STATUS ADDRESS`), and `idle`
//! when a pass found nothing left to send; exits when the queue is empty, or after SECS
//! (default 600). The relay is spoken to in clear text, for a local test server.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use postline::{Config, Tls};
use postline_queue::{Destination, PgStore, Policy, Route, Runner, Smtp, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, relay, limit, lease, rest @ ..] = args.as_slice() else {
        return Err("usage: pg_node URL HOST:PORT LIMIT LEASE_SECS [SECS]".into());
    };
    let limit: usize = limit.parse()?;
    let lease = Duration::from_secs(lease.parse()?);
    let secs: u64 = rest.first().map_or(Ok(600), |s| s.parse())?;
    let (host, port) = relay.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let (host, port) = (host.to_string(), port.parse::<u16>()?);

    let store = PgStore::connect_with_lease(url, lease)?;
    let smtp = Smtp::new(move |_: &Route| {
        Ok(Destination::Relay(
            Config::relay(&host).port(port).tls(Tls::None),
        ))
    })
    .connections(limit)
    .round(50)
    .shared_limit(store.clone(), limit);
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
            let _ = writeln!(std::io::stdout(), "idle");
            std::thread::sleep(Duration::from_millis(200));
        }
        if Instant::now() > deadline {
            return Err(format!("messages still queued after {secs} s").into());
        }
    }
}
