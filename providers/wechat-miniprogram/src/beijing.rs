//! WeChat's clock: `yyyyMMddHHmmss` in Beijing time (UTC+8, no daylight saving), whatever the
//! server's own time zone is.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

const FORMAT: &str = "%Y%m%d%H%M%S";
const DASHED_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

fn beijing() -> Option<FixedOffset> {
    FixedOffset::east_opt(8 * 3600)
}

/// `2024-01-01T00:00:00Z` → `"20240101080000"`.
pub fn format_compact(at: DateTime<Utc>) -> String {
    match beijing() {
        Some(offset) => at.with_timezone(&offset).format(FORMAT).to_string(),
        // Unreachable: +8 h is a valid offset. UTC is never silently right, so write nothing rather
        // than a time 8 hours off; WeChat then refuses the request loudly.
        None => String::new(),
    }
}

/// `"20240101080000"` (Beijing) → `2024-01-01T00:00:00Z`. Exactly 14 digits, else `None`.
pub fn parse_compact(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(text, FORMAT).ok()?;
    beijing()?
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// `"2020-01-04 18:34:24"` (Beijing; refund times) → `2020-01-04T10:34:24Z`. Exactly that shape,
/// else `None`.
pub fn parse_dashed(text: &str) -> Option<DateTime<Utc>> {
    let shape_ok = text.len() == 19
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(text, DASHED_FORMAT).ok()?;
    beijing()?
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
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
    }

    #[test]
    fn refuses_anything_but_fourteen_valid_digits() {
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
    }

    #[test]
    fn parses_dashed_refund_times_as_beijing() {
        assert_eq!(
            parse_dashed("2020-01-04 18:34:24"),
            Some(utc("2020-01-04T10:34:24Z"))
        );
        assert_eq!(
            parse_dashed("2024-01-01 00:00:00"),
            Some(utc("2023-12-31T16:00:00Z"))
        );
        for bad in [
            "",
            "2020-01-04T18:34:24",
            "2020-01-04 18:34",
            "2020-13-04 18:34:24",
            "20200104183424",
            "2020-01-04 18:34:24Z",
        ] {
            assert_eq!(parse_dashed(bad), None, "{bad:?}");
        }
    }
}
