//! The capability set announced in an EHLO reply (RFC 5321 4.1.1.1 and the extensions' RFCs).
//!
//! Servers differ in case, in spacing and in history (`AUTH=PLAIN LOGIN` from before RFC 4954),
//! so keywords are matched case-insensitively and anything unexpected is skipped, never an
//! error: a capability the client fails to recognise only means it is not used.

use crate::reply::Reply;
use crate::sasl::Mechanism;

/// The SIZE extension (RFC 1870).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizeLimit {
    /// SIZE was not announced.
    #[default]
    NotAdvertised,
    /// `SIZE` or `SIZE 0`: the server takes SIZE= but states no fixed limit.
    NoLimit,
    /// `SIZE n`: messages over n octets are refused.
    Limit(u64),
}

/// A set of SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mechanisms(u16);

impl Mechanisms {
    /// The empty set.
    pub const fn empty() -> Self {
        Mechanisms(0)
    }
    /// Adds one.
    pub fn insert(&mut self, m: Mechanism) {
        self.0 |= 1 << (m as u8);
    }
    /// Membership.
    pub fn contains(&self, m: Mechanism) -> bool {
        self.0 & (1 << (m as u8)) != 0
    }
    /// True when no mechanism is in the set.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    /// The members, in [`Mechanism::ALL`] order (strongest first), so a caller picking one
    /// can take the first it has credentials for.
    pub fn iter(self) -> impl Iterator<Item = Mechanism> {
        Mechanism::ALL
            .into_iter()
            .filter(move |m| self.contains(*m))
    }
}

/// A single-word extension without parameters, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Extension {
    /// RFC 3207.
    StartTls,
    /// RFC 2920.
    Pipelining,
    /// RFC 3030.
    Chunking,
    /// RFC 3030.
    BinaryMime,
    /// RFC 6152.
    EightBitMime,
    /// RFC 6531.
    SmtpUtf8,
    /// RFC 3461.
    Dsn,
    /// RFC 2034.
    EnhancedStatusCodes,
    /// RFC 8689.
    RequireTls,
    /// RFC 4954: AUTH was announced, whatever its mechanisms (some may be unknown to postline).
    Auth,
}

/// Most unknown keywords kept: a reply may have up to [`crate::reply::MAX_LINES`] lines of
/// up to 4 KiB, and a hostile server should not make the client hold a megabyte of them.
#[cfg(feature = "alloc")]
pub const MAX_UNKNOWN: usize = 64;

/// The SIZE parameter: decimal octets, where 0 (RFC 1870) and anything unreadable mean no
/// stated limit.
///
/// One pass over the first word, each byte checked as it is added (a non-digit and an
/// overflow both give no limit, whichever comes first): split into words, checked whole and
/// then read, it cost a device build 12 B more.
fn parse_size(params: &[u8]) -> SizeLimit {
    let mut n: u64 = 0;
    for &d in params {
        if matches!(d, b' ' | b'\t') {
            break;
        }
        let next = if d.is_ascii_digit() {
            n.checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
        } else {
            None
        };
        match next {
            Some(v) => n = v,
            None => return SizeLimit::NoLimit,
        }
    }
    if n == 0 {
        SizeLimit::NoLimit
    } else {
        SizeLimit::Limit(n)
    }
}

/// The keywords postline knows: the flag extensions in [`Extension`] order (a keyword's
/// index is its flag's bit, AUTH's included), then SIZE, looked up in one loop: a comparison
/// written out for each took a device build 140 B of code, and SIZE and AUTH compared apart
/// from the table another 46 B; the table takes 88 B of data.
const KEYWORDS: [&str; 11] = [
    "STARTTLS",
    "PIPELINING",
    "CHUNKING",
    "BINARYMIME",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "REQUIRETLS",
    "AUTH",
    "SIZE",
];

/// SIZE's index in [`KEYWORDS`]: the one known keyword that is not a flag.
const SIZE: usize = 10;

/// What the server said it supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    flags: u16,
    size: SizeLimit,
    auth: Mechanisms,
    /// Keywords this parser does not know, with their parameters, as sent.
    #[cfg(feature = "alloc")]
    pub unknown: alloc::vec::Vec<(alloc::string::String, alloc::string::String)>,
}

impl Capabilities {
    /// Reads the capabilities from a positive EHLO reply (the first line, the server's name,
    /// is skipped).
    ///
    /// A negative reply announces nothing, so it gives the empty set. SIZE with a missing,
    /// zero or unreadable number is [`SizeLimit::NoLimit`]: the server did announce SIZE, and
    /// guessing a limit would refuse mail it takes. AUTH mechanisms from every AUTH line (both
    /// forms) are united; mechanisms postline does not speak are left out.
    pub fn from_ehlo(reply: &Reply<'_>) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.read_ehlo(reply);
        caps
    }

    /// [`Capabilities::from_ehlo`] in place: the session reads into the set it keeps rather
    /// than into a new one that is then copied over it (140 B more of a device build, 66 B
    /// on x86_64).
    #[inline(never)]
    pub(crate) fn read_ehlo(&mut self, reply: &Reply<'_>) {
        *self = Capabilities::default();
        if !reply.code().is_positive_completion() {
            return;
        }
        let mut lines = reply.lines();
        // The first line is the server's name. (`skip(1)` brought a generic `advance_by`
        // into a device build: 44 B.)
        lines.next();
        for line in lines {
            self.add_line(line);
        }
    }

    /// Records one `keyword params` line.
    fn add_line(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        // The keyword ends at a space, or at `=` in the old `AUTH=` form.
        let split = line
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'='))
            .unwrap_or(line.len());
        let (keyword, rest) = line.split_at(split);
        let params = rest.get(1..).unwrap_or_default().trim_ascii();
        if keyword.is_empty() {
            return;
        }
        match KEYWORDS
            .iter()
            .position(|name| keyword.eq_ignore_ascii_case(name.as_bytes()))
        {
            Some(SIZE) => self.size = parse_size(params),
            Some(bit) => {
                self.flags |= 1 << bit;
                if bit == Extension::Auth as usize {
                    params
                        .split(|b| matches!(b, b' ' | b'\t'))
                        .filter_map(Mechanism::from_name)
                        .for_each(|m| self.auth.insert(m));
                }
            }
            None => self.add_unknown(keyword, params),
        }
    }

    #[cfg(feature = "alloc")]
    fn add_unknown(&mut self, keyword: &[u8], params: &[u8]) {
        use alloc::string::String;
        if self.unknown.len() < MAX_UNKNOWN {
            self.unknown.push((
                String::from_utf8_lossy(keyword).into_owned(),
                String::from_utf8_lossy(params).into_owned(),
            ));
        }
    }

    #[cfg(not(feature = "alloc"))]
    fn add_unknown(&mut self, _keyword: &[u8], _params: &[u8]) {}

    /// Whether the flag extension was announced.
    pub fn has(&self, e: Extension) -> bool {
        self.flags & (1 << (e as u8)) != 0
    }
    /// The SIZE announcement.
    pub fn size(&self) -> SizeLimit {
        self.size
    }
    /// The SASL mechanisms announced with AUTH (or the old `AUTH=` form).
    pub fn auth(&self) -> Mechanisms {
        self.auth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyParser;

    fn caps(input: &[u8]) -> Capabilities {
        let (reply, n) = ReplyParser::new()
            .parse(input)
            .expect("valid reply")
            .expect("complete reply");
        assert_eq!(n, input.len());
        Capabilities::from_ehlo(&reply)
    }

    fn flags(c: &Capabilities) -> [bool; 9] {
        use Extension::*;
        [
            StartTls,
            Pipelining,
            Chunking,
            BinaryMime,
            EightBitMime,
            SmtpUtf8,
            Dsn,
            EnhancedStatusCodes,
            RequireTls,
        ]
        .map(|e| c.has(e))
    }

    #[test]
    fn postfix() {
        let c = caps(
            b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n\
250-SMTPUTF8\r\n250 CHUNKING\r\n",
        );
        assert_eq!(c.size(), SizeLimit::Limit(10_240_000));
        assert!(c.auth().is_empty());
        // StartTls, Pipelining, Chunking, BinaryMime, 8BITMIME, SmtpUtf8, Dsn, ESC, RequireTls
        assert_eq!(
            flags(&c),
            [true, true, true, false, true, true, true, true, false]
        );
        #[cfg(feature = "alloc")]
        {
            use alloc::string::String;
            assert_eq!(
                c.unknown,
                [
                    (String::from("VRFY"), String::new()),
                    (String::from("ETRN"), String::new())
                ]
            );
        }
    }

    #[test]
    fn gmail() {
        let c = caps(
            b"250-smtp.gmail.com at your service, [203.0.113.5]\r\n250-SIZE 35882577\r\n\
250-8BITMIME\r\n250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n\
250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
        );
        assert_eq!(c.size(), SizeLimit::Limit(35_882_577));
        let a = c.auth();
        assert!(a.contains(Mechanism::Login));
        assert!(a.contains(Mechanism::Plain));
        assert!(a.contains(Mechanism::XOAuth2));
        assert!(a.contains(Mechanism::OAuthBearer));
        assert!(!a.contains(Mechanism::CramMd5));
        assert!(!c.has(Extension::StartTls));
        assert!(c.has(Extension::Chunking) && c.has(Extension::SmtpUtf8));
        #[cfg(feature = "alloc")]
        assert!(c.unknown.is_empty());
    }

    #[test]
    fn exim_with_old_auth_form() {
        let c = caps(
            b"250-mail.example.org Hello client [192.0.2.7]\r\n250-SIZE 52428800\r\n\
250-8BITMIME\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=CRAM-MD5\r\n\
250-CHUNKING\r\n250-STARTTLS\r\n250-PRDR\r\n250 HELP\r\n",
        );
        let a = c.auth();
        assert!(a.contains(Mechanism::Plain) && a.contains(Mechanism::Login));
        assert!(a.contains(Mechanism::CramMd5));
        assert_eq!(
            a.iter().collect::<std::vec::Vec<_>>(),
            [Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login]
        );
        let c = caps(b"250-x\r\n250-AUTH=PLAIN LOGIN\r\n250 auth=login cram-md5\r\n");
        assert!(c.auth().contains(Mechanism::Plain));
        assert!(c.auth().contains(Mechanism::Login));
        assert!(c.auth().contains(Mechanism::CramMd5));
    }

    #[test]
    fn outlook() {
        let c = caps(
            b"250-AM0PR01CA0001.outlook.office365.com Hello [203.0.113.5]\r\n\
250-SIZE 157286400\r\n250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n\
250-STARTTLS\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
        );
        assert_eq!(c.size(), SizeLimit::Limit(157_286_400));
        assert_eq!(
            flags(&c),
            [true, true, true, true, true, true, true, true, false]
        );
        assert!(c.auth().is_empty());
    }

    #[test]
    fn smtp_sink_with_empty_last_line() {
        let c = caps(
            b"250-localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n\
250-XCLIENT NAME HELO\r\n250-XFORWARD NAME ADDR PROTO HELO\r\n250-ENHANCEDSTATUSCODES\r\n\
250-DSN\r\n250 \r\n",
        );
        assert_eq!(c.size(), SizeLimit::NotAdvertised);
        assert!(c.has(Extension::Pipelining) && c.has(Extension::Dsn));
        assert!(c.auth().contains(Mechanism::Plain) && c.auth().contains(Mechanism::Login));
        #[cfg(feature = "alloc")]
        {
            assert_eq!(c.unknown.len(), 2);
            assert_eq!(c.unknown[0].0, "XCLIENT");
            assert_eq!(c.unknown[1].1, "NAME ADDR PROTO HELO");
        }
    }

    /// `KEYWORDS` is indexed by the extension's discriminant: each keyword sets its own flag
    /// and no other, AUTH's included; SIZE, the one that is not a flag, sets none.
    #[test]
    fn each_flag_keyword_sets_its_own_flag() {
        use Extension::*;
        for (ext, name) in [
            (StartTls, "STARTTLS"),
            (Pipelining, "pipelining"),
            (Chunking, "CHUNKING"),
            (BinaryMime, "BINARYMIME"),
            (EightBitMime, "8BITMIME"),
            (SmtpUtf8, "SMTPUTF8"),
            (Dsn, "DSN"),
            (EnhancedStatusCodes, "EnhancedStatusCodes"),
            (RequireTls, "REQUIRETLS"),
            (Auth, "Auth"),
        ] {
            let c = caps(std::format!("250-x\r\n250 {name}\r\n").as_bytes());
            assert_eq!(c.flags, 1 << (ext as u8), "{name}");
        }
        assert_eq!(caps(b"250-x\r\n250 SIZE 100\r\n").flags, 0);
    }

    #[test]
    fn size_variants() {
        assert_eq!(caps(b"250-x\r\n250 SIZE\r\n").size(), SizeLimit::NoLimit);
        assert_eq!(caps(b"250-x\r\n250 SIZE 0\r\n").size(), SizeLimit::NoLimit);
        assert_eq!(
            caps(b"250-x\r\n250 size 12x\r\n").size(),
            SizeLimit::NoLimit
        );
        assert_eq!(
            caps(b"250-x\r\n250 SIZE 99999999999999999999999\r\n").size(),
            SizeLimit::NoLimit
        );
        assert_eq!(
            caps(b"250-x\r\n250 Size   42  \r\n").size(),
            SizeLimit::Limit(42)
        );
        assert_eq!(
            caps(b"250-x\r\n250 SIZE 18446744073709551615\r\n").size(),
            SizeLimit::Limit(u64::MAX)
        );
    }

    #[test]
    fn first_line_skipped_case_and_spacing() {
        // The greeting line says STARTTLS but is the server's name, not a capability.
        let c = caps(b"250-STARTTLS\r\n250-  pipelining \r\n250-\r\n250 8bitmime\r\n");
        assert!(!c.has(Extension::StartTls));
        assert!(c.has(Extension::Pipelining));
        assert!(c.has(Extension::EightBitMime));
        assert_eq!(caps(b"250 mx.example.com\r\n"), Capabilities::default());
        assert!(caps(b"250-x\r\n250 REQUIRETLS\r\n").has(Extension::RequireTls));
    }

    #[test]
    fn auth_with_only_unknown_mechanisms_is_still_auth() {
        let c = caps(b"250-x\r\n250 AUTH GSSAPI NTLM\r\n");
        assert!(c.has(Extension::Auth));
        assert!(c.auth().is_empty());
        assert!(!caps(b"250-x\r\n250 8BITMIME\r\n").has(Extension::Auth));
    }

    #[test]
    fn negative_reply_has_nothing() {
        assert_eq!(
            caps(b"502-5.5.1 no\r\n502 PIPELINING\r\n"),
            Capabilities::default()
        );
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn unknown_keywords_bounded_and_lossy() {
        let mut input = std::vec::Vec::from(&b"250-x\r\n250-X-\xffBAD p\xfe\r\n"[..]);
        for i in 0..200 {
            input.extend_from_slice(std::format!("250-XK{i} v\r\n").as_bytes());
        }
        input.extend_from_slice(b"250 STARTTLS\r\n");
        let c = caps(&input);
        assert_eq!(c.unknown.len(), MAX_UNKNOWN);
        assert_eq!(c.unknown[0].0, "X-\u{fffd}BAD");
        assert_eq!(c.unknown[0].1, "p\u{fffd}");
        assert!(c.has(Extension::StartTls));
    }
}
