//! A provider's daily bill (对账单), as the providers' parsers hand it to reconciliation: one
//! [`BillLine`] at a time (a bill is never held whole in memory), then the bill's own
//! [`BillSummary`], which the parser has checked against the sum of its lines.

use crate::money::Fen;

/// What a bill line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillLineKind {
    /// A payment the provider settled.
    Payment,
    /// A refund.
    Refund,
}

/// One data line of a bill, in fen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    /// A payment or a refund.
    pub kind: BillLineKind,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The provider's trade number.
    pub provider_trade_no: String,
    /// The merchant's refund number (refund lines).
    pub out_refund_no: Option<String>,
    /// The provider's refund number (refund lines).
    pub provider_refund_no: Option<String>,
    /// The settled amount of a payment, the refunded amount of a refund (positive).
    pub amount: Fen,
    /// The fee of the line, signed: what the provider charged on a payment (positive), what it
    /// returned on a refund (negative).
    pub fee_fen: i64,
    /// The provider's status of the line as written in the bill (e.g. `SUCCESS`, `REFUND`).
    pub status: String,
    /// The provider's status of a refund (e.g. `SUCCESS`, `PROCESSING`), when it has one.
    pub refund_status: Option<String>,
    /// The provider's time of the line as written in the bill (Beijing time).
    pub time: String,
}

/// A bill's own totals, checked against its lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillSummary {
    /// Data lines.
    pub lines: u64,
    /// The settled payments (fen).
    pub gross_fen: i64,
    /// The refunded amount, positive (fen).
    pub refunds_fen: i64,
    /// The fees charged less the fees returned (fen).
    pub fees_fen: i64,
}

/// Why a bill cannot be trusted. Nothing of it may be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// A line does not have the published layout.
    #[error("line {line}: {reason}")]
    Malformed {
        /// The 1-based line number in the file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file ends before its summary.
    #[error("the bill is truncated: {0}")]
    Truncated(String),
    /// The bill's summary disagrees with the sum of its lines.
    #[error(
        "the bill disagrees with itself: {field} is {stated} in its summary, {summed} in its lines"
    )]
    SummaryMismatch {
        /// The summary's column.
        field: String,
        /// What the summary says (fen or a count).
        stated: i64,
        /// What the lines add up to.
        summed: i64,
    },
    /// The text is not in the bill's encoding.
    #[error("the bill is not valid {0}")]
    Encoding(&'static str),
    /// Reading the file failed.
    #[error("reading the bill: {0}")]
    Io(String),
}

/// Parse yuan text with an optional sign (`-0.60`, `0`, `0.0`, `12.34`) exactly into fen.
pub fn signed_fen(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let fen = Fen::from_yuan(digits).ok()?.get();
    Some(if negative { -fen } else { fen })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_yuan_is_exact() {
        assert_eq!(signed_fen("0"), Some(0));
        assert_eq!(signed_fen("0.0"), Some(0));
        assert_eq!(signed_fen("12.34"), Some(1234));
        assert_eq!(signed_fen("-0.60"), Some(-60));
        assert_eq!(signed_fen("0.001"), None);
        assert_eq!(signed_fen("1e3"), None);
        assert_eq!(signed_fen(""), None);
        assert_eq!(signed_fen("--1"), None);
    }
}
