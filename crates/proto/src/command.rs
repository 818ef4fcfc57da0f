//! Validated command arguments and command encoding (RFC 5321 4.1, with the parameters of
//! RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 3030 BINARYMIME, RFC 6531 SMTPUTF8, RFC 8689
//! REQUIRETLS, and with the `dsn` cargo feature RFC 3461 DSN).
//!
//! Anything that ends up on a command line goes through a type whose constructor rejects CR,
//! LF and other control characters, so no caller input can inject a second command.

use core::fmt;
#[cfg(not(feature = "dsn"))]
use core::marker::PhantomData;

use crate::buf::{Buffer, BufferFull};

/// Longest mailbox accepted (RFC 5321 4.5.3.1.3 allows a 256-octet path including `<>`).
pub const MAX_ADDRESS_LEN: usize = 256;
/// Longest HELO/EHLO name accepted (a DNS name is at most 255 octets).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest ENVID accepted before encoding (RFC 3461 4.4 caps it at 100 characters).
#[cfg(feature = "dsn")]
pub const MAX_ENVID_LEN: usize = 100;

/// Why a string cannot be used as an address, a name or a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// Nothing given (use [`ReversePath::Null`] for `<>`).
    Empty,
    /// Longer than the limit.
    TooLong {
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A control character (CR, LF, NUL, TAB, DEL...) that would break the command line.
    ControlCharacter {
        /// The offending byte.
        byte: u8,
        /// Its offset in the string.
        at: usize,
    },
    /// `<` or `>` inside, which would end the path early.
    AngleBracket {
        /// Its offset in the string.
        at: usize,
    },
    /// A space outside a quoted local part.
    Space {
        /// Its offset in the string.
        at: usize,
    },
    /// A character not allowed in a host name or address literal.
    InvalidCharacter {
        /// The offending byte.
        byte: u8,
        /// Its offset in the string.
        at: usize,
    },
}

impl core::error::Error for AddressError {}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddressError::Empty => f.write_str("empty address"),
            AddressError::TooLong { len, max } => {
                write!(f, "too long: {len} octets, at most {max} allowed")
            }
            AddressError::ControlCharacter { byte, at } => {
                let name = match byte {
                    b'\r' => "CR",
                    b'\n' => "LF",
                    0 => "NUL",
                    b'\t' => "TAB",
                    0x7f => "DEL",
                    _ => "control character",
                };
                write!(f, "{name} (0x{byte:02x}) at offset {at} is not allowed")
            }
            AddressError::AngleBracket { at } => {
                write!(
                    f,
                    "'<' or '>' at offset {at} is not allowed inside an address"
                )
            }
            AddressError::Space { at } => {
                write!(
                    f,
                    "space at offset {at} is only allowed in a quoted local part"
                )
            }
            AddressError::InvalidCharacter { byte, at } => {
                write!(
                    f,
                    "character 0x{byte:02x} at offset {at} is not allowed in a host name"
                )
            }
        }
    }
}

/// A mailbox for MAIL FROM or RCPT TO, without the angle brackets. Built only through
/// [`Address::new`], so it never holds a byte that could break the command line.
///
/// Generic over its storage: `Address<&str>` borrows, `Address<String>` owns.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address<S>(S);

impl<S: AsRef<str>> Address<S> {
    /// Validates `s` as a mailbox (`local@domain`, or `Postmaster`).
    pub fn new(s: S) -> Result<Self, AddressError> {
        check_address(s.as_ref().as_bytes())?;
        Ok(Address(s))
    }

    /// The address text.
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// A borrowed view of this address.
    pub fn as_ref(&self) -> Address<&str> {
        Address(self.0.as_ref())
    }

    /// True when the address has non-ASCII characters and so needs SMTPUTF8 (RFC 6531).
    pub fn needs_smtputf8(&self) -> bool {
        // A plain loop: an address is short, and `is_ascii`'s word-at-a-time scan, inlined
        // here, cost a device build 52 B more than this loop.
        self.as_str().bytes().any(|b| b >= 0x80)
    }

    /// The part after the last `@`, if any.
    pub fn domain(&self) -> Option<&str> {
        let s = self.as_str();
        s.rfind('@').map(|i| &s[i + 1..])
    }

    /// The storage.
    pub fn into_inner(self) -> S {
        self.0
    }
}

impl<S: AsRef<str>> fmt::Debug for Address<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.as_str())
    }
}

impl<S: AsRef<str>> fmt::Display for Address<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn check_address(b: &[u8]) -> Result<(), AddressError> {
    if b.is_empty() {
        return Err(AddressError::Empty);
    }
    if b.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            len: b.len(),
            max: MAX_ADDRESS_LEN,
        });
    }
    let mut quoted = false;
    let mut escaped = false;
    for (at, &byte) in b.iter().enumerate() {
        if byte < 0x20 || byte == 0x7f {
            return Err(AddressError::ControlCharacter { byte, at });
        }
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'<' | b'>' => return Err(AddressError::AngleBracket { at }),
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b' ' if !quoted => return Err(AddressError::Space { at }),
            _ => {}
        }
    }
    Ok(())
}

/// The MAIL FROM path: a mailbox, or the null path `<>` used for bounces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversePath<S: AsRef<str>> {
    /// `<>`.
    Null,
    /// `<address>`.
    Address(Address<S>),
}

impl<S: AsRef<str>> ReversePath<S> {
    /// True when the address needs SMTPUTF8.
    pub fn needs_smtputf8(&self) -> bool {
        match self {
            ReversePath::Null => false,
            ReversePath::Address(a) => a.needs_smtputf8(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            ReversePath::Null => "",
            ReversePath::Address(a) => a.as_str(),
        }
    }
}

/// The name the client gives in HELO/EHLO: a host name or an address literal such as
/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Domain<S>(S);

impl<S: AsRef<str>> Domain<S> {
    /// Validates `s` as a HELO name.
    pub fn new(s: S) -> Result<Self, AddressError> {
        let b = s.as_ref().as_bytes();
        if b.is_empty() {
            return Err(AddressError::Empty);
        }
        if b.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::TooLong {
                len: b.len(),
                max: MAX_DOMAIN_LEN,
            });
        }
        let literal = b[0] == b'[';
        for (at, &byte) in b.iter().enumerate() {
            if byte < 0x20 || byte == 0x7f {
                return Err(AddressError::ControlCharacter { byte, at });
            }
            let ok = if literal {
                // RFC 5321 4.1.3: dcontent is printable ASCII except '[', '\', ']'.
                (at == 0 && byte == b'[')
                    || (at == b.len() - 1 && byte == b']')
                    || (byte.is_ascii_graphic() && !matches!(byte, b'[' | b']' | b'\\'))
            } else {
                byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_') || byte >= 0x80
            };
            if !ok {
                return Err(AddressError::InvalidCharacter { byte, at });
            }
        }
        if literal && (b.len() < 3 || b[b.len() - 1] != b']') {
            return Err(AddressError::InvalidCharacter {
                byte: b[b.len() - 1],
                at: b.len() - 1,
            });
        }
        Ok(Domain(s))
    }

    /// A name that was a `Domain` already and was kept as plain storage since (a session
    /// config's name): not checked again. Never for a caller's string.
    pub(crate) fn already_valid(s: S) -> Self {
        debug_assert!(Domain::new(s.as_ref()).is_ok());
        Domain(s)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The name as it was given.
    pub fn into_inner(self) -> S {
        self.0
    }
}

impl<S: AsRef<str>> fmt::Debug for Domain<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `BODY=` (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME` (needs BDAT).
    BinaryMime,
}

/// `RET=` (RFC 3461): what a delivery status notification returns.
#[cfg(feature = "dsn")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// The whole message.
    Full,
    /// Only the headers.
    Headers,
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailParams<'a> {
    /// `SIZE=n` (RFC 1870): the message size, when known.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    #[cfg(feature = "dsn")]
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461), xtext-encoded on the wire.
    #[cfg(feature = "dsn")]
    pub envid: Option<&'a str>,
    /// `REQUIRETLS` (RFC 8689).
    pub requiretls: bool,
    /// Keeps the lifetime without the `dsn` feature, whose `envid` is the one borrow, so the
    /// type is `MailParams<'a>` in every build (and `..Default::default()` fills it in).
    #[cfg(not(feature = "dsn"))]
    #[doc(hidden)]
    pub _borrow: PhantomData<&'a str>,
}

impl MailParams<'_> {
    /// Checks the parameters that carry text.
    pub fn validate(&self) -> Result<(), AddressError> {
        #[cfg(feature = "dsn")]
        if let Some(envid) = self.envid {
            let b = envid.as_bytes();
            if b.is_empty() {
                return Err(AddressError::Empty);
            }
            if b.len() > MAX_ENVID_LEN {
                return Err(AddressError::TooLong {
                    len: b.len(),
                    max: MAX_ENVID_LEN,
                });
            }
            // RFC 3461 4.4: ENVID is printable US-ASCII before xtext encoding.
            if let Some(at) = b.iter().position(|c| !(0x20..0x7f).contains(c)) {
                return Err(AddressError::ControlCharacter { byte: b[at], at });
            }
        }
        Ok(())
    }
}

/// `NOTIFY=` (RFC 3461).
#[cfg(feature = "dsn")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// `NOTIFY=NEVER`.
    Never,
    /// Any of `SUCCESS`, `FAILURE`, `DELAY`.
    On {
        /// Report delivery.
        success: bool,
        /// Report failure.
        failure: bool,
        /// Report delay.
        delay: bool,
    },
}

/// Parameters of RCPT TO, applied to every recipient of an envelope. All are DSN's (RFC
/// 3461): none without the `dsn` cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RcptParams {
    /// `NOTIFY=`.
    #[cfg(feature = "dsn")]
    pub notify: Option<Notify>,
    /// Send `ORCPT=rfc822;<the recipient>` so DSNs name the original address.
    #[cfg(feature = "dsn")]
    pub orcpt: bool,
}

/// Who a message is from and to, with the parameters for MAIL and RCPT.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a, S: AsRef<str>> {
    /// MAIL FROM.
    pub from: &'a ReversePath<S>,
    /// RCPT TO, in order; results are reported by index into this slice.
    pub to: &'a [Address<S>],
    /// MAIL parameters.
    pub mail: MailParams<'a>,
    /// RCPT parameters.
    pub rcpt: RcptParams,
}

impl<S: AsRef<str>> Envelope<'_, S> {
    /// True when some address needs SMTPUTF8.
    pub fn needs_smtputf8(&self) -> bool {
        self.from.needs_smtputf8() || self.to.iter().any(|a| a.needs_smtputf8())
    }
}

/// A command line, ready to encode. AUTH lines come from [`crate::sasl`].
///
/// Non-exhaustive: which commands exist depends on the cargo features (`lmtp`).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `HELO name`.
    Helo(Domain<&'a str>),
    /// `EHLO name`.
    Ehlo(Domain<&'a str>),
    /// `LHLO name`: LMTP's EHLO (RFC 2033 4.1). Only with the `lmtp` cargo feature.
    #[cfg(feature = "lmtp")]
    Lhlo(Domain<&'a str>),
    /// `STARTTLS`.
    StartTls,
    /// `MAIL FROM:<path> params`.
    Mail(&'a ReversePath<&'a str>, &'a MailParams<'a>),
    /// `RCPT TO:<address> params`.
    Rcpt(Address<&'a str>, &'a RcptParams),
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]`.
    Bdat {
        /// Octets in the chunk that follows.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `VRFY string`.
    Vrfy(Address<&'a str>),
    /// `HELP [topic]`.
    Help(Option<Address<&'a str>>),
    /// `QUIT`.
    Quit,
}

impl Command<'_> {
    /// Writes the command line with its CRLF, atomically.
    pub fn encode(&self, out: &mut impl Buffer) -> Result<(), BufferFull> {
        // Written straight into `out` and taken back if it does not fit: no scratch copy of
        // the line on the stack (a device's stack is small).
        let mut line = Line::new(out);
        match self {
            Command::Helo(d) => line.push(b"HELO ").push(d.as_str().as_bytes()),
            Command::Ehlo(d) => line.push(b"EHLO ").push(d.as_str().as_bytes()),
            #[cfg(feature = "lmtp")]
            Command::Lhlo(d) => line.push(b"LHLO ").push(d.as_str().as_bytes()),
            Command::StartTls => line.push(b"STARTTLS"),
            Command::Mail(from, p) => {
                line.push(b"MAIL FROM:<")
                    .push(from.as_str().as_bytes())
                    .push(b">");
                encode_mail_params(&mut line, p);
                &mut line
            }
            Command::Rcpt(to, p) => {
                line.push(b"RCPT TO:<")
                    .push(to.as_str().as_bytes())
                    .push(b">");
                #[cfg(feature = "dsn")]
                encode_rcpt_params(&mut line, to.as_str(), p);
                // Without DSN there is no RCPT parameter to encode.
                #[cfg(not(feature = "dsn"))]
                let RcptParams {} = p;
                &mut line
            }
            Command::Data => line.push(b"DATA"),
            Command::Bdat { size, last } => {
                line.push(b"BDAT ").decimal(*size);
                if *last {
                    line.push(b" LAST");
                }
                &mut line
            }
            Command::Rset => line.push(b"RSET"),
            Command::Noop => line.push(b"NOOP"),
            Command::Vrfy(a) => line.push(b"VRFY ").push(a.as_str().as_bytes()),
            Command::Help(None) => line.push(b"HELP"),
            Command::Help(Some(t)) => line.push(b"HELP ").push(t.as_str().as_bytes()),
            Command::Quit => line.push(b"QUIT"),
        };
        line.push(b"\r\n");
        line.finish()
    }
}

fn encode_mail_params<B: Buffer>(line: &mut Line<'_, B>, p: &MailParams<'_>) {
    if let Some(size) = p.size {
        line.push(b" SIZE=").decimal(size);
    }
    match p.body {
        Some(Body::SevenBit) => line.push(b" BODY=7BIT"),
        Some(Body::EightBitMime) => line.push(b" BODY=8BITMIME"),
        Some(Body::BinaryMime) => line.push(b" BODY=BINARYMIME"),
        None => line,
    };
    if p.smtputf8 {
        line.push(b" SMTPUTF8");
    }
    #[cfg(feature = "dsn")]
    match p.ret {
        Some(Ret::Full) => line.push(b" RET=FULL"),
        Some(Ret::Headers) => line.push(b" RET=HDRS"),
        None => line,
    };
    #[cfg(feature = "dsn")]
    if let Some(envid) = p.envid {
        line.push(b" ENVID=").xtext(envid.as_bytes());
    }
    if p.requiretls {
        line.push(b" REQUIRETLS");
    }
}

#[cfg(feature = "dsn")]
fn encode_rcpt_params<B: Buffer>(line: &mut Line<'_, B>, to: &str, p: &RcptParams) {
    match p.notify {
        Some(Notify::Never) => {
            line.push(b" NOTIFY=NEVER");
        }
        Some(Notify::On {
            success,
            failure,
            delay,
        }) => {
            line.push(b" NOTIFY=");
            let mut first = true;
            for (on, word) in [
                (success, &b"SUCCESS"[..]),
                (failure, b"FAILURE"),
                (delay, b"DELAY"),
            ] {
                if on {
                    if !first {
                        line.push(b",");
                    }
                    line.push(word);
                    first = false;
                }
            }
            if first {
                // No condition chosen: the only empty-set spelling is NEVER.
                line.push(b"NEVER");
            }
        }
        None => {}
    }
    if p.orcpt {
        if to.is_ascii() {
            line.push(b" ORCPT=rfc822;").xtext(to.as_bytes());
        } else {
            // RFC 6533: utf-8-addr-xtext; non-ASCII passes as is, specials as \x{HH}.
            line.push(b" ORCPT=utf-8;").utf8_xtext(to.as_bytes());
        }
    }
}

/// A command line written into the output as it is assembled, taken back whole when it does
/// not fit. 512 octets is the RFC 5321 command limit; the largest line postline writes (a
/// 256-octet path plus every MAIL parameter, ENVID fully xtext-escaped) stays under
/// [`MAX_COMMAND_LINE`], and a longer one is refused the same way.
struct Line<'o, B: Buffer> {
    out: &'o mut B,
    start: usize,
    room: usize,
    len: usize,
    overflow: bool,
}

/// The longest command line the encoder writes.
const MAX_COMMAND_LINE: usize = 1024;

impl<'o, B: Buffer> Line<'o, B> {
    fn new(out: &'o mut B) -> Self {
        Line {
            start: out.len(),
            room: out.remaining(),
            out,
            len: 0,
            overflow: false,
        }
    }

    fn push(&mut self, b: &[u8]) -> &mut Self {
        self.len += b.len();
        if self.overflow || self.len > MAX_COMMAND_LINE || self.out.extend_from_slice(b).is_err() {
            self.overflow = true;
        }
        self
    }

    /// The line is in the output, or nothing of it is and the shortfall is reported.
    fn finish(self) -> Result<(), BufferFull> {
        if !self.overflow {
            return Ok(());
        }
        self.out.truncate(self.start);
        Err(BufferFull {
            needed: self.len.saturating_sub(self.room).max(1),
        })
    }

    /// The digits go straight from [`crate::buf::decimal`]'s array to the line: through a
    /// second buffer they cost a device build 50 B more.
    fn decimal(&mut self, n: u64) -> &mut Self {
        self.push(crate::buf::decimal(n, &mut [0u8; 20]))
    }

    /// RFC 3461 4: xtext, `+XX` for '+', '=' and anything outside '!'..'~'.
    #[cfg(feature = "dsn")]
    fn xtext(&mut self, s: &[u8]) -> &mut Self {
        for &c in s {
            if (b'!'..=b'~').contains(&c) && c != b'+' && c != b'=' {
                self.push(&[c]);
            } else {
                self.push(&[b'+', hex(c >> 4), hex(c & 15)]);
            }
        }
        self
    }

    /// RFC 6533 4: utf-8-addr-xtext; `\x{HH}` for '+', '=', '\' and ASCII controls/space.
    #[cfg(feature = "dsn")]
    fn utf8_xtext(&mut self, s: &[u8]) -> &mut Self {
        for &c in s {
            if c >= 0x80 || ((b'!'..=b'~').contains(&c) && !matches!(c, b'+' | b'=' | b'\\')) {
                self.push(&[c]);
            } else {
                self.push(b"\\x{")
                    .push(&[hex(c >> 4), hex(c & 15)])
                    .push(b"}");
            }
        }
        self
    }
}

#[cfg(feature = "dsn")]
fn hex(n: u8) -> u8 {
    b"0123456789ABCDEF"[n as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: Command<'_>) -> ([u8; 1100], usize) {
        let mut s = [0u8; 1100];
        let mut b = crate::buf::FixedBuf::new(&mut s);
        c.encode(&mut b).unwrap();
        let n = b.len();
        (s, n)
    }

    macro_rules! assert_encodes {
        ($cmd:expr, $want:expr) => {{
            let (s, n) = enc($cmd);
            assert_eq!(core::str::from_utf8(&s[..n]).unwrap(), $want);
        }};
    }

    #[test]
    fn rejects_injection() {
        assert_eq!(
            Address::new("a@b\r\nRCPT TO:<x@y>").unwrap_err(),
            AddressError::ControlCharacter { byte: b'\r', at: 3 }
        );
        assert_eq!(
            Address::new("a@b\nx").unwrap_err(),
            AddressError::ControlCharacter { byte: b'\n', at: 3 }
        );
        assert_eq!(
            Address::new("a\0@b").unwrap_err(),
            AddressError::ControlCharacter { byte: 0, at: 1 }
        );
        assert_eq!(
            Address::new("a\x7f@b").unwrap_err(),
            AddressError::ControlCharacter { byte: 0x7f, at: 1 }
        );
        assert_eq!(
            Address::new("a>@b").unwrap_err(),
            AddressError::AngleBracket { at: 1 }
        );
        assert_eq!(
            Address::new("<a@b").unwrap_err(),
            AddressError::AngleBracket { at: 0 }
        );
        assert_eq!(
            Address::new("a b@c").unwrap_err(),
            AddressError::Space { at: 1 }
        );
        assert_eq!(Address::new("").unwrap_err(), AddressError::Empty);
        let long = std::string::String::from("a").repeat(250) + "@b.example";
        assert_eq!(
            Address::new(long.as_str()).unwrap_err(),
            AddressError::TooLong { len: 260, max: 256 }
        );
        // A CR inside quotes is still refused.
        assert!(Address::new("\"a\rb\"@c").is_err());
    }

    #[test]
    fn accepts_real_addresses() {
        for a in [
            "user@example.com",
            "Postmaster",
            "\"john smith\"@example.com",
            "first.last+tag@sub.example.org",
            "用户@例子.广告",
        ] {
            assert!(Address::new(a).is_ok(), "{a}");
        }
        assert!(Address::new("用户@例子.广告").unwrap().needs_smtputf8());
        assert!(!Address::new("a@b").unwrap().needs_smtputf8());
        assert_eq!(Address::new("a@b.c").unwrap().domain(), Some("b.c"));
        let e = AddressError::ControlCharacter { byte: b'\n', at: 3 };
        assert_eq!(std::format!("{e}"), "LF (0x0a) at offset 3 is not allowed");
    }

    #[test]
    fn domains() {
        assert!(Domain::new("mail.example.com").is_ok());
        assert!(Domain::new("[192.0.2.1]").is_ok());
        assert!(Domain::new("[IPv6:2001:db8::1]").is_ok());
        assert!(Domain::new("bad name").is_err());
        assert!(Domain::new("a\r\nMAIL").is_err());
        assert!(Domain::new("[1.2.3.4").is_err());
        assert!(Domain::new("").is_err());
    }

    #[test]
    fn encodes_commands() {
        let d = Domain::new("client.example").unwrap();
        assert_encodes!(Command::Ehlo(d), "EHLO client.example\r\n");
        assert_encodes!(Command::Helo(d), "HELO client.example\r\n");
        #[cfg(feature = "lmtp")]
        assert_encodes!(Command::Lhlo(d), "LHLO client.example\r\n");
        assert_encodes!(Command::StartTls, "STARTTLS\r\n");
        assert_encodes!(Command::Data, "DATA\r\n");
        assert_encodes!(Command::Rset, "RSET\r\n");
        assert_encodes!(Command::Noop, "NOOP\r\n");
        assert_encodes!(Command::Quit, "QUIT\r\n");
        assert_encodes!(Command::Help(None), "HELP\r\n");
        assert_encodes!(
            Command::Bdat {
                size: 1024,
                last: false
            },
            "BDAT 1024\r\n"
        );
        assert_encodes!(
            Command::Bdat {
                size: 0,
                last: true
            },
            "BDAT 0 LAST\r\n"
        );
        assert_encodes!(
            Command::Vrfy(Address::new("smith").unwrap()),
            "VRFY smith\r\n"
        );
    }

    #[test]
    fn encodes_mail_and_rcpt_params() {
        let from = ReversePath::Address(Address::new("a@b.example").unwrap());
        let p = MailParams {
            size: Some(12345),
            body: Some(Body::EightBitMime),
            smtputf8: true,
            requiretls: true,
            ..Default::default()
        };
        assert_encodes!(
            Command::Mail(&from, &p),
            "MAIL FROM:<a@b.example> SIZE=12345 BODY=8BITMIME SMTPUTF8 REQUIRETLS\r\n"
        );
        let null = ReversePath::Null;
        assert_encodes!(
            Command::Mail(&null, &MailParams::default()),
            "MAIL FROM:<>\r\n"
        );
        assert_encodes!(
            Command::Rcpt(Address::new("d@e").unwrap(), &RcptParams::default()),
            "RCPT TO:<d@e>\r\n"
        );
    }

    #[cfg(feature = "dsn")]
    #[test]
    fn encodes_dsn_params() {
        let from = ReversePath::Address(Address::new("a@b.example").unwrap());
        let p = MailParams {
            size: Some(12345),
            body: Some(Body::EightBitMime),
            smtputf8: true,
            ret: Some(Ret::Headers),
            envid: Some("QQ314159+x=y"),
            requiretls: false,
        };
        assert_encodes!(
            Command::Mail(&from, &p),
            "MAIL FROM:<a@b.example> SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159+2Bx+3Dy\r\n"
        );
        let rp = RcptParams {
            notify: Some(Notify::On {
                success: true,
                failure: true,
                delay: false,
            }),
            orcpt: true,
        };
        assert_encodes!(
            Command::Rcpt(Address::new("x+y@c.example").unwrap(), &rp),
            "RCPT TO:<x+y@c.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+2By@c.example\r\n"
        );
        let never = RcptParams {
            notify: Some(Notify::Never),
            orcpt: false,
        };
        assert_encodes!(
            Command::Rcpt(Address::new("d@e").unwrap(), &never),
            "RCPT TO:<d@e> NOTIFY=NEVER\r\n"
        );
        assert_encodes!(
            Command::Rcpt(
                Address::new("ü@e").unwrap(),
                &RcptParams {
                    notify: None,
                    orcpt: true
                }
            ),
            "RCPT TO:<ü@e> ORCPT=utf-8;ü@e\r\n"
        );
    }

    #[cfg(feature = "dsn")]
    #[test]
    fn envid_validation() {
        let ok = MailParams {
            envid: Some("abc"),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let bad = MailParams {
            envid: Some("a\r\nb"),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let long = std::string::String::from("x").repeat(101);
        let too_long = MailParams {
            envid: Some(&long),
            ..Default::default()
        };
        assert!(too_long.validate().is_err());
    }

    #[test]
    fn atomic_on_full_buffer() {
        let mut s = [0u8; 8];
        let mut b = crate::buf::FixedBuf::new(&mut s);
        assert!(Command::Ehlo(Domain::new("client.example").unwrap())
            .encode(&mut b)
            .is_err());
        assert!(b.is_empty());
    }
}
