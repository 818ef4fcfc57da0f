//! `postline probe`: what a server offers, without sending mail.

use serde_json::{json, Value};

use postline::{CertificateSummary, Client, Config, Error, TlsInfo};

use crate::account::TlsMode;
use crate::args::ServerArgs;
use crate::connect::{self, Fail};
use crate::exit;
use crate::output::{errln, escape, json_safe, outln};

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
    info: TlsInfo,
    verified: Result<(), String>,
    ehlo: Vec<String>,
}

/// Connects with TLS: verified first; if the certificate is refused, again without checks so
/// its details can still be shown.
fn try_tls(base: &Config, mode: postline::Tls) -> Result<TlsProbe, Error> {
    match Client::connect(base.clone().tls(mode)) {
        Ok(c) => Ok(TlsProbe {
            info: c.tls_info().cloned().unwrap_or_else(|| TlsInfo {
                version: String::new(),
                cipher_suite: String::new(),
                peer_certificates: vec![],
                channel_binding: None,
            }),
            verified: Ok(()),
            ehlo: c.ehlo_reply().map(|r| r.lines.clone()).unwrap_or_default(),
        }),
        Err(e @ Error::Tls { .. }) => {
            let reason = connect::describe(&e);
            // Again without checks (and without pins), only to show what the server has.
            let c = Client::connect(
                base.clone()
                    .tls(mode)
                    .clear_pins()
                    .dangerous_accept_invalid_certificates(true),
            )?;
            Ok(TlsProbe {
                info: c.tls_info().cloned().ok_or(e)?,
                verified: Err(reason),
                ehlo: c.ehlo_reply().map(|r| r.lines.clone()).unwrap_or_default(),
            })
        }
        Err(e) => Err(e),
    }
}

/// `postline probe`.
pub fn run(args: &ServerArgs) -> Result<u8, Fail> {
    let account = connect::load_account(args.account.as_deref())?;
    // A probe never authenticates: drop any credentials.
    let args = ServerArgs {
        user: None,
        password_env: None,
        password_file: None,
        password_cmd: None,
        oauth_token_env: None,
        oauth_token_cmd: None,
        ..args.clone()
    };
    let mut account = account;
    if let Some(a) = account.as_mut() {
        a.user = None;
        a.password = None;
        a.oauth_token = None;
    }
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
    let first = if implicit {
        None
    } else {
        match Client::connect(base.clone().tls(postline::Tls::None).clear_pins()) {
            Ok(c) => Some(c),
            Err(e) => return Ok(fail(&args, &target.host, target.port, &e)),
        }
    };
    let (banner, ehlo, starttls_offered) = match &first {
        Some(c) => (
            // As sent: the JSON escapes it as JSON does, the text output with `escape`.
            c.greeting().map(|g| g.to_raw_string()).unwrap_or_default(),
            c.ehlo_reply().map(|r| r.lines.clone()).unwrap_or_default(),
            c.capabilities().has(postline::Extension::StartTls),
        ),
        None => (String::new(), Vec::new(), false),
    };
    drop(first);
    let tls = if implicit {
        Some(try_tls(&base, postline::Tls::Implicit))
    } else if starttls_offered {
        Some(try_tls(&base, postline::Tls::StartTls))
    } else {
        None
    };
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
    let code = match &tls {
        _ if target.tls == TlsMode::None => exit::OK,
        Some(Ok(t)) if t.verified.is_err() => exit::UNAVAILABLE,
        Some(Err(e)) => exit::for_error(e),
        _ => exit::OK,
    };
    if args.json {
        let mut v = json!({
            "server": target.host,
            "port": target.port,
            "banner": banner,
            "ehlo": ehlo,
            "starttls_offered": starttls_offered,
            "auth": auth_of(&ehlo),
        });
        match &tls {
            Some(Ok(t)) => {
                let c = cert(&t.info);
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
                    "ehlo": t.ehlo,
                });
                v["auth"] = json!(auth_of(&t.ehlo).or(auth_of(&ehlo)));
            }
            Some(Err(e)) => v["tls"] = json!({"error": connect::describe(e)}),
            None => v["tls"] = Value::Null,
        }
        // serde_json escapes C0 controls; json_safe the rest (DEL, C1, bidi marks).
        outln!("{}", json_safe(&v.to_string()));
        return Ok(code);
    }
    outln!("server       {}:{}", target.host, target.port);
    if !implicit {
        outln!("banner       {}", escape(&banner));
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
            if implicit {
                print_ehlo(&keywords(&t.ehlo));
            }
            let auth = auth_of(&t.ehlo);
            outln!(
                "AUTH         {} (under TLS)",
                escape(auth.as_deref().unwrap_or("none offered"))
            );
        }
        Some(Err(e)) => outln!("TLS          failed: {}", escape(&connect::describe(e))),
        None => {
            let auth = auth_of(&ehlo);
            outln!(
                "AUTH         {} (in clear text)",
                escape(auth.as_deref().unwrap_or("none offered"))
            );
        }
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

fn fail(args: &ServerArgs, host: &str, port: u16, e: &Error) -> u8 {
    if args.json {
        let v = json!({"server": host, "port": port, "error": e.to_string()});
        outln!("{}", json_safe(&v.to_string()));
    } else {
        errln!("postline: {}", escape(&connect::describe(e)));
    }
    exit::for_error(e)
}
