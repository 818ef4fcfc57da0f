//! Sends one message: `cargo run -p postline --example send -- HOST:PORT FROM TO [FILE]`.
//! Plain SMTP unless POSTLINE_TLS=starttls|implicit; prints the transcript and the outcome.
use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, from, to, rest @ ..] = args.as_slice() else {
        eprintln!("usage: send HOST:PORT FROM TO [FILE]");
        std::process::exit(64);
    };
    let (host, port) = server.rsplit_once(':').ok_or("server must be HOST:PORT")?;
    let tls = match std::env::var("POSTLINE_TLS").as_deref() {
        Ok("starttls") => postline::Tls::StartTls,
        Ok("implicit") => postline::Tls::Implicit,
        _ => postline::Tls::None,
    };
    let message = match rest.first() {
        Some(path) => std::fs::read(path)?,
        None => {
            let mut m = format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: postline test\r\n\r\nHello from postline.\r\n")
                .into_bytes();
            if m.is_empty() {
                std::io::stdin().read_to_end(&mut m)?;
            }
            m
        }
    };
    let config = postline::Config::relay(host)
        .port(port.parse()?)
        .tls(tls)
        .transcript(|dir, line| match dir {
            postline::Direction::Client => eprintln!("C: {line}"),
            postline::Direction::Server => eprintln!("S: {line}"),
        });
    let mut client = postline::Client::connect(config)?;
    let envelope = postline::Envelope::new(from, to.split(','))?;
    let outcome = client.send_bytes(&envelope, &message)?;
    for r in &outcome.recipients {
        println!(
            "{}: {}",
            r.address,
            if r.accepted { "accepted" } else { "refused" }
        );
    }
    println!("{}", outcome.reply);
    client.quit()?;
    Ok(())
}
