//! LMTP into Dovecot (Debian `dovecot-lmtpd`, a private instance from the testkit): one
//! message to a user with a mailbox, a user that does not exist (refused at RCPT) and a user
//! whose quota the message does not fit (refused after the data, for that user alone). Each
//! recipient's `Delivery` must say exactly that, and the mailboxes must hold exactly that.

use std::time::Duration;

use postline::{AsyncClient, Client, Config, Delivery, DeliveryStatus, Envelope, Protocol};
use postline_testkit::Dovecot;

const WAIT: Duration = Duration::from_secs(10);

fn store() -> Dovecot {
    Dovecot::builder()
        .user("alice", "unused")
        .user("carol", "unused")
        .quota("carol", 10)
        .hostname("store.postline.test")
        .lmtp()
        .start()
}

fn envelope() -> Envelope {
    Envelope::new(
        "sender@postline.test",
        ["alice@example.org", "bob@example.org", "carol@example.org"],
    )
    .unwrap()
}

fn message(subject: &str) -> Vec<u8> {
    format!("From: sender@postline.test\r\nSubject: {subject}\r\n\r\n.leading dot\r\nHello over LMTP.\r\n")
        .into_bytes()
}

/// What each recipient must be told, and what the mailboxes must hold.
fn check(d: &[Delivery], dovecot: &Dovecot, subject: &str, count: usize) {
    let statuses: Vec<DeliveryStatus> = d.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Failed
        ],
        "{d:#?}"
    );
    let alice = d[0].reply.as_ref().unwrap();
    assert_eq!(alice.code, 250, "{d:?}");
    assert!(alice.to_string().contains("alice@example.org"), "{d:?}");
    let bob = d[1].reply.as_ref().unwrap();
    assert_eq!(bob.code, 550, "{d:?}");
    assert!(bob.to_string().contains("doesn't exist"), "{d:?}");
    let carol = d[2].reply.as_ref().unwrap();
    assert_eq!(carol.code, 552, "{d:?}");
    assert!(carol.to_string().contains("Quota"), "{d:?}");
    assert!(d[2].detail().contains("after the data"), "{d:?}");
    let got = dovecot.wait_maildir("alice", count, WAIT);
    let last = String::from_utf8_lossy(&got[count - 1]).into_owned();
    // Dovecot stores LF line endings; the dot is un-stuffed.
    assert!(
        last.ends_with(&format!(
            "Subject: {subject}\n\n.leading dot\nHello over LMTP.\n"
        )),
        "{last}"
    );
    assert!(dovecot.maildir_messages("carol").is_empty());
}

#[test]
fn blocking_over_the_unix_socket() {
    let dovecot = store();
    let socket = dovecot.lmtp_socket().unwrap().to_str().unwrap().to_string();
    let config = Config::relay(socket)
        .protocol(Protocol::Lmtp)
        .hello_name("client.postline.test");
    let mut client = Client::connect(config).unwrap();
    let env = envelope();
    let result = client.send_bytes(&env, &message("over unix"));
    let outcome = result.as_ref().unwrap();
    assert!(!outcome.all_accepted());
    assert_eq!(outcome.accepted().count(), 1);
    check(
        &Delivery::from_result(&result, &env),
        &dovecot,
        "over unix",
        1,
    );
    client.quit().unwrap();
}

#[test]
fn async_over_tcp_from_an_lmtp_url() {
    let dovecot = store();
    let url = format!(
        "lmtp://127.0.0.1:{}?helo=client.postline.test",
        dovecot.lmtp_port().unwrap()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = AsyncClient::connect(Config::from_url(&url).unwrap())
            .await
            .unwrap();
        let env = envelope();
        // Two messages on one connection: the replies of the first are not credited to
        // the second.
        for (i, subject) in ["tcp one", "tcp two"].into_iter().enumerate() {
            let result = client.send_bytes(&env, &message(subject)).await;
            check(
                &Delivery::from_result(&result, &env),
                &dovecot,
                subject,
                i + 1,
            );
        }
        client.quit().await.unwrap();
    });
}
