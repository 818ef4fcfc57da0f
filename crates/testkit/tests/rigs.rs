//! Self-tests of the real-server rigs (private Postfix and Dovecot, client certificates, the
//! openssl-made self-signed certificate, aiosmtpd's SCRAM), driven by Python's smtplib/ssl (and
//! scramp's SCRAM client) from the interop venv and by the `openssl` tool: nothing here uses
//! postline's own client.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postline_testkit::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// One SMTP session by Python's smtplib, described by `spec` (see `CLIENT`); returns its JSON
/// report: `ehlo`, `starttls`, `ehlo_tls`, `auth`, `send` as `[code, text]`, `error` when the
/// session broke off, and for SCRAM `server_final_verified`.
const CLIENT: &str = r#"
import json, smtplib, ssl, sys
spec = json.loads(sys.argv[1])
out = {}
def ctx():
    c = ssl.create_default_context(cafile=spec["ca"])
    if spec.get("cert"):
        c.load_cert_chain(spec["cert"], spec["key"])
    return c
def pair(code, msg):
    return [code, msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)]
def scram_obj(s, user, password, plus, bad_binding):
    import scramp
    cb = None
    if plus:
        cb = ("tls-server-end-point", b"\x00" * 32 if bad_binding else s.sock)
    mech = "SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256"
    c = scramp.ScramClient([mech], user, password, channel_binding=cb)
    state = {"step": 0}
    def obj(challenge=None):
        if challenge is None:
            return c.get_client_first()
        state["step"] += 1
        if state["step"] == 1:
            c.set_server_first(challenge.decode())
            return c.get_client_final()
        try:
            c.set_server_final(challenge.decode())
        except scramp.ScramException as e:
            out["server_final_verified"] = False
            out["server_final_error"] = str(e)
            return "*"
        out["server_final_verified"] = True
        return ""
    out["server_final_verified"] = None
    return mech, obj
try:
    port = spec["port"]
    if spec.get("mode") == "smtps":
        s = smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=ctx())
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    name = spec.get("ehlo", "client.postline.test")
    out["ehlo"] = pair(*s.ehlo(name))
    if spec.get("mode") == "starttls":
        out["starttls"] = pair(*s.starttls(context=ctx()))
        out["ehlo_tls"] = pair(*s.ehlo(name))
    auth = spec.get("auth")
    if auth:
        mech = auth["mech"]
        try:
            if mech == "EXTERNAL":
                r = s.docmd("AUTH", "EXTERNAL =")
            elif mech.startswith("SCRAM"):
                m, obj = scram_obj(s, auth["user"], auth["password"], mech.endswith("PLUS"),
                                   auth.get("bad_binding", False))
                r = s.auth(m, obj)
            else:
                s.user, s.password = auth["user"], auth["password"]
                r = s.auth(mech, getattr(s, "auth_" + mech.lower()))
        except smtplib.SMTPResponseException as e:
            r = (e.smtp_code, e.smtp_error)
        out["auth"] = pair(*r)
    if spec.get("send"):
        try:
            refused = s.sendmail("sender@example.test", ["rcpt@example.test"], spec["send"].encode())
            out["send"] = [250, json.dumps(refused)]
        except smtplib.SMTPRecipientsRefused as e:
            out["send"] = pair(*list(e.recipients.values())[0])
        except smtplib.SMTPResponseException as e:
            out["send"] = pair(e.smtp_code, e.smtp_error)
    try:
        s.quit()
    except Exception:
        pass
except smtplib.SMTPResponseException as e:
    out["error"] = pair(e.smtp_code, e.smtp_error)
except Exception as e:
    out["error"] = [0, repr(e)]
print(json.dumps(out))
"#;

fn python() -> std::path::PathBuf {
    let p = repo_root().join("tests/interop/.venv/bin/python");
    assert!(p.exists(), "{} missing: run .ci/install-deps", p.display());
    p
}

/// Runs `python -c script args...` bounded to 60 s; stdout (panics on failure, with stderr).
fn run_python(script: &str, args: &[&str]) -> String {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python did not finish within 60 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (t_out.join().unwrap(), t_err.join().unwrap());
    assert!(status.success(), "python failed ({status}): {err}\n{out}");
    out
}

fn smtp(spec: Value) -> Value {
    let out = run_python(CLIENT, &[&spec.to_string()]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn code(v: &Value, key: &str) -> i64 {
    v.get(key)
        .and_then(|p| p.get(0))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(|p| p.get(1))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn refused(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err()
}

fn openssl(args: &[&str]) -> String {
    let o = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
    t.push_str(&String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "openssl {args:?}: {t}");
    t
}

const MSG: &str = "Subject: rig selftest\r\n\r\nhello from the rig selftest\r\n";

#[test]
fn client_cert_is_signed_by_the_ca_for_client_auth() {
    let ca = TestCa::new();
    let c = ca.client_cert("alice");
    let v = openssl(&[
        "verify",
        "-CAfile",
        &s(&ca.ca_path),
        "-purpose",
        "sslclient",
        &s(&c.cert_path),
    ]);
    assert!(v.contains(": OK"), "{v}");
    let t = openssl(&["x509", "-noout", "-text", "-in", &s(&c.cert_path)]);
    assert!(t.contains("Subject: CN = alice"), "{t}");
    assert!(t.contains("TLS Web Client Authentication"), "{t}");
    assert!(!t.contains("TLS Web Server Authentication"), "{t}");
    // The key matches the certificate.
    let pk_cert = openssl(&["x509", "-noout", "-pubkey", "-in", &s(&c.cert_path)]);
    let pk_key = openssl(&["pkey", "-pubout", "-in", &s(&c.key_path)]);
    assert_eq!(pk_cert, pk_key);
    let combined = std::fs::read_to_string(&c.combined_path).unwrap();
    assert_eq!(combined, format!("{}{}", c.cert_pem, c.key_pem));
    // Not valid for a server.
    let o = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &s(&ca.ca_path),
            "-purpose",
            "sslserver",
        ])
        .arg(&c.cert_path)
        .output()
        .unwrap();
    assert!(!o.status.success());
    // A second one for the same user gets its own files.
    let c2 = ca.client_cert("alice");
    assert_ne!(c.cert_path, c2.cert_path);
}

#[test]
fn self_signed_is_made_and_fingerprinted_by_openssl() {
    let t0 = Instant::now();
    let ss = SelfSigned::new();
    eprintln!("SelfSigned::new took {:?}", t0.elapsed());
    let t = openssl(&["x509", "-noout", "-text", "-in", &s(&ss.cert_path)]);
    assert!(t.contains("CA:TRUE"), "{t}");
    assert!(!t.contains("Subject Alternative Name"), "{t}");
    assert!(t.contains("Subject: CN = localhost"), "{t}");
    assert!(t.contains("rsaEncryption"), "{t}");
    // Independent computations (Python's hashlib, asn1crypto) agree with openssl's.
    let check = r#"
import base64, hashlib, ssl, sys
from asn1crypto import x509
der = ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())
print(":".join("%02X" % b for b in hashlib.sha256(der).digest()))
spki = x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"].dump()
print("sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode())
"#;
    let out = run_python(check, &[&s(&ss.cert_path)]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [ss.fingerprint_sha256.as_str(), ss.spki_pin.as_str()]
    );
    assert_eq!(ss.fingerprint_hex().len(), 64);
    assert!(ss.spki_pin.starts_with("sha256//") && ss.spki_pin.len() == 8 + 44);
}

#[test]
fn postfix_with_dovecot_sasl_starttls_and_smtps() {
    let ca = TestCa::new();
    let t0 = Instant::now();
    let dovecot = Dovecot::builder()
        .user("alice", "secret")
        .mechanisms("plain login scram-sha-256")
        .start();
    let dovecot_up = t0.elapsed();
    let t1 = Instant::now();
    let pf = Postfix::builder()
        .tls(&ca)
        .submission(TlsLevel::May)
        .smtps()
        .sasl(&dovecot)
        .tls_auth_only()
        .start();
    eprintln!(
        "Dovecot (auth only) up in {dovecot_up:?}; Postfix (3 listeners) up in {:?}",
        t1.elapsed()
    );
    let ca_path = s(&ca.ca_path);
    let sub = pf.submission_port().unwrap();
    let smtps = pf.smtps_port().unwrap();

    // Plain port: no STARTTLS, no AUTH (tls_auth_only), relaying refused.
    let r = smtp(json!({"port": pf.port(), "ca": ca_path, "send": MSG}));
    assert!(!text(&r, "ehlo").contains("STARTTLS"), "{r}");
    assert!(!text(&r, "ehlo").contains("AUTH"), "{r}");
    assert_eq!(code(&r, "send"), 554, "{r}");

    // Submission: AUTH only after STARTTLS; the mechanisms Dovecot offers.
    let r = smtp(json!({"port": sub, "ca": ca_path, "mode": "starttls",
        "auth": {"mech": "PLAIN", "user": "alice", "password": "wrong"}, "send": MSG}));
    assert!(text(&r, "ehlo").contains("STARTTLS"), "{r}");
    assert!(!text(&r, "ehlo").contains("AUTH"), "{r}");
    assert!(
        text(&r, "ehlo_tls").contains("AUTH PLAIN LOGIN SCRAM-SHA-256"),
        "{r}"
    );
    assert_eq!(code(&r, "auth"), 535, "{r}");
    assert_eq!(code(&r, "send"), 554, "{r}");
    for mech in ["PLAIN", "LOGIN", "SCRAM-SHA-256"] {
        let r = smtp(json!({"port": sub, "ca": ca_path, "mode": "starttls",
            "auth": {"mech": mech, "user": "alice", "password": "secret"}, "send": MSG}));
        assert_eq!(code(&r, "auth"), 235, "{mech}: {r}");
        assert_eq!(code(&r, "send"), 250, "{mech}: {r}");
    }
    // Wrapper mode.
    let r = smtp(json!({"port": smtps, "ca": ca_path, "mode": "smtps",
        "auth": {"mech": "PLAIN", "user": "alice", "password": "secret"}, "send": MSG}));
    assert!(text(&r, "ehlo").contains("AUTH"), "{r}");
    assert_eq!(code(&r, "auth"), 235, "{r}");
    assert_eq!(code(&r, "send"), 250, "{r}");

    let msgs = pf.wait_for_messages(4, WAIT);
    assert_eq!(msgs.len(), 4);
    for m in &msgs {
        let m = String::from_utf8_lossy(m);
        assert!(m.contains("hello from the rig selftest"), "{m}");
        assert!(m.contains("Subject: rig selftest"), "{m}");
        assert!(m.contains("Delivered-To: rcpt@example.test"), "{m}");
    }
    assert!(pf
        .maillog()
        .contains("sasl_method=PLAIN, sasl_username=alice"));

    // Both stop on drop, ports closed and processes gone.
    let ports = [pf.port(), sub, smtps];
    let sock = dovecot.auth_socket().to_path_buf();
    drop(pf);
    drop(dovecot);
    for p in ports {
        assert!(refused(p), "port {p} still open after drop");
    }
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_err());
}

#[test]
fn postfix_client_cert_required() {
    let ca = TestCa::new();
    let clients = TestCa::new();
    let alice = clients.client_cert("alice");
    let stranger = TestCa::new().client_cert("mallory");
    let pf = Postfix::builder()
        .tls(&ca)
        .submission(TlsLevel::May)
        .smtps()
        .client_cert_required(&clients)
        .start();
    eprintln!("Postfix (client certs) up in {:?}", pf.startup_time());
    let ca_path = s(&ca.ca_path);
    let sub = pf.submission_port().unwrap();
    let smtps = pf.smtps_port().unwrap();
    let with = |port: u16, mode: &str, c: &ClientCert| {
        smtp(json!({"port": port, "ca": ca_path, "mode": mode,
            "cert": s(&c.cert_path), "key": s(&c.key_path), "send": MSG}))
    };
    // STARTTLS at `may`: accepted with a certificate, RCPT refused without one or with a
    // certificate from another CA.
    let r = with(sub, "starttls", &alice);
    assert_eq!(code(&r, "send"), 250, "{r}");
    let r = smtp(json!({"port": sub, "ca": ca_path, "mode": "starttls", "send": MSG}));
    assert_eq!(code(&r, "send"), 554, "{r}");
    assert!(text(&r, "send").contains("Access denied"), "{r}");
    let r = with(sub, "starttls", &stranger);
    assert!(r.get("error").is_some() || code(&r, "send") == 554, "{r}");
    // Wrapper mode (encrypt, smtpd_tls_req_ccert): with a certificate fine, without 421.
    let r = with(smtps, "smtps", &alice);
    assert_eq!(code(&r, "send"), 250, "{r}");
    let r = smtp(json!({"port": smtps, "ca": ca_path, "mode": "smtps", "send": MSG}));
    assert!(r.get("send").is_none(), "{r}");
    assert!(
        r.get("error").is_some() || code(&r, "ehlo") == 421,
        "no client certificate, yet: {r}"
    );
    let msgs = pf.wait_for_messages(2, WAIT);
    assert_eq!(msgs.len(), 2);
    assert!(pf.maillog().contains("No client certificate presented"));
}

#[test]
fn postfix_submission_encrypt_requires_a_client_cert_for_tls() {
    let ca = TestCa::new();
    let clients = TestCa::new();
    let alice = clients.client_cert("alice");
    let pf = Postfix::builder()
        .tls(&ca)
        .submission(TlsLevel::Encrypt)
        .client_cert_required(&clients)
        .start();
    let ca_path = s(&ca.ca_path);
    let sub = pf.submission_port().unwrap();
    let r = smtp(json!({"port": sub, "ca": ca_path, "send": MSG}));
    assert_eq!(code(&r, "send"), 530, "MAIL before STARTTLS: {r}");
    let r = smtp(json!({"port": sub, "ca": ca_path, "mode": "starttls", "send": MSG}));
    assert_eq!(code(&r, "ehlo_tls"), 421, "{r}");
    let r = smtp(json!({"port": sub, "ca": ca_path, "mode": "starttls",
        "cert": s(&alice.cert_path), "key": s(&alice.key_path), "send": MSG}));
    assert_eq!(code(&r, "send"), 250, "{r}");
    pf.wait_for_messages(1, WAIT);
}

#[test]
fn postfix_strict_helo() {
    let pf = Postfix::builder().strict_helo().start();
    let p = pf.port();
    let r = smtp(json!({"port": p, "ca": "", "ehlo": "localhost", "send": MSG}));
    assert_eq!(code(&r, "ehlo"), 504, "{r}");
    assert!(
        text(&r, "ehlo").contains("need fully-qualified hostname"),
        "{r}"
    );
    // reject_non_fqdn_helo_hostname comes first and also catches names with bad characters.
    let r = smtp(json!({"port": p, "ca": "", "ehlo": "bad_name!.example.test", "send": MSG}));
    assert_eq!(code(&r, "ehlo"), 504, "{r}");
    let r = smtp(json!({"port": p, "ca": "", "ehlo": "[999.0.0.1]", "send": MSG}));
    assert_eq!(code(&r, "ehlo"), 501, "{r}");
    assert!(text(&r, "ehlo").contains("invalid ip address"), "{r}");
    assert_eq!(code(&r, "send"), 503, "{r}");
    let r = smtp(json!({"port": p, "ca": "", "ehlo": "client.example.test", "send": MSG}));
    assert_eq!(code(&r, "ehlo"), 250, "{r}");
    assert!(text(&r, "ehlo").contains("SMTPUTF8"), "{r}");
    assert!(text(&r, "ehlo").contains("CHUNKING"), "{r}");
    assert_eq!(code(&r, "send"), 250, "{r}");
    let m = pf.wait_for_messages(1, WAIT);
    assert!(String::from_utf8_lossy(&m[0]).contains("hello from the rig selftest"));
}

#[test]
fn dovecot_submission_external_from_a_client_certificate() {
    let server = TestCa::new();
    let clients = TestCa::new();
    let alice = clients.client_cert("alice");
    let bob = clients.client_cert("bob"); // not a Dovecot user
    let sink = Aiosmtpd::start();
    let dovecot = Dovecot::builder()
        .user("alice", "secret")
        .submission(sink.port(), &server)
        .external(&clients)
        .start();
    eprintln!(
        "Dovecot (submission + EXTERNAL) up in {:?}",
        dovecot.startup_time()
    );
    let port = dovecot.submission_port().unwrap();
    let ca_path = s(&server.ca_path);
    let with = |c: &ClientCert, auth: Value| {
        smtp(json!({"port": port, "ca": ca_path, "mode": "starttls",
            "cert": s(&c.cert_path), "key": s(&c.key_path), "auth": auth, "send": MSG}))
    };
    let r = with(&alice, json!({"mech": "EXTERNAL"}));
    assert!(text(&r, "ehlo").contains("STARTTLS"), "{r}");
    assert!(text(&r, "ehlo_tls").contains("EXTERNAL"), "{r}");
    assert_eq!(code(&r, "auth"), 235, "{r}");
    assert_eq!(code(&r, "send"), 250, "{r}");
    // No certificate: EXTERNAL fails, MAIL needs AUTH.
    let r = smtp(json!({"port": port, "ca": ca_path, "mode": "starttls",
        "auth": {"mech": "EXTERNAL"}, "send": MSG}));
    assert_eq!(code(&r, "auth"), 535, "{r}");
    assert_eq!(code(&r, "send"), 530, "{r}");
    // A valid certificate for a user Dovecot does not know.
    let r = with(&bob, json!({"mech": "EXTERNAL"}));
    assert_eq!(code(&r, "auth"), 535, "{r}");
    // Password mechanisms still work without a certificate (auth_ssl_require_client_cert = no).
    let r = smtp(json!({"port": port, "ca": ca_path, "mode": "starttls",
        "auth": {"mech": "PLAIN", "user": "alice", "password": "secret"}, "send": MSG}));
    assert_eq!(code(&r, "auth"), 235, "{r}");
    assert_eq!(code(&r, "send"), 250, "{r}");

    let msgs = sink.wait_for_messages(2, WAIT);
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert_eq!(m.rcpt_tos, ["rcpt@example.test"]);
        assert!(String::from_utf8_lossy(&m.content).contains("hello from the rig selftest"));
    }
    let log = dovecot.log();
    assert!(log.contains("method=EXTERNAL"), "{log}");

    let sock = dovecot.auth_socket().to_path_buf();
    drop(dovecot);
    assert!(refused(port));
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_err());
}

#[test]
fn dovecot_require_client_cert_for_every_mechanism() {
    let server = TestCa::new();
    let clients = TestCa::new();
    let alice = clients.client_cert("alice");
    let sink = Aiosmtpd::start();
    let dovecot = Dovecot::builder()
        .user("alice", "secret")
        .submission(sink.port(), &server)
        .external(&clients)
        .require_client_cert()
        .start();
    let port = dovecot.submission_port().unwrap();
    let ca_path = s(&server.ca_path);
    let plain = json!({"mech": "PLAIN", "user": "alice", "password": "secret"});
    let r = smtp(json!({"port": port, "ca": ca_path, "mode": "starttls", "auth": plain}));
    assert_eq!(code(&r, "auth"), 535, "{r}");
    let r = smtp(
        json!({"port": port, "ca": ca_path, "mode": "starttls", "auth": plain,
        "cert": s(&alice.cert_path), "key": s(&alice.key_path), "send": MSG}),
    );
    assert_eq!(code(&r, "auth"), 235, "{r}");
    assert_eq!(code(&r, "send"), 250, "{r}");
    sink.wait_for_messages(1, WAIT);
}

#[test]
fn aiosmtpd_scram_sha_256_and_plus() {
    let ca = TestCa::new();
    let t0 = Instant::now();
    let srv = Aiosmtpd::builder()
        .starttls_with(&ca)
        .scram("alice", "secret")
        .tls_max_1_2()
        .start();
    eprintln!("aiosmtpd (SCRAM) up in {:?}", t0.elapsed());
    let ca_path = s(&ca.ca_path);
    let auth = |mech: &str, pass: &str, bad_binding: bool| {
        smtp(
            json!({"port": srv.port(), "ca": ca_path, "mode": "starttls", "send": MSG,
            "auth": {"mech": mech, "user": "alice", "password": pass, "bad_binding": bad_binding}}),
        )
    };
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
        let r = auth(mech, "secret", false);
        assert!(
            text(&r, "ehlo_tls").contains("AUTH SCRAM-SHA-256 SCRAM-SHA-256-PLUS"),
            "{r}"
        );
        assert!(!text(&r, "ehlo_tls").contains("PLAIN"), "{r}");
        assert_eq!(code(&r, "auth"), 235, "{mech}: {r}");
        assert_eq!(r["server_final_verified"], json!(true), "{mech}: {r}");
        assert_eq!(code(&r, "send"), 250, "{mech}: {r}");
        let r = auth(mech, "wrong", false);
        assert_eq!(code(&r, "auth"), 535, "{mech}: {r}");
        assert_eq!(code(&r, "send"), 530, "{mech}: {r}");
    }
    // The channel binding is checked: other binding data is refused.
    let r = auth("SCRAM-SHA-256-PLUS", "secret", true);
    assert_eq!(code(&r, "auth"), 535, "{r}");
    let msgs = srv.wait_for_messages(2, WAIT);
    assert_eq!(msgs[0].auth_user.as_deref(), Some("alice"));
    assert!(msgs[0].tls);
    // Before STARTTLS, AUTH is not offered.
    let r = smtp(json!({"port": srv.port(), "ca": ca_path}));
    assert!(!text(&r, "ehlo").contains("AUTH"), "{r}");
    // Over TLS 1.3 it cannot bind (tls-exporter), so it offers SCRAM without -PLUS.
    let tls13 = Aiosmtpd::builder()
        .starttls_with(&ca)
        .scram("alice", "secret")
        .start();
    let r = smtp(
        json!({"port": tls13.port(), "ca": ca_path, "mode": "starttls", "send": MSG,
        "auth": {"mech": "SCRAM-SHA-256", "user": "alice", "password": "secret", "bad_binding": false}}),
    );
    assert!(text(&r, "ehlo_tls").contains("AUTH SCRAM-SHA-256"), "{r}");
    assert!(!text(&r, "ehlo_tls").contains("PLUS"), "{r}");
    assert_eq!(code(&r, "auth"), 235, "{r}");
}

#[test]
fn aiosmtpd_scram_hostile_modes() {
    let ca = TestCa::new();
    let ca_path = s(&ca.ca_path);
    // TLS 1.2: the only version over which this server offers -PLUS.
    let bad = Aiosmtpd::builder()
        .starttls_with(&ca)
        .scram("alice", "secret")
        .scram_bad_proof()
        .tls_max_1_2()
        .start();
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
        let r = smtp(
            json!({"port": bad.port(), "ca": ca_path, "mode": "starttls",
            "auth": {"mech": mech, "user": "alice", "password": "secret"}}),
        );
        assert_eq!(r["server_final_verified"], json!(false), "{mech}: {r}");
        // The client aborted with `*`.
        assert_eq!(code(&r, "auth"), 501, "{mech}: {r}");
    }
    let skip = Aiosmtpd::builder()
        .starttls_with(&ca)
        .scram("alice", "secret")
        .scram_skip_final()
        .start();
    let r = smtp(
        json!({"port": skip.port(), "ca": ca_path, "mode": "starttls",
        "auth": {"mech": "SCRAM-SHA-256", "user": "alice", "password": "secret"}}),
    );
    assert_eq!(code(&r, "auth"), 235, "{r}");
    assert_eq!(
        r["server_final_verified"],
        Value::Null,
        "235 came without v=: {r}"
    );
}
