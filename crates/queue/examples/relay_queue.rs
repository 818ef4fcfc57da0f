//! A queue without the command line: messages go into a private spool, and a runner
//! delivers them through one relay over shared, pipelined connections, retrying what a
//! server deferred until it is delivered or fails for good.
//!
//! ```text
//! cargo run -p postline-queue --example relay_queue -- SPOOL_DIR HOST:PORT [COUNT]
//! ```
//!
//! Queues COUNT (default 3) small messages from `sender@example.com` to
//! `rcpt@example.com`, then runs passes until the queue is empty or 30 s have passed, printing
//! each recipient's result once it is on disk. The relay is spoken to in clear text, for a
//! local test server; a real program would keep the default (STARTTLS required) and give
//! credentials.

use std::time::{Duration, Instant, SystemTime};

use postline::{Config, Tls};
use postline_queue::{Destination, Policy, Route, Runner, Smtp, Spool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(relay)) = (args.next(), args.next()) else {
        return Err("usage: relay_queue SPOOL_DIR HOST:PORT [COUNT]".into());
    };
    let count: usize = args.next().map_or(Ok(3), |n| n.parse())?;

    let spool = Spool::open(&dir)?;
    let route = Route::relay(relay);
    for i in 0..count {
        let message = format!(
            "From: <sender@example.com>\r\nTo: <rcpt@example.com>\r\nSubject: queued {i}\r\n\r\nhello\r\n"
        );
        let id = spool.enqueue(
            "sender@example.com",
            &["rcpt@example.com".to_string()],
            &route,
            message.as_bytes(),
            SystemTime::now(),
        )?;
        println!("queued {id}");
    }

    // The route names the relay; how to reach it (TLS, credentials) is this program's say.
    let smtp = Smtp::new(|route: &Route| {
        let server = route.server.as_deref().ok_or("the route names no relay")?;
        let (host, port) = server.rsplit_once(':').ok_or("expected HOST:PORT")?;
        let port: u16 = port.parse().map_err(|_| format!("bad port in {server}"))?;
        Ok(Destination::Relay(
            Config::relay(host).port(port).tls(Tls::None),
        ))
    });
    let policy = Policy {
        first_retry: Duration::from_secs(1),
        ..Policy::default()
    };
    let mut runner = Runner::new(spool.clone(), policy, smtp);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The observer runs while results are written: a closed stdout must not panic it.
        let report = runner.pass(SystemTime::now(), false, &|| false, &mut |id, d| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout(),
                "{id} {} {} {}",
                d.status,
                d.address,
                d.detail()
            );
        });
        for p in &report.problems {
            eprintln!("problem: {p}");
        }
        if spool.list().0.is_empty() {
            println!("queue empty");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("messages still queued after 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
