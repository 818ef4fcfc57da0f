//! DKIM signing for `send` and `sendmail`: the signer from the flags or the account, and the
//! signing of the final bytes (after Bcc removal and header completion, before the message
//! goes to the client or to the queue, so the spool holds the signed message).

use std::path::{Path, PathBuf};

use postline::dkim::{DkimError, DkimSigner};

use crate::account::Account;
use crate::connect::Fail;
use crate::exit;

/// `--dkim-key`, `--dkim-selector`, `--dkim-domain` as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags<'a> {
    pub key: Option<&'a Path>,
    pub selector: Option<&'a str>,
    pub domain: Option<&'a str>,
}

/// The signer the flags ask for, else the account's, else none. The flags go together
/// (exit 64 otherwise), as do the account's three fields (exit 78); a missing key file exits
/// 66, a key that cannot be used 78.
pub fn signer(flags: Flags<'_>, account: Option<&Account>) -> Result<Option<DkimSigner>, Fail> {
    match (flags.key, flags.selector, flags.domain) {
        (Some(k), Some(s), Some(d)) => return make(k, s, d).map(Some),
        (None, None, None) => {}
        _ => {
            return Err(Fail::new(
                exit::USAGE,
                "--dkim-key, --dkim-selector and --dkim-domain go together: give all three",
            ))
        }
    }
    let Some(a) = account else { return Ok(None) };
    match (&a.dkim_key, &a.dkim_selector, &a.dkim_domain) {
        (Some(k), Some(s), Some(d)) => make(k, s, d).map(Some),
        (None, None, None) => Ok(None),
        _ => Err(Fail::new(
            exit::CONFIG,
            format!(
                "account \"{}\": dkim_key, dkim_selector and dkim_domain go together: set all three",
                a.name
            ),
        )),
    }
}

fn make(key: &Path, selector: &str, domain: &str) -> Result<DkimSigner, Fail> {
    let pem = std::fs::read(key).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            exit::NOINPUT
        } else {
            exit::CONFIG
        };
        Fail::new(code, format!("cannot read DKIM key {}: {e}", key.display()))
    })?;
    DkimSigner::from_pem(&pem, selector, domain).map_err(|e| match e {
        DkimError::BadTag(_) => Fail::new(exit::USAGE, e.to_string()),
        _ => Fail::new(exit::CONFIG, format!("{} ({})", e, key.display())),
    })
}

/// The message with line endings made CRLF (as the DATA encoder would send them, so the
/// signature covers the bytes on the wire) and the `DKIM-Signature:` field in front.
/// Without a signer, the message unchanged.
pub fn sign(signer: Option<&DkimSigner>, message: Vec<u8>) -> Result<Vec<u8>, Fail> {
    let Some(signer) = signer else {
        return Ok(message);
    };
    let message = postline::message::ready::crlf_line_endings(message);
    signer
        .sign_message(&message)
        .map_err(|e| Fail::new(exit::DATAERR, e.to_string()))
}

/// Paths the flags carry, for callers that hold `Option<PathBuf>`.
pub fn flags<'a>(
    key: &'a Option<PathBuf>,
    selector: &'a Option<String>,
    domain: &'a Option<String>,
) -> Flags<'a> {
    Flags {
        key: key.as_deref(),
        selector: selector.as_deref(),
        domain: domain.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_go_together() {
        let f = Flags {
            selector: Some("s"),
            ..Flags::default()
        };
        assert_eq!(signer(f, None).unwrap_err().code, exit::USAGE);
        let a = Account {
            name: "w".into(),
            dkim_domain: Some("example.org".into()),
            ..Account::default()
        };
        let e = signer(Flags::default(), Some(&a)).unwrap_err();
        assert_eq!(e.code, exit::CONFIG);
        assert!(e.message.contains("account \"w\""), "{}", e.message);
        let f = Flags {
            key: Some(Path::new("/nonexistent/dkim.pem")),
            selector: Some("s"),
            domain: Some("example.org"),
        };
        assert_eq!(signer(f, None).unwrap_err().code, exit::NOINPUT);
    }
}
