//! A UTC time as RFC 3339 text, byte for byte what chrono writes with
//! `to_rfc3339_opts(SecondsFormat::AutoSi, use_z)` (and its serde `Serialize`, which is `AutoSi`
//! with `Z`), without chrono's formatting machinery: the fraction has 0, 3, 6 or 9 digits, the
//! fewest that hold the nanoseconds exactly.
//!
//! The storage binds every time this way and each notification's outbox payload holds four; with
//! `core::fmt` one took 800–2 600 instructions, here about 400 with its `String` (callgrind, the
//! notify benchmark). Years outside 0000–9999 and leap seconds are handed to chrono.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// The longest text written here: `9999-12-31T23:59:59.999999999+00:00`.
const MAX: usize = 35;

/// The text of `t`, ending in `Z` when `z`, else in `+00:00`.
pub fn format(t: &DateTime<Utc>, z: bool) -> String {
    let mut buf = [0u8; MAX];
    match write(t, z, &mut buf) {
        Some(n) => buf
            .get(..n)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map_or_else(
                || t.to_rfc3339_opts(SecondsFormat::AutoSi, z),
                str::to_owned,
            ),
        None => t.to_rfc3339_opts(SecondsFormat::AutoSi, z),
    }
}

/// `#[serde(serialize_with = "…")]` for a time: what chrono's own `Serialize` writes.
pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t, true))
}

/// `#[serde(serialize_with = "…")]` for an optional time.
pub fn serialize_opt<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// Write `value` as `N` decimal digits (its lowest ones) at `buf[at..]`.
fn digits<const N: usize>(buf: &mut [u8; MAX], at: usize, mut value: u32) {
    if let Some(out) = buf.get_mut(at..at + N) {
        for b in out.iter_mut().rev() {
            // value % 10 is below 10.
            *b = b'0' + u8::try_from(value % 10).unwrap_or(0);
            value /= 10;
        }
    }
}

/// Write `t` into `buf`; the length written, or `None` for what chrono must write (a year
/// outside 0000–9999, a leap second).
fn write(t: &DateTime<Utc>, z: bool, buf: &mut [u8; MAX]) -> Option<usize> {
    let naive = t.naive_utc();
    let date = naive.date();
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = naive.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let secs = naive.num_seconds_from_midnight();
    *buf = *b"0000-00-00T00:00:00.000000000+00:00";
    digits::<4>(buf, 0, year);
    digits::<2>(buf, 5, date.month());
    digits::<2>(buf, 8, date.day());
    digits::<2>(buf, 11, secs / 3600);
    digits::<2>(buf, 14, secs / 60 % 60);
    digits::<2>(buf, 17, secs % 60);
    let at = if nanos == 0 {
        19
    } else if nanos.is_multiple_of(1_000_000) {
        digits::<3>(buf, 20, nanos / 1_000_000);
        23
    } else if nanos.is_multiple_of(1_000) {
        digits::<6>(buf, 20, nanos / 1_000);
        26
    } else {
        digits::<9>(buf, 20, nanos);
        29
    };
    let end: &[u8] = if z { b"Z" } else { b"+00:00" };
    buf.get_mut(at..at + end.len())?.copy_from_slice(end);
    Some(at + end.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn chrono_text(t: &DateTime<Utc>, z: bool) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, z)
    }

    #[test]
    fn each_fraction_width_and_the_edges_are_chronos() {
        let base = Utc.with_ymd_and_hms(2026, 12, 7, 9, 5, 3).unwrap();
        for nanos in [
            0,
            1,
            999,
            1_000,
            120_000,
            999_000,
            1_000_000,
            7_000_000,
            999_000_000,
            123_456_789,
            100_000_000,
        ] {
            let t = base + chrono::Duration::nanoseconds(nanos);
            for z in [false, true] {
                assert_eq!(format(&t, z), chrono_text(&t, z), "{nanos} {z}");
            }
        }
        for t in [
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::MIN_UTC,
        ] {
            for z in [false, true] {
                assert_eq!(format(&t, z), chrono_text(&t, z), "{t:?} {z}");
            }
        }
        // A leap second, as chrono represents it (nanoseconds past 10^9).
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(format(&leap, false), chrono_text(&leap, false));
    }

    #[test]
    fn serde_writes_what_chrono_serde_writes() {
        #[derive(serde::Serialize)]
        struct Mine {
            #[serde(serialize_with = "serialize")]
            at: DateTime<Utc>,
            #[serde(serialize_with = "serialize_opt")]
            maybe: Option<DateTime<Utc>>,
        }
        #[derive(serde::Serialize)]
        struct Chrono {
            at: DateTime<Utc>,
            maybe: Option<DateTime<Utc>>,
        }
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(250);
        for maybe in [None, Some(at + chrono::Duration::nanoseconds(7))] {
            assert_eq!(
                serde_json::to_string(&Mine { at, maybe }).unwrap(),
                serde_json::to_string(&Chrono { at, maybe }).unwrap()
            );
        }
    }

    proptest! {
        #[test]
        fn any_time_is_written_as_chrono_writes_it(
            secs in -62_167_219_200i64..253_402_300_800i64,
            nanos in prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|n| n * 1_000_000),
                (0u32..1_000_000).prop_map(|n| n * 1_000),
                0u32..1_000_000_000,
            ],
            z in any::<bool>(),
        ) {
            let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            prop_assert_eq!(format(&t, z), chrono_text(&t, z));
        }
    }
}
