//! Payment notifications (PROTOCOLS.md §B.9): verify in the documented order, and the exact
//! acknowledgement body.

use std::collections::BTreeMap;

use paybridge_core::provider::{
    AckBody, NotificationRejection, OrderLookup, OrderSnapshot, ProviderEvent,
};

use crate::client::merchant_fields;
use crate::config::WechatConfig;
use crate::orders::{order_sign_type, parse_fen, payment_event};
use crate::sign::{self, SignType};
use crate::xml;

/// The success acknowledgement, byte for byte.
pub const ACK_SUCCESS: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// The failure acknowledgement with a short reason (no internals).
pub fn ack_failure(reason: &str) -> String {
    let mut body = String::from("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg>");
    xml::push_cdata(&mut body, reason);
    body.push_str("</return_msg></xml>");
    body
}

/// The short, safe reason sent back for a rejection: the rejection's Display without any detail
/// text that came from parsing.
pub fn rejection_reason(rejection: &NotificationRejection) -> String {
    match rejection {
        NotificationRejection::Undecodable(_) => "undecodable notification".to_owned(),
        NotificationRejection::ReportedFailure(_) => "notification reports failure".to_owned(),
        NotificationRejection::Unsupported(_) => "unsupported notification".to_owned(),
        other => other.to_string(),
    }
}

/// The acknowledgement for an outcome: always HTTP 200, `application/xml`.
pub fn acknowledgement(outcome: Result<(), &NotificationRejection>) -> AckBody {
    let body = match outcome {
        Ok(()) => ACK_SUCCESS.to_owned(),
        Err(rejection) => ack_failure(&rejection_reason(rejection)),
    };
    AckBody {
        status: 200,
        content_type: "application/xml",
        body: body.into_bytes(),
    }
}

/// The order, looked up at most once per notification.
struct CachedOrder<'a> {
    orders: &'a dyn OrderLookup,
    out_trade_no: Option<&'a str>,
    found: Option<Option<OrderSnapshot>>,
}

impl CachedOrder<'_> {
    async fn get(&mut self) -> Option<&OrderSnapshot> {
        if self.found.is_none() {
            let order = match self.out_trade_no {
                Some(no) => self.orders.find_order(no).await,
                None => None,
            };
            self.found = Some(order);
        }
        self.found.as_ref().and_then(Option::as_ref)
    }
}

/// Verify a payment notification, checks in this order: decode, signature, appid/mch_id,
/// return_code/result_code, order exists, total_fee equals the order amount.
pub async fn verify_payment(
    config: &WechatConfig,
    body: &[u8],
    orders: &dyn OrderLookup,
) -> Result<ProviderEvent, NotificationRejection> {
    // (0) decode
    let fields =
        xml::decode(body, "xml").map_err(|e| NotificationRejection::Undecodable(e.to_string()))?;
    let out_trade_no = fields
        .get("out_trade_no")
        .map(String::as_str)
        .filter(|o| !o.is_empty());
    let mut order = CachedOrder {
        orders,
        out_trade_no,
        found: None,
    };

    // (1) signature, with the order's own sign type when the order recorded one (a `sign_type`
    // field that contradicts it is refused); else the `sign_type` field; else inferred from the
    // signature's length (64 hex = HMAC-SHA256, 32 = MD5, PROTOCOLS.md §B.2).
    let stored = order
        .get()
        .await
        .and_then(|o| {
            o.provider_data
                .get("sign_type")
                .and_then(serde_json::Value::as_str)
        })
        .and_then(SignType::parse);
    let declared = match fields.get("sign_type").filter(|n| !n.is_empty()) {
        Some(name) => Some(SignType::parse(name).ok_or(NotificationRejection::BadSignature)?),
        None => None,
    };
    let sign_type = match (stored, declared) {
        (Some(s), Some(d)) if s != d => return Err(NotificationRejection::BadSignature),
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => match fields.get("sign").map(String::len) {
            Some(64) => SignType::HmacSha256,
            Some(32) => SignType::Md5,
            _ => order_sign_type(None, config.sign_type),
        },
    };
    if !sign::verify(&fields, sign_type, &config.api_key) {
        tracing::warn!(
            out_trade_no,
            sign_type = sign_type.as_str(),
            "notification signature mismatch"
        );
        return Err(NotificationRejection::BadSignature);
    }

    // (2) it is for this merchant
    for (field, expected) in merchant_fields(config) {
        check_equal(&fields, field, expected)?;
    }

    // (3) it reports success
    reported_success(&fields)?;

    // (4) the order exists
    let out_trade_no = out_trade_no.ok_or(NotificationRejection::Unknown("order"))?;
    let order = order
        .get()
        .await
        .ok_or(NotificationRejection::Unknown("order"))?;

    // (5) the full amount was paid
    let total_fee = fields.get("total_fee").and_then(|t| parse_fen(t));
    if total_fee != Some(order.amount) {
        tracing::warn!(
            out_trade_no,
            "notification total_fee differs from the order amount"
        );
        return Err(NotificationRejection::Mismatch { field: "total_fee" });
    }

    let event = payment_event(&fields, out_trade_no).map_err(NotificationRejection::Undecodable)?;
    tracing::info!(out_trade_no, transaction_id = %event.provider_trade_no, "payment notification verified");
    Ok(ProviderEvent::Payment(event))
}

fn check_equal(
    fields: &BTreeMap<String, String>,
    field: &'static str,
    expected: &str,
) -> Result<(), NotificationRejection> {
    if fields.get(field).map(String::as_str) == Some(expected) {
        Ok(())
    } else {
        Err(NotificationRejection::Mismatch { field })
    }
}

fn reported_success(fields: &BTreeMap<String, String>) -> Result<(), NotificationRejection> {
    let get = |k: &str| fields.get(k).map_or("", String::as_str);
    if get("return_code") != "SUCCESS" {
        return Err(NotificationRejection::ReportedFailure(format!(
            "return_code {}",
            short(get("return_code"))
        )));
    }
    if get("result_code") != "SUCCESS" {
        return Err(NotificationRejection::ReportedFailure(format!(
            "result_code {} err_code {}",
            short(get("result_code")),
            short(get("err_code"))
        )));
    }
    Ok(())
}

fn short(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
