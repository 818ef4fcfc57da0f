//! DSN (RFC 3461) from the command line: `send --dsn-notify/--dsn-ret/--dsn-envid/--dsn-orcpt`
//! and sendmail's `-N`, `-R`, `-V`. The parameters travel as the queue's [`Dsn`], so a message
//! sent now and one queued carry the same ones.

use postline_queue::{Dsn, DsnRet, NotifyOn};

/// RFC 3461 4.4: ENVID is at most 100 characters.
pub const MAX_ENVID: usize = postline::proto::command::MAX_ENVID_LEN;

/// `--dsn-notify` / `-N`: `never`, or a comma-separated set of `success`, `failure`,
/// `delay` (any case, repeats ignored).
pub fn parse_notify(s: &str) -> Result<Vec<NotifyOn>, String> {
    let mut out = Vec::new();
    for word in s.split(',').map(str::trim) {
        let on = match word.to_ascii_lowercase().as_str() {
            "never" => NotifyOn::Never,
            "success" => NotifyOn::Success,
            "failure" => NotifyOn::Failure,
            "delay" => NotifyOn::Delay,
            "" => return Err("expected never, or some of success,failure,delay".into()),
            _ => {
                return Err(format!(
                    "{:?} is not one of never, success, failure, delay",
                    word.escape_debug().to_string()
                ))
            }
        };
        if !out.contains(&on) {
            out.push(on);
        }
    }
    if out.contains(&NotifyOn::Never) && out.len() > 1 {
        return Err(
            "never stands alone (RFC 3461 4.1): never, or some of success,failure,delay".into(),
        );
    }
    Ok(out)
}

/// `--dsn-ret` / `-R`: `full` or `hdrs` (any case).
pub fn parse_ret(s: &str) -> Result<DsnRet, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "full" => Ok(DsnRet::Full),
        "hdrs" => Ok(DsnRet::Hdrs),
        _ => Err(format!(
            "{:?} is neither full (the whole message) nor hdrs (its headers)",
            s.escape_debug().to_string()
        )),
    }
}

/// `--dsn-envid` / `-V`: 1 to 100 printable (graphic) US-ASCII characters, no space (RFC
/// 3461 4.4); xtext-encoded on the wire.
pub fn parse_envid(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if let Some((at, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(format!(
            "character {:?} at {at}: an envelope id is printable US-ASCII without spaces (RFC 3461 4.4)",
            c.escape_debug().to_string()
        ));
    }
    if s.len() > MAX_ENVID {
        return Err(format!(
            "{} characters: at most {MAX_ENVID} (RFC 3461 4.4)",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// The parameters, or `None` when none was asked for.
pub fn dsn(
    notify: Option<Vec<NotifyOn>>,
    ret: Option<DsnRet>,
    envid: Option<String>,
    orcpt: bool,
) -> Option<Dsn> {
    let d = Dsn {
        ret,
        envid,
        notify: notify.unwrap_or_default(),
        orcpt,
    };
    (d != Dsn::default()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_values() {
        assert_eq!(parse_notify("never"), Ok(vec![NotifyOn::Never]));
        assert_eq!(
            parse_notify("Success, FAILURE,delay,failure"),
            Ok(vec![NotifyOn::Success, NotifyOn::Failure, NotifyOn::Delay])
        );
        for bad in [
            "",
            "never,success",
            "failure,never",
            "sometimes",
            "success,,failure",
        ] {
            assert!(parse_notify(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ret_and_envid_values() {
        assert_eq!(parse_ret("HDRS"), Ok(DsnRet::Hdrs));
        assert!(parse_ret("headers").is_err());
        assert_eq!(parse_envid("Q+1=2"), Ok("Q+1=2".into()));
        assert!(parse_envid(&"x".repeat(100)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(101),
            "a b".into(),
            "a\r\nb".into(),
            "caf\u{e9}".into(),
        ] {
            assert!(parse_envid(&bad).is_err(), "{bad:?}");
        }
    }
}
