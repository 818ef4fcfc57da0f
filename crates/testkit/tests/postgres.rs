//! The private PostgreSQL of the queue tests: it starts, answers, keeps two instances apart,
//! ends client sessions on request, reports psql's errors, and leaves nothing behind (no
//! process, no data directory).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postline_testkit::Postgres;

/// Waits (at most 20 s) until `/proc/PID` is gone.
fn assert_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "postgres {pid} still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_servers_answer_apart_and_leave_nothing_behind() {
    let a = Postgres::start();
    let b = Postgres::start();
    assert_ne!(a.port(), b.port());
    assert_eq!(
        a.url(),
        format!("postgres://postline@127.0.0.1:{}/postline", a.port())
    );
    assert_eq!(a.psql("select 1").trim(), "1");
    a.psql("CREATE TABLE t (n integer, s text)");
    // -Atq: rows only, `|` between columns, no command tags.
    assert_eq!(a.psql("INSERT INTO t VALUES (1, 'x'), (2, 'é')"), "");
    assert_eq!(a.psql("SELECT n, s FROM t ORDER BY n"), "1|x\n2|é\n");
    // b is another server: it has no such table.
    assert_eq!(b.psql("SELECT to_regclass('t') IS NULL").trim(), "t");

    let (pid_a, data_a) = (a.pid().expect("pid"), a.data_dir());
    let (pid_b, data_b) = (b.pid().expect("pid"), b.data_dir());
    assert_ne!(pid_a, pid_b);
    assert!(data_a.join("PG_VERSION").exists());
    drop(a);
    assert_gone(pid_a);
    assert!(!data_a.exists(), "{} left behind", data_a.display());
    // Dropping a left b alone.
    assert_eq!(b.psql("SELECT 1").trim(), "1");
    b.stop();
    assert_gone(pid_b);
    assert!(!data_b.exists(), "{} left behind", data_b.display());
}

#[test]
fn kill_connections_ends_sessions_and_psql_errors_panic() {
    let db = Postgres::start();
    // A session that would sleep for a minute.
    let mut sleeper = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &db.port().to_string()])
        .args([
            "-U",
            "postline",
            "-d",
            "postline",
            "-c",
            "SELECT pg_sleep(60)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()").trim() != "1" {
        assert!(Instant::now() < deadline, "the sleeping session never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(db.kill_connections(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = sleeper.try_wait().expect("wait psql") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "psql still running after its session was ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    // The server itself is still up.
    assert_eq!(db.psql("SELECT 1").trim(), "1");

    let err = std::panic::catch_unwind(|| db.psql("SELECT * FROM no_such_table"))
        .expect_err("a failing statement panics");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("no_such_table") && msg.contains("does not exist"),
        "{msg}"
    );
}
