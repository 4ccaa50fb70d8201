//! The server-to-server trade APIs (PROTOCOLS.md §C.5) and how their answers map onto paybridge:
//! `alipay.trade.query`, `alipay.trade.close`, `alipay.trade.refund`,
//! `alipay.trade.fastpay.refund.query`.

use paybridge_core::money::Fen;
use paybridge_core::provider::{
    CloseOutcome, OrderRef, PaymentEvent, PaymentState, ProviderError, RefundRequest, RefundState,
};
use paybridge_core::refund::RefundStatus;
use serde_json::{Map, Value, json};

use crate::gateway::{Gateway, Reply};
use paybridge_core::beijing;

/// `alipay.trade.query`
pub const METHOD_QUERY: &str = "alipay.trade.query";
/// `alipay.trade.close`
pub const METHOD_CLOSE: &str = "alipay.trade.close";
/// `alipay.trade.refund`
pub const METHOD_REFUND: &str = "alipay.trade.refund";
/// `alipay.trade.fastpay.refund.query`
pub const METHOD_REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";

fn field<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

fn unreadable(what: &str) -> ProviderError {
    ProviderError::Unavailable(format!("Alipay answer unreadable: {what}"))
}

/// A signed answer about another order than the one asked for is not an answer.
fn check_same_order(fields: &Map<String, Value>, out_trade_no: &str) -> Result<(), ProviderError> {
    match field(fields, "out_trade_no") {
        Some(other) if other != out_trade_no => Err(ProviderError::Unavailable(
            "Alipay answered about another out_trade_no".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// A paid trade from `alipay.trade.query` fields.
fn paid_event(
    fields: &Map<String, Value>,
    out_trade_no: &str,
) -> Result<PaymentEvent, ProviderError> {
    let trade_no =
        field(fields, "trade_no").ok_or_else(|| unreadable("paid trade without trade_no"))?;
    let amount = field(fields, "total_amount")
        .and_then(|t| Fen::from_yuan(t).ok())
        .ok_or_else(|| unreadable("total_amount is not a yuan amount"))?;
    let paid_at = field(fields, "send_pay_date")
        .and_then(beijing::parse_dashed)
        .ok_or_else(|| unreadable("paid trade without a valid send_pay_date"))?;
    Ok(PaymentEvent {
        out_trade_no: out_trade_no.to_owned(),
        provider_trade_no: trade_no.to_owned(),
        amount,
        paid_at,
        event_id: trade_no.to_owned(),
    })
}

/// Ask Alipay for the trade. An app-pay trade that the payer never confirmed does not exist yet.
pub async fn query_payment(gw: &Gateway, order: &OrderRef) -> Result<PaymentState, ProviderError> {
    let biz = json!({ "out_trade_no": order.out_trade_no }).to_string();
    match gw.call(METHOD_QUERY, biz).await? {
        Reply::Success(fields) => {
            check_same_order(&fields, &order.out_trade_no)?;
            match field(&fields, "trade_status") {
                Some("TRADE_SUCCESS" | "TRADE_FINISHED") => Ok(PaymentState::Paid(paid_event(
                    &fields,
                    &order.out_trade_no,
                )?)),
                Some("WAIT_BUYER_PAY") => Ok(PaymentState::NotPaid),
                Some("TRADE_CLOSED") => Ok(PaymentState::Closed),
                other => Err(unreadable(&format!(
                    "unknown trade_status {:?}",
                    other
                        .unwrap_or_default()
                        .chars()
                        .take(32)
                        .collect::<String>()
                ))),
            }
        }
        Reply::BusinessFailed(f) => match f.sub_code.as_str() {
            "ACQ.TRADE_NOT_EXIST" => Ok(PaymentState::NotPaid),
            "ACQ.SYSTEM_ERROR" => Err(f.unavailable()),
            _ => Err(f.rejected("provider_rejected")),
        },
    }
}

/// Close an unpaid trade. A trade Alipay does not know yet is closed from paybridge's side; a
/// later payment notification is still accepted (and flagged by the server).
pub async fn close_payment(gw: &Gateway, order: &OrderRef) -> Result<CloseOutcome, ProviderError> {
    let biz = json!({ "out_trade_no": order.out_trade_no }).to_string();
    match gw.call(METHOD_CLOSE, biz).await? {
        Reply::Success(fields) => {
            check_same_order(&fields, &order.out_trade_no)?;
            Ok(CloseOutcome::Closed)
        }
        Reply::BusinessFailed(f) => match f.sub_code.as_str() {
            "ACQ.TRADE_NOT_EXIST" => Ok(CloseOutcome::Closed),
            // "Not closable": Alipay documents three sub-codes for it. Usually the trade was
            // paid a moment ago; the query says what it is, and a payment is applied.
            "ACQ.TRADE_STATUS_ERROR"
            | "ACQ.REASON_TRADE_STATUS_INVALID"
            | "ACQ.REASON_ILLEGAL_STATUS" => match query_payment(gw, order).await? {
                PaymentState::Paid(event) => Ok(CloseOutcome::AlreadyPaid(event)),
                PaymentState::Closed => Ok(CloseOutcome::Closed),
                PaymentState::NotPaid | PaymentState::Failed => {
                    Err(ProviderError::Unavailable(format!(
                        "Alipay refused the close ({}) but reports the trade unpaid",
                        f.sub_code
                    )))
                }
            },
            "ACQ.SYSTEM_ERROR" => Err(f.unavailable()),
            _ => Err(f.rejected("provider_rejected")),
        },
    }
}

/// Send a refund; `out_request_no` is paybridge's `out_refund_no`, so a retry is the same refund.
/// Alipay reports refunds on the payment `notify_url`, so `req.notify_url` is not sent.
pub async fn refund(gw: &Gateway, req: &RefundRequest) -> Result<RefundState, ProviderError> {
    if req.amount <= Fen::ZERO {
        return Err(ProviderError::InvalidRequest {
            field: Some("amount".to_owned()),
            message: "refund amount must be positive".to_owned(),
        });
    }
    let mut biz = json!({
        "out_trade_no": req.order.out_trade_no,
        "refund_amount": req.amount.to_yuan(),
        "out_request_no": req.out_refund_no,
    });
    if let (Some(reason), Some(obj)) = (req.reason.as_deref(), biz.as_object_mut())
        && !reason.is_empty()
    {
        obj.insert("refund_reason".to_owned(), json!(reason));
    }
    match gw.call(METHOD_REFUND, biz.to_string()).await? {
        Reply::Success(fields) => {
            check_same_order(&fields, &req.order.out_trade_no)?;
            match field(&fields, "fund_change") {
                // `refund_fee` here is the trade's refunded total, not this refund's amount.
                Some("Y") => Ok(RefundState {
                    amount: None,
                    status: RefundStatus::Succeeded,
                    provider_refund_no: None,
                    succeeded_at: field(&fields, "gmt_refund_pay").and_then(beijing::parse_dashed),
                }),
                // A replay of the same out_request_no moves no money: ask what the first did.
                // Alipay just acknowledged the number, so "not found" is a lag, not a refusal.
                _ => match query_refund(gw, &req.order, &req.out_refund_no).await {
                    Err(ProviderError::Rejected {
                        code: "refund_not_found",
                        ..
                    }) => Err(ProviderError::Unavailable(
                        "Alipay acknowledged the repeated refund but does not list it yet"
                            .to_owned(),
                    )),
                    other => other,
                },
            }
        }
        // Only sub-codes that mean "nothing was done" are refusals (the refund then fails and
        // frees its amount). Anything else may have moved money: the refund stays `processing`
        // and a query settles it (PROTOCOLS.md pitfall 8).
        Reply::BusinessFailed(f) => Err(match f.sub_code.as_str() {
            "ACQ.TRADE_HAS_FINISHED"
            | "ACQ.TRADE_NOT_ALLOW_REFUND"
            | "ACQ.TRADE_STATUS_ERROR"
            | "ACQ.TRADE_NOT_EXIST"
            | "ACQ.REASON_TRADE_BEEN_FREEZEN" => f.rejected("refund_not_allowed"),
            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" | "ACQ.REASON_TRADE_REFUND_FEE_ERR" => {
                f.rejected("refund_amount_invalid")
            }
            "ACQ.INVALID_PARAMETER" => f.rejected("provider_rejected"),
            // ACQ.SYSTEM_ERROR, ACQ.SELLER_BALANCE_NOT_ENOUGH (retry the same number once the
            // balance is topped up), ACQ.DISCORDANT_REPEAT_REQUEST (a refund with this number
            // exists at Alipay with another amount: money may have moved) and anything unknown.
            _ => f.unavailable(),
        }),
    }
}

/// Ask for one refund. `code=10000` only means the query worked: a refund Alipay has not
/// received comes back without business fields, which is `Rejected{code: "refund_not_found"}`
/// (the server then sends it again under the same number).
pub async fn query_refund(
    gw: &Gateway,
    order: &OrderRef,
    out_refund_no: &str,
) -> Result<RefundState, ProviderError> {
    let biz = json!({
        "out_trade_no": order.out_trade_no,
        "out_request_no": out_refund_no,
    })
    .to_string();
    match gw.call(METHOD_REFUND_QUERY, biz).await? {
        Reply::Success(fields) => {
            check_same_order(&fields, &order.out_trade_no)?;
            if let Some(other) = field(&fields, "out_request_no")
                && other != out_refund_no
            {
                return Err(ProviderError::Unavailable(
                    "Alipay answered about another out_request_no".to_owned(),
                ));
            }
            let received = field(&fields, "out_request_no").is_some()
                || field(&fields, "refund_amount").is_some();
            let succeeded = match field(&fields, "refund_status") {
                Some(status) => status == "REFUND_SUCCESS",
                None => received,
            };
            if !received {
                // Alipay has no refund with this number: never received, so it may be sent again
                // under the same number.
                return Err(ProviderError::Rejected {
                    code: "refund_not_found",
                    message: format!("Alipay has no refund {out_refund_no}"),
                });
            }
            let amount = field(&fields, "refund_amount").and_then(|a| Fen::from_yuan(a).ok());
            Ok(if succeeded {
                RefundState {
                    status: RefundStatus::Succeeded,
                    provider_refund_no: None,
                    succeeded_at: field(&fields, "gmt_refund_pay").and_then(beijing::parse_dashed),
                    amount,
                }
            } else {
                RefundState {
                    status: RefundStatus::Processing,
                    provider_refund_no: None,
                    succeeded_at: None,
                    amount,
                }
            })
        }
        Reply::BusinessFailed(f) => Err(match f.sub_code.as_str() {
            "ACQ.SYSTEM_ERROR" => f.unavailable(),
            _ => f.rejected("provider_rejected"),
        }),
    }
}
