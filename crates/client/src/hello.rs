//! The name a client announces in EHLO when none is configured: RFC 5321 4.1.4 wants the
//! client's fully qualified domain name, or an address literal when it has none. Strict
//! servers (Postfix's `reject_non_fqdn_helo_hostname`) refuse a bare host name.

use std::net::IpAddr;
use std::sync::OnceLock;

use postline_proto::Domain;

/// This machine's fully qualified name, looked up once: the kernel's host name when it has a
/// dot, else the fully qualified name `/etc/hosts` gives it (what `hostname -f` finds there).
/// DNS is not asked: a slow or absent resolver must not delay every connection.
pub(crate) fn fqdn() -> Option<String> {
    static FQDN: OnceLock<Option<String>> = OnceLock::new();
    FQDN.get_or_init(|| {
        let host = host_name()?;
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        fqdn_of(&host, &hosts)
    })
    .clone()
}

/// The name when no address is known either: the FQDN, else the bare host name (better
/// than nothing), else `localhost`.
pub(crate) fn default_name() -> String {
    fqdn()
        .or_else(host_name)
        .unwrap_or_else(|| "localhost".to_string())
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 4.1.3).
pub(crate) fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    }
}

pub(crate) fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim();
    (!name.is_empty() && Domain::new(name).is_ok()).then(|| name.to_string())
}

/// A fully qualified host name by RFC 1123: labels of letters, digits and inner hyphens,
/// at least two, the last not all digits (so `10.0.0.5` is an address, not a name).
fn is_fqdn(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    let labels: Vec<&str> = name.split('.').collect();
    let ldh = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    labels.len() >= 2
        && name.len() <= 253
        && labels.iter().all(ldh)
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
        && !name.eq_ignore_ascii_case("localhost.localdomain")
        && Domain::new(name).is_ok()
}

/// The FQDN for `host` given the text of a hosts file.
fn fqdn_of(host: &str, hosts: &str) -> Option<String> {
    if is_fqdn(host) {
        return Some(host.trim_end_matches('.').to_string());
    }
    if host.eq_ignore_ascii_case("localhost") {
        return None;
    }
    let prefix = format!("{}.", host.to_ascii_lowercase());
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        fields.next()?; // the address
        let names: Vec<&str> = fields.collect();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
            return None;
        }
        // The canonical (first) name when it is qualified, else an alias `host.domain`.
        names
            .first()
            .filter(|n| is_fqdn(n))
            .or_else(|| {
                names
                    .iter()
                    .find(|n| n.to_ascii_lowercase().starts_with(&prefix) && is_fqdn(n))
            })
            .map(|n| n.trim_end_matches('.').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_from_the_host_name_or_the_hosts_file() {
        assert_eq!(
            fqdn_of("mail.example.org", ""),
            Some("mail.example.org".into())
        );
        let hosts =
            "127.0.0.1 localhost\n# 10.0.0.1 vm.commented.test vm\n127.0.1.1 vm.example.test vm\n";
        assert_eq!(fqdn_of("vm", hosts), Some("vm.example.test".into()));
        assert_eq!(
            fqdn_of("vm", "127.0.1.1 vm vm.lan.test\n"),
            Some("vm.lan.test".into())
        );
        assert_eq!(fqdn_of("vm", "127.0.0.1 localhost\n127.0.0.1 vm\n"), None);
        assert_eq!(fqdn_of("vm", "127.0.0.1 localhost.localdomain vm\n"), None);
        assert_eq!(
            fqdn_of("localhost", "127.0.0.1 localhost.example.test localhost\n"),
            None
        );
        assert_eq!(fqdn_of("vm", "10.1.1.1 other.example.test other\n"), None);
        for bad in [
            "10.0.0.5",
            "café.lan",
            "a..b",
            "-a.example",
            "under_score.example",
        ] {
            assert_eq!(fqdn_of(bad, ""), None, "{bad}");
        }
    }

    #[test]
    fn address_literals_follow_rfc5321() {
        assert_eq!(address_literal("192.0.2.1".parse().unwrap()), "[192.0.2.1]");
        assert_eq!(
            address_literal("2001:db8::1".parse().unwrap()),
            "[IPv6:2001:db8::1]"
        );
        assert_eq!(
            address_literal("::ffff:192.0.2.1".parse().unwrap()),
            "[192.0.2.1]"
        );
        assert!(Domain::new(address_literal("2001:db8::1".parse().unwrap()).as_str()).is_ok());
    }
}
