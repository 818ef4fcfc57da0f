//! The command line on a queue in PostgreSQL: `queue migrate`, `send --queue-only` and
//! `send --queue` with `--queue-url`, every `queue` subcommand, the account's `queue_url`,
//! sendmail mode's queue, and the failures (no schema, a database that is down, a password in
//! the config file). A private PostgreSQL and aiosmtpd per test; every run bounded in time.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use postline_testkit::{run_code, stderr, stdout, Aiosmtpd, Postgres, Sandbox};

const FROM: &str = "sender@example.com";

fn sandbox() -> Sandbox {
    Sandbox::with_prefix("postline-queue-pg-").run_timeout(Duration::from_secs(60))
}

fn message(subject: &str) -> String {
    format!(
        "From: <{FROM}>\r\nTo: <rcpt@example.com>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    )
}

/// `postline queue SUB --queue-url URL ARGS`.
fn queue(sb: &Sandbox, url: &str, sub: &str, args: &[&str]) -> assert_cmd::Command {
    let mut all = vec!["queue", sub, "--queue-url", url];
    all.extend(args);
    sb.cmd(&all)
}

fn migrated() -> Postgres {
    let db = Postgres::start();
    let sb = sandbox();
    run_code(&mut queue(&sb, &db.url(), "migrate", &[]), 0);
    db
}

fn list(sb: &Sandbox, url: &str) -> Vec<Value> {
    let o = run_code(&mut queue(sb, url, "list", &["--json"]), 0);
    match serde_json::from_str(stdout(&o).trim()) {
        Ok(Value::Array(a)) => a,
        other => panic!("queue list --json: {other:?}"),
    }
}

#[test]
fn migrate_creates_the_schema_once_and_says_so() {
    let db = Postgres::start();
    let sb = sandbox();
    let o = run_code(&mut queue(&sb, &db.url(), "migrate", &[]), 0);
    assert!(
        stdout(&o).contains("created the queue schema (version 1)"),
        "{}",
        stdout(&o)
    );
    let o = run_code(&mut queue(&sb, &db.url(), "migrate", &[]), 0);
    assert!(
        stdout(&o).contains("already at version 1"),
        "{}",
        stdout(&o)
    );
    // Without a database there is nothing to migrate: a usage error, not a silent success.
    let o = run_code(&mut sb.cmd(&["queue", "migrate"]), 64);
    assert!(stderr(&o).contains("--queue-url"), "{}", stderr(&o));
}

#[test]
fn a_database_without_the_schema_says_to_migrate() {
    let db = Postgres::start();
    let sb = sandbox();
    let o = run_code(&mut queue(&sb, &db.url(), "list", &[]), 78);
    assert!(
        stderr(&o).contains("postline queue migrate"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_database_that_is_down_is_a_temporary_failure_without_the_password() {
    let sb = sandbox();
    let o = run_code(
        &mut queue(&sb, "postgres://u:hunter2@127.0.0.1:1/q", "list", &[]),
        75,
    );
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
}

#[test]
fn queue_only_list_show_run_and_the_queue_is_empty() {
    let db = migrated();
    let server = Aiosmtpd::start();
    let sb = sandbox();
    let url = db.url();
    let file = sb.write("m.eml", message("first"));
    let o = run_code(
        sb.send(&server.addr())
            .from(FROM)
            .to("rcpt@example.com")
            .message(&file)
            .args(["--queue-only", "--queue-url", &url]),
        0,
    );
    let id = stdout(&o).trim().to_string();
    assert!(!id.is_empty());
    assert_eq!(db.psql("SELECT count(*) FROM postline_entries").trim(), "1");
    let l = list(&sb, &url);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["id"], id.as_str());
    let o = run_code(&mut queue(&sb, &url, "show", &[&id]), 0);
    assert!(stdout(&o).contains("rcpt@example.com"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("postgres://postline@"),
        "{}",
        stdout(&o)
    );
    // Nothing was sent yet; `queue run` sends it.
    assert!(server.messages().is_empty());
    let o = run_code(&mut queue(&sb, &url, "run", &[]), 0);
    assert!(stdout(&o).contains("delivered"), "{}", stdout(&o));
    let got = server.wait_for_messages(1, Duration::from_secs(20));
    assert!(String::from_utf8_lossy(&got[0].content).contains("body of first"));
    assert!(list(&sb, &url).is_empty());
    assert_eq!(
        db.psql("SELECT count(*) FROM postline_messages").trim(),
        "0"
    );
}

#[test]
fn a_transient_failure_is_queued_in_the_database_then_removed_by_hand() {
    let db = migrated();
    let server = Aiosmtpd::builder().tempfail_first(1).start();
    let sb = sandbox();
    let url = db.url();
    let file = sb.write("m.eml", message("later"));
    let o = run_code(
        sb.send(&server.addr())
            .from(FROM)
            .to("rcpt@example.com")
            .message(&file)
            .args(["--queue", "--queue-url", &url]),
        0,
    );
    assert!(stderr(&o).contains("queued as"), "{}", stderr(&o));
    let l = list(&sb, &url);
    assert_eq!(l.len(), 1, "{l:?}");
    let id = l[0]["id"].as_str().unwrap().to_string();
    let o = run_code(&mut queue(&sb, &url, "remove", &[&id]), 0);
    assert!(stdout(&o).contains(&format!("removed {id}")));
    assert!(list(&sb, &url).is_empty());
    run_code(&mut queue(&sb, &url, "show", &[&id]), 66);
}

#[test]
fn release_sends_a_message_held_in_doubt_again() {
    let db = migrated();
    let server = Aiosmtpd::start();
    let sb = sandbox();
    let url = db.url();
    let file = sb.write("m.eml", message("held"));
    let o = run_code(
        sb.send(&server.addr())
            .from(FROM)
            .to("rcpt@example.com")
            .message(&file)
            .args(["--queue-only", "--queue-url", &url]),
        0,
    );
    let id = stdout(&o).trim().to_string();
    // Held in doubt, as a runner with the hold policy leaves it.
    db.psql(&format!(
        "UPDATE postline_entries SET entry = jsonb_set(entry, '{{recipients,0}}', \
         '{{\"address\": \"rcpt@example.com\", \"state\": \"held\", \"at\": 1, \
         \"reason\": \"no reply to the end of data\"}}') WHERE id = '{id}'"
    ));
    let o = run_code(&mut queue(&sb, &url, "show", &[&id]), 0);
    assert!(stdout(&o).contains("held"), "{}", stdout(&o));
    run_code(&mut queue(&sb, &url, "release", &[&id]), 0);
    run_code(&mut queue(&sb, &url, "flush", &[]), 0);
    server.wait_for_messages(1, Duration::from_secs(20));
    assert!(list(&sb, &url).is_empty());
}

#[test]
fn the_accounts_queue_url_is_used_and_a_password_in_it_refused() {
    let db = migrated();
    let server = Aiosmtpd::start();
    let sb = sandbox();
    let (host, port) = server
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    sb.config(&format!(
        "[accounts.relay]\ndefault = true\nserver = \"{host}\"\nport = {port}\ntls = \"none\"\nfrom = \"{FROM}\"\nqueue_url = \"{}\"\n",
        db.url()
    ));
    let file = sb.write("m.eml", message("via account"));
    let o = run_code(
        sb.send_bare()
            .to("rcpt@example.com")
            .message(&file)
            .args(["--queue-only"]),
        0,
    );
    let id = stdout(&o).trim().to_string();
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM postline_entries WHERE id = '{id}'"
        ))
        .trim(),
        "1"
    );
    // `postline queue` finds it through the default account too.
    let o = run_code(&mut sb.cmd(&["queue", "list", "--json"]), 0);
    assert!(stdout(&o).contains(&id), "{}", stdout(&o));
    // sendmail mode queues there as well.
    let o = run_code(
        sb.sendmail_symlink()
            .args(["-odq", "rcpt@example.com"])
            .write_stdin(message("from sendmail")),
        0,
    );
    assert!(
        stderr(&o).is_empty() || !stderr(&o).contains("error"),
        "{}",
        stderr(&o)
    );
    assert_eq!(db.psql("SELECT count(*) FROM postline_entries").trim(), "2");
    // A password in the config file is refused, naming the fix.
    sb.config(&format!(
        "[accounts.relay]\ndefault = true\nserver = \"{host}\"\nport = {port}\ntls = \"none\"\nfrom = \"{FROM}\"\nqueue_url = \"postgres://postline:secret@127.0.0.1:{}/postline\"\n",
        db.port()
    ));
    let o = run_code(&mut sb.cmd(&["queue", "list"]), 78);
    assert!(stderr(&o).contains("PGPASSWORD"), "{}", stderr(&o));
}

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

fn queue_only(sb: &Sandbox, server: &str, url: &str, subject: &str) -> String {
    let file = sb.write(&format!("{subject}.eml"), message(subject));
    let o = run_code(
        sb.send(server)
            .from(FROM)
            .to("rcpt@example.com")
            .message(&file)
            .args(["--queue-only", "--queue-url", url]),
        0,
    );
    stdout(&o).trim().to_string()
}

#[test]
fn the_daemon_delivers_from_the_database_and_stops_on_sigterm() {
    let db = migrated();
    let server = Aiosmtpd::start();
    let sb = sandbox();
    let url = db.url();
    queue_only(&sb, &server.addr(), &url, "one");
    queue_only(&sb, &server.addr(), &url, "two");
    let mut daemon = sb
        .std_cmd()
        .args(["queue", "run", "--daemon", "--queue-url", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn postline");
    assert_eq!(
        server.wait_for_messages(2, Duration::from_secs(20)).len(),
        2
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.psql("SELECT count(*) FROM postline_entries").trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "the daemon did not record its deliveries"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.try_wait().unwrap().is_none(), "still running");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let status = wait_bounded(&mut daemon, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(server.messages().len(), 2);
}

#[test]
fn a_queue_url_that_is_not_one_is_refused_without_repeating_a_password() {
    let sb = sandbox();
    // A directory is --queue-dir's.
    let o = run_code(
        &mut sb.cmd(&["queue", "list", "--queue-url", &sb.spool_str()]),
        64,
    );
    assert!(stderr(&o).contains("--queue-dir"), "{}", stderr(&o));
    // A password in the query would be shown by every message naming the database.
    let secret = "postgres://u@127.0.0.1:1/q?sslmode=disable&password=hunter2";
    for o in [
        run_code(&mut sb.cmd(&["queue", "list", "--queue-url", secret]), 64),
        run_code(
            sb.cmd(&["queue", "list"]).env("POSTLINE_QUEUE_URL", secret),
            64,
        ),
        run_code(
            sb.send("127.0.0.1:1")
                .from(FROM)
                .to("rcpt@example.com")
                .body("x")
                .args(["--queue-only", "--queue-url", secret]),
            64,
        ),
    ] {
        assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
        assert!(stderr(&o).contains("PGPASSWORD"), "{}", stderr(&o));
    }
    // Without queueing, send does not look at the queue's URL at all (75: the closed port).
    run_code(
        sb.send("127.0.0.1:1")
            .from(FROM)
            .to("rcpt@example.com")
            .body("x")
            .env("POSTLINE_QUEUE_URL", "not a url"),
        75,
    );
    // An empty POSTLINE_QUEUE_URL names no database: the spool (never created by list).
    let o = run_code(sb.cmd(&["queue", "list"]).env("POSTLINE_QUEUE_URL", ""), 0);
    assert!(stderr(&o).contains("no queue at"), "{}", stderr(&o));
    run_code(
        sb.cmd(&["queue", "list", "--queue-dir", &sb.spool_str()])
            .env("POSTLINE_QUEUE_URL", ""),
        0,
    );
    // Nor is a password accepted in the account's queue_url query.
    sb.config(
        "[accounts.relay]\ndefault = true\nserver = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nfrom = \"sender@example.com\"\nqueue_url = \"postgres://u@127.0.0.1/q?password=hunter2\"\n",
    );
    let o = run_code(&mut sb.cmd(&["queue", "list"]), 78);
    assert!(stderr(&o).contains("PGPASSWORD"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
}

#[test]
fn the_flag_and_queue_dir_come_before_the_accounts_queue_url() {
    let db = migrated();
    let server = Aiosmtpd::start();
    let sb = sandbox();
    let (host, port) = server
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    // The account's database is down: whatever reaches it fails with 75.
    sb.config(&format!(
        "[accounts.relay]\ndefault = true\nserver = \"{host}\"\nport = {port}\ntls = \"none\"\nfrom = \"{FROM}\"\nqueue_url = \"postgres://postline@127.0.0.1:1/postline\"\n"
    ));
    run_code(&mut sb.cmd(&["queue", "list"]), 75);
    // --queue-url wins over it.
    let file = sb.write("m.eml", message("flag"));
    let o = run_code(
        sb.send_bare().to("rcpt@example.com").message(&file).args([
            "--queue-only",
            "--queue-url",
            &db.url(),
        ]),
        0,
    );
    let id = stdout(&o).trim().to_string();
    assert!(list(&sb, &db.url())[0]["id"] == id.as_str());
    // So does a spool named with --queue-dir.
    let spool = sb.spool_str();
    let o = run_code(
        sb.send_bare().to("rcpt@example.com").message(&file).args([
            "--queue-only",
            "--queue-dir",
            &spool,
        ]),
        0,
    );
    let in_spool = stdout(&o).trim().to_string();
    let l = sb.queue_list();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["id"], in_spool.as_str());
    assert_eq!(db.psql("SELECT count(*) FROM postline_entries").trim(), "1");
}
