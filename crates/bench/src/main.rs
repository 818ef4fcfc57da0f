//! `postline-bench`: one postline client run per invocation, printed as one JSON line, plus the
//! delaying TCP relay the round-trip workload needs (this kernel has no netem). `bench/run`
//! starts the servers, calls this binary and the peers, and measures wall time, CPU and RSS
//! from outside; the times printed here are the client's own view (connect, first accepted
//! message, whole run).
//!
//! ```text
//! postline-bench one-conn   --port P --count N --size BYTES [--rcpts K] [--no-deep] [--no-pipelining] [--chunking]
//! postline-bench multi-conn --port P --conns C --count N --size BYTES [--rcpts K]
//! postline-bench pool       --port P --tasks T --conns C --count N --size BYTES [--rcpts K]
//! postline-bench file       --port P --path FILE [--chunking]
//! postline-bench relay      --listen PORT --to PORT --delay-ms MS
//! postline-bench measure    --out FILE -- CMD ARGS...
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use postline::{
    AsyncClient, AsyncPool, Client, Config, DeliveryStatus, Envelope, PoolOptions, Timeouts, Tls,
};

mod measure;
mod relay;

/// Command-line options: `--name value` pairs and bare `--flag`s.
struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut set = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?;
            if flags.contains(&name) {
                set.push(name.to_string());
            } else {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                values.insert(name.to_string(), v.clone());
            }
        }
        Ok(Args { values, flags: set })
    }

    fn num(&self, name: &str, default: Option<u64>) -> Result<u64, String> {
        match self.values.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v}")),
            None => default.ok_or_else(|| format!("--{name} is required")),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

fn config(port: u16) -> Config {
    Config::relay("127.0.0.1")
        .port(port)
        .tls(Tls::None)
        .hello_name("client.bench.test")
        .timeouts(Timeouts::default().capped(Duration::from_secs(120)))
}

fn envelope(rcpts: u64) -> Envelope {
    let to: Vec<String> = (1..=rcpts).map(|i| format!("{i}b@sink.test")).collect();
    Envelope::new("a@client.bench.test", to).expect("valid envelope")
}

/// A message of exactly `size` bytes: a few headers, then 78-character lines of text, CRLF.
pub fn message(size: usize) -> Vec<u8> {
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn check(results: &[Result<postline::Outcome, postline::Error>]) -> Result<(), String> {
    let mut bad = 0usize;
    let mut first = None;
    for r in results {
        match r {
            Ok(o) if o.all_accepted() => {}
            Ok(o) => {
                bad += 1;
                first.get_or_insert_with(|| format!("{:?}", o.rejected().next()));
            }
            Err(e) => {
                bad += 1;
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
    match first {
        None => Ok(()),
        Some(f) => Err(format!(
            "{bad} of {} messages failed; first: {f}",
            results.len()
        )),
    }
}

fn one_conn(a: &Args) -> Result<String, String> {
    let port = a.num("port", None)? as u16;
    let count = a.num("count", None)? as usize;
    let size = a.num("size", None)? as usize;
    let rcpts = a.num("rcpts", Some(1))?;
    let deep = !a.flag("no-deep");
    let cfg = config(port)
        .pipelining(!a.flag("no-pipelining"))
        .chunking(a.flag("chunking"));
    let env = envelope(rcpts).size(size as u64);
    let body = message(size);
    let start = Instant::now();
    let mut client = Client::connect(cfg).map_err(|e| format!("connect: {e}"))?;
    let connected = start.elapsed();
    let first = if deep && count > 1 {
        // One batch: no per-message timing (the RTT workload derives the per-message cost
        // from separate runs of 1 and 20 messages).
        let results = client
            .send_many((0..count).map(|_| (&env, &body[..])))
            .map_err(|e| format!("send_many: {e}"))?;
        check(&results)?;
        None
    } else {
        let mut f = None;
        for _ in 0..count {
            let o = client
                .send_bytes(&env, &body)
                .map_err(|e| format!("send: {e}"))?;
            if !o.all_accepted() {
                return Err(format!("refused: {:?}", o.rejected().next()));
            }
            f.get_or_insert_with(|| start.elapsed());
        }
        f
    };
    let sent = start.elapsed();
    client.quit().map_err(|e| format!("quit: {e}"))?;
    let total = start.elapsed();
    Ok(format!(
        "{{\"client\":\"postline\",\"mode\":\"one-conn\",\"count\":{count},\"size\":{size},\"rcpts\":{rcpts},\"deep\":{deep},\"connect_s\":{:.6},\"first_s\":{},\"sent_s\":{:.6},\"total_s\":{:.6}}}",
        secs(connected),
        first.map_or("null".to_string(), |f| format!("{:.6}", secs(f))),
        secs(sent),
        secs(total)
    ))
}

/// A current-thread runtime (one event loop, as the async peers use) and the message every
/// task shares.
type AsyncWorkload = (
    tokio::runtime::Runtime,
    std::sync::Arc<Envelope>,
    std::sync::Arc<Vec<u8>>,
);

fn async_workload(rcpts: u64, size: usize) -> Result<AsyncWorkload, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let env = std::sync::Arc::new(envelope(rcpts).size(size as u64));
    Ok((rt, env, std::sync::Arc::new(message(size))))
}

fn multi_conn(a: &Args) -> Result<String, String> {
    let port = a.num("port", None)? as u16;
    let conns = a.num("conns", None)?.max(1) as usize;
    let count = a.num("count", None)? as usize;
    let size = a.num("size", None)? as usize;
    let rcpts = a.num("rcpts", Some(1))?;
    let (rt, env, body) = async_workload(rcpts, size)?;
    let start = Instant::now();
    let result: Result<(), String> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..conns {
            // Spread the messages evenly; the first `count % conns` connections take one more.
            let n = count / conns + usize::from(i < count % conns);
            let env = env.clone();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = AsyncClient::connect(config(port))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let results = client
                    .send_many((0..n).map(|_| (&*env, &body[..])))
                    .await
                    .map_err(|e| format!("send_many: {e}"))?;
                check(&results)?;
                client.quit().await.map_err(|e| format!("quit: {e}"))
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    });
    result?;
    let total = start.elapsed();
    Ok(format!(
        "{{\"client\":\"postline\",\"mode\":\"multi-conn\",\"conns\":{conns},\"count\":{count},\"size\":{size},\"rcpts\":{rcpts},\"total_s\":{:.6}}}",
        secs(total)
    ))
}

/// `count` messages from `tasks` tasks, each sending one message at a time through one
/// `AsyncPool` of `conns` connections, on a current-thread runtime (as lettre's run is).
fn pool(a: &Args) -> Result<String, String> {
    let port = a.num("port", None)? as u16;
    let tasks = a.num("tasks", None)?.max(1) as usize;
    let conns = a.num("conns", None)?.max(1) as usize;
    let count = a.num("count", None)? as usize;
    let size = a.num("size", None)? as usize;
    let rcpts = a.num("rcpts", Some(1))?;
    let (rt, env, body) = async_workload(rcpts, size)?;
    let start = Instant::now();
    let opened = rt.block_on(async {
        let pool = AsyncPool::with_options(config(port), PoolOptions::new().max_size(conns))
            .map_err(|e| e.to_string())?;
        let mut handles = Vec::new();
        for i in 0..tasks {
            let n = count / tasks + usize::from(i < count % tasks);
            let (pool, env, body) = (pool.clone(), env.clone(), body.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..n {
                    let d = pool.send(&env, &body).await.map_err(|e| e.to_string())?;
                    if let Some(bad) = d.iter().find(|d| d.status != DeliveryStatus::Delivered) {
                        return Err(format!("{}: {} {}", bad.address, bad.status, bad.detail()));
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for h in handles {
            h.await.map_err(|e| e.to_string())??;
        }
        let opened = pool.stats().opened;
        pool.close_idle().await;
        Ok::<u64, String>(opened)
    })?;
    Ok(format!(
        "{{\"client\":\"postline\",\"mode\":\"pool\",\"tasks\":{tasks},\"conns\":{conns},\"opened\":{opened},\"count\":{count},\"size\":{size},\"rcpts\":{rcpts},\"total_s\":{:.6}}}",
        secs(start.elapsed())
    ))
}

fn file(a: &Args) -> Result<String, String> {
    let port = a.num("port", None)? as u16;
    let path = a.values.get("path").ok_or("--path is required")?;
    let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let start = Instant::now();
    let mut client =
        Client::connect(config(port).chunking(a.flag("chunking"))).map_err(|e| e.to_string())?;
    let o = client
        .send(&envelope(1).size(len), f)
        .map_err(|e| format!("send: {e}"))?;
    if !o.all_accepted() {
        return Err(format!("refused: {:?}", o.rejected().next()));
    }
    client.quit().map_err(|e| format!("quit: {e}"))?;
    Ok(format!(
        "{{\"client\":\"postline\",\"mode\":\"file\",\"size\":{len},\"total_s\":{:.6}}}",
        secs(start.elapsed())
    ))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("usage: postline-bench one-conn|multi-conn|pool|file|relay --help");
        return ExitCode::from(64);
    };
    if cmd == "measure" {
        // measure --out FILE -- CMD...: everything after `--` is the command.
        let result = match (rest.first().map(String::as_str), rest.get(1), rest.get(2)) {
            (Some("--out"), Some(out), Some(dashes)) if dashes == "--" => {
                measure::run(out, &rest[3..])
            }
            _ => Err("usage: postline-bench measure --out FILE -- CMD ARGS...".into()),
        };
        return match result {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("postline-bench measure: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let flags = ["no-deep", "no-pipelining", "chunking"];
    let result = Args::parse(rest, &flags).and_then(|a| match cmd.as_str() {
        "one-conn" => one_conn(&a),
        "multi-conn" => multi_conn(&a),
        "pool" => pool(&a),
        "file" => file(&a),
        "relay" => relay::run(
            a.num("listen", Some(0))? as u16,
            a.num("to", None)? as u16,
            Duration::from_millis(a.num("delay-ms", None)?),
        )
        .map(|()| String::new()),
        other => Err(format!("unknown subcommand {other}")),
    });
    match result {
        Ok(line) => {
            if !line.is_empty() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postline-bench {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
