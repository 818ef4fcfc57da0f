//! Calendar dates from Unix time, without a time-zone database and without allocating: what
//! mail needs (RFC 5322 `Date:` in UTC, written straight into a message on a device) and what
//! people read in messages about certificates.

use core::fmt;

/// The civil date and time of `unix` seconds, in UTC: (year, month 1–12, day 1–31, hour,
/// minute, second, weekday 0 = Sunday). Howard Hinnant's days-to-civil algorithm; any `i64`
/// the calendar can hold is fine, before 1970 included.
pub fn civil(unix: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let (year, month, day, rem, weekday) = civil_parts(unix);
    let small = i64::from;
    (
        year,
        small(month),
        small(day),
        small(rem / 3600),
        small(rem / 60 % 60),
        small(rem % 60),
        small(weekday),
    )
}

/// [`civil`]'s work: (year, month, day, second of the day, weekday), everything but the year
/// as the `u32` it is computed in, so [`Rfc5322::write_to`] spells the small numbers with
/// 32-bit division, an instruction on a Cortex-M, where from `i64` each was a library call
/// (16 B more of a device build, and 48 B on x86_64).
fn civil_parts(unix: i64) -> (i64, u32, u32, u32, u32) {
    let days = unix.div_euclid(86_400);
    // The second of the day, the day of the 400-year era and everything worked out from it
    // are small: 32-bit arithmetic, which a Cortex-M divides in an instruction (64-bit
    // division is a library call each, and was half this function's code on one).
    let rem = unix.wrapping_sub(days.wrapping_mul(86_400)) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = i64::from(yoe) + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday: (days + 4) mod 7, and an era is whole weeks (146,097 days),
    // so that is (doe - 719,468 + 4) mod 7, (doe + 3) mod 7.
    let weekday = (doe + 3) % 7;
    (year, month, day, rem, weekday)
}

/// Shows `unix` seconds as an RFC 5322 3.3 date in UTC: `Wed, 02 Dec 2026 07:50:41 +0000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc5322(pub i64);

impl Rfc5322 {
    /// Room for the longest date: a signed 12-digit year is the most an `i64` of seconds
    /// reaches, and 32 more bytes are the rest.
    pub const MAX_LEN: usize = 48;

    /// The date as ASCII in `buf`: what [`Display`](fmt::Display) shows, written without
    /// `core::fmt`, whose number formatting costs a device kilobytes of code.
    pub fn write_to(self, buf: &mut [u8; Self::MAX_LEN]) -> &[u8] {
        // The names three letters each, back to back: no table of pointers to them (72 B of
        // a device build's data).
        const WEEKDAYS: &[u8; 21] = b"SunMonTueWedThuFriSat";
        const MONTHS: &[u8; 36] = b"JanFebMarAprMayJunJulAugSepOctNovDec";
        let three = |names: &'static [u8], i: usize| names.get(i * 3..i * 3 + 3);
        let (y, mo, d, rem, wd) = civil_parts(self.0);
        let (h, mi, s) = (rem / 3600, rem / 60 % 60, rem % 60);
        let mut w = Writer { buf, len: 0 };
        w.put(three(WEEKDAYS, wd as usize).unwrap_or(b"Thu"));
        w.put(b", ");
        w.two(d);
        w.put(b" ");
        w.put(three(MONTHS, (mo as usize).wrapping_sub(1)).unwrap_or(b"Jan"));
        w.put(b" ");
        if y < 0 {
            w.put(b"-");
        }
        w.decimal(y.unsigned_abs());
        w.put(b" ");
        w.two(h);
        w.put(b":");
        w.two(mi);
        w.put(b":");
        w.two(s);
        w.put(b" +0000");
        let len = w.len;
        buf.get(..len).unwrap_or(&[])
    }
}

/// Writes ASCII into a buffer sized for the longest text, so nothing is ever cut.
struct Writer<'b> {
    buf: &'b mut [u8; Rfc5322::MAX_LEN],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// A number 0..=99 in two digits.
    fn two(&mut self, n: u32) {
        let n = (n % 100) as u8;
        self.put(&[b'0' + n / 10, b'0' + n % 10]);
    }

    fn decimal(&mut self, n: u64) {
        self.put(crate::buf::decimal(n, &mut [0u8; 20]));
    }
}

impl fmt::Display for Rfc5322 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; Rfc5322::MAX_LEN];
        // Only ASCII is written.
        f.write_str(core::str::from_utf8(self.write_to(&mut buf)).unwrap_or(""))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::{format, vec};

    /// The date as `core::fmt` writes it: the oracle for the hand-written one.
    fn by_fmt(unix: i64) -> String {
        const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (y, mo, d, h, mi, s, wd) = civil(unix);
        let weekday = WEEKDAYS[wd as usize];
        let month = MONTHS[(mo - 1) as usize];
        format!("{weekday}, {d:02} {month} {y} {h:02}:{mi:02}:{s:02} +0000")
    }

    /// The algorithm as first written, all in `i64`.
    fn civil_i64(unix: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
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

    #[test]
    fn civil_in_32_bits_is_civil_in_64() {
        let mut seeds = vec![
            0i64,
            -1,
            1,
            86_399,
            86_400,
            -86_400,
            -86_401,
            i64::MIN,
            i64::MAX,
        ];
        seeds.extend((-1000..1000).map(|d| d * 86_400 + d));
        seeds.extend((0..800).map(|y| -62_135_596_800 + y * 31_556_952));
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for shift in [0, 8, 16, 24, 30] {
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                seeds.push((x as i64) >> shift);
            }
        }
        for unix in seeds {
            assert_eq!(civil(unix), civil_i64(unix), "{unix}");
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(Rfc5322(0).to_string(), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            Rfc5322(1_796_197_841).to_string(),
            "Wed, 02 Dec 2026 07:50:41 +0000"
        );
        assert_eq!(Rfc5322(-1).to_string(), "Wed, 31 Dec 1969 23:59:59 +0000");
    }

    #[test]
    fn hand_written_matches_fmt() {
        let mut seeds = vec![0i64, -1, 951_782_400, 4_107_542_400, -62_135_596_800];
        seeds.extend([-1i64 << 40, 1 << 40, (1 << 55) / 7, -(1 << 55) / 7]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seeds.push((x as i64) >> 20);
        }
        for unix in seeds {
            assert_eq!(Rfc5322(unix).to_string(), by_fmt(unix), "{unix}");
        }
    }
}
