//! Credentials never reach a transcript: neither the `Config::transcript` sink nor the
//! `tracing` events of target `postline::transcript` (captured here by a small subscriber
//! installed for the test), for PLAIN, LOGIN, CRAM-MD5's secret, XOAUTH2 and OAUTHBEARER.
//! Also: no AUTH at all over clear text by default, proved by what the server received.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postline::{Client, Config, Direction, Envelope, Error, Mechanism, Timeouts, Tls};
use postline_testkit::{greeting_and_ehlo, ScriptedServer, Step};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const USER: &str = "mailuser@example.com";
const PASSWORD: &str = "s3cret-Pa55word";
const TOKEN: &str = "ya29.TOKEN-abcdef0123456789";

/// Every event, as `target: fields`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, String)>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?} "));
        } else {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        self.0
            .lock()
            .unwrap()
            .push((event.metadata().target().to_string(), f.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strings that must appear in no transcript line.
fn secrets() -> Vec<String> {
    vec![
        PASSWORD.into(),
        TOKEN.into(),
        b64(PASSWORD.as_bytes()),
        b64(USER.as_bytes()),
        b64(format!("\0{USER}\0{PASSWORD}").as_bytes()),
        b64(format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()),
        b64(format!("n,a={USER},\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()),
    ]
}

/// A clear-text server offering every mechanism, playing `auth` and then one message.
fn server(auth: Vec<Step>) -> ScriptedServer {
    let mut s = greeting_and_ehlo(&["PIPELINING", "AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER"]);
    s.extend(auth);
    s.extend([
        Step::expect("MAIL"),
        Step::expect("RCPT"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectData,
        Step::reply("250 queued"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
    ]);
    ScriptedServer::start(s)
}

fn config(server: &ScriptedServer, sink: Arc<Mutex<Vec<String>>>) -> Config {
    Config::relay("127.0.0.1")
        .port(server.port())
        .tls(Tls::None)
        .allow_plaintext_auth(true)
        .hello_name("client.test")
        .timeouts(Timeouts::default().capped(Duration::from_secs(2)))
        .transcript(move |dir, line| {
            let p = if dir == Direction::Client { "C" } else { "S" };
            sink.lock().unwrap().push(format!("{p}: {line}"));
        })
}

/// Runs one session with `config` under the capturing subscriber; returns the sink's lines
/// and the `postline::transcript` events.
fn session(server: ScriptedServer, config: Config, sink: &Mutex<Vec<String>>) -> (String, String) {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        let mut client = Client::connect(config).unwrap();
        assert!(client.is_authenticated());
        let env = Envelope::new("a@client.test", ["b@server.test"]).unwrap();
        client.send_bytes(&env, b"Subject: x\r\n\r\nx\r\n").unwrap();
        client.quit().unwrap();
    });
    let report = server.finish();
    report.assert_ok();
    let events = capture.0.lock().unwrap().clone();
    let transcript: Vec<&str> = events
        .iter()
        .filter(|(t, _)| t == "postline::transcript")
        .map(|(_, m)| m.as_str())
        .collect();
    assert!(!transcript.is_empty(), "no transcript events: {events:?}");
    let all: Vec<String> = events.iter().map(|(t, m)| format!("{t}: {m}")).collect();
    let sink = sink.lock().unwrap().join("\n");
    assert!(sink.contains("C: AUTH "), "{sink}");
    // The server did get the credentials: the redaction is in the logs only.
    assert!(report.received_str().contains("AUTH "));
    (sink, all.join("\n"))
}

fn assert_clean(mech: &str, sink: &str, events: &str) {
    for s in secrets() {
        assert!(
            !sink.contains(&s),
            "{mech}: the transcript holds {s:?}:\n{sink}"
        );
        assert!(
            !events.contains(&s),
            "{mech}: a tracing event holds {s:?}:\n{events}"
        );
    }
    assert!(sink.contains("***"), "{mech}: no redaction marker:\n{sink}");
    assert!(
        events.contains("***"),
        "{mech}: no redaction marker:\n{events}"
    );
}

#[test]
fn plain_and_login_are_redacted_in_transcript_and_tracing() {
    let plain = vec![Step::expect("AUTH PLAIN "), Step::reply("235 2.7.0 ok")];
    let login = vec![
        Step::expect("AUTH LOGIN"),
        Step::reply("334 VXNlcm5hbWU6"),
        Step::expect(&b64(USER.as_bytes())),
        Step::reply("334 UGFzc3dvcmQ6"),
        Step::expect(&b64(PASSWORD.as_bytes())),
        Step::reply("235 2.7.0 ok"),
    ];
    for (mech, m, steps) in [
        ("PLAIN", Mechanism::Plain, plain),
        ("LOGIN", Mechanism::Login, login),
    ] {
        let srv = server(steps);
        let sink = Arc::new(Mutex::new(Vec::new()));
        let cfg = config(&srv, sink.clone())
            .credentials(USER, PASSWORD)
            .auth_mechanism(m);
        let (lines, events) = session(srv, cfg, &sink);
        assert!(lines.contains(&format!("C: AUTH {mech}")), "{lines}");
        assert_clean(mech, &lines, &events);
    }
}

#[test]
fn oauth_tokens_are_redacted_in_transcript_and_tracing() {
    for (mech, m) in [
        ("XOAUTH2", Mechanism::XOAuth2),
        ("OAUTHBEARER", Mechanism::OAuthBearer),
    ] {
        let srv = server(vec![
            Step::expect(&format!("AUTH {mech} ")),
            Step::reply("235 2.7.0 ok"),
        ]);
        let sink = Arc::new(Mutex::new(Vec::new()));
        let cfg = config(&srv, sink.clone())
            .oauth_token(USER, TOKEN)
            .auth_mechanism(m);
        let (lines, events) = session(srv, cfg, &sink);
        assert!(lines.contains(&format!("C: AUTH {mech} ***")), "{lines}");
        assert_clean(mech, &lines, &events);
    }
}

/// Without TLS and without `allow_plaintext_auth`, no AUTH command leaves at all, whatever
/// the server offers; the server's capture proves it.
#[test]
fn no_auth_over_clear_text_by_default() {
    for offer in ["AUTH PLAIN LOGIN", "AUTH XOAUTH2 OAUTHBEARER", "PIPELINING"] {
        let mut s = greeting_and_ehlo(&[offer]);
        s.extend([Step::expect("QUIT"), Step::reply("221 bye")]);
        let srv = ScriptedServer::start(s);
        let cfg = Config::relay("127.0.0.1")
            .port(srv.port())
            .tls(Tls::None)
            .hello_name("client.test")
            .timeouts(Timeouts::default().capped(Duration::from_secs(2)));
        let cfg = if offer.contains("OAUTH") {
            cfg.oauth_token(USER, TOKEN)
        } else {
            cfg.credentials(USER, PASSWORD)
        };
        let err = Client::connect(cfg).unwrap_err();
        assert!(
            matches!(err, Error::PlaintextAuthRefused),
            "{offer}: {err:?}"
        );
        let report = srv.finish();
        report.assert_ok();
        assert_eq!(
            report.received_str(),
            "EHLO client.test\r\nQUIT\r\n",
            "{offer}"
        );
    }
}
