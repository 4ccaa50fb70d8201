//! The payment APIs: unifiedorder (+ the `wx.requestPayment` re-sign), orderquery, closeorder, and
//! how their answers map onto core's types (PROTOCOLS.md §B.3–§B.6).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    CloseOutcome, CreatePayment, CreatedPayment, OrderRef, PaymentEvent, PaymentState,
    ProviderError,
};
use secrecy::SecretString;

use crate::client::{ApiClient, Reply, nonce, openid_prefix};
use crate::config::WechatConfig;
use crate::sign::{self, SignType};
use paybridge_core::beijing;

/// The sign type an order was created with (`provider_data.sign_type`), else the configured one.
pub fn order_sign_type(
    provider_data: Option<&serde_json::Value>,
    configured: SignType,
) -> SignType {
    provider_data
        .and_then(|d| d.get("sign_type"))
        .and_then(serde_json::Value::as_str)
        .and_then(SignType::parse)
        .unwrap_or(configured)
}

/// A WeChat fen amount: digits only, positive.
pub fn parse_fen(text: &str) -> Option<Fen> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().and_then(|v| Fen::positive(v).ok())
}

fn param(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// The payer's openid, which a JSAPI (mini-program) payment needs, in v2 and v3 alike.
pub(crate) fn payer_openid(req: &CreatePayment) -> Result<&str, ProviderError> {
    req.payer_openid
        .as_deref()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ProviderError::InvalidRequest {
            field: Some("payer.openid".to_owned()),
            message: "WeChat mini-program payments (JSAPI) need the payer's openid".to_owned(),
        })
}

/// The business params of unifiedorder (everything but appid, mch_id, nonce_str, sign_type, sign).
/// No `time_start`: a retry must send identical business params.
pub fn unified_order_params(
    config: &WechatConfig,
    req: &CreatePayment,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let openid = payer_openid(req)?;
    if req.amount.get() <= 0 {
        return Err(ProviderError::InvalidRequest {
            field: Some("amount".to_owned()),
            message: format!(
                "total_fee must be a positive number of fen, got {}",
                req.amount.get()
            ),
        });
    }
    let client_ip = req.client_ip.clone().filter(|ip| !ip.is_empty());
    let time_expire = beijing::format_compact(req.expires_at);
    let mut params: BTreeMap<String, String> = [
        param("trade_type", "JSAPI"),
        // A payer of the sub-merchant's own mini-program is its sub_openid.
        param(
            if config
                .partner
                .as_ref()
                .is_some_and(|p| p.sub_appid.is_some())
            {
                "sub_openid"
            } else {
                "openid"
            },
            openid,
        ),
        param("body", req.description.clone()),
        param("out_trade_no", req.out_trade_no.clone()),
        param("total_fee", req.amount.get().to_string()),
        param("fee_type", "CNY"),
        param(
            "spbill_create_ip",
            client_ip.unwrap_or_else(|| config.spbill_create_ip.clone()),
        ),
        param("notify_url", req.notify_url.clone()),
        param("time_expire", time_expire),
    ]
    .into_iter()
    .collect();
    if let Some(attach) = req.attach.as_ref().filter(|a| !a.is_empty()) {
        params.insert("attach".to_owned(), attach.clone());
    }
    Ok(params)
}

fn unified_order_error(err_code: &str, err_code_des: &str) -> ProviderError {
    match err_code {
        "ORDERPAID" => ProviderError::AlreadyPaid,
        "ORDERCLOSED" => ProviderError::AlreadyClosed,
        "OUT_TRADE_NO_USED" | "INVALID_REQUEST" => ProviderError::OutTradeNoUsed,
        "SYSTEMERROR" => ProviderError::Unavailable(format!("SYSTEMERROR: {err_code_des}")),
        _ => rejected(err_code, err_code_des),
    }
}

fn rejected(err_code: &str, err_code_des: &str) -> ProviderError {
    ProviderError::Rejected {
        code: "provider_rejected",
        message: format!("{err_code}: {err_code_des}"),
    }
}

/// The five `wx.requestPayment` params, `paySign` over `appId, timeStamp, nonceStr, package,
/// signType` (§B.4).
pub fn request_payment_params(
    appid: &str,
    prepay_id: &str,
    sign_type: SignType,
    api_key: &SecretString,
    time_stamp: &str,
    nonce_str: &str,
) -> serde_json::Value {
    let package = format!("prepay_id={prepay_id}");
    let signed: BTreeMap<String, String> = [
        param("appId", appid),
        param("timeStamp", time_stamp),
        param("nonceStr", nonce_str),
        param("package", package.clone()),
        param("signType", sign_type.as_str()),
    ]
    .into_iter()
    .collect();
    let pay_sign = sign::sign(&signed, sign_type, api_key);
    serde_json::json!({
        "timeStamp": time_stamp,
        "nonceStr": nonce_str,
        "package": package,
        "signType": sign_type.as_str(),
        "paySign": pay_sign,
    })
}

/// unifiedorder, then the client's payment params.
pub async fn create_payment(
    client: &ApiClient,
    req: &CreatePayment,
) -> Result<CreatedPayment, ProviderError> {
    let config = client.config();
    let sign_type = order_sign_type(req.previous_provider_data.as_ref(), config.sign_type);
    let params = unified_order_params(config, req)?;
    tracing::info!(
        out_trade_no = %req.out_trade_no,
        openid = %openid_prefix(req.payer_openid.as_deref().unwrap_or_default()),
        sign_type = sign_type.as_str(),
        "unifiedorder"
    );
    let fields = match client.call("/pay/unifiedorder", params, sign_type).await? {
        Reply::Success(fields) => fields,
        Reply::BusinessError {
            err_code,
            err_code_des,
        } => {
            return Err(unified_order_error(&err_code, &err_code_des));
        }
    };
    let prepay_id = fields
        .get("prepay_id")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ProviderError::Unavailable("unifiedorder succeeded without a prepay_id".to_owned())
        })?;
    let time_stamp = Utc::now().timestamp().to_string();
    let client_payment = request_payment_params(
        config.payer_appid(),
        prepay_id,
        sign_type,
        &config.api_key,
        &time_stamp,
        &nonce(),
    );
    Ok(CreatedPayment {
        client_payment,
        provider_data: serde_json::json!({ "sign_type": sign_type.as_str(), "prepay_id": prepay_id}),
        remote: true,
    })
}

/// A paid event from orderquery or a notification: `transaction_id`, `total_fee`, `time_end`.
/// The error names the missing or malformed field.
pub fn payment_event(
    fields: &BTreeMap<String, String>,
    out_trade_no: &str,
) -> Result<PaymentEvent, String> {
    let transaction_id = fields
        .get("transaction_id")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "missing transaction_id".to_owned())?;
    let amount = fields
        .get("total_fee")
        .and_then(|t| parse_fen(t))
        .ok_or_else(|| "bad total_fee".to_owned())?;
    let paid_at: DateTime<Utc> = fields
        .get("time_end")
        .and_then(|t| beijing::parse_compact(t))
        .ok_or_else(|| "bad time_end".to_owned())?;
    Ok(PaymentEvent {
        out_trade_no: out_trade_no.to_owned(),
        provider_trade_no: transaction_id.clone(),
        amount,
        paid_at,
        event_id: transaction_id.clone(),
    })
}

/// orderquery by `out_trade_no`.
pub async fn query_payment(
    client: &ApiClient,
    order: &OrderRef,
) -> Result<PaymentState, ProviderError> {
    let sign_type = order_sign_type(Some(&order.provider_data), client.config().sign_type);
    let params: BTreeMap<String, String> = [param("out_trade_no", order.out_trade_no.clone())]
        .into_iter()
        .collect();
    let fields = match client.call("/pay/orderquery", params, sign_type).await? {
        Reply::Success(fields) => fields,
        Reply::BusinessError {
            err_code,
            err_code_des,
        } => {
            return match err_code.as_str() {
                "ORDERNOTEXIST" => Ok(PaymentState::NotPaid),
                "SYSTEMERROR" => Err(ProviderError::Unavailable(format!(
                    "SYSTEMERROR: {err_code_des}"
                ))),
                _ => Err(rejected(&err_code, &err_code_des)),
            };
        }
    };
    if fields
        .get("out_trade_no")
        .is_some_and(|o| o != &order.out_trade_no)
    {
        return Err(ProviderError::Unavailable(
            "orderquery answered about another out_trade_no".to_owned(),
        ));
    }
    let trade_state = fields.get("trade_state").map_or("", String::as_str);
    match unpaid_state(trade_state, &order.out_trade_no) {
        Some(state) => Ok(state),
        None => payment_event(&fields, &order.out_trade_no)
            .map(PaymentState::Paid)
            .map_err(|e| ProviderError::Unavailable(format!("orderquery {trade_state}: {e}"))),
    }
}

/// What a query's `trade_state` (v2 and v3 use the same names) means for the order, or `None`
/// for a paid one (`SUCCESS`, `REFUND`), whose payment the caller reads from the answer.
pub fn unpaid_state(trade_state: &str, out_trade_no: &str) -> Option<PaymentState> {
    match trade_state {
        "SUCCESS" | "REFUND" => None,
        "NOTPAY" | "USERPAYING" => Some(PaymentState::NotPaid),
        "CLOSED" | "REVOKED" => Some(PaymentState::Closed),
        "PAYERROR" => Some(PaymentState::Failed),
        other => {
            // Unknown is not a failure (PROTOCOLS §F.8): keep the order pending and ask again later.
            tracing::warn!(%out_trade_no, trade_state = other, "unknown trade_state");
            Some(PaymentState::NotPaid)
        }
    }
}

/// closeorder; a paid order is never closed and is reported with its payment.
pub async fn close_payment(
    client: &ApiClient,
    order: &OrderRef,
) -> Result<CloseOutcome, ProviderError> {
    let sign_type = order_sign_type(Some(&order.provider_data), client.config().sign_type);
    let params: BTreeMap<String, String> = [param("out_trade_no", order.out_trade_no.clone())]
        .into_iter()
        .collect();
    match client.call("/pay/closeorder", params, sign_type).await? {
        Reply::Success(_) => Ok(CloseOutcome::Closed),
        Reply::BusinessError {
            err_code,
            err_code_des,
        } => match err_code.as_str() {
            // ORDERNOTEXIST: unifiedorder never succeeded, so nothing can be paid; and paybridge
            // never calls unifiedorder again for a closed order.
            "ORDERCLOSED" | "ORDERNOTEXIST" => Ok(CloseOutcome::Closed),
            "ORDERPAID" => match query_payment(client, order).await? {
                PaymentState::Paid(event) => Ok(CloseOutcome::AlreadyPaid(event)),
                other => Err(ProviderError::Unavailable(format!(
                    "closeorder says ORDERPAID but orderquery says {other:?}"
                ))),
            },
            "SYSTEMERROR" => Err(ProviderError::Unavailable(format!(
                "SYSTEMERROR: {err_code_des}"
            ))),
            _ => Err(rejected(&err_code, &err_code_des)),
        },
    }
}
