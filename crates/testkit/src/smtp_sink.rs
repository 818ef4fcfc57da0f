//! [`SmtpSink`]: Postfix's `smtp-sink` on 127.0.0.1, stopped when dropped.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::free_port;
use crate::process::{hint_install_deps, kill_and_wait, wait_bounded, POLL, TERM_ON_STDIN_EOF};

/// How long [`SmtpSink::start`] waits for the port to accept and greet.
pub const SINK_READY_TIMEOUT: Duration = Duration::from_secs(10);

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// Postfix's `smtp-sink -u nobody [flags] 127.0.0.1:PORT BACKLOG`, killed on drop.
///
/// [`SmtpSink::start`] makes one probe session (connect, read the `220` greeting, `QUIT`), so
/// with `-n N` (exit after N sessions) the probe counts as one, and `-c` counters include it.
pub struct SmtpSink {
    /// The `/bin/sh` watchdog (see `TERM_ON_STDIN_EOF`); it exits when smtp-sink does.
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
    /// [`SINK_READY_TIMEOUT`]) until a connection is accepted and greeted (`220`, or the
    /// refusal `-f CONNECT` / `-r CONNECT` asks for).
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
            .arg(TERM_ON_STDIN_EOF)
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
                    Ok(_) if line.starts_with(expected_greeting(flags)) => {
                        let _ = (&s).write_all(b"QUIT\r\n");
                        let mut rest = String::new();
                        let _ = r.read_line(&mut rest);
                        let _ = s.shutdown(Shutdown::Both);
                        return Ok(sink);
                    }
                    Ok(_) => {
                        return Err(format!(
                            "port {port}: greeting {line:?} is not {}; {}",
                            expected_greeting(flags),
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

/// How the sink greets: 220, or the refusal `-f CONNECT` (5xx) or `-r CONNECT` (4xx) asks for.
fn expected_greeting(flags: &[&str]) -> &'static str {
    let refuses = |flag: &str| {
        flags
            .windows(2)
            .any(|w| w[0] == flag && w[1].split(',').any(|c| c.eq_ignore_ascii_case("CONNECT")))
    };
    if refuses("-f") {
        "5"
    } else if refuses("-r") {
        "4"
    } else {
        "220"
    }
}
