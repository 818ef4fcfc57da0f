//! Mail exchangers for the MX-routing tests: aiosmtpd [`Exchanger`]s on 127.0.0.x addresses
//! sharing one port ([`shared_port`]), and a [`busy_server`] that only says 421.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::repo_root;

/// aiosmtpd listening on `ip:port`, storing what it accepts.
pub struct Exchanger {
    child: Child,
    store: tempfile::TempDir,
    _stdin: Option<std::process::ChildStdin>,
}

impl Exchanger {
    /// aiosmtpd on `ip:port`, calling itself `mx-<ip>.test`.
    pub fn start(ip: Ipv4Addr, port: u16) -> Exchanger {
        Exchanger::start_with(ip, port, &[])
    }

    /// With extra aiosmtpd_server.py arguments (e.g. `--starttls CERT KEY`).
    pub fn start_with(ip: Ipv4Addr, port: u16, extra: &[String]) -> Exchanger {
        let root = repo_root();
        let store = tempfile::tempdir().unwrap();
        let mut child = Command::new(root.join("tests/interop/.venv/bin/python"))
            .arg(root.join("tests/interop/aiosmtpd_server.py"))
            .args([
                "--host",
                &ip.to_string(),
                "--port",
                &port.to_string(),
                "--hostname",
            ])
            .arg(format!("mx-{ip}.test"))
            .arg("--store")
            .arg(store.path())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (run .ci/install-deps)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("aiosmtpd READY");
        assert!(
            line.starts_with("READY"),
            "aiosmtpd on {ip}:{port}: {line:?}"
        );
        let stdin = child.stdin.take();
        Exchanger {
            child,
            store,
            _stdin: stdin,
        }
    }

    /// Number of messages accepted, waiting briefly for the files to land.
    pub fn count(&self, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = std::fs::read_dir(self.store.path())
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                        .count()
                })
                .unwrap_or(0);
            if n >= at_least || Instant::now() > deadline {
                return n;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The envelope (`<n>.json`) of every stored message, in the order of the file names.
    fn envelopes(&self) -> Vec<Value> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.store.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let json = std::fs::read_to_string(p).unwrap();
                serde_json::from_str(&json)
                    .unwrap_or_else(|e| panic!("parse {}: {e}\n{json}", p.display()))
            })
            .collect()
    }

    /// Whether each stored message arrived under TLS, in order.
    pub fn tls_flags(&self) -> Vec<bool> {
        self.envelopes()
            .iter()
            .map(|v| v.get("tls") == Some(&Value::Bool(true)))
            .collect()
    }

    /// The recipients of every stored message, in order.
    pub fn rcpts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.envelopes() {
            if let Some(Value::Array(list)) = v.get("rcpt_tos") {
                out.extend(list.iter().filter_map(|x| x.as_str().map(str::to_string)));
            }
        }
        out
    }
}

impl Drop for Exchanger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that answers every connection with 421 and hangs up, for a bounded time.
pub fn busy_server(ip: Ipv4Addr, port: u16) -> thread::JoinHandle<usize> {
    let listener = TcpListener::bind((ip, port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut served = 0;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"421 4.3.2 Too busy, try another exchanger\r\n");
                    served += 1;
                    // One connection is all a client makes per exchanger.
                    break;
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
        served
    })
}

/// A TCP port free on 127.0.0.1 to 127.0.0.7 alike.
pub fn shared_port() -> u16 {
    let ips: Vec<Ipv4Addr> = (2..=7).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    shared_port_among(&ips)
}

/// A TCP port free on 127.0.0.1 and on each of `ips` alike (tried for at most 10 s), so
/// that exchangers on those addresses can all listen on it, as on port 25.
pub fn shared_port_among(ips: &[Ipv4Addr]) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if ips.iter().all(|&ip| TcpListener::bind((ip, port)).is_ok()) {
            return port;
        }
        assert!(Instant::now() < deadline, "no port free on all of {ips:?}");
    }
}
