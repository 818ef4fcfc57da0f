//! What a server certificate says, in terms a person can act on: the names it holds, when it
//! is valid, whether it signed itself, and the two values it can be pinned by.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::digest::{digest, SHA256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate's identifying facts, read once from its DER for error messages, `probe`,
/// and the checks that trust a certificate as itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateSummary {
    /// The subject's distinguished name, as OpenSSL prints it (`CN=mail.example.org`).
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// DNS names and IP addresses from the subject alternative names, for people to read.
    pub alt_names: Vec<String>,
    /// The DNS names among them.
    pub dns_names: Vec<String>,
    /// The IP addresses among them.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// The subject's common name(s): what DNS name checks fall back to when a certificate
    /// explicitly trusted as itself has no alternative names at all.
    pub common_names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Signed by its own key (issuer equals subject and the signature verifies with the
    /// certificate's own public key): nobody else vouches for it.
    pub self_signed: bool,
    /// Marked as a certificate authority (`CA:TRUE`), as `openssl req -x509` makes them.
    pub is_ca: bool,
    /// SHA-256 of the certificate's DER (what `--tls-fingerprint` pins).
    pub fingerprint: Fingerprint,
    /// SHA-256 of its SubjectPublicKeyInfo (what `--pinned-pubkey` pins).
    pub public_key_pin: PublicKeyPin,
}

impl CertificateSummary {
    /// Reads a DER certificate; `None` when it cannot be parsed.
    pub fn from_der(der: &[u8]) -> Option<CertificateSummary> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut alt_names = Vec::new();
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let mut has_san = false;
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            has_san = true;
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => {
                        alt_names.push((*d).to_string());
                        dns_names.push((*d).to_string());
                    }
                    GeneralName::IPAddress(ip) => {
                        if let Some(ip) = ip_of(ip) {
                            alt_names.push(ip.to_string());
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        // RFC 6125 6.4.4: the common name counts only when there are no alternative names.
        let common_names = if has_san {
            Vec::new()
        } else {
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string))
                .collect()
        };
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(None).is_ok();
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let spki = cert.public_key().raw;
        Some(CertificateSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            alt_names,
            dns_names,
            ip_addresses,
            common_names,
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            self_signed,
            is_ca,
            fingerprint: Fingerprint::of(der),
            public_key_pin: PublicKeyPin::of_spki(spki),
        })
    }

    /// The names the certificate is for, for people to read: the alternative names, or the
    /// common names when there are none.
    pub fn names(&self) -> &[String] {
        if self.alt_names.is_empty() {
            &self.common_names
        } else {
            &self.alt_names
        }
    }

    /// Whether the certificate is for `name`, as webpki would judge it: an IP address
    /// (brackets allowed) only against the IP addresses, byte for byte; a DNS name against
    /// the DNS names, a `*.` wildcard matching exactly one leftmost label, or against the
    /// common name when the certificate has no alternative names.
    pub fn matches_name(&self, name: &str) -> bool {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        let name = bare.trim_end_matches('.');
        if self.alt_names.is_empty() {
            self.common_names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
        } else {
            self.dns_names.iter().any(|n| name_matches(n, name))
        }
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(rest), Some((label, tail))) => {
            !label.is_empty() && rest.contains('.') && rest.eq_ignore_ascii_case(tail)
        }
        _ => false,
    }
}

fn ip_of(bytes: &[u8]) -> Option<std::net::IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(std::net::Ipv4Addr::from(v4).into())
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(std::net::Ipv6Addr::from(v6).into())
    } else {
        None
    }
}

fn system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

/// A date as `2001-01-01 00:00:00 UTC`, for messages about validity.
pub(crate) fn utc(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    crate::date::utc(secs)
}

/// The SHA-256 of a certificate's DER, shown as msmtp's `tls_fingerprint` and
/// `openssl x509 -fingerprint -sha256` show it: upper-case hex pairs joined by colons.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(sha256(der))
    }

    /// Reads 64 hex digits, with or without colons (or spaces) between pairs, any case; a
    /// leading `sha256 Fingerprint=` (as `openssl x509 -fingerprint -sha256` prints it) is
    /// skipped.
    pub fn parse(text: &str) -> Result<Fingerprint, PinError> {
        let text = text.trim();
        // openssl's `<digest> Fingerprint=` label: SHA-256 is read, another digest named.
        let text = match text.split_once('=') {
            Some((label, rest)) if label.to_ascii_lowercase().ends_with(" fingerprint") => {
                match label.to_ascii_lowercase().split(' ').next() {
                    Some("sha256") => rest,
                    Some("sha1") => return Err(PinError::NotSha256("SHA-1")),
                    Some("md5") => return Err(PinError::NotSha256("MD5")),
                    _ => return Err(PinError::NotHex),
                }
            }
            _ => text,
        };
        let hex: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ':' | ' '))
            .collect();
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(PinError::NotHex);
        }
        match hex.len() {
            64 => {}
            40 => return Err(PinError::NotSha256("SHA-1")),
            32 => return Err(PinError::NotSha256("MD5")),
            n => return Err(PinError::Length(n)),
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| PinError::NotHex)?;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, shown as curl's `--pinnedpubkey`
/// takes it: `sha256//` and standard base64. Survives a renewal that keeps the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKeyPin(pub [u8; 32]);

impl PublicKeyPin {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki: &[u8]) -> PublicKeyPin {
        PublicKeyPin(sha256(spki))
    }

    /// Reads `sha256//BASE64` (the prefix may be omitted).
    pub fn parse(text: &str) -> Result<PublicKeyPin, PinError> {
        let text = text.trim();
        let b64 = text.strip_prefix("sha256//").unwrap_or(text);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| PinError::NotBase64)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| PinError::Length(b.len()))?;
        Ok(PublicKeyPin(bytes))
    }
}

impl fmt::Display for PublicKeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256//{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl fmt::Debug for PublicKeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKeyPin({self})")
    }
}

/// What a server certificate may be pinned to; any one matching is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pin {
    /// The whole certificate (msmtp's `tls_fingerprint`).
    Certificate(Fingerprint),
    /// Its public key (curl's `--pinnedpubkey`).
    PublicKey(PublicKeyPin),
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Certificate(c) => write!(f, "certificate {c}"),
            Pin::PublicKey(k) => write!(f, "public key {k}"),
        }
    }
}

/// Why a pin given as text is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// A character other than hex digits and colons.
    #[error("a fingerprint is 64 hex digits, optionally in pairs separated by colons")]
    NotHex,
    /// A fingerprint of another hash.
    #[error("this looks like a {0} fingerprint; postline pins SHA-256 fingerprints only (openssl x509 -noout -fingerprint -sha256)")]
    NotSha256(&'static str),
    /// Not standard base64.
    #[error("a public key pin is sha256// followed by the base64 of a SHA-256 hash")]
    NotBase64,
    /// The wrong number of digits or bytes.
    #[error(
        "wrong length ({0} digits or bytes): a SHA-256 value is 32 bytes (64 hex digits, 44 base64 characters)"
    )]
    Length(usize),
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_msmtp_and_openssl_write_them() {
        let text = "AB:".repeat(31) + "CD";
        let fp = Fingerprint::parse(&text).unwrap();
        assert_eq!(fp.to_string(), text);
        assert_eq!(
            Fingerprint::parse(&text.to_lowercase().replace(':', "")),
            Ok(fp)
        );
        assert_eq!(
            Fingerprint::parse(&"ab".repeat(20)),
            Err(PinError::NotSha256("SHA-1"))
        );
        assert_eq!(Fingerprint::parse("zz"), Err(PinError::NotHex));
        assert_eq!(
            Fingerprint::parse(&format!("sha256 Fingerprint={text}")),
            Ok(fp)
        );
        assert_eq!(
            Fingerprint::parse(&format!("SHA256 Fingerprint={text}\n")),
            Ok(fp)
        );
        assert_eq!(
            Fingerprint::parse(&format!("sha1 Fingerprint={}", "AB:".repeat(19) + "CD")),
            Err(PinError::NotSha256("SHA-1"))
        );
        assert_eq!(Fingerprint::parse("abcd"), Err(PinError::Length(4)));
    }

    #[test]
    fn public_key_pins_parse_as_curl_writes_them() {
        let pin = PublicKeyPin([7; 32]);
        let text = pin.to_string();
        assert!(text.starts_with("sha256//"), "{text}");
        assert_eq!(PublicKeyPin::parse(&text), Ok(pin));
        assert_eq!(PublicKeyPin::parse("sha256//!!"), Err(PinError::NotBase64));
        assert_eq!(
            PublicKeyPin::parse("sha256//AAAA"),
            Err(PinError::Length(3))
        );
    }

    fn summary(dns: &[&str], ips: &[&str], cn: &[&str]) -> CertificateSummary {
        let ips: Vec<std::net::IpAddr> = ips.iter().map(|i| i.parse().unwrap()).collect();
        let mut alt: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        alt.extend(ips.iter().map(ToString::to_string));
        CertificateSummary {
            subject: String::new(),
            issuer: String::new(),
            alt_names: alt,
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
            ip_addresses: ips,
            common_names: cn.iter().map(|c| c.to_string()).collect(),
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
            self_signed: true,
            is_ca: true,
            fingerprint: Fingerprint([0; 32]),
            public_key_pin: PublicKeyPin([0; 32]),
        }
    }

    #[test]
    fn ip_addresses_match_only_ip_names_and_dns_names_only_dns_names() {
        // A DNS name that looks like an address, or a wildcard over one, is no address.
        assert!(!summary(&["127.0.0.1"], &[], &[]).matches_name("127.0.0.1"));
        assert!(!summary(&["*.0.0.1"], &[], &[]).matches_name("127.0.0.1"));
        assert!(!summary(&[], &[], &["127.0.0.1"]).matches_name("127.0.0.1"));
        assert!(summary(&[], &["127.0.0.1"], &[]).matches_name("127.0.0.1"));
        assert!(summary(&[], &["::1"], &[]).matches_name("[::1]"));
        assert!(!summary(&[], &["127.0.0.1"], &[]).matches_name("localhost"));
        // The common name stands in only without alternative names.
        assert!(summary(&[], &[], &["localhost"]).matches_name("LOCALHOST"));
        assert!(!summary(&["other.test"], &[], &["localhost"]).matches_name("localhost"));
        assert!(summary(&["*.example.org"], &[], &[]).matches_name("mail.example.org"));
    }

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        assert!(name_matches("mail.example.org", "MAIL.example.org"));
        assert!(name_matches("*.example.org", "mail.example.org"));
        assert!(!name_matches("*.example.org", "a.mail.example.org"));
        assert!(!name_matches("*.org", "example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
    }

    #[test]
    fn dates_read_as_utc() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(978_307_200)),
            "2001-01-01 00:00:00 UTC"
        );
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31 23:59:59 UTC"
        );
    }
}
