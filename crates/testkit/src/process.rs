//! Child processes of the test servers: bounded waits, and what to say when a server is not
//! installed.

use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// How often the waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(20);

pub(crate) fn hint_install_deps(what: &str) -> String {
    format!("{what}: run `.ci/install-deps` (as root) from the repository root first")
}

/// Waits (at most `timeout`) for `child` to exit; whether it did.
pub(crate) fn wait_bounded(child: &mut Child, timeout: Duration) -> bool {
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
pub(crate) fn kill_and_wait(child: &mut Child) {
    let _ = child.kill();
    wait_bounded(child, Duration::from_secs(10));
}

/// `sh -c TERM_ON_STDIN_EOF PROGRAM ARGS...`: runs PROGRAM (stdin from /dev/null) and, in the
/// background, waits for EOF on the script's stdin, then sends PROGRAM SIGTERM; the shell exits
/// with PROGRAM's status. Spawned with a piped stdin that the harness keeps open, the server
/// stops when the harness drops the pipe, and also when the test process dies without running
/// destructors.
pub(crate) const TERM_ON_STDIN_EOF: &str = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- &
p=$!
{ cat <&3 >/dev/null 2>&1; kill -TERM "$p" 2>/dev/null; } &
exec 3<&-
wait "$p""#;

/// Whether a process with this pid exists (and is not a zombie).
pub(crate) fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesised command name, is the state; Z = zombie.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Waits (at most `timeout`) for `pid` to be gone; whether it is.
pub(crate) fn wait_pid_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}

/// Sends `signal` (e.g. "TERM", "KILL") to `pid` with kill(1).
pub(crate) fn signal_pid(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Runs `cmd` to completion, at most `timeout`; (exit status success, stdout + stderr).
/// Killed on timeout (reported as a failure).
pub(crate) fn run_bounded(cmd: &mut std::process::Command, timeout: Duration) -> (bool, String) {
    use std::process::Stdio;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return (false, format!("tempdir: {e}")),
    };
    let out_path = dir.path().join("out");
    let out = match std::fs::File::create(&out_path) {
        Ok(f) => f,
        Err(e) => return (false, format!("create {}: {e}", out_path.display())),
    };
    let err = match out.try_clone() {
        Ok(f) => f,
        Err(e) => return (false, format!("dup: {e}")),
    };
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (false, format!("spawn {cmd:?}: {e}")),
    };
    let done = wait_bounded(&mut child, timeout);
    if !done {
        kill_and_wait(&mut child);
    }
    let ok = done && matches!(child.try_wait(), Ok(Some(s)) if s.success());
    let mut text = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !done {
        text.push_str(&format!("\n(killed after {timeout:?})"));
    }
    (ok, text)
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
