//! `postline send` without a relay: MX routing through a real DNS server (dnsmasq) to real
//! exchangers (aiosmtpd on 127.0.0.x).

use std::net::Ipv4Addr;

use postline_testkit::{shared_port, Dnsmasq, Exchanger, Sandbox};

fn records() -> Vec<String> {
    [
        "--mx-host=one.test,mx.one.test,10",
        "--host-record=mx.one.test,127.0.0.2",
        "--host-record=two.test,127.0.0.3",
        "--dns-rr=nomail.test,15,000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn send_without_server_delivers_by_mx() {
    let dns = Dnsmasq::start(&records());
    let port = shared_port();
    let one = Exchanger::start(Ipv4Addr::new(127, 0, 0, 2), port);
    let two = Exchanger::start(Ipv4Addr::new(127, 0, 0, 3), port);
    let sb = Sandbox::new();
    let out = sb
        .send_bare()
        .from("me@client.test")
        .to("a@one.test,b@two.test")
        .subject("direct")
        .body("hello")
        .helo("client.test")
        .timeout(5)
        .args(["--dns-server", &dns.addr.to_string()])
        .args(["--mx-port", &port.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("delivered a@one.test  via mx.one.test"),
        "{stdout}"
    );
    assert!(
        stdout.contains("delivered b@two.test  via two.test"),
        "{stdout}"
    );
    assert_eq!(one.rcpts(), ["a@one.test"]);
    assert_eq!(two.rcpts(), ["b@two.test"]);
}

#[test]
fn unroutable_domains_fail_permanently() {
    let dns = Dnsmasq::start(&records());
    let sb = Sandbox::new();
    let out = sb
        .send_bare()
        .from("me@client.test")
        .to("x@nomail.test,y@nosuch.test")
        .body("x")
        .args(["--dns-server", &dns.addr.to_string()])
        .json()
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(68),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["route"], "direct");
    let r = v["recipients"].as_array().unwrap();
    assert_eq!(r[0]["permanent"], true);
    assert!(r[0]["reason"].as_str().unwrap().contains("null MX"));
    assert!(r[1]["reason"].as_str().unwrap().contains("NXDOMAIN"));
}

#[test]
fn unreachable_exchanger_is_deferred() {
    let dns = Dnsmasq::start(&records());
    let port = shared_port();
    let sb = Sandbox::new();
    let out = sb
        .send_bare()
        .from("me@client.test")
        .to("a@one.test")
        .body("x")
        .args(["--dns-server", &dns.addr.to_string()])
        .args(["--mx-port", &port.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deferred") && stdout.contains("mx.one.test [127.0.0.2]"),
        "{stdout}"
    );
}

#[test]
fn credentials_need_a_server() {
    let sb = Sandbox::new();
    let out = sb
        .send_bare()
        .env("PW", "secret")
        .from("me@client.test")
        .to("a@one.test")
        .body("x")
        .user("me")
        .password_env("PW")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need --server"));
}
