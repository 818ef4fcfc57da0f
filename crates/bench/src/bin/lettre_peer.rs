//! `lettre-peer`: the lettre peer for bench/run. lettre's blocking `SmtpTransport` (pooled,
//! plain text) sends N messages of SIZE bytes, or one message read whole from a file into
//! memory (as lettre needs it), with `send_raw`; prints one JSON line. With `--tasks T`,
//! lettre's pooled `AsyncSmtpTransport<Tokio1Executor>` (pool `max_size` from `--pool-size`)
//! sends the N messages from T tasks on a current-thread tokio runtime instead.
//!
//! ```text
//! lettre-peer --port P --count N --size BYTES [--rcpts K]
//! lettre-peer --port P --count N --size BYTES --tasks T --pool-size S
//! lettre-peer --port P --path FILE
//! ```

use std::process::ExitCode;
use std::time::Instant;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, SmtpTransport, Tokio1Executor, Transport};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: Option<u64>) -> Result<u64, String> {
    match arg(args, name) {
        Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
        None => default.ok_or_else(|| format!("{name} is required")),
    }
}

/// The same message text the postline runs send (78-character lines, CRLF), `size` bytes.
fn message(size: usize) -> Vec<u8> {
    let line =
        b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n";
    let mut m = Vec::with_capacity(size + line.len());
    m.extend_from_slice(
        b"From: a@client.bench.test\r\nTo: b@sink.test\r\nSubject: bench\r\nMessage-ID: <bench@client.bench.test>\r\n\r\n",
    );
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m.truncate(size.max(2) - 2);
    if let Some(last) = m.last_mut() {
        if *last == b'\r' {
            *last = b'x';
        }
    }
    m.extend_from_slice(b"\r\n");
    m
}

fn run(args: &[String]) -> Result<String, String> {
    let port = num(args, "--port", None)? as u16;
    let rcpts = num(args, "--rcpts", Some(1))?;
    let (count, body) = match arg(args, "--path") {
        Some(p) => (1, std::fs::read(&p).map_err(|e| format!("{p}: {e}"))?),
        None => (
            num(args, "--count", None)? as usize,
            message(num(args, "--size", None)? as usize),
        ),
    };
    let from: Address = "a@client.bench.test".parse().map_err(|e| format!("{e}"))?;
    let to = (1..=rcpts)
        .map(|i| format!("{i}b@sink.test").parse::<Address>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e}"))?;
    let envelope = Envelope::new(Some(from), to).map_err(|e| format!("{e}"))?;
    if let Some(tasks) = arg(args, "--tasks") {
        let tasks: usize = tasks.parse().map_err(|_| "--tasks: not a number")?;
        let pool_size = num(args, "--pool-size", Some(4))? as u32;
        return pooled_tasks(port, count, tasks.max(1), pool_size, envelope, body, rcpts);
    }
    let start = Instant::now();
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .hello_name(ClientId::Domain("client.bench.test".into()))
        .pool_config(PoolConfig::new().max_size(1))
        .build();
    let mut first = None;
    for _ in 0..count {
        transport
            .send_raw(&envelope, &body)
            .map_err(|e| format!("send: {e}"))?;
        first.get_or_insert_with(|| start.elapsed());
    }
    let sent = start.elapsed();
    drop(transport);
    let total = start.elapsed();
    Ok(format!(
        "{{\"client\":\"lettre\",\"count\":{count},\"size\":{},\"rcpts\":{rcpts},\"first_s\":{:.6},\"sent_s\":{:.6},\"total_s\":{:.6}}}",
        body.len(),
        first.unwrap_or_default().as_secs_f64(),
        sent.as_secs_f64(),
        total.as_secs_f64()
    ))
}

/// `count` messages from `tasks` tasks through one pooled `AsyncSmtpTransport`. lettre's
/// pool bounds the connections it keeps idle (`max_size`), not those open at once: a task
/// that finds no idle connection opens one (NOOP-tested before each reuse).
fn pooled_tasks(
    port: u16,
    count: usize,
    tasks: usize,
    pool_size: u32,
    envelope: Envelope,
    body: Vec<u8>,
    rcpts: u64,
) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let size = body.len();
    rt.block_on(async move {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .hello_name(ClientId::Domain("client.bench.test".into()))
            .pool_config(PoolConfig::new().max_size(pool_size))
            .build();
        let envelope = std::sync::Arc::new(envelope);
        let body = std::sync::Arc::new(body);
        let mut handles = Vec::new();
        for i in 0..tasks {
            let n = count / tasks + usize::from(i < count % tasks);
            let (transport, envelope, body) = (transport.clone(), envelope.clone(), body.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..n {
                    transport
                        .send_raw(&envelope, &body)
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                }
                Ok::<(), String>(())
            }));
        }
        for h in handles {
            h.await.map_err(|e| e.to_string())??;
        }
        transport.shutdown().await;
        Ok::<(), String>(())
    })?;
    Ok(format!(
        "{{\"client\":\"lettre\",\"mode\":\"async-pool\",\"tasks\":{tasks},\"pool_size\":{pool_size},\"count\":{count},\"size\":{size},\"rcpts\":{rcpts},\"total_s\":{:.6}}}",
        start.elapsed().as_secs_f64()
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lettre-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
