//! [`Microsocks`]: Debian's `microsocks`, a small real SOCKS5 server (RFC 1928, with RFC 1929
//! username/password when started with `-u`/`-P`), on a free loopback port; and
//! [`SilentListener`], a TCP listener that accepts and never answers (a proxy that hangs).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{hint_install_deps, kill_and_wait, POLL, TERM_ON_STDIN_EOF};

/// How long [`Microsocks::start`] waits for the port to accept.
pub const MICROSOCKS_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The address microsocks binds its outgoing connections to ([`Microsocks::start`]), so the
/// SMTP server's recorded peer proves the proxy carried the session.
pub const MICROSOCKS_OUTGOING: &str = "127.0.0.9";

/// A running `microsocks -i 127.0.0.1 -p PORT -b 127.0.0.9 [-u USER -P PASS]`. Stopped (and
/// waited for) on drop; it also stops when the test process dies (its stdin closes).
pub struct Microsocks {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl Microsocks {
    /// Without authentication.
    pub fn start() -> Microsocks {
        Self::spawn(None)
    }

    /// Requiring this user name and password (RFC 1929).
    pub fn with_auth(user: &str, password: &str) -> Microsocks {
        Self::spawn(Some((user, password)))
    }

    fn spawn(auth: Option<(&str, &str)>) -> Microsocks {
        let program = "microsocks";
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{}",
            hint_install_deps("microsocks is not installed (Debian package microsocks)")
        );
        // A free port can be taken by another process before microsocks binds it: retry.
        for _ in 0..5 {
            let port = crate::free_port();
            let mut args: Vec<String> = vec![
                "-i".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-b".into(),
                MICROSOCKS_OUTGOING.into(),
            ];
            if let Some((u, p)) = auth {
                args.extend(["-u".into(), u.into(), "-P".into(), p.into()]);
            }
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(TERM_ON_STDIN_EOF)
                .arg(program)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn microsocks: {e}"));
            let stdin = child.stdin.take();
            let deadline = Instant::now() + MICROSOCKS_READY_TIMEOUT;
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: most likely the port was taken; try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Microsocks { child, stdin, port };
                }
                if Instant::now() >= deadline {
                    drop(stdin);
                    kill_and_wait(&mut child);
                    panic!("microsocks {args:?}: port {port} not accepting after {MICROSOCKS_READY_TIMEOUT:?}");
                }
                thread::sleep(POLL);
            }
        }
        panic!("microsocks: could not start on a free port in 5 tries");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        drop(self.stdin.take());
        kill_and_wait(&mut self.child);
    }
}

/// A listener on a free loopback port that accepts connections and never says a word: a
/// proxy (or server) that hangs. The connections are held until it is dropped.
pub struct SilentListener {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentListener {
    /// Starts accepting on 127.0.0.1.
    pub fn start() -> SilentListener {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        SilentListener {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
