//! `postline probe`: what a server offers, without sending mail.

use serde_json::{json, Value};

use postline::{CertificateSummary, Config, Error, ServerReply, StopAfter, TlsInfo};

use crate::account::{Account, TlsMode};
use crate::args::{ProbeArgs, ServerArgs};
use crate::connect::{self, Fail};
use crate::exit;
use crate::output::{errln, escape, json_safe, outln};
use crate::stage;

/// What an EHLO keyword means, for people reading the probe.
fn explain(keyword: &str) -> &'static str {
    match keyword.to_ascii_uppercase().as_str() {
        "PIPELINING" => "commands may be sent in groups (RFC 2920)",
        "SIZE" => "announces its message size limit (RFC 1870)",
        "STARTTLS" => "can upgrade to TLS (RFC 3207)",
        "AUTH" => "SASL authentication (RFC 4954)",
        "8BITMIME" => "accepts 8-bit message bodies (RFC 6152)",
        "SMTPUTF8" => "accepts UTF-8 addresses and headers (RFC 6531)",
        "CHUNKING" => "accepts BDAT chunks (RFC 3030)",
        "BINARYMIME" => "accepts binary bodies with BDAT (RFC 3030)",
        "DSN" => "delivery status notifications (RFC 3461)",
        "ENHANCEDSTATUSCODES" => "replies carry x.y.z status codes (RFC 2034)",
        "REQUIRETLS" => "can require TLS all the way (RFC 8689)",
        "VRFY" => "verifies addresses (RFC 5321)",
        "ETRN" => "remote queue starting (RFC 1985)",
        "DELIVERBY" => "deliver-by deadlines (RFC 2852)",
        "MT-PRIORITY" => "message priorities (RFC 6710)",
        "FUTURERELEASE" => "future release (RFC 4865)",
        "XCLIENT" | "XFORWARD" => "Postfix proxy attribute forwarding",
        "HELP" => "answers HELP",
        _ => "",
    }
}

struct Cert {
    summary: CertificateSummary,
    not_before: String,
    not_after: String,
}

fn cert(info: &TlsInfo) -> Option<Cert> {
    let der = info.peer_certificates.first()?;
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(Cert {
        summary: CertificateSummary::from_der(der)?,
        not_before: c.validity().not_before.to_string(),
        not_after: c.validity().not_after.to_string(),
    })
}

struct TlsProbe {
    seen: stage::Setup,
    info: TlsInfo,
    verified: Result<(), String>,
}

impl TlsProbe {
    fn new(seen: stage::Setup, verified: Result<(), String>) -> TlsProbe {
        let info = seen.tls.clone().unwrap_or_else(|| TlsInfo {
            version: String::new(),
            cipher_suite: String::new(),
            peer_certificates: vec![],
            channel_binding: None,
        });
        TlsProbe {
            seen,
            info,
            verified,
        }
    }

    fn ehlo(&self) -> Vec<String> {
        lines(self.seen.ehlo.as_ref())
    }
}

/// A reply's lines, as sent.
fn lines(reply: Option<&ServerReply>) -> Vec<String> {
    reply.map(|r| r.lines.clone()).unwrap_or_default()
}

/// Connects with TLS as far as `stop`: verified first; if the certificate is refused, again
/// without checks so its details can still be shown.
fn try_tls(base: &Config, mode: postline::Tls, stop: StopAfter) -> Result<TlsProbe, Error> {
    let seen = stage::run(base.clone().tls(mode), stop);
    match seen.result {
        Ok(()) => Ok(TlsProbe::new(seen, Ok(()))),
        Err(e @ Error::Tls { .. }) => {
            let reason = connect::describe(&e);
            // Again without checks (and without pins), only to show what the server has.
            let seen = stage::run(
                base.clone()
                    .tls(mode)
                    .clear_pins()
                    .dangerous_accept_invalid_certificates(true),
                stop,
            );
            match seen.result {
                Ok(()) if seen.tls.is_some() => Ok(TlsProbe::new(seen, Err(reason))),
                Ok(()) => Err(e),
                Err(again) => Err(again),
            }
        }
        Err(e) => Err(e),
    }
}

/// Drops the credentials of the flags and the account: the probe itself never authenticates.
fn without_credentials(args: &ServerArgs, account: &mut Option<Account>) -> ServerArgs {
    if let Some(a) = account.as_mut() {
        a.user = None;
        a.password = None;
        a.oauth_token = None;
    }
    ServerArgs {
        user: None,
        password_env: None,
        password_file: None,
        password_cmd: None,
        oauth_token_env: None,
        oauth_token_cmd: None,
        ..args.clone()
    }
}

/// `postline probe`.
pub fn run(probe: &ProbeArgs) -> Result<u8, Fail> {
    let stop = match probe.quit_after {
        None => StopAfter::Tls,
        Some(q) => stage::setup_stage(q).ok_or_else(|| {
            Fail::new(
                exit::USAGE,
                "--quit-after mail|rcpt needs an envelope, which a probe has not: `postline send --from ADDR --to ADDR --quit-after rcpt` checks MAIL and RCPT",
            )
        })?,
    };
    let mut account = connect::load_account(probe.server.account.as_deref())?;
    // With --quit-after auth, the session that authenticates is opened as `send` would open
    // it; every other connection goes without credentials.
    let login = if stop == StopAfter::Auth {
        let t = connect::target(&probe.server, account.as_ref())?;
        if !t.auth && !t.direct {
            return Err(Fail::new(
                exit::USAGE,
                "--quit-after auth needs credentials: --user with --password-env/-file/-cmd or an OAuth token (or an account's), or --auth external",
            ));
        }
        Some(t.config)
    } else {
        None
    };
    let args = without_credentials(&probe.server, &mut account);
    let target = connect::target(&args, account.as_ref())?;
    if target.direct {
        return Err(Fail::new(
            exit::USAGE,
            "probe needs --server HOST[:PORT] (or an account)",
        ));
    }
    let implicit = target.tls == TlsMode::Implicit;
    // A probe sends no message, so REQUIRETLS does not apply (whether the server offers it
    // shows among the extensions).
    let base = target.config.clone().require_tls(false);
    // In clear text: the greeting, and the EHLO reply unless only the banner is wanted.
    let first = if implicit {
        None
    } else {
        let clear = if stop == StopAfter::Banner {
            StopAfter::Banner
        } else {
            StopAfter::Helo
        };
        let seen = stage::run(base.clone().tls(postline::Tls::None).clear_pins(), clear);
        if let Err(e) = &seen.result {
            return Ok(fail(&args, &target.host, target.port, stop, e));
        }
        Some(seen)
    };
    let starttls_offered = first.as_ref().is_some_and(|f| f.starttls_offered);
    let ehlo = lines(first.as_ref().and_then(|f| f.ehlo.as_ref()));
    let tls = match stop {
        StopAfter::Banner | StopAfter::Helo if implicit => {
            Some(try_tls(&base, postline::Tls::Implicit, stop))
        }
        StopAfter::Banner | StopAfter::Helo => None,
        _ if implicit => Some(try_tls(&base, postline::Tls::Implicit, StopAfter::Tls)),
        _ if starttls_offered => Some(try_tls(&base, postline::Tls::StartTls, StopAfter::Tls)),
        _ => None,
    };
    // As sent: the JSON escapes it as JSON does, the text output with `escape`.
    let banner = first
        .as_ref()
        .and_then(|f| f.greeting.as_ref())
        .or(match &tls {
            Some(Ok(t)) => t.seen.greeting.as_ref(),
            _ => None,
        })
        .map(|g| g.to_raw_string())
        .unwrap_or_default();
    let keywords = |lines: &[String]| -> Vec<(String, &'static str)> {
        lines
            .iter()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let kw = l.split([' ', '=']).next().unwrap_or_default();
                (l.clone(), explain(kw))
            })
            .collect()
    };
    let auth_of = |lines: &[String]| -> Option<String> {
        lines.iter().find_map(|l| {
            let u = l.to_ascii_uppercase();
            u.strip_prefix("AUTH ")
                .or(u.strip_prefix("AUTH="))
                .map(|m| m.trim().to_string())
        })
    };
    // Everything is shown either way; the exit code says whether TLS works as configured
    // (unless TLS was turned off), so a script can check a certificate with it.
    let mut code = match &tls {
        _ if target.tls == TlsMode::None => exit::OK,
        Some(Ok(t)) if t.verified.is_err() => exit::UNAVAILABLE,
        Some(Err(e)) => exit::for_error(e),
        // STARTTLS required and not offered: what `send` gives (no STARTTLS to be had).
        None if target.tls == TlsMode::Starttls
            && !matches!(stop, StopAfter::Banner | StopAfter::Helo) =>
        {
            exit::for_error(&Error::StartTlsUnavailable(None))
        }
        _ => exit::OK,
    };
    // Authentication only after every earlier step succeeded (never to a server whose
    // certificate did not verify); its failure gives the code `send` gives.
    let login = match login {
        Some(config) if code == exit::OK => Some(stage::run(config, StopAfter::Auth)),
        _ => None,
    };
    if let Some(Err(e)) = login.as_ref().map(|l| &l.result) {
        code = exit::for_error(e);
    }
    let explicit = probe.quit_after.is_some();
    if args.json {
        let mut v = json!({
            "server": target.host,
            "port": connect::shown_port(&target.host, target.port),
            "quit_after": stage::name(stop),
            "banner": banner,
            "ehlo": ehlo,
            "starttls_offered": starttls_offered,
            "auth": auth_of(&ehlo),
        });
        match &tls {
            Some(Ok(t)) => {
                let c = cert(&t.info);
                let tls_ehlo = t.ehlo();
                v["tls"] = json!({
                    "version": t.info.version,
                    "cipher_suite": t.info.cipher_suite,
                    "verified": t.verified.is_ok() && base.verifies_certificates(),
                    "verify_error": t.verified.as_ref().err(),
                    "certificate": c.map(|c| json!({
                        "subject": c.summary.subject,
                        "issuer": c.summary.issuer,
                        "names": c.summary.names(),
                        "not_before": c.not_before,
                        "not_after": c.not_after,
                        "self_signed": c.summary.self_signed,
                        "fingerprint_sha256": c.summary.fingerprint.to_string(),
                        "pinned_pubkey": c.summary.public_key_pin.to_string(),
                    })),
                    "ehlo": tls_ehlo,
                });
                v["auth"] = json!(auth_of(&tls_ehlo).or(auth_of(&ehlo)));
            }
            Some(Err(e)) => v["tls"] = json!({"error": connect::describe(e)}),
            None => v["tls"] = Value::Null,
        }
        if stop == StopAfter::Auth {
            v["authentication"] = match login.as_ref().map(|l| (&l.result, l.auth.as_ref())) {
                None => json!({"status": "not attempted"}),
                Some((Ok(()), reply)) => json!({
                    "status": "accepted",
                    "reply": reply.map(|r| r.to_raw_string()),
                }),
                Some((Err(e), _)) => json!({
                    "status": if e.reply().is_some() { "refused" } else { "failed" },
                    "reply": e.reply().map(|r| r.to_raw_string()),
                    "error": e.to_string(),
                }),
            };
        }
        v["exit_code"] = json!(code);
        // serde_json escapes C0 controls; json_safe the rest (DEL, C1, bidi marks).
        outln!("{}", json_safe(&v.to_string()));
        return Ok(code);
    }
    outln!(
        "server       {}",
        escape(&connect::shown_server(&target.host, target.port))
    );
    if !implicit || !banner.is_empty() {
        outln!("banner       {}", escape(&banner));
    }
    if !implicit && stop != StopAfter::Banner {
        print_ehlo(&keywords(&ehlo));
        outln!(
            "STARTTLS     {}",
            if starttls_offered {
                "offered"
            } else {
                "not offered"
            }
        );
    }
    match &tls {
        Some(Ok(t)) => {
            outln!(
                "TLS          {} {}",
                escape(&t.info.version),
                escape(&t.info.cipher_suite)
            );
            if let Some(c) = cert(&t.info) {
                let s = &c.summary;
                outln!("certificate  subject: {}", escape(&s.subject));
                outln!(
                    "             issuer:  {}{}",
                    escape(&s.issuer),
                    if s.self_signed { " (self-signed)" } else { "" }
                );
                outln!("             names:   {}", escape(&s.names().join(", ")));
                outln!(
                    "             valid:   {} to {}",
                    escape(&c.not_before),
                    escape(&c.not_after)
                );
                outln!(
                    "             sha256:  {}  (--tls-fingerprint)",
                    s.fingerprint
                );
                outln!(
                    "             pubkey:  {}  (--pinned-pubkey)",
                    s.public_key_pin
                );
            }
            match &t.verified {
                Ok(()) if !base.verifies_certificates() => {
                    outln!("             verifies: not checked (--insecure)")
                }
                Ok(()) => outln!("             verifies: yes"),
                Err(reason) => outln!("             verifies: NO ({})", escape(reason)),
            }
            let tls_ehlo = t.ehlo();
            if implicit {
                print_ehlo(&keywords(&tls_ehlo));
            }
            if stop != StopAfter::Banner {
                let auth = auth_of(&tls_ehlo);
                outln!(
                    "AUTH         {} (under TLS)",
                    escape(auth.as_deref().unwrap_or("none offered"))
                );
            }
        }
        Some(Err(e)) => outln!("TLS          failed: {}", escape(&connect::describe(e))),
        None if stop == StopAfter::Banner => {}
        None => {
            let auth = auth_of(&ehlo);
            outln!(
                "AUTH         {} (in clear text)",
                escape(auth.as_deref().unwrap_or("none offered"))
            );
        }
    }
    match login.as_ref().map(|l| (&l.result, l.auth.as_ref())) {
        None if stop == StopAfter::Auth => {
            outln!("auth result  not attempted: an earlier step failed")
        }
        None => {}
        Some((Ok(()), reply)) => outln!(
            "auth result  accepted: {}",
            escape(&reply.map(|r| r.to_string()).unwrap_or_default())
        ),
        Some((Err(e), _)) => {
            if let Some(r) = e.reply() {
                outln!("auth result  refused: {}", escape(&r.to_string()));
            }
            errln!("postline: {}", escape(&connect::describe(e)));
        }
    }
    if explicit && code == exit::OK {
        outln!("stopped after {}", stage::name(stop));
    }
    Ok(code)
}

fn print_ehlo(lines: &[(String, &'static str)]) {
    for (i, (line, what)) in lines.iter().enumerate() {
        let label = if i == 0 { "extensions" } else { "" };
        if what.is_empty() {
            outln!("{label:<12} {}", escape(line));
        } else {
            outln!("{label:<12} {:<28} {what}", escape(line));
        }
    }
}

/// A failure of the clear-text connection: nothing else to show.
fn fail(args: &ServerArgs, host: &str, port: u16, stop: StopAfter, e: &Error) -> u8 {
    let code = exit::for_error(e);
    if args.json {
        let v = json!({
            "server": host,
            "port": connect::shown_port(host, port),
            "quit_after": stage::name(stop),
            "error": e.to_string(),
            // As sent, as the banner is.
            "reply": e.reply().map(|r| r.to_raw_string()),
            "exit_code": code,
        });
        outln!("{}", json_safe(&v.to_string()));
    } else {
        errln!("postline: {}", escape(&connect::describe(e)));
    }
    code
}
