//! v3 resources and notification bodies: the transaction (a query's answer and a payment
//! notification's plaintext), the refund, and the envelope that seals them under the APIv3 key.
//! The `Wechatpay-*` headers are signed at each delivery, by the merchant's key mode at the time.

use chrono::{NaiveDateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::keys::{beijing, random_nonce, seal};
use crate::sandbox::orders::Order;
use crate::sandbox::refunds::Refund;

/// A Beijing `yyyyMMddHHmmss` (v2's `time_end`) as RFC 3339 with `+08:00`.
pub(crate) fn rfc3339_of_beijing(time_end: &str) -> Option<String> {
    let local = NaiveDateTime::parse_from_str(time_end, "%Y%m%d%H%M%S").ok()?;
    Some(beijing((local - TimeDelta::hours(8)).and_utc()))
}

/// A Beijing `yyyy-MM-dd HH:mm:ss` (v2's refund `success_time`) as RFC 3339 with `+08:00`.
fn rfc3339_of_beijing_dashed(time: &str) -> Option<String> {
    let local = NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(beijing((local - TimeDelta::hours(8)).and_utc()))
}

/// The transaction as `GET /v3/pay/transactions/out-trade-no/{no}` answers it.
pub(crate) fn transaction(order: &Order) -> Value {
    let mut t = json!({
        "out_trade_no": order.out_trade_no,
        "trade_type": order.trade_type,
        "trade_state": order.state.as_str(),
        "trade_state_desc": order.state.description(),
        "amount": {"total": order.total_fee, "currency": "CNY"},
    });
    // Partner orders name both merchants, and the payer by the appid it belongs to.
    let payer_key = match &order.partner {
        None => {
            t["appid"] = json!(order.appid);
            t["mchid"] = json!(order.mch_id);
            "openid"
        }
        Some(partner) => {
            t["sp_appid"] = json!(order.appid);
            t["sp_mchid"] = json!(partner.sp_mchid);
            t["sub_mchid"] = json!(order.mch_id);
            match &partner.sub_appid {
                Some(sub_appid) => {
                    t["sub_appid"] = json!(sub_appid);
                    "sub_openid"
                }
                None => "sp_openid",
            }
        }
    };
    if let Some(attach) = &order.attach {
        t["attach"] = json!(attach);
    }
    if let Some(payment) = &order.payment {
        t["transaction_id"] = json!(payment.transaction_id);
        t["bank_type"] = json!("OTHERS");
        t["success_time"] = json!(rfc3339_of_beijing(&payment.time_end));
        t["payer"] = json!({ payer_key: payment.openid });
        t["amount"] = json!({
            "total": order.total_fee, "payer_total": order.total_fee,
            "currency": "CNY", "payer_currency": "CNY",
        });
    } else if let Some(openid) = &order.openid {
        t["payer"] = json!({ payer_key: openid });
    }
    t
}

/// The refund as `/v3/refund/domestic/refunds` answers it.
pub(crate) fn refund(refund: &Refund) -> Value {
    let mut r = json!({
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": refund.transaction_id,
        "out_trade_no": refund.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": beijing(Utc::now()),
        "status": refund.status.v3_name(),
        "funds_account": "AVAILABLE",
        "amount": {
            "total": refund.total_fee, "refund": refund.refund_fee,
            "payer_total": refund.total_fee, "payer_refund": refund.refund_fee,
            "settlement_refund": refund.refund_fee, "settlement_total": refund.total_fee,
            "discount_refund": 0, "currency": "CNY",
        },
    });
    if let Some(time) = refund.success_time.as_deref() {
        r["success_time"] = json!(rfc3339_of_beijing_dashed(time));
    }
    r
}

/// The refund notification's plaintext (its fields differ from the answer's).
fn refund_resource(refund: &Refund) -> Value {
    let mut r = json!({
        "out_trade_no": refund.out_trade_no,
        "transaction_id": refund.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status.v3_name(),
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": refund.total_fee, "refund": refund.refund_fee,
            "payer_total": refund.total_fee, "payer_refund": refund.refund_fee,
        },
    });
    match &refund.sp_mchid {
        None => r["mchid"] = json!(refund.mch_id),
        Some(sp_mchid) => {
            r["sp_mchid"] = json!(sp_mchid);
            r["sub_mchid"] = json!(refund.mch_id);
        }
    }
    if let Some(time) = refund.success_time.as_deref() {
        r["success_time"] = json!(rfc3339_of_beijing_dashed(time));
    }
    r
}

/// The notification envelope around `plaintext`, sealed under `apiv3_key` with `aad`.
fn envelope(
    event_type: &str,
    summary: &str,
    aad: &str,
    plaintext: &Value,
    apiv3_key: &str,
) -> String {
    let nonce = random_nonce();
    let ciphertext = seal(
        apiv3_key.as_bytes(),
        &nonce,
        aad,
        plaintext.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| {
        tracing::error!("wechat sandbox: v3 resource not sealed: {e}");
        String::new()
    });
    json!({
        "id": format!("EV-{}", super::uuid_like()),
        "create_time": beijing(Utc::now()),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {
            "original_type": aad,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext,
            "associated_data": aad,
            "nonce": nonce,
        },
    })
    .to_string()
}

/// The body of a paid order's `TRANSACTION.SUCCESS` notification.
pub(crate) fn payment_notification(order: &Order, apiv3_key: &str) -> String {
    envelope(
        "TRANSACTION.SUCCESS",
        "支付成功",
        "transaction",
        &transaction(order),
        apiv3_key,
    )
}

/// The body of a settled refund's `REFUND.SUCCESS|CLOSED|ABNORMAL` notification.
pub(crate) fn refund_notification(refund: &Refund, apiv3_key: &str) -> String {
    let status = refund.status.v3_name();
    let summary = match status {
        "SUCCESS" => "退款成功",
        "CLOSED" => "退款关闭",
        _ => "退款异常",
    };
    envelope(
        &format!("REFUND.{status}"),
        summary,
        "refund",
        &refund_resource(refund),
        apiv3_key,
    )
}
