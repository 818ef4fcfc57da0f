//! `--proxy`, `--source-address` and the account fields `proxy` / `source_address`: the
//! `postline` binary through a real SOCKS5 proxy (microsocks, outgoing side bound to
//! 127.0.0.9) to a real aiosmtpd, for `send`, `probe`, sendmail mode and queued routes. The
//! server's recorded peer proves who carried the session.

use std::time::{Duration, Instant};

use postline_testkit::{
    free_port, run_code, stderr, stdout, Aiosmtpd, Microsocks, Sandbox, SilentListener, TestCa,
    MICROSOCKS_OUTGOING,
};

const STORE_WAIT: Duration = Duration::from_secs(10);
const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "pr0xy-Secret";

fn server_by_name(srv: &Aiosmtpd) -> String {
    format!("localhost:{}", srv.port())
}

#[test]
fn send_through_the_proxy_with_password_from_env_and_starttls() {
    let ca = TestCa::new();
    let srv = Aiosmtpd::builder()
        .starttls_with(&ca)
        .require_starttls()
        .start();
    let proxy = Microsocks::with_auth(PROXY_USER, PROXY_PASSWORD);
    let sb = Sandbox::new();
    let o = run_code(
        sb.send_bare()
            .server(server_by_name(&srv))
            .tls("starttls")
            .ca_file(&ca.ca_path)
            .arg("--proxy")
            .arg(format!("socks5h://{PROXY_USER}@{}", proxy.addr()))
            .args(["--proxy-password-env", "PROXY_PW"])
            .env("PROXY_PW", PROXY_PASSWORD)
            .timeout(5)
            .verbose()
            .from("a@example.com")
            .to("b@example.com")
            .body("through the proxy"),
        0,
    );
    assert!(!stderr(&o).contains(PROXY_PASSWORD), "{}", stderr(&o));
    let m = &srv.wait_for_messages(1, STORE_WAIT)[0];
    assert!(m.tls);
    assert_eq!(
        m.peer.as_deref(),
        Some(MICROSOCKS_OUTGOING),
        "{}",
        m.raw_json
    );
}

#[test]
fn wrong_proxy_password_exits_77_without_showing_it() {
    let srv = Aiosmtpd::start();
    let proxy = Microsocks::with_auth(PROXY_USER, PROXY_PASSWORD);
    let sb = Sandbox::new();
    let o = run_code(
        sb.send_bare()
            .server(srv.addr())
            .tls("none")
            .arg("--proxy")
            .arg(format!(
                "socks5://{PROXY_USER}:WRONG-hunter2@{}",
                proxy.addr()
            ))
            .timeout(5)
            .json()
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        77,
    );
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!all.contains("hunter2"), "{all}");
    assert!(
        all.contains("refused the credentials of user \\\"proxyuser\\\"")
            || all.contains("refused the credentials of user \"proxyuser\""),
        "{all}"
    );
    assert!(srv.messages().is_empty());
}

#[test]
fn proxy_down_is_75_and_a_silent_proxy_is_bounded() {
    let sb = Sandbox::new();
    let o = run_code(
        sb.send_bare()
            .server("localhost:25")
            .tls("none")
            .arg("--proxy")
            .arg(format!("socks5://127.0.0.1:{}", free_port()))
            .timeout(2)
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        75,
    );
    assert!(stderr(&o).contains("proxy unreachable"), "{}", stderr(&o));

    let hang = SilentListener::start();
    let t = Instant::now();
    let o = run_code(
        sb.send_bare()
            .server("localhost:25")
            .tls("none")
            .arg("--proxy")
            .arg(format!("socks5://{}", hang.addr()))
            .timeout(1)
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        75,
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        stderr(&o).contains("did not answer within 1s"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn source_address_is_the_peer_and_a_foreign_one_is_a_config_error() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    run_code(
        sb.send_bare()
            .server(srv.addr())
            .tls("none")
            .args(["--source-address", "127.0.0.2"])
            .timeout(5)
            .from("a@example.com")
            .to("b@example.com")
            .body("from 127.0.0.2"),
        0,
    );
    let m = &srv.wait_for_messages(1, STORE_WAIT)[0];
    assert_eq!(m.peer.as_deref(), Some("127.0.0.2"), "{}", m.raw_json);

    let o = run_code(
        sb.send_bare()
            .server(srv.addr())
            .tls("none")
            .args(["--source-address", "192.0.2.77"])
            .timeout(5)
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        78,
    );
    assert!(
        stderr(&o).contains("source address 192.0.2.77: not an address of this host"),
        "{}",
        stderr(&o)
    );
    run_code(
        sb.send_bare()
            .server(srv.addr())
            .args(["--source-address", "not-an-ip"])
            .to("b@example.com")
            .body("x"),
        64,
    );
}

#[test]
fn probe_through_the_proxy() {
    let srv = Aiosmtpd::start();
    let proxy = Microsocks::start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.cmd(&[
            "probe",
            "--server",
            &server_by_name(&srv),
            "--tls",
            "none",
            "--proxy",
            &format!("socks5://{}", proxy.addr()),
            "--timeout",
            "5",
        ]),
        0,
    );
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("extensions")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn account_fields_in_sendmail_mode_and_a_password_in_the_file_refused() {
    let srv = Aiosmtpd::start();
    let proxy = Microsocks::with_auth(PROXY_USER, PROXY_PASSWORD);
    let sb = Sandbox::new();
    sb.config(&format!(
        r#"
[accounts.work]
server = "localhost"
port = {port}
tls = "none"
from = "daemon@example.com"
proxy = "socks5://{PROXY_USER}@{addr}"
proxy_password_env = "PROXY_PW"
source_address = "127.0.0.1"
"#,
        port = srv.port(),
        addr = proxy.addr(),
    ));
    run_code(
        sb.sendmail_symlink()
            .env("PROXY_PW", PROXY_PASSWORD)
            .args(["-oi", "root@example.org"])
            .write_stdin("Subject: cron\r\n\r\nthrough the account's proxy\r\n"),
        0,
    );
    let m = &srv.wait_for_messages(1, STORE_WAIT)[0];
    assert_eq!(
        m.peer.as_deref(),
        Some(MICROSOCKS_OUTGOING),
        "{}",
        m.raw_json
    );

    sb.config(&format!(
        r#"
[accounts.work]
server = "localhost"
proxy = "socks5://{PROXY_USER}:{PROXY_PASSWORD}@{addr}"
"#,
        addr = proxy.addr(),
    ));
    let o = run_code(
        sb.send_bare()
            .to("b@example.com")
            .from("a@example.com")
            .body("x"),
        78,
    );
    let err = stderr(&o);
    assert!(!err.contains(PROXY_PASSWORD), "{err}");
    assert!(err.contains("proxy_password_env"), "{err}");
}

#[test]
fn queued_route_keeps_the_proxy_and_where_its_password_comes_from() {
    let srv = Aiosmtpd::builder().tempfail_first(1).start();
    let proxy = Microsocks::with_auth(PROXY_USER, PROXY_PASSWORD);
    let sb = Sandbox::new();
    let url = format!("socks5://{PROXY_USER}@{}", proxy.addr());
    run_code(
        sb.send_bare()
            .server(server_by_name(&srv))
            .tls("none")
            .args(["--proxy", &url, "--proxy-password-env", "PROXY_PW"])
            .args(["--source-address", "127.0.0.1", "--queue", "--queue-dir"])
            .arg(sb.spool())
            .env("PROXY_PW", PROXY_PASSWORD)
            .timeout(5)
            .from("a@example.com")
            .to("b@example.com")
            .body("queued through the proxy"),
        0,
    );
    // The spool names the variable, never the password.
    let mut found_route = false;
    for entry in walk(&sb.spool()) {
        let data = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&data);
        assert!(!text.contains(PROXY_PASSWORD), "{}", entry.display());
        found_route |= text.contains("PROXY_PW") && text.contains(&url);
    }
    assert!(found_route, "no route with the proxy in the spool");
    let o = run_code(sb.queue("flush", &[]).env("PROXY_PW", PROXY_PASSWORD), 0);
    assert!(stdout(&o).contains("delivered 1"), "{}", stdout(&o));
    let m = &srv.wait_for_messages(1, STORE_WAIT)[0];
    assert_eq!(m.peer.as_deref(), Some(MICROSOCKS_OUTGOING));

    // A password typed into --proxy cannot be queued.
    let o = run_code(
        sb.send_bare()
            .server(server_by_name(&srv))
            .tls("none")
            .arg("--proxy")
            .arg(format!(
                "socks5://{PROXY_USER}:{PROXY_PASSWORD}@{}",
                proxy.addr()
            ))
            .arg("--queue-only")
            .arg("--queue-dir")
            .arg(sb.spool())
            .from("a@example.com")
            .to("b@example.com")
            .body("x"),
        64,
    );
    assert!(!stderr(&o).contains(PROXY_PASSWORD), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--proxy-password-env"),
        "{}",
        stderr(&o)
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
