//! `postline config import-msmtprc`: a real-looking `~/.msmtprc` (defaults, inheritance,
//! passwordeval, a trust file, an unmapped option, a password line) imported into the config
//! file, then each account used to send through aiosmtpd.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use postline_testkit::{run_code, stderr, stdout, Aiosmtpd, Sandbox, TestCa};

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "hunter2-Never-Shown";

fn msmtprc(ca: &TestCa, tls_port: u16, plain_port: u16) -> String {
    format!(
        "# msmtp configuration, as people keep it
defaults
auth           on
tls            on
tls_starttls   on
tls_trust_file \"{ca}\"

# Work, over STARTTLS with AUTH
account        work
host           localhost
port           {tls_port}
from           alice@work.test
user           alice
passwordeval   \"printf '%s\\n' pencil\"

# Same server, another sender; inherits host, user and passwordeval
account        work2 : work
from           alice2@work.test
password       {SECRET}

# A plain relay on loopback
account        plain
host           127.0.0.1
port           {plain_port}
tls            off
auth           off
from           bob@plain.test
tls_crl_file   /etc/ssl/crl.pem
dsn_notify     failure

account default : plain
",
        ca = ca.ca_path.display()
    )
}

#[test]
fn imported_msmtprc_sends_with_each_account() {
    let ca = TestCa::new();
    let tls = Aiosmtpd::builder()
        .starttls_with(&ca)
        .require_starttls()
        .auth("alice", "pencil")
        .start();
    let plain = Aiosmtpd::start();
    let sb = Sandbox::new();
    sb.write("home/.msmtprc", msmtprc(&ca, tls.port(), plain.port()));

    // To stdout, from the default place (~/.msmtprc).
    let o = run_code(sb.cmd(&["config", "import-msmtprc"]), 1);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "{out}\n{err}"
    );
    assert!(out.contains("default = \"plain\""), "{out}");
    assert!(
        out.contains("password_cmd = '''printf '%s\\n' pencil'''"),
        "{out}"
    );
    let rc = sb.path("home/.msmtprc").display().to_string();
    for want in [
        format!("{rc} line 19: password: not copied"),
        format!("{rc} line 28: tls_crl_file: not supported by postline"),
        format!("{rc} line 29: dsn_notify: not supported in postline accounts"),
    ] {
        assert!(err.contains(&want), "{want}: {err}");
    }
    assert_eq!(err.lines().count(), 3, "{err}");

    // Into the config file: 0600, refused the second time without --force.
    let cfg = sb.config_path();
    let cfg_s = cfg.to_str().unwrap();
    run_code(sb.cmd(&["config", "import-msmtprc", "--output", cfg_s]), 1);
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), out);
    let o = run_code(sb.cmd(&["config", "import-msmtprc", "-o", cfg_s]), 73);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    run_code(
        sb.cmd(&["config", "import-msmtprc", "-o", cfg_s, "--force"]),
        1,
    );

    // Each account sends.
    let send = |account: Option<&str>, subject: &str| {
        let mut c = sb.send_bare();
        if let Some(a) = account {
            c = c.arg("--account").arg(a);
        }
        c.to("carol@example.test").subject(subject).body("hello")
    };
    run_code(send(Some("work"), "work"), 0);
    run_code(send(Some("work2"), "work2"), 0);
    let got = tls.wait_for_messages(2, WAIT);
    assert_eq!(got[0].mail_from, "alice@work.test");
    assert_eq!(got[1].mail_from, "alice2@work.test");
    for m in &got {
        assert!(m.tls, "{}", m.raw_json);
        assert_eq!(m.auth_user.as_deref(), Some("alice"), "{}", m.raw_json);
    }
    run_code(send(Some("plain"), "plain"), 0);
    run_code(send(None, "default"), 0);
    let got = plain.wait_for_messages(2, WAIT);
    for m in &got {
        assert_eq!(m.mail_from, "bob@plain.test");
        assert!(!m.tls && m.auth_user.is_none(), "{}", m.raw_json);
    }
}

#[test]
fn everything_mapped_exits_0_and_xdg_place_is_read() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("xdg-config/msmtp")).unwrap();
    sb.write(
        "xdg-config/msmtp/config",
        "account a\nhost smtp.example.test\ntls on\nauth on\nuser u\npasswordeval pass smtp\n",
    );
    let o = run_code(sb.cmd(&["config", "import-msmtprc"]), 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "[accounts.a]\nserver = \"smtp.example.test\"\nport = 25\ntls = \"starttls\""
        ),
        "{}",
        stdout(&o)
    );
}

#[test]
fn malformed_lines_name_the_line_and_hide_values() {
    let sb = Sandbox::new();
    let f = sb.write(
        "rc",
        format!("defaults\ntls on\n\naccount a\nhost h\npassword \"{SECRET}\n"),
    );
    let o = run_code(
        sb.cmd(&["config", "import-msmtprc", f.to_str().unwrap()]),
        78,
    );
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{} line 6: password: unterminated double quote",
            f.display()
        )),
        "{err}"
    );
    assert!(!err.contains(SECRET) && stdout(&o).is_empty(), "{err}");

    let f = sb.write("rc2", "account a\nhost h\nport smtp-ish\n");
    let o = run_code(
        sb.cmd(&["config", "import-msmtprc", f.to_str().unwrap()]),
        78,
    );
    assert!(stderr(&o).contains("line 3: port:"), "{}", stderr(&o));
    let f = sb.write("rc3", "account a\nhots h\n");
    let o = run_code(
        sb.cmd(&["config", "import-msmtprc", f.to_str().unwrap()]),
        78,
    );
    assert!(
        stderr(&o).contains("line 2: unknown command \"hots\""),
        "{}",
        stderr(&o)
    );
    let o = run_code(sb.cmd(&["config", "import-msmtprc", "/nonexistent/rc"]), 66);
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
}
