//! A custom driver: the `Engine` over an in-memory server, on a virtual clock. No socket, no
//! sleep; the same decisions the blocking and tokio clients make. The server answers every
//! command, then falls silent after the end of data of the second message, so the run also
//! shows a timeout and an in-doubt result.
//!
//!     cargo run -q -p postline --example engine_pipe

use std::time::{Duration, Instant};

use postline::{Config, Engine, Envelope, Io, Timeouts, Tls};

/// An SMTP server in memory: one reply per command line, silent after `answer_dots` dots.
struct Server {
    to_client: Vec<u8>,
    line: Vec<u8>,
    in_data: bool,
    answer_dots: usize,
}

impl Server {
    fn write(&mut self, bytes: &[u8]) -> usize {
        for &b in bytes {
            self.line.push(b);
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                let reply: &[u8] = match (self.in_data, line.as_slice()) {
                    (true, b".\r\n") if self.answer_dots > 0 => {
                        self.in_data = false;
                        self.answer_dots -= 1;
                        b"250 2.0.0 queued\r\n"
                    }
                    (true, _) => b"",
                    (false, l) if l.starts_with(b"EHLO") => b"250-mem.test\r\n250 PIPELINING\r\n",
                    (false, l) if l.starts_with(b"DATA") => {
                        self.in_data = true;
                        b"354 go ahead\r\n"
                    }
                    (false, _) => b"250 ok\r\n",
                };
                self.to_client.extend_from_slice(reply);
            }
        }
        bytes.len()
    }

    fn read(&mut self) -> Option<Vec<u8>> {
        (!self.to_client.is_empty()).then(|| std::mem::take(&mut self.to_client))
    }
}

fn main() -> Result<(), postline::Error> {
    let mut server = Server {
        to_client: b"220 mem.test ESMTP\r\n".to_vec(),
        line: Vec::new(),
        in_data: false,
        answer_dots: 1,
    };
    let config = Config::relay("mem.test")
        .tls(Tls::None)
        .hello_name("client.example")
        .timeouts(Timeouts::default().capped(Duration::from_secs(30)))
        .transcript(|dir, line| println!("{dir:?}: {line}"));
    let mut now = Instant::now();
    let mut engine = Engine::new(config, now)?;
    let envelope = Envelope::new("me@client.example", ["you@mem.test"])?;
    let mut to_send = 2;
    loop {
        let io = match engine.poll_io(now) {
            Ok(io) => io,
            Err(e) => {
                println!("connection ended: {e}");
                break;
            }
        };
        match io {
            Io::Transmit { bytes, .. } => {
                let n = server.write(bytes);
                engine.handle_written(n, now);
            }
            Io::Receive { deadline } => match server.read() {
                Some(bytes) => engine.handle_input(&bytes, now),
                None => {
                    // Nothing comes: jump the virtual clock to the deadline.
                    now = deadline.expect("every reply has a timer");
                    engine.handle_timeout(now);
                }
            },
            Io::ReceiveNow => match server.read() {
                Some(bytes) => engine.handle_input(&bytes, now),
                None => engine.handle_nothing_pending(),
            },
            Io::NeedBody(_) => {
                engine.handle_body(b"Subject: from memory\r\n\r\nHello.\r\n")?;
                engine.handle_body_end()?;
            }
            Io::UpgradeTls { .. } => unreachable!("Tls::None"),
            Io::Done if to_send > 0 => {
                engine.send(&envelope, now)?;
                to_send -= 1;
            }
            Io::Done => break,
        }
        while let Some((id, result)) = engine.take_finished() {
            match result {
                Ok(outcome) => println!("message {id:?}: delivered, {}", outcome.reply),
                Err(e) => println!("message {id:?}: {e} (fault: {:?})", e.fault()),
            }
        }
    }
    Ok(())
}
