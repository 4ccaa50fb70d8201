//! Money as integer minor units (fen). Never a float.
//!
//! WeChat Pay speaks fen integers; Alipay speaks yuan strings with two decimals (`"0.01"`). [`Fen`] is
//! the only amount type in the domain, and [`Fen::to_yuan`] / [`Fen::from_yuan`] are the only bridge
//! to yuan text, so a yuan/fen mix-up does not compile.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount in fen (1 CNY = 100 fen).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Fen(i64);

/// Why a string or number is not a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The amount is zero or negative where a positive amount is required.
    #[error("amount must be a positive number of fen, got {0}")]
    NotPositive(i64),
    /// The yuan text is not of the form `123`, `123.4` or `123.45`.
    #[error("not a yuan amount with at most two decimals: {0:?}")]
    MalformedYuan(String),
    /// The amount does not fit in 64-bit fen.
    #[error("amount out of range: {0:?}")]
    OutOfRange(String),
}

impl Fen {
    /// Zero fen; valid as a running total, never as a payment amount.
    pub const ZERO: Fen = Fen(0);

    /// Any integer number of fen, including zero and negatives (for totals and differences).
    pub const fn new(fen: i64) -> Self {
        Fen(fen)
    }

    /// A payment or refund amount: strictly positive.
    pub fn positive(fen: i64) -> Result<Self, MoneyError> {
        if fen > 0 {
            Ok(Fen(fen))
        } else {
            Err(MoneyError::NotPositive(fen))
        }
    }

    /// The raw number of fen.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// Checked addition; `None` on overflow.
    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    /// Checked subtraction; `None` on overflow.
    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }

    /// Yuan text with exactly two decimals, as Alipay wants it: 1 → `"0.01"`, 1990 → `"19.90"`.
    pub fn to_yuan(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    /// Parse yuan text exactly: `"19.90"` → 1990 fen. Accepts `D+`, `D+.D` or `D+.DD` with no sign,
    /// no spaces, no exponent and no superfluous leading zero; anything else is an error, never a
    /// rounding.
    pub fn from_yuan(text: &str) -> Result<Self, MoneyError> {
        let malformed = || MoneyError::MalformedYuan(text.to_owned());
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) {
            return Err(malformed());
        }
        if text.contains('.') && frac.is_empty() {
            return Err(malformed());
        }
        if frac.len() > 2 || (whole.len() > 1 && whole.starts_with('0')) {
            return Err(malformed());
        }
        let out_of_range = || MoneyError::OutOfRange(text.to_owned());
        let whole: i64 = whole.parse().map_err(|_| out_of_range())?;
        let frac: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| malformed())? * 10,
            _ => frac.parse().map_err(|_| malformed())?,
        };
        whole
            .checked_mul(100)
            .and_then(|v| v.checked_add(frac))
            .map(Fen)
            .ok_or_else(out_of_range)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} fen", self.0)
    }
}

/// The currencies paybridge accepts. Domestic WeChat Pay and Alipay merchants settle in CNY only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Currency {
    /// Chinese yuan; amounts are in fen.
    #[default]
    #[serde(rename = "CNY")]
    Cny,
}

impl Currency {
    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
        }
    }

    /// Parse an ISO code; only `CNY` is accepted.
    pub fn parse(code: &str) -> Option<Self> {
        (code == "CNY").then_some(Currency::Cny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_text_round_trips_exactly() {
        for (text, fen) in [
            ("0.01", 1),
            ("19.90", 1990),
            ("9.80", 980),
            ("100000000.00", 10_000_000_000),
        ] {
            assert_eq!(Fen::from_yuan(text), Ok(Fen::new(fen)), "{text}");
            assert_eq!(Fen::new(fen).to_yuan(), text);
        }
    }

    #[test]
    fn yuan_text_with_fewer_decimals_is_exact() {
        assert_eq!(Fen::from_yuan("19.9"), Ok(Fen::new(1990)));
        assert_eq!(Fen::from_yuan("7"), Ok(Fen::new(700)));
        assert_eq!(Fen::from_yuan("0"), Ok(Fen::new(0)));
    }

    #[test]
    fn malformed_yuan_text_is_an_error_not_a_rounding() {
        for bad in [
            "", ".5", "1.", "1.234", "-1.00", "+1.00", " 1.00", "1.00 ", "1e2", "01.00", "1,00",
            "0x10", "１.00", "NaN",
        ] {
            assert!(Fen::from_yuan(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            Fen::from_yuan("99999999999999999999.00"),
            Err(MoneyError::OutOfRange(_))
        ));
    }

    #[test]
    fn positive_amounts_only() {
        assert!(Fen::positive(0).is_err());
        assert!(Fen::positive(-1).is_err());
        assert_eq!(Fen::positive(1), Ok(Fen::new(1)));
    }

    #[test]
    fn negative_totals_format_with_sign() {
        assert_eq!(Fen::new(-5).to_yuan(), "-0.05");
    }

    proptest::proptest! {
        #[test]
        fn any_fen_amount_round_trips_through_yuan(fen in 0i64..=i64::MAX) {
            proptest::prop_assert_eq!(Fen::from_yuan(&Fen::new(fen).to_yuan()), Ok(Fen::new(fen)));
        }
    }
}
