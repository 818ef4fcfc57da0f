//! The queue as a `Transport`: what a program written against the trait learns when it
//! hands a message to the spool, and that the runner then delivers exactly what was stored
//! (to a real aiosmtpd).

use std::time::{Duration, SystemTime};

use postline::transport::{AsyncTransport, Transport};
use postline::{Config, Envelope, Tls};
use postline_queue::{
    DeliveryStatus, Destination, Enqueue, Policy, RecipientStatus, Route, Runner, Smtp, Spool,
};
use postline_testkit::{Aiosmtpd, Tmpfs};

const MESSAGE: &[u8] = b"From: a@example.com\r\nSubject: queued\r\n\r\nbody\r\n";

fn envelope() -> Envelope {
    Envelope::new("a@example.com", ["b@example.org", "c@example.org"]).unwrap()
}

#[test]
fn a_queued_message_is_delivered_to_the_queue_and_then_by_the_runner() {
    let server = Aiosmtpd::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("spool")).unwrap();
    let queue = Enqueue::new(spool.clone(), Route::relay(server.addr()));
    let d = Transport::send(&queue, &envelope(), MESSAGE).unwrap();
    assert_eq!(d.len(), 2);
    let id = d[0]
        .reason
        .strip_prefix("queued as ")
        .unwrap_or_else(|| panic!("{}", d[0].reason))
        .to_string();
    assert!(d.iter().all(|d| d.status == DeliveryStatus::Delivered));
    let entry = spool.load(&id).unwrap();
    assert_eq!(entry.from, "a@example.com");
    assert_eq!(entry.recipients.len(), 2);
    assert!(entry
        .recipients
        .iter()
        .all(|r| matches!(r.status, RecipientStatus::Pending { .. })));
    assert_eq!(spool.message(&id).unwrap(), MESSAGE);

    let port = server.port();
    let smtp = Smtp::new(move |_: &Route| {
        Ok(Destination::Relay(
            Config::relay("127.0.0.1").port(port).tls(Tls::None),
        ))
    });
    let policy = Policy {
        min_free_bytes: 0,
        ..Policy::default()
    };
    let mut runner = Runner::new(spool.clone(), policy, smtp);
    let report = runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| {});
    assert_eq!(report.completed, 1, "{report:?}");
    let got = server.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(got[0].content, MESSAGE);
    assert_eq!(got[0].rcpt_tos, ["b@example.org", "c@example.org"]);
    assert!(
        spool.list().0.is_empty(),
        "delivered messages leave the spool"
    );
}

#[test]
fn too_large_fails_and_a_full_disk_defers_and_neither_leaves_anything() {
    let fs_ = Tmpfs::mount(128);
    let spool = Spool::open(fs_.path().join("spool"))
        .unwrap()
        .max_message_size(64 << 10);
    let queue = Enqueue::new(spool.clone(), Route::relay("127.0.0.1:25"));
    let d = Transport::send(&queue, &envelope(), &vec![b'x'; 100 << 10]).unwrap();
    assert!(
        d.iter().all(|d| d.status == DeliveryStatus::Failed),
        "{d:?}"
    );
    assert!(
        d[0].reason.contains("larger than the queue takes"),
        "{}",
        d[0].reason
    );
    // Fill the disk with queued messages until one does not fit.
    let mut stored = 0;
    let deferred = loop {
        let d = Transport::send(&queue, &envelope(), &vec![b'y'; 60 << 10]).unwrap();
        if d[0].status != DeliveryStatus::Delivered {
            break d;
        }
        stored += 1;
        assert!(
            stored < 10,
            "a 128 KiB disk took {stored} messages of 60 KiB"
        );
    };
    assert!(
        deferred
            .iter()
            .all(|d| d.status == DeliveryStatus::Deferred),
        "{deferred:?}"
    );
    assert!(
        deferred[0].reason.starts_with("not queued"),
        "{}",
        deferred[0].reason
    );
    let (entries, unreadable) = spool.list();
    assert_eq!(
        entries.len(),
        stored,
        "only whole messages are in the spool"
    );
    assert!(unreadable.is_empty(), "{unreadable:?}");
}

#[tokio::test]
async fn the_async_form_stores_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("spool")).unwrap();
    let queue = Enqueue::new(spool.clone(), Route::relay("127.0.0.1:25"));
    let d = AsyncTransport::send(&queue, &envelope(), MESSAGE)
        .await
        .unwrap();
    assert!(
        d.iter().all(|d| d.status == DeliveryStatus::Delivered),
        "{d:?}"
    );
    assert_eq!(spool.list().0.len(), 1);
}

#[test]
fn envelope_options_the_queue_would_lose_are_refused_not_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("spool")).unwrap();
    let plain = Enqueue::new(spool.clone(), Route::relay("127.0.0.1:25"));
    for (what, env) in [
        ("REQUIRETLS", envelope().require_tls(true)),
        ("body type", envelope().body(postline::BodyType::EightBit)),
    ] {
        let d = Transport::send(&plain, &env, MESSAGE).unwrap();
        assert!(
            d.iter().all(|d| d.status == DeliveryStatus::Failed),
            "{what}: {d:?}"
        );
        assert!(d[0].reason.contains(what), "{what}: {}", d[0].reason);
    }
    assert!(spool.list().0.is_empty(), "nothing stored");
    // A route that carries REQUIRETLS keeps it.
    let mut route = Route::relay("127.0.0.1:25");
    route.require_tls = true;
    let strict = Enqueue::new(spool.clone(), route);
    let d = Transport::send(&strict, &envelope().require_tls(true), MESSAGE).unwrap();
    assert!(
        d.iter().all(|d| d.status == DeliveryStatus::Delivered),
        "{d:?}"
    );
    assert!(spool.list().0[0].route.require_tls);
}

/// Delivers everything due in `spool` to `server` with one runner pass.
fn run_to(spool: &Spool, server: &Aiosmtpd) -> postline_queue::RunReport {
    let port = server.port();
    let smtp = Smtp::new(move |_: &Route| {
        Ok(Destination::Relay(
            Config::relay("127.0.0.1").port(port).tls(Tls::None),
        ))
    });
    let policy = Policy {
        min_free_bytes: 0,
        ..Policy::default()
    };
    let mut runner = Runner::new(spool.clone(), policy, smtp);
    runner.pass(SystemTime::now(), false, &|| false, &mut |_, _| {})
}

#[test]
fn dsn_parameters_are_kept_in_the_spool_and_sent_by_the_runner_only_where_offered() {
    let dsn_env = || {
        envelope()
            .dsn_ret(postline::Ret::Headers)
            .dsn_envid("Q+1=2")
            .dsn_notify(postline::Notify::On {
                success: true,
                failure: true,
                delay: false,
            })
            .dsn_orcpt(true)
    };
    for offers_dsn in [true, false] {
        let server = if offers_dsn {
            Aiosmtpd::builder().dsn().start()
        } else {
            Aiosmtpd::start()
        };
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path().join("spool")).unwrap();
        let queue = Enqueue::new(spool.clone(), Route::relay(server.addr()));
        let d = Transport::send(&queue, &dsn_env(), MESSAGE).unwrap();
        assert!(
            d.iter().all(|d| d.status == DeliveryStatus::Delivered),
            "{d:?}"
        );
        let (entries, _) = spool.list();
        let dsn = entries[0].dsn.as_ref().expect("DSN kept in the entry");
        assert_eq!(dsn.envid.as_deref(), Some("Q+1=2"));
        let report = run_to(&spool, &server);
        assert_eq!(report.completed, 1, "{report:?}");
        let got = server.wait_for_messages(1, Duration::from_secs(20));
        let dsn_mail: Vec<&String> = got[0]
            .mail_options
            .iter()
            .filter(|o| o.starts_with("RET=") || o.starts_with("ENVID="))
            .collect();
        if offers_dsn {
            assert_eq!(dsn_mail, ["RET=HDRS", "ENVID=Q+2B1+3D2"]);
            assert_eq!(
                got[0].rcpt_options,
                [
                    "NOTIFY=SUCCESS,FAILURE",
                    "ORCPT=RFC822;B@EXAMPLE.ORG",
                    "NOTIFY=SUCCESS,FAILURE",
                    "ORCPT=RFC822;C@EXAMPLE.ORG"
                ]
            );
        } else {
            // RFC 3461: not offered, not sent (this server would refuse them with 555).
            assert!(dsn_mail.is_empty(), "{:?}", got[0].mail_options);
            assert!(got[0].rcpt_options.is_empty(), "{:?}", got[0].rcpt_options);
        }
    }
}
