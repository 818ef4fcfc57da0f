//! Writing to stdout and stderr without panicking, and outside text made safe for a terminal.
//!
//! `println!` and `eprintln!` panic when their stream is closed (`postline ... | head -1`
//! gives EPIPE), which would end the process with exit 101 in the middle of a delivery,
//! before its result is recorded. The macros here write the same bytes; when a write fails,
//! the failure is remembered ([`stdout_failed`], [`stderr_failed`]), later writes to that
//! stream are skipped, and the program goes on. A failed write never changes an exit code.
//!
//! - [`out!`] / [`outln!`]: like `print!` / `println!`.
//! - [`err!`] / [`errln!`]: like `eprint!` / `eprintln!`; each call is one write, so lines
//!   from threads (or other processes on the same terminal) do not interleave mid-line.
//! - [`write_stdout`]: raw bytes (a generated completion script, the man page).
//! - [`escape`]: text from a server (or a certificate, or any other outside source) with its
//!   control characters written as escapes, so that no ESC sequence, CR or bidi override
//!   reaches the terminal; [`json_safe`] does the same for serialized JSON.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
static STDERR_FAILED: AtomicBool = AtomicBool::new(false);

/// Which standard stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn failed_flag(self) -> &'static AtomicBool {
        match self {
            Stream::Stdout => &STDOUT_FAILED,
            Stream::Stderr => &STDERR_FAILED,
        }
    }
}

/// Whether a write to stdout has failed (it is closed, or full); later writes were skipped.
#[allow(dead_code)]
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// Whether a write to stderr has failed; later writes were skipped.
#[allow(dead_code)]
pub fn stderr_failed() -> bool {
    STDERR_FAILED.load(Ordering::Relaxed)
}

/// Writes `bytes` to `stream` in one `write_all`; a failure is remembered, never raised.
/// Returns whether the bytes were written.
pub fn write_bytes(stream: Stream, bytes: &[u8]) -> bool {
    let flag = stream.failed_flag();
    if flag.load(Ordering::Relaxed) {
        return false;
    }
    let result = match stream {
        Stream::Stdout => io::stdout().lock().write_all(bytes),
        Stream::Stderr => io::stderr().lock().write_all(bytes),
    };
    if result.is_err() {
        flag.store(true, Ordering::Relaxed);
    }
    result.is_ok()
}

/// Raw bytes to stdout (see [`write_bytes`]), then a flush.
pub fn write_stdout(bytes: &[u8]) -> bool {
    write_bytes(Stream::Stdout, bytes) && flush_stdout()
}

/// Flushes stdout (text without a final newline stays buffered until then, or until exit);
/// a failure is remembered. Returns whether it worked.
pub fn flush_stdout() -> bool {
    if STDOUT_FAILED.load(Ordering::Relaxed) {
        return false;
    }
    let ok = io::stdout().lock().flush().is_ok();
    if !ok {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
    }
    ok
}

/// What the macros call: formats, adds a newline when asked, and writes in one piece.
#[doc(hidden)]
pub fn write_fmt(stream: Stream, args: fmt::Arguments<'_>, newline: bool) {
    if stream.failed_flag().load(Ordering::Relaxed) {
        return;
    }
    let mut text = match args.as_str() {
        Some(s) => String::from(s),
        None => fmt::format(args),
    };
    if newline {
        text.push('\n');
    }
    write_bytes(stream, text.as_bytes());
}

/// `print!` that never panics: see the [module](self) documentation.
#[allow(unused_macros)]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_fmt($crate::output::Stream::Stdout, format_args!($($arg)*), false)
    };
}

/// `println!` that never panics: see the [module](self) documentation.
macro_rules! outln {
    () => {
        $crate::output::write_fmt($crate::output::Stream::Stdout, format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write_fmt($crate::output::Stream::Stdout, format_args!($($arg)*), true)
    };
}

/// `eprint!` that never panics: see the [module](self) documentation.
#[allow(unused_macros)]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::output::write_fmt($crate::output::Stream::Stderr, format_args!($($arg)*), false)
    };
}

/// `eprintln!` that never panics: see the [module](self) documentation.
macro_rules! errln {
    () => {
        $crate::output::write_fmt($crate::output::Stream::Stderr, format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write_fmt($crate::output::Stream::Stderr, format_args!($($arg)*), true)
    };
}

#[allow(unused_imports)]
pub(crate) use {err, errln, out, outln};

/// Outside text fit for a terminal: the library's one rule ([`postline::escape`]), so the
/// CLI, the library's error messages and the log lines escape the same characters the same way.
pub use postline::escape::{escape, needs_escape};

/// Serialized JSON with the characters [`escape`] would escape, which `serde_json` leaves
/// raw (DEL, C1 controls, bidi marks; it already escapes C0), written as `\uXXXX` escapes:
/// the same JSON value, safe on a terminal. Those characters can only occur inside strings,
/// where the escape means the same character.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(needs_escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if needs_escape(c) {
            // All such characters are in the Basic Multilingual Plane.
            use fmt::Write as _;
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_safe_keeps_the_value() {
        let v = serde_json::json!({"banner": "220 a\u{1b}[31m b\u{9b}1m c\u{202e}d\u{7f}"});
        let text = v.to_string();
        let safe = json_safe(&text);
        assert!(!safe.chars().any(needs_escape), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
        assert!(matches!(json_safe("{\"a\":1}"), Cow::Borrowed(_)));
    }
}
