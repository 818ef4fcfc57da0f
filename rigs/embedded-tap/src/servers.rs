//! Servers on the kernel side of the TAP: the repo's aiosmtpd, Postfix's smtp-sink, and a
//! listener that never speaks.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{self, Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::rig::KERNEL_ADDR;

/// How long [`Aiosmtpd`] may take to print `READY <port>`.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// aiosmtpd's own lifetime (`--lifetime`), should every guard be lost.
const LIFETIME_SECS: &str = "300";

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/interop/aiosmtpd_server.py` inside a namespace, storing each message it accepts as
/// `N.eml` (the body after un-stuffing, as received) and `N.json` (the envelope). Killed on
/// drop; it also exits by itself when this process dies (its standard input closes).
pub struct Aiosmtpd {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    dir: PathBuf,
}

impl Aiosmtpd {
    pub(crate) fn start(ns: &Netns, args: &[&str]) -> io::Result<Aiosmtpd> {
        let root = repo_root();
        let python = root.join("tests/interop/.venv/bin/python");
        if !python.exists() {
            return Err(io::Error::other(format!(
                "{} is missing: run .ci/install-deps",
                python.display()
            )));
        }
        let dir = std::env::temp_dir().join(format!(
            "pl-tap-smtpd-{}-{}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let store = dir.join("store");
        fs::create_dir_all(&store)?;
        let log = fs::File::create(dir.join("stderr"))?;
        let mut child = ns
            .command(python.to_str().expect("a UTF-8 path"))
            .arg(root.join("tests/interop/aiosmtpd_server.py"))
            .args(["--host", &KERNEL_ADDR.to_string(), "--port", "0"])
            .arg("--store")
            .arg(&store)
            .args(["--lifetime", LIFETIME_SECS])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Aiosmtpd {
            child,
            _stdin: stdin,
            port: 0,
            dir,
        };
        let line = rx.recv_timeout(READY_LIMIT).unwrap_or_default();
        match line.trim().strip_prefix("READY ").map(str::parse) {
            Some(Ok(port)) => {
                server.port = port;
                Ok(server)
            }
            _ => Err(io::Error::other(format!(
                "aiosmtpd did not print READY in {READY_LIMIT:?} (got {line:?}); its stderr:\n{}",
                server.stderr()
            ))),
        }
    }

    /// The port it listens on at [`KERNEL_ADDR`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The `n`-th message it accepted (from 1), as it received it after un-stuffing, waiting
    /// up to `limit` for it to be stored.
    pub fn message(&self, n: usize, limit: Duration) -> io::Result<Vec<u8>> {
        self.stored(n, "eml", limit)
    }

    /// The envelope of the `n`-th message (JSON: `mail_from`, `rcpt_tos`, `auth_user`, ...).
    pub fn envelope(&self, n: usize, limit: Duration) -> io::Result<String> {
        self.stored(n, "json", limit)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// How many messages it has stored.
    pub fn count(&self) -> usize {
        fs::read_dir(self.dir.join("store")).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
    }

    fn stored(&self, n: usize, ext: &str, limit: Duration) -> io::Result<Vec<u8>> {
        // The server writes the .json after the .eml, each atomically.
        let meta = self.dir.join(format!("store/{n}.json"));
        let deadline = Instant::now() + limit;
        while !meta.exists() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "aiosmtpd stored no message {n} in {limit:?}; its stderr:\n{}",
                    self.stderr()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
        fs::read(self.dir.join(format!("store/{n}.{ext}")))
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A kernel-side TCP listener on [`KERNEL_ADDR`] that accepts connections and never writes;
/// it holds them open until dropped.
pub struct SilentListener {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentListener {
    pub(crate) fn start(ns: &Netns) -> io::Result<SilentListener> {
        let listener = ns.enter(|| TcpListener::bind((KERNEL_ADDR, 0)))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(SilentListener {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// The port it listens on at [`KERNEL_ADDR`].
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sh -c TERM_ON_STDIN_EOF PROGRAM ARGS...`: runs PROGRAM and sends it SIGTERM when the
/// script's standard input closes, so a server stops with this process even when it is
/// killed without running destructors.
const TERM_ON_STDIN_EOF: &str = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- &
p=$!
{ cat <&3 >/dev/null 2>&1; kill -TERM "$p" 2>/dev/null; } &
exec 3<&-
wait "$p""#;

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// Postfix's `smtp-sink` inside a namespace on [`KERNEL_ADDR`] (PIPELINING offered, every
/// command accepted), dumping each message it takes to a file of its own, so a test can count
/// and read what arrived. Killed on drop, and stopped when this process dies.
pub struct SmtpSink {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    pub(crate) fn start(ns: &Netns) -> io::Result<SmtpSink> {
        if !Path::new(SMTP_SINK).exists() {
            return Err(io::Error::other(format!(
                "{SMTP_SINK} is missing: run .ci/install-deps"
            )));
        }
        // The namespace is the test's own: any port is free.
        let port = 2525;
        let dir = std::env::temp_dir().join(format!(
            "pl-tap-sink-{}-{}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let dump = dir.join("dump");
        fs::create_dir_all(&dump)?;
        // smtp-sink drops to `nobody`, who writes the dumps.
        std::os::unix::fs::chown(&dump, Some(65534), Some(65534))?;
        let log = fs::File::create(dir.join("stderr"))?;
        let mut child = ns
            .command("/bin/sh")
            .args(["-c", TERM_ON_STDIN_EOF, SMTP_SINK, "-u", "nobody", "-d"])
            .arg(dump.join("%H%M%S."))
            .arg(format!("{KERNEL_ADDR}:{port}"))
            .arg("64")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let sink = SmtpSink {
            child,
            _stdin: stdin,
            port,
            dir,
        };
        let deadline = Instant::now() + READY_LIMIT;
        while ns
            .enter(|| TcpStream::connect((KERNEL_ADDR, port)))
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "smtp-sink did not listen in {READY_LIMIT:?}; its stderr:\n{}",
                    fs::read_to_string(sink.dir.join("stderr")).unwrap_or_default()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(sink)
    }

    /// The port it listens on at [`KERNEL_ADDR`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message it took so far (each dump: the envelope as smtp-sink writes it, then
    /// the message), waiting up to `limit` for there to be `n` of them.
    pub fn messages(&self, n: usize, limit: Duration) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + limit;
        loop {
            let mut files: Vec<PathBuf> = fs::read_dir(self.dir.join("dump"))?
                .flatten()
                .map(|e| e.path())
                .collect();
            if files.len() >= n || Instant::now() > deadline {
                files.sort();
                return files.iter().map(fs::read).collect();
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
