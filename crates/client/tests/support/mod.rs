//! Support code for postline's integration tests: a throwaway CA ([`TestCa`]), the real aiosmtpd
//! server from `tests/interop/aiosmtpd_server.py` ([`Aiosmtpd`]), Postfix's `smtp-sink`
//! ([`SmtpSink`]) and a scripted SMTP peer over real TCP ([`ScriptedServer`]).
//!
//! Include it from an integration test with `mod support;`. Everything listens on 127.0.0.1
//! only, and every wait is bounded in time. The real servers need `.ci/install-deps` to have
//! run (postfix, and the venv at `tests/interop/.venv`).
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long [`Aiosmtpd::start`] waits for `READY <port>`.
pub const AIOSMTPD_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`SmtpSink::start`] waits for the port to accept and greet.
pub const SINK_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on any single read of the [`ScriptedServer`] and on waiting for a connection.
pub const SCRIPT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`ScriptedServer::finish`] waits for the script thread.
pub const SCRIPT_FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Once [`ScriptedServer::finish`] was called, a read that gets nothing for this long fails.
pub const SCRIPT_FINISH_GRACE: Duration = Duration::from_secs(2);
/// How long [`Step::Hang`] keeps the socket open at most.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(20);
const MAX_LINE: usize = 1 << 20;

/// The repository's root (`CARGO_MANIFEST_DIR/../..`).
pub fn repo_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released: another process may take it
/// before the caller does, so callers that bind should retry).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Lossy UTF-8 for messages.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hint_install_deps(what: &str) -> String {
    format!("{what}: run `.ci/install-deps` (as root) from the repository root first")
}

/// Waits (at most `timeout`) for `child` to exit; whether it did.
fn wait_bounded(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => thread::sleep(POLL),
        }
    }
}

/// Kills `child` and waits (at most 10 s) for it.
fn kill_and_wait(child: &mut Child) {
    let _ = child.kill();
    wait_bounded(child, Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------- TestCa

/// A throwaway CA and a server certificate it signed, written as PEM files into a tempdir.
///
/// The server certificate (ECDSA P-256) is for `localhost`, 127.0.0.1 and ::1 unless made
/// with [`TestCa::with_server_names`]. Files: `ca.pem` (the CA certificate), `server.pem`
/// (the leaf only), `server-chain.pem` (leaf then CA), `server.key` (PKCS#8 key of the leaf).
pub struct TestCa {
    dir: tempfile::TempDir,
    /// `ca.pem`.
    pub ca_path: PathBuf,
    /// `server.pem`: the server's leaf certificate.
    pub cert_path: PathBuf,
    /// `server-chain.pem`: the leaf followed by the CA certificate.
    pub chain_path: PathBuf,
    /// `server.key`: the server's private key (PKCS#8 PEM).
    pub key_path: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The server's leaf certificate, PEM.
    pub server_cert_pem: String,
    /// The server's leaf certificate, DER.
    pub server_cert_der: Vec<u8>,
    /// The server's private key, PKCS#8 PEM.
    pub server_key_pem: String,
    /// The server's private key, PKCS#8 DER.
    pub server_key_der: Vec<u8>,
}

static CA_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestCa {
    /// A new CA and a server certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn new() -> TestCa {
        Self::generate(&["localhost", "127.0.0.1", "::1"], false)
    }

    /// Another, independent CA (its own key and name) with the same kind of server
    /// certificate: a client that trusts only [`TestCa::new`]'s CA must reject its server.
    pub fn other() -> TestCa {
        Self::new()
    }

    /// A CA whose server certificate is for exactly these names (DNS names or IP addresses),
    /// e.g. `&["mail.example.test"]` to show a hostname mismatch for `localhost`.
    pub fn with_server_names(names: &[&str]) -> TestCa {
        Self::generate(names, false)
    }

    /// A CA whose server certificate (for `localhost`, 127.0.0.1, ::1) expired in 2001.
    pub fn expired() -> TestCa {
        Self::generate(&["localhost", "127.0.0.1", "::1"], true)
    }

    /// The tempdir holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn generate(names: &[&str], expired: bool) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let n = CA_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{} {}", std::process::id(), n);

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("postline test CA {tag}"));
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "postline tests");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let server_key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "server".into()),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        }
        let server_cert = params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("sign server certificate");

        let dir = tempfile::Builder::new()
            .prefix("postline-ca-")
            .tempdir()
            .expect("tempdir");
        let ca_pem = ca_cert.pem();
        let server_cert_pem = server_cert.pem();
        let server_key_pem = server_key.serialize_pem();
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("server.pem");
        let chain_path = dir.path().join("server-chain.pem");
        let key_path = dir.path().join("server.key");
        fs::write(&ca_path, &ca_pem).expect("write ca.pem");
        fs::write(&cert_path, &server_cert_pem).expect("write server.pem");
        fs::write(&chain_path, format!("{server_cert_pem}{ca_pem}"))
            .expect("write server-chain.pem");
        fs::write(&key_path, &server_key_pem).expect("write server.key");
        TestCa {
            ca_path,
            cert_path,
            chain_path,
            key_path,
            ca_der: ca_cert.der().to_vec(),
            ca_pem,
            server_cert_der: server_cert.der().to_vec(),
            server_cert_pem,
            server_key_der: server_key.serialize_der(),
            server_key_pem,
            dir,
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------- Aiosmtpd

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
    reject_rcpt: Vec<String>,
    tempfail_first: Option<u32>,
    max_size: Option<u64>,
    smtputf8: bool,
    timeout: Option<f64>,
    verbose: bool,
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

    /// The command-line arguments after the script's path (`--store` excluded).
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
        for r in &self.reject_rcpt {
            a.extend(["--reject-rcpt".into(), r.clone()]);
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
        let stderr_path = work.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let args = self.args();
        let mut child = Command::new(&python)
            .arg(&script)
            .args(&args)
            .arg("--store")
            .arg(&store)
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
            store,
            stderr_path,
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
    store: PathBuf,
    stderr_path: PathBuf,
    args: Vec<String>,
    _work: tempfile::TempDir,
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

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
        let v = Json::parse(&raw_json)
            .unwrap_or_else(|e| panic!("parse {}: {e}\n{raw_json}", json_path.display()));
        let strs = |key: &str| -> Vec<String> {
            match v.get(key) {
                Some(Json::Arr(a)) => a
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
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            rcpt_tos: strs("rcpt_tos"),
            mail_options: strs("mail_options"),
            rcpt_options: strs("rcpt_options"),
            smtp_utf8: matches!(v.get("smtp_utf8"), Some(Json::Bool(true))),
            size: match v.get("size") {
                Some(Json::Num(x)) => *x as u64,
                _ => 0,
            },
            tls: matches!(v.get("tls"), Some(Json::Bool(true))),
            auth_user: v.get("auth_user").and_then(Json::as_str).map(str::to_owned),
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

// ---------------------------------------------------------------------------------- minimal JSON

/// A minimal JSON value, enough for aiosmtpd's `<n>.json`.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return self.err("expected ':'");
                    }
                    let v = self.value()?;
                    kv.push((k, v));
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Json::Obj(kv));
                    }
                    return self.err("expected ',' or '}'");
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Json::Arr(a));
                    }
                    return self.err("expected ',' or ']'");
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match t.parse::<f64>() {
                    Ok(x) if !t.is_empty() => Ok(Json::Num(x)),
                    _ => {
                        self.i = start;
                        self.err("unexpected character")
                    }
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or("truncated \\u escape")?;
        let h = std::str::from_utf8(h).map_err(|_| "bad \\u escape")?;
        let x = u32::from_str_radix(h, 16).map_err(|_| format!("bad \\u escape {h:?}"))?;
        self.i += 4;
        Ok(x)
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat("\"") {
            return self.err("expected string");
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err("bad low surrogate");
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).unwrap_or('\u{FFFD}')
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------------- SmtpSink

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// `sh -c SINK_WATCHDOG smtp-sink ARGS...`: runs smtp-sink (stdin from /dev/null) and, in the
/// background, waits for EOF on the script's stdin, then sends smtp-sink SIGTERM; the shell
/// exits with smtp-sink's status.
const SINK_WATCHDOG: &str = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- &
p=$!
{ cat <&3 >/dev/null 2>&1; kill -TERM "$p" 2>/dev/null; } &
exec 3<&-
wait "$p""#;

/// Postfix's `smtp-sink -u nobody [flags] 127.0.0.1:PORT BACKLOG`, killed on drop.
///
/// [`SmtpSink::start`] makes one probe session (connect, read the `220` greeting, `QUIT`), so
/// with `-n N` (exit after N sessions) the probe counts as one, and `-c` counters include it.
pub struct SmtpSink {
    /// The `/bin/sh` watchdog (see `SINK_WATCHDOG`); it exits when smtp-sink does.
    child: Child,
    /// Dropping it makes the watchdog stop smtp-sink.
    stdin: Option<ChildStdin>,
    port: u16,
    flags: Vec<String>,
    work: tempfile::TempDir,
}

impl SmtpSink {
    /// The backlog argument.
    pub const BACKLOG: u32 = 256;

    /// Starts `smtp-sink -u nobody <flags> 127.0.0.1:PORT 256` on a free port (retrying with
    /// another port a few times if that one turns out to be in use), and waits (at most
    /// [`SINK_READY_TIMEOUT`]) until a connection is accepted and greeted with `220`.
    pub fn start(flags: &[&str]) -> SmtpSink {
        assert!(
            Path::new(SMTP_SINK).exists(),
            "{}",
            hint_install_deps(&format!("{SMTP_SINK} is missing"))
        );
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match Self::try_start(flags) {
                Ok(s) => return s,
                // Another process took the port between free_port() and smtp-sink's bind.
                Err(e) if e.contains("in use") => last_err = e,
                Err(e) => {
                    last_err = e;
                    break;
                }
            }
        }
        panic!("smtp-sink {flags:?} did not start: {last_err}");
    }

    fn try_start(flags: &[&str]) -> Result<SmtpSink, String> {
        let port = free_port();
        let work = tempfile::Builder::new()
            .prefix("postline-smtp-sink-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let stdout = File::create(work.path().join("stdout.log")).map_err(|e| e.to_string())?;
        let stderr = File::create(work.path().join("stderr.log")).map_err(|e| e.to_string())?;
        // A /bin/sh watchdog runs smtp-sink and TERMs it once our end of its stdin pipe is
        // closed: on drop, and also when the test process dies without running destructors.
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SINK_WATCHDOG)
            .arg(SMTP_SINK)
            .arg("-u")
            .arg("nobody")
            .args(flags)
            .arg(format!("127.0.0.1:{port}"))
            .arg(Self::BACKLOG.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawn {SMTP_SINK}: {e}"))?;
        let mut sink = SmtpSink {
            stdin: child.stdin.take(),
            child,
            port,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            work,
        };
        let deadline = Instant::now() + SINK_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = sink.child.try_wait() {
                return Err(format!(
                    "exited ({status}) on port {port}: {}",
                    sink.output()
                ));
            }
            if let Ok(s) =
                TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            {
                let _ = s.set_read_timeout(Some(SINK_READY_TIMEOUT));
                let _ = s.set_write_timeout(Some(SINK_READY_TIMEOUT));
                let mut line = String::new();
                let mut r = BufReader::new(&s);
                match r.read_line(&mut line) {
                    Ok(_) if line.starts_with("220") => {
                        let _ = (&s).write_all(b"QUIT\r\n");
                        let mut rest = String::new();
                        let _ = r.read_line(&mut rest);
                        let _ = s.shutdown(Shutdown::Both);
                        return Ok(sink);
                    }
                    Ok(_) => {
                        return Err(format!(
                            "port {port}: greeting {line:?} is not 220; {}",
                            sink.output()
                        ))
                    }
                    Err(e) => {
                        return Err(format!("port {port}: no greeting: {e}; {}", sink.output()))
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "port {port} not accepting after {SINK_READY_TIMEOUT:?}; {}",
                    sink.output()
                ));
            }
            thread::sleep(POLL);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn flags(&self) -> &[String] {
        &self.flags
    }

    /// What smtp-sink wrote to stdout so far (`-c` counters).
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.work.path().join("stdout.log")).unwrap_or_default()
    }

    /// What smtp-sink wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.work.path().join("stderr.log")).unwrap_or_default()
    }

    fn output(&self) -> String {
        format!("stdout: {:?}; stderr: {:?}", self.stdout(), self.stderr())
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if !wait_bounded(&mut self.child, Duration::from_secs(10)) {
            kill_and_wait(&mut self.child);
        }
    }
}

// ---------------------------------------------------------------------------------- ScriptedServer

/// One step of a [`ScriptedServer`] script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read one line (up to LF) and check that, without its CRLF, it starts with this prefix
    /// (ASCII case-insensitively) and that it ends with CRLF; a mismatch is recorded as a
    /// failure and the script goes on. EOF or a timeout is a failure that ends the connection.
    Expect(String),
    /// Read lines until the end-of-data line `.` (CRLF `.` CRLF, or `.` CRLF as the first line).
    ExpectData,
    /// Read exactly this many bytes (a BDAT chunk).
    ExpectBytes(usize),
    /// Wait.
    Sleep(Duration),
    /// Close the connection (later steps are skipped for this connection).
    Close,
    /// Neither read nor write, but keep the socket open until [`ScriptedServer::finish`] is
    /// called, the server is dropped, or [`HANG_TIMEOUT`] passes; then close it (later steps are
    /// skipped).
    Hang,
    /// Write these bytes one at a time, waiting the interval after each.
    SendSlowly(Vec<u8>, Duration),
    /// Abort the connection: `SO_LINGER` 0, then close, so the client gets a TCP RST instead
    /// of a FIN (later steps are skipped). Nothing pending is read first.
    Reset,
}

impl Step {
    /// `Step::Send` of a string, as is (include the CRLF).
    pub fn send(s: impl AsRef<[u8]>) -> Step {
        Step::Send(s.as_ref().to_vec())
    }
    /// `Step::Send` of one reply line, CRLF appended.
    pub fn reply(line: &str) -> Step {
        Step::Send(format!("{line}\r\n").into_bytes())
    }
    /// `Step::Expect` of a prefix.
    pub fn expect(prefix: &str) -> Step {
        Step::Expect(prefix.to_owned())
    }
}

/// A `220` greeting, an expected `EHLO`, and a multiline `250` reply: `250-scripted.test`
/// followed by one line per entry of `ehlo_lines` (e.g. `"PIPELINING"`, `"SIZE 1000"`), the
/// last one with `250 `. With no `ehlo_lines` the reply is `250 scripted.test`.
pub fn greeting_and_ehlo(ehlo_lines: &[&str]) -> Vec<Step> {
    let mut lines = vec!["scripted.test"];
    lines.extend_from_slice(ehlo_lines);
    let mut reply = String::new();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        reply.push_str(&format!("250{sep}{l}\r\n"));
    }
    vec![
        Step::reply("220 scripted.test ESMTP postline scripted server"),
        Step::expect("EHLO"),
        Step::Send(reply.into_bytes()),
    ]
}

/// What a [`ScriptedServer`] saw.
#[derive(Clone, Debug, Default)]
pub struct ScriptReport {
    /// Everything the client sent, all connections concatenated in order.
    pub received: Vec<u8>,
    /// What each accepted connection received.
    pub connections: Vec<Vec<u8>>,
    /// Every mismatch, EOF, timeout or I/O error, in order; empty when the script played out.
    pub failures: Vec<String>,
}

impl ScriptReport {
    /// `received` as (lossy) text.
    pub fn received_str(&self) -> String {
        lossy(&self.received)
    }

    /// Panics with the failures and the received bytes unless there were no failures.
    pub fn assert_ok(&self) {
        assert!(
            self.failures.is_empty(),
            "scripted server failures:\n  {}\nreceived:\n{}",
            self.failures.join("\n  "),
            self.received_str()
        );
    }
}

#[derive(Default)]
struct ScriptShared {
    /// When finish() was called (or the server dropped).
    finish_at: Mutex<Option<Instant>>,
    finish_cv: Condvar,
    connections: Mutex<Vec<Vec<u8>>>,
    failures: Mutex<Vec<String>>,
}

impl ScriptShared {
    fn finishing_since(&self) -> Option<Instant> {
        *self.finish_at.lock().unwrap()
    }
    fn request_finish(&self) {
        let mut f = self.finish_at.lock().unwrap();
        if f.is_none() {
            *f = Some(Instant::now());
        }
        self.finish_cv.notify_all();
    }
    fn fail(&self, msg: String) {
        self.failures.lock().unwrap().push(msg);
    }
    /// Whether a wait that started at `start` is over.
    fn expired(&self, start: Instant, grace: Duration) -> bool {
        start.elapsed() >= SCRIPT_IO_TIMEOUT
            || self.finishing_since().is_some_and(|t| t.elapsed() >= grace)
    }
}

/// A scripted SMTP peer on 127.0.0.1: accepts connections (one by default) and plays the
/// script on each, recording what the client sent and every deviation.
pub struct ScriptedServer {
    port: u16,
    shared: Arc<ScriptShared>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    /// Accepts one connection and plays `script` on it.
    pub fn start(script: Vec<Step>) -> ScriptedServer {
        Self::accept_n(script, 1)
    }

    /// Accepts `n` connections one after the other, replaying `script` on each. A connection
    /// that does not arrive within [`SCRIPT_IO_TIMEOUT`] (or by the time [`finish`](Self::finish)
    /// is called) is a failure.
    pub fn accept_n(script: Vec<Step>, n: usize) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let shared = Arc::new(ScriptShared::default());
        let sh = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("scripted-smtp-{port}"))
            .spawn(move || run_script_server(listener, script, n, &sh))
            .expect("spawn script thread");
        ScriptedServer {
            port,
            shared,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Ends any [`Step::Hang`], lets pending reads give up after [`SCRIPT_FINISH_GRACE`] of
    /// silence, waits (at most [`SCRIPT_FINISH_TIMEOUT`]) for the script thread, and reports.
    pub fn finish(mut self) -> ScriptReport {
        self.shared.request_finish();
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + SCRIPT_FINISH_TIMEOUT;
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            if t.is_finished() {
                if t.join().is_err() {
                    self.shared.fail("script thread panicked".into());
                }
            } else {
                self.shared.fail(format!(
                    "script thread still running after {SCRIPT_FINISH_TIMEOUT:?}"
                ));
            }
        }
        let connections = self.shared.connections.lock().unwrap().clone();
        ScriptReport {
            received: connections.concat(),
            connections,
            failures: self.shared.failures.lock().unwrap().clone(),
        }
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        // The thread ends by itself (bounded waits); don't block the test here.
        self.shared.request_finish();
    }
}

fn run_script_server(listener: TcpListener, script: Vec<Step>, n: usize, shared: &ScriptShared) {
    for conn_no in 0..n {
        let start = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break Some(s),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if shared.expired(start, Duration::ZERO) {
                        break None;
                    }
                    thread::sleep(POLL);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    shared.fail(format!("connection {conn_no}: accept: {e}"));
                    break None;
                }
            }
        };
        let Some(stream) = stream else {
            shared.fail(format!(
                "connection {conn_no}: no client connected (expected {n} connection(s))"
            ));
            return;
        };
        shared.connections.lock().unwrap().push(Vec::new());
        let mut conn = ScriptConn {
            stream,
            buf: Vec::new(),
            conn_no,
            shared,
        };
        conn.run(&script);
    }
}

struct ScriptConn<'a> {
    stream: TcpStream,
    /// Bytes read but not yet consumed by a step.
    buf: Vec<u8>,
    conn_no: usize,
    shared: &'a ScriptShared,
}

enum ReadError {
    Eof,
    Timeout,
    TooLong,
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => write!(f, "EOF (client closed the connection)"),
            ReadError::Timeout => write!(f, "timed out"),
            ReadError::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
            ReadError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl ScriptConn<'_> {
    fn fail(&self, step: usize, msg: String) {
        self.shared
            .fail(format!("connection {} step {step}: {msg}", self.conn_no));
    }

    fn record(&self, data: &[u8]) {
        let mut c = self.shared.connections.lock().unwrap();
        if let Some(last) = c.last_mut() {
            last.extend_from_slice(data);
        }
    }

    /// Reads more bytes into `buf`, waiting at most the script's bounds.
    fn fill(&mut self, start: Instant) -> Result<(), ReadError> {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut tmp = [0u8; 8192];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => {
                    self.record(&tmp[..n]);
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.shared.expired(start, SCRIPT_FINISH_GRACE) {
                        return Err(ReadError::Timeout);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// One line including its LF.
    fn read_line(&mut self) -> Result<Vec<u8>, ReadError> {
        let start = Instant::now();
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=pos).collect());
            }
            if self.buf.len() > MAX_LINE {
                return Err(ReadError::TooLong);
            }
            self.fill(start)?;
        }
    }

    fn read_exact_n(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        let start = Instant::now();
        while self.buf.len() < n {
            self.fill(start)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let _ = self.stream.set_write_timeout(Some(SCRIPT_IO_TIMEOUT));
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Reads (without waiting) whatever the client has already sent, so that it is recorded
    /// and closing sends a FIN rather than a reset.
    fn drain_available(&mut self) {
        if self.stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut tmp = [0u8; 8192];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => break,
                Ok(n) => self.record(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.set_nonblocking(false);
    }

    fn close(&mut self) {
        self.drain_available();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn run(&mut self, script: &[Step]) {
        let _ = self.stream.set_nonblocking(false);
        let _ = self.stream.set_nodelay(true);
        for (i, step) in script.iter().enumerate() {
            match step {
                Step::Send(data) => {
                    if let Err(e) = self.write(data) {
                        self.fail(i, format!("sending {:?}: {e}", lossy(data)));
                        break;
                    }
                }
                Step::SendSlowly(data, interval) => {
                    let mut ok = true;
                    for b in data {
                        if let Err(e) = self.write(std::slice::from_ref(b)) {
                            self.fail(i, format!("sending slowly {:?}: {e}", lossy(data)));
                            ok = false;
                            break;
                        }
                        thread::sleep(*interval);
                    }
                    if !ok {
                        break;
                    }
                }
                Step::Expect(prefix) => match self.read_line() {
                    Ok(line) => {
                        let text = line.strip_suffix(b"\n").unwrap_or(&line);
                        let text = text.strip_suffix(b"\r").unwrap_or(text);
                        if !line.ends_with(b"\r\n") {
                            self.fail(i, format!("line {:?} is not CRLF-terminated", lossy(&line)));
                        }
                        let p = prefix.as_bytes();
                        if text.len() < p.len() || !text[..p.len()].eq_ignore_ascii_case(p) {
                            self.fail(
                                i,
                                format!(
                                    "expected a line starting with {prefix:?}, got {:?}",
                                    lossy(&line)
                                ),
                            );
                        }
                    }
                    Err(e) => {
                        self.fail(i, format!("expected a line starting with {prefix:?}: {e}"));
                        break;
                    }
                },
                Step::ExpectData => {
                    let mut first = true;
                    let mut prev_crlf = true;
                    let mut err = None;
                    loop {
                        match self.read_line() {
                            Ok(line) => {
                                if line == b".\r\n" && (first || prev_crlf) {
                                    break;
                                }
                                prev_crlf = line.ends_with(b"\r\n");
                                first = false;
                            }
                            Err(e) => {
                                err = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = err {
                        self.fail(
                            i,
                            format!("expected message data ending with CRLF.CRLF: {e}"),
                        );
                        break;
                    }
                }
                Step::ExpectBytes(n) => {
                    if let Err(e) = self.read_exact_n(*n) {
                        self.fail(i, format!("expected {n} bytes: {e}"));
                        break;
                    }
                }
                Step::Sleep(d) => thread::sleep(*d),
                Step::Close => break,
                Step::Reset => {
                    if let Err(e) = set_linger_zero(&self.stream) {
                        self.fail(i, format!("SO_LINGER 0: {e}"));
                        break;
                    }
                    // Dropping the socket now (not shutting it down) sends the RST.
                    return;
                }
                Step::Hang => {
                    let start = Instant::now();
                    let mut f = self.shared.finish_at.lock().unwrap();
                    while f.is_none() && start.elapsed() < HANG_TIMEOUT {
                        let left = HANG_TIMEOUT.saturating_sub(start.elapsed());
                        f = self.shared.finish_cv.wait_timeout(f, left).unwrap().0;
                    }
                    break;
                }
            }
        }
        self.close();
    }
}

/// `SO_LINGER` with a zero timeout: closing the socket then aborts the connection with a RST.
/// std has no stable `set_linger`, and the support module takes no extra dependencies.
#[cfg(target_os = "linux")]
fn set_linger_zero(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let value = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a pointer to a live `struct linger` of that size.
    let rc = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &value,
            std::mem::size_of::<Linger>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_linger_zero(_stream: &TcpStream) -> io::Result<()> {
    Err(io::Error::new(
        ErrorKind::Unsupported,
        "SO_LINGER 0 is only wired up on Linux",
    ))
}
