//! [`Aiosmtpd`]: the real aiosmtpd server from `tests/interop/aiosmtpd_server.py`, started
//! with the options of an [`AiosmtpdBuilder`], and the [`StoredMessage`]s it accepted.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{hint_install_deps, kill_and_wait, POLL};
use crate::{repo_root, TestCa};

/// How long [`AiosmtpdBuilder::start`] waits for `READY <port>`.
pub const AIOSMTPD_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for [`Aiosmtpd`], mirroring `aiosmtpd_server.py`'s flags. The message store is
/// always a fresh tempdir.
#[derive(Clone, Debug, Default)]
pub struct AiosmtpdBuilder {
    hostname: Option<String>,
    starttls: Option<(PathBuf, PathBuf)>,
    require_starttls: bool,
    implicit_tls: Option<(PathBuf, PathBuf)>,
    auth: Option<(String, String)>,
    auth_plaintext: bool,
    scram: Vec<(String, String)>,
    scram_bad_proof: bool,
    scram_skip_final: bool,
    tls_max_1_2: bool,
    reject_rcpt: Vec<String>,
    tempfail_first: Option<u32>,
    refuse_data_lines: Option<u32>,
    refuse_data_width: Option<u32>,
    max_size: Option<u64>,
    smtputf8: bool,
    dsn: bool,
    timeout: Option<f64>,
    verbose: bool,
    unix_socket: bool,
    count_sessions: bool,
}

impl AiosmtpdBuilder {
    /// `--hostname NAME`.
    pub fn hostname(mut self, name: &str) -> Self {
        self.hostname = Some(name.into());
        self
    }
    /// `--starttls CERT KEY`.
    pub fn starttls(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.starttls = Some((cert.as_ref().into(), key.as_ref().into()));
        self
    }
    /// `--starttls` with the server certificate chain and key of `ca`.
    pub fn starttls_with(self, ca: &TestCa) -> Self {
        self.starttls(&ca.chain_path, &ca.key_path)
    }
    /// `--require-starttls` (needs [`starttls`](Self::starttls)).
    pub fn require_starttls(mut self) -> Self {
        self.require_starttls = true;
        self
    }
    /// `--implicit-tls CERT KEY`.
    pub fn implicit_tls(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.implicit_tls = Some((cert.as_ref().into(), key.as_ref().into()));
        self
    }
    /// `--implicit-tls` with the server certificate chain and key of `ca`.
    pub fn implicit_tls_with(self, ca: &TestCa) -> Self {
        self.implicit_tls(&ca.chain_path, &ca.key_path)
    }
    /// `--auth USER:PASS`.
    pub fn auth(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some((user.into(), pass.into()));
        self
    }
    /// `--scram USER PASS` (repeatable): offer `AUTH SCRAM-SHA-256 SCRAM-SHA-256-PLUS` (through
    /// scramp; PLUS binds to tls-server-end-point of the server's own certificate) and require
    /// AUTH before MAIL. Without [`auth`](Self::auth), PLAIN and LOGIN are not offered.
    pub fn scram(mut self, user: &str, pass: &str) -> Self {
        self.scram.push((user.into(), pass.into()));
        self
    }
    /// `--scram-bad-proof`: after a right client proof, send a wrong server signature (`v=`),
    /// then answer the client's empty line with 235 anyway.
    pub fn scram_bad_proof(mut self) -> Self {
        self.scram_bad_proof = true;
        self
    }
    /// `--scram-skip-final`: after a right client proof, answer 235 without sending `v=`.
    pub fn scram_skip_final(mut self) -> Self {
        self.scram_skip_final = true;
        self
    }
    /// `--tls-max 1.2`: offer at most TLS 1.2 (STARTTLS and implicit TLS).
    pub fn tls_max_1_2(mut self) -> Self {
        self.tls_max_1_2 = true;
        self
    }
    /// `--auth-plaintext`.
    pub fn auth_plaintext(mut self) -> Self {
        self.auth_plaintext = true;
        self
    }
    /// `--reject-rcpt SUBSTRING` (repeatable).
    pub fn reject_rcpt(mut self, substring: &str) -> Self {
        self.reject_rcpt.push(substring.into());
        self
    }
    /// `--refuse-data-lines N`: every message refused after its data, with an N-line 550.
    pub fn refuse_data_lines(mut self, n: u32) -> Self {
        self.refuse_data_lines = Some(n);
        self
    }

    /// `--refuse-data-width W`: each line of that refusal padded to W bytes.
    pub fn refuse_data_width(mut self, w: u32) -> Self {
        self.refuse_data_width = Some(w);
        self
    }

    /// `--tempfail-first N`.
    pub fn tempfail_first(mut self, n: u32) -> Self {
        self.tempfail_first = Some(n);
        self
    }
    /// `--max-size N` (0: no SIZE and no limit).
    pub fn max_size(mut self, n: u64) -> Self {
        self.max_size = Some(n);
        self
    }
    /// `--smtputf8`.
    pub fn smtputf8(mut self) -> Self {
        self.smtputf8 = true;
        self
    }
    /// `--dsn`: advertise DSN (RFC 3461) and accept RET/ENVID/NOTIFY/ORCPT, which then appear
    /// in [`StoredMessage::mail_options`] and [`StoredMessage::rcpt_options`]. Without it the
    /// server does not offer DSN and refuses those parameters (555).
    pub fn dsn(mut self) -> Self {
        self.dsn = true;
        self
    }
    /// `--timeout SECS` (idle connection timeout).
    pub fn timeout_secs(mut self, secs: f64) -> Self {
        self.timeout = Some(secs);
        self
    }
    /// `-v`: log sessions to the server's stderr (see [`Aiosmtpd::stderr`]).
    pub fn verbose(mut self) -> Self {
        self.verbose = true;
        self
    }

    /// `--sessions-file PATH` (in the tempdir): count client sessions, so a test can read
    /// how many were open at once ([`Aiosmtpd::sessions`]).
    pub fn count_sessions(mut self) -> Self {
        self.count_sessions = true;
        self
    }

    /// `--unix-socket PATH`: listen on a Unix stream socket in the tempdir
    /// ([`Aiosmtpd::unix_socket`], mode 0666) instead of a TCP port ([`Aiosmtpd::port`] is
    /// then 0).
    pub fn unix_socket(mut self) -> Self {
        self.unix_socket = true;
        self
    }

    /// The command-line arguments after the script's path (`--store` and `--unix-socket`
    /// excluded).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["--host".into(), "127.0.0.1".into()];
        let p = |p: &PathBuf| p.to_string_lossy().into_owned();
        if let Some(h) = &self.hostname {
            a.extend(["--hostname".into(), h.clone()]);
        }
        if let Some((c, k)) = &self.starttls {
            a.extend(["--starttls".into(), p(c), p(k)]);
        }
        if self.require_starttls {
            a.push("--require-starttls".into());
        }
        if let Some((c, k)) = &self.implicit_tls {
            a.extend(["--implicit-tls".into(), p(c), p(k)]);
        }
        if let Some((u, pw)) = &self.auth {
            a.extend(["--auth".into(), format!("{u}:{pw}")]);
        }
        if self.auth_plaintext {
            a.push("--auth-plaintext".into());
        }
        for (u, pw) in &self.scram {
            a.extend(["--scram".into(), u.clone(), pw.clone()]);
        }
        if self.scram_bad_proof {
            a.push("--scram-bad-proof".into());
        }
        if self.scram_skip_final {
            a.push("--scram-skip-final".into());
        }
        if self.tls_max_1_2 {
            a.extend(["--tls-max".into(), "1.2".into()]);
        }
        for r in &self.reject_rcpt {
            a.extend(["--reject-rcpt".into(), r.clone()]);
        }
        if let Some(n) = self.refuse_data_lines {
            a.extend(["--refuse-data-lines".into(), n.to_string()]);
        }
        if let Some(w) = self.refuse_data_width {
            a.extend(["--refuse-data-width".into(), w.to_string()]);
        }
        if let Some(n) = self.tempfail_first {
            a.extend(["--tempfail-first".into(), n.to_string()]);
        }
        if let Some(n) = self.max_size {
            a.extend(["--max-size".into(), n.to_string()]);
        }
        if self.smtputf8 {
            a.push("--smtputf8".into());
        }
        if self.dsn {
            a.push("--dsn".into());
        }
        if let Some(t) = self.timeout {
            a.extend(["--timeout".into(), t.to_string()]);
        }
        if self.verbose {
            a.push("-v".into());
        }
        a
    }

    /// Spawns the server and waits (at most [`AIOSMTPD_READY_TIMEOUT`]) for `READY <port>`.
    /// Panics, with the server's stderr, if it does not come.
    pub fn start(self) -> Aiosmtpd {
        let root = repo_root();
        let python = root.join("tests/interop/.venv/bin/python");
        let script = root.join("tests/interop/aiosmtpd_server.py");
        assert!(
            python.exists(),
            "{}",
            hint_install_deps(&format!("{} is missing", python.display()))
        );
        let work = tempfile::Builder::new()
            .prefix("postline-aiosmtpd-")
            .tempdir()
            .expect("tempdir");
        let store = work.path().join("store");
        fs::create_dir(&store).expect("create store dir");
        let socket = self.unix_socket.then(|| work.path().join("smtp.sock"));
        let sessions = self
            .count_sessions
            .then(|| work.path().join("sessions.json"));
        let stderr_path = work.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let args = self.args();
        let mut child = Command::new(&python)
            .arg(&script)
            .args(&args)
            .arg("--store")
            .arg(&store)
            .args(
                socket
                    .iter()
                    .flat_map(|p| [std::ffi::OsStr::new("--unix-socket"), p.as_os_str()]),
            )
            .args(
                sessions
                    .iter()
                    .flat_map(|p| [std::ffi::OsStr::new("--sessions-file"), p.as_os_str()]),
            )
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", python.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
        let read_stderr = || fs::read_to_string(&stderr_path).unwrap_or_default();
        let port = match rx.recv_timeout(AIOSMTPD_READY_TIMEOUT) {
            Ok(Ok(line)) => match line.trim_end().strip_prefix("READY ") {
                Some(p) => p.parse::<u16>().ok(),
                None => None,
            }
            .unwrap_or_else(|| {
                kill_and_wait(&mut child);
                panic!(
                    "aiosmtpd_server.py {args:?}: expected `READY <port>`, got {line:?}; stderr:\n{}",
                    read_stderr()
                )
            }),
            Ok(Err(e)) => {
                kill_and_wait(&mut child);
                panic!(
                    "aiosmtpd_server.py {args:?}: reading stdout: {e}; stderr:\n{}",
                    read_stderr()
                )
            }
            Err(_) => {
                kill_and_wait(&mut child);
                panic!(
                    "aiosmtpd_server.py {args:?}: no READY line within {:?}; stderr:\n{}",
                    AIOSMTPD_READY_TIMEOUT,
                    read_stderr()
                )
            }
        };
        Aiosmtpd {
            child,
            stdin,
            port,
            socket,
            store,
            stderr_path,
            sessions,
            args,
            _work: work,
        }
    }
}

/// A running `tests/interop/aiosmtpd_server.py` on 127.0.0.1, storing into a tempdir. Killed
/// (and waited for) on drop.
pub struct Aiosmtpd {
    child: Child,
    /// Kept open: the server exits when it reaches EOF.
    stdin: Option<ChildStdin>,
    port: u16,
    socket: Option<PathBuf>,
    store: PathBuf,
    stderr_path: PathBuf,
    sessions: Option<PathBuf>,
    args: Vec<String>,
    _work: tempfile::TempDir,
}

/// Client sessions (connections) an [`Aiosmtpd`] saw, with [`AiosmtpdBuilder::count_sessions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Open now.
    pub current: u64,
    /// The most open at once.
    pub peak: u64,
    /// Opened in all.
    pub total: u64,
}

/// One message aiosmtpd accepted (`<n>.eml` and `<n>.json` of its store).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    /// n, from 1, in acceptance order.
    pub index: usize,
    /// The message as received, after un-stuffing (CRLFs kept), without the final `.` line.
    pub content: Vec<u8>,
    /// The reverse-path without angle brackets; the null sender is recorded as `<>`.
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// As aiosmtpd records them (upper-cased), e.g. `["BODY=8BITMIME", "SIZE=123"]`.
    pub mail_options: Vec<String>,
    pub rcpt_options: Vec<String>,
    pub smtp_utf8: bool,
    pub size: u64,
    /// The server's own idea of whether the session was under TLS.
    pub tls: bool,
    pub auth_user: Option<String>,
    /// The client's IP address as the server saw it (the session's peer).
    pub peer: Option<String>,
    /// The name the client announced in EHLO/HELO.
    pub hello_name: Option<String>,
    /// The whole `<n>.json`.
    pub raw_json: String,
}

impl Aiosmtpd {
    /// Options; finish with [`AiosmtpdBuilder::start`].
    pub fn builder() -> AiosmtpdBuilder {
        AiosmtpdBuilder::default()
    }

    /// A plain-text server with default options.
    pub fn start() -> Aiosmtpd {
        Self::builder().start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket it listens on, with [`AiosmtpdBuilder::unix_socket`].
    pub fn unix_socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its session counts (all zero before the first session). Panics without
    /// [`AiosmtpdBuilder::count_sessions`].
    pub fn sessions(&self) -> Sessions {
        let path = self
            .sessions
            .as_ref()
            .expect("started without AiosmtpdBuilder::count_sessions");
        let Ok(text) = fs::read_to_string(path) else {
            return Sessions::default();
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Sessions {
            current: n("current"),
            peak: n("peak"),
            total: n("total"),
        }
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The arguments it was started with (besides `--store`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// What the server wrote to stderr so far (logs; sessions with [`AiosmtpdBuilder::verbose`]).
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The messages stored so far, in order (1, 2, … up to the first missing `<n>.json`).
    pub fn messages(&self) -> Vec<StoredMessage> {
        let mut out = Vec::new();
        for n in 1.. {
            let json_path = self.store.join(format!("{n}.json"));
            if !json_path.exists() {
                break;
            }
            out.push(self.read_message(n));
        }
        out
    }

    fn read_message(&self, n: usize) -> StoredMessage {
        let json_path = self.store.join(format!("{n}.json"));
        let eml_path = self.store.join(format!("{n}.eml"));
        let raw_json = fs::read_to_string(&json_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", json_path.display()));
        let content =
            fs::read(&eml_path).unwrap_or_else(|e| panic!("read {}: {e}", eml_path.display()));
        let v: Value = serde_json::from_str(&raw_json)
            .unwrap_or_else(|e| panic!("parse {}: {e}\n{raw_json}", json_path.display()));
        let strs = |key: &str| -> Vec<String> {
            match v.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_str().unwrap_or_default().to_owned())
                    .collect(),
                _ => Vec::new(),
            }
        };
        StoredMessage {
            index: n,
            content,
            mail_from: v
                .get("mail_from")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            rcpt_tos: strs("rcpt_tos"),
            mail_options: strs("mail_options"),
            rcpt_options: strs("rcpt_options"),
            smtp_utf8: v.get("smtp_utf8") == Some(&Value::Bool(true)),
            size: v
                .get("size")
                .and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f as u64)))
                .unwrap_or(0),
            tls: v.get("tls") == Some(&Value::Bool(true)),
            auth_user: v
                .get("auth_user")
                .and_then(Value::as_str)
                .map(str::to_owned),
            peer: v.get("peer").and_then(Value::as_str).map(str::to_owned),
            hello_name: v
                .get("host_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            raw_json,
        }
    }

    /// Waits (polling, at most `timeout`) until at least `n` messages are stored, then returns
    /// all stored messages (at least `n`). Panics on timeout, with the server's stderr.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<StoredMessage> {
        let deadline = Instant::now() + timeout;
        let target = self.store.join(format!("{n}.json"));
        while n > 0 && !target.exists() {
            if Instant::now() >= deadline {
                panic!(
                    "aiosmtpd: {} of {n} message(s) stored after {timeout:?}; stderr:\n{}",
                    self.messages().len(),
                    self.stderr()
                );
            }
            thread::sleep(POLL);
        }
        self.messages()
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        drop(self.stdin.take());
        kill_and_wait(&mut self.child);
    }
}
