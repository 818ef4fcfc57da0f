//! Runs a session over a stream the program opened itself: here a Unix socket or a TCP
//! connection with its own connect timeout; a proxy's stream or an in-memory pipe work the
//! same way (anything that implements `postline::BlockingStream`).
//!
//! ```text
//! cargo run -p postline --example custom_stream -- (unix:PATH | HOST:PORT) FROM TO
//! ```
//!
//! No TLS is attempted (`POSTLINE_TLS=starttls` asks for it; the name checked is the host
//! part, or `localhost` for a socket).

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use postline::{BlockingStream, Client, Config, Envelope, Tls};

fn send<S: BlockingStream>(
    stream: S,
    config: Config,
    from: &str,
    to: &str,
) -> postline::Result<()> {
    let mut client = Client::from_stream(stream, config)?;
    let envelope = Envelope::new(from, [to])?;
    let outcome = client.send_bytes(
        &envelope,
        b"Subject: over a stream of my own\r\n\r\nOpened by the program, driven by postline.\r\n",
    )?;
    println!("accepted: {}", outcome.reply);
    client.quit()
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, from, to] = args.as_slice() else {
        return Err("usage: custom_stream (unix:PATH | HOST:PORT) FROM TO".into());
    };
    let tls = match std::env::var("POSTLINE_TLS").as_deref() {
        Ok("starttls") => Tls::StartTls,
        _ => Tls::None,
    };
    if let Some(path) = target.strip_prefix("unix:") {
        let config = Config::relay("localhost")
            .tls(tls)
            .hello_name("client.example");
        send(UnixStream::connect(path)?, config, from, to)?;
    } else {
        let (host, _) = postline::parse_server(target)?;
        let addr = target
            .to_socket_addrs()?
            .next()
            .ok_or("the name has no address")?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        // The local end's address goes in EHLO when this host has no fully qualified name.
        let config = Config::relay(host)
            .tls(tls)
            .hello_from_local_address(tcp.local_addr()?);
        send(tcp, config, from, to)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_stream: {e}");
            ExitCode::FAILURE
        }
    }
}
