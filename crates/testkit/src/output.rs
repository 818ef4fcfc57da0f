//! What one run of the `postline` binary printed, and its exit code checked.

use std::borrow::BorrowMut;
use std::process::Output;

use assert_cmd::Command;

/// The run's standard output, lossy UTF-8.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The run's standard error, lossy UTF-8.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics with stdout and stderr unless the exit code is `code`.
#[track_caller]
pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit code {code}, got {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Runs `cmd` (a [`Command`], `&mut Command` or [`SendCmd`](crate::SendCmd)) to the end,
/// within its time bound, and panics with its output unless it exited with `code`.
#[track_caller]
pub fn run_code(mut cmd: impl BorrowMut<Command>, code: i32) -> Output {
    let o = cmd
        .borrow_mut()
        .output()
        .expect("run postline (within the time bound)");
    expect_code(&o, code);
    o
}
