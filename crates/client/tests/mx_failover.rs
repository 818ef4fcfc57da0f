//! Direct delivery when exchangers misbehave: which failures move on to the next exchanger,
//! which end the attempt, and the bounds on an attempt. Each domain's records come from a
//! real DNS server (dnsmasq on loopback); hostile exchangers are scripted peers on 127.0.0.x,
//! and the exchanger that must (or must not) get the message next is a real aiosmtpd.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use postline::delivery::{MAX_REPLY_LINES, MAX_REPLY_TEXT};
use postline::{Config, Delivery, DeliveryStatus, Envelope, Mailer, Timeouts};
use postline_testkit::{
    greeting_and_ehlo, shared_port_among, Dnsmasq, Exchanger, FailingDns, ScriptReport,
    ScriptedServer, Step, TestCa,
};

const MESSAGE: &[u8] = b"Subject: failover\r\n\r\nto whichever exchanger can take it\r\n";
/// The real exchanger every test falls back to.
const LIVE: u8 = 20;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn at(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from((ip(last), port))
}

/// A port free on 127.0.0.11..=127.0.0.30.
fn port() -> u16 {
    let ips: Vec<Ipv4Addr> = (11..=30).map(ip).collect();
    shared_port_among(&ips)
}

/// `domain`'s exchanger `host` with preference `pref`.
fn mx(domain: &str, host: &str, pref: u16) -> String {
    format!("--mx-host={domain},{host},{pref}")
}

/// `host` has the address 127.0.0.`last`.
fn a(host: &str, last: u8) -> String {
    format!("--host-record={host},{}", ip(last))
}

/// `domain`: `mx.<domain>` at 127.0.0.`first` (preference 10), then `live.<domain>` at the
/// real exchanger (preference 20).
fn pair(domain: &str, first: u8) -> Vec<String> {
    vec![
        mx(domain, &format!("mx.{domain}"), 10),
        mx(domain, &format!("live.{domain}"), 20),
        a(&format!("mx.{domain}"), first),
        a(&format!("live.{domain}"), LIVE),
    ]
}

fn mailer(dns: &Dnsmasq, port: u16, timeouts: Duration) -> Mailer {
    let template = Config::relay("unused.invalid")
        .hello_name("client.test")
        .timeouts(Timeouts::default().capped(timeouts));
    Mailer::direct(template)
        .dns_server(dns.addr)
        .mx_port(port)
        .dns_timeout(Duration::from_secs(2))
}

fn find<'a>(d: &'a [Delivery], address: &str) -> &'a Delivery {
    d.iter()
        .find(|x| x.address == address)
        .unwrap_or_else(|| panic!("no result for {address}: {d:?}"))
}

/// Everything up to the client's end of data, without PIPELINING.
fn through_data() -> Vec<Step> {
    let mut s = greeting_and_ehlo(&[]);
    s.extend([
        Step::expect("MAIL FROM:<sender@client.test>"),
        Step::reply("250 2.1.0 ok"),
        Step::expect("RCPT TO:"),
        Step::reply("250 2.1.5 ok"),
        Step::expect("DATA"),
        Step::reply("354 go ahead"),
        Step::ExpectData,
    ]);
    s
}

/// The scripted peers' reports, by name, once the send is over.
fn finish(peers: Vec<(&'static str, ScriptedServer)>) -> Vec<(&'static str, ScriptReport)> {
    peers.into_iter().map(|(n, p)| (n, p.finish())).collect()
}

#[test]
fn failures_of_the_session_move_on_to_the_next_exchanger() {
    let port = port();
    let cases: Vec<(&str, u8, Vec<Step>)> = vec![
        // A 5xx greeting refuses the session, not the message.
        (
            "greet554.test",
            11,
            vec![Step::reply("554 5.7.1 no SMTP service here"), Step::Close],
        ),
        // Closes as soon as EHLO arrives.
        (
            "closeehlo.test",
            12,
            vec![
                Step::reply("220 mx ESMTP"),
                Step::expect("EHLO"),
                Step::Close,
            ],
        ),
        // Refuses EHLO and then HELO.
        (
            "helo550.test",
            13,
            vec![
                Step::reply("220 mx ESMTP"),
                Step::expect("EHLO"),
                Step::reply("550 5.7.1 not you"),
                Step::expect("HELO"),
                Step::reply("550 5.7.1 not you either"),
                Step::Close,
            ],
        ),
        // Answers MAIL with something that is not SMTP.
        ("garbage.test", 14, {
            let mut s = greeting_and_ehlo(&[]);
            s.extend([
                Step::expect("MAIL"),
                Step::send("this is not an SMTP reply\r\n"),
                Step::Close,
            ]);
            s
        }),
        // Says 421 (closing) in the middle of the transaction.
        ("rcpt421.test", 15, {
            let mut s = greeting_and_ehlo(&[]);
            s.extend([
                Step::expect("MAIL"),
                Step::reply("250 ok"),
                Step::expect("RCPT"),
                Step::reply("421 4.3.2 shutting down"),
                Step::Close,
            ]);
            s
        }),
        // Resets the connection right after the greeting.
        (
            "reset.test",
            16,
            vec![Step::reply("220 mx ESMTP"), Step::Reset],
        ),
    ];
    let mut records = Vec::new();
    let mut peers = Vec::new();
    let mut rcpts = Vec::new();
    for (domain, last, script) in cases {
        records.extend(pair(domain, last));
        peers.push((domain, ScriptedServer::bind(at(last, port), script, 1)));
        rcpts.push(format!("user@{domain}"));
    }
    let dns = Dnsmasq::start(&records);
    let live = Exchanger::start(ip(LIVE), port);
    let env = Envelope::new("sender@client.test", &rcpts).unwrap();
    let d = mailer(&dns, port, Duration::from_secs(5))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    for (domain, report) in finish(peers) {
        let r = find(&d, &format!("user@{domain}"));
        assert_eq!(r.status, DeliveryStatus::Delivered, "{domain}: {r:?}");
        assert_eq!(
            r.host.as_deref(),
            Some(format!("live.{domain}").as_str()),
            "{r:?}"
        );
        assert_eq!(report.connections.len(), 1, "{domain} was tried once");
    }
    let mut got = live.rcpts();
    got.sort();
    rcpts.sort();
    assert_eq!(
        got, rcpts,
        "each domain's message reached the next exchanger"
    );
}

#[test]
fn missing_or_broken_tls_moves_on_when_tls_is_required() {
    let port = port();
    let ca = TestCa::with_server_names(&["live.notls.test", "live.badtls.test"]);
    let mut records = pair("notls.test", 11);
    records.extend(pair("badtls.test", 12));
    let dns = Dnsmasq::start(&records);
    let live = Exchanger::start_with(
        ip(LIVE),
        port,
        &[
            "--starttls".to_string(),
            ca.cert_path.to_string_lossy().into_owned(),
            ca.key_path.to_string_lossy().into_owned(),
        ],
    );
    // No STARTTLS offered: the client says QUIT politely.
    let mut no_tls = greeting_and_ehlo(&["PIPELINING"]);
    no_tls.extend([Step::expect("QUIT"), Step::reply("221 bye"), Step::Close]);
    // STARTTLS accepted, then no TLS at all.
    let mut bad_tls = greeting_and_ehlo(&["STARTTLS"]);
    bad_tls.extend([
        Step::expect("STARTTLS"),
        Step::reply("220 2.0.0 go ahead"),
        Step::send("this is not a TLS record\r\n"),
        Step::Close,
    ]);
    let peers = vec![
        ("notls.test", ScriptedServer::bind(at(11, port), no_tls, 1)),
        (
            "badtls.test",
            ScriptedServer::bind(at(12, port), bad_tls, 1),
        ),
    ];
    let template = Config::relay("unused.invalid")
        .hello_name("client.test")
        .ca_file(&ca.ca_path)
        .timeouts(Timeouts::default().capped(Duration::from_secs(5)));
    let env = Envelope::new("sender@client.test", ["a@notls.test", "b@badtls.test"]).unwrap();
    let d = Mailer::direct(template)
        .dns_server(dns.addr)
        .mx_port(port)
        .require_tls(true)
        .send_blocking(&env, MESSAGE)
        .unwrap();
    for (domain, report) in finish(peers) {
        let r = d.iter().find(|r| r.address.ends_with(domain)).unwrap();
        assert_eq!(r.status, DeliveryStatus::Delivered, "{domain}: {r:?}");
        assert_eq!(r.host, Some(format!("live.{domain}")), "{r:?}");
        assert_eq!(report.connections.len(), 1, "{domain}");
        report.assert_ok();
    }
    assert_eq!(live.count(2), 2);
    assert_eq!(live.tls_flags(), [true, true], "both arrived encrypted");
}

#[test]
fn an_end_of_data_without_a_final_reply_is_in_doubt_and_goes_nowhere_else() {
    let port = port();
    let cases: Vec<(&str, u8, Vec<Step>)> = vec![
        // Silence after the end of data (the 2 s end-of-data timer fires).
        ("silent.test", 11, vec![Step::Hang]),
        // The connection closes.
        ("dropped.test", 12, vec![Step::Close]),
        // The connection is reset.
        ("reset.test", 13, vec![Step::Reset]),
        // Half a reply, then the connection closes.
        (
            "half.test",
            14,
            vec![Step::send("250-2.0.0 queued as 1\r\n"), Step::Close],
        ),
        // Something that is not a reply.
        (
            "garbage.test",
            15,
            vec![Step::send("thanks, got it\r\n"), Step::Hang],
        ),
    ];
    let mut records = Vec::new();
    let mut peers = Vec::new();
    let mut rcpts = Vec::new();
    for (domain, last, after) in cases {
        records.extend(pair(domain, last));
        let mut script = through_data();
        script.extend(after);
        peers.push((domain, ScriptedServer::bind(at(last, port), script, 1)));
        rcpts.push(format!("user@{domain}"));
    }
    let dns = Dnsmasq::start(&records);
    let live = Exchanger::start(ip(LIVE), port);
    let env = Envelope::new("sender@client.test", &rcpts).unwrap();
    let started = Instant::now();
    let d = mailer(&dns, port, Duration::from_secs(2))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    for (domain, report) in finish(peers) {
        let r = find(&d, &format!("user@{domain}"));
        assert_eq!(r.status, DeliveryStatus::InDoubt, "{domain}: {r:?}");
        assert_eq!(r.host, Some(format!("mx.{domain}")), "{r:?}");
        assert!(r.reason.contains("may or may not"), "{r:?}");
        assert_eq!(report.connections.len(), 1, "{domain} was not tried again");
    }
    // `send_blocking` has returned, so nothing more can arrive: the message was never handed
    // to another exchanger.
    assert_eq!(live.count(0), 0, "{:?}", live.rcpts());
}

#[test]
fn a_reply_about_the_message_ends_the_attempt_at_that_exchanger() {
    let port = port();
    let transaction = |mail: &str, rcpts: &[&str], data: Option<&str>| {
        let mut s = greeting_and_ehlo(&[]);
        s.extend([Step::expect("MAIL"), Step::reply(mail)]);
        if mail.starts_with('2') {
            for r in rcpts {
                s.extend([Step::expect("RCPT"), Step::reply(r)]);
            }
            match data {
                Some(end) => s.extend([
                    Step::expect("DATA"),
                    Step::reply("354 go ahead"),
                    Step::ExpectData,
                    Step::reply(end),
                ]),
                // Every recipient refused: the open transaction is reset.
                None => s.extend([Step::expect("RSET"), Step::reply("250 ok")]),
            }
        }
        s.extend([Step::expect("QUIT"), Step::reply("221 bye"), Step::Close]);
        s
    };
    let cases: Vec<(&str, u8, Vec<Step>, &[&str])> = vec![
        (
            "rcpt550.test",
            11,
            transaction("250 ok", &["550 5.1.1 no such user"], None),
            &["user"],
        ),
        (
            "mail451.test",
            12,
            transaction("451 4.7.1 greylisted, come back later", &[], None),
            &["user"],
        ),
        (
            "data554.test",
            13,
            transaction("250 ok", &["250 ok"], Some("554 5.7.1 looks like spam")),
            &["user"],
        ),
        (
            "mixed.test",
            14,
            transaction(
                "250 ok",
                &["250 ok", "550 5.1.1 no such user"],
                Some("250 2.0.0 queued"),
            ),
            &["ok", "bad"],
        ),
    ];
    let mut records = Vec::new();
    let mut peers = Vec::new();
    let mut rcpts = Vec::new();
    for (domain, last, script, users) in cases {
        records.extend(pair(domain, last));
        peers.push((domain, ScriptedServer::bind(at(last, port), script, 1)));
        rcpts.extend(users.iter().map(|u| format!("{u}@{domain}")));
    }
    let dns = Dnsmasq::start(&records);
    let live = Exchanger::start(ip(LIVE), port);
    let env = Envelope::new("sender@client.test", &rcpts).unwrap();
    let d = mailer(&dns, port, Duration::from_secs(5))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    let reports = finish(peers);
    let want: &[(&str, DeliveryStatus, u16)] = &[
        ("user@rcpt550.test", DeliveryStatus::Failed, 550),
        ("user@mail451.test", DeliveryStatus::Deferred, 451),
        ("user@data554.test", DeliveryStatus::Failed, 554),
        ("ok@mixed.test", DeliveryStatus::Delivered, 250),
        ("bad@mixed.test", DeliveryStatus::Failed, 550),
    ];
    for (address, status, code) in want {
        let r = find(&d, address);
        assert_eq!(r.status, *status, "{r:?}");
        assert_eq!(r.reply.as_ref().map(|x| x.code), Some(*code), "{r:?}");
        let domain = address.rsplit_once('@').unwrap().1;
        assert_eq!(r.host, Some(format!("mx.{domain}")), "{r:?}");
    }
    for (domain, report) in reports {
        assert_eq!(report.connections.len(), 1, "{domain}");
        report.assert_ok();
    }
    assert_eq!(live.count(0), 0, "no other exchanger was asked");
}

/// A scripted exchanger that only says 421, for up to `n` connections.
fn busy(last: u8, port: u16, n: usize) -> ScriptedServer {
    let script = vec![Step::reply("421 4.3.2 busy, try another"), Step::Close];
    ScriptedServer::bind(at(last, port), script, n)
}

#[test]
fn at_most_five_exchangers_are_tried_by_default() {
    let port = port();
    let mut records = Vec::new();
    for i in 1..=6u8 {
        let host = format!("mx{i}.many.test");
        records.push(mx("many.test", &host, u16::from(i)));
        // The first five are busy; the sixth would take the message.
        records.push(a(&host, if i < 6 { 10 + i } else { LIVE }));
    }
    let dns = Dnsmasq::start(&records);
    let busy: Vec<ScriptedServer> = (11..=15).map(|l| busy(l, port, 2)).collect();
    let live = Exchanger::start(ip(LIVE), port);
    let env = Envelope::new("sender@client.test", ["x@many.test"]).unwrap();
    let d = mailer(&dns, port, Duration::from_secs(5))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Deferred, "{:?}", d[0]);
    assert!(d[0].reason.contains("1 more not tried"), "{:?}", d[0]);
    assert_eq!(live.count(0), 0, "the sixth exchanger was not tried");
    // The bound, not the exchangers, stopped it: allowed six, the sixth delivers.
    let d = mailer(&dns, port, Duration::from_secs(5))
        .max_exchangers(6)
        .send_blocking(&env, MESSAGE)
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered, "{:?}", d[0]);
    assert_eq!(d[0].host.as_deref(), Some("mx6.many.test"));
    assert_eq!(live.rcpts(), ["x@many.test"]);
    for b in busy {
        assert_eq!(
            b.finish().connections.len(),
            2,
            "each busy one, once per send"
        );
    }
}

#[test]
fn at_most_two_addresses_of_an_exchanger_are_tried_by_default() {
    let port = port();
    let mut records = vec![
        mx("addrs.test", "mx.addrs.test", 10),
        mx("addrs.test", "live.addrs.test", 20),
        a("live.addrs.test", LIVE),
    ];
    for last in 11..=13 {
        records.push(a("mx.addrs.test", last));
    }
    let dns = Dnsmasq::start(&records);
    let busy: Vec<ScriptedServer> = (11..=13).map(|l| busy(l, port, 2)).collect();
    let live = Exchanger::start(ip(LIVE), port);
    let env = Envelope::new("sender@client.test", ["x@addrs.test"]).unwrap();
    let d = mailer(&dns, port, Duration::from_secs(5))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered, "{:?}", d[0]);
    assert_eq!(d[0].host.as_deref(), Some("live.addrs.test"));
    let d = mailer(&dns, port, Duration::from_secs(5))
        .max_addresses(1)
        .send_blocking(&env, MESSAGE)
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered, "{:?}", d[0]);
    assert_eq!(live.count(2), 2);
    let tried: usize = busy.into_iter().map(|b| b.finish().connections.len()).sum();
    assert_eq!(tried, 2 + 1, "two addresses, then one");
}

#[test]
fn the_attempt_deadline_defers_before_the_data_and_leaves_in_doubt_after_it() {
    let port = port();
    let mut waiting_for_rcpt = greeting_and_ehlo(&[]);
    waiting_for_rcpt.extend([
        Step::expect("MAIL"),
        Step::reply("250 ok"),
        Step::expect("RCPT"),
        Step::Hang,
    ]);
    let mut after_data = through_data();
    after_data.push(Step::Hang);
    let cases: Vec<(&str, u8, Vec<Step>, DeliveryStatus)> = vec![
        (
            "greeting.test",
            11,
            vec![Step::Hang],
            DeliveryStatus::Deferred,
        ),
        ("rcpt.test", 12, waiting_for_rcpt, DeliveryStatus::Deferred),
        ("data.test", 13, after_data, DeliveryStatus::InDoubt),
    ];
    let mut records = Vec::new();
    let mut peers = Vec::new();
    let mut want = Vec::new();
    for (domain, last, script, status) in cases {
        records.extend(pair(domain, last));
        peers.push((domain, ScriptedServer::bind(at(last, port), script, 1)));
        want.push((format!("user@{domain}"), status));
    }
    let dns = Dnsmasq::start(&records);
    let live = Exchanger::start(ip(LIVE), port);
    let rcpts: Vec<&str> = want.iter().map(|(a, _)| a.as_str()).collect();
    let env = Envelope::new("sender@client.test", &rcpts).unwrap();
    let started = Instant::now();
    // Every exchanger timer at 30 s: only the deadline can end these in time.
    let d = mailer(&dns, port, Duration::from_secs(30))
        .attempt_deadline(Duration::from_millis(1500))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    for (address, status) in &want {
        let r = find(&d, address);
        assert_eq!(r.status, *status, "{r:?}");
    }
    let deferred = find(&d, "user@greeting.test");
    assert!(deferred.reason.contains("deadline"), "{deferred:?}");
    for (domain, report) in finish(peers) {
        assert_eq!(report.connections.len(), 1, "{domain}");
    }
    assert_eq!(live.count(0), 0, "no time was left for another exchanger");
}

#[test]
fn the_reason_naming_every_exchanger_tried_stays_bounded() {
    let port = port();
    // Each busy exchanger explains itself at length: 100 lines of 2000 bytes.
    let mut long = String::new();
    for _ in 0..99 {
        long.push_str(&format!("421-4.3.2 {}\r\n", "x".repeat(2000)));
    }
    long.push_str("421 4.3.2 busy\r\n");
    let mut records = Vec::new();
    let mut peers = Vec::new();
    for i in 1..=5u8 {
        let host = format!("mx{i}.long.test");
        records.push(mx("long.test", &host, u16::from(i)));
        records.push(a(&host, 10 + i));
        let script = vec![Step::send(&long), Step::Close];
        peers.push(ScriptedServer::bind(at(10 + i, port), script, 1));
    }
    let dns = Dnsmasq::start(&records);
    let env = Envelope::new("sender@client.test", ["x@long.test", "y@long.test"]).unwrap();
    let d = mailer(&dns, port, Duration::from_secs(5))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    for r in &d {
        assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
        assert!(r.reason.len() <= MAX_REPLY_TEXT, "{}", r.reason.len());
        // Each exchanger's entry is cut short, so the first few are named, and the rest
        // counted, within the bound.
        assert!(
            r.reason.contains("mx1.long.test [127.0.0.11]"),
            "{}",
            r.reason
        );
        assert!(
            r.reason.contains("mx2.long.test [127.0.0.12]"),
            "{}",
            r.reason
        );
        assert!(r.reason.ends_with(" more"), "{}", r.reason);
        let reply = r.reply.as_ref().expect("the last exchanger's reply");
        assert_eq!(reply.code, 421);
        assert!(reply.lines.len() <= MAX_REPLY_LINES, "{reply:?}");
        let text: usize = reply.lines.iter().map(String::len).sum();
        assert!(text <= MAX_REPLY_TEXT, "{text}");
    }
    for p in peers {
        assert_eq!(p.finish().connections.len(), 1, "every exchanger was tried");
    }
}

#[test]
fn unroutable_domains_fail_and_dns_trouble_defers() {
    let dns = Dnsmasq::start(&["--dns-rr=nullmx.test,15,000000".to_string()]);
    let env = Envelope::new(
        "sender@client.test",
        ["n@nullmx.test", "x@nosuch.test", "l@[300.1.2.3]"],
    )
    .unwrap();
    let d = mailer(&dns, 25, Duration::from_secs(5))
        .send_blocking(&env, MESSAGE)
        .unwrap();
    for (r, why) in d.iter().zip(["null MX", "NXDOMAIN", "bad address literal"]) {
        assert_eq!(r.status, DeliveryStatus::Failed, "{r:?}");
        assert!(r.reason.contains(why), "{r:?}");
        assert_eq!(r.host, None, "{r:?}");
    }
    // A server that answers SERVFAIL or REFUSED: trouble that passes, never a bounce.
    for rcode in [2, 5] {
        let failing = FailingDns::start(rcode);
        let template = Config::relay("unused.invalid").hello_name("client.test");
        let env = Envelope::new("sender@client.test", ["a@servfail.test"]).unwrap();
        let d = Mailer::direct(template)
            .dns_server(failing.addr)
            .dns_timeout(Duration::from_secs(2))
            .send_blocking(&env, MESSAGE)
            .unwrap();
        assert_eq!(d[0].status, DeliveryStatus::Deferred, "{rcode}: {:?}", d[0]);
        assert!(d[0].reason.contains("DNS lookup"), "{:?}", d[0]);
        assert!(failing.queries() >= 1, "the server was asked");
    }
}

#[test]
fn one_resolver_serves_a_mailer_its_clones_and_every_blocking_send() {
    let port = port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let dns = Dnsmasq::start(&[
        "--log-queries".to_string(),
        format!("--log-facility={}", log.path().display()),
        "--local-ttl=600".to_string(),
        mx("cached.test", "mx.cached.test", 10),
        a("mx.cached.test", LIVE),
        a("implicit.test", LIVE),
    ]);
    let live = Exchanger::start(ip(LIVE), port);
    let m = mailer(&dns, port, Duration::from_secs(5));
    let first = Envelope::new("sender@client.test", ["a@cached.test"]).unwrap();
    let d = m.send_blocking(&first, MESSAGE).unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered, "{:?}", d[0]);
    // A clone, on another runtime: the cached answer serves, and a new name resolves
    // through the same resolver.
    let second = Envelope::new("sender@client.test", ["b@cached.test", "c@implicit.test"]).unwrap();
    let d = m.clone().send_blocking(&second, MESSAGE).unwrap();
    assert!(
        d.iter().all(|r| r.status == DeliveryStatus::Delivered),
        "{d:?}"
    );
    assert_eq!(live.count(3), 3, "one message per domain");
    let queries = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            let n = text.lines().filter(|l| l.contains(what)).count();
            if n > 0 || Instant::now() > deadline {
                return (n, text);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (n, text) = queries("query[MX] cached.test");
    assert_eq!(n, 1, "one MX query for both sends:\n{text}");
    let (n, text) = queries("query[MX] implicit.test");
    assert_eq!(n, 1, "{text}");
}
