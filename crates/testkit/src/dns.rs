//! [`Dnsmasq`]: dnsmasq on 127.0.0.1 as a real DNS server for the MX-routing tests, answering
//! only from the records it is given.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// dnsmasq answering only from the records it is given; everything else under `.test` is
/// NXDOMAIN.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

/// A free UDP port on 127.0.0.1 (bound to port 0, then released).
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
    /// Starts dnsmasq on a free UDP port of 127.0.0.1 with these extra arguments (records such
    /// as `--mx-host=one.test,mx.one.test,10`), and waits (at most 5 s, a few ports in turn)
    /// until it answers a query. Panics if it does not.
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

/// A DNS server on 127.0.0.1 (UDP) that answers every query with one response code, e.g.
/// 2 (SERVFAIL) or 5 (REFUSED), and counts the queries. It serves for at most 60 s, and
/// stops when dropped.
pub struct FailingDns {
    pub addr: SocketAddr,
    queries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FailingDns {
    /// Answers every query with `rcode` (the 4-bit RCODE of RFC 1035 4.1.1).
    pub fn start(rcode: u8) -> FailingDns {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            let mut buf = [0u8; 1500];
            while Instant::now() < until && !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = failure_response(&buf[..n], rcode) {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&answer, from);
                }
            }
        });
        FailingDns {
            addr,
            queries,
            stop,
        }
    }

    /// How many queries were answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for FailingDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The response to `query` with `rcode` and no records: its header (id, opcode, RD) with
/// QR and RA set, then its first question; `None` when the query is too short to be one.
fn failure_response(query: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) == 0 {
        return None;
    }
    // The question's name: labels up to the root label, then type and class.
    let mut end = 12;
    loop {
        let len = *query.get(end)? as usize;
        end += 1;
        if len == 0 {
            break;
        }
        end += len;
    }
    end += 4;
    if end > query.len() {
        return None;
    }
    let mut out = query[..end].to_vec();
    out[2] = 0x80 | (query[2] & 0x79); // QR, the opcode and RD as asked
    out[3] = 0x80 | (rcode & 0x0f); // RA, the response code
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..12].fill(0);
    Some(out)
}
