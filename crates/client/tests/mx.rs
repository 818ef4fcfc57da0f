//! Direct delivery against a real DNS server (dnsmasq on loopback, speaking the DNS wire
//! protocol) and real aiosmtpd exchangers on 127.0.0.x addresses sharing one port.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use postline::{Config, Delivery, DeliveryStatus, Envelope, Mailer, Timeouts};
use postline_testkit::{busy_server, shared_port, Aiosmtpd, Dnsmasq, Exchanger, TestCa};

fn mailer(dns: &Dnsmasq, port: u16) -> Mailer {
    let template = Config::relay("unused.invalid")
        .hello_name("client.test")
        .timeouts(Timeouts::default().capped(Duration::from_secs(5)));
    Mailer::direct(template)
        .dns_server(dns.addr)
        .mx_port(port)
        .dns_timeout(Duration::from_secs(2))
}

const MESSAGE: &[u8] = b"Subject: direct\r\n\r\nstraight to the exchanger\r\n";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn records() -> Vec<String> {
    [
        // Preference order: 10 before 20.
        "--mx-host=pref.test,mx-a.pref.test,10",
        "--mx-host=pref.test,mx-b.pref.test,20",
        "--host-record=mx-a.pref.test,127.0.0.2",
        "--host-record=mx-b.pref.test,127.0.0.3",
        // The best exchanger refuses connections (nothing listens on .5).
        "--mx-host=refuse.test,dead.refuse.test,5",
        "--mx-host=refuse.test,live.refuse.test,50",
        "--host-record=dead.refuse.test,127.0.0.5",
        "--host-record=live.refuse.test,127.0.0.3",
        // The best exchanger says 421.
        "--mx-host=busy.test,busy.busy.test,1",
        "--mx-host=busy.test,live.busy.test,2",
        "--host-record=busy.busy.test,127.0.0.6",
        "--host-record=live.busy.test,127.0.0.3",
        // No MX: the domain's own address.
        "--host-record=implicit.test,127.0.0.4",
        // Null MX (RFC 7505): preference 0, exchange "." (RDATA 00 00 00).
        "--dns-rr=nullmx.test,15,000000",
        "--host-record=nullmx.test,127.0.0.4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn status_of<'a>(d: &'a [Delivery], addr: &str) -> &'a Delivery {
    d.iter().find(|r| r.address == addr).unwrap()
}

fn delivered(d: &Delivery) -> bool {
    d.status == DeliveryStatus::Delivered
}

#[test]
fn preference_order_and_mixed_domains() {
    let dns = Dnsmasq::start(&records());
    let port = shared_port();
    let a = Exchanger::start(ip(2), port);
    let b = Exchanger::start(ip(3), port);
    let implicit = Exchanger::start(ip(4), port);
    let env = Envelope::new(
        "sender@client.test",
        [
            "one@pref.test",
            "two@pref.test",
            "x@implicit.test",
            "y@nullmx.test",
            "z@nosuch.test",
        ],
    )
    .unwrap();
    let d = mailer(&dns, port).send_blocking(&env, MESSAGE).unwrap();
    // Envelope order kept.
    let order: Vec<_> = d.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(
        order,
        [
            "one@pref.test",
            "two@pref.test",
            "x@implicit.test",
            "y@nullmx.test",
            "z@nosuch.test"
        ]
    );
    for addr in ["one@pref.test", "two@pref.test"] {
        let r = status_of(&d, addr);
        assert!(delivered(r), "{r:?}");
        assert_eq!(r.host.as_deref(), Some("mx-a.pref.test"));
    }
    assert_eq!(a.count(1), 1, "one transaction for the whole domain");
    assert_eq!(a.rcpts(), ["one@pref.test", "two@pref.test"]);
    assert_eq!(b.count(0), 0, "the less preferred exchanger was not used");
    let r = status_of(&d, "x@implicit.test");
    assert!(delivered(r), "{r:?}");
    assert_eq!(r.host.as_deref(), Some("implicit.test"));
    assert_eq!(implicit.rcpts(), ["x@implicit.test"]);
    let r = status_of(&d, "y@nullmx.test");
    assert_eq!(r.status, DeliveryStatus::Failed, "null MX: {r:?}");
    assert!(r.reason.contains("null MX"), "{r:?}");
    // The null-MX domain's A record points at the implicit exchanger: it must not be used.
    assert_eq!(implicit.count(1), 1);
    let r = status_of(&d, "z@nosuch.test");
    assert_eq!(r.status, DeliveryStatus::Failed, "NXDOMAIN: {r:?}");
    assert!(r.reason.contains("NXDOMAIN"), "{r:?}");
}

#[test]
fn falls_through_refused_and_421_exchangers() {
    let dns = Dnsmasq::start(&records());
    let port = shared_port();
    let live = Exchanger::start(ip(3), port);
    let busy = busy_server(ip(6), port);
    let env = Envelope::new("sender@client.test", ["r@refuse.test", "b@busy.test"]).unwrap();
    let d = mailer(&dns, port)
        .concurrency(1)
        .send_blocking(&env, MESSAGE)
        .unwrap();
    let r = status_of(&d, "r@refuse.test");
    assert!(delivered(r), "{r:?}");
    assert_eq!(r.host.as_deref(), Some("live.refuse.test"));
    let b = status_of(&d, "b@busy.test");
    assert!(delivered(b), "{b:?}");
    assert_eq!(b.host.as_deref(), Some("live.busy.test"));
    assert_eq!(live.count(2), 2);
    let mut got = live.rcpts();
    got.sort();
    assert_eq!(got, ["b@busy.test", "r@refuse.test"]);
    drop(live);
    assert!(
        busy.join().unwrap() >= 1,
        "the 421 exchanger was tried first"
    );
}

#[test]
fn every_exchanger_failing_is_transient_and_names_them() {
    let dns = Dnsmasq::start(&records());
    let port = shared_port();
    // Nothing listens anywhere.
    let env = Envelope::new("sender@client.test", ["r@refuse.test"]).unwrap();
    let d = mailer(&dns, port).send_blocking(&env, MESSAGE).unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Deferred, "{:?}", d[0]);
    assert_eq!(d[0].host, None, "no exchanger decided");
    let reason = &d[0].reason;
    assert!(reason.contains("dead.refuse.test [127.0.0.5]"), "{reason}");
    assert!(reason.contains("live.refuse.test [127.0.0.3]"), "{reason}");
}

#[test]
fn dns_timeout_is_transient() {
    // A UDP port nobody answers on.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let template = Config::relay("unused.invalid").hello_name("client.test");
    let started = Instant::now();
    let env = Envelope::new("sender@client.test", ["a@pref.test"]).unwrap();
    let d = Mailer::direct(template)
        .dns_server(addr)
        .dns_timeout(Duration::from_millis(300))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(d[0].status, DeliveryStatus::Deferred, "{:?}", d[0]);
}

#[test]
fn ip_literal_needs_no_dns() {
    let dns = Dnsmasq::start(&[]);
    let port = shared_port();
    let x = Exchanger::start(ip(7), port);
    let env = Envelope::new("sender@client.test", ["postmaster@[127.0.0.7]"]).unwrap();
    let d = mailer(&dns, port).send_blocking(&env, MESSAGE).unwrap();
    assert!(d.iter().all(delivered), "{d:?}");
    assert_eq!(d[0].host.as_deref(), Some("127.0.0.7"));
    assert_eq!(x.rcpts(), ["postmaster@[127.0.0.7]"]);
}

#[test]
fn relay_route_reports_per_recipient() {
    let server = Aiosmtpd::builder().reject_rcpt("nobody").start();
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(postline::Tls::None)
        .hello_name("client.test");
    let env = Envelope::new("sender@client.test", ["a@x.test", "nobody@x.test"]).unwrap();
    let d = Mailer::relay(config).send_blocking(&env, MESSAGE).unwrap();
    assert!(delivered(&d[0]), "{d:?}");
    assert_eq!(d[0].host.as_deref(), Some("127.0.0.1"));
    assert_eq!(d[1].status, DeliveryStatus::Failed, "{d:?}");
    assert_eq!(d[1].reply.as_ref().map(|r| r.code), Some(550));
}

#[test]
fn opportunistic_starttls_encrypts_without_verifying_and_required_tls_verifies() {
    let dns = Dnsmasq::start(&records());
    let port = shared_port();
    let ca = TestCa::new();
    let tls_args = vec![
        "--starttls".to_string(),
        ca.cert_path.to_string_lossy().into_owned(),
        ca.key_path.to_string_lossy().into_owned(),
    ];
    let x = Exchanger::start_with(ip(4), port, &tls_args);
    let env = Envelope::new("sender@client.test", ["t@implicit.test"]).unwrap();
    // Default: STARTTLS used although the certificate does not verify (RFC 7435).
    let d = mailer(&dns, port).send_blocking(&env, MESSAGE).unwrap();
    assert!(d.iter().all(delivered), "{d:?}");
    assert_eq!(x.count(1), 1);
    assert_eq!(x.tls_flags(), [true]);
    // Required: the unverified certificate is refused, nothing is sent in clear text.
    let d = mailer(&dns, port)
        .require_tls(true)
        .send_blocking(&env, MESSAGE)
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Deferred, "{:?}", d[0]);
    assert!(d[0].reason.contains("certificate"), "{:?}", d[0]);
    // The refused attempt has already returned, so nothing more can arrive.
    assert_eq!(x.count(1), 1);
}
