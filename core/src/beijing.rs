//! The providers' clock: Beijing time (UTC+8, no daylight saving), whatever the server's own time
//! zone is. WeChat writes `yyyyMMddHHmmss` (and `yyyy-MM-dd HH:mm:ss` for refunds); Alipay writes
//! `yyyy-MM-dd HH:mm:ss`, sometimes with milliseconds. Stamping local time instead is 8 hours wrong
//! on a UTC server (PROTOCOLS.md pitfall 9).

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Timelike, Utc};

const COMPACT: &str = "%Y%m%d%H%M%S";
const DASHED: &str = "%Y-%m-%d %H:%M:%S";

fn offset() -> Option<FixedOffset> {
    FixedOffset::east_opt(8 * 3600)
}

fn format_with(at: DateTime<Utc>, pattern: &str) -> String {
    match offset() {
        Some(o) => at.with_timezone(&o).format(pattern).to_string(),
        // Unreachable: +8 h is a valid offset. A UTC time would be silently 8 hours off, so write
        // nothing and let the provider refuse the request loudly.
        None => String::new(),
    }
}

fn from_beijing(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    offset()?
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// `at` on the Beijing clock (UTC+8).
pub fn local(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    match offset() {
        Some(o) => at.with_timezone(&o),
        // Unreachable: +8 h is a valid offset.
        None => at.fixed_offset(),
    }
}

/// The UTC range `[start, end)` of a Beijing calendar day: 2026-12-05 is
/// `2026-12-04T16:00:00Z..2026-12-05T16:00:00Z`.
pub fn day_range(day: chrono::NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let start = from_beijing(day.and_hms_opt(0, 0, 0)?)?;
    Some((start, start + chrono::Duration::days(1)))
}

/// `2024-01-01T00:00:00Z` → `"20240101080000"`.
pub fn format_compact(at: DateTime<Utc>) -> String {
    format_with(at, COMPACT)
}

/// `2024-01-01T04:00:00Z` → `"2024-01-01 12:00:00"`.
pub fn format_dashed(at: DateTime<Utc>) -> String {
    format_with(at, DASHED)
}

/// `"20240101080000"` (Beijing) → `2024-01-01T00:00:00Z`. Exactly 14 digits, else `None`.
pub fn parse_compact(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    from_beijing(NaiveDateTime::parse_from_str(text, COMPACT).ok()?)
}

/// `"2024-01-01 12:00:00"` (Beijing) → `2024-01-01T04:00:00Z`. Tolerates a fraction of a second
/// (`2024-01-01 12:00:00.123`), nothing else.
pub fn parse_dashed(text: &str) -> Option<DateTime<Utc>> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let shape_ok = whole.len() == 19
        && whole.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let nanos = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: u32 = f.parse().ok()?;
            let scale = 10u32.checked_pow(9u32.checked_sub(u32::try_from(f.len()).ok()?)?)?;
            digits.checked_mul(scale)?
        }
        Some(_) => return None,
    };
    let naive = NaiveDateTime::parse_from_str(whole, DASHED)
        .ok()?
        .with_nanosecond(nanos)?;
    from_beijing(naive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn formats_utc_as_beijing_time() {
        assert_eq!(
            format_compact(utc("2024-01-01T00:00:00Z")),
            "20240101080000"
        );
        assert_eq!(
            format_compact(utc("2023-12-31T16:00:00Z")),
            "20240101000000"
        );
        assert_eq!(
            format_compact(utc("2024-02-29T23:59:59+08:00")),
            "20240229235959"
        );
        assert_eq!(
            format_dashed(utc("2024-01-01T04:00:00Z")),
            "2024-01-01 12:00:00"
        );
        assert_eq!(
            format_dashed(utc("2024-01-01T19:04:05Z")),
            "2024-01-02 03:04:05"
        );
    }

    #[test]
    fn parses_beijing_time_into_utc() {
        assert_eq!(
            parse_compact("20240101080000"),
            Some(utc("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_compact("20141030133525"),
            Some(utc("2014-10-30T05:35:25Z"))
        );
        assert_eq!(
            parse_dashed("2019-08-15 15:56:24"),
            Some(utc("2019-08-15T07:56:24Z"))
        );
        assert_eq!(
            parse_dashed("2020-01-04 18:34:24"),
            Some(utc("2020-01-04T10:34:24Z"))
        );
        assert_eq!(
            parse_dashed("2024-01-01 00:00:00"),
            Some(utc("2023-12-31T16:00:00Z"))
        );
    }

    #[test]
    fn tolerates_milliseconds_in_dashed_times() {
        assert_eq!(
            parse_dashed("2024-01-01 12:00:00.123"),
            Some(utc("2024-01-01T04:00:00.123Z"))
        );
        assert_eq!(
            parse_dashed("2024-01-01 12:00:00.5"),
            Some(utc("2024-01-01T04:00:00.5Z"))
        );
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "2024010108000",
            "202401010800000",
            "2024-01-01 08:00",
            "20241301080000",
            "2024010108000x",
        ] {
            assert_eq!(parse_compact(bad), None, "{bad:?}");
        }
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T12:00:00",
            "2024-01-01 12:00:00Z",
            "2024-13-01 12:00:00",
            "2024-01-01 12:00:00.",
            "2024-01-01 12:00:00.12a",
            "2024-01-01 12:00:00.1234567890",
            " 2024-01-01 12:00:00",
            "20200104183424",
        ] {
            assert_eq!(parse_dashed(bad), None, "{bad:?}");
        }
    }
}
