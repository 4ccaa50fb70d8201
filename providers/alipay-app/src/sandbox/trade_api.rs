//! The four gateway methods (PROTOCOLS §C.5): query, close, refund, refund query — each a
//! state rule on the trade book, answered as a [`Reply`].

use serde_json::{Value, json};

use super::faults::Api;
use super::gateway::{Call, Reply};
use super::merchants::Merchant;
use super::money::Amount;
use super::notify::{self, Outgoing};
use super::rsa2::Rsa2Signer;
use super::trades::{Refund, Trade, TradeBook, TradeStatus, beijing_stamp, beijing_stamps};

/// A notification to send once the lock is released.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    /// The trade's app.
    pub(crate) app_id: String,
    /// The trade.
    pub(crate) out_trade_no: String,
    /// Its `notify_url`.
    pub(crate) url: String,
    /// What to send.
    pub(crate) outgoing: Outgoing,
}

fn text(value: &str) -> Option<Value> {
    Some(Value::String(value.to_owned()))
}

fn invalid(api: Api, message: &str) -> Reply {
    Reply::business(api, "ACQ.INVALID_PARAMETER", message)
}

fn not_exist(api: Api) -> Reply {
    Reply::business(api, "ACQ.TRADE_NOT_EXIST", "交易不存在")
}

/// The `out_trade_no` of the trade the call names, or the answer refusing it.
fn locate(book: &TradeBook, call: &Call) -> Result<String, Reply> {
    let trade_no = call.text("trade_no");
    let out_trade_no = call.text("out_trade_no");
    if trade_no.is_none() && out_trade_no.is_none() {
        return Err(invalid(
            call.api,
            "参数有误: out_trade_no or trade_no is required",
        ));
    }
    book.resolve(&call.app_id, trade_no, out_trade_no)
        .ok_or_else(|| not_exist(call.api))
}

/// `alipay.trade.query`. A trade exists only once the cashier was opened.
pub(crate) fn query(book: &TradeBook, call: &Call) -> Reply {
    let trade = match locate(book, call).map(|n| book.get(&call.app_id, &n)) {
        Ok(Some(trade)) => trade,
        Ok(None) => return not_exist(call.api),
        Err(reply) => return reply,
    };
    let total = trade.total.to_string();
    let paid = trade.is_paid();
    let when_paid = |value: Value| paid.then_some(value);
    Reply::success(
        call.api,
        [
            ("trade_no", text(&trade.trade_no)),
            ("out_trade_no", text(&trade.out_trade_no)),
            ("trade_status", text(trade.status.as_str())),
            ("total_amount", text(&total)),
            ("buyer_logon_id", text(&trade.buyer_logon_id)),
            ("buyer_user_id", text(&trade.buyer_id)),
            ("receipt_amount", when_paid(json!(total))),
            ("buyer_pay_amount", when_paid(json!(total))),
            ("invoice_amount", when_paid(json!(total))),
            ("point_amount", when_paid(json!("0.00"))),
            ("send_pay_date", trade.gmt_payment.as_deref().and_then(text)),
            (
                "fund_bill_list",
                when_paid(json!([{ "amount": total, "fund_channel": "ALIPAYACCOUNT" }])),
            ),
        ],
    )
}

/// `alipay.trade.close`: only an unpaid trade closes.
pub(crate) fn close(book: &mut TradeBook, call: &Call) -> Reply {
    let number = match locate(book, call) {
        Ok(number) => number,
        Err(reply) => return reply,
    };
    let Some(trade) = book.get_mut(&call.app_id, &number) else {
        return not_exist(call.api);
    };
    // Alipay lists three sub-codes for "not closable" (ACQ.TRADE_STATUS_ERROR,
    // ACQ.REASON_TRADE_STATUS_INVALID, ACQ.REASON_ILLEGAL_STATUS). A paid trade gets the one a
    // merchant saw in the field (issue 8); a closed one the classic.
    match trade.status {
        TradeStatus::WaitBuyerPay => {}
        TradeStatus::TradeSuccess | TradeStatus::TradeFinished => {
            return Reply::business(
                call.api,
                "ACQ.REASON_TRADE_STATUS_INVALID",
                &format!("交易状态异常: the trade is {}", trade.status.as_str()),
            );
        }
        TradeStatus::TradeClosed => {
            return Reply::business(
                call.api,
                "ACQ.TRADE_STATUS_ERROR",
                &format!("交易状态不合法: the trade is {}", trade.status.as_str()),
            );
        }
    }
    trade.status = TradeStatus::TradeClosed;
    trade.gmt_close = Some(beijing_stamp());
    Reply::success(
        call.api,
        [
            ("trade_no", text(&trade.trade_no)),
            ("out_trade_no", text(&trade.out_trade_no)),
        ],
    )
}

/// `alipay.trade.refund`. Idempotent by `out_request_no`; refunds add up to at most the total;
/// a full refund closes the trade. Each accepted refund is notified.
pub(crate) fn refund(
    book: &mut TradeBook,
    call: &Call,
    merchant: &Merchant,
    platform: &Rsa2Signer,
) -> (Reply, Option<Dispatch>) {
    let api = call.api;
    let Some(amount) = call.text("refund_amount") else {
        return (invalid(api, "refund_amount is required"), None);
    };
    let amount = match Amount::parse_strict(amount) {
        Ok(amount) => amount,
        Err(e) => return (invalid(api, &format!("refund_amount: {e}")), None),
    };
    let number = match locate(book, call) {
        Ok(number) => number,
        Err(reply) => return (reply, None),
    };
    let Some(trade) = book.get_mut(&call.app_id, &number) else {
        return (not_exist(api), None);
    };
    let given_request_no = call.text("out_request_no");
    let out_request_no = given_request_no.unwrap_or(&trade.out_trade_no).to_owned();
    if let Some(earlier) = trade.refund(&out_request_no) {
        if earlier.refund_amount != amount {
            return (
                Reply::business(
                    api,
                    "ACQ.DISCORDANT_REPEAT_REQUEST",
                    "请求信息不一致: this out_request_no was refunded with another amount",
                ),
                None,
            );
        }
        let reply = refund_reply(trade, earlier, "N");
        return (reply, None);
    }
    let refusal = match trade.status {
        TradeStatus::TradeSuccess => None,
        TradeStatus::TradeFinished => Some(("ACQ.TRADE_HAS_FINISHED", "交易已完结")),
        TradeStatus::WaitBuyerPay | TradeStatus::TradeClosed => {
            Some(("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"))
        }
    }
    .or_else(|| {
        (amount == Amount(0)).then_some(("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效"))
    })
    .or_else(|| {
        (given_request_no.is_none() && amount != trade.total).then_some((
            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
            "退款金额超限: without out_request_no a refund is a full refund",
        ))
    })
    .or_else(|| {
        (trade.refunded().plus(amount) > trade.total)
            .then_some(("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限"))
    });
    if let Some((sub_code, sub_msg)) = refusal {
        return (Reply::business(api, sub_code, sub_msg), None);
    }

    let (gmt_refund_pay, gmt_refund) = beijing_stamps();
    let refund = Refund {
        out_request_no,
        refund_amount: amount,
        refund_reason: call.text("refund_reason").map(str::to_owned),
        gmt_refund_pay: gmt_refund_pay.clone(),
        gmt_refund,
    };
    trade.refunds.push(refund.clone());
    if trade.refunded() == trade.total {
        trade.status = TradeStatus::TradeClosed;
        trade.gmt_close = Some(gmt_refund_pay);
    }
    let outgoing = notify::build(trade, merchant, platform, trade.status, true, false);
    trade.notifications.push(outgoing.notification.clone());
    let dispatch = Dispatch {
        app_id: trade.app_id.clone(),
        out_trade_no: trade.out_trade_no.clone(),
        url: trade.notify_url.clone(),
        outgoing,
    };
    (refund_reply(trade, &refund, "Y"), Some(dispatch))
}

fn refund_reply(trade: &Trade, refund: &Refund, fund_change: &str) -> Reply {
    Reply::success(
        Api::Refund,
        [
            ("trade_no", text(&trade.trade_no)),
            ("out_trade_no", text(&trade.out_trade_no)),
            ("buyer_logon_id", text(&trade.buyer_logon_id)),
            ("buyer_user_id", text(&trade.buyer_id)),
            ("fund_change", text(fund_change)),
            ("refund_fee", text(&trade.refunded().to_string())),
            ("send_back_fee", text(&refund.refund_amount.to_string())),
            ("gmt_refund_pay", text(&refund.gmt_refund_pay)),
        ],
    )
}

/// `alipay.trade.fastpay.refund.query`. An unknown refund is still `10000`, without refund
/// fields, as the real API answers.
pub(crate) fn refund_query(book: &TradeBook, call: &Call) -> Reply {
    let Some(out_request_no) = call.text("out_request_no") else {
        return invalid(call.api, "out_request_no is required");
    };
    let trade = match locate(book, call).map(|n| book.get(&call.app_id, &n)) {
        Ok(Some(trade)) => trade,
        Ok(None) => return not_exist(call.api),
        Err(reply) => return reply,
    };
    let refund = trade.refund(out_request_no);
    Reply::success(
        call.api,
        [
            ("trade_no", text(&trade.trade_no)),
            ("out_trade_no", text(&trade.out_trade_no)),
            ("out_request_no", refund.and(text(out_request_no))),
            ("total_amount", refund.and(text(&trade.total.to_string()))),
            (
                "refund_amount",
                refund.and_then(|r| text(&r.refund_amount.to_string())),
            ),
            ("refund_status", refund.and(text("REFUND_SUCCESS"))),
            (
                "refund_reason",
                refund
                    .and_then(|r| r.refund_reason.as_deref())
                    .and_then(text),
            ),
            (
                "gmt_refund_pay",
                refund.and_then(|r| text(&r.gmt_refund_pay)),
            ),
        ],
    )
}
