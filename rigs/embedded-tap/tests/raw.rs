//! Raw SMTP over embassy-net on the TAP: the rig carries a megabyte to aiosmtpd intact, and a
//! server that never speaks is seen within a deadline.

use std::time::Duration as StdDuration;

use embassy_time::{with_timeout, Duration};
use embedded_io_async::{Read, Write};
use postline_embedded_tap::{Clock, Rig};

mod common;
use common::{dot_stuff, dotted_body};

/// Reads one whole reply (all its lines) and returns its code.
async fn reply<S: Read>(socket: &mut S) -> u16 {
    let mut got = Vec::new();
    let mut byte = [0u8; 512];
    loop {
        // The last line of a reply is "NNN text\r\n"; the others are "NNN-text\r\n".
        if let Some(last) = got
            .strip_suffix(b"\r\n")
            .map(|g: &[u8]| g.rsplit(|&b| b == b'\n').next().unwrap_or(g))
        {
            if last.len() >= 4 && last[3] == b' ' {
                let code = std::str::from_utf8(&last[..3]).unwrap();
                return code.parse().unwrap();
            }
        }
        let n = with_timeout(Duration::from_secs(10), socket.read(&mut byte))
            .await
            .expect("a reply within 10 s")
            .expect("the socket reads");
        assert!(
            n > 0,
            "closed mid-reply after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&byte[..n]);
    }
}

async fn command<S: Read + Write>(socket: &mut S, line: &str, want: u16) {
    socket.write_all(line.as_bytes()).await.unwrap();
    assert_eq!(reply(socket).await, want, "reply to {line:?}");
}

#[test]
fn raw_smtp_carries_a_megabyte_of_dot_lines_intact() {
    let mut rig = Rig::new().expect("the namespace and its TAP");
    let server = rig.aiosmtpd(&[]).expect("aiosmtpd in the namespace");
    let port = server.port();
    let body = dotted_body();
    let stuffed = dot_stuff(&body);
    rig.run(async |net| {
        let (mut rx, mut tx) = ([0u8; 8192], [0u8; 8192]);
        let mut s = net.connect(port, &mut rx, &mut tx).await.expect("connect");
        assert_eq!(reply(&mut s).await, 220);
        command(&mut s, "EHLO device.example\r\n", 250).await;
        command(&mut s, "MAIL FROM:<device@example.com>\r\n", 250).await;
        command(&mut s, "RCPT TO:<ops@example.com>\r\n", 250).await;
        command(&mut s, "DATA\r\n", 354).await;
        s.write_all(&stuffed).await.unwrap();
        command(&mut s, ".\r\n", 250).await;
        command(&mut s, "QUIT\r\n", 221).await;
        s.close();
        s.flush().await.unwrap();
    });
    let got = server
        .message(1, StdDuration::from_secs(10))
        .expect("the stored message");
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the stored body differs from the one sent");
    let envelope = server.envelope(1, StdDuration::from_secs(1)).unwrap();
    assert!(envelope.contains("\"192.168.69.2\""), "{envelope}");
}

#[test]
fn a_silent_listener_is_seen_by_a_deadline() {
    let mut rig = Rig::new().expect("the namespace and its TAP");
    let silent = rig.silent_listener().expect("a listener in the namespace");
    let port = silent.port();
    rig.run(async |net| {
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut s = net.connect(port, &mut rx, &mut tx).await.expect("connect");
        let clock = Clock;
        let started = clock.now_ms();
        let mut buf = [0u8; 64];
        // The greeting never comes: the clock's deadline wins the race against the read.
        let raced =
            embassy_futures::select::select(s.read(&mut buf), clock.wait_until(started + 300))
                .await;
        assert!(
            matches!(raced, embassy_futures::select::Either::Second(())),
            "the silent listener answered"
        );
        let waited = clock.now_ms() - started;
        assert!((300..3_000).contains(&waited), "waited {waited} ms");
        // And embassy-time's own timeout says the same.
        assert!(with_timeout(Duration::from_millis(200), s.read(&mut buf))
            .await
            .is_err());
        s.abort();
    });
}

#[test]
fn the_namespace_is_deleted_when_a_test_panics() {
    let mut name = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut rig = Rig::new().expect("the namespace and its TAP");
        name = rig.netns().name().to_owned();
        assert!(std::path::Path::new("/run/netns").join(&name).exists());
        rig.run(async |_net| panic!("a failing test"));
    }));
    assert!(result.is_err());
    assert!(!name.is_empty());
    assert!(
        !std::path::Path::new("/run/netns").join(&name).exists(),
        "{name} outlived the test"
    );
}
