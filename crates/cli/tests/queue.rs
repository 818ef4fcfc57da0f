//! The outbound queue end to end: `send --queue`, sendmail mode's queue on failure and
//! `postline queue ...`, against aiosmtpd on 127.0.0.1 (which stores the bytes it accepted).
//!
//! Every test has its own spool (`--queue-dir`, or `POSTLINE_QUEUE_DIR` for sendmail mode),
//! `POSTLINE_CONFIG` pointing into a tempdir, and `HOME`/`XDG_*` in that tempdir. Every run of
//! the binary is bounded in time.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use postline_testkit::{
    run_code, stderr, stdout, Aiosmtpd, Dnsmasq, Sandbox, SendCmd, StoredMessage,
};

/// Bound on one run of the binary.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for aiosmtpd to store messages.
const STORE_WAIT: Duration = Duration::from_secs(20);

const FROM: &str = "sender@example.com";

/// A sandbox whose runs are bounded by [`RUN_TIMEOUT`]; its spool is `Sandbox::spool`.
fn sandbox() -> Sandbox {
    Sandbox::with_prefix("postline-queue-").run_timeout(RUN_TIMEOUT)
}

/// A message with CRLF line ends and a unique subject.
fn message(subject: &str) -> String {
    format!(
        "From: Sender <{FROM}>\r\nTo: <rcpt@example.com>\r\nSubject: {subject}\r\nMessage-ID: <{}@example.com>\r\n\r\nLine one.\r\n.leading dot\r\nLast line.\r\n",
        subject.replace(' ', "-")
    )
}

/// `send --server SRV --tls none --timeout 10 --from FROM --message FILE --to ...` plus `extra`.
fn send(sb: &Sandbox, srv: &Aiosmtpd, file: &Path, to: &[&str], extra: &[&str]) -> SendCmd {
    let mut cmd = sb
        .send_bare()
        .server(srv.addr())
        .tls("none")
        .timeout(10)
        .from(FROM)
        .message(file);
    for t in to {
        cmd = cmd.to(t);
    }
    cmd.args(extra)
}

/// Queues `n` messages with `--queue-only`, subjects `msg-0`.. ; returns the subjects.
fn enqueue_many(sb: &Sandbox, srv: &Aiosmtpd, n: usize) -> Vec<String> {
    enqueue_batch(sb, srv, "msg", n)
}

/// Queues `n` messages with `--queue-only`, subjects `PREFIX-0`.. ; returns the subjects.
fn enqueue_batch(sb: &Sandbox, srv: &Aiosmtpd, prefix: &str, n: usize) -> Vec<String> {
    let spool = sb.spool_str();
    (0..n)
        .map(|i| {
            let subject = format!("{prefix}-{i}");
            let file = sb.write(&format!("{subject}.eml"), message(&subject));
            let o = run_code(
                send(
                    sb,
                    srv,
                    &file,
                    &["rcpt@example.com"],
                    &["--queue-only", "--queue-dir", &spool],
                ),
                0,
            );
            assert!(!stdout(&o).trim().is_empty(), "--queue-only prints the id");
            subject
        })
        .collect()
}

fn subject_of(m: &StoredMessage) -> String {
    let text = String::from_utf8_lossy(&m.content);
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn subject_counts(srv: &Aiosmtpd) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in srv.messages() {
        *counts.entry(subject_of(&m)).or_default() += 1;
    }
    counts
}

fn files_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A tiny xorshift, seeded from the clock (the seed is printed to replay a failure).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("POSTLINE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("crash test seed: {seed} (POSTLINE_CRASH_SEED to replay)");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Waits for a child, killing it past `limit`.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("postline did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------------------------ tests

/// 451 for the first two attempts, then accepted: delivered on a later run, once, intact.
#[test]
fn tempfail_then_accept_delivers_once_with_bytes_intact() {
    let srv = Aiosmtpd::builder().tempfail_first(2).start();
    let sb = sandbox();
    let body = message("tempfail then accept");
    let file = sb.write("m.eml", &body);
    let spool = sb.spool_str();
    let o = run_code(
        send(
            &sb,
            &srv,
            &file,
            &["rcpt@example.com"],
            &["--queue", "--queue-dir", &spool],
        ),
        0,
    );
    let err = stderr(&o);
    assert!(
        err.contains("postline: queued as ")
            && err.contains("for 1 recipient(s)")
            && err.contains("postline queue run")
            && err.contains(": 451"),
        "{err}"
    );
    assert!(
        stdout(&o).contains("queued    rcpt@example.com"),
        "{}",
        stdout(&o)
    );
    let list = sb.queue_list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["attempts"], 1);
    assert!(list[0]["last_error"].as_str().unwrap().contains("451"));
    assert!(list[0]["next_in_secs"].as_u64().unwrap() > 30, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();

    // Not due yet: a run leaves it alone, and says nothing (it runs from cron).
    let o = run_code(&mut sb.queue("run", &[]), 0);
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(sb.queue_list()[0]["attempts"], 1);

    // A flush tries it now: the second 451.
    let o = run_code(&mut sb.queue("flush", &[]), 0);
    assert!(
        stdout(&o).contains("attempted 1, delivered 0, deferred 1"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(&format!("{id}  deferred")),
        "{}",
        stdout(&o)
    );
    let list = sb.queue_list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["attempts"], 2);
    assert!(srv.messages().is_empty());

    // The third attempt is accepted.
    let o = run_code(&mut sb.queue("flush", &[]), 0);
    assert!(
        stdout(&o).contains("attempted 1, delivered 1, deferred 0, failed 0"),
        "{}",
        stdout(&o)
    );
    let msgs = srv.wait_for_messages(1, STORE_WAIT);
    assert_eq!(msgs.len(), 1, "exactly once");
    assert_eq!(msgs[0].content, body.as_bytes(), "bytes intact");
    assert_eq!(msgs[0].mail_from, FROM);
    assert_eq!(msgs[0].rcpt_tos, ["rcpt@example.com"]);
    assert!(sb.queue_list().is_empty());
    // Nothing more to do: another flush sends nothing.
    run_code(&mut sb.queue("flush", &[]), 0);
    assert_eq!(srv.messages().len(), 1);
}

/// `send --queue` with one recipient refused (550) and the transaction deferred (451 at
/// DATA): the refusal is reported now (exit 67), only the deferred recipient is queued.
#[test]
fn send_queue_queues_only_deferred_recipients() {
    let srv = Aiosmtpd::builder()
        .reject_rcpt("refuse")
        .tempfail_first(1)
        .start();
    let sb = sandbox();
    let file = sb.write("m.eml", message("mixed"));
    let spool = sb.spool_str();
    let o = run_code(
        send(
            &sb,
            &srv,
            &file,
            &["ok@example.com", "refuse@example.com"],
            &["--queue", "--queue-dir", &spool],
        ),
        67,
    );
    let out = stdout(&o);
    assert!(out.contains("refused   refuse@example.com  550"), "{out}");
    assert!(out.contains("queued    ok@example.com  451"), "{out}");
    assert!(stderr(&o).contains("for 1 recipient(s)"), "{}", stderr(&o));
    let list = sb.queue_list();
    assert_eq!(list.len(), 1);
    let rcpts = list[0]["recipients"].as_array().unwrap();
    assert_eq!(rcpts.len(), 1, "{list:?}");
    assert_eq!(rcpts[0]["address"], "ok@example.com");
    run_code(&mut sb.queue("flush", &[]), 0);
    let msgs = srv.wait_for_messages(1, STORE_WAIT);
    assert_eq!(msgs[0].rcpt_tos, ["ok@example.com"]);
    assert!(sb.queue_list().is_empty());

    // --json says the same.
    let srv = Aiosmtpd::builder().tempfail_first(1).start();
    let o = run_code(
        send(
            &sb,
            &srv,
            &file,
            &["ok@example.com"],
            &["--queue", "--queue-dir", &spool, "--json"],
        ),
        0,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["status"], "queued", "{v}");
    assert_eq!(v["recipients"][0]["result"], "queued", "{v}");
    assert_eq!(sb.queue_list()[0]["id"], v["queue_id"]);
}

/// A queued message with one refused and one deferred recipient: only the deferred one is
/// retried; once it is delivered, a bounce report for the refused one goes to the sender
/// from `<>`, along the same route.
#[test]
fn per_recipient_state_and_bounce_report() {
    let srv = Aiosmtpd::builder()
        .reject_rcpt("refuse")
        .tempfail_first(1)
        .start();
    let sb = sandbox();
    let body = message("bounce me");
    let file = sb.write("m.eml", &body);
    let spool = sb.spool_str();
    let o = run_code(
        send(
            &sb,
            &srv,
            &file,
            &["ok@example.com", "refuse@example.com"],
            &["--queue-only", "--queue-dir", &spool],
        ),
        0,
    );
    let id = stdout(&o).trim().to_string();

    // First run: the refusal is final, the 451 defers the other recipient.
    let o = run_code(&mut sb.queue("run", &[]), 0);
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "{id}  failed     refuse@example.com  via 127.0.0.1  550"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{id}  deferred   ok@example.com  via 127.0.0.1  451"
        )),
        "{out}"
    );
    let o = run_code(&mut sb.queue("show", &[&id]), 0);
    let shown = stdout(&o);
    assert!(shown.contains("failed    refuse@example.com"), "{shown}");
    assert!(shown.contains("pending   ok@example.com"), "{shown}");
    let list = sb.queue_list();
    assert_eq!(list[0]["pending"], serde_json::json!(["ok@example.com"]));

    // Second: delivered to the other; the message leaves the queue and a bounce comes in.
    let o = run_code(&mut sb.queue("flush", &[]), 0);
    let out = stdout(&o);
    assert!(out.contains("failed 1, bounces 1"), "{out}");
    let msgs = srv.wait_for_messages(1, STORE_WAIT);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0].rcpt_tos,
        ["ok@example.com"],
        "only the deferred one"
    );
    assert_eq!(msgs[0].content, body.as_bytes());
    let list = sb.queue_list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["is_bounce"], true);
    assert_eq!(list[0]["from"], "");
    assert_eq!(list[0]["recipients"][0]["address"], FROM);
    assert!(sb.spool().join(format!("failed/{id}.json")).exists());

    // The bounce travels the same route, from the null sender.
    run_code(&mut sb.queue("run", &[]), 0);
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    assert_eq!(msgs[1].mail_from, "<>");
    assert_eq!(msgs[1].rcpt_tos, [FROM]);
    let text = String::from_utf8_lossy(&msgs[1].content);
    assert!(text.contains("<refuse@example.com>: 550"), "{text}");
    assert!(text.contains("Subject: bounce me"), "{text}");
    assert!(
        text.contains("Content-Type: multipart/report; report-type=delivery-status"),
        "{text}"
    );
    assert!(
        text.contains(
            "Final-Recipient: rfc822; refuse@example.com\r\nAction: failed\r\nStatus: 5.1.1"
        ),
        "{text}"
    );
    assert!(text.contains("\r\nDate: "), "{text}");
    assert!(sb.queue_list().is_empty());
}

/// SIGKILL at random points while the queue is being sent: nothing is lost; duplicates are
/// counted and reported. 40 messages are queued; whenever a pass got through all of them
/// before its kill, 40 more are, so that every iteration kills a runner with work in hand.
#[test]
fn crash_at_random_points_loses_nothing() {
    const BATCH: usize = 40;
    const ITERATIONS: usize = 30;
    const DUPLICATES_PER_KILL: usize = 10;
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    let mut subjects = enqueue_batch(&sb, &srv, "batch0", BATCH);
    let mut rng = Rng::new();
    let started = Instant::now();
    let (mut iterations, mut kills, mut batches) = (0, 0, 1);
    while iterations < ITERATIONS && started.elapsed() < Duration::from_secs(60) {
        if files_in(&sb.spool()).iter().all(|f| !f.ends_with(".json")) {
            subjects.extend(enqueue_batch(&sb, &srv, &format!("batch{batches}"), BATCH));
            batches += 1;
        }
        iterations += 1;
        let mut child = sb.spawn_queue("flush", &[]);
        std::thread::sleep(Duration::from_millis(rng.below(301)));
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        wait_bounded(&mut child, Duration::from_secs(10));
    }
    let o = run_code(&mut sb.queue("flush", &[]), 0);
    let counts = subject_counts(&srv);
    let missing: Vec<&String> = subjects
        .iter()
        .filter(|s| !counts.contains_key(*s))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}\n{}", stdout(&o));
    assert_eq!(
        counts.len(),
        subjects.len(),
        "nothing unexpected: {counts:?}"
    );
    let total: usize = counts.values().sum();
    let duplicates = total - subjects.len();
    eprintln!(
        "crash test: {iterations} iterations, {kills} SIGKILLs, {} messages queued in {batches} batches, {total} stored, {duplicates} duplicate(s)",
        subjects.len()
    );
    assert!(sb.queue_list().is_empty(), "the queue is empty");
    assert!(
        files_in(&sb.spool().join("corrupt")).is_empty(),
        "a crash never corrupts an entry"
    );
    // A kill can re-send only what was on the wire or whose reply came in during the one
    // group commit under way: a few messages per connection, never a whole batch.
    assert!(
        duplicates <= kills * DUPLICATES_PER_KILL,
        "{duplicates} duplicates for {kills} kills"
    );
    assert!(kills > 0, "the test killed nothing");
}

/// Garbage metadata and a truncated message file are reported and moved aside; the other
/// messages go out.
#[test]
fn corrupt_and_truncated_entries_are_moved_aside() {
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    enqueue_many(&sb, &srv, 4);
    let list = sb.queue_list();
    let garbage = list[1]["id"].as_str().unwrap().to_string();
    let truncated = list[2]["id"].as_str().unwrap().to_string();
    fs::write(
        sb.spool().join(format!("{garbage}.json")),
        b"\x00{ this is not json",
    )
    .unwrap();
    let eml = sb.spool().join(format!("{truncated}.eml"));
    let bytes = fs::read(&eml).unwrap();
    fs::write(&eml, &bytes[..bytes.len() / 2]).unwrap();

    let o = run_code(&mut sb.queue("flush", &[]), 0);
    let err = stderr(&o);
    assert!(
        err.contains("moved to corrupt/") && err.contains(&garbage),
        "{err}"
    );
    assert!(
        err.contains(&truncated) && err.contains("truncated"),
        "{err}"
    );
    assert!(stdout(&o).contains("delivered 2"), "{}", stdout(&o));
    let counts = subject_counts(&srv);
    assert_eq!(counts.len(), 2);
    assert!(counts.contains_key("msg-0") && counts.contains_key("msg-3"));
    let corrupt = files_in(&sb.spool().join("corrupt"));
    assert!(corrupt.contains(&format!("{garbage}.json")), "{corrupt:?}");
    assert!(corrupt.contains(&format!("{truncated}.eml")), "{corrupt:?}");
    assert!(sb.queue_list().is_empty());
    // And a later run is clean.
    let o = run_code(&mut sb.queue("run", &[]), 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

/// Two runners at once: each message delivered exactly once.
#[test]
fn two_concurrent_runners_deliver_each_message_once() {
    const MESSAGES: usize = 30;
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    let subjects = enqueue_many(&sb, &srv, MESSAGES);
    let mut a = sb.spawn_queue("flush", &[]);
    let mut b = sb.spawn_queue("flush", &[]);
    assert!(wait_bounded(&mut a, RUN_TIMEOUT).success());
    assert!(wait_bounded(&mut b, RUN_TIMEOUT).success());
    let counts = subject_counts(&srv);
    for s in &subjects {
        assert_eq!(counts.get(s), Some(&1), "{s}: {counts:?}");
    }
    assert_eq!(counts.values().sum::<usize>(), MESSAGES);
    assert!(sb.queue_list().is_empty());
}

/// `queue list`, `show` and `remove`; `show` of a removed message exits 66 (EX_NOINPUT), of
/// something that is not a queue id 64.
#[test]
fn list_show_remove() {
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    enqueue_many(&sb, &srv, 3);
    let o = run_code(&mut sb.queue("list", &[]), 0);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines()
            .all(|l| l.contains("to rcpt@example.com") && l.contains("attempts 0")),
        "{out}"
    );
    let id = sb.queue_list()[0]["id"].as_str().unwrap().to_string();
    let o = run_code(&mut sb.queue("show", &[&id]), 0);
    let out = stdout(&o);
    assert!(out.contains(&format!("id          {id}")), "{out}");
    assert!(out.contains(&format!("from        <{FROM}>")), "{out}");
    assert!(out.contains("pending   rcpt@example.com"), "{out}");
    assert!(
        out.contains(&format!("route       relay {}", srv.addr())),
        "the route: {out}"
    );
    let o = run_code(&mut sb.queue("show", &[&id, "--json"]), 0);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["route"]["server"], srv.addr());
    assert_eq!(v["route"]["version"], 1);

    let o = run_code(&mut sb.queue("remove", &[&id]), 0);
    assert!(stdout(&o).contains(&format!("removed {id}")));
    let o = run_code(&mut sb.queue("show", &[&id]), 66);
    assert!(
        stderr(&o).contains(&format!("no message {id}")),
        "{}",
        stderr(&o)
    );
    run_code(&mut sb.queue("remove", &[&id]), 66);
    run_code(&mut sb.queue("show", &["../etc/passwd"]), 64);
    assert_eq!(sb.queue_list().len(), 2);
    run_code(&mut sb.queue("flush", &[]), 0);
    assert_eq!(srv.messages().len(), 2, "the removed one is not sent");
}

/// sendmail mode queues on a transient failure and exits 0; POSTLINE_NO_QUEUE=1 restores
/// exit 75; -odq queues without trying.
#[test]
fn sendmail_mode_queues_on_failure() {
    let srv = Aiosmtpd::builder().tempfail_first(2).start();
    let sb = sandbox();
    sb.write(
        "config.toml",
        format!(
            "default = \"relay\"\n[accounts.relay]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"daemon@example.com\"\n",
            srv.port()
        ),
    );
    let msg = "To: rcpt@example.com\r\nSubject: from cron\r\n\r\nbody\r\n";
    let spool = sb.spool_str();
    let o = run_code(
        sb.cmd(&["sendmail", "-t", "-i", "--queue-on-failure"])
            .env("POSTLINE_QUEUE_DIR", &spool)
            .write_stdin(msg),
        0,
    );
    assert!(stdout(&o).is_empty(), "sendmail is quiet: {}", stdout(&o));
    assert!(stderr(&o).contains("queued as"), "{}", stderr(&o));
    let list = sb.queue_list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["from"], "daemon@example.com");
    assert_eq!(list[0]["route"]["account"], "relay");

    // Queueing off: exit 75 as without a queue (this is the second 451).
    let o = run_code(
        sb.cmd(&["sendmail", "-t", "-i"])
            .env("POSTLINE_QUEUE_DIR", &spool)
            .env("POSTLINE_NO_QUEUE", "1")
            .write_stdin(msg),
        75,
    );
    assert!(!stderr(&o).contains("queued as"), "{}", stderr(&o));
    assert_eq!(sb.queue_list().len(), 1);

    // -odq: queued without trying, silently.
    let o = run_code(
        sb.cmd(&["sendmail", "-odq", "-t", "-i"])
            .env("POSTLINE_QUEUE_DIR", &spool)
            .write_stdin(msg),
        0,
    );
    assert!(stdout(&o).is_empty() && stderr(&o).is_empty());
    assert_eq!(sb.queue_list().len(), 2);

    run_code(&mut sb.queue("flush", &[]), 0);
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert_eq!(m.mail_from, "daemon@example.com");
        assert_eq!(m.rcpt_tos, ["rcpt@example.com"]);
        assert!(String::from_utf8_lossy(&m.content).contains("Subject: from cron"));
    }
    assert!(sb.queue_list().is_empty());
}

/// `queue run --daemon` delivers what is due, and SIGTERM ends it with exit 0.
#[test]
fn daemon_delivers_and_stops_on_sigterm() {
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    enqueue_many(&sb, &srv, 2);
    let mut daemon = sb.spawn_queue("run", &["--daemon"]);
    let msgs = srv.wait_for_messages(2, STORE_WAIT);
    assert_eq!(msgs.len(), 2);
    // Give it time to record the deliveries and go to sleep.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files_in(&sb.spool()).iter().all(|f| !f.ends_with(".json")) {
        assert!(Instant::now() < deadline, "the daemon did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.try_wait().unwrap().is_none(), "still running");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let started = Instant::now();
    let status = wait_bounded(&mut daemon, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(srv.messages().len(), 2);
}

/// Direct delivery (no server, no account) from the queue: the MX lookup is made again at
/// each attempt, through the `--dns-server` the route recorded.
#[test]
fn direct_delivery_is_queued_and_retried() {
    let dns = Dnsmasq::start(&[
        "--mx-host=one.test,mx.one.test,10".to_string(),
        "--host-record=mx.one.test,127.0.0.1".to_string(),
    ]);
    let srv = Aiosmtpd::builder().tempfail_first(1).start();
    let sb = sandbox();
    let spool = sb.spool_str();
    let dns_addr = dns.addr.to_string();
    let port = srv.port().to_string();
    let o = run_code(
        sb.send_bare()
            .from("me@client.test")
            .to("a@one.test")
            .subject("direct and queued")
            .body("hello")
            .helo("client.test")
            .timeout(5)
            .args(["--dns-server", &dns_addr])
            .args(["--mx-port", &port])
            .args(["--queue", "--queue-dir", &spool]),
        0,
    );
    assert!(stderr(&o).contains("queued as"), "{}", stderr(&o));
    let list = sb.queue_list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["route"]["direct"], true, "{list:?}");
    run_code(&mut sb.queue("flush", &[]), 0);
    let msgs = srv.wait_for_messages(1, STORE_WAIT);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpt_tos, ["a@one.test"]);
    assert_eq!(subject_of(&msgs[0]), "direct and queued");
    assert!(sb.queue_list().is_empty());
}

/// A spool path that is not a directory: exit 73 (EX_CANTCREAT).
#[test]
fn unusable_spool_is_73() {
    let sb = sandbox();
    let file = sb.write("not-a-dir", "x");
    let o = run_code(
        &mut sb.cmd(&["queue", "run", "--queue-dir", file.to_str().unwrap()]),
        73,
    );
    assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));
}

/// `postline queue flush | head -1`: the pipe closes after the first line; every result is
/// still recorded (exit 0, not a panic), and a second flush sends nothing again.
#[test]
fn flush_into_a_closed_pipe_records_everything_once() {
    use std::io::BufRead;
    const MESSAGES: usize = 20;
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    let subjects = enqueue_many(&sb, &srv, MESSAGES);
    let mut child = sb
        .std_cmd()
        .args(["queue", "flush", "--queue-dir"])
        .arg(sb.spool())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn postline");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("one line");
    // The reader is gone now, as after `head -1`.
    let status = wait_bounded(&mut child, RUN_TIMEOUT);
    let mut err = String::new();
    use std::io::Read;
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(first.contains("delivered"), "{first}");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(sb.queue_list().is_empty(), "every result recorded");
    run_code(&mut sb.queue("flush", &[]), 0);
    let counts = subject_counts(&srv);
    for s in &subjects {
        assert_eq!(counts.get(s), Some(&1), "{s}: {counts:?}");
    }
}

/// A spool other users could write is refused (77, EX_NOPERM); one they could only read is
/// made private; queued files are 0600.
#[test]
fn a_shared_spool_is_refused_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    enqueue_many(&sb, &srv, 1);
    let spool = sb.spool();
    for e in fs::read_dir(&spool).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        let expected = if e.path().is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{:?}", e.path());
    }
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o777)).unwrap();
    let o = run_code(&mut sb.queue("list", &[]), 77);
    assert!(
        stderr(&o).contains("writable by other users"),
        "{}",
        stderr(&o)
    );
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o755)).unwrap();
    run_code(&mut sb.queue("list", &[]), 0);
    let mode = fs::metadata(&spool).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// A password command given on the command line is never stored for the runner: queueing
/// with it is a usage error before anything is sent, and a spool entry edited to carry one
/// is not obeyed.
#[test]
fn a_password_command_is_never_queued_nor_run_from_the_spool() {
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    let file = sb.write("m.eml", message("cmd"));
    let spool = sb.spool_str();
    let o = run_code(
        send(
            &sb,
            &srv,
            &file,
            &["rcpt@example.com"],
            &[
                "--queue",
                "--queue-dir",
                &spool,
                "--user",
                "me",
                "--password-cmd",
                "echo pw",
            ],
        ),
        64,
    );
    assert!(stderr(&o).contains("--password-cmd"), "{}", stderr(&o));
    assert!(srv.messages().is_empty(), "nothing sent");
    // An entry whose route carries a command (as the first format did, or a hostile edit).
    enqueue_many(&sb, &srv, 1);
    let id = sb.queue_list()[0]["id"].as_str().unwrap().to_string();
    let path = sb.spool().join(format!("{id}.json"));
    let marker = sb.spool().join("pwned");
    let mut v: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    v["route"]["password_cmd"] = Value::String(format!("touch {}", marker.display()));
    fs::write(&path, v.to_string()).unwrap();
    run_code(&mut sb.queue("flush", &[]), 0);
    assert!(!marker.exists(), "the command ran");
    assert!(
        files_in(&sb.spool().join("corrupt")).contains(&format!("{id}.json")),
        "an entry that is not a valid route is set aside"
    );
}

/// SIGTERM while the daemon is in the middle of a large queue: it stops after the round on
/// the wire, every message it sent is recorded, and the next run sends only the rest: each
/// message exactly once.
#[test]
fn sigterm_mid_drain_records_what_was_sent_and_sends_nothing_twice() {
    const MESSAGES: usize = 150;
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    let subjects = enqueue_many(&sb, &srv, MESSAGES);
    let mut daemon = sb.spawn_queue("run", &["--daemon"]);
    // Once some are stored, and before all are, stop it.
    let deadline = Instant::now() + STORE_WAIT;
    while srv.messages().len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let status = wait_bounded(&mut daemon, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let left = sb.queue_list().len();
    let sent = MESSAGES - left;
    assert!(
        left > 0,
        "the test stopped nothing: every message was already sent"
    );
    // What the daemon sent is exactly what it removed from the queue.
    let deadline = Instant::now() + STORE_WAIT;
    while srv.messages().len() < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        srv.messages().len(),
        sent,
        "sent but not recorded, or recorded but not sent"
    );
    run_code(&mut sb.queue("flush", &[]), 0);
    let counts = subject_counts(&srv);
    for s in &subjects {
        assert_eq!(counts.get(s), Some(&1), "{s}: {counts:?}");
    }
    assert!(sb.queue_list().is_empty());
}

/// Reading commands create nothing; a directory that is not a spool is never used (the
/// runner moves and deletes files in a spool); a symbolic link is refused even written with
/// a trailing slash.
#[test]
fn the_spool_is_never_created_or_changed_by_reading_commands() {
    use std::os::unix::fs::PermissionsExt;
    let sb = sandbox();
    let missing = sb.spool().join("typo/queue");
    let m = missing.to_str().unwrap();
    let o = run_code(&mut sb.cmd(&["queue", "list", "--queue-dir", m]), 0);
    assert!(stderr(&o).contains("no queue at"), "{}", stderr(&o));
    run_code(
        &mut sb.cmd(&["queue", "show", "abc-1", "--queue-dir", m]),
        66,
    );
    assert!(!missing.exists(), "nothing created");
    // Someone's ordinary directory (mode 755, with files): refused, left as it was.
    let home = sb.spool().join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("notes.txt"), "x").unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    let o = run_code(
        &mut sb.cmd(&["queue", "run", "--queue-dir", home.to_str().unwrap()]),
        77,
    );
    assert!(
        stderr(&o).contains("not a postline queue"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::metadata(&home).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(!home.join("failed").exists());
    // A link to a spool, with or without a trailing slash.
    let real = sb.spool().join("real");
    fs::create_dir_all(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = sb.spool().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for l in [
        link.to_str().unwrap().to_string(),
        format!("{}/", link.display()),
    ] {
        let o = run_code(&mut sb.cmd(&["queue", "run", "--queue-dir", &l]), 73);
        assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    }
}

/// The route keeps what the first attempt used: a password file's absolute path and the
/// user's leave to read it although others can, so a runner started elsewhere sends it.
#[test]
fn a_queued_route_keeps_the_password_file_and_its_leave() {
    let srv = Aiosmtpd::builder()
        .auth("me", "secret")
        .auth_plaintext()
        .start();
    let sb = sandbox();
    let file = sb.write("m.eml", message("pwfile"));
    let pw = sb.write("pw", "secret\n");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let spool = sb.spool_str();
    // Queued from the sandbox directory with a relative path.
    run_code(
        send(
            &sb,
            &srv,
            &file,
            &["rcpt@example.com"],
            &["--queue-only", "--queue-dir", &spool],
        )
        .args([
            "--user",
            "me",
            "--password-file",
            "pw",
            "--allow-world-readable-password",
            "--allow-plaintext-auth",
        ])
        .current_dir(pw.parent().unwrap()),
        0,
    );
    let list = sb.queue_list();
    let stored = list[0]["route"]["secret"]["password-file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stored.starts_with('/'), "{stored}");
    // The runner starts elsewhere.
    let o = run_code(sb.queue("flush", &[]).current_dir("/"), 0);
    assert!(
        stdout(&o).contains("delivered 1"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(srv.wait_for_messages(1, STORE_WAIT).len(), 1);
}

/// An entry that cannot be read is removed by `queue remove` like any other.
#[test]
fn remove_takes_a_corrupt_entry_too() {
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    enqueue_many(&sb, &srv, 1);
    let id = sb.queue_list()[0]["id"].as_str().unwrap().to_string();
    fs::write(sb.spool().join(format!("{id}.json")), b"{ broken").unwrap();
    let o = run_code(&mut sb.queue("remove", &[&id]), 0);
    assert!(stdout(&o).contains("removed"), "{}", stdout(&o));
    assert!(!sb.spool().join(format!("{id}.json")).exists());
    assert!(!sb.spool().join(format!("{id}.eml")).exists());
}

/// `queue flush ID`: only that message is sent now; an id that is not queued is 66 and
/// sends nothing.
#[test]
fn flush_one_message_by_id() {
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    let subjects = enqueue_many(&sb, &srv, 3);
    let list = sb.queue_list();
    let second = list[1]["id"].as_str().unwrap().to_string();
    run_code(&mut sb.queue("flush", &["abc-1"]), 66);
    assert!(srv.messages().is_empty());
    let o = run_code(&mut sb.queue("flush", &[&second]), 0);
    assert!(
        stdout(&o).contains("attempted 1, delivered 1"),
        "{}",
        stdout(&o)
    );
    let msgs = srv.wait_for_messages(1, STORE_WAIT);
    assert_eq!(msgs.len(), 1);
    assert_eq!(subject_of(&msgs[0]), subjects[1]);
    assert_eq!(sb.queue_list().len(), 2);
}

/// A spool on a nearly full file system (a private 4 MiB tmpfs, below the 16 MiB minimum):
/// `queue flush` sends nothing (results could not be recorded) and exits 75 saying why.
#[test]
fn a_nearly_full_disk_sends_nothing_and_says_why() {
    let srv = Aiosmtpd::start();
    let sb = sandbox();
    let disk = postline_testkit::Tmpfs::mount(4096);
    let dir = disk.path();
    let spool = dir.join("q");
    let file = sb.write("m.eml", message("full"));
    let sp = spool.to_str().unwrap();
    run_code(
        send(
            &sb,
            &srv,
            &file,
            &["rcpt@example.com"],
            &["--queue-only", "--queue-dir", sp],
        ),
        0,
    );
    let o = run_code(&mut sb.cmd(&["queue", "flush", "--queue-dir", sp]), 75);
    assert!(stderr(&o).contains("bytes free"), "{}", stderr(&o));
    assert!(srv.messages().is_empty(), "nothing sent");
}
