//! `postline` with the kind of certificate people really have: one made by
//! `openssl req -x509` (self-signed, `CA:TRUE`, only a common name), served by a real aiosmtpd
//! on loopback. Trusted with `--ca-file`, pinned with `--tls-fingerprint` or
//! `--pinned-pubkey` (the values `postline probe` prints, which must equal openssl's), refused
//! with a wrong pin (exit 69, naming what was seen).

use std::time::Duration;

use postline_testkit::{run_code, stderr, stdout, Aiosmtpd, Sandbox, SelfSigned};

const STORE_WAIT: Duration = Duration::from_secs(10);

fn server(cert: &SelfSigned) -> Aiosmtpd {
    Aiosmtpd::builder()
        .starttls(&cert.cert_path, &cert.key_path)
        .start()
}

/// `postline probe` of `srv` over STARTTLS with `extra` flags, expected to exit `code` (69
/// when the certificate does not verify).
fn probe(sb: &Sandbox, srv: &Aiosmtpd, extra: &[&str], code: i32) -> std::process::Output {
    let addr = format!("localhost:{}", srv.port());
    let mut args = vec![
        "probe",
        "--server",
        &addr,
        "--tls",
        "starttls",
        "--timeout",
        "10",
    ];
    args.extend(extra);
    run_code(sb.cmd(&args), code)
}

fn send(sb: &Sandbox, srv: &Aiosmtpd, host: &str, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = sb
        .send_bare()
        .server(format!("{host}:{}", srv.port()))
        .tls("starttls")
        .timeout(10)
        .from("a@client.test")
        .to("b@server.test")
        .subject("trust")
        .body("hello")
        .into_command();
    cmd.args(extra);
    cmd
}

#[test]
fn an_openssl_self_signed_certificate_is_trusted_with_ca_file() {
    let cert = SelfSigned::new();
    let srv = server(&cert);
    let sb = Sandbox::new();

    // Not trusted: 69, in words, with the fingerprint and the flags that fix it.
    let o = run_code(send(&sb, &srv, "localhost", &[]), 69);
    let err = stderr(&o);
    assert!(err.contains("self-signed"), "{err}");
    assert!(err.contains(&cert.fingerprint_sha256), "{err}");
    assert!(
        err.contains("--ca-file") && err.contains("--tls-fingerprint"),
        "{err}"
    );
    for enum_text in ["CaUsedAsEndEntity", "Other(", "OtherError", "UnknownIssuer"] {
        assert!(!err.contains(enum_text), "no Rust enum for people: {err}");
    }

    // The very certificate given with --ca-file: delivered.
    let ca = cert.cert_path.to_str().unwrap();
    run_code(send(&sb, &srv, "localhost", &["--ca-file", ca]), 0);
    // The same file under another name for the server: the name still counts.
    let o = run_code(send(&sb, &srv, "127.0.0.1", &["--ca-file", ca]), 69);
    assert!(
        stderr(&o).contains("is for localhost, not 127.0.0.1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(srv.wait_for_messages(1, STORE_WAIT).len(), 1);
}

#[test]
fn pins_as_openssl_prints_them_are_accepted_and_a_wrong_one_names_what_was_seen() {
    let cert = SelfSigned::new();
    let srv = server(&cert);
    let sb = Sandbox::new();

    // openssl's own spelling, and the same without colons in lower case.
    let fp = cert.fingerprint_sha256.clone();
    run_code(send(&sb, &srv, "localhost", &["--tls-fingerprint", &fp]), 0);
    let bare = fp.replace(':', "").to_lowercase();
    run_code(
        send(&sb, &srv, "127.0.0.1", &["--tls-fingerprint", &bare]),
        0,
    );
    run_code(
        send(&sb, &srv, "localhost", &["--pinned-pubkey", &cert.spki_pin]),
        0,
    );
    assert_eq!(srv.wait_for_messages(3, STORE_WAIT).len(), 3);

    // A wrong fingerprint: 69, nothing sent, the fingerprint seen named.
    let wrong = "00:".repeat(31) + "00";
    let o = run_code(
        send(&sb, &srv, "localhost", &["--tls-fingerprint", &wrong]),
        69,
    );
    let err = stderr(&o);
    assert!(err.contains("matches no pin"), "{err}");
    assert!(err.contains(&fp) && err.contains(&cert.spki_pin), "{err}");
    // A wrong public key pin, even with the certificate trusted as a CA file.
    let o = run_code(
        send(
            &sb,
            &srv,
            "localhost",
            &[
                "--ca-file",
                cert.cert_path.to_str().unwrap(),
                "--pinned-pubkey",
                "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ],
        ),
        69,
    );
    assert!(stderr(&o).contains(&cert.spki_pin), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(srv.messages().len(), 3, "nothing more was delivered");

    // Malformed pins are usage errors, said plainly.
    let o = run_code(
        send(&sb, &srv, "localhost", &["--tls-fingerprint", "abcd"]),
        64,
    );
    assert!(
        stderr(&o).contains("64 hex digits") || stderr(&o).contains("32 bytes"),
        "{}",
        stderr(&o)
    );
    let sha1 = "AB:".repeat(19) + "CD";
    let o = run_code(
        send(&sb, &srv, "localhost", &["--tls-fingerprint", &sha1]),
        64,
    );
    assert!(stderr(&o).contains("SHA-1"), "{}", stderr(&o));
}

#[test]
fn probe_prints_the_values_to_pin_as_openssl_computes_them() {
    let cert = SelfSigned::new();
    let srv = server(&cert);
    let sb = Sandbox::new();
    let o = probe(&sb, &srv, &[], 69);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("sha256:  {}", cert.fingerprint_sha256)),
        "{out}"
    );
    assert!(
        out.contains(&format!("pubkey:  {}", cert.spki_pin)),
        "{out}"
    );
    assert!(out.contains("(self-signed)"), "{out}");
    assert!(out.contains("verifies: NO"), "{out}");

    let o = probe(&sb, &srv, &["--json"], 69);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let c = &v["tls"]["certificate"];
    assert_eq!(c["fingerprint_sha256"], cert.fingerprint_sha256.as_str());
    assert_eq!(c["pinned_pubkey"], cert.spki_pin.as_str());
    assert_eq!(c["names"][0], "localhost");
    assert_eq!(v["tls"]["verified"], false);

    // Pinned with what probe printed, probe says it verifies.
    let o = probe(
        &sb,
        &srv,
        &["--tls-fingerprint", &cert.fingerprint_sha256],
        0,
    );
    assert!(stdout(&o).contains("verifies: yes"), "{}", stdout(&o));
}

#[test]
fn require_tls_and_client_certificate_flags_refuse_what_cannot_work() {
    let sb = Sandbox::new();
    let base = |extra: &[&str]| {
        let mut c = sb
            .send_bare()
            .server("127.0.0.1:9")
            .from("a@client.test")
            .to("b@server.test")
            .body("x")
            .into_command();
        c.args(extra);
        c
    };
    let o = run_code(base(&["--require-tls", "--tls", "none"]), 64);
    assert!(
        stderr(&o).contains("--require-tls needs TLS"),
        "{}",
        stderr(&o)
    );
    let o = run_code(base(&["--require-tls", "--insecure"]), 64);
    assert!(
        stderr(&o).contains("verified certificate"),
        "{}",
        stderr(&o)
    );
    // --cert alone: the key is looked for in the same file.
    let o = run_code(base(&["--cert", "/nonexistent.pem"]), 66);
    assert!(
        stderr(&o).contains("--cert /nonexistent.pem: not found"),
        "{}",
        stderr(&o)
    );
    let o = run_code(base(&["--key", "/nonexistent.key"]), 64);
    assert!(stderr(&o).contains("--key needs --cert"), "{}", stderr(&o));
    let o = run_code(
        base(&["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"]),
        66,
    );
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    // A pin cannot be switched off by --insecure, nor spread over every exchanger.
    let pin = "AB:".repeat(31) + "CD";
    let o = run_code(base(&["--insecure", "--tls-fingerprint", &pin]), 64);
    assert!(
        stderr(&o).contains("--insecure would not check"),
        "{}",
        stderr(&o)
    );
    let mut direct = sb
        .send_bare()
        .from("a@client.test")
        .to("b@server.test")
        .body("x")
        .into_command();
    direct.args(["--tls-fingerprint", &pin]);
    let o = run_code(direct, 64);
    assert!(stderr(&o).contains("give --server"), "{}", stderr(&o));
    let o = run_code(base(&["--pinned-pubkey", ";"]), 64);
    assert!(stderr(&o).contains("no pin in it"), "{}", stderr(&o));
}

#[test]
fn a_key_that_is_not_the_certificates_is_said_in_words() {
    let ca = postline_testkit::TestCa::new();
    let alice = ca.client_cert("alice");
    let other = ca.client_cert("bob");
    let srv = Aiosmtpd::builder().starttls_with(&ca).start();
    let sb = Sandbox::new();
    let with_key = |key: &std::path::Path| {
        send(
            &sb,
            &srv,
            "localhost",
            &[
                "--ca-file",
                ca.ca_path.to_str().unwrap(),
                "--cert",
                alice.cert_path.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
        )
    };
    let o = run_code(with_key(&other.key_path), 78);
    let err = stderr(&o);
    assert!(err.contains("not this certificate's private key"), "{err}");
    assert!(!err.contains("KeyMismatch"), "{err}");
    // A key file that is not PEM.
    let garbage = sb.path("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\n!!!\n").unwrap();
    let o = run_code(with_key(&garbage), 78);
    let err = stderr(&o);
    assert!(
        err.contains("not valid PEM") || err.contains("no PEM private key"),
        "{err}"
    );
    assert!(
        !err.contains("InvalidCharacter") && !err.contains("[45"),
        "{err}"
    );
    assert!(srv.messages().is_empty());
}

#[test]
fn probe_with_require_tls_still_probes() {
    let cert = SelfSigned::new();
    let srv = server(&cert);
    let sb = Sandbox::new();
    let o = probe(
        &sb,
        &srv,
        &[
            "--require-tls",
            "--ca-file",
            cert.cert_path.to_str().unwrap(),
        ],
        0,
    );
    assert!(stdout(&o).contains("verifies: yes"), "{}", stdout(&o));
}

#[test]
fn system_roots_adds_the_operating_systems_store() {
    // rustls-native-certs reads SSL_CERT_FILE when set: the test's CA stands in for the
    // system store.
    let ca = postline_testkit::TestCa::new();
    let srv = Aiosmtpd::builder().starttls_with(&ca).start();
    let sb = Sandbox::new();
    let mut without = send(&sb, &srv, "localhost", &[]);
    without.env("SSL_CERT_FILE", &ca.ca_path);
    run_code(without, 69);
    let mut with = send(&sb, &srv, "localhost", &["--system-roots"]);
    with.env("SSL_CERT_FILE", &ca.ca_path);
    run_code(with, 0);
    assert_eq!(srv.wait_for_messages(1, STORE_WAIT).len(), 1);
}

#[test]
fn account_trust_settings_resolve_like_a_config_file_should() {
    let cert = SelfSigned::new();
    let srv = server(&cert);
    let sb = Sandbox::new();
    // Relative to the config file's directory, not to where postline runs.
    std::fs::copy(&cert.cert_path, sb.path("server.pem")).unwrap();
    sb.config(&format!(
        "[accounts.pinned]\nserver = \"localhost\"\nport = {}\ntls = \"starttls\"\nca_file = \"server.pem\"\n",
        srv.port()
    ));
    let send_as = |account: &str| {
        let mut c = sb
            .send_bare()
            .account(account)
            .timeout(10)
            .from("a@client.test")
            .to("b@server.test")
            .body("x")
            .into_command();
        c.current_dir("/");
        c
    };
    run_code(send_as("pinned"), 0);
    assert_eq!(srv.wait_for_messages(1, STORE_WAIT).len(), 1);

    // A bad pin in the file is the file's fault (78), and the message names the account.
    sb.config(&format!(
        "[accounts.pinned]\nserver = \"localhost\"\nport = {}\ntls_fingerprint = \"84:B5\"\n",
        srv.port()
    ));
    let o = run_code(send_as("pinned"), 78);
    assert!(
        stderr(&o).contains("account \"pinned\": tls_fingerprint"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn client_key_files_people_have() {
    let ca = postline_testkit::TestCa::new();
    let alice = ca.client_cert("alice");
    let srv = Aiosmtpd::builder().starttls_with(&ca).start();
    let sb = Sandbox::new();
    let ca_path = ca.ca_path.to_str().unwrap();
    // Certificate and key in one file, no --key: as curl and msmtp take it.
    let combined = alice.combined_path.to_str().unwrap();
    run_code(
        send(
            &sb,
            &srv,
            "localhost",
            &["--ca-file", ca_path, "--cert", combined],
        ),
        0,
    );
    // An encrypted key: said so, with the way out.
    let enc = sb.path("enc.pem");
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-aes256", "-passout", "pass:secret", "-in"])
        .arg(&alice.key_path)
        .arg("-out")
        .arg(&enc)
        .status()
        .unwrap();
    assert!(ok.success());
    let cert = alice.cert_path.to_str().unwrap();
    let o = run_code(
        send(
            &sb,
            &srv,
            "localhost",
            &[
                "--ca-file",
                ca_path,
                "--cert",
                cert,
                "--key",
                enc.to_str().unwrap(),
            ],
        ),
        78,
    );
    assert!(stderr(&o).contains("it is encrypted"), "{}", stderr(&o));
    assert!(stderr(&o).contains("openssl pkey"), "{}", stderr(&o));
    assert_eq!(srv.wait_for_messages(1, STORE_WAIT).len(), 1);
}

#[test]
fn an_address_as_helo_goes_out_as_an_address_literal() {
    let srv = Aiosmtpd::start();
    let sb = Sandbox::new();
    let o = run_code(
        sb.send(&srv.addr())
            .helo("192.0.2.7")
            .from("a@client.test")
            .to("b@server.test")
            .body("x")
            .verbose(),
        0,
    );
    assert!(stderr(&o).contains("C: EHLO [192.0.2.7]"), "{}", stderr(&o));
}
