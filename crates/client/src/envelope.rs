//! The owned envelope: sender, recipients, and the MAIL/RCPT parameters a caller may set.

use postline_proto::command::{Address, Notify, Ret, ReversePath};

pub use postline_proto::negotiate::BodyType;

use crate::error::Error;

/// Who a message is from and to. Addresses are validated on construction: CR, LF, other
/// control characters and angle brackets are refused.
///
/// ```
/// use postline::{Envelope, Notify, Ret};
///
/// let envelope = Envelope::new("Alice <alice@example.com>", ["bob@example.org", "<carol@example.net>"])?
///     .dsn_ret(Ret::Headers)
///     .dsn_envid("order-1234");
/// assert_eq!(envelope.from(), "alice@example.com");
/// assert_eq!(envelope.to().collect::<Vec<_>>(), ["bob@example.org", "carol@example.net"]);
///
/// // The null sender, for bounces and auto-replies.
/// assert_eq!(Envelope::new("<>", ["bob@example.org"])?.from(), "");
///
/// // What cannot be an address is refused, naming it.
/// let err = Envelope::new("alice@example.com", ["bob@example.org\r\nRCPT TO:<x@y>"]).unwrap_err();
/// assert!(err.to_string().contains("invalid address"));
/// # Ok::<(), postline::Error>(())
/// ```
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
        // A display name with a control character (a line break) is not a name: refused
        // whole rather than cut off, so the recipient is never other than what was meant.
        (Some(open), Some(_)) if t[..open].chars().any(char::is_control) => t,
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

    /// A sender alone, for [`crate::Client::check`] (`MAIL` and no `RCPT`): such an
    /// envelope cannot be sent, only checked.
    pub fn sender_only(from: &str) -> Result<Self, Error> {
        let mut env = Envelope::new(from, ["postmaster"])?;
        env.to.clear();
        Ok(env)
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

    /// Whether REQUIRETLS was asked for ([`Envelope::require_tls`]).
    pub fn requires_tls(&self) -> bool {
        self.require_tls
    }

    /// Whether any DSN parameter (RET, ENVID, NOTIFY, ORCPT) was set.
    pub fn has_dsn(&self) -> bool {
        self.ret.is_some() || self.envid.is_some() || self.notify.is_some() || self.orcpt
    }

    /// The DSN `RET=` given with [`Envelope::dsn_ret`].
    pub fn ret(&self) -> Option<Ret> {
        self.ret
    }

    /// The DSN `ENVID=` given with [`Envelope::dsn_envid`] (before xtext encoding).
    pub fn envid(&self) -> Option<&str> {
        self.envid.as_deref()
    }

    /// The DSN `NOTIFY=` given with [`Envelope::dsn_notify`].
    pub fn notify(&self) -> Option<Notify> {
        self.notify
    }

    /// Whether `ORCPT=` is sent ([`Envelope::dsn_orcpt`]).
    pub fn orcpt(&self) -> bool {
        self.orcpt
    }

    /// The body type given with [`Envelope::body`] ([`BodyType::Auto`] unless set).
    pub fn body_type(&self) -> BodyType {
        self.body
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
        // A line break before angle brackets does not make the rest a display name: the
        // recipient meant is not silently replaced by the one in brackets.
        for tricky in [
            "c@d.example\r\nRCPT TO:<evil@x.example>",
            "Bob\n<bob@x.example>",
            "\u{0}<bob@x.example>",
        ] {
            let e = Envelope::new("a@b.example", [tricky]).unwrap_err();
            assert!(e.to_string().contains("invalid address"), "{tricky:?}: {e}");
        }
    }

    #[test]
    fn null_sender_and_utf8() {
        let e = Envelope::new("", ["ü@d.example"]).unwrap();
        assert_eq!(e.from(), "");
        assert!(e.needs_smtputf8());
    }
}
