//! `HOST[:PORT]` as people write a server: `mail.example.com`, `127.0.0.1:2600`,
//! `[2001:db8::1]:587`; a bare IPv6 address (`::1`) is a host without a port.

/// Why a server text is not `HOST[:PORT]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Empty, spaces or control characters, an unclosed bracket, nothing before the colon.
    #[error("expected HOST[:PORT]")]
    Malformed,
    /// The port is not a number from 1 to 65535.
    #[error("the port must be a number from 1 to 65535")]
    Port,
}

/// Splits `HOST[:PORT]` into the host (IPv6 without its brackets) and the port.
pub fn parse_server(s: &str) -> Result<(String, Option<u16>), ServerError> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ServerError::Port),
    };
    if s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ServerError::Malformed);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(ServerError::Malformed)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(port(p)?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => Err(ServerError::Malformed),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            if h.is_empty() {
                return Err(ServerError::Malformed);
            }
            Ok((h.to_string(), Some(port(p)?)))
        }
        _ => Ok((s.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers() {
        assert_eq!(parse_server("h"), Ok(("h".into(), None)));
        assert_eq!(parse_server("h:2525"), Ok(("h".into(), Some(2525))));
        assert_eq!(parse_server("[::1]:25"), Ok(("::1".into(), Some(25))));
        assert_eq!(parse_server("[::1]"), Ok(("::1".into(), None)));
        assert_eq!(parse_server("::1"), Ok(("::1".into(), None)));
        assert_eq!(parse_server("h:0"), Err(ServerError::Port));
        assert_eq!(parse_server("h:+25"), Err(ServerError::Port));
        assert_eq!(parse_server("h:smtp"), Err(ServerError::Port));
        assert_eq!(parse_server(":25"), Err(ServerError::Malformed));
        assert_eq!(parse_server("[::1"), Err(ServerError::Malformed));
        assert_eq!(parse_server("a b"), Err(ServerError::Malformed));
    }
}
