//! The private PostgreSQL of the queue tests: it starts, answers, keeps two instances apart,
//! and leaves nothing behind (no process, no data directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use postline_testkit::Postgres;

#[test]
fn starts_answers_and_is_gone_after_drop() {
    let a = Postgres::start();
    let b = Postgres::start();
    assert_ne!(a.port(), b.port());
    assert_eq!(a.psql("SELECT 1 + 1").trim(), "2");
    a.psql("CREATE TABLE t (n integer)");
    a.psql("INSERT INTO t VALUES (1), (2)");
    assert_eq!(a.psql("SELECT sum(n) FROM t").trim(), "3");
    // b is another server: it has no such table.
    assert_eq!(b.psql("SELECT to_regclass('t') IS NULL").trim(), "t");
    assert!(a.url().starts_with("postgres://postline@127.0.0.1:"));
    let pid = a.pid().expect("postmaster.pid");
    let data = PathBuf::from(format!("/proc/{pid}"));
    assert!(data.exists());
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(20);
    while PathBuf::from(format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "postgres {pid} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.psql("SELECT 1").trim(), "1");
}
