//! Bulk sending through a connection pool: 1,000 messages from 16 tokio tasks sharing one
//! `AsyncPool` of 4 connections, then a summary of the deliveries by status.
//!
//! ```text
//! cargo run -p postline --features tokio --example bulk_pool -- HOST:PORT [FROM] [TO_DOMAIN]
//! ```
//!
//! Try it against a local sink: `smtp-sink -u nobody 127.0.0.1:2525 256`, then
//! `... --example bulk_pool -- 127.0.0.1:2525`. No TLS is attempted (`POSTLINE_TLS=starttls`
//! asks for it); credentials come from `POSTLINE_USER` and `POSTLINE_PASSWORD` when set.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use postline::{AsyncPool, Config, DeliveryStatus, Envelope, PoolOptions, Tls};

const TASKS: usize = 16;
const MESSAGES: usize = 1000;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(server) = args.first() else {
        return Err("usage: bulk_pool HOST:PORT [FROM] [TO_DOMAIN]".into());
    };
    let from = args.get(1).map_or("bulk@client.example", String::as_str);
    let domain = args
        .get(2)
        .map_or("sink.example", String::as_str)
        .to_string();
    let (host, port) = postline::parse_server(server)?;
    let mut config = Config::relay(host).port(port.unwrap_or(25));
    config = match std::env::var("POSTLINE_TLS").as_deref() {
        Ok("starttls") => config.tls(Tls::StartTls),
        _ => config.tls(Tls::None),
    };
    if let (Ok(user), Ok(password)) = (
        std::env::var("POSTLINE_USER"),
        std::env::var("POSTLINE_PASSWORD"),
    ) {
        config = config.credentials(user, password);
    }

    let pool = AsyncPool::with_options(config, PoolOptions::new().max_size(4))?;
    let from = Arc::new(from.to_string());
    let domain = Arc::new(domain);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (pool, from, domain) = (pool.clone(), from.clone(), domain.clone());
        tasks.push(tokio::spawn(async move {
            // This task's share of the messages, one at a time: the pool keeps the
            // connections busy, whichever task's message is next.
            let mut tally: HashMap<DeliveryStatus, usize> = HashMap::new();
            for i in (t..MESSAGES).step_by(TASKS) {
                let to = format!("user{i}@{domain}");
                let envelope = Envelope::new(from.as_str(), [to.as_str()])?;
                let message = format!(
                    "From: {from}\r\nTo: {to}\r\nSubject: bulk message {i}\r\n\r\nMessage {i} of {MESSAGES}.\r\n"
                );
                for d in pool.send(&envelope, message.as_bytes()).await? {
                    // The first problem of each task is shown; the summary counts them all.
                    if d.status != DeliveryStatus::Delivered && tally.len() <= 1 && i < TASKS {
                        eprintln!("{}: {} {}", d.address, d.status, d.detail());
                    }
                    *tally.entry(d.status).or_default() += 1;
                }
            }
            Ok::<_, postline::Error>(tally)
        }));
    }
    let mut total: HashMap<DeliveryStatus, usize> = HashMap::new();
    for task in tasks {
        for (status, n) in task.await?? {
            *total.entry(status).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    let stats = pool.stats();
    pool.close_idle().await;

    println!(
        "{MESSAGES} messages from {TASKS} tasks in {:.2} s ({:.0}/s) over {} connection(s) opened",
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64(),
        stats.opened
    );
    use DeliveryStatus::*;
    for status in [Delivered, Deferred, Failed, InDoubt, NotAttempted] {
        if let Some(n) = total.get(&status) {
            println!("  {:>13}: {n}", status.name());
        }
    }
    if total.keys().all(|s| *s == DeliveryStatus::Delivered) {
        Ok(())
    } else {
        Err("some recipients were not delivered".into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulk_pool: {e}");
            ExitCode::FAILURE
        }
    }
}
