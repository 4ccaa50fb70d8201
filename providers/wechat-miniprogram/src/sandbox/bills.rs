//! `POST /pay/downloadbill` (`bill_type=ALL`): the day's trade bill of a merchant, written from
//! the simulator's own records in WeChat's layout (the text `bill::parse_trade_bill` reads). The
//! fee is 0.6 %, rounded to the fen, returned in proportion on refunds. A day without a payment
//! or a refund answers WeChat's `No Bill Exist`; a future day's, `StatementCreating`.

use std::collections::HashMap;

use serde::Deserialize;

use super::envelope::{Authed, Reply};
use super::orders::{OrderBook, TradeState, beijing_now};
use super::refunds::{RefundBook, RefundStatus};

/// Differences a test or a demo injects into a merchant's bills (`POST /control/bill`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BillEdits {
    /// Payments left out of the bill.
    #[serde(default)]
    pub(crate) drop: Vec<String>,
    /// Payments shown with another amount (fen).
    #[serde(default)]
    pub(crate) amounts: HashMap<String, u64>,
    /// Refunds the bill shows that paybridge never made (as from the merchant's console).
    #[serde(default)]
    pub(crate) foreign_refunds: Vec<ForeignRefund>,
    /// A bill that cannot be trusted.
    #[serde(default)]
    pub(crate) corrupt: Option<Corruption>,
}

/// How a test or a demo breaks a merchant's bill (`POST /control/bill` `corrupt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Corruption {
    /// The summary's `应结订单总金额` is one fen more than the lines.
    Summary,
    /// The bill ends before its summary.
    Truncate,
    /// The bill is written in GBK instead of UTF-8.
    Encoding,
    /// v3: `hash_value` is not the file's.
    Hash,
}

/// Why there is no bill to serve.
pub(crate) enum NoBill {
    /// No payment and no refund that day.
    Empty,
    /// A day to come.
    Creating,
}

/// A refund made outside paybridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForeignRefund {
    /// The refunded order.
    pub(crate) out_trade_no: String,
    /// A refund number paybridge never made.
    pub(crate) out_refund_no: String,
    /// Fen.
    pub(crate) amount: u64,
}

/// The published header of a `bill_type=ALL` bill.
pub(crate) const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

fn yuan(fen: i64) -> String {
    paybridge_core::money::Fen::new(fen).to_yuan()
}

/// 0.6 % of `fen`, rounded half up.
fn fee(fen: u64) -> i64 {
    i64::try_from((fen * 6 + 500) / 1000).unwrap_or(i64::MAX)
}

fn line(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("`{f}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What the summary adds up: refunded and requested amounts, fees (fen).
#[derive(Default)]
struct RefundTotals {
    refunded: i64,
    requested: i64,
    fees: i64,
}

/// A refund line of the bill.
struct RefundLine<'a> {
    at: &'a str,
    appid: &'a str,
    transaction_id: &'a str,
    out_trade_no: &'a str,
    refund_id: &'a str,
    out_refund_no: &'a str,
    fen: u64,
}

impl RefundLine<'_> {
    /// The line (keyed by its time, for sorting), added to `totals`.
    fn row(&self, mch_id: &str, totals: &mut RefundTotals) -> (String, String) {
        let amount = i64::try_from(self.fen).unwrap_or(i64::MAX);
        let returned = -fee(self.fen);
        totals.refunded += amount;
        totals.requested += amount;
        totals.fees += returned;
        let (amount, returned) = (yuan(amount), yuan(returned));
        (
            self.at.to_owned(),
            line(&[
                self.at,
                self.appid,
                mch_id,
                "0",
                "",
                self.transaction_id,
                self.out_trade_no,
                "",
                "JSAPI",
                "REFUND",
                "OTHERS",
                "CNY",
                "0.00",
                "0.00",
                self.refund_id,
                self.out_refund_no,
                &amount,
                "0.00",
                "ORIGINAL",
                "SUCCESS",
                "",
                "",
                &returned,
                "0.60%",
                "0.00",
                &amount,
                "",
            ]),
        )
    }
}

/// `POST /pay/downloadbill`: the bill's bytes, or the XML refusal.
pub(crate) fn downloadbill(
    orders: &OrderBook,
    refunds: &RefundBook,
    edits: Option<&BillEdits>,
    auth: &Authed,
) -> Result<Vec<u8>, Reply> {
    let Some(date) = auth.field("bill_date") else {
        return Err(Reply::Refused("bill_date 参数缺失".into()));
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reply::Refused("invalid bill_date".into()));
    }
    if auth.field("bill_type").is_some_and(|t| t != "ALL") {
        return Err(Reply::Refused(
            "the sandbox serves bill_type=ALL only".into(),
        ));
    }
    match bill_text(orders, refunds, edits, &auth.merchant.mch_id, date) {
        Ok(text) => Ok(encoded(text, edits)),
        Err(NoBill::Empty) => Err(Reply::Refused("No Bill Exist".into())),
        Err(NoBill::Creating) => Err(Reply::Refused("StatementCreating".into())),
    }
}

/// The bill's bytes: UTF-8, or GBK when the test asked for the wrong encoding.
pub(crate) fn encoded(text: String, edits: Option<&BillEdits>) -> Vec<u8> {
    match edits.and_then(|e| e.corrupt) {
        Some(Corruption::Encoding) => encoding_rs::GBK.encode(&text).0.into_owned(),
        _ => text.into_bytes(),
    }
}

/// The text of a merchant's `bill_type=ALL` bill of a day (`date`: `yyyyMMdd`), v2 and v3
/// trades alike (a merchant has one bill, whatever the API of each trade).
pub(crate) fn bill_text(
    orders: &OrderBook,
    refunds: &RefundBook,
    edits: Option<&BillEdits>,
    mch_id: &str,
    date: &str,
) -> Result<String, NoBill> {
    let none = BillEdits::default();
    let edits = edits.unwrap_or(&none);
    let today = beijing_now().format("%Y%m%d").to_string();
    // The real bill of a day is made the next morning; the sandbox serves today's too (what
    // happened so far), so that a day can be reconciled while trying it out.
    if date > today.as_str() {
        return Err(NoBill::Creating);
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    let (mut gross, mut ordered) = (0i64, 0i64);
    let mut totals = RefundTotals::default();
    for o in orders.all().filter(|o| o.mch_id == mch_id) {
        let Some(p) = &o.payment else { continue };
        if !p.time_end.starts_with(date)
            || o.state != TradeState::Success && !o.paid_after_close
            || edits.drop.contains(&o.out_trade_no)
        {
            continue;
        }
        let time = format!(
            "{}-{}-{} {}:{}:{}",
            &p.time_end[0..4],
            &p.time_end[4..6],
            &p.time_end[6..8],
            &p.time_end[8..10],
            &p.time_end[10..12],
            &p.time_end[12..14]
        );
        let fen = edits
            .amounts
            .get(&o.out_trade_no)
            .copied()
            .unwrap_or(o.total_fee);
        let amount = i64::try_from(fen).unwrap_or(i64::MAX);
        let f = fee(fen);
        gross += amount;
        ordered += amount;
        totals.fees += f;
        let (amount, f) = (yuan(amount), yuan(f));
        let openid = o.openid.clone().unwrap_or_default();
        rows.push((
            time.clone(),
            line(&[
                &time,
                &o.appid,
                mch_id,
                "0",
                "",
                &p.transaction_id,
                &o.out_trade_no,
                &openid,
                &o.trade_type,
                "SUCCESS",
                "OTHERS",
                "CNY",
                &amount,
                "0.00",
                "0",
                "0",
                "0.00",
                "0.00",
                "",
                "",
                "",
                "",
                &f,
                "0.60%",
                &amount,
                "0.00",
                "",
            ]),
        ));
    }
    let day = format!("{}-{}-{}", &date[0..4], &date[4..6], &date[6..8]);
    for r in refunds.all().filter(|r| r.mch_id == mch_id) {
        let Some(at) = &r.success_time else { continue };
        if r.status != RefundStatus::Success || !at.starts_with(&day) {
            continue;
        }
        let refund = RefundLine {
            at,
            appid: &r.appid,
            transaction_id: &r.transaction_id,
            out_trade_no: &r.out_trade_no,
            refund_id: &r.refund_id,
            out_refund_no: &r.out_refund_no,
            fen: r.refund_fee,
        };
        rows.push(refund.row(mch_id, &mut totals));
    }
    for (i, f) in edits.foreign_refunds.iter().enumerate() {
        let Some(o) = orders.get(mch_id, &f.out_trade_no) else {
            continue;
        };
        // Made on the day the order was paid.
        let Some(p) = o.payment.as_ref().filter(|p| p.time_end.starts_with(date)) else {
            continue;
        };
        let at = format!("{day} 23:59:{:02}", i % 60);
        let refund_id = format!("5030000001{date}{i:010}");
        let refund = RefundLine {
            at: &at,
            appid: &o.appid,
            transaction_id: &p.transaction_id,
            out_trade_no: &o.out_trade_no,
            refund_id: &refund_id,
            out_refund_no: &f.out_refund_no,
            fen: f.amount,
        };
        rows.push(refund.row(mch_id, &mut totals));
    }
    if rows.is_empty() {
        return Err(NoBill::Empty);
    }
    rows.sort();
    let mut text = format!("{HEADER}\r\n");
    for (_, row) in &rows {
        text.push_str(row);
        text.push_str("\r\n");
    }
    if edits.corrupt == Some(Corruption::Truncate) {
        return Ok(text);
    }
    if edits.corrupt == Some(Corruption::Summary) {
        gross += 1;
    }
    text.push_str(SUMMARY);
    text.push_str("\r\n");
    text.push_str(&line(&[
        &rows.len().to_string(),
        &yuan(gross),
        &yuan(totals.refunded),
        "0.00",
        &yuan(totals.fees),
        &yuan(ordered),
        &yuan(totals.requested),
    ]));
    text.push_str("\r\n");
    Ok(text)
}
