//! Test helpers for MX routing: dnsmasq on loopback as a real DNS server, aiosmtpd exchangers
//! on 127.0.0.x addresses sharing one port, and a server that only says 421.
//! Include with `mod mx_support;` next to `mod support;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support;

/// dnsmasq answering only from the records it is given; everything else under `.test` is
/// NXDOMAIN.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal DNS query for `probe.test A`, to know when the server answers.
fn probe_query() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["probe", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

impl Dnsmasq {
    pub fn start(records: &[String]) -> Dnsmasq {
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("dnsmasq is missing: run .ci/install-deps");
        for _ in 0..5 {
            let port = free_udp_port();
            let mut child = Command::new(bin)
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--conf-file=/dev/null",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--local=/test/",
                    "--user=root",
                    "--pid-file=",
                ])
                .arg(format!("--port={port}"))
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dnsmasq");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut buf = [0u8; 512];
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let _ = sock.send_to(&probe_query(), addr);
                if sock.recv_from(&mut buf).is_ok() {
                    return Dnsmasq { child, addr };
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd listening on `ip:port`, storing what it accepts.
pub struct Exchanger {
    child: Child,
    store: tempfile::TempDir,
    _stdin: Option<std::process::ChildStdin>,
}

impl Exchanger {
    pub fn start(ip: Ipv4Addr, port: u16) -> Exchanger {
        Exchanger::start_with(ip, port, &[])
    }

    /// With extra aiosmtpd_server.py arguments (e.g. `--starttls CERT KEY`).
    pub fn start_with(ip: Ipv4Addr, port: u16, extra: &[String]) -> Exchanger {
        let root = support::repo_root();
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

    /// Whether each stored message arrived under TLS, in order.
    pub fn tls_flags(&self) -> Vec<bool> {
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
                std::fs::read_to_string(p)
                    .unwrap()
                    .contains("\"tls\": true")
            })
            .collect()
    }

    pub fn rcpts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.store.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for p in paths {
            let json = std::fs::read_to_string(p).unwrap();
            let v = support::Json::parse(&json).unwrap();
            if let Some(support::Json::Arr(list)) = v.get("rcpt_tos") {
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
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let free = (2..=7).all(|i| TcpListener::bind((Ipv4Addr::new(127, 0, 0, i), port)).is_ok());
        if free {
            return port;
        }
    }
}
