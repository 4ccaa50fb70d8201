//! The signed orderString of `alipay.trade.app.pay` (PROTOCOLS.md §C.3, pitfall 13): built and
//! signed here, handed to the app, never sent to the gateway by the server.
//!
//! Sign the raw values, then serialize `key=percent_encode(value)` joined with `&`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::provider::{CreatePayment, ProviderError};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::config::AlipayConfig;
use crate::sign;
use paybridge_core::beijing;

/// The API name.
pub const METHOD_APP_PAY: &str = "alipay.trade.app.pay";
/// `product_code` of app pay.
pub const PRODUCT_CODE: &str = "QUICK_MSECURITY_PAY";
/// `timeout_express` bounds: 1m to 15d.
pub const MIN_TIMEOUT_MINUTES: i64 = 1;
/// 15 days in minutes.
pub const MAX_TIMEOUT_MINUTES: i64 = 15 * 24 * 60;
/// Alipay's `total_amount` ceiling: 100 000 000.00 yuan.
pub const MAX_AMOUNT: Fen = Fen::new(10_000_000_000);

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) is percent-encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode UTF-8 text, keeping only unreserved characters; a space becomes `%20`.
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

/// Whole minutes from `now` to `expires_at` as `"Nm"`, rounded down (Alipay must not outlive
/// paybridge's own expiry) and capped at `21600m` (15 days). `None` when less than a minute is
/// left: the order is as good as expired, and a `1m` timeout would outlive it.
pub fn timeout_express(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Option<String> {
    let minutes = (expires_at - now).num_minutes();
    (minutes >= MIN_TIMEOUT_MINUTES).then(|| format!("{}m", minutes.min(MAX_TIMEOUT_MINUTES)))
}

fn push_json_field(out: &mut String, key: &str, value: &str) {
    if out.len() > 1 {
        out.push(',');
    }
    out.push_str(&serde_json::Value::String(key.to_owned()).to_string());
    out.push(':');
    out.push_str(&serde_json::Value::String(value.to_owned()).to_string());
}

/// The fields of `biz_content`, in the order they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPayBiz<'a> {
    /// The merchant's order number.
    pub out_trade_no: &'a str,
    /// The order amount.
    pub amount: Fen,
    /// Shown to the payer: the order description.
    pub subject: &'a str,
    /// `Nm`.
    pub timeout_express: String,
    /// Already URL-encoded attach, if any.
    pub passback_params: Option<String>,
}

impl AppPayBiz<'_> {
    /// Compact JSON with a fixed key order: `out_trade_no, total_amount, subject, product_code,
    /// timeout_express[, passback_params]`. Written by hand so no serializer feature can reorder
    /// or re-escape it; the text is signed as is.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        push_json_field(&mut out, "out_trade_no", self.out_trade_no);
        push_json_field(&mut out, "total_amount", &self.amount.to_yuan());
        push_json_field(&mut out, "subject", self.subject);
        push_json_field(&mut out, "product_code", PRODUCT_CODE);
        push_json_field(&mut out, "timeout_express", &self.timeout_express);
        if let Some(passback) = &self.passback_params {
            push_json_field(&mut out, "passback_params", passback);
        }
        out.push('}');
        out
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

/// Refuse what Alipay would refuse, before signing anything.
fn check_request(req: &CreatePayment) -> Result<(), ProviderError> {
    if req.amount <= Fen::ZERO || req.amount > MAX_AMOUNT {
        return Err(invalid(
            "amount",
            format!(
                "Alipay accepts 0.01 to 100000000.00 yuan, got {} fen",
                req.amount.get()
            ),
        ));
    }
    if req.out_trade_no.is_empty() || req.out_trade_no.len() > 64 {
        return Err(invalid("out_trade_no", "Alipay accepts 1-64 characters"));
    }
    let subject_chars = req.description.chars().count();
    if subject_chars == 0 || subject_chars > 256 {
        return Err(invalid(
            "description",
            "Alipay accepts a subject of 1-256 characters",
        ));
    }
    let notify_ok = (req.notify_url.starts_with("https://")
        || req.notify_url.starts_with("http://"))
        && req.notify_url.len() <= 256;
    if !notify_ok {
        return Err(invalid(
            "notify_url",
            "Alipay needs an http(s) notify_url of at most 256 characters",
        ));
    }
    Ok(())
}

/// The signed parameters of the orderString for `req`, stamped `now`.
pub fn app_pay_params(
    config: &AlipayConfig,
    req: &CreatePayment,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, String>, ProviderError> {
    check_request(req)?;
    let biz = AppPayBiz {
        out_trade_no: &req.out_trade_no,
        amount: req.amount,
        subject: &req.description,
        timeout_express: timeout_express(now, req.expires_at).ok_or_else(|| {
            ProviderError::InvalidRequest {
                field: Some("expires_in_seconds".to_owned()),
                message: "the order expires in less than a minute; create a new order".to_owned(),
            }
        })?,
        passback_params: req
            .attach
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(percent_encode),
    };
    let extra = [
        ("notify_url".to_owned(), req.notify_url.clone()),
        ("biz_content".to_owned(), biz.to_json()),
    ];
    sign::signed_request(config, METHOD_APP_PAY, beijing::format_dashed(now), extra).map_err(|e| {
        ProviderError::Misconfigured {
            field: "private_key".to_owned(),
            message: e.to_string(),
        }
    })
}

/// `k=percent_encode(v)` joined with `&`, in key order (Alipay re-sorts before verifying).
pub fn encode_params(params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// The orderString the app hands to the Alipay SDK.
pub fn build_order_string(
    config: &AlipayConfig,
    req: &CreatePayment,
    now: DateTime<Utc>,
) -> Result<String, ProviderError> {
    Ok(encode_params(&app_pay_params(config, req, now)?))
}

#[cfg(test)]
#[path = "order_string_tests.rs"]
mod tests;
