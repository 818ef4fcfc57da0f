//! A server given as an absolute path is a Unix stream socket: the blocking and tokio clients,
//! the pools and `Mailer` reach aiosmtpd listening on one, and every way of failing to reach
//! a socket (nothing there, a regular file, nobody listening, a full backlog, a server that
//! never greets, a proxy or source address configured with it) ends as a clear error, in time.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use postline::{
    AsyncClient, AsyncPool, Client, Config, ConfigError, Error, Fault, Mailer, Pool, Proxy,
    Timeouts, Tls,
};
use postline::{DeliveryStatus, Envelope};
use postline_testkit::{both, Aiosmtpd};

enum Driver {
    Blocking,
    Tokio,
}

/// What every test must end within.
const BOUND: Duration = Duration::from_secs(20);

/// A message with a dot-stuffed line and no final line break, so the bytes stored show both
/// are handled.
const MESSAGE: &[u8] = b"Subject: over a Unix socket\r\n\r\nHello\r\n.dot\r\nno final break";
const STORED: &[u8] = b"Subject: over a Unix socket\r\n\r\nHello\r\n.dot\r\nno final break\r\n";

fn envelope() -> Envelope {
    Envelope::new("a@client.test", ["b@server.test"]).unwrap()
}

fn config(path: &Path) -> Config {
    Config::relay(path.to_str().unwrap()).hello_name("client.test")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Connects with `driver`, sends [`MESSAGE`] and quits; the peer address seen by the client.
fn send_once(driver: &Driver, config: Config) -> Result<Option<std::net::SocketAddr>, Error> {
    match driver {
        Driver::Blocking => {
            let mut c = Client::connect(config)?;
            c.send_bytes(&envelope(), MESSAGE)?;
            let peer = c.peer_addr();
            c.quit()?;
            Ok(peer)
        }
        Driver::Tokio => runtime().block_on(async {
            let mut c = AsyncClient::connect(config).await?;
            c.send_bytes(&envelope(), MESSAGE).await?;
            let peer = c.peer_addr();
            c.quit().await?;
            Ok(peer)
        }),
    }
}

/// Only connects (the failure tests).
fn connect(driver: &Driver, config: Config) -> Result<(), Error> {
    match driver {
        Driver::Blocking => Client::connect(config).map(drop),
        Driver::Tokio => runtime().block_on(async { AsyncClient::connect(config).await.map(drop) }),
    }
}

fn sends_byte_exact(driver: Driver) {
    let server = Aiosmtpd::builder().unix_socket().start();
    let path = server.unix_socket().unwrap();
    // No TLS mode given: a local socket defaults to none.
    let peer = send_once(&driver, config(path)).unwrap();
    assert_eq!(peer, None, "a Unix socket has no peer address");
    let m = server.wait_for_messages(1, BOUND);
    assert_eq!(
        m[0].content,
        STORED,
        "{:?}",
        String::from_utf8_lossy(&m[0].content)
    );
    assert_eq!(m[0].mail_from, "a@client.test");
    assert_eq!(m[0].rcpt_tos, ["b@server.test"]);
    assert!(!m[0].tls);
}
both!(sends_byte_exact);

fn default_hello_name_is_no_address_literal(driver: Driver) {
    let server = Aiosmtpd::builder().unix_socket().start();
    let path = server.unix_socket().unwrap();
    send_once(&driver, Config::relay(path.to_str().unwrap())).unwrap();
    let m = server.wait_for_messages(1, BOUND);
    let name = m[0].hello_name.clone().unwrap_or_default();
    assert!(!name.is_empty() && !name.starts_with('['), "EHLO {name:?}");
}
both!(default_hello_name_is_no_address_literal);

fn plaintext_auth_still_needs_allowing(driver: Driver) {
    let server = Aiosmtpd::builder()
        .unix_socket()
        .auth("user", "secret")
        .auth_plaintext()
        .start();
    let path = server.unix_socket().unwrap();
    let refused = send_once(&driver, config(path).credentials("user", "secret")).unwrap_err();
    assert!(
        matches!(refused, Error::PlaintextAuthRefused),
        "{refused:?}"
    );
    send_once(
        &driver,
        config(path)
            .credentials("user", "secret")
            .allow_plaintext_auth(true),
    )
    .unwrap();
    let m = server.wait_for_messages(1, BOUND);
    assert_eq!(m[0].auth_user.as_deref(), Some("user"));
}
both!(plaintext_auth_still_needs_allowing);

#[test]
fn url_with_an_empty_host_reaches_the_socket() {
    let server = Aiosmtpd::builder().unix_socket().start();
    let path = server.unix_socket().unwrap().to_str().unwrap().to_owned();
    let config = Config::from_url(&format!("smtp://{path}?helo=client.test")).unwrap();
    send_once(&Driver::Blocking, config).unwrap();
    assert_eq!(server.wait_for_messages(1, BOUND)[0].content, STORED);
}

#[test]
fn pools_and_mailer_over_a_unix_socket() {
    let server = Aiosmtpd::builder().unix_socket().start();
    let path = server.unix_socket().unwrap();
    let pool = Pool::new(config(path)).unwrap();
    for _ in 0..3 {
        let d = pool.send(&envelope(), MESSAGE).unwrap();
        assert_eq!(d[0].status, DeliveryStatus::Delivered, "{d:?}");
    }
    drop(pool);
    runtime().block_on(async {
        let pool = AsyncPool::new(config(path)).unwrap();
        let d = pool.send(&envelope(), MESSAGE).await.unwrap();
        assert_eq!(d[0].status, DeliveryStatus::Delivered, "{d:?}");
        let mailer = Mailer::relay(config(path));
        let d = mailer.send(&envelope(), MESSAGE).await.unwrap();
        assert_eq!(d[0].status, DeliveryStatus::Delivered, "{d:?}");
    });
    let m = server.wait_for_messages(5, BOUND);
    assert!(m.iter().all(|m| m.content == STORED));
}

/// The error of connecting to `path`, checked to name it, within [`BOUND`].
fn unix_error(driver: &Driver, path: &Path, config: Config) -> (std::io::ErrorKind, Fault) {
    let t = Instant::now();
    let e = connect(driver, config).unwrap_err();
    assert!(t.elapsed() < BOUND, "took {:?}", t.elapsed());
    let Error::ConnectUnix { path: p, source } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(p, path);
    assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
    (source.kind(), e.fault())
}

fn missing_path_is_transient(driver: Driver) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.sock");
    let (kind, fault) = unix_error(&driver, &path, config(&path));
    assert_eq!(kind, std::io::ErrorKind::NotFound);
    assert_eq!(fault, Fault::Transient, "the server is not running (yet)");
}
both!(missing_path_is_transient);

fn regular_file_is_not_a_socket(driver: Driver) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.sock");
    std::fs::write(&path, b"not a socket").unwrap();
    let e = connect(&driver, config(&path)).unwrap_err();
    assert!(
        e.to_string().contains("not a socket (a regular file)"),
        "{e}"
    );
    let (kind, fault) = unix_error(&driver, &path, config(&path));
    assert_eq!(kind, std::io::ErrorKind::InvalidInput);
    assert_eq!(fault, Fault::Local, "a configuration to fix");
}
both!(regular_file_is_not_a_socket);

fn nobody_listening_is_transient(driver: Driver) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // the socket file stays behind
    let (kind, fault) = unix_error(&driver, &path, config(&path));
    assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
    assert_eq!(fault, Fault::Transient);
}
both!(nobody_listening_is_transient);

fn full_backlog_honours_the_connect_timeout(driver: Driver) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    // Never accepted: fill the backlog (one pending connection for a backlog of 0; a few more
    // in case a kernel counts otherwise) with non-blocking attempts until one is refused.
    let mut held = Vec::new();
    for _ in 0..64 {
        let s = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            rustix::net::SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        match rustix::net::connect(&s, &SocketAddrUnix::new(&path).unwrap()) {
            Ok(()) => held.push(s),
            Err(_) => break,
        }
    }
    let mut timeouts = Timeouts::default();
    timeouts.connect = Duration::from_millis(500);
    let t = Instant::now();
    let (kind, fault) = unix_error(&driver, &path, config(&path).timeouts(timeouts));
    let took = t.elapsed();
    assert_eq!(kind, std::io::ErrorKind::TimedOut);
    assert_eq!(fault, Fault::Transient);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(held);
}
both!(full_backlog_honours_the_connect_timeout);

fn silent_server_hits_the_greeting_timeout(driver: Driver) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    // Listening, never accepting: the connect completes into the backlog, and no greeting
    // ever comes.
    let _listener = UnixListener::bind(&path).unwrap();
    let mut timeouts = Timeouts::default();
    timeouts.greeting = Duration::from_millis(700);
    let t = Instant::now();
    let e = connect(&driver, config(&path).timeouts(timeouts)).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
both!(silent_server_hits_the_greeting_timeout);

fn proxy_or_source_address_is_a_configuration_error(driver: Driver) {
    let path = Path::new("/run/postline-test/none.sock");
    let e = connect(&driver, config(path).proxy(Proxy::socks5("127.0.0.1:1080"))).unwrap_err();
    assert!(
        matches!(e, Error::Config(ConfigError::UnixSocketProxy(ref p)) if p == path),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("which a SOCKS5 proxy cannot reach"),
        "{e}"
    );
    assert_eq!(e.fault(), Fault::Local);
    let e = connect(&driver, config(path).source_address([127, 0, 0, 1].into())).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config(ConfigError::UnixSocketSourceAddress { path: ref p, .. }) if p == path
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("is a Unix socket"), "{e}");
}
both!(proxy_or_source_address_is_a_configuration_error);

#[test]
fn explicit_tls_over_a_socket_is_kept() {
    // The caller's choice stands (the certificate then needs a name: tls_server_name).
    let c = Config::relay("/run/x.sock").tls(Tls::StartTls);
    assert_eq!(c.tls_mode(), Tls::StartTls);
    let e = Client::connect(c).unwrap_err();
    assert!(
        matches!(e, Error::Config(ConfigError::TlsServerName(_))),
        "{e:?}"
    );
}
