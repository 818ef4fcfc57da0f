//! `--quit-after` before MAIL, for `send` and `probe`: a session set up only as far as a
//! stage (the library's [`Config::stop_after`]), then QUIT, and what the server said on the way.

use postline::{Client, Config, Error, Extension, ServerReply, StopAfter, TlsInfo};

use crate::args::QuitAfter;

/// The library's stop point for a `--quit-after` stage before MAIL (`None` for `mail` and
/// `rcpt`, which need an envelope).
pub fn setup_stage(stage: QuitAfter) -> Option<StopAfter> {
    match stage {
        QuitAfter::Connect | QuitAfter::Banner => Some(StopAfter::Banner),
        QuitAfter::Helo => Some(StopAfter::Helo),
        QuitAfter::Tls => Some(StopAfter::Tls),
        QuitAfter::Auth => Some(StopAfter::Auth),
        QuitAfter::Mail | QuitAfter::Rcpt => None,
    }
}

/// The stage as `--quit-after` spells it (and `--json` prints it).
pub fn name(stage: StopAfter) -> &'static str {
    match stage {
        StopAfter::Banner => "banner",
        StopAfter::Helo => "helo",
        StopAfter::Tls => "tls",
        _ => "auth",
    }
}

/// What the server said in a session set up as far as a stage.
pub struct Setup {
    /// The greeting (the 220 banner).
    pub greeting: Option<ServerReply>,
    /// The last EHLO (HELO) reply: over TLS when the session got that far.
    pub ehlo: Option<ServerReply>,
    /// The TLS parameters, when the session is encrypted.
    pub tls: Option<TlsInfo>,
    /// Whether the last EHLO reply offered STARTTLS.
    pub starttls_offered: bool,
    /// The reply accepting AUTH (235), when the session authenticated.
    pub auth: Option<ServerReply>,
    /// `Ok` when every step up to the stage, and QUIT, succeeded; else the first failure
    /// (nothing above is known then: the library gives back only the error).
    pub result: Result<(), Error>,
}

/// Connects as far as `stage`, notes the replies, says QUIT.
pub fn run(config: Config, stage: StopAfter) -> Setup {
    match Client::connect(config.stop_after(stage)) {
        Ok(client) => {
            let greeting = client.greeting().cloned();
            let ehlo = client.ehlo_reply().cloned();
            let tls = client.tls_info().cloned();
            let starttls_offered = client.capabilities().has(Extension::StartTls);
            let auth = client.auth_reply().cloned();
            Setup {
                greeting,
                ehlo,
                tls,
                starttls_offered,
                auth,
                result: client.quit(),
            }
        }
        Err(e) => Setup {
            greeting: None,
            ehlo: None,
            tls: None,
            starttls_offered: false,
            auth: None,
            result: Err(e),
        },
    }
}
