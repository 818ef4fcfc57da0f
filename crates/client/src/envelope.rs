//! The owned envelope: sender, recipients, and the MAIL/RCPT parameters a caller may set.

use postline_proto::command::{Address, Notify, Ret, ReversePath};

pub use postline_proto::negotiate::BodyType;

use crate::error::Error;

/// Who a message is from and to. Addresses are validated on construction: CR, LF, other
/// control characters and angle brackets are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub(crate) from: ReversePath<String>,
    pub(crate) to: Vec<Address<String>>,
    pub(crate) size: Option<u64>,
    pub(crate) body: BodyType,
    pub(crate) ret: Option<Ret>,
    pub(crate) envid: Option<String>,
    pub(crate) notify: Option<Notify>,
    pub(crate) orcpt: bool,
    pub(crate) require_tls: bool,
}

/// An envelope address from what people write: `bob@example.org`, `<bob@example.org>` or
/// a mailbox with a display name, `Bob <bob@example.org>` (the address between the last
/// angle brackets is taken; the name belongs in the headers, not the envelope).
fn address(s: &str) -> Result<Address<String>, Error> {
    let t = s.trim();
    let bare = match (t.rfind('<'), t.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => t,
    };
    Address::new(bare.to_string()).map_err(|source| Error::Address {
        address: s.to_string(),
        source,
    })
}

impl Envelope {
    /// From `from` (an empty string, or `<>`, is the null sender) to each of `to`. Addresses
    /// may be written bare, in angle brackets, or with a display name (`Bob <bob@example.org>`).
    pub fn new<I, T>(from: &str, to: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let from = if from.trim().is_empty() || from.trim() == "<>" {
            ReversePath::Null
        } else {
            ReversePath::Address(address(from)?)
        };
        let to = to
            .into_iter()
            .map(|t| address(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(Envelope {
            from,
            to,
            size: None,
            body: BodyType::Auto,
            ret: None,
            envid: None,
            notify: None,
            orcpt: false,
            require_tls: false,
        })
    }

    /// The message size in octets, when known: sent as `SIZE=`, and checked against the
    /// server's limit before anything is sent.
    pub fn size(mut self, octets: u64) -> Self {
        self.size = Some(octets);
        self
    }

    /// What the body contains (default [`BodyType::Auto`]).
    pub fn body(mut self, body: BodyType) -> Self {
        self.body = body;
        self
    }

    /// DSN (RFC 3461): what a bounce returns, `RET=`.
    pub fn dsn_ret(mut self, ret: Ret) -> Self {
        self.ret = Some(ret);
        self
    }

    /// DSN (RFC 3461): the envelope id, `ENVID=`.
    pub fn dsn_envid(mut self, envid: impl Into<String>) -> Self {
        self.envid = Some(envid.into());
        self
    }

    /// DSN (RFC 3461): when to notify, `NOTIFY=` on every RCPT.
    pub fn dsn_notify(mut self, notify: Notify) -> Self {
        self.notify = Some(notify);
        self
    }

    /// DSN (RFC 3461): send `ORCPT=` naming each recipient.
    pub fn dsn_orcpt(mut self, on: bool) -> Self {
        self.orcpt = on;
        self
    }

    /// REQUIRETLS (RFC 8689): the message may only travel over TLS with verified
    /// certificates on every hop. A server that does not offer REQUIRETLS over an encrypted
    /// session is not sent the message at all ([`crate::Error::Incompatible`]).
    pub fn require_tls(mut self, on: bool) -> Self {
        self.require_tls = on;
        self
    }

    /// The sender (empty for the null sender).
    pub fn from(&self) -> &str {
        match &self.from {
            ReversePath::Null => "",
            ReversePath::Address(a) => a.as_str(),
        }
    }

    /// The recipients.
    pub fn to(&self) -> impl Iterator<Item = &str> {
        self.to.iter().map(|a| a.as_str())
    }

    /// True when an address needs SMTPUTF8.
    pub fn needs_smtputf8(&self) -> bool {
        self.from.needs_smtputf8() || self.to.iter().any(|a| a.needs_smtputf8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_people_write_them() {
        let e = Envelope::new(
            "Alice Example <alice@example.org>",
            [
                "<bob@example.org>",
                "\"Carol, <c>\" <carol@example.org>",
                " dave@example.org ",
            ],
        )
        .unwrap();
        assert!(matches!(&e.from, ReversePath::Address(a) if a.as_str() == "alice@example.org"));
        let to: Vec<&str> = e.to.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            to,
            ["bob@example.org", "carol@example.org", "dave@example.org"]
        );
        assert!(matches!(
            Envelope::new("<>", ["b@x.org"]).unwrap().from,
            ReversePath::Null
        ));
        // The address itself is still checked, and the error names what was given.
        let e = Envelope::new("a@x.org", ["Bob <bob@x.org\r\nRCPT TO:<evil@x.org>>"]).unwrap_err();
        assert!(e.to_string().contains("Bob <"), "{e}");
    }

    #[test]
    fn refuses_injection() {
        let e = Envelope::new("a@b.example", ["c@d.example\r\nRSET"]).unwrap_err();
        assert!(e.to_string().contains("CR"), "{e}");
        assert!(Envelope::new("a@b\n.example", ["c@d.example"]).is_err());
        assert!(Envelope::new("a@b.example", Vec::<String>::new()).is_err());
    }

    #[test]
    fn null_sender_and_utf8() {
        let e = Envelope::new("", ["ü@d.example"]).unwrap();
        assert_eq!(e.from(), "");
        assert!(e.needs_smtputf8());
    }
}
