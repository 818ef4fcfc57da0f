//! Signs a message with DKIM and delivers it straight to each recipient domain's exchangers
//! (MX records), as a small MTA does:
//!
//! ```text
//! cargo run -p postline --features tokio,dkim --example direct_dkim -- \
//!     KEY.pem SELECTOR DOMAIN FROM TO[,TO...] [FILE]
//! ```
//!
//! The key is PEM (RSA signs rsa-sha256, Ed25519 ed25519-sha256); the public key must be
//! published at `SELECTOR._domainkey.DOMAIN`. `POSTLINE_DNS_SERVER=IP:PORT` and
//! `POSTLINE_MX_PORT=N` point the lookups and connections elsewhere (tests, unusual networks).
//! Each recipient's result is printed: delivered, deferred, failed or in doubt.

use std::process::ExitCode;

use postline::dkim::DkimSigner;
use postline::{Config, Envelope, Mailer};

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, selector, domain, from, to, rest @ ..] = args.as_slice() else {
        return Err("usage: direct_dkim KEY.pem SELECTOR DOMAIN FROM TO[,TO...] [FILE]".into());
    };
    let recipients: Vec<&str> = to.split(',').collect();
    let message = match rest.first() {
        Some(path) => std::fs::read(path)?,
        None => format!(
            "From: {from}\r\nTo: {to}\r\nSubject: signed and delivered directly\r\n\r\nHello.\r\n"
        )
        .into_bytes(),
    };
    let signer = DkimSigner::from_pem_file(key, selector, domain)?;
    // The signature covers the message exactly as it goes out: sign last.
    let signed = signer.sign_message(&message)?;

    // The template's host is not used: each domain's exchangers are.
    let mut mailer = Mailer::direct(Config::relay("exchangers"));
    if let Ok(dns) = std::env::var("POSTLINE_DNS_SERVER") {
        mailer = mailer.dns_server(dns.parse()?);
    }
    if let Ok(port) = std::env::var("POSTLINE_MX_PORT") {
        mailer = mailer.mx_port(port.parse()?);
    }
    let envelope = Envelope::new(from, &recipients)?;
    let mut all_delivered = true;
    for d in mailer.send_blocking(&envelope, &signed)? {
        all_delivered &= d.status == postline::DeliveryStatus::Delivered;
        println!("{:<11} {}  {}", d.status.name(), d.address, d.detail());
    }
    if all_delivered {
        Ok(())
    } else {
        Err("not every recipient was delivered".into())
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("direct_dkim: {e}");
            ExitCode::FAILURE
        }
    }
}
