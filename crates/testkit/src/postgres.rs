//! [`Postgres`]: a private PostgreSQL server (Debian's `postgresql`) in a temporary data
//! directory, on a free 127.0.0.1 port, with a `postline` database. The server refuses to
//! run as root, so as root (the tests' usual user) `initdb` and `postgres` run as `nobody`
//! through `setpriv`; otherwise as the current user. Authentication is `trust`: only this
//! machine's loopback reaches it, for the life of one test. Durability is off (`fsync`,
//! `synchronous_commit`): a test server dies with the test, and speed matters more.
//!
//! The server runs under the same watchdog as the other test servers: it gets SIGTERM when
//! the test process's end of a pipe closes, so a test killed without running destructors
//! leaves no server behind. The data directory is removed on drop.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::free_port;
use crate::process::{hint_install_deps, kill_and_wait, wait_bounded, POLL};

/// As the other servers' watchdog, with SIGINT: PostgreSQL's "fast" shutdown, which
/// disconnects clients (SIGTERM would wait for every client to leave).
const INT_ON_STDIN_EOF: &str = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- &
p=$!
{ cat <&3 >/dev/null 2>&1; kill -INT "$p" 2>/dev/null; } &
exec 3<&-
wait "$p""#;

/// How long [`Postgres::start`] waits for the server to take connections.
pub const POSTGRES_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The database and user the tests get.
const NAME: &str = "postline";

/// A running private PostgreSQL; stopped and its data removed on drop.
pub struct Postgres {
    child: Child,
    /// Kept open: the watchdog stops the server when it closes.
    stdin: Option<ChildStdin>,
    port: u16,
    bin: PathBuf,
    work: tempfile::TempDir,
}

/// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/N/bin`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("postgres").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("{}", hint_install_deps("PostgreSQL is not installed")))
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` run as the server's user: `nobody` when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Postgres {
    /// Initialises a data directory, starts the server and creates the `postline` database;
    /// panics (with the server's log) if it is not ready within [`POSTGRES_READY_TIMEOUT`].
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let work = tempfile::Builder::new()
            .prefix("postline-postgres-")
            .tempdir()
            .expect("tempdir");
        let data = work.path().join("data");
        if is_root() {
            // The server's user must own its directory; nothing else of ours is in it.
            std::os::unix::fs::chown(work.path(), Some(65534), Some(65534))
                .expect("chown the data directory's parent to nobody");
        }
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", NAME, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .env("LC_ALL", "C.UTF-8");
        run(initdb, "initdb");
        let port = free_port();
        let log = File::create(work.path().join("server.log")).expect("server log");
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(INT_ON_STDIN_EOF)
            .args(if is_root() {
                vec![
                    "setpriv".into(),
                    "--reuid=nobody".into(),
                    "--regid=nogroup".into(),
                    "--clear-groups".into(),
                    "--".into(),
                ]
            } else {
                Vec::<String>::new()
            })
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(work.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn postgres: {e}"));
        let stdin = child.stdin.take();
        let mut pg = Postgres {
            child,
            stdin,
            port,
            bin,
            work,
        };
        let deadline = Instant::now() + POSTGRES_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = pg.child.try_wait() {
                panic!("postgres exited ({status}): {}", pg.log());
            }
            let ready = Command::new(pg.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", NAME, "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready after {POSTGRES_READY_TIMEOUT:?}: {}",
                pg.log()
            );
            thread::sleep(POLL * 5);
        }
        pg.psql_in("postgres", &format!("CREATE DATABASE {NAME}"));
        pg
    }

    /// The port it listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postline@127.0.0.1:PORT/postline`.
    pub fn url(&self) -> String {
        format!("postgres://{NAME}@127.0.0.1:{}/{NAME}", self.port)
    }

    /// Runs `sql` in the `postline` database with psql; its output, unaligned and without
    /// headers (`-At`). Panics with psql's error when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(NAME, sql)
    }

    fn psql_in(&self, database: &str, sql: &str) -> String {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            NAME,
            "-d",
            database,
            "-c",
            sql,
        ]);
        String::from_utf8_lossy(&run(c, &format!("psql {sql:?}")).stdout).into_owned()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.work.path().join("server.log")).unwrap_or_default()
    }

    /// The postmaster's process id (from its `postmaster.pid`).
    pub fn pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.work.path().join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog send SIGTERM (a "smart" shutdown would wait
        // for clients; the test's connections are gone or going).
        let pid = self.pid();
        drop(self.stdin.take());
        if !wait_bounded(&mut self.child, Duration::from_secs(20)) {
            // Stuck: the postmaster itself is killed, not only the watchdog shell.
            if let Some(pid) = pid {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            kill_and_wait(&mut self.child);
        }
    }
}
