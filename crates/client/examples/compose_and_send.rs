//! Composes a message with an HTML alternative, an inline image and an attachment, and sends
//! it through a relay with the blocking client:
//!
//! ```text
//! cargo run -p postline --example compose_and_send -- [HOST[:PORT]] [FROM] [TO]
//! ```
//!
//! The server is the first argument, else `$POSTLINE_SERVER`, else `127.0.0.1:2525` (where
//! `python3 -m aiosmtpd -n -l 127.0.0.1:2525` listens, for one). No TLS, as for a local test
//! server; see the `send` example for TLS and authentication. Only default features needed.

use std::process::ExitCode;

use postline::{Client, Config, Message, Priority, Tls};

/// A 1×1 transparent PNG, to show as an inline image.
const PIXEL: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .or_else(|| std::env::var("POSTLINE_SERVER").ok())
        .unwrap_or_else(|| "127.0.0.1:2525".to_string());
    let from = args
        .next()
        .unwrap_or_else(|| "Alice Example <alice@example.com>".to_string());
    let to = args
        .next()
        .unwrap_or_else(|| "Bob Example <bob@example.org>".to_string());
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h.to_string(), p.parse::<u16>()?),
        _ => (server.clone(), 25),
    };

    let report = "quarter,revenue\nQ1,100\nQ2,120\nQ3,135\n";
    let message = Message::builder()
        .from(from.as_str())
        .to(to.as_str())
        .bcc("archive@example.com")
        .subject("Quarterly report – Q3")
        .text("Hi,\n\nthe Q3 numbers are attached.\n")
        .html(r#"<p>Hi,</p><p>the Q3 numbers are attached. <img src="cid:pixel" alt=""></p>"#)
        .inline("pixel", "image/png", PIXEL)
        .attachment("report.csv", "text/csv", report)
        .priority(Priority::High)
        .build()?;

    let config = Config::relay(host).port(port).tls(Tls::None);
    let mut client = Client::connect(config)?;
    let outcome = client.send_bytes(message.envelope(), message.as_bytes())?;
    client.quit()?;
    println!(
        "sent {} octets, Message-ID <{}>",
        message.as_bytes().len(),
        message.message_id().unwrap_or("?")
    );
    for r in outcome.accepted() {
        println!("  accepted: {}", r.address);
    }
    for r in outcome.rejected() {
        println!("  refused:  {} ({:?})", r.address, r.reply);
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compose_and_send: {e}");
            ExitCode::FAILURE
        }
    }
}
