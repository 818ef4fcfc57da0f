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
