//! A provider's daily bill (对账单), as the providers' parsers hand it to reconciliation: one
//! [`BillLine`] at a time (a bill is never held whole in memory), then the bill's own
//! [`BillSummary`], which the parser has checked against the sum of its lines.

use crate::money::Fen;
use crate::order::OrderStatus;
use crate::refund::RefundStatus;

/// A downloaded bill as its parser reads it: from the start, and seekable (a zip's directory is
/// at its end).
pub trait BillSource: std::io::BufRead + std::io::Seek + Send {}

impl<T: std::io::BufRead + std::io::Seek + Send> BillSource for T {}

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
    /// The amount paybridge holds for it: the order amount of a payment, the requested amount of
    /// a refund (WeChat `订单金额`, `申请退款金额`).
    pub amount: Fen,
    /// What settles: a payment less non-recharge coupons, a refund's settled amount (WeChat
    /// `应结订单金额`, `退款金额`); the bill's totals add these up.
    pub settled: Fen,
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

/// What a provider answered when asked for a day's bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillDownload {
    /// The bill was written to the destination.
    Written,
    /// No payment and no refund that day: an empty statement, not a failure.
    Empty,
    /// Not made yet (e.g. WeChat `StatementCreating`): ask again later.
    NotReady(String),
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

/// `Ok` when a bill's summary states what its lines add up to (`field`: the summary's name for it).
pub fn check_total(field: &str, stated: i64, summed: i64) -> Result<(), BillError> {
    if stated == summed {
        Ok(())
    } else {
        Err(BillError::SummaryMismatch {
            field: field.to_owned(),
            stated,
            summed,
        })
    }
}

/// The longest line a bill may hold. A bill's lines are a few hundred bytes; a file without line
/// breaks (a wrong download, a binary) is refused at this length rather than read whole into
/// memory.
pub const MAX_BILL_LINE: usize = 1 << 20;

/// Read line `line` (1-based) of a bill into `buf`, without its `\n`: `Ok(false)` at the end of
/// the file. `io` says what a read error means (a truncated archive, say). A line longer than
/// [`MAX_BILL_LINE`] is refused once that much of it was read.
pub fn next_bill_line<R: std::io::BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    line: u64,
    io: impl Fn(std::io::Error) -> BillError,
) -> Result<bool, BillError> {
    use std::io::{BufRead as _, Read as _};
    buf.clear();
    let limit = u64::try_from(MAX_BILL_LINE)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let read = (&mut *reader)
        .take(limit)
        .read_until(b'\n', buf)
        .map_err(io)?;
    if read == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.len() > MAX_BILL_LINE {
        return Err(BillError::Malformed {
            line,
            reason: format!(
                "longer than {} KiB without a line break: not a bill line",
                MAX_BILL_LINE / 1024
            ),
        });
    }
    Ok(true)
}

/// The place of column `name` in a bill's header line (`line`), or why the bill does not have
/// the published layout.
pub fn column<S: AsRef<str>>(names: &[S], name: &str, line: u64) -> Result<usize, BillError> {
    names
        .iter()
        .position(|n| n.as_ref() == name)
        .ok_or_else(|| BillError::Malformed {
            line,
            reason: format!("the header has no column {name:?}"),
        })
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

/// A bill's yuan (optional sign), exactly into fen: 2 decimals, or more when the rest are zeros
/// (a WeChat summary's fees may read `7.79000`); surrounding spaces and tabs are ignored.
pub fn bill_fen(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.split_once('.') {
        Some((whole, fraction))
            if fraction.len() > 2 && fraction.bytes().skip(2).all(|b| b == b'0') =>
        {
            signed_fen(&format!("{whole}.{}", fraction.get(..2)?))
        }
        _ => signed_fen(text),
    }
}

/// How a line (or a paybridge record) differs from the other side (DESIGN.md, "Statements").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiscrepancyKind {
    /// In the bill; missing or not paid in paybridge.
    ProviderOnly,
    /// Paid (or refunded) in paybridge that day; missing from the bill.
    PaybridgeOnly,
    /// Both have it, with other amounts.
    AmountMismatch,
    /// Both have it, in states that disagree (a paid line for a closed order, another trade
    /// number for the same `out_trade_no`, a refund the bill settled and paybridge does not).
    StatusMismatch,
    /// A number paybridge never made (e.g. a refund made in the merchant's provider console).
    Foreign,
}

impl DiscrepancyKind {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyKind::ProviderOnly => "provider_only",
            DiscrepancyKind::PaybridgeOnly => "paybridge_only",
            DiscrepancyKind::AmountMismatch => "amount_mismatch",
            DiscrepancyKind::StatusMismatch => "status_mismatch",
            DiscrepancyKind::Foreign => "foreign",
        }
    }
}

/// What paybridge holds for a bill's payment line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// Its state.
    pub status: OrderStatus,
    /// Its amount.
    pub amount: Fen,
    /// The provider's trade number, once paid.
    pub provider_trade_no: Option<String>,
}

/// What paybridge holds for a bill's refund line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundFacts {
    /// Its state.
    pub status: RefundStatus,
    /// Its amount.
    pub amount: Fen,
}

/// The decision on one bill line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineVerdict {
    /// Both sides agree.
    Matched,
    /// They differ.
    Discrepancy(DiscrepancyKind),
    /// A payment paybridge holds as pending: `provider_only`, to heal by asking the provider and
    /// applying its answer as a notification would (never from the bill alone).
    Heal,
}

/// Whether a bill's payment line settled a payment (a line of a payment reversed the same day,
/// e.g. WeChat `REVOKED`, did not).
fn settled_payment(line: &BillLine) -> bool {
    line.status == "SUCCESS" || line.status == "TRADE_SUCCESS" || line.status == "交易"
}

/// Decide a payment line against the order paybridge holds with its `out_trade_no` (`None`: no
/// such order).
pub fn classify_payment(line: &BillLine, order: Option<&OrderFacts>) -> LineVerdict {
    use DiscrepancyKind as K;
    let Some(order) = order else {
        return LineVerdict::Discrepancy(K::Foreign);
    };
    if !settled_payment(line) {
        // Reversed the same day: nothing settled, so paybridge must not hold it as paid.
        return if order.status.is_paid() {
            LineVerdict::Discrepancy(K::StatusMismatch)
        } else {
            LineVerdict::Matched
        };
    }
    if order
        .provider_trade_no
        .as_deref()
        .is_some_and(|no| no != line.provider_trade_no)
    {
        return LineVerdict::Discrepancy(K::StatusMismatch);
    }
    match order.status {
        OrderStatus::Pending => LineVerdict::Heal,
        // Never healed by itself: an operator decides.
        OrderStatus::Closed | OrderStatus::Failed => LineVerdict::Discrepancy(K::StatusMismatch),
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
            if order.amount != line.amount =>
        {
            LineVerdict::Discrepancy(K::AmountMismatch)
        }
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
            LineVerdict::Matched
        }
    }
}

/// Whether [`classify_payment`] matches `line` against an order of this `status` and `amount`
/// that holds the line's own trade number. A statement run decides most lines with this alone:
/// it compares the trade number itself (by digest), and takes every other line the full way.
pub fn held_as_settled(line: &BillLine, status: OrderStatus, amount: Fen) -> bool {
    settled_payment(line) && status.is_paid() && amount == line.amount
}

/// Decide a refund line against the refund paybridge holds with its `out_refund_no` (`None`: no
/// such refund of that order).
pub fn classify_refund(line: &BillLine, refund: Option<&RefundFacts>) -> LineVerdict {
    use DiscrepancyKind as K;
    let Some(refund) = refund else {
        return LineVerdict::Discrepancy(K::Foreign);
    };
    if refund.amount != line.amount {
        return LineVerdict::Discrepancy(K::AmountMismatch);
    }
    let bill_settled = line.refund_status.as_deref().is_none_or(|s| s == "SUCCESS");
    match (bill_settled, refund.status) {
        (true, RefundStatus::Succeeded) => LineVerdict::Matched,
        // Still processing at the provider: no discrepancy while paybridge waits too, or already
        // heard it succeed.
        (false, RefundStatus::Processing | RefundStatus::Succeeded) => LineVerdict::Matched,
        _ => LineVerdict::Discrepancy(K::StatusMismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(bytes: &[u8]) -> Result<Vec<Vec<u8>>, BillError> {
        let mut reader = std::io::Cursor::new(bytes);
        let (mut buf, mut out, mut number) = (Vec::new(), Vec::new(), 1u64);
        let io = |e: std::io::Error| BillError::Io(e.to_string());
        while next_bill_line(&mut reader, &mut buf, number, io)? {
            out.push(buf.clone());
            number += 1;
        }
        Ok(out)
    }

    /// Lines as `BufRead::split(b'\n')` gives them, the last one with or without its break.
    #[test]
    fn a_bill_reads_line_by_line() {
        assert_eq!(lines_of(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(lines_of(b"\n").unwrap(), vec![b"".to_vec()]);
        assert_eq!(
            lines_of(b"a\r\n\nb").unwrap(),
            vec![b"a\r".to_vec(), b"".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            lines_of(b"a\nb\n").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    /// A line of the longest length reads; one byte more is refused at its own line, whether
    /// a break follows or not.
    #[test]
    fn a_line_longer_than_the_limit_is_refused() {
        let longest = vec![b'x'; MAX_BILL_LINE];
        let mut ok = b"h\n".to_vec();
        ok.extend_from_slice(&longest);
        ok.extend_from_slice(b"\nz\n");
        let read = lines_of(&ok).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[1].len(), MAX_BILL_LINE);
        for tail in [&b"\nz\n"[..], &b""[..]] {
            let mut long = b"h\n".to_vec();
            long.extend_from_slice(&longest);
            long.push(b'x');
            long.extend_from_slice(tail);
            match lines_of(&long) {
                Err(BillError::Malformed { line: 2, reason }) => {
                    assert!(reason.contains("without a line break"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn line(
        kind: BillLineKind,
        status: &str,
        refund_status: Option<&str>,
        amount: i64,
    ) -> BillLine {
        BillLine {
            kind,
            out_trade_no: "T1".to_owned(),
            provider_trade_no: "4200001".to_owned(),
            out_refund_no: (kind == BillLineKind::Refund).then(|| "R1".to_owned()),
            provider_refund_no: None,
            amount: Fen::new(amount),
            settled: Fen::new(amount),
            fee_fen: 0,
            status: status.to_owned(),
            refund_status: refund_status.map(str::to_owned),
            time: "2026-12-05 10:00:00".to_owned(),
        }
    }

    fn order(status: OrderStatus, amount: i64, trade_no: Option<&str>) -> OrderFacts {
        OrderFacts {
            status,
            amount: Fen::new(amount),
            provider_trade_no: trade_no.map(str::to_owned),
        }
    }

    /// The fast path never matches a line that the full way would not: over every status, line
    /// status and amount, with the line's own trade number.
    #[test]
    fn the_fast_path_matches_only_what_the_full_way_matches() {
        let mut fast = 0;
        for line_status in ["SUCCESS", "TRADE_SUCCESS", "交易", "REVOKED", "REFUND"] {
            for line_amount in [499, 500] {
                let l = line(BillLineKind::Payment, line_status, None, line_amount);
                for status in OrderStatus::ALL {
                    let o = order(status, 500, Some("4200001"));
                    if held_as_settled(&l, status, o.amount) {
                        fast += 1;
                        assert_eq!(
                            classify_payment(&l, Some(&o)),
                            LineVerdict::Matched,
                            "{line_status} {line_amount} {status:?}"
                        );
                    }
                }
            }
        }
        // Three settled line statuses, the matching amount, three paid states.
        assert_eq!(fast, 9);
    }

    /// Each rule of DESIGN.md's "Statements" for a payment line.
    #[test]
    fn payment_lines_are_classified_by_the_contract() {
        use DiscrepancyKind as K;
        use LineVerdict as V;
        let paid = line(BillLineKind::Payment, "SUCCESS", None, 500);
        let cases = [
            (None, V::Discrepancy(K::Foreign)),
            (Some(order(OrderStatus::Pending, 500, None)), V::Heal),
            (
                Some(order(OrderStatus::Paid, 500, Some("4200001"))),
                V::Matched,
            ),
            (
                Some(order(OrderStatus::Refunded, 500, Some("4200001"))),
                V::Matched,
            ),
            (
                Some(order(OrderStatus::PartiallyRefunded, 500, Some("4200001"))),
                V::Matched,
            ),
            (
                Some(order(OrderStatus::Paid, 501, Some("4200001"))),
                V::Discrepancy(K::AmountMismatch),
            ),
            (
                Some(order(OrderStatus::Paid, 500, Some("4200002"))),
                V::Discrepancy(K::StatusMismatch),
            ),
            (
                Some(order(OrderStatus::Closed, 500, None)),
                V::Discrepancy(K::StatusMismatch),
            ),
            (
                Some(order(OrderStatus::Failed, 500, None)),
                V::Discrepancy(K::StatusMismatch),
            ),
        ];
        for (facts, want) in cases {
            assert_eq!(classify_payment(&paid, facts.as_ref()), want, "{facts:?}");
        }
        // A payment reversed the same day settled nothing: nothing to hold against.
        let revoked = line(BillLineKind::Payment, "REVOKED", None, 500);
        let closed = order(OrderStatus::Closed, 500, None);
        assert_eq!(classify_payment(&revoked, Some(&closed)), V::Matched);
        let paid = order(OrderStatus::Paid, 500, Some("4200001"));
        assert_eq!(
            classify_payment(&revoked, Some(&paid)),
            V::Discrepancy(K::StatusMismatch)
        );
    }

    #[test]
    fn refund_lines_are_classified_by_the_contract() {
        use DiscrepancyKind as K;
        use LineVerdict as V;
        let facts = |status, amount| RefundFacts {
            status,
            amount: Fen::new(amount),
        };
        let done = line(BillLineKind::Refund, "REFUND", Some("SUCCESS"), 200);
        let pending = line(BillLineKind::Refund, "REFUND", Some("PROCESSING"), 200);
        let cases = [
            (&done, None, V::Discrepancy(K::Foreign)),
            (&done, Some(facts(RefundStatus::Succeeded, 200)), V::Matched),
            (
                &done,
                Some(facts(RefundStatus::Succeeded, 300)),
                V::Discrepancy(K::AmountMismatch),
            ),
            (
                &done,
                Some(facts(RefundStatus::Processing, 200)),
                V::Discrepancy(K::StatusMismatch),
            ),
            (
                &done,
                Some(facts(RefundStatus::Failed, 200)),
                V::Discrepancy(K::StatusMismatch),
            ),
            // Still processing at the provider: no discrepancy.
            (
                &pending,
                Some(facts(RefundStatus::Processing, 200)),
                V::Matched,
            ),
            (
                &pending,
                Some(facts(RefundStatus::Succeeded, 200)),
                V::Matched,
            ),
            (
                &pending,
                Some(facts(RefundStatus::Failed, 200)),
                V::Discrepancy(K::StatusMismatch),
            ),
        ];
        for (l, f, want) in cases {
            assert_eq!(classify_refund(l, f.as_ref()), want, "{l:?} {f:?}");
        }
    }

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
        assert_eq!(bill_fen("7.79000"), Some(779));
        assert_eq!(bill_fen(" -0.01\t"), Some(-1));
        assert_eq!(bill_fen("0.001"), None);
        assert_eq!(bill_fen("1.2"), Some(120));
    }
}
