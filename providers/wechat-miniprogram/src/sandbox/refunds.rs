//! `POST /secapi/pay/refund` (PROTOCOLS §B.7) and `POST /pay/refundquery` (§B.8): the simulator's
//! refunds, their rules, and the refund notification (§B.10) they end with.

use std::collections::HashMap;

use rand::Rng;
use serde_json::{Value, json};

use super::envelope::{Authed, Reply};
use super::orders::{Delivery, Order, OrderBook, TradeState, beijing_now};
use super::unifiedorder::valid_notify_url;

/// At most this many refunds of one order (§B.13).
const MAX_REFUNDS_PER_ORDER: usize = 50;
/// refundquery lists at most this many refunds per answer; `offset` pages.
const PAGE: usize = 10;

/// `refund_status` of a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub(crate) enum RefundStatus {
    /// Accepted, money not back yet.
    #[serde(rename = "PROCESSING")]
    Processing,
    /// The money went back.
    #[serde(rename = "SUCCESS")]
    Success,
    /// Closed without moving money (v3 calls it `CLOSED`).
    #[serde(rename = "REFUNDCLOSE", alias = "CLOSED")]
    RefundClose,
    /// Abnormal: the payer's account cannot take it; an operator must act (v3: `ABNORMAL`).
    #[serde(rename = "CHANGE", alias = "ABNORMAL")]
    Change,
}

impl RefundStatus {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Success => "SUCCESS",
            RefundStatus::RefundClose => "REFUNDCLOSE",
            RefundStatus::Change => "CHANGE",
        }
    }

    /// The v3 wire name.
    pub(crate) fn v3_name(self) -> &'static str {
        match self {
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Success => "SUCCESS",
            RefundStatus::RefundClose => "CLOSED",
            RefundStatus::Change => "ABNORMAL",
        }
    }

    /// Whether a refund in this status may be moved to `to` by the control API.
    pub(crate) fn may_become(self, to: RefundStatus) -> bool {
        matches!(
            (self, to),
            (RefundStatus::Processing, _)
                | (
                    RefundStatus::Change,
                    RefundStatus::Success | RefundStatus::RefundClose
                )
        ) && to != RefundStatus::Processing
    }
}

/// One refund.
#[derive(Debug, Clone)]
pub(crate) struct Refund {
    /// Creation order, for listing an order's refunds.
    pub(crate) seq: u64,
    /// The merchant.
    pub(crate) mch_id: String,
    /// The mini-program.
    pub(crate) appid: String,
    /// The refunded order.
    pub(crate) out_trade_no: String,
    /// Its `transaction_id`.
    pub(crate) transaction_id: String,
    /// The merchant's refund number.
    pub(crate) out_refund_no: String,
    /// WeChat's refund number, "503…".
    pub(crate) refund_id: String,
    /// The order amount in fen.
    pub(crate) total_fee: u64,
    /// This refund's amount in fen.
    pub(crate) refund_fee: u64,
    /// Where the refund notification goes, if the request gave one.
    pub(crate) notify_url: Option<String>,
    /// The status.
    pub(crate) status: RefundStatus,
    /// `yyyy-MM-dd HH:mm:ss` Beijing, once SUCCESS.
    pub(crate) success_time: Option<String>,
    /// The last notification built (redeliveries send the same bytes).
    pub(crate) notification: Option<String>,
    /// Every notification attempt.
    pub(crate) deliveries: Vec<Delivery>,
    /// Made through API v3: its notification is v3 JSON and its statuses have v3 names.
    pub(crate) v3: bool,
    /// A service provider's refund for its sub-merchant `mch_id`: the `sp_mchid`.
    pub(crate) sp_mchid: Option<String>,
}

impl Refund {
    /// The control API's view.
    pub(crate) fn view(&self) -> Value {
        json!({
            "mch_id": self.mch_id,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "total_fee": self.total_fee,
            "refund_fee": self.refund_fee,
            "notify_url": self.notify_url,
            "refund_status": self.status.as_str(),
            "success_time": self.success_time,
            "deliveries": self.deliveries,
        })
    }
}

/// Why a refund could not be picked by number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefundLookup {
    /// No such refund.
    NotFound,
    /// Several merchants have a refund with this number.
    Ambiguous,
}

/// Refunds by `(mch_id, out_refund_no)`.
#[derive(Debug, Default)]
pub(crate) struct RefundBook {
    refunds: HashMap<(String, String), Refund>,
    next_seq: u64,
}

impl RefundBook {
    /// Every refund.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Refund> {
        self.refunds.values()
    }

    /// The refund of this merchant with this number.
    pub(crate) fn get(&self, mch_id: &str, out_refund_no: &str) -> Option<&Refund> {
        self.refunds
            .get(&(mch_id.to_owned(), out_refund_no.to_owned()))
    }

    /// The same, to change it.
    pub(crate) fn get_mut(&mut self, mch_id: &str, out_refund_no: &str) -> Option<&mut Refund> {
        self.refunds
            .get_mut(&(mch_id.to_owned(), out_refund_no.to_owned()))
    }

    /// The `mch_id` of the refund numbered `out_refund_no`: of the given merchant, or the only
    /// one when no merchant is given.
    pub(crate) fn find(
        &self,
        out_refund_no: &str,
        mch_id: Option<&str>,
    ) -> Result<String, RefundLookup> {
        if let Some(mch_id) = mch_id {
            return self
                .get(mch_id, out_refund_no)
                .map(|r| r.mch_id.clone())
                .ok_or(RefundLookup::NotFound);
        }
        let mut matching = self
            .refunds
            .values()
            .filter(|r| r.out_refund_no == out_refund_no);
        match (matching.next(), matching.next()) {
            (Some(refund), None) => Ok(refund.mch_id.clone()),
            (Some(_), Some(_)) => Err(RefundLookup::Ambiguous),
            (None, _) => Err(RefundLookup::NotFound),
        }
    }

    /// The refunds of one order, oldest first.
    pub(crate) fn of_order(&self, mch_id: &str, out_trade_no: &str) -> Vec<&Refund> {
        let mut refunds: Vec<&Refund> = self
            .refunds
            .values()
            .filter(|r| r.mch_id == mch_id && r.out_trade_no == out_trade_no)
            .collect();
        refunds.sort_by_key(|r| r.seq);
        refunds
    }

    /// Adds a new refund.
    pub(crate) fn insert(&mut self, mut refund: Refund) {
        self.next_seq = self.next_seq.wrapping_add(1);
        refund.seq = self.next_seq;
        self.refunds.insert(
            (refund.mch_id.clone(), refund.out_refund_no.clone()),
            refund,
        );
    }

    /// A fresh `refund_id`: "50300" + Beijing date + 16 digits (29 digits, like WeChat's).
    pub(crate) fn new_refund_id(&self) -> String {
        loop {
            let tail: u64 = rand::rng().random_range(0..10_000_000_000_000_000);
            let id = format!("50300{}{tail:016}", beijing_now().format("%Y%m%d"));
            if !self.refunds.values().any(|r| r.refund_id == id) {
                return id;
            }
        }
    }
}

/// What the refunds of an order took back, or are taking back (closed ones excepted).
pub(crate) fn refunded(refunds: &[&Refund]) -> u64 {
    refunds
        .iter()
        .filter(|r| r.status != RefundStatus::RefundClose)
        .map(|r| r.refund_fee)
        .sum()
}

/// `out_refund_no`: 1–64 of `[A-Za-z0-9_\-|*@]`.
pub(crate) fn valid_out_refund_no(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

/// A positive integer of fen, written without sign, leading zeros or decimals.
fn parse_fee(value: &str) -> Option<u64> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|fee| *fee > 0)
}

/// The order a request names: `transaction_id` wins over `out_trade_no`.
fn order_of<'a>(orders: &'a OrderBook, auth: &Authed) -> Result<&'a Order, Reply> {
    let mch_id = &auth.merchant.mch_id;
    let order = match (auth.field("transaction_id"), auth.field("out_trade_no")) {
        (Some(transaction_id), _) => orders.by_transaction(mch_id, transaction_id),
        (None, Some(out_trade_no)) => orders.get(mch_id, out_trade_no),
        (None, None) => {
            return Err(Reply::business_error(
                auth,
                "LACK_PARAMS",
                "缺少参数out_trade_no或transaction_id",
            ));
        }
    };
    order.ok_or_else(|| Reply::business_error(auth, "ORDERNOTEXIST", "订单不存在"))
}

/// Serves one authenticated refund call: the answer, and the `out_refund_no` of the refund it
/// created (none for a replay or a refusal).
pub(crate) fn refund(
    orders: &OrderBook,
    refunds: &mut RefundBook,
    auth: &Authed,
) -> (Reply, Option<String>) {
    try_refund(orders, refunds, auth).unwrap_or_else(|reply| (reply, None))
}

fn try_refund(
    orders: &OrderBook,
    refunds: &mut RefundBook,
    auth: &Authed,
) -> Result<(Reply, Option<String>), Reply> {
    let refuse = |code: &str, des: &str| Reply::business_error(auth, code, des);
    for name in ["out_refund_no", "total_fee", "refund_fee"] {
        if auth.field(name).is_none() {
            return Err(refuse("LACK_PARAMS", &format!("缺少参数{name}")));
        }
    }
    let field = |name: &str| auth.field(name).unwrap_or_default();
    let out_refund_no = field("out_refund_no");
    if !valid_out_refund_no(out_refund_no) {
        return Err(refuse(
            "PARAM_ERROR",
            "out_refund_no格式错误: 1-64位字母、数字或_-|*@",
        ));
    }
    let (Some(total_fee), Some(refund_fee)) = (
        parse_fee(field("total_fee")),
        parse_fee(field("refund_fee")),
    ) else {
        return Err(refuse(
            "PARAM_ERROR",
            "total_fee和refund_fee必须为正整数(单位: 分)",
        ));
    };
    if let Some(fee_type) = auth.field("refund_fee_type")
        && fee_type != "CNY"
    {
        return Err(refuse("PARAM_ERROR", "refund_fee_type只支持CNY"));
    }
    if field("refund_desc").chars().count() > 80 {
        return Err(refuse("PARAM_ERROR", "refund_desc长度不能超过80个字符"));
    }
    if let Some(url) = auth.field("notify_url") {
        valid_notify_url(url).map_err(|des| refuse("PARAM_ERROR", &des))?;
    }
    let order = order_of(orders, auth)?;

    // The same out_refund_no is the same refund: the same answer, or an error if it differs.
    if let Some(existing) = refunds.get(&auth.merchant.mch_id, out_refund_no) {
        if existing.out_trade_no != order.out_trade_no
            || existing.refund_fee != refund_fee
            || existing.total_fee != total_fee
        {
            return Err(refuse(
                "ERROR",
                "订单金额或退款金额与之前请求不一致,请核实后再试",
            ));
        }
        return Ok((accepted(auth, existing), None));
    }

    let Some(payment) = order
        .payment
        .as_ref()
        .filter(|_| order.state == TradeState::Success)
    else {
        return Err(refuse("ORDERNOTEXIST", "订单未支付,不能退款"));
    };
    if total_fee != order.total_fee {
        return Err(refuse("PARAM_ERROR", "total_fee与订单金额不一致"));
    }
    let earlier = refunds.of_order(&auth.merchant.mch_id, &order.out_trade_no);
    if earlier.len() >= MAX_REFUNDS_PER_ORDER {
        return Err(refuse("ERROR", "退款次数超过限制,一笔订单最多退款50次"));
    }
    if refunded(&earlier).saturating_add(refund_fee) > order.total_fee {
        return Err(refuse("ERROR", "退款金额大于支付金额"));
    }

    let refund = Refund {
        seq: 0,
        mch_id: auth.merchant.mch_id.clone(),
        appid: auth.merchant.appid.clone(),
        out_trade_no: order.out_trade_no.clone(),
        transaction_id: payment.transaction_id.clone(),
        out_refund_no: out_refund_no.to_owned(),
        refund_id: refunds.new_refund_id(),
        total_fee,
        refund_fee,
        notify_url: auth.field("notify_url").map(str::to_owned),
        status: RefundStatus::Processing,
        success_time: None,
        notification: None,
        deliveries: Vec::new(),
        v3: false,
        sp_mchid: auth.merchant.partner.as_ref().map(|p| p.sp_mchid.clone()),
    };
    let reply = accepted(auth, &refund);
    refunds.insert(refund);
    Ok((reply, Some(out_refund_no.to_owned())))
}

fn accepted(auth: &Authed, refund: &Refund) -> Reply {
    Reply::success(
        auth,
        [
            ("transaction_id", refund.transaction_id.clone()),
            ("out_trade_no", refund.out_trade_no.clone()),
            ("out_refund_no", refund.out_refund_no.clone()),
            ("refund_id", refund.refund_id.clone()),
            ("refund_fee", refund.refund_fee.to_string()),
            ("settlement_refund_fee", refund.refund_fee.to_string()),
            ("total_fee", refund.total_fee.to_string()),
            ("settlement_total_fee", refund.total_fee.to_string()),
            ("fee_type", "CNY".to_owned()),
            ("cash_fee", refund.total_fee.to_string()),
            ("cash_refund_fee", refund.refund_fee.to_string()),
        ],
    )
}

/// Serves one authenticated refund query: `refund_id` > `out_refund_no` > `transaction_id` >
/// `out_trade_no`.
pub(crate) fn refundquery(orders: &OrderBook, refunds: &RefundBook, auth: &Authed) -> Reply {
    let mch_id = &auth.merchant.mch_id;
    let not_exist = || Reply::business_error(auth, "REFUNDNOTEXIST", "退款单不存在");
    let listed: Vec<&Refund> = if let Some(refund_id) = auth.field("refund_id") {
        refunds
            .refunds
            .values()
            .filter(|r| &r.mch_id == mch_id && r.refund_id == refund_id)
            .collect()
    } else if let Some(out_refund_no) = auth.field("out_refund_no") {
        refunds.get(mch_id, out_refund_no).into_iter().collect()
    } else {
        match order_of(orders, auth) {
            Ok(order) => refunds.of_order(mch_id, &order.out_trade_no),
            Err(_) if auth.field("transaction_id").is_some() => {
                return Reply::business_error(auth, "INVALID_TRANSACTIONID", "无效transaction_id");
            }
            Err(_) if auth.field("out_trade_no").is_some() => return not_exist(),
            Err(reply) => return reply,
        }
    };
    let Some(first) = listed.first() else {
        return not_exist();
    };
    let offset = match auth.field("offset").map(str::parse::<usize>) {
        None => None,
        Some(Ok(offset)) => Some(offset),
        Some(Err(_)) => return Reply::business_error(auth, "PARAM_ERROR", "offset格式错误"),
    };
    let page: Vec<&&Refund> = listed.iter().skip(offset.unwrap_or(0)).take(PAGE).collect();
    if page.is_empty() {
        return not_exist();
    }
    let mut fields: Vec<(String, String)> = vec![
        ("transaction_id".into(), first.transaction_id.clone()),
        ("out_trade_no".into(), first.out_trade_no.clone()),
        ("total_fee".into(), first.total_fee.to_string()),
        ("settlement_total_fee".into(), first.total_fee.to_string()),
        ("cash_fee".into(), first.total_fee.to_string()),
        ("fee_type".into(), "CNY".into()),
        ("refund_count".into(), page.len().to_string()),
    ];
    if offset.is_some() {
        fields.push(("total_refund_count".into(), listed.len().to_string()));
    }
    for (n, refund) in page.iter().enumerate() {
        let mut put = |name: &str, value: String| fields.push((format!("{name}_{n}"), value));
        put("out_refund_no", refund.out_refund_no.clone());
        put("refund_id", refund.refund_id.clone());
        put("refund_channel", "ORIGINAL".into());
        put("refund_fee", refund.refund_fee.to_string());
        put("settlement_refund_fee", refund.refund_fee.to_string());
        put("refund_status", refund.status.as_str().into());
        put("refund_account", "REFUND_SOURCE_UNSETTLED_FUNDS".into());
        put("refund_recv_accout", "支付用户零钱".into());
        if let Some(time) = &refund.success_time {
            put("refund_success_time", time.clone());
        }
    }
    Reply::success_owned(auth, fields)
}
