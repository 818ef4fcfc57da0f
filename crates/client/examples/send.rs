//! Sends one message through a relay:
//!
//! ```text
//! cargo run -p postline --example send -- HOST[:PORT] FROM TO[,TO...] [FILE]
//! ```
//!
//! TLS follows the port (465: implicit, 587: STARTTLS, else STARTTLS when offered) unless
//! `POSTLINE_TLS=none|starttls|opportunistic|implicit` says otherwise; `POSTLINE_USER` and
//! `POSTLINE_PASSWORD` authenticate; `POSTLINE_CA_FILE` adds a trusted root. Without FILE a
//! short test message is sent. The transcript (credentials redacted) goes to stderr.

use std::process::ExitCode;

use postline::{Client, Config, Direction, Envelope, Tls};

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, from, to, rest @ ..] = args.as_slice() else {
        return Err("usage: send HOST[:PORT] FROM TO[,TO...] [FILE]".into());
    };
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h.to_string(), p.parse::<u16>()?),
        _ => (server.clone(), 587),
    };
    let tls = match std::env::var("POSTLINE_TLS").as_deref() {
        Ok("none") => Tls::None,
        Ok("starttls") => Tls::StartTls,
        Ok("opportunistic") => Tls::Opportunistic,
        Ok("implicit") => Tls::Implicit,
        Ok(other) => return Err(format!("POSTLINE_TLS={other}: unknown mode").into()),
        Err(_) => match port {
            465 => Tls::Implicit,
            587 => Tls::StartTls,
            _ => Tls::Opportunistic,
        },
    };
    let mut config = Config::relay(host)
        .port(port)
        .tls(tls)
        .transcript(|dir, line| match dir {
            Direction::Client => eprintln!("C: {line}"),
            Direction::Server => eprintln!("S: {line}"),
        });
    if let (Ok(user), Ok(password)) = (
        std::env::var("POSTLINE_USER"),
        std::env::var("POSTLINE_PASSWORD"),
    ) {
        config = config.credentials(user, password);
    }
    if let Ok(ca) = std::env::var("POSTLINE_CA_FILE") {
        config = config.ca_file(ca);
    }
    let message = match rest.first() {
        Some(path) => std::fs::read(path)?,
        None => format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: postline test\r\n\r\nHello from postline.\r\n"
        )
        .into_bytes(),
    };
    let mut client = Client::connect(config)?;
    let envelope = Envelope::new(from, to.split(','))?;
    let outcome = client.send_bytes(&envelope, &message)?;
    for r in &outcome.recipients {
        match &r.reply {
            Some(reply) if r.accepted => println!("{}: accepted ({reply})", r.address),
            Some(reply) => println!("{}: refused ({reply})", r.address),
            None => println!("{}: no reply", r.address),
        }
    }
    println!("message: {}", outcome.reply);
    client.quit()?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
