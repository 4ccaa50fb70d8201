//! v3 JSAPI orders: create (and the client's `paySign`), query by `out_trade_no`, close.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use paybridge_core::provider::{
    CloseOutcome, CreatePayment, CreatedPayment, OrderRef, PaymentEvent, PaymentState,
    ProviderError,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::{V3Client, V3Reply};
use super::crypto::{MerchantKey, pay_sign_message};
pub use super::merchant::{Merchant, MerchantIds, Sub};
use crate::client::nonce;
use crate::orders::{payer_openid, unpaid_state};

/// The path segment of an `out_trade_no`. paybridge's numbers are `[A-Za-z0-9_\-|*]`; `|` is
/// percent-encoded here, once, so that the signed path is exactly the sent one.
fn segment(out_trade_no: &str) -> String {
    url::form_urlencoded::byte_serialize(out_trade_no.as_bytes()).collect()
}

fn beijing(at: DateTime<Utc>) -> String {
    match FixedOffset::east_opt(8 * 3600) {
        Some(offset) => at
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Secs, false),
        None => at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

fn rejected(code: &str, message: &str) -> ProviderError {
    ProviderError::Rejected {
        code: "provider_rejected",
        message: format!("{code}: {message}"),
    }
}

/// Errors every v3 call shares; the rest is the caller's.
fn common_error(status: u16, code: &str, message: &str) -> ProviderError {
    match (status, code) {
        (401, _) | (_, "SIGN_ERROR") => ProviderError::Misconfigured {
            field: "client_key".to_owned(),
            message: format!(
                "WeChat Pay refused the request signature ({code}: {message}); check client_key and the certificate serial"
            ),
        },
        (429, _) | (_, "FREQUENCY_LIMITED") => ProviderError::RateLimited(message.to_owned()),
        (500.., _) | (_, "SYSTEM_ERROR") => {
            ProviderError::Unavailable(format!("{code}: {message}"))
        }
        _ => rejected(code, message),
    }
}

/// The client's `wx.requestPayment` params for a v3 prepay id: `signType` `RSA`, `paySign` under
/// the merchant key over `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn request_payment_params(
    appid: &str,
    prepay_id: &str,
    key: &MerchantKey,
    time_stamp: &str,
    nonce_str: &str,
) -> Result<serde_json::Value, ProviderError> {
    let package = format!("prepay_id={prepay_id}");
    let pay_sign = key
        .sign(pay_sign_message(appid, time_stamp, nonce_str, &package).as_bytes())
        .map_err(|e| ProviderError::Misconfigured {
            field: "client_key".to_owned(),
            message: e.to_string(),
        })?;
    Ok(json!({
        "timeStamp": time_stamp,
        "nonceStr": nonce_str,
        "package": package,
        "signType": "RSA",
        "paySign": pay_sign,
    }))
}

#[derive(Deserialize)]
struct Prepay {
    prepay_id: String,
}

/// `POST /v3/pay/transactions/jsapi`, then the client's payment params.
pub async fn create_payment(
    client: &V3Client,
    merchant: Merchant<'_>,
    key: &MerchantKey,
    req: &CreatePayment,
) -> Result<CreatedPayment, ProviderError> {
    let openid = payer_openid(req)?;
    let mut body = json!({
        "description": req.description,
        "out_trade_no": req.out_trade_no,
        "time_expire": beijing(req.expires_at),
        "notify_url": req.notify_url,
        "amount": {"total": req.amount.get(), "currency": "CNY"},
    });
    let path = match merchant.sub {
        None => {
            body["appid"] = json!(merchant.appid);
            body["mchid"] = json!(merchant.mchid);
            body["payer"] = json!({"openid": openid});
            "/v3/pay/transactions/jsapi"
        }
        Some(sub) => {
            body["sp_appid"] = json!(merchant.appid);
            body["sp_mchid"] = json!(merchant.mchid);
            body["sub_mchid"] = json!(sub.sub_mchid);
            match sub.sub_appid {
                Some(sub_appid) => {
                    body["sub_appid"] = json!(sub_appid);
                    body["payer"] = json!({"sub_openid": openid});
                }
                None => body["payer"] = json!({"sp_openid": openid}),
            }
            "/v3/pay/partner/transactions/jsapi"
        }
    };
    if let Some(attach) = &req.attach {
        body["attach"] = json!(attach);
    }
    if let Some(ip) = &req.client_ip {
        body["scene_info"] = json!({"payer_client_ip": ip});
    }
    let reply = client
        .call(Method::POST, path, Some(&body.to_string()))
        .await?;
    let answer = match reply {
        V3Reply::Success { body, .. } => body,
        V3Reply::Error {
            status,
            code,
            message,
        } => {
            return Err(match code.as_str() {
                "ORDERPAID" => ProviderError::AlreadyPaid,
                "ORDER_CLOSED" | "ORDERCLOSED" => ProviderError::AlreadyClosed,
                "OUT_TRADE_NO_USED" => ProviderError::OutTradeNoUsed,
                _ => common_error(status, &code, &message),
            });
        }
    };
    let prepay: Prepay = serde_json::from_slice(&answer).map_err(|e| {
        ProviderError::Unavailable(format!("jsapi answered without a prepay_id: {e}"))
    })?;
    let client_payment = request_payment_params(
        merchant.payer_appid(),
        &prepay.prepay_id,
        key,
        &Utc::now().timestamp().to_string(),
        &nonce(),
    )?;
    Ok(CreatedPayment {
        client_payment,
        provider_data: json!({"api_version": "v3", "prepay_id": prepay.prepay_id}),
        remote: true,
    })
}

#[derive(Deserialize)]
struct Transaction {
    #[serde(flatten)]
    ids: MerchantIds,
    out_trade_no: String,
    transaction_id: Option<String>,
    trade_state: String,
    success_time: Option<String>,
    amount: Option<Amount>,
}

#[derive(Deserialize)]
struct Amount {
    total: i64,
}

/// `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…` (partner:
/// `/v3/pay/partner/transactions/…?sp_mchid=…&sub_mchid=…`).
pub async fn query_payment(
    client: &V3Client,
    merchant: Merchant<'_>,
    order: &OrderRef,
) -> Result<PaymentState, ProviderError> {
    let path = match merchant.sub {
        None => format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            segment(&order.out_trade_no),
            merchant.mchid
        ),
        Some(sub) => format!(
            "/v3/pay/partner/transactions/out-trade-no/{}?sp_mchid={}&sub_mchid={}",
            segment(&order.out_trade_no),
            merchant.mchid,
            sub.sub_mchid
        ),
    };
    let answer = match client.call(Method::GET, &path, None).await? {
        V3Reply::Success { body, .. } => body,
        V3Reply::Error { code, .. } if code == "ORDER_NOT_EXIST" => {
            return Ok(PaymentState::NotPaid);
        }
        V3Reply::Error {
            status,
            code,
            message,
        } => return Err(common_error(status, &code, &message)),
    };
    let t: Transaction = serde_json::from_slice(&answer)
        .map_err(|e| ProviderError::Unavailable(format!("unreadable transaction: {e}")))?;
    if t.out_trade_no != order.out_trade_no || merchant.mismatch(&t.ids, false).is_some() {
        return Err(ProviderError::Unavailable(
            "the query answered about another order or merchant".to_owned(),
        ));
    }
    if let Some(state) = unpaid_state(&t.trade_state, &order.out_trade_no) {
        return Ok(state);
    }
    let unreadable =
        |what: &str| ProviderError::Unavailable(format!("query {}: {what}", t.trade_state));
    let transaction_id = t
        .transaction_id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| unreadable("no transaction_id"))?;
    if t.amount.as_ref().map(|a| a.total) != Some(order.amount.get()) {
        return Err(unreadable("amount differs from the order"));
    }
    let paid_at = t
        .success_time
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|s| s.with_timezone(&Utc))
        .ok_or_else(|| unreadable("bad success_time"))?;
    Ok(PaymentState::Paid(PaymentEvent {
        out_trade_no: t.out_trade_no,
        provider_trade_no: transaction_id.clone(),
        amount: order.amount,
        paid_at,
        event_id: transaction_id,
    }))
}

/// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close`. A paid order is never closed:
/// when the close is refused, the query decides.
pub async fn close_payment(
    client: &V3Client,
    merchant: Merchant<'_>,
    order: &OrderRef,
) -> Result<CloseOutcome, ProviderError> {
    let (path, body) = match merchant.sub {
        None => (
            format!(
                "/v3/pay/transactions/out-trade-no/{}/close",
                segment(&order.out_trade_no)
            ),
            json!({"mchid": merchant.mchid}),
        ),
        Some(sub) => (
            format!(
                "/v3/pay/partner/transactions/out-trade-no/{}/close",
                segment(&order.out_trade_no)
            ),
            json!({"sp_mchid": merchant.mchid, "sub_mchid": sub.sub_mchid}),
        ),
    };
    let body = body.to_string();
    match client.call(Method::POST, &path, Some(&body)).await? {
        V3Reply::Success { .. } => Ok(CloseOutcome::Closed),
        V3Reply::Error { code, .. } if code == "ORDER_NOT_EXIST" => Ok(CloseOutcome::Closed),
        V3Reply::Error {
            status,
            code,
            message,
        } if status < 500 && status != 401 && status != 429 => {
            match query_payment(client, merchant, order).await? {
                PaymentState::Paid(event) => Ok(CloseOutcome::AlreadyPaid(event)),
                PaymentState::Closed => Ok(CloseOutcome::Closed),
                other => Err(ProviderError::Unavailable(format!(
                    "close refused ({code}: {message}) while the query says {other:?}"
                ))),
            }
        }
        V3Reply::Error {
            status,
            code,
            message,
        } => Err(common_error(status, &code, &message)),
    }
}

#[cfg(test)]
#[path = "orders_tests.rs"]
mod tests;
