//! Through a real SOCKS5 proxy (Debian's microsocks, its outgoing side bound to 127.0.0.9) to
//! a real aiosmtpd, and from a chosen source address: the blocking and the tokio client. The
//! server records the peer it saw, which proves who carried the session.

use std::time::{Duration, Instant};

use postline::{
    AsyncClient, Client, Config, ConfigError, DeliveryStatus, Envelope, Error, Fault, Mailer,
    Outcome, Proxy, ProxyFailure, Socks5Reply, Timeouts, Tls,
};
use postline_testkit::{
    both, free_port, Aiosmtpd, Microsocks, SilentListener, TestCa, MICROSOCKS_OUTGOING,
};

const WAIT: Duration = Duration::from_secs(20);
const BODY: &[u8] = b"Subject: through the proxy\r\n\r\nHello.\r\n";

#[derive(Clone, Copy, Debug)]
enum Driver {
    Blocking,
    Tokio,
}

fn envelope() -> Envelope {
    Envelope::new("a@client.test", ["b@server.test"]).unwrap()
}

fn send(driver: Driver, config: Config) -> Result<Outcome, Error> {
    match driver {
        Driver::Blocking => {
            let mut c = Client::connect(config)?;
            let r = c.send_bytes(&envelope(), BODY);
            let _ = c.quit();
            r
        }
        Driver::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut c = AsyncClient::connect(config).await?;
                let r = c.send_bytes(&envelope(), BODY).await;
                let _ = c.quit().await;
                r
            }),
    }
}

/// The server by name: the name goes to the proxy, which resolves it.
fn plain(server: &Aiosmtpd) -> Config {
    Config::relay("localhost")
        .port(server.port())
        .tls(Tls::None)
        .hello_name("client.test")
}

fn fast() -> Timeouts {
    let mut t = Timeouts::default().capped(Duration::from_secs(10));
    t.connect = Duration::from_secs(1);
    t
}

fn proxy_failure(e: &Error) -> &ProxyFailure {
    match e {
        Error::Proxy { failure, .. } => failure,
        other => panic!("expected a proxy error, got {other:?}"),
    }
}

fn plain_through_the_proxy(driver: Driver) {
    let server = Aiosmtpd::start();
    let proxy = Microsocks::start();
    let config = plain(&server).proxy(Proxy::socks5(proxy.addr()));
    let outcome = send(driver, config).unwrap();
    assert_eq!(outcome.accepted().count(), 1);
    let m = &server.wait_for_messages(1, WAIT)[0];
    assert_eq!(m.content, BODY);
    assert_eq!(
        m.peer.as_deref(),
        Some(MICROSOCKS_OUTGOING),
        "{}",
        m.raw_json
    );
}
both!(plain_through_the_proxy);

fn starttls_and_proxy_auth(driver: Driver) {
    let ca = TestCa::new();
    let server = Aiosmtpd::builder()
        .starttls_with(&ca)
        .require_starttls()
        .start();
    let proxy = Microsocks::with_auth("proxyuser", "proxy-secret");
    let url = format!("socks5h://proxyuser:proxy-secret@{}", proxy.addr());
    let config = plain(&server)
        .tls(Tls::StartTls)
        .ca_file(&ca.ca_path)
        .proxy(url.parse().unwrap());
    let outcome = send(driver, config).unwrap();
    assert_eq!(outcome.accepted().count(), 1);
    let m = &server.wait_for_messages(1, WAIT)[0];
    assert!(m.tls, "{}", m.raw_json);
    assert_eq!(m.peer.as_deref(), Some(MICROSOCKS_OUTGOING));
}
both!(starttls_and_proxy_auth);

fn implicit_tls_through_the_proxy(driver: Driver) {
    let ca = TestCa::new();
    let server = Aiosmtpd::builder().implicit_tls_with(&ca).start();
    let proxy = Microsocks::start();
    let config = plain(&server)
        .tls(Tls::Implicit)
        .ca_file(&ca.ca_path)
        .proxy(Proxy::socks5(proxy.addr()));
    send(driver, config).unwrap();
    let m = &server.wait_for_messages(1, WAIT)[0];
    assert!(m.tls);
    assert_eq!(m.peer.as_deref(), Some(MICROSOCKS_OUTGOING));
}
both!(implicit_tls_through_the_proxy);

fn wrong_proxy_password_is_named_never_shown(driver: Driver) {
    let server = Aiosmtpd::start();
    let proxy = Microsocks::with_auth("proxyuser", "proxy-secret");
    let config =
        plain(&server).proxy(Proxy::socks5(proxy.addr()).credentials("proxyuser", "WRONG-hunter2"));
    let e = send(driver, config).unwrap_err();
    assert!(
        matches!(proxy_failure(&e), ProxyFailure::AuthRefused { user } if user == "proxyuser"),
        "{e:?}"
    );
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    // This side's to fix: a queue keeps the message (deferred), never bounces it.
    assert_eq!(e.fault(), Fault::Local);
    assert_eq!(postline::delivery::status_of(&e), DeliveryStatus::Deferred);

    // No credentials at all for a proxy that wants them.
    let config = plain(&server).proxy(Proxy::socks5(proxy.addr()));
    let e = send(driver, config).unwrap_err();
    assert!(
        matches!(proxy_failure(&e), ProxyFailure::AuthRequired),
        "{e:?}"
    );
    assert!(server.messages().is_empty());
}
both!(wrong_proxy_password_is_named_never_shown);

fn proxy_down_is_transient(driver: Driver) {
    let server = Aiosmtpd::start();
    let config = plain(&server)
        .timeouts(fast())
        .proxy(Proxy::socks5(format!("127.0.0.1:{}", free_port())));
    let e = send(driver, config).unwrap_err();
    assert!(
        matches!(proxy_failure(&e), ProxyFailure::Unreachable(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("proxy unreachable"), "{e}");
    assert!(e.is_retryable());
    assert_eq!(postline::delivery::status_of(&e), DeliveryStatus::Deferred);
}
both!(proxy_down_is_transient);

fn silent_proxy_is_bounded_by_the_connect_timeout(driver: Driver) {
    let hang = SilentListener::start();
    let config = Config::relay("localhost:25")
        .tls(Tls::None)
        .timeouts(fast())
        .proxy(Proxy::socks5(hang.addr()));
    let t = Instant::now();
    let e = send(driver, config).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        matches!(proxy_failure(&e), ProxyFailure::Timeout(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("did not answer within 1s"), "{e}");
    assert!(e.is_retryable());
}
both!(silent_proxy_is_bounded_by_the_connect_timeout);

fn target_refused_through_the_proxy(driver: Driver) {
    let proxy = Microsocks::start();
    let port = free_port();
    let config = Config::relay(format!("127.0.0.1:{port}"))
        .tls(Tls::None)
        .timeouts(fast())
        .proxy(Proxy::socks5(proxy.addr()));
    let e = send(driver, config).unwrap_err();
    match proxy_failure(&e) {
        ProxyFailure::Refused { target, reply } => {
            assert_eq!(target, &format!("127.0.0.1:{port}"));
            assert_eq!(*reply, Socks5Reply::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .contains("connection refused (SOCKS5 reply 5)"),
        "{e}"
    );
    assert_eq!(e.fault(), Fault::Transient);
}
both!(target_refused_through_the_proxy);

fn source_address_is_the_peer_the_server_sees(driver: Driver) {
    let server = Aiosmtpd::start();
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .source_address("127.0.0.2".parse().unwrap());
    send(driver, config).unwrap();
    let m = &server.wait_for_messages(1, WAIT)[0];
    assert_eq!(m.peer.as_deref(), Some("127.0.0.2"), "{}", m.raw_json);
}
both!(source_address_is_the_peer_the_server_sees);

fn source_address_not_on_this_host_is_a_configuration_error(driver: Driver) {
    let server = Aiosmtpd::start();
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .source_address("192.0.2.77".parse().unwrap());
    let e = send(driver, config).unwrap_err();
    assert!(
        matches!(e, Error::Config(ConfigError::SourceAddress { .. })),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("source address 192.0.2.77: not an address of this host"),
        "{e}"
    );
    assert_eq!(e.fault(), Fault::Local);
    // An IPv6 source for a server with only an IPv4 address.
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .source_address("::1".parse().unwrap());
    let e = send(driver, config).unwrap_err();
    assert!(e.to_string().contains("has no IPv6 address"), "{e}");
}
both!(source_address_not_on_this_host_is_a_configuration_error);

fn source_address_with_a_proxy_binds_the_way_to_the_proxy(driver: Driver) {
    let server = Aiosmtpd::start();
    let proxy = Microsocks::start();
    let config = plain(&server)
        .proxy(Proxy::socks5(proxy.addr()))
        .source_address("127.0.0.3".parse().unwrap());
    send(driver, config).unwrap();
    // The server still sees the proxy's side.
    let m = &server.wait_for_messages(1, WAIT)[0];
    assert_eq!(m.peer.as_deref(), Some(MICROSOCKS_OUTGOING));
}
both!(source_address_with_a_proxy_binds_the_way_to_the_proxy);

#[tokio::test]
async fn mailer_relay_goes_through_the_proxy() {
    let server = Aiosmtpd::start();
    let proxy = Microsocks::start();
    let mailer = Mailer::relay(plain(&server).proxy(Proxy::socks5(proxy.addr())));
    let d = mailer.send(&envelope(), BODY).await.unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered, "{d:?}");
    let m = &server.wait_for_messages(1, WAIT)[0];
    assert_eq!(m.peer.as_deref(), Some(MICROSOCKS_OUTGOING));

    // The proxy gone: every recipient deferred, with the reason in words.
    drop(proxy);
    let d = mailer.send(&envelope(), BODY).await.unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Deferred, "{d:?}");
    assert!(d[0].detail().contains("SOCKS5 proxy"), "{}", d[0].detail());
}
