//! Amounts as Alipay writes them: yuan strings with exactly two decimals, kept as integer fen.

use std::fmt;

/// The largest order amount Alipay accepts: 100 000 000.00 yuan.
pub(crate) const MAX_TOTAL: Amount = Amount(10_000_000_000);

/// An amount in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Amount(pub(crate) u64);

impl Amount {
    /// Parses a strict yuan string: digits without a superfluous leading zero, a dot, exactly
    /// two digits (`"0.01"`, `"9.00"`, `"100.00"`). `"1"`, `"1.5"`, `"1.005"`, `"01.00"`,
    /// `"+1.00"`, `"1e2"` and `" 1.00"` are refused: a float-ish amount is the client's bug.
    pub(crate) fn parse_strict(text: &str) -> Result<Amount, String> {
        let refuse = || format!("{text:?} is not a yuan amount with exactly two decimals");
        let (yuan, fen) = text.split_once('.').ok_or_else(refuse)?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(yuan) || fen.len() != 2 || !digits(fen) {
            return Err(refuse());
        }
        if yuan.len() > 1 && yuan.starts_with('0') {
            return Err(refuse());
        }
        if yuan.len() > 12 {
            return Err(format!("{text:?} is too large"));
        }
        let yuan: u64 = yuan.parse().map_err(|_| refuse())?;
        let fen: u64 = fen.parse().map_err(|_| refuse())?;
        yuan.checked_mul(100)
            .and_then(|f| f.checked_add(fen))
            .map(Amount)
            .ok_or_else(refuse)
    }

    /// The sum, saturating (amounts here are bounded far below `u64::MAX`).
    pub(crate) fn plus(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_yuan_strings_parse_to_fen() {
        assert_eq!(Amount::parse_strict("0.01"), Ok(Amount(1)));
        assert_eq!(Amount::parse_strict("19.90"), Ok(Amount(1990)));
        assert_eq!(
            Amount::parse_strict("100000000.00"),
            Ok(Amount(10_000_000_000))
        );
    }

    #[test]
    fn float_ish_amounts_are_refused() {
        for bad in [
            "1", "1.5", "1.005", "01.00", "+1.00", "-1.00", "1e2", " 1.00", "1.00 ", ".50", "1.",
            "", "1,00", "９.00",
        ] {
            assert!(Amount::parse_strict(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn amounts_print_as_two_decimal_yuan() {
        assert_eq!(Amount(1).to_string(), "0.01");
        assert_eq!(Amount(1990).to_string(), "19.90");
        assert_eq!(Amount(0).to_string(), "0.00");
        assert_eq!(MAX_TOTAL.to_string(), "100000000.00");
    }
}
