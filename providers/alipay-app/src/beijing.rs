//! Alipay's clock: `yyyy-MM-dd HH:mm:ss` in Beijing time (UTC+8, no daylight saving), whatever the
//! server's own time zone is (PROTOCOLS.md §C.1, pitfall 9).

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Timelike, Utc};

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

fn beijing() -> Option<FixedOffset> {
    FixedOffset::east_opt(8 * 3600)
}

/// `2024-01-01T04:00:00Z` → `"2024-01-01 12:00:00"`.
pub fn format(at: DateTime<Utc>) -> String {
    match beijing() {
        Some(offset) => at.with_timezone(&offset).format(FORMAT).to_string(),
        // Unreachable: +8 h is a valid offset. A UTC time would be silently 8 hours off, so send
        // nothing and let Alipay refuse the request loudly (`isv.invalid-timestamp`).
        None => String::new(),
    }
}

/// `"2024-01-01 12:00:00"` (Beijing) → `2024-01-01T04:00:00Z`. Tolerates a fraction of a second
/// (`gmt_refund` may carry milliseconds: `2024-01-01 12:00:00.123`), nothing else.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    if whole.len() != 19 {
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
    let naive = NaiveDateTime::parse_from_str(whole, FORMAT).ok()?;
    let naive = naive.with_nanosecond(nanos)?;
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
        assert_eq!(format(utc("2024-01-01T04:00:00Z")), "2024-01-01 12:00:00");
        assert_eq!(format(utc("2023-12-31T16:00:00Z")), "2024-01-01 00:00:00");
        assert_eq!(format(utc("2024-01-01T19:04:05Z")), "2024-01-02 03:04:05");
    }

    #[test]
    fn parses_beijing_time_into_utc() {
        assert_eq!(
            parse("2019-08-15 15:56:24"),
            Some(utc("2019-08-15T07:56:24Z"))
        );
        assert_eq!(
            parse("2024-01-01 00:00:00"),
            Some(utc("2023-12-31T16:00:00Z"))
        );
    }

    #[test]
    fn tolerates_milliseconds() {
        assert_eq!(
            parse("2024-01-01 12:00:00.123"),
            Some(utc("2024-01-01T04:00:00.123Z"))
        );
        assert_eq!(
            parse("2024-01-01 12:00:00.5"),
            Some(utc("2024-01-01T04:00:00.5Z"))
        );
    }

    #[test]
    fn refuses_anything_else() {
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
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
