//! The queue runner's promises, each with its failure path: results recorded as they come,
//! nothing lost or sent again when the disk is full, mail in doubt retried or held, local
//! faults deferred, unreadable entries skipped, bounces only once they can be written.
//!
//! Most tests drive the runner with a scripted deliverer (deterministic results); the last
//! ones deliver for real to Postfix's smtp-sink and to a scripted SMTP peer. The full-disk
//! tests mount a small private tmpfs (they need root, as CI has) and unmount it afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use postline::{Config, Tls};
use postline_queue::{
    Deliver, Delivery, DeliveryStatus, Destination, Entry, InDoubt, Job, NotifyOn, Policy,
    RecipientStatus, Record, Route, RunReport, Runner, Smtp, Spool,
};
use postline_testkit::SmtpSink;
use postline_testkit::{greeting_and_ehlo, ScriptedServer, Step, Tmpfs};

/// What the scripted deliverer answers for one recipient.
type Answer = dyn Fn(&str) -> DeliveryStatus + Send;

/// A deliverer that answers each recipient by `answer` and counts what it was given.
struct Scripted {
    answer: Box<Answer>,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn new(answer: impl Fn(&str) -> DeliveryStatus + Send + 'static) -> Self {
        Scripted {
            answer: Box::new(answer),
            calls: Arc::default(),
            seen: Arc::default(),
        }
    }
}

impl Deliver for Scripted {
    fn deliver(&mut self, _route: &Route, jobs: &[Job<'_>], record: &Record<'_>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let results = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let list = j
                    .recipients
                    .iter()
                    .map(|a| {
                        self.seen.lock().unwrap().push(a.to_string());
                        let status = (self.answer)(a);
                        let reply = postline::ServerReply {
                            code: match status {
                                DeliveryStatus::Delivered => 250,
                                DeliveryStatus::Failed => 550,
                                _ => 451,
                            },
                            enhanced: None,
                            lines: vec![format!("scripted {status}")],
                        };
                        Delivery::new(*a, status, Some(&reply), "")
                    })
                    .collect();
                (i, list)
            })
            .collect();
        record(results);
    }
}

fn route() -> Route {
    Route::relay("127.0.0.1:25")
}

fn enqueue(spool: &Spool, to: &[&str], body: &[u8]) -> String {
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    spool
        .enqueue("sender@x.test", &to, &route(), body, SystemTime::now())
        .expect("enqueue")
}

/// Queues a message under `id` as if it had been queued `age` ago.
fn enqueue_old(spool: &Spool, id: &str, to: &[&str], age: Duration) {
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    let mut e = spool.new_entry("s@x", &to, &route(), b"m\r\n", SystemTime::now() - age);
    e.id = id.into();
    spool.enqueue_entry(e, b"m\r\n").unwrap();
}

/// The default policy without bounces or the free-space minimum.
fn no_bounce_policy() -> Policy {
    Policy {
        bounce: false,
        ..quiet_policy()
    }
}

fn pass<D: Deliver>(runner: &mut Runner<D>, force: bool) -> RunReport {
    runner.pass(SystemTime::now(), force, &|| false, &mut |_, _| {})
}

fn quiet_policy() -> Policy {
    Policy {
        min_free_bytes: 0,
        ..Policy::default()
    }
}

#[test]
fn delivered_leave_deferred_back_off_and_only_pending_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = enqueue(&spool, &["ok@y", "later@y"], b"m\r\n");
    let d = Scripted::new(|a| {
        if a.starts_with("ok") {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Deferred
        }
    });
    let seen = d.seen.clone();
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    let r = pass(&mut runner, false);
    assert_eq!((r.attempted, r.deferred, r.completed), (1, 1, 0), "{r:?}");
    let e = spool.load(&id).unwrap();
    assert_eq!(e.attempts, 1);
    assert!(matches!(
        e.recipients[0].status,
        RecipientStatus::Delivered { .. }
    ));
    let wait = e.next_attempt - postline_queue::unix_now(SystemTime::now());
    assert!(
        (50..=70).contains(&wait),
        "first retry after ~1 min: {wait}"
    );
    // Not due: untouched; forced: only the pending recipient.
    assert_eq!(pass(&mut runner, false).attempted, 0);
    seen.lock().unwrap().clear();
    let r = pass(&mut runner, true);
    assert_eq!(*seen.lock().unwrap(), ["later@y"]);
    assert_eq!(r.attempted, 1);
}

#[test]
fn in_doubt_is_retried_by_default_and_held_by_policy() {
    for (policy, held) in [(InDoubt::Retry, false), (InDoubt::Hold, true)] {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = enqueue(&spool, &["a@y"], b"m\r\n");
        let d = Scripted::new(|_| DeliveryStatus::InDoubt);
        let calls = d.calls.clone();
        let p = Policy {
            in_doubt: policy,
            ..quiet_policy()
        };
        let mut runner = Runner::new(spool.clone(), p, d);
        pass(&mut runner, false);
        let e = spool.load(&id).unwrap();
        match (&e.recipients[0].status, held) {
            (RecipientStatus::Pending { in_doubt: true, .. }, false) => {}
            (RecipientStatus::Held { .. }, true) => {}
            (s, _) => panic!("{policy:?}: {s:?}"),
        }
        // Held mail is never sent again by a pass, even forced; retried mail is.
        pass(&mut runner, true);
        assert_eq!(calls.load(Ordering::SeqCst), if held { 1 } else { 2 });
        assert!(spool.load(&id).is_ok(), "never dropped");
    }
}

#[test]
fn not_attempted_costs_no_attempt_but_waits_the_first_retry() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = enqueue(&spool, &["a@y"], b"m\r\n");
    let mut runner = Runner::new(
        spool.clone(),
        quiet_policy(),
        Scripted::new(|_| DeliveryStatus::NotAttempted),
    );
    pass(&mut runner, false);
    let e = spool.load(&id).unwrap();
    assert_eq!(e.attempts, 0);
    // Not hammered when a server keeps dropping connections: due again after a minute.
    let wait = e.next_attempt - postline_queue::unix_now(SystemTime::now());
    assert!((55..=60).contains(&wait), "{wait}");
    assert_eq!(e.pending().count(), 1);
}

#[test]
fn a_permanent_failure_bounces_once_as_a_delivery_status_report() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = enqueue(&spool, &["bad@y"], b"Subject: hi\r\n\r\nbody\r\n");
    let mut runner = Runner::new(
        spool.clone(),
        quiet_policy(),
        Scripted::new(|_| DeliveryStatus::Failed),
    );
    let r = pass(&mut runner, false);
    assert_eq!((r.failed, r.bounces), (1, 1), "{r:?}");
    assert!(dir.path().join(format!("failed/{id}.json")).exists());
    let (list, _) = spool.list();
    assert_eq!(list.len(), 1);
    let bounce = &list[0];
    assert!(bounce.is_bounce && bounce.from.is_empty());
    let text = String::from_utf8(spool.message(&bounce.id).unwrap()).unwrap();
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; bad@y"), "{text}");
    // A bounce that fails is not bounced again.
    let r = pass(&mut runner, true);
    assert_eq!((r.failed, r.bounces), (1, 0));
    assert!(spool.list().0.is_empty());
}

#[test]
fn a_sender_who_asked_for_no_failure_notice_gets_no_bounce() {
    for (notify, bounces) in [
        (vec![NotifyOn::Never], 0),
        (vec![NotifyOn::Success, NotifyOn::Delay], 0),
        (vec![NotifyOn::Failure], 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut e = spool.new_entry(
            "sender@x.test",
            &["bad@y".to_string()],
            &route(),
            b"m\r\n",
            SystemTime::now(),
        );
        e.dsn = Some(postline_queue::Dsn {
            notify: notify.clone(),
            ..Default::default()
        });
        let id = spool.enqueue_entry(e, b"m\r\n").unwrap();
        let mut runner = Runner::new(
            spool.clone(),
            quiet_policy(),
            Scripted::new(|_| DeliveryStatus::Failed),
        );
        let r = pass(&mut runner, false);
        assert_eq!((r.failed, r.bounces), (1, bounces), "{notify:?}: {r:?}");
        // The failure is recorded either way.
        assert!(dir.path().join(format!("failed/{id}.json")).exists());
    }
}

#[test]
fn expiry_fails_what_is_still_pending() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    enqueue_old(
        &spool,
        "old-1",
        &["a@y"],
        Duration::from_secs(6 * 24 * 3600),
    );
    let policy = no_bounce_policy();
    let mut runner = Runner::new(
        spool.clone(),
        policy,
        Scripted::new(|_| DeliveryStatus::Deferred),
    );
    let r = pass(&mut runner, false);
    assert_eq!(r.failed, 1, "{r:?}");
    let record = fs::read_to_string(dir.path().join("failed/old-1.json")).unwrap();
    assert!(record.contains("gave up after 1 attempts"), "{record}");
}

#[test]
fn unreadable_entries_are_skipped_and_reported_corrupt_ones_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let good = enqueue(&spool, &["a@y"], b"m\r\n");
    // A read error (here EISDIR) is not corruption: it may pass.
    fs::create_dir(dir.path().join("aaaa-unreadable.json")).unwrap();
    // A route from a newer postline is not corruption either.
    let newer = enqueue(&spool, &["a@y"], b"m\r\n");
    let path = dir.path().join(format!("{newer}.json"));
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 7");
    fs::write(&path, text).unwrap();
    fs::write(dir.path().join("bbbb-garbage.json"), b"{ not json").unwrap();
    let d = Scripted::new(|_| DeliveryStatus::Delivered);
    let seen = d.seen.clone();
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    let r = pass(&mut runner, false);
    assert_eq!(r.completed, 1, "{r:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let problems = r.problems.join("\n");
    assert!(problems.contains("aaaa-unreadable: skipped"), "{problems}");
    assert!(
        problems.contains(&format!("{newer}: skipped")),
        "{problems}"
    );
    assert!(
        problems.contains("moved to corrupt/: bbbb-garbage"),
        "{problems}"
    );
    assert!(dir.path().join("aaaa-unreadable.json").is_dir());
    assert!(dir.path().join(format!("{newer}.json")).exists());
    assert!(dir.path().join("corrupt/bbbb-garbage.json").exists());
    assert!(spool.load(&good).is_err());
}

#[test]
fn a_full_disk_keeps_results_in_hand_and_sends_nothing_again() {
    let disk = Tmpfs::mount(512);
    let spool = Spool::open(disk.path().join("q")).unwrap();
    let id = enqueue(&spool, &["ok@y", "later@y"], b"m\r\n");
    let d = Scripted::new(|a| {
        if a.starts_with("ok") {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Deferred
        }
    });
    let (calls, seen) = (d.calls.clone(), d.seen.clone());
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    let filler = disk.fill(0);
    let r = pass(&mut runner, false);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(r.blocked && r.unrecorded == 1, "{r:?}");
    assert!(
        r.problems.iter().any(|p| p.contains("cannot record")),
        "{r:?}"
    );
    // On disk it is still due for both, but no pass sends it while the result is unwritten:
    // not even a forced one, not even another runner (the lock is held).
    for _ in 0..3 {
        let r = pass(&mut runner, true);
        assert!(r.blocked, "{r:?}");
    }
    let mut other = Runner::new(
        spool.clone(),
        quiet_policy(),
        Scripted::new(|_| DeliveryStatus::Delivered),
    );
    let r = pass(&mut other, true);
    assert_eq!((r.attempted, r.busy), (0, 1), "{r:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "nothing sent again");
    // Room again: the result is written first (and told then), then only the deferred
    // recipient is tried.
    fs::remove_file(filler).unwrap();
    let heard = Mutex::new(Vec::new());
    let r = runner.pass(SystemTime::now(), false, &|| false, &mut |_, d| {
        heard.lock().unwrap().push((d.address.clone(), d.status));
    });
    assert_eq!(r.unrecorded, 0, "{r:?}");
    let heard = heard.into_inner().unwrap();
    assert!(
        heard.contains(&("ok@y".to_string(), DeliveryStatus::Delivered)),
        "{heard:?}"
    );
    let e = spool.load(&id).unwrap();
    assert!(matches!(
        e.recipients[0].status,
        RecipientStatus::Delivered { .. }
    ));
    assert_eq!(e.pending().count(), 1);
    seen.lock().unwrap().clear();
    pass(&mut runner, true);
    assert_eq!(*seen.lock().unwrap(), ["later@y"]);
}

#[test]
fn no_delivery_starts_below_the_free_space_minimum() {
    let disk = Tmpfs::mount(2048);
    let spool = Spool::open(disk.path().join("q")).unwrap();
    enqueue(&spool, &["a@y"], b"m\r\n");
    let d = Scripted::new(|_| DeliveryStatus::Delivered);
    let calls = d.calls.clone();
    let policy = Policy {
        min_free_bytes: 1 << 20,
        ..Policy::default()
    };
    let mut runner = Runner::new(spool.clone(), policy, d);
    let filler = disk.fill(512 * 1024);
    let r = pass(&mut runner, false);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(r.blocked, "{r:?}");
    assert!(r.problems.iter().any(|p| p.contains("bytes free")), "{r:?}");
    fs::remove_file(filler).unwrap();
    let r = pass(&mut runner, false);
    assert_eq!((r.completed, calls.load(Ordering::SeqCst)), (1, 1), "{r:?}");
}

#[test]
fn a_failed_message_stays_until_its_bounce_and_record_are_written() {
    let disk = Tmpfs::mount(512);
    let spool = Spool::open(disk.path().join("q")).unwrap();
    let id = enqueue(&spool, &["bad@y"], b"Subject: x\r\n\r\nbody\r\n");
    let d = Scripted::new(|a| {
        if a == "bad@y" {
            DeliveryStatus::Failed
        } else {
            DeliveryStatus::Delivered
        }
    });
    let seen = d.seen.clone();
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    let filler = disk.fill(0);
    let r = pass(&mut runner, false);
    assert_eq!(r.unrecorded, 1, "{r:?}");
    assert!(spool.load(&id).is_ok(), "not removed without its bounce");
    assert!(!disk.path().join(format!("q/failed/{id}.json")).exists());
    fs::remove_file(filler).unwrap();
    let r = pass(&mut runner, false);
    assert_eq!((r.unrecorded, r.failed, r.bounces), (0, 1, 1), "{r:?}");
    assert!(disk.path().join(format!("q/failed/{id}.json")).exists());
    // The same pass sent the bounce to the sender; the message itself went out once.
    assert_eq!(*seen.lock().unwrap(), ["bad@y", "sender@x.test"]);
    assert_eq!(r.completed, 1, "the bounce: {r:?}");
    assert!(spool.list().0.is_empty());
}

#[test]
fn a_route_that_cannot_be_resolved_defers_and_never_bounces() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = enqueue(&spool, &["a@y"], b"m\r\n");
    // As the CLI's resolver fails on a CA file that is a directory or an unreadable
    // resolv.conf: a local fault, never the message's.
    let smtp = Smtp::new(|_: &Route| Err("--ca-file /etc: is a directory".to_string()));
    let mut runner = Runner::new(spool.clone(), quiet_policy(), smtp);
    let r = pass(&mut runner, false);
    assert_eq!((r.failed, r.bounces, r.deferred), (0, 0, 1), "{r:?}");
    let e = spool.load(&id).unwrap();
    assert!(e.last_error.unwrap().contains("is a directory"));
}

/// A pipelined MAIL, RCPT (starting `rcpt`) and DATA, answered 250, 250, 354, then the
/// message: what is left is the reply to its end of data.
fn pipelined_message(rcpt: &str) -> [Step; 7] {
    [
        Step::expect("MAIL FROM:"),
        Step::expect(rcpt),
        Step::expect("DATA"),
        Step::reply("250 ok"),
        Step::reply("250 ok"),
        Step::reply("354 go"),
        Step::ExpectData,
    ]
}

fn relay_to(port: u16) -> impl Fn(&Route) -> Result<Destination, String> + Send + Sync {
    move |_: &Route| {
        Ok(Destination::Relay(
            Config::relay("127.0.0.1").port(port).tls(Tls::None),
        ))
    }
}

/// smtp-sink's `-c` counters: sessions, QUITs, messages.
fn sink_counters(sink: &SmtpSink) -> (usize, usize, usize) {
    let out = sink.stdout();
    let last = out.rsplit('\r').find(|s| s.contains("sess=")).unwrap_or("");
    let field = |name: &str| -> usize {
        last.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("sess="), field("quit="), field("mesg="))
}

#[test]
fn many_messages_to_one_relay_share_two_connections() {
    const MESSAGES: usize = 300;
    let sink = SmtpSink::start(&["-c"]);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    for i in 0..MESSAGES {
        enqueue(
            &spool,
            &["a@y", "b@y"],
            format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes(),
        );
    }
    let mut runner = Runner::new(
        spool.clone(),
        quiet_policy(),
        Smtp::new(relay_to(sink.port())),
    );
    // The sink's readiness check is a session of its own.
    std::thread::sleep(Duration::from_millis(300));
    let before = sink_counters(&sink).0;
    let delivered = AtomicUsize::new(0);
    let r = runner.pass(SystemTime::now(), false, &|| false, &mut |_, d| {
        assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
        delivered.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(r.completed, MESSAGES, "{r:?}");
    assert_eq!(delivered.load(Ordering::SeqCst), 2 * MESSAGES);
    assert!(spool.list().0.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut counters = sink_counters(&sink);
    while counters.2 < MESSAGES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        counters = sink_counters(&sink);
    }
    let (sessions, _, messages) = counters;
    assert_eq!(messages, MESSAGES, "{}", sink.stdout());
    let sessions = sessions - before;
    assert!(
        sessions <= 2,
        "{sessions} connections for {MESSAGES} messages"
    );
}

#[test]
fn a_result_is_recorded_before_quit_is_answered() {
    // One message accepted, then silence at QUIT: the client waits for its reply.
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:<sender@x.test>"),
        Step::expect("RCPT TO:<a@y>"),
        Step::expect("DATA"),
        Step::reply("250 2.1.0 ok"),
        Step::reply("250 2.1.5 ok"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 2.0.0 queued as 1"),
        Step::expect("QUIT"),
        Step::Hang,
    ]);
    let server = ScriptedServer::start(script);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = enqueue(&spool, &["a@y"], b"Subject: x\r\n\r\nbody\r\n");
    let port = server.port();
    let done = Arc::new(AtomicBool::new(false));
    let runner = {
        let (spool, done) = (spool.clone(), done.clone());
        std::thread::spawn(move || {
            let smtp = Smtp::new(move |_: &Route| {
                let t = postline::Timeouts::default().capped(Duration::from_secs(20));
                Ok(Destination::Relay(
                    Config::relay("127.0.0.1")
                        .port(port)
                        .tls(Tls::None)
                        .timeouts(t),
                ))
            });
            let mut runner = Runner::new(spool, quiet_policy(), smtp);
            let r = pass(&mut runner, false);
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while spool.load(&id).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(spool.load(&id).is_err(), "the delivery is on disk");
    assert!(
        !done.load(Ordering::SeqCst),
        "recorded while QUIT is still unanswered"
    );
    let report = server.finish();
    let r = runner.join().unwrap();
    assert_eq!(r.completed, 1, "{r:?} {:?}", report.failures);
}

#[test]
fn a_connection_lost_mid_batch_defers_the_unsent_and_flags_the_one_in_doubt() {
    // PIPELINING: the first message is accepted, the connection resets after the second
    // one's data; the rest were never sent.
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend(pipelined_message("RCPT TO:"));
    script.push(Step::reply("250 2.0.0 first"));
    script.extend(pipelined_message("RCPT TO:"));
    script.push(Step::Reset);
    let server = ScriptedServer::start(script);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let ids: Vec<String> = (0..10)
        .map(|i| {
            let id = enqueue(
                &spool,
                &["a@y"],
                format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
            );
            std::thread::sleep(Duration::from_millis(2)); // queue order = id order
            id
        })
        .collect();
    let smtp = Smtp::new(relay_to(server.port())).connections(1);
    let mut runner = Runner::new(spool.clone(), quiet_policy(), smtp);
    let statuses = Mutex::new(Vec::new());
    let r = runner.pass(SystemTime::now(), false, &|| false, &mut |id, d| {
        statuses.lock().unwrap().push((id.to_string(), d.status));
    });
    let _ = server.finish();
    let statuses = statuses.into_inner().unwrap();
    let of = |id: &str| statuses.iter().find(|(i, _)| i == id).map(|(_, s)| *s);
    assert_eq!(of(&ids[0]), Some(DeliveryStatus::Delivered), "{statuses:?}");
    assert_eq!(of(&ids[1]), Some(DeliveryStatus::InDoubt), "{statuses:?}");
    for id in &ids[2..] {
        assert_eq!(of(id), Some(DeliveryStatus::NotAttempted), "{statuses:?}");
        let e: Entry = spool.load(id).unwrap();
        assert_eq!(e.attempts, 0, "not attempted costs no attempt");
    }
    let doubt = spool.load(&ids[1]).unwrap();
    assert!(matches!(
        doubt.recipients[0].status,
        RecipientStatus::Pending { in_doubt: true, .. }
    ));
    assert_eq!(r.completed, 1, "{r:?}");
}

/// The library example runs a queue without the CLI, against smtp-sink.
#[test]
fn the_library_example_drains_a_queue() {
    let sink = SmtpSink::start(&["-c"]);
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Examples are built by `cargo test`, beside the test binaries' directory.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples/relay_queue"))
        .unwrap();
    assert!(
        example.exists(),
        "{example:?} not built: run `cargo test -p postline-queue` (which builds examples)"
    );
    let out = Command::new(&example)
        .arg(&spool)
        .arg(sink.addr())
        .arg("5")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches(" delivered rcpt@example.com 250").count(),
        5,
        "{stdout}"
    );
    assert!(stdout.contains("queue empty"), "{stdout}");
}

#[test]
fn the_spool_refuses_a_message_over_its_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap().max_message_size(1000);
    let to = ["a@y".to_string()];
    let e = spool
        .enqueue("s@x", &to, &route(), &[b'x'; 1001], SystemTime::now())
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge, "{e}");
    assert!(spool.list().0.is_empty());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only failed/ and corrupt/"
    );
    spool
        .enqueue("s@x", &to, &route(), &[b'x'; 1000], SystemTime::now())
        .unwrap();
}

#[test]
fn recipients_beyond_the_limit_go_in_further_transactions() {
    let sink = SmtpSink::start(&["-c"]);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let to: Vec<String> = (0..5).map(|i| format!("r{i}@y")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    enqueue(&spool, &to, b"Subject: many\r\n\r\nx\r\n");
    let smtp = Smtp::new(relay_to(sink.port())).max_recipients(2);
    let mut runner = Runner::new(spool.clone(), quiet_policy(), smtp);
    let r = pass(&mut runner, false);
    assert_eq!(r.completed, 1, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink_counters(&sink).2 < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sink_counters(&sink).2, 3, "5 recipients, 2 per transaction");
}

#[test]
fn a_452_sends_the_rest_in_a_new_transaction_at_once() {
    let mut script = greeting_and_ehlo(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM:"),
        Step::expect("RCPT TO:<a@y>"),
        Step::expect("RCPT TO:<b@y>"),
        Step::expect("DATA"),
        Step::reply("250 ok"),
        Step::reply("250 ok"),
        Step::reply("452 4.5.3 Too many recipients"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 2.0.0 first"),
    ]);
    script.extend(pipelined_message("RCPT TO:<b@y>"));
    script.extend([
        Step::reply("250 2.0.0 second"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
    ]);
    let server = ScriptedServer::start(script);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    enqueue(&spool, &["a@y", "b@y"], b"Subject: x\r\n\r\nx\r\n");
    let mut runner = Runner::new(
        spool.clone(),
        quiet_policy(),
        Smtp::new(relay_to(server.port())),
    );
    let seen = Mutex::new(Vec::new());
    let r = runner.pass(SystemTime::now(), false, &|| false, &mut |_, d| {
        seen.lock().unwrap().push((d.address.clone(), d.detail()));
    });
    let report = server.finish();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(r.completed, 1, "{r:?}");
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter().any(|(a, d)| a == "a@y" && d.contains("first")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(a, d)| a == "b@y" && d.contains("second")),
        "{seen:?}"
    );
}

/// A deliverer that reports each recipient on its own, as direct delivery does per domain.
struct PerRecipient {
    writes_seen: Arc<Mutex<Vec<usize>>>,
    dir: PathBuf,
}

impl Deliver for PerRecipient {
    fn deliver(&mut self, _route: &Route, jobs: &[Job<'_>], record: &Record<'_>) {
        for (i, job) in jobs.iter().enumerate() {
            for a in &job.recipients {
                let status = if a.starts_with("ok") {
                    DeliveryStatus::Delivered
                } else {
                    DeliveryStatus::Deferred
                };
                record(vec![(i, vec![Delivery::new(*a, status, None, "x")])]);
                // What is on disk after each report: the recipients no longer pending.
                let spool = Spool::open(&self.dir).unwrap();
                let e = spool.load(&job.entry.id).unwrap();
                self.writes_seen
                    .lock()
                    .unwrap()
                    .push(e.recipients.len() - e.pending().count());
                // A second report of the same recipient is ignored.
                record(vec![(
                    i,
                    vec![Delivery::new(*a, DeliveryStatus::Failed, None, "x")],
                )]);
            }
        }
    }
}

#[test]
fn a_job_reported_in_parts_is_written_at_each_part_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = enqueue(&spool, &["ok1@a", "later@b", "ok2@c"], b"m\r\n");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let d = PerRecipient {
        writes_seen: seen.clone(),
        dir: dir.path().to_path_buf(),
    };
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    pass(&mut runner, false);
    assert_eq!(
        *seen.lock().unwrap(),
        [1, 1, 2],
        "each part durable at once"
    );
    let e = spool.load(&id).unwrap();
    assert_eq!(e.attempts, 1);
    assert_eq!(e.pending().count(), 1);
    assert_eq!(e.failed().count(), 0, "the repeated report was ignored");
}

#[test]
fn a_421_backs_off_and_expires() {
    for at_mail in [true, false] {
        let mut script = greeting_and_ehlo(&["PIPELINING"]);
        if at_mail {
            script.extend([
                Step::expect("MAIL FROM:"),
                Step::expect("RCPT TO:"),
                Step::expect("DATA"),
                Step::reply("421 4.7.0 rate limited, try later"),
                Step::Close,
            ]);
        } else {
            script.extend(pipelined_message("RCPT TO:"));
            script.extend([
                Step::reply("421 4.7.0 rate limited, try later"),
                Step::Close,
            ]);
        }
        let server = ScriptedServer::start(script);
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        enqueue_old(
            &spool,
            "old-421",
            &["a@y"],
            Duration::from_secs(30 * 24 * 3600),
        );
        let policy = no_bounce_policy();
        let smtp = Smtp::new(relay_to(server.port()));
        let mut runner = Runner::new(spool.clone(), policy, smtp);
        let r = pass(&mut runner, false);
        let _ = server.finish();
        // A 421 ends the session before the message is taken: it waits its first retry, and
        // past the lifetime it fails (never retried forever).
        assert_eq!(r.failed, 1, "421 at MAIL: {at_mail}: {r:?}");
        let record = fs::read_to_string(dir.path().join("failed/old-421.json")).unwrap();
        assert!(record.contains("421"), "{record}");
    }
}

#[test]
fn a_long_id_still_gets_its_bounce() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut e = spool.new_entry(
        "s@x",
        &["bad@y".to_string()],
        &route(),
        b"m",
        SystemTime::now(),
    );
    e.id = "x".repeat(64);
    spool.enqueue_entry(e, b"m").unwrap();
    let d = Scripted::new(|a| {
        if a == "bad@y" {
            DeliveryStatus::Failed
        } else {
            DeliveryStatus::Deferred
        }
    });
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    let r = pass(&mut runner, false);
    assert_eq!((r.failed, r.bounces, r.unrecorded), (1, 1, 0), "{r:?}");
}

/// A deliverer reporting a message's recipients as parts, with a hook between parts.
struct Parts {
    parts: Vec<Vec<(&'static str, DeliveryStatus)>>,
    between: Box<dyn FnMut(usize) + Send>,
    together: bool,
}

impl Deliver for Parts {
    fn deliver(&mut self, _route: &Route, jobs: &[Job<'_>], record: &Record<'_>) {
        let make = |part: &Vec<(&str, DeliveryStatus)>| -> Vec<Delivery> {
            part.iter()
                .map(|(a, s)| Delivery::new(*a, *s, None, "x"))
                .collect()
        };
        if self.together {
            record(self.parts.iter().map(|p| (0, make(p))).collect());
            return;
        }
        for (k, part) in self.parts.iter().enumerate() {
            record(vec![(0, make(part))]);
            (self.between)(k);
        }
        let _ = jobs;
    }
}

#[test]
fn expiry_waits_for_every_part_of_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    enqueue_old(
        &spool,
        "old-parts",
        &["a@one.test", "b@two.test"],
        Duration::from_secs(6 * 24 * 3600),
    );
    let d = Parts {
        parts: vec![
            vec![("a@one.test", DeliveryStatus::Deferred)],
            vec![("b@two.test", DeliveryStatus::Delivered)],
        ],
        between: Box::new(|_| {}),
        together: false,
    };
    let mut runner = Runner::new(spool.clone(), no_bounce_policy(), d);
    let seen = Mutex::new(Vec::new());
    let r = runner.pass(SystemTime::now(), false, &|| false, &mut |_, d| {
        seen.lock().unwrap().push((d.address.clone(), d.status));
    });
    assert_eq!((r.failed, r.completed, r.deferred), (1, 0, 0), "{r:?}");
    let record = fs::read_to_string(dir.path().join("failed/old-parts.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(v["recipients"][0]["state"], "failed", "{record}");
    assert_eq!(v["recipients"][1]["state"], "delivered", "{record}");
    // What the observer heard is what was recorded: the expired recipient as failed.
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.contains(&("a@one.test".into(), DeliveryStatus::Failed)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("b@two.test".into(), DeliveryStatus::Delivered)),
        "{seen:?}"
    );
}

#[test]
fn parts_in_one_call_count_once_and_are_all_heard() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    enqueue(&spool, &["a@one.test", "b@two.test"], b"m");
    let d = Parts {
        parts: vec![
            vec![("a@one.test", DeliveryStatus::Delivered)],
            vec![("b@two.test", DeliveryStatus::Delivered)],
        ],
        between: Box::new(|_| {}),
        together: true,
    };
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    let heard = AtomicUsize::new(0);
    let r = runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| {
        heard.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!((r.completed, r.deferred), (1, 0), "{r:?}");
    assert_eq!(heard.load(Ordering::SeqCst), 2);
}

#[test]
fn a_part_after_an_unwritable_one_is_kept_and_not_sent_again() {
    let disk = Tmpfs::mount(512);
    let spool = Spool::open(disk.path().join("q")).unwrap();
    let id = enqueue(&spool, &["a@one.test", "b@two.test", "c@three.test"], b"m");
    let filler: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let (f, path) = (filler.clone(), disk.path().to_path_buf());
    let d = Parts {
        parts: vec![
            vec![("a@one.test", DeliveryStatus::Deferred)],
            vec![("b@two.test", DeliveryStatus::Delivered)],
            vec![("c@three.test", DeliveryStatus::Deferred)],
        ],
        // The disk fills after the first part is written.
        between: Box::new(move |k| {
            if k == 0 {
                *f.lock().unwrap() = Some(postline_testkit::fill(&path, 0));
            }
        }),
        together: false,
    };
    let mut runner = Runner::new(spool.clone(), quiet_policy(), d);
    let r = pass(&mut runner, false);
    assert_eq!(r.unrecorded, 1, "{r:?}");
    fs::remove_file(filler.lock().unwrap().take().unwrap()).unwrap();
    let r = pass(&mut runner, false);
    assert_eq!(r.unrecorded, 0, "{r:?}");
    let e = spool.load(&id).unwrap();
    // b's delivery, reported while the disk was full, is on disk now: b is not pending.
    let pending: Vec<&str> = e.pending().map(|r| r.address.as_str()).collect();
    assert_eq!(pending, ["a@one.test", "c@three.test"]);
}

#[test]
fn an_observer_that_panics_stops_the_connections() {
    const MESSAGES: usize = 600;
    let sink = SmtpSink::start(&["-c"]);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    for i in 0..MESSAGES {
        enqueue(
            &spool,
            &["a@y"],
            format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
        );
    }
    let policy = Policy {
        batch_messages: MESSAGES,
        ..quiet_policy()
    };
    // What still goes out once the recorder is gone: the group it was writing and the one
    // gathered meanwhile (64 results each at most) and what each connection had started (a
    // round of 10).
    let smtp = Smtp::new(relay_to(sink.port())).round(10);
    let mut runner = Runner::new(spool.clone(), policy, smtp);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| {
            panic!("a closed stdout in a careless observer")
        })
    }));
    assert!(outcome.is_err());
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, sent) = sink_counters(&sink);
    let queued = spool.list().0.len();
    eprintln!("observer panic: {sent} of {MESSAGES} sent, {queued} still queued");
    assert!(sent < MESSAGES / 2, "{sent} sent after the recorder died");
    assert!(
        queued + sent >= MESSAGES,
        "{queued} queued, {sent} sent: nothing lost"
    );
}

/// A relay that takes one connection at a time (a second one gets 421 at once), in front of
/// smtp-sink: the connection that works sends every message; none is deferred for the one
/// that was refused.
#[test]
fn a_relay_taking_one_connection_gets_every_message_over_it() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    const MESSAGES: usize = 300;
    let sink = SmtpSink::start(&[]);
    let sink_port = sink.port();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    {
        let (open, done) = (open.clone(), done.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                if open.fetch_add(1, Ordering::SeqCst) >= 1 {
                    let _ = s.write_all(b"421 4.7.0 one connection at a time\r\n");
                    let _ = s.read(&mut [0u8; 64]);
                    open.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                // The one allowed: relayed to the sink, with a little greeting latency.
                let up = TcpStream::connect(("127.0.0.1", sink_port)).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                let open = open.clone();
                let (mut a, b) = (s.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b.try_clone().unwrap());
                    let _ = b.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let (mut s, mut up) = (s, up);
                    let _ = std::io::copy(&mut up, &mut s);
                    let _ = s.shutdown(std::net::Shutdown::Both);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    for i in 0..MESSAGES {
        enqueue(
            &spool,
            &["a@y"],
            format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
        );
    }
    let mut runner = Runner::new(spool.clone(), quiet_policy(), Smtp::new(relay_to(port)));
    let r = pass(&mut runner, false);
    done.store(true, Ordering::SeqCst);
    assert_eq!((r.completed, r.deferred), (MESSAGES, 0), "{r:?}");
}

/// A directory that is not a spool (a mistyped `--queue-dir`) is refused, not taken over:
/// the runner moves and deletes files in a spool.
#[test]
fn a_directory_that_is_not_a_spool_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(p.join("package.json"), b"{}").unwrap();
    fs::write(p.join("saved.eml"), b"Subject: keep me\r\n\r\n").unwrap();
    let e = Spool::open_existing(p).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("not a postline queue"), "{e}");
    assert!(p.join("package.json").exists() && p.join("saved.eml").exists());
    assert!(!p.join("failed").exists());
}

/// A server that takes one message per connection, then answers the next MAIL with 421
/// and closes: each message goes out on a new connection in the same pass, none waits for
/// a later one.
#[test]
fn a_server_limiting_messages_per_connection_gets_them_all_in_one_pass() {
    let mut script = greeting_and_ehlo(&[]);
    script.extend([
        Step::expect("MAIL FROM:"),
        Step::reply("250 ok"),
        Step::expect("RCPT TO:"),
        Step::reply("250 ok"),
        Step::expect("DATA"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 2.0.0 one per connection"),
        // The next MAIL (or the QUIT at the end of the pass).
        Step::expect(""),
        Step::reply("421 4.7.0 one message per connection"),
        Step::Close,
    ]);
    let server = ScriptedServer::accept_n(script, 3);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    for i in 0..3 {
        enqueue(
            &spool,
            &["a@y"],
            format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
        );
    }
    let smtp = Smtp::new(relay_to(server.port())).connections(1);
    let mut runner = Runner::new(spool.clone(), quiet_policy(), smtp);
    let r = pass(&mut runner, false);
    let report = server.finish();
    assert_eq!(
        (r.completed, r.deferred),
        (3, 0),
        "{r:?} {:?}",
        report.failures
    );
    assert_eq!(report.connections.len(), 3);
    assert!(spool.list().0.is_empty());
}
