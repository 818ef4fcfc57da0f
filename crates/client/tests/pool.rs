//! The connection pools against real servers: Postfix's smtp-sink counts the sessions and
//! messages it saw (`-c`), and scripted peers close, say 421 or go silent at chosen points.
//! Every assertion is on counts (connections opened at the server, messages received,
//! statuses), never on elapsed time; every wait is a bounded loop.

use std::thread;
use std::time::{Duration, Instant};

use postline::{
    AsyncPool, Config, Delivery, DeliveryStatus, Envelope, Pool, PoolOptions, Timeouts, Tls,
};
use postline_testkit::{free_port, greeting_and_ehlo, ScriptedServer, SmtpSink, Step};

/// How long a test waits for the sink's counters to reach what it expects.
const SETTLE: Duration = Duration::from_secs(30);

fn config(port: u16) -> Config {
    Config::relay("127.0.0.1")
        .port(port)
        .tls(Tls::None)
        .hello_name("client.test")
}

fn envelope(i: usize) -> Envelope {
    Envelope::new("a@client.test", [format!("r{i}@sink.test")]).unwrap()
}

fn message(i: usize) -> Vec<u8> {
    format!("Subject: pool {i}\r\n\r\n{}\r\n", "x".repeat(900)).into_bytes()
}

fn statuses(d: &[Delivery]) -> Vec<DeliveryStatus> {
    d.iter().map(|d| d.status).collect()
}

fn assert_delivered(d: &[Delivery]) {
    assert!(
        d.iter().all(|d| d.status == DeliveryStatus::Delivered),
        "{d:?}"
    );
}

/// smtp-sink `-c` counters: sessions ended, QUIT commands, messages received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    sessions: u64,
    quits: u64,
    messages: u64,
}

/// The sink's latest counter line (`sess=N quit=N mesg=N`, one per event, CR-separated).
fn counts(sink: &SmtpSink) -> Counts {
    let out = sink.stdout();
    let mut last = Counts {
        sessions: 0,
        quits: 0,
        messages: 0,
    };
    for line in out.split(['\r', '\n']) {
        let field = |name: &str| -> Option<u64> {
            let at = line.find(name)? + name.len();
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        if let (Some(sessions), Some(quits), Some(messages)) =
            (field("sess="), field("quit="), field("mesg="))
        {
            last = Counts {
                sessions,
                quits,
                messages,
            };
        }
    }
    last
}

/// Waits (at most [`SETTLE`]) until the sink's counters satisfy `ok`; returns them.
fn wait_counts(sink: &SmtpSink, ok: impl Fn(Counts) -> bool) -> Counts {
    let deadline = Instant::now() + SETTLE;
    loop {
        let c = counts(sink);
        if ok(c) || Instant::now() >= deadline {
            return c;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `SmtpSink::start` makes one probe session (greeting, QUIT): it is in every count.
const PROBE: u64 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_pool_16_tasks_1000_messages_each_over_4_connections() {
    let sink = SmtpSink::start(&["-c"]);
    let pool =
        AsyncPool::with_options(config(sink.port()), PoolOptions::new().max_size(4)).unwrap();
    let body = std::sync::Arc::new(message(0));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let pool = pool.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut delivered = 0;
            for i in 0..1000 {
                let d = pool.send(&envelope(t * 1000 + i), &body).await.unwrap();
                assert_delivered(&d);
                delivered += d.len();
            }
            delivered
        }));
    }
    let mut delivered = 0;
    for t in tasks {
        delivered += t.await.unwrap();
    }
    assert_eq!(delivered, 16_000);
    let stats = pool.stats();
    assert_eq!(
        (stats.opened, stats.retried, stats.in_use),
        (4, 0, 0),
        "{stats:?}"
    );
    pool.close_idle().await;
    let c = wait_counts(&sink, |c| c.sessions >= PROBE + 4 && c.messages >= 16_000);
    // Exactly four connections reached the server, each ended with QUIT, and it received
    // every message.
    assert_eq!(c.sessions, PROBE + 4, "{c:?}");
    assert_eq!(c.quits, PROBE + 4, "{c:?}");
    assert_eq!(c.messages, 16_000, "{c:?}");
}

#[test]
fn blocking_pool_16_threads_over_4_connections() {
    let sink = SmtpSink::start(&["-c"]);
    let pool = Pool::with_options(config(sink.port()), PoolOptions::new().max_size(4)).unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let pool = pool.clone();
            thread::spawn(move || {
                let body = message(t);
                for i in 0..200 {
                    assert_delivered(&pool.send(&envelope(t * 200 + i), &body).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.opened, stats.idle, stats.in_use),
        (4, 4, 0),
        "{stats:?}"
    );
    // Dropping the last handle says QUIT on every idle connection.
    drop(pool);
    let c = wait_counts(&sink, |c| c.sessions >= PROBE + 4 && c.messages >= 3200);
    assert_eq!(
        c,
        Counts {
            sessions: PROBE + 4,
            quits: PROBE + 4,
            messages: 3200
        }
    );
}

/// The server ends an idle connection on its own (smtp-sink `-t 1`: one second without a
/// command). The next message finds the connection dead at the non-blocking check and is
/// sent on a new one: the caller sees only a delivery.
#[test]
fn a_connection_the_server_closed_while_idle_costs_no_message() {
    let sink = SmtpSink::start(&["-c", "-t", "1"]);
    let pool = Pool::new(config(sink.port())).unwrap();
    assert_delivered(&pool.send(&envelope(1), &message(1)).unwrap());
    // The server has ended the pooled session (its counter says so) before the next send.
    let c = wait_counts(&sink, |c| c.sessions > PROBE);
    assert_eq!(
        c.sessions,
        PROBE + 1,
        "the sink never timed the session out: {c:?}"
    );
    assert_eq!(
        pool.stats().idle,
        1,
        "the pool still holds the dead connection"
    );
    for i in 2..=4 {
        assert_delivered(&pool.send(&envelope(i), &message(i)).unwrap());
    }
    let stats = pool.stats();
    assert_eq!((stats.opened, stats.retried), (2, 1), "{stats:?}");
    pool.close_idle();
    let c = wait_counts(&sink, |c| c.sessions >= PROBE + 2 && c.messages >= 4);
    assert_eq!((c.sessions, c.messages), (PROBE + 2, 4), "{c:?}");
}

/// One message accepted, then the script's reply to everything is 421 and a close.
fn accept_one_then(after: Vec<Step>) -> Vec<Step> {
    let mut s = greeting_and_ehlo(&["PIPELINING"]);
    s.extend([
        Step::expect("MAIL FROM:"),
        Step::expect("RCPT TO:"),
        Step::expect("DATA"),
        Step::send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"),
        Step::ExpectData,
        Step::reply("250 2.0.0 queued"),
    ]);
    s.extend(after);
    s
}

fn ends_of_data(conn: &[u8]) -> usize {
    conn.windows(5).filter(|w| w == b"\r\n.\r\n").count()
}

/// The server answers the reused connection's next MAIL with 421 and closes (a server that
/// timed the session out just as the client came back): retried once on a new connection.
#[test]
fn a_421_for_the_first_command_on_a_reused_connection_is_retried_once() {
    let script = accept_one_then(vec![
        Step::expect("MAIL FROM:"),
        Step::reply("421 4.4.2 scripted.test idle too long, closing"),
        Step::Close,
    ]);
    let server = ScriptedServer::accept_n(script, 2);
    let pool = Pool::new(config(server.port())).unwrap();
    assert_delivered(&pool.send(&envelope(1), &message(1)).unwrap());
    assert_delivered(&pool.send(&envelope(2), &message(2)).unwrap());
    let stats = pool.stats();
    assert_eq!((stats.opened, stats.retried), (2, 1), "{stats:?}");
    drop(pool);
    let report = server.finish();
    assert_eq!(report.connections.len(), 2);
    // The second message's data went only to the second connection.
    assert_eq!(ends_of_data(&report.connections[0]), 1);
    assert_eq!(ends_of_data(&report.connections[1]), 1);
}

/// A 421 that arrives while the connection sits idle is read before anything is written.
#[tokio::test]
async fn a_421_sent_while_idle_costs_no_message() {
    let script = accept_one_then(vec![
        Step::Sleep(Duration::from_millis(100)),
        Step::reply("421 4.4.2 scripted.test idle too long, closing"),
        Step::Close,
    ]);
    let server = ScriptedServer::accept_n(script, 2);
    let pool = AsyncPool::new(config(server.port())).unwrap();
    assert_delivered(&pool.send(&envelope(1), &message(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_delivered(&pool.send(&envelope(2), &message(2)).await.unwrap());
    assert_eq!(pool.stats().opened, 2);
    drop(pool);
    let report = tokio::task::spawn_blocking(move || server.finish())
        .await
        .unwrap();
    assert_eq!(report.connections.len(), 2);
    assert_eq!(ends_of_data(&report.connections[0]), 1);
    assert_eq!(ends_of_data(&report.connections[1]), 1);
}

/// The server takes the data and closes without a final reply: the message is in doubt, the
/// connection is not reused, and the next message is not "retried" onto it either.
#[test]
fn an_in_doubt_connection_is_never_reused() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:"),
        Step::expect("RCPT TO:"),
        Step::expect("DATA"),
        Step::send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"),
        Step::ExpectData,
        Step::Close,
    ]);
    let server = ScriptedServer::accept_n(script, 2);
    let pool = Pool::new(config(server.port())).unwrap();
    for i in 1..=2 {
        let d = pool.send(&envelope(i), &message(i)).unwrap();
        assert_eq!(statuses(&d), [DeliveryStatus::InDoubt], "{d:?}");
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.opened, stats.retried, stats.idle),
        (2, 0, 0),
        "{stats:?}"
    );
    let report = server.finish();
    report.assert_ok();
    assert_eq!(report.connections.len(), 2);
    assert!(report.connections.iter().all(|c| ends_of_data(c) == 1));
}

/// A connection idle longer than the pool's idle timeout is closed with QUIT, not reused.
#[test]
fn idle_timeout_closes_instead_of_reusing() {
    let sink = SmtpSink::start(&["-c"]);
    let options = PoolOptions::new().idle_timeout(Duration::from_millis(200));
    let pool = Pool::with_options(config(sink.port()), options).unwrap();
    assert_delivered(&pool.send(&envelope(1), &message(1)).unwrap());
    // Within the timeout: reused (one connection so far).
    assert_delivered(&pool.send(&envelope(2), &message(2)).unwrap());
    assert_eq!(pool.stats().opened, 1);
    // Past it (the sleep only guarantees that much time passed): a new connection.
    thread::sleep(Duration::from_millis(400));
    assert_delivered(&pool.send(&envelope(3), &message(3)).unwrap());
    let stats = pool.stats();
    assert_eq!(
        (stats.opened, stats.retried, stats.idle),
        (2, 0, 1),
        "{stats:?}"
    );
    pool.close_idle();
    let c = wait_counts(&sink, |c| c.sessions >= PROBE + 2 && c.messages >= 3);
    assert_eq!(
        c,
        Counts {
            sessions: PROBE + 2,
            quits: PROBE + 2,
            messages: 3
        }
    );
}

#[test]
fn max_messages_per_connection_opens_fresh_connections() {
    let sink = SmtpSink::start(&["-c"]);
    let options = PoolOptions::new().max_messages_per_connection(Some(3));
    let pool = Pool::with_options(config(sink.port()), options).unwrap();
    for i in 0..7 {
        assert_delivered(&pool.send(&envelope(i), &message(i)).unwrap());
    }
    assert_eq!(pool.stats().opened, 3);
    drop(pool);
    let c = wait_counts(&sink, |c| c.sessions >= PROBE + 3 && c.messages >= 7);
    assert_eq!((c.sessions, c.quits, c.messages), (PROBE + 3, PROBE + 3, 7));
}

#[test]
fn a_server_that_cannot_be_reached_defers_every_recipient() {
    let port = free_port(); // nothing listens there
    let pool = Pool::new(config(port)).unwrap();
    let env = Envelope::new("a@client.test", ["b@x.test", "c@x.test"]).unwrap();
    let d = pool.send(&env, &message(0)).unwrap();
    assert_eq!(
        statuses(&d),
        [DeliveryStatus::Deferred, DeliveryStatus::Deferred]
    );
    assert!(d.iter().all(|d| !d.reason.is_empty()), "{d:?}");
    assert!(d.iter().all(|d| d.host.as_deref() == Some("127.0.0.1")));
    // The slot was given back: the pool is empty, not stuck.
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.idle), (0, 0));
}

/// A full pool whose only connection hangs: a caller's wait ends at the wait timeout (not
/// attempted), and the hung send ends at the engine's greeting timeout (deferred).
#[test]
fn waits_are_bounded_when_the_connections_hang() {
    let server = ScriptedServer::start(vec![Step::Hang]);
    let mut timeouts = Timeouts::default();
    timeouts.greeting = Duration::from_secs(2);
    let options = PoolOptions::new()
        .max_size(1)
        .wait_timeout(Some(Duration::from_millis(100)));
    let pool = Pool::with_options(config(server.port()).timeouts(timeouts), options).unwrap();
    let holder = {
        let pool = pool.clone();
        thread::spawn(move || pool.send(&envelope(1), &message(1)).unwrap())
    };
    let deadline = Instant::now() + SETTLE;
    while pool.stats().in_use == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.stats().in_use, 1);
    let waited = pool.send(&envelope(2), &message(2)).unwrap();
    assert_eq!(
        statuses(&waited),
        [DeliveryStatus::NotAttempted],
        "{waited:?}"
    );
    let held = holder.join().unwrap();
    assert_eq!(statuses(&held), [DeliveryStatus::Deferred], "{held:?}");
    assert_eq!(pool.stats().in_use, 0);
    drop(server);
}

/// A send whose future is dropped part-way gives its slot back and its connection is not
/// reused (its session state is unknown).
#[tokio::test]
async fn a_cancelled_send_frees_its_slot_and_closes_its_connection() {
    let sink = SmtpSink::start(&["-c", "-w", "3"]);
    let pool =
        AsyncPool::with_options(config(sink.port()), PoolOptions::new().max_size(1)).unwrap();
    // smtp-sink -w 3 waits 3 s before answering DATA: the send is surely in flight when
    // it is dropped.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        pool.send(&envelope(1), &message(1)),
    )
    .await;
    assert!(cancelled.is_err());
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.idle), (0, 0), "{stats:?}");
    assert_delivered(&pool.send(&envelope(2), &message(2)).await.unwrap());
    assert_eq!(pool.stats().opened, 2);
}

/// A small SMTP server on loopback that counts the sessions open at once and the most it
/// ever saw; a session stops counting when QUIT arrives (before the 221 leaves), so the
/// count cannot lag behind what the client knows.
fn counting_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let seen = peak.clone();
    thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(stream) = stream else { return };
            let (open, peak) = (open.clone(), peak.clone());
            thread::spawn(move || {
                peak.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                let mut counted = true;
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                let _ = w.write_all(b"220 counting\r\n");
                let (mut line, mut in_data) = (String::new(), false);
                for _ in 0..10_000 {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let reply: &[u8] = if in_data {
                        if line != ".\r\n" {
                            continue;
                        }
                        in_data = false;
                        b"250 2.0.0 queued\r\n"
                    } else {
                        let up = line.to_ascii_uppercase();
                        if up.starts_with("QUIT") {
                            open.fetch_sub(1, Ordering::SeqCst);
                            counted = false;
                            let _ = w.write_all(b"221 bye\r\n");
                            break;
                        }
                        if up.starts_with("EHLO") {
                            b"250-counting\r\n250 PIPELINING\r\n"
                        } else if up.starts_with("DATA") {
                            in_data = true;
                            b"354 go\r\n"
                        } else {
                            b"250 ok\r\n"
                        }
                    };
                    if w.write_all(reply).is_err() {
                        break;
                    }
                }
                if counted {
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn an_expired_connection_is_closed_before_its_replacement_opens() {
    let (port, peak) = counting_server();
    let pool = Pool::with_options(
        config(port),
        PoolOptions::new()
            .max_size(1)
            .idle_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    assert_delivered(&pool.send(&envelope(1), &message(1)).unwrap());
    // Past the idle timeout: the next send finds the connection expired.
    thread::sleep(Duration::from_millis(300));
    assert_delivered(&pool.send(&envelope(2), &message(2)).unwrap());
    assert_eq!(pool.stats().opened, 2, "{:?}", pool.stats());
    assert_eq!(
        peak.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "max_size(1), yet the server saw two sessions at once"
    );
}
