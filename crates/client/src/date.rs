//! Calendar dates from Unix time as strings; the calendar itself is the core's
//! ([`postline_proto::date`]), which writes them without allocating.

use postline_proto::date::{Rfc5322, Utc};

/// `Wed, 02 Dec 2026 07:50:41 +0000` (RFC 5322 3.3).
pub fn rfc5322(unix: i64) -> String {
    Rfc5322(unix).to_string()
}

/// `2001-01-01 00:00:00 UTC`.
pub fn utc(unix: i64) -> String {
    Utc(unix).to_string()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322(-86_400), "Wed, 31 Dec 1969 00:00:00 +0000");
        assert_eq!(utc(978_307_200), "2001-01-01 00:00:00 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
}
