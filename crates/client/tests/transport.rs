//! The `Transport` trait and its test transports: what a program written against the trait
//! gets from each. The Maildir is read back by Python's `mailbox` module, a reader that is
//! not ours; the relay transport is proven against aiosmtpd.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use postline::transport::{AsyncTransport, FileTransport, StubTransport, Transport};
use postline::{Config, Delivery, DeliveryStatus, Envelope, Mailer, Tls};
use postline_testkit::{repo_root, Aiosmtpd, Tmpfs};

const MESSAGE: &[u8] =
    b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\n.dot\r\nbody\r\n";

/// Application code under test: generic over the transport, as the trait is meant for.
fn notify(mail: &impl Transport, to: &[&str]) -> Vec<Delivery> {
    let envelope = Envelope::new("a@example.com", to.iter().copied()).unwrap();
    mail.send(&envelope, MESSAGE)
        .expect("a transport that works")
}

async fn notify_async(mail: &impl AsyncTransport, to: &[&str]) -> Vec<Delivery> {
    let envelope = Envelope::new("a@example.com", to.iter().copied()).unwrap();
    mail.send(&envelope, MESSAGE)
        .await
        .expect("a transport that works")
}

fn statuses(d: &[Delivery]) -> Vec<DeliveryStatus> {
    d.iter().map(|d| d.status).collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn file_transport_writes_the_message_and_its_envelope_privately() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let files = FileTransport::new(&dir);
    let d = notify(&files, &["b@example.org", "c@example.net"]);
    assert_eq!(statuses(&d), [DeliveryStatus::Delivered; 2]);
    let names = files_in(&dir);
    assert_eq!(names.len(), 2, "{names:?}");
    let eml = names.iter().find(|n| n.ends_with(".eml")).unwrap();
    let env = names.iter().find(|n| n.ends_with(".envelope")).unwrap();
    assert_eq!(
        eml.trim_end_matches(".eml"),
        env.trim_end_matches(".envelope")
    );
    assert_eq!(fs::read(dir.join(eml)).unwrap(), MESSAGE, "byte for byte");
    assert_eq!(
        fs::read_to_string(dir.join(env)).unwrap(),
        "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.net>\r\n"
    );
    assert!(d[0].reason.contains(eml.as_str()), "{}", d[0].reason);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(eml)), 0o600);
    // A second message gets names of its own.
    notify(&files, &["b@example.org"]);
    assert_eq!(files_in(&dir).len(), 4);
}

#[test]
fn maildir_transport_delivers_what_pythons_mailbox_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let maildir = tmp.path().join("Maildir");
    let box_ = FileTransport::maildir(&maildir);
    for _ in 0..3 {
        let d = notify(&box_, &["b@example.org"]);
        assert_eq!(statuses(&d), [DeliveryStatus::Delivered]);
    }
    assert!(
        files_in(&maildir.join("tmp")).is_empty(),
        "nothing left in tmp/"
    );
    assert_eq!(files_in(&maildir.join("new")).len(), 3);
    assert_eq!(mode(&maildir.join("new")), 0o700);
    let python = repo_root().join("tests/interop/.venv/bin/python");
    let script = r#"
import mailbox, sys
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
keys = sorted(box.keys())
print(len(keys))
for k in keys:
    m = box[k]
    print(m["Return-Path"], m["Subject"], repr(m.get_payload()))
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&maildir)
        .output()
        .expect("the interop venv's python (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("3"));
    for line in lines {
        assert_eq!(
            line,
            r"<a@example.com> t '.dot\n\nbody\n'".replace(r"\n\n", r"\n")
        );
    }
}

#[test]
fn a_full_disk_defers_every_recipient_and_leaves_nothing_behind() {
    let fs_ = Tmpfs::mount(64);
    let big = vec![b'x'; 256 << 10];
    let envelope = Envelope::new("a@example.com", ["b@example.org", "c@example.org"]).unwrap();
    for (name, transport) in [
        ("files", FileTransport::new(fs_.path().join("files"))),
        (
            "maildir",
            FileTransport::maildir(fs_.path().join("maildir")),
        ),
    ] {
        let d = Transport::send(&transport, &envelope, &big).unwrap();
        assert_eq!(statuses(&d), [DeliveryStatus::Deferred; 2], "{name}");
        assert!(
            d[0].reason.contains("No space left on device"),
            "{name}: {}",
            d[0].reason
        );
        let dir = transport.dir();
        let left: Vec<String> = match name {
            "files" => files_in(dir),
            _ => ["tmp", "new", "cur"]
                .iter()
                .flat_map(|s| files_in(&dir.join(s)))
                .collect(),
        };
        assert!(left.is_empty(), "{name}: half-written files left: {left:?}");
        // Room for a small one: the transport still works.
        let d = Transport::send(&transport, &envelope, MESSAGE).unwrap();
        assert_eq!(statuses(&d), [DeliveryStatus::Delivered; 2], "{name}");
    }
}

#[test]
fn an_unwritable_directory_defers_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("file");
    fs::write(&blocker, b"not a directory").unwrap();
    let d = notify(&FileTransport::new(blocker.join("sub")), &["b@example.org"]);
    assert_eq!(statuses(&d), [DeliveryStatus::Deferred]);
    assert!(d[0].reason.contains("cannot write"), "{}", d[0].reason);
}

#[test]
fn the_stub_answers_as_told_and_keeps_the_bytes() {
    let stub = StubTransport::new()
        .answer(
            "later@example.org",
            DeliveryStatus::Deferred,
            "451 4.3.0 try later",
        )
        .answer(
            "maybe@example.org",
            DeliveryStatus::InDoubt,
            "no reply after the end of data",
        );
    let d = notify(
        &stub,
        &["ok@example.org", "LATER@example.org", "maybe@example.org"],
    );
    assert_eq!(
        statuses(&d),
        [
            DeliveryStatus::Delivered,
            DeliveryStatus::Deferred,
            DeliveryStatus::InDoubt
        ]
    );
    assert_eq!(d[1].reply.as_ref().unwrap().code, 451);
    assert_eq!(d[1].address, "LATER@example.org", "the address as given");
    let sent = stub.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message, MESSAGE);
    assert_eq!(sent[0].envelope.from(), "a@example.com");
}

#[tokio::test]
async fn the_async_trait_is_served_by_the_same_transports() {
    let stub = StubTransport::new();
    let d = notify_async(&stub, &["b@example.org"]).await;
    assert_eq!(statuses(&d), [DeliveryStatus::Delivered]);
    assert_eq!(stub.sent().len(), 1);
    let tmp = tempfile::tempdir().unwrap();
    let maildir = FileTransport::maildir(tmp.path());
    let d = notify_async(&maildir, &["b@example.org"]).await;
    assert_eq!(statuses(&d), [DeliveryStatus::Delivered]);
    assert_eq!(files_in(&tmp.path().join("new")).len(), 1);
    // Shared through an Arc, as a web service's handlers hold it.
    let shared = std::sync::Arc::new(stub.clone());
    notify_async(&shared, &["c@example.org"]).await;
    assert_eq!(stub.sent().len(), 2);
}

#[test]
fn a_relay_mailer_is_a_transport_to_a_real_server() {
    let server = Aiosmtpd::start();
    let mailer = Mailer::relay(
        Config::relay("127.0.0.1")
            .port(server.port())
            .tls(Tls::None)
            .hello_name("client.test"),
    );
    let d = notify(&mailer, &["b@example.org", "c@example.org"]);
    assert_eq!(statuses(&d), [DeliveryStatus::Delivered; 2], "{d:?}");
    let got = server.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(got[0].content, MESSAGE);
    assert_eq!(got[0].rcpt_tos, ["b@example.org", "c@example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_mailer_is_an_async_transport_and_a_dead_relay_defers() {
    let server = Aiosmtpd::start();
    let config = Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .hello_name("client.test");
    let d = notify_async(&Mailer::relay(config.clone()), &["b@example.org"]).await;
    assert_eq!(statuses(&d), [DeliveryStatus::Delivered], "{d:?}");
    assert_eq!(
        server.wait_for_messages(1, Duration::from_secs(20)).len(),
        1
    );
    let port = server.port();
    drop(server);
    let d = notify_async(&Mailer::relay(config.port(port)), &["b@example.org"]).await;
    assert_eq!(statuses(&d), [DeliveryStatus::Deferred], "{d:?}");
}

#[test]
fn a_built_message_goes_to_every_envelope_recipient_bcc_included() {
    let message = postline::Message::builder()
        .from("Alice <alice@example.com>")
        .to("bob@example.org")
        .bcc("audit@example.com")
        .subject("hello")
        .text("hi")
        .build()
        .unwrap();
    let stub = StubTransport::new();
    let d = Transport::send_message(&stub, &message).unwrap();
    let to: Vec<&str> = d.iter().map(|d| d.address.as_str()).collect();
    assert_eq!(to, ["bob@example.org", "audit@example.com"]);
    let sent = &stub.sent()[0];
    assert_eq!(sent.message, message.as_bytes());
    assert!(!String::from_utf8_lossy(&sent.message).contains("audit@"));
}
