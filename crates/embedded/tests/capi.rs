//! The C API as a C program uses it: `crates/capi` built as a no_std static library (panic
//! abort), `examples/send_mail.c` compiled with gcc against the committed header and linked
//! with it, run against aiosmtpd with AUTH: the mail arrives whole, with its headers, and the
//! program reports each recipient's code. The committed header must be what cbindgen makes
//! of the source.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postline_testkit::{Aiosmtpd, TestCa};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The C program, built once for all the tests here (a second build while another test runs
/// the program would replace it under that test).
fn build() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| build_once(false)).clone()
}

/// The C program built with `-DPOSTLINE_TLS` against the library with its `tls` feature.
fn build_tls() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| build_once(true)).clone()
}

/// Builds the static library in a target directory of its own (the outer build's is busy)
/// and the C program; returns the program's path.
fn build_once(tls: bool) -> PathBuf {
    let root = root();
    let target = root.join(if tls {
        "target/capi-tls"
    } else {
        "target/capi"
    });
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "postline-capi",
            "--profile",
            "nostd",
            "--target-dir",
        ])
        .arg(&target)
        .args(if tls { &["--features", "tls"][..] } else { &[] })
        .current_dir(&root)
        .status()
        .expect("cargo");
    assert!(status.success(), "building postline-capi failed");
    // The committed header is cbindgen's output for this source.
    let generated = std::fs::read_dir(target.join("nostd/build"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("out/postline.h"))
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("cbindgen's header");
    let committed = root.join("crates/capi/include/postline.h");
    assert_eq!(
        std::fs::read_to_string(&generated).unwrap(),
        std::fs::read_to_string(&committed).unwrap(),
        "crates/capi/include/postline.h is stale: copy {} over it",
        generated.display()
    );
    let exe = target.join("send_mail");
    let out = Command::new("gcc")
        .args([
            "-std=c11",
            "-D_POSIX_C_SOURCE=200809L",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
        ])
        .args(if tls { &["-DPOSTLINE_TLS"][..] } else { &[] })
        .arg("-o")
        .arg(&exe)
        .arg(root.join("crates/capi/examples/send_mail.c"))
        .arg("-I")
        .arg(root.join("crates/capi/include"))
        .arg(target.join("nostd/libpostline_capi.a"))
        .output()
        .expect("gcc (Debian's gcc package)");
    assert!(
        out.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn a_c_program_sends_through_aiosmtpd() {
    let exe = build();
    let srv = Aiosmtpd::builder()
        .auth("device", "c-secret")
        .auth_plaintext()
        .reject_rcpt("nobody")
        .start();
    let out = Command::new(&exe)
        .args(["127.0.0.1", &srv.port().to_string(), "sensor@plant.example"])
        .args(["ops@plant.example", "nobody@plant.example"])
        .env("POSTLINE_USER", "device")
        .env("POSTLINE_PASSWORD", "c-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Partial: one recipient refused.
    assert!(stdout.starts_with("result 1 reply 250"), "{stdout}");
    assert!(stdout.contains("rcpt ops@plant.example 250"), "{stdout}");
    assert!(stdout.contains("rcpt nobody@plant.example 550"), "{stdout}");
    let got = srv.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got[0].auth_user.as_deref(), Some("device"));
    assert_eq!(got[0].rcpt_tos, ["ops@plant.example"]);
    let text = String::from_utf8_lossy(&got[0].content);
    for want in [
        "From: <sensor@plant.example>\r\n",
        "Subject: Sensor 4: temperature high\r\n",
        "\r\nDate: ",
        "\r\nMessage-ID: <",
        "X-Priority: 1 (Highest)\r\n",
        "\r\n\r\nTemperature 71.5 C at sensor 4.\r\n.Dot line kept.\r\n",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }

    // A wrong password: the program says so and nothing is stored.
    let out = Command::new(&exe)
        .args([
            "127.0.0.1",
            &srv.port().to_string(),
            "sensor@plant.example",
            "ops@plant.example",
        ])
        .env("POSTLINE_USER", "device")
        .env("POSTLINE_PASSWORD", "wrong")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.starts_with("result 15 reply 535"), "{stdout}");
    assert_eq!(srv.messages().len(), 1);
}

/// More recipients than `POSTLINE_MAX_RECIPIENTS`: refused as an argument error before the
/// connection is even opened; every code is 0.
#[test]
fn too_many_recipients_are_refused_before_connecting() {
    let exe = build();
    let srv = Aiosmtpd::builder().count_sessions().start();
    let to: Vec<String> = (0..9).map(|i| format!("r{i}@plant.example")).collect();
    let out = Command::new(&exe)
        .args(["127.0.0.1", &srv.port().to_string(), "sensor@plant.example"])
        .args(&to)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("result 10 reply 0 \n"), "{stdout}");
    assert_eq!(stdout.matches(" 0\n").count(), 9, "{stdout}");
    assert_eq!(srv.sessions().total, 0);
    // Eight is allowed, and each gets its own code.
    let out = Command::new(&exe)
        .args(["127.0.0.1", &srv.port().to_string(), "sensor@plant.example"])
        .args(&to[..8])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("result 0 reply 250"), "{stdout}");
    assert_eq!(stdout.matches(" 250\n").count(), 8, "{stdout}");
    assert_eq!(
        srv.wait_for_messages(1, Duration::from_secs(10))[0].rcpt_tos,
        to[..8]
    );
}

/// A session refused at AUTH is still open: the C API ends it with QUIT (RFC 5321 4.1.1.10)
/// before closing, and says why the mail was not sent.
#[test]
fn a_refused_login_still_says_quit() {
    use postline_testkit::{greeting_and_ehlo, ScriptedServer, Step};
    let exe = build();
    let mut script = greeting_and_ehlo(&["AUTH PLAIN"]);
    script.extend([
        Step::expect("AUTH PLAIN"),
        Step::reply("535 5.7.8 Authentication credentials invalid"),
        Step::expect("QUIT"),
        Step::reply("221 2.0.0 Bye"),
    ]);
    let server = ScriptedServer::start(script);
    let out = Command::new(&exe)
        .args(["127.0.0.1", &server.port().to_string()])
        .args(["sensor@plant.example", "ops@plant.example"])
        .env("POSTLINE_USER", "device")
        .env("POSTLINE_PASSWORD", "wrong")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("result 15 reply 535"), "{stdout}");
    let report = server.finish();
    report.assert_ok();
    assert!(
        report.received_str().ends_with("QUIT\r\n"),
        "{}",
        report.received_str()
    );
}

/// A C program compiled for one layout of `postline_client` does not link with the library
/// built for the other (it would see a struct of another size): compiled without
/// `POSTLINE_TLS` against the library with TLS, and with it against the library without;
/// each finds no create function for its layout.
#[test]
fn a_c_program_for_the_other_layout_does_not_link() {
    build();
    build_tls();
    let root = root();
    for (define, lib, missing) in [
        (
            None,
            "target/capi-tls/nostd/libpostline_capi.a",
            "postline_client_create",
        ),
        (
            Some("-DPOSTLINE_TLS"),
            "target/capi/nostd/libpostline_capi.a",
            "postline_client_create_tls",
        ),
    ] {
        let out = Command::new("gcc")
            .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O1"])
            .args(define)
            .arg("-o")
            .arg(root.join("target/capi-tls/send_mail_other_layout"))
            .arg(root.join("crates/capi/examples/send_mail.c"))
            .arg("-I")
            .arg(root.join("crates/capi/include"))
            .arg(root.join(lib))
            .output()
            .expect("gcc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{define:?} linked with {lib}");
        // GNU ld's wording, and lld's.
        assert!(
            stderr.contains(&format!("undefined reference to `{missing}'"))
                || stderr.contains(&format!("undefined symbol: {missing}\n")),
            "{stderr}"
        );
    }
}

/// The C program with TLS (`postline_client_tls`), the server's certificate checked against
/// the CA given: STARTTLS and implicit TLS through aiosmtpd with AUTH and no clear-text
/// allowance (the server sees TLS and the login), and a certificate from another CA refused
/// with POSTLINE_RESULT_ERR_TLS before anything is sent.
#[test]
fn a_c_program_sends_over_tls() {
    let exe = build_tls();
    let ca = TestCa::with_server_names(&["mail.test"]);
    let dir = std::env::temp_dir().join(format!("postline-capi-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.der");
    std::fs::write(&ca_file, &ca.ca_der).unwrap();
    let other_file = dir.join("other.der");
    std::fs::write(&other_file, &TestCa::other().ca_der).unwrap();
    let send_with = |port: u16, mode: &str, ca: &Path, random_fails: bool| {
        let mut cmd = Command::new(&exe);
        if random_fails {
            cmd.env("POSTLINE_RANDOM_FAIL", "1");
        }
        cmd.args(["127.0.0.1", &port.to_string(), "sensor@plant.example"])
            .args(["ops@plant.example", "nobody@plant.example"])
            .env("POSTLINE_USER", "device")
            .env("POSTLINE_PASSWORD", "c-secret")
            .env("POSTLINE_TLS", mode)
            .env("POSTLINE_CA", ca)
            .env("POSTLINE_SERVER_NAME", "mail.test")
            .output()
            .unwrap()
    };
    let send = |port: u16, mode: &str, ca: &Path| send_with(port, mode, ca, false);
    let starttls = Aiosmtpd::builder()
        .starttls_with(&ca)
        .auth("device", "c-secret")
        .reject_rcpt("nobody")
        .start();
    let implicit = Aiosmtpd::builder()
        .implicit_tls_with(&ca)
        .auth("device", "c-secret")
        .reject_rcpt("nobody")
        .start();
    for (srv, mode) in [(&starttls, "starttls"), (&implicit, "implicit")] {
        let out = send(srv.port(), mode, &ca_file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("result 1 reply 250"), "{mode}: {stdout}");
        assert!(stdout.contains("rcpt nobody@plant.example 550"), "{stdout}");
        let got = srv.wait_for_messages(1, Duration::from_secs(10));
        assert!(got[0].tls, "{mode}: the server did not see TLS");
        assert_eq!(got[0].auth_user.as_deref(), Some("device"));
        assert!(String::from_utf8_lossy(&got[0].content).contains("Dot line kept"));
    }
    // Another CA: refused before anything is sent, the password included.
    let out = send(starttls.port(), "starttls", &other_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.starts_with("result 17 "), "{stdout}");
    assert_eq!(starttls.messages().len(), 1);
    // The randomness failing: ERR_TLS, nothing under TLS (no ClientHello, no login).
    let out = send_with(implicit.port(), "implicit", &ca_file, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("result 17 "), "{stdout}");
    assert_eq!(implicit.messages().len(), 1);
    // A server without STARTTLS: ERR_TLS, and neither the password nor the mail goes.
    let clear = Aiosmtpd::builder().auth("device", "c-secret").start();
    let out = send(clear.port(), "starttls", &ca_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("result 17 "), "{stdout}");
    assert!(clear.messages().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The randomness fails in the middle of the handshake (it passed the library's check before
/// connecting): ERR_TLS, and not one byte of TLS, nor anything in clear text after STARTTLS's
/// 220 (no login, no QUIT), reaches the server; with implicit TLS, nothing at all.
#[test]
fn randomness_failing_during_the_handshake_sends_nothing_more() {
    use postline_testkit::{greeting_and_ehlo, ScriptedServer, Step};
    let exe = build_tls();
    let ca = TestCa::with_server_names(&["mail.test"]);
    let dir = std::env::temp_dir().join(format!("postline-capi-rng-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.der");
    std::fs::write(&ca_file, &ca.ca_der).unwrap();
    let send = |port: u16, mode: &str| {
        Command::new(&exe)
            .args(["127.0.0.1", &port.to_string(), "sensor@plant.example"])
            .arg("ops@plant.example")
            .env("POSTLINE_USER", "device")
            .env("POSTLINE_PASSWORD", "c-secret")
            .env("POSTLINE_TLS", mode)
            .env("POSTLINE_CA", &ca_file)
            .env("POSTLINE_SERVER_NAME", "mail.test")
            .env("POSTLINE_RANDOM_FAIL", "later")
            .output()
            .unwrap()
    };
    let mut script = greeting_and_ehlo(&["STARTTLS", "AUTH PLAIN"]);
    script.extend([
        Step::expect("STARTTLS"),
        Step::reply("220 2.0.0 go ahead"),
        // The client's next bytes would be its ClientHello: none come, the connection ends.
        Step::ExpectBytes(1),
    ]);
    let server = ScriptedServer::start(script);
    let out = send(server.port(), "starttls");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("result 17 "), "{stdout}");
    let report = server.finish();
    let seen = report.received_str();
    assert!(seen.starts_with("EHLO "), "{seen}");
    assert!(seen.ends_with("\r\nSTARTTLS\r\n"), "{seen}");
    assert_eq!(seen.matches("\r\n").count(), 2, "{seen}");
    // Implicit TLS: the ClientHello is the first byte, and it never leaves.
    let server = ScriptedServer::start(vec![Step::ExpectBytes(1)]);
    let out = send(server.port(), "implicit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("result 17 "), "{stdout}");
    let report = server.finish();
    // Connected (the check before connecting passed), and sent nothing.
    assert_eq!(report.connections.len(), 1);
    assert!(report.received.is_empty(), "{}", report.received_str());
    let _ = std::fs::remove_dir_all(&dir);
}
