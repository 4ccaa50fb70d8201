//! Asynchronous notifications (PROTOCOLS.md §C.4, pitfalls 10, 11, 14, 15): decode once, verify
//! (rsaCheckV1), check they are about this merchant's order, then say what happened. And the
//! exact acknowledgement: `success` or `fail`, nothing else.

use std::collections::BTreeMap;

use paybridge_core::money::Fen;
use paybridge_core::provider::{
    AckBody, NotificationRejection, OrderLookup, PaymentEvent, ProviderEvent, RefundEvent,
};
use paybridge_core::refund::RefundStatus;
use percent_encoding::percent_decode;

use crate::config::AlipayConfig;
use crate::config::SIGN_TYPE_RSA2;
use crate::sign;
use paybridge_core::beijing;

/// The success acknowledgement, byte for byte (no BOM, no newline).
pub const ACK_SUCCESS: &[u8] = b"success";
/// The failure acknowledgement; anything but `success` makes Alipay redeliver.
pub const ACK_FAIL: &[u8] = b"fail";

/// HTTP 200, `text/plain`, `success` or `fail`.
pub fn acknowledgement(outcome: Result<(), &NotificationRejection>) -> AckBody {
    AckBody {
        status: 200,
        content_type: "text/plain",
        body: match outcome {
            Ok(()) => ACK_SUCCESS.to_vec(),
            Err(_) => ACK_FAIL.to_vec(),
        },
    }
}

fn undecodable(message: impl Into<String>) -> NotificationRejection {
    NotificationRejection::Undecodable(message.into())
}

/// At most 32 safe characters of a value, for messages.
fn shown(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(32)
        .collect()
}

fn decode_component(raw: &[u8]) -> Result<String, NotificationRejection> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| undecodable("a parameter is not valid UTF-8"))
}

/// `application/x-www-form-urlencoded`, decoded exactly once: `+` → space, `%XX` → byte, then
/// strict UTF-8. A parameter given twice is refused (which one would be signed?).
pub fn decode_form(body: &[u8]) -> Result<BTreeMap<String, String>, NotificationRejection> {
    if body.is_empty() {
        return Err(undecodable("empty body"));
    }
    let mut params = BTreeMap::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let key = decode_component(raw_key)?;
        let value = decode_component(raw_value)?;
        if key.is_empty() {
            return Err(undecodable("a parameter without a name"));
        }
        if params.contains_key(&key) {
            return Err(undecodable(format!(
                "parameter {} given twice",
                shown(&key)
            )));
        }
        params.insert(key, value);
    }
    if params.is_empty() {
        return Err(undecodable("no parameters"));
    }
    Ok(params)
}

/// The charset named in the `Content-Type`, if any.
fn content_type_charset(content_type: Option<&str>) -> Option<&str> {
    content_type?.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Only UTF-8: paybridge always sends `charset=utf-8`, and a GBK body would not verify.
fn check_charset(
    params: &BTreeMap<String, String>,
    content_type: Option<&str>,
) -> Result<(), NotificationRejection> {
    let declared = params
        .get("charset")
        .map(String::as_str)
        .or(content_type_charset(content_type));
    match declared {
        Some(cs) if !cs.eq_ignore_ascii_case("utf-8") => Err(undecodable(format!(
            "charset {} is not supported; send charset=utf-8",
            shown(cs)
        ))),
        _ => Ok(()),
    }
}

fn get<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    params
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn required<'a>(
    params: &'a BTreeMap<String, String>,
    key: &str,
) -> Result<&'a str, NotificationRejection> {
    get(params, key).ok_or_else(|| undecodable(format!("missing {key}")))
}

fn time(
    params: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, NotificationRejection> {
    match get(params, key) {
        None => Ok(None),
        Some(t) => beijing::parse_dashed(t)
            .map(Some)
            .ok_or_else(|| undecodable(format!("{key} is not yyyy-MM-dd HH:mm:ss"))),
    }
}

/// A refund report: Alipay carries refunds on the payment notification, recognisable by a
/// positive `refund_fee` with its refund number `out_biz_no` (a partial refund keeps
/// `TRADE_SUCCESS`, a full one is `TRADE_CLOSED`). `TRADE_FINISHED` is never one: it also
/// arrives when the refund window closes, carrying the cumulative `refund_fee`, and is the
/// payment again (deduplicated by `trade_no`).
fn is_refund_report(params: &BTreeMap<String, String>) -> bool {
    let refunded = get(params, "refund_fee")
        .and_then(|f| Fen::from_yuan(f).ok())
        .is_some_and(|f| f > Fen::ZERO);
    get(params, "trade_status") != Some("TRADE_FINISHED")
        && (refunded || get(params, "gmt_refund").is_some())
}

/// Verify a notification posted to the payment notify URL. Checks, in order: decode and
/// charset; signature (rsaCheckV1); app_id; the order exists; total_amount equals it; seller_id;
/// then what it reports (refund, payment, close).
pub async fn verify_payment_notification(
    config: &AlipayConfig,
    body: &[u8],
    content_type: Option<&str>,
    orders: &dyn OrderLookup,
) -> Result<ProviderEvent, NotificationRejection> {
    // (0) decode exactly once
    let params = decode_form(body)?;
    check_charset(&params, content_type)?;

    // (1) rsaCheckV1 with Alipay's public key
    if get(&params, "sign_type").is_some_and(|t| t != SIGN_TYPE_RSA2) {
        tracing::warn!("notification with a sign_type other than RSA2");
        return Err(NotificationRejection::BadSignature);
    }
    // Notifications name no certificate: in certificate mode, an Alipay certificate downloaded
    // (and trusted through its chain) after a rotation verifies them too.
    let verified = sign::verify_notification_params(&config.alipay_public_key, &params)
        || config.cert_mode.as_ref().is_some_and(|mode| {
            mode.downloaded_keys()
                .iter()
                .any(|key| sign::verify_notification_params(key, &params))
        });
    if !verified {
        tracing::warn!(
            out_trade_no = get(&params, "out_trade_no").map(shown),
            "notification signature mismatch"
        );
        return Err(NotificationRejection::BadSignature);
    }

    // (2) it is this merchant's order, for the order's amount
    if get(&params, "app_id") != Some(config.app_id.as_str()) {
        return Err(NotificationRejection::Mismatch { field: "app_id" });
    }
    // Through a third-party app, `app_id` is the ISV's: the merchant is `auth_app_id`.
    if let Some(isv) = &config.isv
        && get(&params, "auth_app_id") != Some(isv.auth_app_id.as_str())
    {
        tracing::warn!("notification for another merchant of the third-party app");
        return Err(NotificationRejection::Mismatch {
            field: "auth_app_id",
        });
    }
    let out_trade_no =
        get(&params, "out_trade_no").ok_or(NotificationRejection::Unknown("order"))?;
    let order = orders
        .find_order(out_trade_no)
        .await
        .ok_or(NotificationRejection::Unknown("order"))?;
    let total_amount = get(&params, "total_amount")
        .and_then(|t| Fen::from_yuan(t).ok())
        .filter(|amount| *amount == order.amount)
        .ok_or_else(|| {
            tracing::warn!(
                out_trade_no,
                "notification total_amount differs from the order amount"
            );
            NotificationRejection::Mismatch {
                field: "total_amount",
            }
        })?;
    if get(&params, "seller_id") != Some(config.seller_id.as_str()) {
        tracing::warn!(out_trade_no, "notification names another seller_id");
        return Err(NotificationRejection::Mismatch { field: "seller_id" });
    }

    // (3) what happened
    let trade_status = get(&params, "trade_status").unwrap_or_default();
    if is_refund_report(&params) {
        let out_biz_no = get(&params, "out_biz_no");
        let found = match out_biz_no {
            Some(no) => orders.find_refund(out_trade_no, no).await,
            None => None,
        };
        let (Some(out_biz_no), Some(amount)) = (out_biz_no, found) else {
            // A refund paybridge never made: one from the merchant console, say. Refusing it
            // would only have Alipay send it again for 25 hours; it is acknowledged and the
            // order flagged for an operator.
            tracing::warn!(
                out_trade_no,
                out_biz_no,
                "refund notification for a refund paybridge did not make"
            );
            return Ok(ProviderEvent::RefundedOutside {
                out_trade_no: out_trade_no.to_owned(),
                out_refund_no: out_biz_no.map(str::to_owned),
                event_id: required(&params, "notify_id")?.to_owned(),
            });
        };
        let event = RefundEvent {
            out_trade_no: out_trade_no.to_owned(),
            out_refund_no: out_biz_no.to_owned(),
            provider_refund_no: None,
            amount,
            status: RefundStatus::Succeeded,
            succeeded_at: time(&params, "gmt_refund")?,
            event_id: required(&params, "notify_id")?.to_owned(),
        };
        tracing::info!(out_trade_no, trade_status, "refund notification verified");
        return Ok(ProviderEvent::Refund(event));
    }
    match trade_status {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => {
            let trade_no = required(&params, "trade_no")?;
            let paid_at =
                time(&params, "gmt_payment")?.ok_or_else(|| undecodable("missing gmt_payment"))?;
            tracing::info!(
                out_trade_no,
                trade_no,
                trade_status,
                "payment notification verified"
            );
            Ok(ProviderEvent::Payment(PaymentEvent {
                out_trade_no: out_trade_no.to_owned(),
                provider_trade_no: trade_no.to_owned(),
                amount: total_amount,
                paid_at,
                // The trade number, so TRADE_FINISHED and query results dedup with it.
                event_id: trade_no.to_owned(),
            }))
        }
        "TRADE_CLOSED" => Ok(ProviderEvent::Closed {
            out_trade_no: out_trade_no.to_owned(),
            event_id: required(&params, "notify_id")?.to_owned(),
        }),
        other => Err(NotificationRejection::Unsupported(format!(
            "trade_status {}",
            shown(other)
        ))),
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
