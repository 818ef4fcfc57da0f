//! [`Postgres`]: a private PostgreSQL server (Debian's `postgresql`) in a temporary data
//! directory, on a free 127.0.0.1 port, with a `postline` database. The server refuses to
//! run as root, so as root (the tests' usual user) `initdb` and `postgres` run as `nobody`
//! (uid 65534) through util-linux's `setpriv` (or `runuser`), with the tempdir chowned to
//! it; otherwise as the current user. Nothing system-wide is created or touched: no user, no
//! cluster under `/var/lib/postgresql`, no service.
//!
//! Authentication is `trust`: only this machine reaches the loopback port, for the life of one
//! test, and a password would only be one more thing for the store's tests to pass around.
//! Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): a test server dies
//! with its test, and speed matters more.
//!
//! The server runs under the same kind of watchdog as the other test servers
//! ([`TERM_ON_STDIN_EOF`](crate::process::TERM_ON_STDIN_EOF)), sending SIGINT (PostgreSQL's
//! fast shutdown) when the test process's end of a pipe closes, so a test killed without
//! running destructors leaves no server behind. The data directory is removed on drop.
//!
//! The caller's `PG*` environment (`PGHOST`, `PGDATABASE`, `PGPASSWORD`, `PGOPTIONS`, ...)
//! and `~/.psqlrc` never reach the programs run here.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::free_port;
use crate::process::{hint_install_deps, kill_and_wait, tail, wait_bounded, wait_pid_gone, POLL};

/// As the other servers' watchdog, with SIGINT: PostgreSQL's "fast" shutdown, which
/// disconnects clients (SIGTERM is its "smart" shutdown, which waits for every client to
/// leave: a pool still open in a test would hold it up).
const INT_ON_STDIN_EOF: &str = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- &
p=$!
{ cat <&3 >/dev/null 2>&1; kill -INT "$p" 2>/dev/null; } &
exec 3<&-
wait "$p""#;

/// How long [`Postgres::start`] waits for the server to take connections (per attempt). A
/// start takes well under a second on an idle machine; the margin is for loaded CI running
/// many servers at once.
pub const POSTGRES_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The bound on `initdb`, and on each [`Postgres::psql`].
pub const PSQL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a drop waits for the fast shutdown before killing the postmaster.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How many ports [`Postgres::start`] tries: a free port may be taken by another process
/// between [`free_port`] and the server's bind.
const PORT_ATTEMPTS: usize = 5;

/// The database and user the tests get.
const NAME: &str = "postline";

/// `nobody`'s uid and gid (Debian's `nobody`/`nogroup`), the server's user when we are root.
const NOBODY: u32 = 65534;

/// A running private PostgreSQL; stopped and its data removed by [`stop`](Postgres::stop)
/// or on drop.
pub struct Postgres {
    child: Child,
    /// Kept open: the watchdog stops the server when it closes.
    stdin: Option<ChildStdin>,
    port: u16,
    bin: PathBuf,
    /// The postmaster's pid, read from `postmaster.pid` once it was ready.
    pid: u32,
    work: tempfile::TempDir,
}

/// The newest installed PostgreSQL's programs: `/usr/lib/postgresql/N/bin` with the highest
/// `N` that has a `postgres` (a `postgresql-client-N` alone brings only the clients).
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
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "{}",
            hint_install_deps(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres)"
            )
        )
    })
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The first of `paths` that exists.
fn first_existing(paths: &[&'static str]) -> Option<&'static str> {
    paths.iter().copied().find(|p| Path::new(p).exists())
}

/// What to put before a program to run it as the server's user: nothing unless we are root;
/// as root, `setpriv` to `nobody` (numeric ids: no name lookups, the same ids as the chown),
/// else `runuser -u nobody`.
fn server_user_prefix() -> Vec<OsString> {
    if !is_root() {
        return Vec::new();
    }
    if let Some(setpriv) = first_existing(&["/usr/bin/setpriv", "/bin/setpriv"]) {
        let mut v: Vec<OsString> = vec![setpriv.into()];
        v.extend(
            [
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
                "--".into(),
            ]
            .map(OsString::from),
        );
        v
    } else if let Some(runuser) = first_existing(&["/usr/sbin/runuser", "/sbin/runuser"]) {
        [runuser, "-u", "nobody", "--"].map(OsString::from).to_vec()
    } else {
        panic!(
            "{}",
            hint_install_deps(
                "neither setpriv nor runuser (util-linux) found: PostgreSQL must run as nobody \
                 when the tests run as root"
            )
        )
    }
}

/// `program` run as the server's user (see [`server_user_prefix`]), in `dir` (`nobody` may
/// not be able to enter the test's own working directory), without the caller's `PG*`
/// environment.
fn as_server_user(program: &Path, dir: &Path) -> Command {
    let prefix = server_user_prefix();
    let mut c = match prefix.split_first() {
        Some((runner, args)) => {
            let mut c = Command::new(runner);
            c.args(args).arg(program);
            c
        }
        None => Command::new(program),
    };
    c.current_dir(dir);
    clean_env(&mut c);
    c
}

/// Removes the caller's libpq settings (`PGHOST`, `PGPORT`, `PGDATA`, ...) from `c`'s
/// environment, and gives it a UTF-8 locale that always exists.
fn clean_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("PG")) {
            c.env_remove(k);
        }
    }
    c.env("LC_ALL", "C.UTF-8");
}

/// Runs `cmd` to completion, at most `timeout`; its stdout, or an error with its status,
/// stderr and stdout. Killed on timeout. Output goes to files, so a chatty program never
/// blocks on a full pipe.
fn run_output(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let out = File::create(&out_path).map_err(|e| format!("create: {e}"))?;
    let err = File::create(&err_path).map_err(|e| format!("create: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let done = wait_bounded(&mut child, timeout);
    if !done {
        kill_and_wait(&mut child);
    }
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    match child.try_wait() {
        Ok(Some(s)) if done && s.success() => Ok(stdout),
        status => Err(format!(
            "{}\nstderr: {stderr}\nstdout: {stdout}",
            if done {
                format!("failed ({status:?})")
            } else {
                format!("killed after {timeout:?}")
            }
        )),
    }
}

/// Whether the log says the server could not listen on its port (taken meanwhile).
fn port_taken(log: &str) -> bool {
    log.contains("could not bind") || log.contains("could not create any TCP/IP sockets")
}

/// The postmaster's pid once its `postmaster.pid` says `ready` for `port` (line 1 the pid,
/// line 4 the port, line 8 the status, since PostgreSQL 10). Read from our own data directory,
/// so another server that took the port meanwhile can never pass for ours.
fn ready_pid(data: &Path, port: u16) -> Option<u32> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let ours = lines.get(3)?.trim() == port.to_string();
    (ours && lines.get(7)?.trim() == "ready").then(|| lines[0].trim().parse().ok())?
}

/// Stops a server that never became ready: closes the watchdog's pipe, then kills.
fn abandon(child: &mut Child, stdin: Option<ChildStdin>) {
    drop(stdin);
    if !wait_bounded(child, Duration::from_secs(5)) {
        kill_and_wait(child);
    }
}

impl Postgres {
    /// Initialises a data directory, starts the server and creates the `postline` database;
    /// panics (with the server's log) if it exits or is not ready within
    /// [`POSTGRES_READY_TIMEOUT`]. Tries another port if the chosen one was taken meanwhile.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let work = tempfile::Builder::new()
            .prefix("postline-postgres-")
            .tempdir()
            .expect("tempdir");
        if is_root() {
            // The server's user must own its directory (mode 0700 from tempfile): the data
            // directory, the socket and the log are all in it, and nothing else of ours.
            std::os::unix::fs::chown(work.path(), Some(NOBODY), Some(NOBODY))
                .expect("chown the PostgreSQL tempdir to nobody");
        }
        let data = work.path().join("data");
        let mut initdb = as_server_user(&bin.join("initdb"), work.path());
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", NAME, "--auth=trust", "-E", "UTF8", "--no-sync"]);
        if let Err(e) = run_output(&mut initdb, PSQL_TIMEOUT) {
            panic!("initdb: {e}");
        }
        let log_path = work.path().join("server.log");
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            // Appended to: a retry keeps the earlier attempt's lines for the record.
            let log_start = fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
            let log = File::options()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("server log");
            // The watchdog shell runs `[setpriv ...] postgres ...` as "$0" "$@".
            let mut postgres = Command::new("/bin/sh");
            postgres
                .arg("-c")
                .arg(INT_ON_STDIN_EOF)
                .args(server_user_prefix())
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
                    // Many servers may run at once (one per test): kept small.
                    "-c",
                    "shared_buffers=32MB",
                ])
                .current_dir(work.path());
            clean_env(&mut postgres);
            let mut child = postgres
                .stdin(Stdio::piped())
                .stdout(Stdio::from(log.try_clone().expect("server log")))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap_or_else(|e| panic!("spawn postgres: {e}"));
            let stdin = child.stdin.take();
            let deadline = Instant::now() + POSTGRES_READY_TIMEOUT;
            let pid = loop {
                if let Some(pid) = ready_pid(&data, port) {
                    break Some(pid);
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break None;
                }
                if Instant::now() >= deadline {
                    abandon(&mut child, stdin);
                    panic!(
                        "postgres not ready after {POSTGRES_READY_TIMEOUT:?}: {}",
                        tail(&fs::read_to_string(&log_path).unwrap_or_default(), 40)
                    );
                }
                thread::sleep(POLL);
            };
            let Some(pid) = pid else {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                if attempt < PORT_ATTEMPTS && port_taken(log.get(log_start..).unwrap_or(&log)) {
                    continue;
                }
                panic!("postgres exited: {}", tail(&log, 40));
            };
            let pg = Postgres {
                child,
                stdin,
                port,
                bin,
                pid,
                work,
            };
            pg.psql_in("postgres", &format!("CREATE DATABASE {NAME}"));
            return pg;
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The port it listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postline@127.0.0.1:PORT/postline` (no password: `trust` authentication).
    pub fn url(&self) -> String {
        format!("postgres://{NAME}@127.0.0.1:{}/{NAME}", self.port)
    }

    /// Runs `sql` in the `postline` database with psql, as the `postline` superuser over
    /// TCP; its output: rows only, unaligned, `|` between columns (`-Atq`). Panics with psql's
    /// error when it fails (`ON_ERROR_STOP`: the first failing statement fails the call) or
    /// takes longer than [`PSQL_TIMEOUT`].
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(NAME, sql)
    }

    fn psql_in(&self, database: &str, sql: &str) -> String {
        let mut c = Command::new(self.bin.join("psql"));
        clean_env(&mut c);
        c.args([
            "-X",
            "-Atq",
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
        run_output(&mut c, PSQL_TIMEOUT).unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// Ends every client session but psql's own (`pg_terminate_backend`); how many. For tests
    /// of what a client does when the server drops its connections.
    pub fn kill_connections(&self) -> usize {
        let n = self.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        n.trim()
            .parse()
            .unwrap_or_else(|_| panic!("pg_terminate_backend count: {n:?}"))
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.work.path().join("server.log")).unwrap_or_default()
    }

    /// The postmaster's process id (from its `postmaster.pid` when it became ready).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    /// The data directory (in the tempdir removed on drop).
    pub fn data_dir(&self) -> PathBuf {
        self.work.path().join("data")
    }

    /// Stops the server and removes its tempdir, as dropping it does; spelled out for tests
    /// that stop a server in the middle.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog send SIGINT: a fast shutdown, which ends the
        // sessions still open and waits for the server's own processes to exit.
        drop(self.stdin.take());
        if !wait_bounded(&mut self.child, STOP_TIMEOUT) {
            // Stuck: the postmaster itself is killed, not only the watchdog shell.
            crate::process::signal_pid(self.pid, "KILL");
            wait_pid_gone(self.pid, Duration::from_secs(10));
            kill_and_wait(&mut self.child);
        }
        // The tempdir (the data directory with it) goes when `work` drops, after this.
    }
}
