//! `lettre-peer`: the lettre peer for bench/run. lettre's blocking `SmtpTransport` (pooled,
//! plain text) sends N messages of SIZE bytes, or one message read whole from a file into
//! memory (as lettre needs it), with `send_raw`; prints one JSON line.
//!
//! ```text
//! lettre-peer --port P --count N --size BYTES [--rcpts K]
//! lettre-peer --port P --path FILE
//! ```

use std::process::ExitCode;
use std::time::Instant;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{SmtpTransport, Transport};

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
