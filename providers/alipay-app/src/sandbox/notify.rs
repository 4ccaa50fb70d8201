//! The asynchronous notification (PROTOCOLS §C.4): built from a trade, signed rsaCheckV1-style
//! with the sandbox platform key, POSTed to the trade's `notify_url`, every attempt recorded.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::json;
use tokio::task::JoinSet;

use super::form::{self, NOTIFY_EXCLUDED, Params};
use super::merchants::Merchant;
use super::money::Amount;
use super::rsa2::Rsa2Signer;
use super::trades::{Delivery, Notification, Trade, TradeStatus, beijing_stamp, new_notify_id};

/// Merchant answers longer than this are cut in the delivery record.
const MAX_RECORDED_BODY: usize = 2048;

/// A notification ready to send: what is kept on the trade, and the bytes actually sent (which
/// differ only for a `tamper` delivery).
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The genuine notification.
    pub(crate) notification: Notification,
    /// The body to send.
    pub(crate) body: String,
    /// Whether `body` was altered after signing.
    pub(crate) tampered: bool,
}

/// Builds and signs a notification reporting `status` for `trade`, with the refund fields of
/// its latest refund when `refund` is set. `tamper` alters `total_amount` after signing.
pub(crate) fn build(
    trade: &Trade,
    merchant: &Merchant,
    platform: &Rsa2Signer,
    status: TradeStatus,
    refund: bool,
    tamper: bool,
) -> Outgoing {
    let notify_id = new_notify_id();
    let total = trade.total.to_string();
    let mut fields = Params::new();
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            fields.insert(name.to_owned(), value.to_owned());
        }
    };
    put("notify_time", Some(&beijing_stamp()));
    put("notify_type", Some("trade_status_sync"));
    put("notify_id", Some(&notify_id));
    // Through a third-party app, `app_id` is that app and `auth_app_id` the merchant's own.
    put(
        "app_id",
        Some(merchant.isv_app_id.as_deref().unwrap_or(&trade.app_id)),
    );
    put("auth_app_id", Some(&trade.app_id));
    put("charset", Some("utf-8"));
    put("version", Some("1.0"));
    put("sign_type", Some("RSA2"));
    put("trade_no", Some(&trade.trade_no));
    put("out_trade_no", Some(&trade.out_trade_no));
    put("buyer_id", Some(&trade.buyer_id));
    put("buyer_logon_id", Some(&trade.buyer_logon_id));
    put("seller_id", Some(&merchant.seller_id));
    put("seller_email", Some(&merchant.seller_email()));
    put("trade_status", Some(status.as_str()));
    put("total_amount", Some(&total));
    put("subject", Some(&trade.subject));
    put("body", trade.body.as_deref());
    put("gmt_create", Some(&trade.gmt_create));
    put("passback_params", trade.passback_params.as_deref());
    if trade.is_paid() {
        let fund_bills = json!([{ "amount": total, "fundChannel": "ALIPAYACCOUNT" }]).to_string();
        put("receipt_amount", Some(&total));
        put("invoice_amount", Some(&total));
        put("buyer_pay_amount", Some(&total));
        put("point_amount", Some("0.00"));
        put("gmt_payment", trade.gmt_payment.as_deref());
        put("fund_bill_list", Some(&fund_bills));
    }
    if status == TradeStatus::TradeClosed {
        put("gmt_close", trade.gmt_close.as_deref());
    }
    let out_biz_no = match trade.refunds.last().filter(|_| refund) {
        Some(latest) => {
            put("refund_fee", Some(&trade.refunded().to_string()));
            put("gmt_refund", Some(&latest.gmt_refund));
            put("out_biz_no", Some(&latest.out_request_no));
            Some(latest.out_request_no.clone())
        }
        None => None,
    };
    let sign = platform
        .sign(&form::sign_content(&fields, NOTIFY_EXCLUDED))
        .unwrap_or_default();
    fields.insert("sign".into(), sign);
    let genuine = form::encode(&fields);
    let body = if tamper {
        let altered = trade.total.plus(Amount(100)).to_string();
        fields.insert("total_amount".into(), altered);
        form::encode(&fields)
    } else {
        genuine.clone()
    };
    Outgoing {
        notification: Notification {
            notify_id,
            trade_status: status,
            out_biz_no,
            body: genuine,
        },
        body,
        tampered: tamper,
    }
}

/// POSTs `outgoing` to `url` `copies` times at once (Alipay's servers do redeliver
/// concurrently) and reports every attempt.
pub(crate) async fn deliver(
    client: Option<reqwest::Client>,
    url: String,
    outgoing: Outgoing,
    copies: u32,
) -> Vec<Delivery> {
    let template = Delivery {
        at: String::new(),
        notify_id: outgoing.notification.notify_id.clone(),
        trade_status: outgoing.notification.trade_status,
        tampered: outgoing.tampered,
        status: None,
        acknowledged: false,
        body: String::new(),
        error: None,
    };
    let Some(client) = client else {
        let failed = failed(&template, "the simulator has no HTTP client".into());
        return (0..copies).map(|_| failed.clone()).collect();
    };
    let mut attempts = JoinSet::new();
    for _ in 0..copies {
        attempts.spawn(send_once(
            client.clone(),
            url.clone(),
            outgoing.body.clone(),
            template.clone(),
        ));
    }
    let mut deliveries = Vec::new();
    while let Some(done) = attempts.join_next().await {
        deliveries
            .push(done.unwrap_or_else(|e| failed(&template, format!("delivery task failed: {e}"))));
    }
    deliveries
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn failed(template: &Delivery, error: String) -> Delivery {
    Delivery {
        at: now(),
        error: Some(error),
        ..template.clone()
    }
}

async fn send_once(
    client: reqwest::Client,
    url: String,
    body: String,
    template: Delivery,
) -> Delivery {
    let at = now();
    let sent = client
        .post(&url)
        .header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            return Delivery {
                at,
                ..failed(&template, describe(&e))
            };
        }
    };
    let status = response.status().as_u16();
    let answer = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Delivery {
                at,
                status: Some(status),
                ..failed(&template, describe(&e))
            };
        }
    };
    let mut text = String::from_utf8_lossy(&answer).into_owned();
    if text.len() > MAX_RECORDED_BODY {
        let mut cut = MAX_RECORDED_BODY;
        while !text.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        text.truncate(cut);
    }
    Delivery {
        at,
        status: Some(status),
        // Alipay's rule: the 7 bytes `success`, nothing around them (a BOM or newline is a failure).
        acknowledged: status == 200 && answer.as_ref() == b"success",
        body: text,
        ..template
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        format!("could not connect: {error}")
    } else {
        error.to_string()
    }
}

/// The HTTP client for notifications: the simulator's timeout, no proxy, no redirects.
pub(crate) fn http_client(timeout: Duration) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| tracing::warn!("alipay sandbox: no HTTP client for notifications: {e}"))
        .ok()
}
