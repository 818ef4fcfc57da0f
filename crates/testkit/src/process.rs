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
