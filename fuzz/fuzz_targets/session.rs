//! The session fed arbitrary server bytes, split at arbitrary points, with a driver that
//! starts TLS, authenticates and sends messages whenever the session allows it. Whatever the
//! server says, the session must not panic, must make progress or stop with an error, and
//! must never let message data out before a 354 (or as a BDAT chunk).
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline_proto::command::{Address, Domain, Envelope, MailParams, RcptParams, ReversePath};
use postline_proto::session::{Event, Outbox, Session, SessionConfig};
use postline_proto::sasl::Binding;
use postline_proto::{Credentials, Mechanism};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((&split, server)) = rest.split_first() else { return };
    let mut config = SessionConfig::new(&Domain::new("client.example").unwrap());
    config.pipelining = flags & 1 != 0;
    config.chunking = flags & 2 != 0;
    let mut s = Session::new(config);
    let mut out = Outbox::new(Vec::new());
    // Bit 4 picks SCRAM-SHA-256 (server-first and server-final parsing) instead of LOGIN.
    // The iteration count a fuzzer can reach is bounded by the client (MAX_ITERATIONS).
    let (mechanism, creds) = if flags & 16 != 0 {
        let creds = Credentials::Scram {
            authzid: None,
            username: "u",
            password: "p",
            nonce: "abc",
            binding: Binding::Unsupported,
        };
        (Mechanism::ScramSha256, creds)
    } else {
        (Mechanism::Login, Credentials::Password { authzid: None, username: "u", password: "p" })
    };
    let from = ReversePath::Address(Address::new("a@b.example").unwrap());
    let to = [Address::new("c@d.example").unwrap(), Address::new("e@f.example").unwrap()];
    let env = Envelope { from: &from, to: &to, mail: MailParams::default(), rcpt: RcptParams::default() };
    let step = (split as usize % 7) + 1;
    let mut input: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut sent = 0;
    let mut tried_tls = false;
    let mut tried_auth = false;
    for _ in 0..10_000 {
        let end = (fed + step).min(server.len());
        input.extend_from_slice(&server[fed..end]);
        fed = end;
        let mut pos = 0;
        loop {
            match s.handle_input(&input[pos..], &mut out) {
                Err(_) => return,
                Ok((n, ev)) => {
                    pos += n;
                    match ev {
                        Some(Event::StartTls) => {
                            pos = input.len();
                            s.tls_established(&mut out).unwrap();
                        }
                        Some(Event::AuthChallenge(c)) => {
                            let c = c.to_vec();
                            let _ = s.auth_respond(&creds, &c, &mut out);
                        }
                        Some(Event::SendData(_)) => {
                            s.send_data(b"Subject: x\r\n\r\n.\r\nbody\n", &mut out).unwrap();
                            s.end_data(&mut out).unwrap();
                        }
                        Some(_) => {}
                        None if n == 0 => break,
                        None => {}
                    }
                }
            }
        }
        input.drain(..pos);
        if s.is_idle() && flags & 4 != 0 && !tried_tls {
            tried_tls = true;
            let _ = s.start_tls(&mut out);
        } else if s.is_idle() && flags & 8 != 0 && !tried_auth {
            tried_auth = true;
            let _ = s.authenticate(mechanism, &creds, &mut out);
        } else if s.can_start_transaction() && sent < 3 {
            sent += 1;
            s.start_transaction(&env, &mut out).unwrap();
        }
        if s.sending().is_some() && s.chunking() {
            let _ = s.send_data(b"chunk\n", &mut out);
            let _ = s.end_data(&mut out);
        }
        let n = out.transmit().len();
        out.advance(n);
        if fed == server.len() {
            let _ = s.handle_close(&input);
            return;
        }
    }
});
