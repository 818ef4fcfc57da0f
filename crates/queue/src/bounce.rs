//! Delivery status notifications to the sender (RFC 3464 `multipart/report`), bounded in
//! size whatever the servers said or the original message held.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::entry::{DsnRet, Entry, RecipientStatus};
use crate::policy::{random, secs};

/// Most of the original header section quoted back (RFC 3462 `text/rfc822-headers`).
pub const MAX_QUOTED_HEADERS: usize = 32 * 1024;
/// The largest message returned whole when its sender asked for it (`RET=FULL`, RFC 3461
/// 4.3), as Postfix's `bounce_size_limit` does by default; a larger one, or one with 8-bit
/// bytes (the report goes out as 7-bit text), comes back as its header section.
pub const MAX_RETURNED_MESSAGE: usize = 50_000;
/// Most recipients described one by one; the rest are counted.
pub const MAX_REPORTED_RECIPIENTS: usize = 500;

/// The report for `entry`'s failed recipients, quoting each server's reason and the
/// original header section.
pub fn report(entry: &Entry, message: &[u8], reporting_host: &str, now: SystemTime) -> Vec<u8> {
    let failed: Vec<(&str, &str)> = entry
        .recipients
        .iter()
        .filter_map(|r| match &r.status {
            RecipientStatus::Failed { reason, .. } => Some((r.address.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    let boundary = format!("{:016x}/{reporting_host}", random());
    let date = rfc5322_date(secs(now));
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_host}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.bounce@{reporting_host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         This is the postline queue on {reporting_host}.\r\n\
         \r\n\
         Your message could not be delivered to these recipients:\r\n\r\n",
        to = entry.from,
        id = entry.id,
    );
    for (address, reason) in failed.iter().take(MAX_REPORTED_RECIPIENTS) {
        let _ = write!(m, "  <{address}>: {}\r\n", one_line(reason));
    }
    if failed.len() > MAX_REPORTED_RECIPIENTS {
        let _ = write!(
            m,
            "  ... and {} more\r\n",
            failed.len() - MAX_REPORTED_RECIPIENTS
        );
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {reporting_host}\r\n\
         X-Postline-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n",
        id = entry.id,
        arrival = rfc5322_date(entry.created),
    );
    let dsn = entry.dsn.as_ref();
    // RFC 3464 2.2.1: the sender's ENVID, so the report can be matched to what was sent.
    if let Some(envid) = dsn.and_then(|d| d.envid.as_deref()) {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", one_line(envid));
    }
    let orcpt = dsn.is_some_and(|d| d.orcpt);
    for (address, reason) in failed.iter().take(MAX_REPORTED_RECIPIENTS) {
        let reason = one_line(reason);
        if orcpt {
            let _ = write!(m, "\r\nOriginal-Recipient: rfc822; {address}");
        }
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: {}\r\n",
            status_code(&reason)
        );
        if reason.len() > 3 && reason.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            let _ = write!(m, "Diagnostic-Code: smtp; {reason}\r\n");
        }
        let _ = write!(m, "Last-Attempt-Date: {date}\r\n");
    }
    let whole = dsn.and_then(|d| d.ret) == Some(DsnRet::Full)
        && message.len() <= MAX_RETURNED_MESSAGE
        && message.is_ascii();
    let part = if whole {
        "message/rfc822"
    } else {
        "text/rfc822-headers"
    };
    let _ = write!(m, "\r\n--{boundary}\r\nContent-Type: {part}\r\n\r\n");
    let mut out = m.into_bytes();
    if whole {
        out.extend_from_slice(&crlf_lines(message));
    } else {
        out.extend_from_slice(&quoted_headers(message));
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// `message` with every line ended by CRLF (blank lines kept: the body follows the first).
fn crlf_lines(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 2);
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    for line in body.split(|b| *b == b'\n') {
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The original header section, at most [`MAX_QUOTED_HEADERS`] bytes cut at a line end,
/// with CRLF line ends.
fn quoted_headers(message: &[u8]) -> Vec<u8> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    let mut head = &message[..end.min(MAX_QUOTED_HEADERS)];
    if end > MAX_QUOTED_HEADERS {
        let cut = head.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        head = &head[..cut];
    }
    let mut out = Vec::with_capacity(head.len() + 64);
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A reason on one line: what postline escapes before a terminal (control characters, bidi
/// marks; [`postline::escape::needs_escape`]) becomes a space, so no header line is injected.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if postline::escape::needs_escape(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The RFC 3463 code in a reason (`550 5.1.1 ...`), else one from the reply code's class.
fn status_code(reason: &str) -> String {
    for word in reason.split_whitespace().take(3) {
        let parts: Vec<&str> = word.split('.').collect();
        if parts.len() == 3
            && matches!(parts[0], "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            // A permanent failure is reported as one, whatever class the last reply had.
            return format!("5.{}.{}", parts[1], parts[2]);
        }
    }
    "5.0.0".into()
}

/// `Wed, 02 Dec 2026 07:50:41 +0000`.
pub fn rfc5322_date(unix: u64) -> String {
    postline::date::rfc5322(i64::try_from(unix).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Recipient;
    use crate::route::Route;

    fn entry(failed: usize) -> Entry {
        Entry {
            id: "abc-1".into(),
            from: "sender@x".into(),
            recipients: (0..failed)
                .map(|i| Recipient {
                    address: format!("r{i}@y"),
                    status: RecipientStatus::Failed {
                        at: 1,
                        reason: format!("550 5.1.1 <r{i}@y> unknown\r\nX"),
                    },
                })
                .collect(),
            route: Route::relay("h"),
            size: 1,
            created: 0,
            attempts: 1,
            next_attempt: 0,
            last_error: None,
            is_bounce: false,
            dsn: None,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_197_841),
            "Wed, 02 Dec 2026 07:50:41 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn a_multipart_report_with_a_status_per_recipient() {
        let msg = b"Subject: hi\r\nFrom: a@x\r\n\r\nbody that is not quoted\r\n";
        let r = String::from_utf8(report(&entry(2), msg, "mx.example", SystemTime::now())).unwrap();
        assert!(r.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(r.contains("\r\nDate: "));
        assert!(r.contains("Content-Type: message/delivery-status"));
        assert!(r.contains("Final-Recipient: rfc822; r1@y\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        assert!(r.contains("Diagnostic-Code: smtp; 550 5.1.1 <r0@y> unknown  X\r\n"));
        assert!(r.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\nFrom: a@x\r\n"));
        assert!(!r.contains("body that is not quoted"));
        assert!(
            !r.contains("unknown\r\nX"),
            "a reason cannot inject header lines"
        );
    }

    #[test]
    fn the_senders_envid_and_original_recipients_come_back() {
        let mut e = entry(1);
        let r =
            String::from_utf8(report(&e, b"Subject: x\r\n\r\n", "h", SystemTime::now())).unwrap();
        assert!(!r.contains("Original-"), "none asked for");
        e.dsn = Some(crate::entry::Dsn {
            envid: Some("job-42".into()),
            orcpt: true,
            ..Default::default()
        });
        let r =
            String::from_utf8(report(&e, b"Subject: x\r\n\r\n", "h", SystemTime::now())).unwrap();
        assert!(r.contains("\r\nOriginal-Envelope-Id: job-42\r\n"), "{r}");
        assert!(
            r.contains("\r\nOriginal-Recipient: rfc822; r0@y\r\nFinal-Recipient: rfc822; r0@y\r\n"),
            "{r}"
        );
    }

    #[test]
    fn ret_full_returns_the_whole_message_when_small_and_7_bit() {
        let msg = b"Subject: hi\r\nFrom: a@x\r\n\r\nfirst\n\nsecond\r\n";
        let mut e = entry(1);
        let hdrs = String::from_utf8(report(&e, msg, "h", SystemTime::now())).unwrap();
        assert!(!hdrs.contains("second"), "no RET: headers only");
        e.dsn = Some(crate::entry::Dsn {
            ret: Some(DsnRet::Full),
            ..Default::default()
        });
        let r = String::from_utf8(report(&e, msg, "h", SystemTime::now())).unwrap();
        assert!(
            r.contains("Content-Type: message/rfc822\r\n\r\nSubject: hi\r\nFrom: a@x\r\n\r\nfirst\r\n\r\nsecond\r\n\r\n--"),
            "{r}"
        );
        assert!(!r.contains("text/rfc822-headers"), "{r}");
        // Too large, or 8-bit: the header section only.
        let big = [
            &b"Subject: big\r\n\r\n"[..],
            &vec![b'x'; MAX_RETURNED_MESSAGE],
        ]
        .concat();
        let r = String::from_utf8(report(&e, &big, "h", SystemTime::now())).unwrap();
        assert!(
            r.contains("text/rfc822-headers") && !r.contains("xxxx"),
            "too large"
        );
        let eight = "Subject: caf\u{e9}\r\n\r\nbody\r\n".as_bytes();
        let r = String::from_utf8_lossy(&report(&e, eight, "h", SystemTime::now())).into_owned();
        assert!(
            r.contains("text/rfc822-headers") && !r.contains("body"),
            "8-bit"
        );
        e.dsn = Some(crate::entry::Dsn {
            ret: Some(DsnRet::Hdrs),
            ..Default::default()
        });
        let r = String::from_utf8(report(&e, msg, "h", SystemTime::now())).unwrap();
        assert!(r.contains("text/rfc822-headers") && !r.contains("second"));
    }

    #[test]
    fn bounded_whatever_the_input() {
        let huge_headers = "X-Big: ".to_string() + &"a".repeat(1 << 20) + "\r\n\r\nbody";
        let r = report(
            &entry(5000),
            huge_headers.as_bytes(),
            "h",
            SystemTime::now(),
        );
        assert!(r.len() < 1024 * 1024, "{} bytes", r.len());
        let text = String::from_utf8_lossy(&r);
        assert!(text.contains("... and 4500 more"));
    }
}
