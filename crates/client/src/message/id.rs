//! Message-ID values: a unique left part and the sender's domain.

/// A new Message-ID (without angle brackets) for mail from `from`: unique left part, and
/// the From domain as right part, so the id says who made it (RFC 5322 3.6.4).
pub(crate) fn generate(from: &str) -> String {
    format!("{}@{}", unique(), domain(from))
}

/// The domain for a Message-ID: that of `addr` when it is a plain ASCII domain or an
/// address literal, else `localhost` (an internationalised domain would need SMTPUTF8 in
/// a header that is read everywhere).
pub(crate) fn domain(addr: &str) -> String {
    let domain = match addr.rsplit_once('@') {
        Some((_, d)) => d,
        None => "",
    };
    let plain = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let literal = domain.len() > 2
        && domain.starts_with('[')
        && domain.ends_with(']')
        && domain[1..domain.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'.');
    if plain || literal {
        domain.to_ascii_lowercase()
    } else {
        "localhost".to_string()
    }
}

/// Time, process, a counter and a randomly seeded hash: unique enough for a Message-ID
/// left part, without a random number generator dependency.
pub(crate) fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u64(count);
    h.write_u32(std::process::id());
    format!(
        "{nanos:x}.{:x}.{:016x}",
        std::process::id(),
        h.finish() ^ count.rotate_left(32)
    )
}

/// Checks a Message-ID or Content-ID given by a caller, with or without angle brackets, and
/// returns it without them. `at_required`: a Message-ID needs `left@right`.
pub(crate) fn check(id: &str, at_required: bool) -> Result<String, String> {
    let t = id.trim();
    let bare = t
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(t);
    if bare.is_empty() {
        return Err("empty".into());
    }
    if let Some(bad) = bare
        .chars()
        .find(|&c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\\'))
    {
        return Err(format!("{:?} is not allowed in an id", bad));
    }
    if !bare.is_ascii() {
        return Err("must be ASCII".into());
    }
    if at_required && !bare.contains('@') {
        return Err("must have the form left@right".into());
    }
    Ok(bare.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_falls_back() {
        assert_eq!(domain("a@Example.ORG"), "example.org");
        assert_eq!(domain("root"), "localhost");
        assert_eq!(domain("a@bücher.de"), "localhost");
        assert_eq!(domain("a@[192.0.2.1]"), "[192.0.2.1]");
        assert_eq!(domain("a@"), "localhost");
    }

    #[test]
    fn ids_are_unique_and_checked() {
        assert_ne!(generate("a@example.org"), generate("a@example.org"));
        assert!(generate("a@example.org").ends_with("@example.org"));
        assert_eq!(check("<a@b>", true).unwrap(), "a@b");
        assert_eq!(check("logo", false).unwrap(), "logo");
        assert!(check("logo", true).is_err());
        assert!(check("a b@c", true).is_err());
        assert!(check("a@b>\r\nBcc: x", true).is_err());
        assert!(check("<>", false).is_err());
    }
}
