//! [`Dovecot`]: a private Dovecot 2.3 (Debian `dovecot-core`, `dovecot-submissiond`) run from a
//! config file in a tempdir, for SASL (an auth socket Postfix's `smtpd_sasl_type = dovecot` can
//! use) and optionally Dovecot's own submission service (STARTTLS, SASL EXTERNAL from a client
//! certificate, relaying to a sink the test gives), and optionally its LMTP service (Debian
//! `dovecot-lmtpd`) delivering into Maildirs in the tempdir.
//!
//! How it runs (facts found on Debian 12, Dovecot 2.3.19.1, as root):
//! - `dovecot -F -c DIR/dovecot.conf` in the foreground, under a `/bin/sh` watchdog that sends it
//!   SIGTERM when the test's end of a pipe closes (on drop, or when the test process dies).
//!   Everything is in the tempdir: `base_dir` (sockets, `master.pid`), `state_dir`, `log_path`.
//!   Its own `instance_name`, so it never meets a system Dovecot (whose base_dir is /run/dovecot).
//! - The tempdir is made `0755`: auth runs as `dovecot` (`default_internal_user`), the login
//!   processes as `dovenull` (`default_login_user`), and Postfix's smtpd as `postfix` must reach
//!   the socket. The `passwd-file` is `0644`.
//! - Dovecot's master lingers a second or two after SIGTERM; a second instance on the same
//!   base_dir before it is gone fails with `Fatal: Dovecot is already running`. Drop waits for it.
//! - Users are in a `passwd-file` with `{PLAIN}` passwords, so PLAIN, LOGIN and SCRAM-SHA-256 all
//!   work; userdb is `static` (`uid=nobody gid=nogroup`; submission needs a userdb and a
//!   `mail_location`, else `Error: mail_location not set and autodetection failed`).
//! - SASL EXTERNAL: Dovecot 2.3.19 verifies the client certificate against `ssl_ca` only with
//!   `ssl_require_crl = no` (default yes: without a CRL every certificate is "invalid", the log
//!   says `client sent an invalid cert`); `auth_ssl_username_from_cert = yes` +
//!   `ssl_cert_username_field = commonName` make the CN the user; the passdb lookup EXTERNAL does
//!   has no password, so it needs its own passdb (`mechanisms = external`) whose entries have an
//!   empty password and `nopassword=y` (with the PLAIN passwords `nopassword` fails: `nopassword
//!   set but password is non-empty`).
//! - `auth_ssl_require_client_cert = yes` applies to every mechanism: then PLAIN and LOGIN also
//!   fail without a certificate (`535 5.7.8 Client didn't present valid SSL certificate`).
//! - LMTP (`protocols = lmtp`, `/usr/lib/dovecot/lmtp`): `service lmtp` gets a
//!   `unix_listener lmtp` (mode 0666, so any local user can connect; it is `base_dir/lmtp`) and
//!   an `inet_listener lmtp` on 127.0.0.1. It greets `220 HOSTNAME Dovecot (Debian) ready.` and
//!   answers LHLO with 8BITMIME, CHUNKING, ENHANCEDSTATUSCODES, PIPELINING (no SIZE, no
//!   STARTTLS, no AUTH).
//! - LMTP looks each RCPT up in the userdb. A `static` userdb would take any name; a
//!   `passwd-file` userdb (`user:::::::` lines, `default_fields = uid=nobody gid=nogroup
//!   home=...`) refuses others with `550 5.1.1 <bob@x> User doesn't exist: bob@x`. The lookup
//!   name is the whole address (`auth_username_format = %Lu`): `alice@example.org` is unknown
//!   when the file says `alice`, so `protocol lmtp { auth_username_format = %Ln }` drops the
//!   domain.
//! - The lmtp process starts as root and delivers as the userdb's uid (`nobody`; the default
//!   `first_valid_uid = 500` refuses root): `home/USER/Maildir/{new,cur,tmp}` made on the first
//!   delivery, mode 0700 (root reads it). One `250 2.0.0 <rcpt> ID Saved` per accepted RCPT
//!   after the final dot. The stored file has LF line ends and starts with `Return-Path:`,
//!   `Delivered-To:` and `Received: from LHLO-NAME by HOSTNAME with LMTP`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{
    hint_install_deps, kill_and_wait, pid_alive, signal_pid, tail, wait_bounded, wait_pid_gone,
    POLL, TERM_ON_STDIN_EOF,
};
use crate::{free_port, TestCa};

/// How long [`DovecotBuilder::start`] waits for the auth socket (and the submission and LMTP
/// ports).
pub const DOVECOT_READY_TIMEOUT: Duration = Duration::from_secs(20);

const DOVECOT: &str = "/usr/sbin/dovecot";

/// Options for [`Dovecot`].
#[derive(Clone, Debug)]
pub struct DovecotBuilder {
    users: Vec<(String, String)>,
    mechanisms: String,
    submission: Option<SubmissionOpts>,
    lmtp: bool,
    quotas: Vec<(String, u64)>,
    hostname: String,
    auth_debug: bool,
}

#[derive(Clone, Debug)]
struct SubmissionOpts {
    relay_port: u16,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    require_client_cert: bool,
}

impl Default for DovecotBuilder {
    fn default() -> Self {
        DovecotBuilder {
            users: Vec::new(),
            mechanisms: "plain login".into(),
            submission: None,
            lmtp: false,
            quotas: Vec::new(),
            hostname: "dovecot.postline.test".into(),
            auth_debug: false,
        }
    }
}

impl DovecotBuilder {
    /// A user with a `{PLAIN}` password (neither may contain `:` or a newline).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        for s in [name, password] {
            assert!(
                !s.contains([':', '\n', '\r']),
                "Dovecot passwd-file field {s:?} contains ':' or a newline"
            );
        }
        self.users.push((name.into(), password.into()));
        self
    }

    /// `auth_mechanisms` (default `plain login`), e.g. `"plain login scram-sha-256"`.
    /// [`external`](Self::external) adds `external`.
    pub fn mechanisms(mut self, mechanisms: &str) -> Self {
        self.mechanisms = mechanisms.into();
        self
    }

    /// Dovecot's submission service on a free 127.0.0.1 port ([`Dovecot::submission_port`]):
    /// `ssl = required` with STARTTLS using `server`'s certificate chain and key, relaying
    /// every accepted message to `127.0.0.1:relay_port` (`submission_relay_trusted = yes`).
    /// AUTH is required before MAIL (`530 5.7.0 Authentication required.`). Dovecot lists the
    /// AUTH mechanisms in the EHLO reply before STARTTLS too; `ssl = required` is what keeps
    /// authentication to TLS sessions.
    pub fn submission(mut self, relay_port: u16, server: &TestCa) -> Self {
        self.submission = Some(SubmissionOpts {
            relay_port,
            cert: server.chain_path.clone(),
            key: server.key_path.clone(),
            client_ca: None,
            require_client_cert: false,
        });
        self
    }

    /// Dovecot's `hostname` (the submission and LMTP greetings, EHLO/LHLO replies and LMTP's
    /// `Received:` header), default `dovecot.postline.test`.
    pub fn hostname(mut self, name: &str) -> Self {
        self.hostname = name.into();
        self
    }

    /// Dovecot's LMTP service, delivering into Maildirs in the tempdir: on a Unix socket
    /// ([`Dovecot::lmtp_socket`], `base_dir/lmtp`, mode 0666) and on a free 127.0.0.1 port
    /// ([`Dovecot::lmtp_port`]). Only the [`user`](Self::user)s have a mailbox (a `passwd-file`
    /// userdb): RCPT for anyone else is refused with `550 5.1.1 <x> User doesn't exist: x`. A
    /// recipient's domain is ignored (`alice@any.example` is `alice`). Delivered messages are
    /// read back with [`Dovecot::maildir_messages`] / [`Dovecot::wait_maildir`].
    pub fn lmtp(mut self) -> Self {
        self.lmtp = true;
        self
    }

    /// A storage quota of `bytes` for `user`'s mailbox (Dovecot's quota plugin, `maildir`
    /// backend; the rule is the user's extra field `userdb_quota_rule=*:bytes=N` in the
    /// passwd-file: without the `userdb_` prefix Dovecot 2.3.19 drops the field from the
    /// userdb reply and the quota is never applied). A message that does not
    /// fit is refused by LMTP after the data, for that recipient alone:
    /// `552 5.2.2 <user@...> Quota exceeded (mailbox for user is full)`.
    pub fn quota(mut self, user: &str, bytes: u64) -> Self {
        self.quotas.push((user.into(), bytes));
        self
    }

    /// SASL EXTERNAL from a client certificate (needs [`submission`](Self::submission)):
    /// client certificates are requested and verified against `client_ca`'s CA
    /// (`ssl_verify_client_cert = yes`, `ssl_require_crl = no`), the certificate's CN is the user
    /// (`auth_ssl_username_from_cert`, `ssl_cert_username_field = commonName`), which must be one
    /// of the [`user`](Self::user)s; `external` is added to the mechanisms. A client without a
    /// certificate can still complete TLS (and use a password mechanism).
    pub fn external(mut self, client_ca: &TestCa) -> Self {
        self.submission_mut("external").client_ca = Some(client_ca.ca_path.clone());
        self
    }

    /// `auth_ssl_require_client_cert = yes` (with [`external`](Self::external)): every mechanism,
    /// PLAIN and LOGIN too, fails without a valid client certificate.
    pub fn require_client_cert(mut self) -> Self {
        self.submission_mut("require_client_cert")
            .require_client_cert = true;
        self
    }

    /// `auth_verbose`, `auth_debug` and `mail_debug` into the log ([`Dovecot::log`]).
    pub fn debug(mut self) -> Self {
        self.auth_debug = true;
        self
    }

    fn submission_mut(&mut self, what: &str) -> &mut SubmissionOpts {
        self.submission
            .as_mut()
            .unwrap_or_else(|| panic!("DovecotBuilder::{what} needs .submission(...) first"))
    }

    fn mechanisms_line(&self) -> String {
        let mut m: Vec<String> = self
            .mechanisms
            .split_whitespace()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let external = self
            .submission
            .as_ref()
            .is_some_and(|s| s.client_ca.is_some());
        if external && !m.iter().any(|x| x == "external") {
            m.push("external".into());
        }
        m.join(" ")
    }

    fn config(&self, dir: &Path, submission_port: Option<u16>, lmtp_port: Option<u16>) -> String {
        let d = dir.display();
        let mut c = format!(
            "# postline testkit: a private Dovecot (crates/testkit/src/dovecot.rs)\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             instance_name = postline-test-{pid}\n\
             listen = 127.0.0.1\n\
             default_internal_user = dovecot\n\
             default_login_user = dovenull\n\
             auth_mechanisms = {mechs}\n\
             disable_plaintext_auth = no\n\
             mail_location = maildir:~/Maildir\n\
             hostname = {host}\n\
             {userdb}\
             service auth {{\n  unix_listener auth-postfix {{\n    mode = 0666\n  }}\n}}\n",
            pid = std::process::id(),
            mechs = self.mechanisms_line(),
            host = self.hostname,
            userdb = if self.lmtp {
                format!(
                    "userdb {{\n  driver = passwd-file\n  args = {d}/users\n  \
                     default_fields = uid=nobody gid=nogroup home={d}/home/%u\n}}\n"
                )
            } else {
                format!("userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/home/%u\n}}\n")
            },
        );
        if self.auth_debug {
            c.push_str("auth_verbose = yes\nauth_debug = yes\nmail_debug = yes\n");
        }
        if !self.quotas.is_empty() {
            c.push_str("mail_plugins = quota\nplugin {\n  quota = maildir:User quota\n}\n");
        }
        let external = self.submission.as_ref().and_then(|s| s.client_ca.as_ref());
        let mechs = self.mechanisms_line();
        let password_mechs: Vec<&str> = mechs.split(' ').filter(|m| *m != "external").collect();
        c.push_str(&format!(
            "passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/passwd\n{}}}\n",
            if external.is_some() {
                format!("  mechanisms = {}\n", password_mechs.join(" "))
            } else {
                String::new()
            }
        ));
        if external.is_some() {
            c.push_str(&format!(
                "passdb {{\n  driver = passwd-file\n  args = {d}/passwd-external\n  mechanisms = external\n}}\n"
            ));
        }
        let mut protocols = Vec::new();
        if let Some(port) = lmtp_port {
            protocols.push("lmtp");
            c.push_str(&format!(
                "service lmtp {{\n  unix_listener lmtp {{\n    mode = 0666\n  }}\n  \
                 inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n\
                 protocol lmtp {{\n  auth_username_format = %Ln\n}}\n"
            ));
        }
        match (&self.submission, submission_port) {
            (Some(s), Some(port)) => {
                protocols.push("submission");
                c.push_str(&format!(
                    "ssl = required\n\
                     ssl_cert = <{cert}\n\
                     ssl_key = <{key}\n\
                     submission_relay_host = 127.0.0.1\n\
                     submission_relay_port = {relay}\n\
                     submission_relay_trusted = yes\n\
                     service submission-login {{\n  inet_listener submission {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n",
                    cert = s.cert.display(),
                    key = s.key.display(),
                    relay = s.relay_port,
                ));
                if let Some(ca) = &s.client_ca {
                    c.push_str(&format!(
                        "ssl_ca = <{}\n\
                         ssl_verify_client_cert = yes\n\
                         ssl_require_crl = no\n\
                         auth_ssl_username_from_cert = yes\n\
                         ssl_cert_username_field = commonName\n\
                         auth_ssl_require_client_cert = {}\n",
                        ca.display(),
                        if s.require_client_cert { "yes" } else { "no" }
                    ));
                }
            }
            _ => c.push_str("ssl = no\n"),
        }
        c.push_str(&format!("protocols = {}\n", protocols.join(" ")));
        c
    }

    /// Writes the config and the passwd-file into a fresh tempdir, starts Dovecot and waits (at
    /// most [`DOVECOT_READY_TIMEOUT`]) until the auth socket answers (and the submission and
    /// LMTP ports greet with 220). Panics with the log tail otherwise. A port taken by another
    /// process between choosing and binding is retried with another.
    pub fn start(self) -> Dovecot {
        assert!(
            Path::new(DOVECOT).exists(),
            "{}",
            hint_install_deps(&format!("{DOVECOT} is missing"))
        );
        let mut last = String::new();
        for _ in 0..4 {
            match self.try_start() {
                Ok(d) => return d,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    fn try_start(&self) -> Result<Dovecot, String> {
        let work = tempfile::Builder::new()
            .prefix("postline-dovecot-")
            .tempdir()
            .expect("tempdir");
        let dir = work.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
        fs::create_dir(dir.join("home")).expect("mkdir home");
        fs::set_permissions(dir.join("home"), fs::Permissions::from_mode(0o1777))
            .expect("chmod home");
        let mut passwd = String::new();
        let mut passwd_ext = String::new();
        let mut users = String::new();
        for (u, p) in &self.users {
            passwd.push_str(&format!("{u}:{{PLAIN}}{p}::::::\n"));
            passwd_ext.push_str(&format!("{u}:::::::nopassword=y\n"));
            let quota = self
                .quotas
                .iter()
                .find(|(q, _)| q == u)
                .map(|(_, bytes)| format!("userdb_quota_rule=*:bytes={bytes}"))
                .unwrap_or_default();
            users.push_str(&format!("{u}:::::::{quota}\n"));
        }
        for (name, text) in [
            ("passwd", &passwd),
            ("passwd-external", &passwd_ext),
            ("users", &users),
        ] {
            let path = dir.join(name);
            fs::write(&path, text).expect("write passwd-file");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod passwd");
        }
        let submission_port = self.submission.as_ref().map(|_| free_port());
        let lmtp_port = self.lmtp.then(free_port);
        let config_path = dir.join("dovecot.conf");
        let config = self.config(&dir, submission_port, lmtp_port);
        File::create(&config_path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write dovecot.conf");
        let stderr_path = dir.join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create stderr.log");
        let stdout = stderr.try_clone().expect("dup stderr.log");
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(TERM_ON_STDIN_EOF)
            .arg(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawn {DOVECOT}: {e}"))?;
        let mut dovecot = Dovecot {
            stdin: child.stdin.take(),
            child,
            auth_socket: dir.join("run/auth-postfix"),
            submission_port,
            lmtp_socket: self.lmtp.then(|| dir.join("run/lmtp")),
            lmtp_port,
            config_path,
            dir,
            started: Instant::now(),
            ready_after: Duration::ZERO,
            _work: work,
        };
        dovecot.ready_after = dovecot.wait_ready()?;
        Ok(dovecot)
    }
}

/// A running private Dovecot (see the module doc); stopped on drop, which waits (bounded) until
/// its master process is gone.
pub struct Dovecot {
    /// The `/bin/sh` watchdog running `dovecot -F`.
    child: Child,
    /// Dropping it makes the watchdog TERM dovecot.
    stdin: Option<ChildStdin>,
    auth_socket: PathBuf,
    submission_port: Option<u16>,
    lmtp_socket: Option<PathBuf>,
    lmtp_port: Option<u16>,
    config_path: PathBuf,
    dir: PathBuf,
    started: Instant,
    ready_after: Duration,
    _work: tempfile::TempDir,
}

impl Dovecot {
    /// Options; finish with [`DovecotBuilder::start`].
    pub fn builder() -> DovecotBuilder {
        DovecotBuilder::default()
    }

    /// The auth socket for `smtpd_sasl_type = dovecot` (`smtpd_sasl_path`): an absolute path,
    /// mode 0666, reachable by the `postfix` user.
    pub fn auth_socket(&self) -> &Path {
        &self.auth_socket
    }

    /// The submission service's port, if [`DovecotBuilder::submission`] was given.
    pub fn submission_port(&self) -> Option<u16> {
        self.submission_port
    }

    /// `127.0.0.1:<submission port>`; panics without [`DovecotBuilder::submission`].
    pub fn submission_addr(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.submission_port
                .expect("Dovecot was started without .submission(...)")
        )
    }

    /// The LMTP service's Unix socket (`base_dir/lmtp`, mode 0666), if
    /// [`DovecotBuilder::lmtp`] was given.
    pub fn lmtp_socket(&self) -> Option<&Path> {
        self.lmtp_socket.as_deref()
    }

    /// The LMTP service's 127.0.0.1 port, if [`DovecotBuilder::lmtp`] was given.
    pub fn lmtp_port(&self) -> Option<u16> {
        self.lmtp_port
    }

    /// The messages in `user`'s Maildir now (`new/` and `cur/`), oldest first (by modification
    /// time, then file name). Dovecot stores them with LF line ends and prepends `Return-Path:`,
    /// `Delivered-To:` and `Received:` to what the client sent. Empty when nothing was delivered
    /// (the Maildir is made on the first delivery). Files are owned by `nobody`; root reads them.
    pub fn maildir_messages(&self, user: &str) -> Vec<Vec<u8>> {
        let maildir = self.maildir(user);
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(maildir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let mtime = e.metadata().and_then(|m| m.modified()).ok();
                // A file moved from new/ to cur/ in between is read from where it went, or missed
                // until the next call.
                if let Ok(bytes) = fs::read(&path) {
                    found.push((mtime, e.file_name(), bytes));
                }
            }
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        found.into_iter().map(|(_, _, b)| b).collect()
    }

    /// Waits (at most `timeout`) until `user`'s Maildir holds at least `count` messages and
    /// returns them all ([`maildir_messages`](Self::maildir_messages)); panics with the log tail
    /// otherwise.
    pub fn wait_maildir(&self, user: &str, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.maildir_messages(user);
            if m.len() >= count {
                return m;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} message(s) in {} after {timeout:?}, wanted {count}; log tail:\n{}",
                    m.len(),
                    self.maildir(user).display(),
                    tail(&self.log(), 30)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// `user`'s Maildir: `home/USER/Maildir` in the tempdir (`mail_location = maildir:~/Maildir`).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user).join("Maildir")
    }

    /// The config file (`dovecot.conf` in the tempdir).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The tempdir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long start-up took (spawn to ready).
    pub fn startup_time(&self) -> Duration {
        self.ready_after
    }

    /// Dovecot's log so far (`log_path`), then anything it wrote to stdout/stderr.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default();
        let e = fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        if !e.is_empty() {
            s.push_str("\n--- stdout/stderr ---\n");
            s.push_str(&e);
        }
        s
    }

    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join("run/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn wait_ready(&self) -> Result<Duration, String> {
        let deadline = self.started + DOVECOT_READY_TIMEOUT;
        let fail = |what: String| -> Result<Duration, String> {
            Err(format!(
                "dovecot -c {}: {what}; log tail:\n{}",
                self.config_path.display(),
                tail(&self.log(), 30)
            ))
        };
        // try_wait needs &mut; /proc tells as well (an exited child is a zombie until reaped).
        let child_exited = |c: &Child| !pid_alive(c.id());
        // The auth socket greets with `VERSION\t1\t2` … `DONE` on connect.
        loop {
            if child_exited(&self.child) {
                return fail("exited during start-up".into());
            }
            if let Ok(s) = UnixStream::connect(&self.auth_socket) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                match BufReader::new(&s).read_line(&mut line) {
                    Ok(_) if line.starts_with("VERSION\t") => break,
                    Ok(_) => return fail(format!("auth socket said {line:?}")),
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return fail(format!(
                    "auth socket {} not answering after {DOVECOT_READY_TIMEOUT:?}",
                    self.auth_socket.display()
                ));
            }
            thread::sleep(POLL);
        }
        for port in [self.submission_port, self.lmtp_port].into_iter().flatten() {
            loop {
                if child_exited(&self.child) {
                    return fail("exited during start-up".into());
                }
                if let Ok(s) = TcpStream::connect_timeout(
                    &([127, 0, 0, 1], port).into(),
                    Duration::from_secs(1),
                ) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                    let mut r = BufReader::new(&s);
                    let mut line = String::new();
                    if r.read_line(&mut line).is_ok() && line.starts_with("220") {
                        let _ = (&s).write_all(b"QUIT\r\n");
                        let _ = r.read_line(&mut line);
                        break;
                    }
                    return fail(format!("port {port} greeted {line:?}"));
                }
                if Instant::now() >= deadline {
                    return fail(format!(
                        "port {port} not accepting after {DOVECOT_READY_TIMEOUT:?}"
                    ));
                }
                thread::sleep(POLL);
            }
        }
        Ok(self.started.elapsed())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let master = self.master_pid();
        drop(self.stdin.take());
        if !wait_bounded(&mut self.child, Duration::from_secs(15)) {
            if let Some(pid) = master {
                signal_pid(pid, "KILL");
            }
            kill_and_wait(&mut self.child);
        }
        if let Some(pid) = master {
            if !wait_pid_gone(pid, Duration::from_secs(10)) {
                signal_pid(pid, "KILL");
                wait_pid_gone(pid, Duration::from_secs(5));
            }
        }
    }
}
