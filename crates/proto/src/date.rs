//! Calendar dates from Unix time, without a time-zone database and without allocating: what
//! mail needs (RFC 5322 `Date:` in UTC, written straight into a message on a device) and what
//! people read in messages about certificates.

use core::fmt;

/// The civil date and time of `unix` seconds, in UTC: (year, month 1–12, day 1–31, hour,
/// minute, second, weekday 0 = Sunday). Howard Hinnant's days-to-civil algorithm; any `i64`
/// the calendar can hold is fine, before 1970 included.
pub fn civil(unix: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let rem = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7);
    (
        year,
        month,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        weekday,
    )
}

/// Shows `unix` seconds as an RFC 5322 3.3 date in UTC: `Wed, 02 Dec 2026 07:50:41 +0000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc5322(pub i64);

impl fmt::Display for Rfc5322 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (y, mo, d, h, mi, s, wd) = civil(self.0);
        let weekday = WEEKDAYS.get(wd as usize).copied().unwrap_or("Thu");
        let month = MONTHS.get((mo - 1) as usize).copied().unwrap_or("Jan");
        write!(
            f,
            "{weekday}, {d:02} {month} {y} {h:02}:{mi:02}:{s:02} +0000"
        )
    }
}

/// Shows `unix` seconds as `2001-01-01 00:00:00 UTC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc(pub i64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s, _) = civil(self.0);
        write!(f, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
    }
}
