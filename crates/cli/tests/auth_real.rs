//! `postline send` authenticating at a real Postfix with Dovecot SASL (SCRAM-SHA-256, PLAIN,
//! LOGIN; a wrong password exits 77), and with a client certificate through SASL EXTERNAL at
//! Dovecot's submission service.

use std::time::Duration;

use postline_testkit::{run_code, stderr, ExternalSubmission, Sandbox, SaslRelay};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn passwords_at_postfix_with_dovecot_and_a_wrong_one_exits_77() {
    let relay = SaslRelay::start("alice", "pencil", "plain login scram-sha-256");
    let (pf, ca) = (&relay.postfix, &relay.ca);
    let sb = Sandbox::new();
    let send = |port: u16, tls: &str, password: &str, extra: &[&str]| {
        let mut c = sb
            .send_bare()
            .server(format!("localhost:{port}"))
            .tls(tls)
            .timeout(15)
            .ca_file(&ca.ca_path)
            .user("alice")
            .password_env("POSTLINE_TEST_PW")
            .env("POSTLINE_TEST_PW", password)
            .from("alice@client.test")
            .to("bob@server.test")
            .subject("auth")
            .body("hello")
            .verbose()
            .into_command();
        c.args(extra);
        c
    };
    let sub = pf.submission_port().unwrap();
    let smtps = pf.smtps_port().unwrap();

    let o = run_code(send(sub, "starttls", "pencil", &[]), 0);
    assert!(
        stderr(&o).contains("C: AUTH SCRAM-SHA-256 ***"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("pencil"), "{}", stderr(&o));
    // PLAIN and LOGIN carry the password in base64: the transcript shows none of it.
    for (port, tls, mech) in [(smtps, "implicit", "plain"), (sub, "starttls", "login")] {
        let o = run_code(send(port, tls, "pencil", &["--auth", mech]), 0);
        let err = stderr(&o);
        for secret in ["pencil", "cGVuY2ls", "AGFsaWNlAHBlbmNpbA==", "YWxpY2U="] {
            assert!(!err.contains(secret), "{mech}: {secret} in {err}");
        }
        assert!(
            err.contains(&format!("C: AUTH {} ", mech.to_uppercase()))
                || err.contains(&format!("C: AUTH {}", mech.to_uppercase())),
            "{err}"
        );
    }
    assert_eq!(pf.wait_for_messages(3, WAIT).len(), 3);

    for (port, tls) in [(sub, "starttls"), (smtps, "implicit")] {
        let o = run_code(send(port, tls, "wrong", &[]), 77);
        assert!(stderr(&o).contains("535"), "{}", stderr(&o));
    }
}

#[test]
fn external_with_a_client_certificate() {
    let ext = ExternalSubmission::start("alice");
    let (alice, sink, dovecot, server_ca) = (&ext.cert, &ext.sink, &ext.dovecot, &ext.server_ca);
    let sb = Sandbox::new();
    let send = |extra: &[&str]| {
        let mut c = sb
            .send_bare()
            .server(dovecot.submission_addr())
            .tls("starttls")
            .timeout(15)
            .ca_file(&server_ca.ca_path)
            .from("alice@client.test")
            .to("bob@server.test")
            .subject("external")
            .body("by certificate")
            .arg("--auth")
            .arg("external")
            .into_command();
        c.args(extra);
        c
    };
    let cert = alice.cert_path.to_str().unwrap();
    let key = alice.key_path.to_str().unwrap();
    run_code(send(&["--cert", cert, "--key", key]), 0);
    assert_eq!(sink.wait_for_messages(1, WAIT).len(), 1);
    let o = run_code(send(&[]), 78);
    assert!(
        stderr(&o).contains("needs a client certificate"),
        "{}",
        stderr(&o)
    );
    let bob = ext.clients.client_cert("bob");
    let o = run_code(
        send(&[
            "--cert",
            bob.cert_path.to_str().unwrap(),
            "--key",
            bob.key_path.to_str().unwrap(),
        ]),
        77,
    );
    assert!(stderr(&o).contains("535"), "{}", stderr(&o));
}
