//! [`Postfix`]: a private, real Postfix instance (Debian's `postfix` 3.7) on 127.0.0.1, from its
//! own config directory in a tempdir, delivering every recipient into one Maildir the test reads.
//!
//! How it runs (facts found on Debian 12, Postfix 3.7.11, as root; nothing under /etc is touched):
//! - Layout in the tempdir: `etc/` (`main.cf`; `master.cf` copied from `/etc/postfix/master.cf`,
//!   or `/usr/share/postfix/master.cf.dist`), `queue/` (`queue_directory`), `data/`
//!   (`data_directory`), `log/maillog` (`maillog_file`, its directory added to
//!   `maillog_file_prefixes`), `mail/inbox/` (the Maildir).
//! - The permission dance: Postfix's daemons run as `postfix`, so the tempdir (0700 from
//!   mkdtemp) is made `0755`; `data/` and `mail/` are chowned to `postfix:postfix`; the queue
//!   directory (root-owned) is left to Postfix: `postfix start` runs `postfix-script
//!   check-fatal`, which runs `post-install create-missing` and creates the queue's
//!   subdirectories (owned by `postfix`; `maildrop`/`public` group `postdrop`). No
//!   `postfix set-permissions` or `check` is needed.
//!   `postfix -c DIR` as root needs no `alternate_config_directories` in the default main.cf
//!   (which does not even exist here: Debian's "No configuration" install leaves /etc/postfix
//!   without main.cf).
//! - Listeners: the default `smtp` inet service is removed (`postconf -MX smtp/inet`) and each
//!   listener is `127.0.0.1:PORT inet n - n - - smtpd -o ...`; chroot is off for every service
//!   (`postconf -F '*/*/chroot = n'`), so `smtpd_sasl_path` can be an absolute path outside the
//!   queue directory (a relative one would be relative to the queue directory).
//! - Delivery: `virtual_mailbox_domains = static:all` (every domain is ours),
//!   `virtual_mailbox_maps = static:inbox/` (trailing slash: Maildir), `virtual_uid_maps` /
//!   `virtual_gid_maps` = the `postfix` user: every recipient lands in `mail/inbox/new/`.
//!   Postfix adds `Return-Path`, `Delivered-To` and `Received` headers and may rewrite headers,
//!   so compare bodies; byte-exact checks belong to aiosmtpd.
//! - `postfix start` returns once the master has initialised (about 1–2 s); `postfix stop` returns
//!   before the master has exited, so drop waits for its pid (`queue/pid/master.pid`) to go, with
//!   `postfix abort` and SIGKILL as fallbacks. A `/bin/sh` watchdog child runs `postfix -c DIR
//!   stop` when the test's end of its stdin pipe closes, so a test process that dies without
//!   running destructors does not leave the instance running.
//! - With `smtpd_tls_req_ccert = yes` (only honoured at `smtpd_tls_security_level = encrypt`) a
//!   client without a certificate gets `421 4.7.1` after STARTTLS (the log says `abort: TLS from
//!   …: No client certificate presented`); with `may`, relaying is refused per recipient instead
//!   (`554 5.7.1 <rcpt>: Recipient address rejected: Access denied`) unless a trusted client
//!   certificate was presented (`permit_tls_all_clientcerts`).
//! - Wrong SASL password through Dovecot: `535 5.7.8 Error: authentication failed: (reason
//!   unavailable)`; an unauthenticated client's RCPT: `554 5.7.1 … Access denied`.
//! - EHLO advertises PIPELINING, SIZE 10240000, VRFY, ETRN, STARTTLS (where offered),
//!   AUTH (with SASL, after STARTTLS when `smtpd_tls_auth_only`/encrypt), ENHANCEDSTATUSCODES,
//!   8BITMIME, DSN, SMTPUTF8, CHUNKING.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::process::{
    hint_install_deps, kill_and_wait, run_bounded, signal_pid, tail, wait_bounded, wait_pid_gone,
    POLL,
};
use crate::{free_port, Dovecot, TestCa};

/// How long [`PostfixBuilder::start`] waits for `postfix start` and then for every listener to
/// greet.
pub const POSTFIX_READY_TIMEOUT: Duration = Duration::from_secs(30);

const POSTFIX: &str = "/usr/sbin/postfix";
const POSTCONF: &str = "/usr/sbin/postconf";

/// `smtpd_tls_security_level` of the submission listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsLevel {
    /// STARTTLS offered, not required.
    May,
    /// STARTTLS required before MAIL (`530 5.7.0 Must issue a STARTTLS command first`).
    Encrypt,
}

impl TlsLevel {
    fn as_str(self) -> &'static str {
        match self {
            TlsLevel::May => "may",
            TlsLevel::Encrypt => "encrypt",
        }
    }
}

/// Options for [`Postfix`].
#[derive(Clone, Debug)]
pub struct PostfixBuilder {
    hostname: String,
    tls: Option<(PathBuf, PathBuf)>,
    submission: Option<TlsLevel>,
    smtps: bool,
    sasl_path: Option<PathBuf>,
    tls_auth_only: bool,
    client_ca: Option<PathBuf>,
    strict_helo: bool,
    extra: Vec<String>,
}

impl Default for PostfixBuilder {
    fn default() -> Self {
        PostfixBuilder {
            hostname: "postfix.postline.test".into(),
            tls: None,
            submission: None,
            smtps: false,
            sasl_path: None,
            tls_auth_only: false,
            client_ca: None,
            strict_helo: false,
            extra: Vec::new(),
        }
    }
}

impl PostfixBuilder {
    /// `myhostname` (greeting, EHLO reply, Received headers); default `postfix.postline.test`.
    pub fn hostname(mut self, name: &str) -> Self {
        self.hostname = name.into();
        self
    }

    /// The server certificate chain and key of `ca` for the TLS listeners
    /// (`smtpd_tls_cert_file`, `smtpd_tls_key_file`). Needed by
    /// [`submission`](Self::submission) and [`smtps`](Self::smtps).
    pub fn tls(mut self, ca: &TestCa) -> Self {
        self.tls = Some((ca.chain_path.clone(), ca.key_path.clone()));
        self
    }

    /// A submission listener with STARTTLS on its own port ([`Postfix::submission_port`]).
    pub fn submission(mut self, level: TlsLevel) -> Self {
        self.submission = Some(level);
        self
    }

    /// A wrapper-mode (implicit TLS, "465") listener on its own port ([`Postfix::smtps_port`]).
    pub fn smtps(mut self) -> Self {
        self.smtps = true;
        self
    }

    /// SASL through `dovecot`'s auth socket (`smtpd_sasl_auth_enable = yes`, `smtpd_sasl_type =
    /// dovecot`, `smtpd_sasl_path` = [`Dovecot::auth_socket`]); relaying (= any RCPT) is then
    /// only for authenticated clients (`smtpd_relay_restrictions = permit_sasl_authenticated,
    /// [permit_tls_all_clientcerts,] reject`).
    pub fn sasl(self, dovecot: &Dovecot) -> Self {
        self.sasl_path(dovecot.auth_socket())
    }

    /// As [`sasl`](Self::sasl), with an explicit socket path.
    pub fn sasl_path(mut self, path: impl AsRef<Path>) -> Self {
        self.sasl_path = Some(path.as_ref().into());
        self
    }

    /// `smtpd_tls_auth_only = yes`: AUTH only offered and accepted under TLS.
    pub fn tls_auth_only(mut self) -> Self {
        self.tls_auth_only = true;
        self
    }

    /// Client certificates signed by `client_ca` (its [`TestCa::ca_path`]) are asked for
    /// (`smtpd_tls_ask_ccert = yes`, `smtpd_tls_CAfile`) and a verified one permits relaying
    /// (`permit_tls_all_clientcerts`); without one (and without SASL), every RCPT is refused with
    /// 554. On listeners at `encrypt` (submission with [`TlsLevel::Encrypt`], smtps) a
    /// certificate is required for TLS itself (`smtpd_tls_req_ccert = yes`): no certificate → 421
    /// after the handshake.
    pub fn client_cert_required(mut self, client_ca: &TestCa) -> Self {
        self.client_ca = Some(client_ca.ca_path.clone());
        self
    }

    /// `smtpd_helo_required = yes`, `smtpd_helo_restrictions = reject_non_fqdn_helo_hostname,
    /// reject_invalid_helo_hostname`, and `smtpd_delay_reject = no` so the EHLO/HELO reply itself
    /// is the refusal: `localhost`, `a..b.example.test`, `-x.example.test` and
    /// `bad_name!.example.test` get `504 5.5.2 <name>: Helo command rejected: need
    /// fully-qualified hostname`, `[999.0.0.1]` gets `501 5.5.2 <[999.0.0.1]>: Helo command
    /// rejected: invalid ip address`; MAIL without an accepted EHLO gets `503 5.5.1 Error: send
    /// HELO/EHLO first`.
    pub fn strict_helo(mut self) -> Self {
        self.strict_helo = true;
        self
    }

    /// An extra `main.cf` line (`name = value`), written last (so it overrides).
    pub fn main_cf(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    fn main_cf_text(&self, dir: &Path, uid: u32, gid: u32) -> String {
        let d = dir.display();
        let mut lines = vec![
            "# postline testkit: a private Postfix (crates/testkit/src/postfix.rs)".to_string(),
            "compatibility_level = 3.6".into(),
            format!("queue_directory = {d}/queue"),
            format!("data_directory = {d}/data"),
            "mail_owner = postfix".into(),
            "setgid_group = postdrop".into(),
            "inet_interfaces = loopback-only".into(),
            "inet_protocols = ipv4".into(),
            format!("myhostname = {}", self.hostname),
            "mydestination =".into(),
            "mynetworks = 127.0.0.0/8".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            format!("maillog_file_prefixes = /var, /dev/stdout, {d}"),
            format!("maillog_file = {d}/log/maillog"),
            "smtpd_banner = $myhostname ESMTP".into(),
            "virtual_mailbox_domains = static:all".into(),
            format!("virtual_mailbox_base = {d}/mail"),
            "virtual_mailbox_maps = static:inbox/".into(),
            format!("virtual_uid_maps = static:{uid}"),
            format!("virtual_gid_maps = static:{gid}"),
            "smtpd_tls_security_level = none".into(),
        ];
        if let Some((cert, key)) = &self.tls {
            lines.push(format!("smtpd_tls_cert_file = {}", cert.display()));
            lines.push(format!("smtpd_tls_key_file = {}", key.display()));
        }
        let mut relay = Vec::new();
        if let Some(path) = &self.sasl_path {
            lines.push("smtpd_sasl_auth_enable = yes".into());
            lines.push("smtpd_sasl_type = dovecot".into());
            lines.push(format!("smtpd_sasl_path = {}", path.display()));
            relay.push("permit_sasl_authenticated");
        }
        if self.tls_auth_only {
            lines.push("smtpd_tls_auth_only = yes".into());
        }
        if let Some(ca) = &self.client_ca {
            lines.push("smtpd_tls_ask_ccert = yes".into());
            lines.push(format!("smtpd_tls_CAfile = {}", ca.display()));
            relay.push("permit_tls_all_clientcerts");
        }
        if relay.is_empty() {
            relay.push("permit_mynetworks");
        }
        relay.push("reject");
        lines.push(format!("smtpd_relay_restrictions = {}", relay.join(", ")));
        if self.strict_helo {
            lines.push("smtpd_helo_required = yes".into());
            lines.push(
                "smtpd_helo_restrictions = reject_non_fqdn_helo_hostname, reject_invalid_helo_hostname"
                    .into(),
            );
            lines.push("smtpd_delay_reject = no".into());
        }
        lines.extend(self.extra.iter().cloned());
        lines.push(String::new());
        lines.join("\n")
    }

    /// Writes the instance into a fresh tempdir, runs `postfix -c DIR start` and waits (at most
    /// [`POSTFIX_READY_TIMEOUT`]) until every listener greets with 220. Panics with the output and
    /// the maillog tail otherwise. Ports taken by another process between choosing and binding
    /// are retried with others.
    pub fn start(self) -> Postfix {
        for tool in [POSTFIX, POSTCONF] {
            assert!(
                Path::new(tool).exists(),
                "{}",
                hint_install_deps(&format!("{tool} is missing"))
            );
        }
        if self.submission.is_some() || self.smtps {
            assert!(
                self.tls.is_some(),
                "PostfixBuilder: submission/smtps need .tls(&ca)"
            );
        }
        let mut last = String::new();
        for _ in 0..4 {
            match self.try_start() {
                Ok(p) => return p,
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    fn try_start(&self) -> Result<Postfix, String> {
        let started = Instant::now();
        let work = tempfile::Builder::new()
            .prefix("postline-postfix-")
            .tempdir()
            .expect("tempdir");
        let dir = work.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
        let (uid, gid) = (id_of("-u"), id_of("-g"));
        for sub in ["etc", "queue", "data", "log", "mail"] {
            fs::create_dir(dir.join(sub)).expect("mkdir");
        }
        for sub in ["data", "mail"] {
            std::os::unix::fs::chown(dir.join(sub), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {sub} to postfix: {e} (run the tests as root)"));
        }
        let etc = dir.join("etc");
        let master_src = [
            "/etc/postfix/master.cf",
            "/usr/share/postfix/master.cf.dist",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("{}", hint_install_deps("no master.cf to copy")));
        fs::copy(master_src, etc.join("master.cf")).expect("copy master.cf");
        File::create(etc.join("main.cf"))
            .and_then(|mut f| f.write_all(self.main_cf_text(&dir, uid, gid).as_bytes()))
            .expect("write main.cf");

        let port = free_port();
        let submission_port = self.submission.map(|_| free_port());
        let smtps_port = self.smtps.then(free_port);
        let ccert = self.client_ca.is_some();
        let mut services = vec![(port, "-o smtpd_tls_security_level=none".to_string())];
        if let (Some(p), Some(level)) = (submission_port, self.submission) {
            let mut o = format!("-o smtpd_tls_security_level={}", level.as_str());
            if ccert && level == TlsLevel::Encrypt {
                o.push_str(" -o smtpd_tls_req_ccert=yes");
            }
            services.push((p, o));
        }
        if let Some(p) = smtps_port {
            let mut o =
                "-o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt".to_string();
            if ccert {
                o.push_str(" -o smtpd_tls_req_ccert=yes");
            }
            services.push((p, o));
        }
        let postconf = |args: &[String]| {
            let (ok, out) = run_bounded(
                Command::new(POSTCONF).arg("-c").arg(&etc).args(args),
                Duration::from_secs(30),
            );
            assert!(ok, "postconf -c {} {args:?}: {out}", etc.display());
        };
        postconf(&["-MX".into(), "smtp/inet".into()]);
        for (p, opts) in &services {
            postconf(&[
                "-M".into(),
                format!("127.0.0.1:{p}/inet = 127.0.0.1:{p} inet n - n - - smtpd {opts}"),
            ]);
        }
        postconf(&["-F".into(), "*/*/chroot = n".into()]);

        // The watchdog first, so that even a half-started instance is stopped.
        let mut watchdog = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"cat >/dev/null 2>&1; exec "$0" -c "$1" stop"#)
            .arg(POSTFIX)
            .arg(&etc)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the postfix watchdog");
        let mut pf = Postfix {
            stdin: watchdog.stdin.take(),
            watchdog,
            dir: dir.clone(),
            port,
            submission_port,
            smtps_port,
            ready_after: Duration::ZERO,
            _work: work,
        };
        let (ok, out) = run_bounded(
            Command::new(POSTFIX).arg("-c").arg(&etc).arg("start"),
            POSTFIX_READY_TIMEOUT,
        );
        if !ok {
            return Err(format!(
                "postfix -c {} start failed: {out}\nmaillog tail:\n{}",
                etc.display(),
                tail(&pf.maillog(), 20)
            ));
        }
        let deadline = started + POSTFIX_READY_TIMEOUT;
        for (p, opts) in &services {
            if opts.contains("wrappermode") {
                wait_accepting(*p, deadline)
            } else {
                wait_greeting(*p, deadline)
            }
            .map_err(|e| {
                format!(
                    "postfix -c {}: port {p}: {e}\nmaillog tail:\n{}",
                    etc.display(),
                    tail(&pf.maillog(), 20)
                )
            })?;
        }
        pf.ready_after = started.elapsed();
        Ok(pf)
    }
}

fn id_of(flag: &str) -> u32 {
    let (ok, out) = run_bounded(
        Command::new("id").arg(flag).arg("postfix"),
        Duration::from_secs(10),
    );
    assert!(
        ok,
        "{}",
        hint_install_deps(&format!("no `postfix` user ({out})"))
    );
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {flag} postfix: {out:?}"))
}

fn wait_accepting(port: u16, deadline: Instant) -> Result<(), String> {
    loop {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("not accepting connections".into());
        }
        thread::sleep(POLL);
    }
}

fn wait_greeting(port: u16, deadline: Instant) -> Result<(), String> {
    loop {
        if let Ok(s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
            let mut r = BufReader::new(&s);
            let mut line = String::new();
            if r.read_line(&mut line).is_ok() && line.starts_with("220") {
                let _ = (&s).write_all(b"QUIT\r\n");
                let _ = r.read_line(&mut line);
                return Ok(());
            }
            return Err(format!("greeting {line:?} is not 220"));
        }
        if Instant::now() >= deadline {
            return Err("not accepting connections".into());
        }
        thread::sleep(POLL);
    }
}

/// A running private Postfix (see the module doc); stopped on drop (bounded; `postfix stop`,
/// then `postfix abort` and SIGKILL of the master if it lingers).
pub struct Postfix {
    /// `sh -c 'cat; postfix -c DIR stop'`: the safety net if the test process dies.
    watchdog: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
    port: u16,
    submission_port: Option<u16>,
    smtps_port: Option<u16>,
    ready_after: Duration,
    _work: tempfile::TempDir,
}

impl Postfix {
    /// Options; finish with [`PostfixBuilder::start`].
    pub fn builder() -> PostfixBuilder {
        PostfixBuilder::default()
    }

    /// The plain SMTP listener's port (no STARTTLS).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The submission (STARTTLS) listener's port, if [`PostfixBuilder::submission`] was given.
    pub fn submission_port(&self) -> Option<u16> {
        self.submission_port
    }

    /// The wrapper-mode (implicit TLS) listener's port, if [`PostfixBuilder::smtps`] was given.
    pub fn smtps_port(&self) -> Option<u16> {
        self.smtps_port
    }

    /// The config directory (`postfix -c` / `postconf -c` take it).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// The Maildir every recipient is delivered to.
    pub fn maildir(&self) -> PathBuf {
        self.dir.join("mail/inbox")
    }

    /// How long start-up took (writing the config to every listener greeting).
    pub fn startup_time(&self) -> Duration {
        self.ready_after
    }

    /// The maillog so far.
    pub fn maillog(&self) -> String {
        fs::read_to_string(self.dir.join("log/maillog")).unwrap_or_default()
    }

    /// The delivered messages so far (Maildir `new/` and `cur/`), oldest first, as bytes (LF line
    /// endings, with Postfix's added headers).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<(SystemTime, String, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(rd) = fs::read_dir(self.maildir().join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let path = e.path();
                let mtime = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((mtime, e.file_name().to_string_lossy().into_owned(), path));
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, _, p)| fs::read(p).ok())
            .collect()
    }

    /// Waits (polling, at most `timeout`) until at least `n` messages are delivered, then returns
    /// them all. Panics on timeout, with the maillog tail.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            if Instant::now() >= deadline {
                panic!(
                    "postfix: {} of {n} message(s) delivered after {timeout:?}; maillog tail:\n{}",
                    m.len(),
                    tail(&self.maillog(), 30)
                );
            }
            thread::sleep(POLL);
        }
    }

    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let master = self.master_pid();
        let etc = self.config_dir();
        let t = Duration::from_secs(30);
        let _ = run_bounded(Command::new(POSTFIX).arg("-c").arg(&etc).arg("stop"), t);
        if let Some(pid) = master {
            if !wait_pid_gone(pid, Duration::from_secs(15)) {
                let _ = run_bounded(Command::new(POSTFIX).arg("-c").arg(&etc).arg("abort"), t);
                if !wait_pid_gone(pid, Duration::from_secs(5)) {
                    signal_pid(pid, "KILL");
                    wait_pid_gone(pid, Duration::from_secs(5));
                }
            }
        }
        // The watchdog is not needed any more: kill it (its `cat` exits at EOF below).
        let _ = self.watchdog.kill();
        drop(self.stdin.take());
        if !wait_bounded(&mut self.watchdog, Duration::from_secs(10)) {
            kill_and_wait(&mut self.watchdog);
        }
    }
}
