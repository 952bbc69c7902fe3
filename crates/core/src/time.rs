//! The protocol's datetime format: `2024-01-31 12:34:56.789Z`, UTC, a space instead of `T`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

pub const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3fZ";

pub fn format(t: DateTime<Utc>) -> String {
    match format_fixed(t) {
        Some(b) => b.iter().map(|&c| c as char).collect(),
        None => t.format(FORMAT).to_string(),
    }
}

/// [`format`] into a fixed buffer, for years 0 to 9999 (the request logs write it without
/// allocating).
pub fn format_fixed(t: DateTime<Utc>) -> Option<[u8; 24]> {
    use chrono::{Datelike, Timelike};
    // Written field by field: `format(FORMAT)` parses the pattern on every call (hot: every write
    // and every request log entry).
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut b = *b"0000-00-00 00:00:00.000Z";
    put_digits(&mut b, 0, 4, year as u32);
    put_digits(&mut b, 5, 2, t.month());
    put_digits(&mut b, 8, 2, t.day());
    put_digits(&mut b, 11, 2, t.hour());
    put_digits(&mut b, 14, 2, t.minute());
    put_digits(&mut b, 17, 2, t.second());
    put_digits(&mut b, 20, 3, t.timestamp_subsec_millis().min(999));
    Some(b)
}

/// `v`'s last `width` decimal digits at `b[at..]` (`format!` with padding costs a formatter per field).
fn put_digits(b: &mut [u8; 24], at: usize, width: usize, mut v: u32) {
    for i in (at..at + width).rev() {
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The current time as microseconds since the epoch and in the [`format`] layout, read with one
/// clock call: the date part is worked out once per day and thread (the request logs call this for
/// every entry; `Utc::now()` converts days to a date on every call). `None` outside years 0-9999.
pub fn now_fixed() -> (i64, Option<[u8; 24]>) {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    (micros, fixed_micros(micros))
}

/// [`format_fixed`] of `micros` since the epoch, the date part cached per thread.
fn fixed_micros(micros: i64) -> Option<[u8; 24]> {
    const DAY_US: i64 = 86_400_000_000;
    thread_local! {
        /// The day (since the epoch) and its `YYYY-MM-DD ` text, or `None` for a year past 9999.
        static DAY: std::cell::Cell<(i64, Option<[u8; 11]>)> = const { std::cell::Cell::new((i64::MIN, None)) };
    }
    let (day, us) = (micros.div_euclid(DAY_US), micros.rem_euclid(DAY_US));
    let prefix = DAY.with(|c| {
        let (d, p) = c.get();
        if d == day {
            return p;
        }
        let p = DateTime::from_timestamp_micros(day * DAY_US)
            .and_then(format_fixed)
            .map(|b| {
                let mut p = [0u8; 11];
                p.copy_from_slice(&b[..11]);
                p
            });
        c.set((day, p));
        p
    });
    prefix.map(|p| {
        let mut b = *b"0000-00-00 00:00:00.000Z";
        b[..11].copy_from_slice(&p);
        let ms = (us / 1000) as u32;
        put_digits(&mut b, 11, 2, ms / 3_600_000);
        put_digits(&mut b, 14, 2, ms / 60_000 % 60);
        put_digits(&mut b, 17, 2, ms / 1000 % 60);
        put_digits(&mut b, 20, 3, ms % 1000);
        b
    })
}

pub fn now() -> String {
    format(Utc::now())
}

/// Parses a stored protocol datetime.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// Parses the date forms a client may send (protocol format, RFC 3339, a bare date) into the protocol
/// format. Returns `None` when the text is not a date.
pub fn normalize(s: &str) -> Option<String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(format(t.with_timezone(&Utc)));
    }
    let t = s.trim_end_matches('Z').replacen('T', " ", 1);
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&t, f) {
            return Some(format(n.and_utc()));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(&t, "%Y-%m-%d") {
        return Some(format(d.and_hms_opt(0, 0, 0)?.and_utc()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_common_forms() {
        assert_eq!(
            normalize("2024-01-31 12:34:56.789Z").as_deref(),
            Some("2024-01-31 12:34:56.789Z")
        );
        assert_eq!(
            normalize("2024-01-31T12:34:56Z").as_deref(),
            Some("2024-01-31 12:34:56.000Z")
        );
        assert_eq!(
            normalize("2024-01-31").as_deref(),
            Some("2024-01-31 00:00:00.000Z")
        );
        assert_eq!(
            normalize("2024-01-31T14:34:56+02:00").as_deref(),
            Some("2024-01-31 12:34:56.000Z")
        );
        assert_eq!(normalize("yesterday"), None);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn fixed_micros_matches_format_across_days() {
        // Back and forth across midnights, before 1970, and the last representable day.
        let day = 86_400_000_000i64;
        let last = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z")
            .unwrap()
            .timestamp_micros();
        for t in [
            1_764_979_200_000_000 - 1,
            1_764_979_200_000_000,
            1_764_979_200_000_000 - 1,
            1_764_979_200_123_456 + day / 2,
            0,
            -1,
            -day - 999,
            last,
            last + 1,
            1_764_979_200_000_000 + 3 * day + 45_296_789_000,
        ] {
            let want = DateTime::from_timestamp_micros(t).and_then(format_fixed);
            assert_eq!(fixed_micros(t), want, "{t}");
        }
        let (micros, now) = now_fixed();
        assert_eq!(
            now,
            DateTime::from_timestamp_micros(micros).and_then(format_fixed)
        );
    }

    #[test]
    fn format_matches_the_pattern() {
        for t in [
            "2024-01-31T12:34:56.789Z",
            "1999-12-31T23:59:59.999Z",
            "2026-02-03T04:05:06Z",
            "0900-01-01T00:00:00.001Z",
        ] {
            let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
            assert_eq!(format(t), t.format(FORMAT).to_string());
        }
        // A leap second's nanoseconds never print as 1000.
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(format(leap), "2016-12-31 23:59:59.999Z");
    }
}
