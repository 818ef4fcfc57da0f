//! [`Sandbox`]: a tempdir in which the `postline` binary runs with its own configuration file,
//! `HOME`, XDG directories and spool, so that the developer's own never leak in.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use assert_cmd::Command;
use serde_json::Value;

use crate::{run_code, stdout, SendCmd};

/// The default bound on one run of the binary (see [`Sandbox::run_timeout`]).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A tempdir holding the configuration file (absent until [`config`](Sandbox::config) writes
/// it), `HOME`, `XDG_CONFIG_HOME`, `XDG_STATE_HOME`, the spool of [`queue`](Sandbox::queue), and
/// any input files a test needs.
///
/// Every `postline` it runs gets `POSTLINE_CONFIG` (`config.toml`), `HOME` (`home/`),
/// `XDG_CONFIG_HOME` (`xdg-config/`) and `XDG_STATE_HOME` (`xdg-state/`) pointing into it, and
/// no `POSTLINE_ACCOUNT`, `POSTLINE_QUEUE_DIR` or `POSTLINE_NO_QUEUE` from the test's own
/// environment.
pub struct Sandbox {
    dir: tempfile::TempDir,
    run_timeout: Duration,
}

impl Sandbox {
    /// A fresh sandbox, runs bounded by [`DEFAULT_RUN_TIMEOUT`].
    pub fn new() -> Sandbox {
        Self::with_prefix("postline-cli-")
    }

    /// A fresh sandbox whose tempdir's name starts with `prefix`.
    pub fn with_prefix(prefix: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        for d in ["home", "xdg-config", "xdg-state"] {
            fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        Sandbox {
            dir,
            run_timeout: DEFAULT_RUN_TIMEOUT,
        }
    }

    /// Bounds each run of the commands it makes (not of [`spawn_queue`](Self::spawn_queue)'s)
    /// by `timeout` instead.
    pub fn run_timeout(mut self, timeout: Duration) -> Sandbox {
        self.run_timeout = timeout;
        self
    }

    /// The tempdir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the tempdir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where `POSTLINE_CONFIG` points: absent until [`Sandbox::config`] writes it.
    pub fn config_path(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// Writes the configuration file; its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let p = self.config_path();
        fs::write(&p, text).expect("write config");
        p
    }

    /// Writes `name` in the tempdir; its path.
    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, data).expect("write file");
        p
    }

    /// The spool directory of [`queue`](Self::queue) (`spool/`, made by the binary).
    pub fn spool(&self) -> PathBuf {
        self.path("spool")
    }

    /// [`spool`](Self::spool) as a string.
    pub fn spool_str(&self) -> String {
        self.spool().to_string_lossy().into_owned()
    }

    /// Gives `cmd` the sandbox's environment.
    pub fn env(&self, cmd: &mut std::process::Command) {
        cmd.env("POSTLINE_CONFIG", self.config_path())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("XDG_STATE_HOME", self.path("xdg-state"))
            .env_remove("POSTLINE_ACCOUNT")
            .env_remove("POSTLINE_QUEUE_DIR")
            .env_remove("POSTLINE_QUEUE_URL")
            .env_remove("PGPASSWORD")
            .env_remove("POSTLINE_NO_QUEUE");
    }

    /// `postline` with the sandbox's environment, as a std command without a time bound (to
    /// spawn).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::cargo_bin("postline").expect("postline binary");
        self.env(&mut c);
        c
    }

    /// `postline ARGS`, bounded in time.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::from_std(self.std_cmd());
        c.timeout(self.run_timeout).args(args);
        c
    }

    /// `postline send --server SERVER --tls none --timeout 5`, to add to.
    pub fn send(&self, server: &str) -> SendCmd {
        self.send_bare().server(server).tls("none").timeout(5)
    }

    /// `postline send` and nothing else, to add to.
    pub fn send_bare(&self) -> SendCmd {
        SendCmd::new(self.cmd(&["send"]))
    }

    /// `postline queue SUB --queue-dir SPOOL ARGS`.
    pub fn queue(&self, sub: &str, args: &[&str]) -> Command {
        let spool = self.spool_str();
        let mut all = vec!["queue", sub, "--queue-dir", &spool];
        all.extend(args);
        self.cmd(&all)
    }

    /// A child running `postline queue SUB --queue-dir SPOOL EXTRA`, output discarded.
    pub fn spawn_queue(&self, sub: &str, extra: &[&str]) -> Child {
        let mut c = self.std_cmd();
        c.args(["queue", sub, "--queue-dir"])
            .arg(self.spool())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().expect("spawn postline")
    }

    /// The queue as `queue list --json` reports it.
    pub fn queue_list(&self) -> Vec<Value> {
        let o = run_code(&mut self.queue("list", &["--json"]), 0);
        match serde_json::from_str(stdout(&o).trim()) {
            Ok(Value::Array(a)) => a,
            other => panic!("queue list --json: {other:?}:\n{}", stdout(&o)),
        }
    }

    /// The binary run through a `sendmail` symlink in the sandbox (`bin/sendmail`), bounded in
    /// time.
    pub fn sendmail_symlink(&self) -> Command {
        let link = self.path("bin/sendmail");
        if !link.exists() {
            fs::create_dir_all(self.path("bin")).expect("bin dir");
            std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("postline"), &link)
                .expect("symlink");
        }
        let mut std = std::process::Command::new(&link);
        self.env(&mut std);
        let mut c = Command::from_std(std);
        c.timeout(self.run_timeout);
        c
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}
