//! The payment notification (PROTOCOLS §B.9): built, signed and POSTed to the order's
//! `notify_url`, with every attempt recorded.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use tokio::task::JoinSet;

use super::envelope::nonce;
use super::merchants::Merchant;
use super::orders::{Delivery, Order};
use super::signature::{self, SignType};
use super::xml::{self, Fields};

/// Merchant answers longer than this are cut in the delivery record.
const MAX_RECORDED_BODY: usize = 2048;

/// The signed notification XML of a paid order. It is signed with the order's algorithm but has
/// no `sign_type` field, as WeChat sends it: the merchant must remember how it created the order.
pub(crate) fn build(
    order: &Order,
    merchant: &Merchant,
    sign_type: SignType,
    transaction_id: &str,
    time_end: &str,
    openid: &str,
) -> String {
    let mut fields = Fields::new();
    let mut put = |name: &str, value: &str| {
        if !value.is_empty() {
            fields.insert(name.to_owned(), value.to_owned());
        }
    };
    let total_fee = order.total_fee.to_string();
    put("return_code", "SUCCESS");
    put("return_msg", "OK");
    put("appid", &order.appid);
    for (name, value) in merchant.v2_ids() {
        put(name, &value);
    }
    put(
        "device_info",
        order
            .business
            .get("device_info")
            .map(String::as_str)
            .unwrap_or_default(),
    );
    put("nonce_str", &nonce());
    put("result_code", "SUCCESS");
    put(merchant.payer().1, openid);
    put("is_subscribe", "N");
    put("trade_type", &order.trade_type);
    put("bank_type", "OTHERS");
    put("total_fee", &total_fee);
    put("cash_fee", &total_fee);
    put("fee_type", "CNY");
    put("transaction_id", transaction_id);
    put("out_trade_no", &order.out_trade_no);
    put("attach", order.attach.as_deref().unwrap_or_default());
    put("time_end", time_end);
    let sign = signature::sign(&fields, &merchant.api_key, sign_type);
    fields.insert("sign".into(), sign);
    xml::write(&fields)
}

/// One notification request, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The body.
    pub(crate) body: String,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Further headers (v3: the `Wechatpay-*` signature headers).
    pub(crate) headers: Vec<(String, String)>,
    /// A v3 notification: any 2xx acknowledges it (v2 needs XML `return_code` SUCCESS).
    pub(crate) v3: bool,
}

impl Outgoing {
    /// A v2 (XML) notification.
    pub(crate) fn xml(notification: &str) -> Outgoing {
        Outgoing {
            body: notification.to_owned(),
            content_type: "text/xml",
            headers: Vec::new(),
            v3: false,
        }
    }
}

/// Sends every request to `url` at once and reports every attempt.
pub(crate) async fn deliver_each(
    client: Option<&reqwest::Client>,
    url: &str,
    requests: Vec<Outgoing>,
) -> Vec<Delivery> {
    let Some(client) = client else {
        let delivery =
            failed("the simulator has no HTTP client (TLS set-up failed at start)".into());
        return requests.iter().map(|_| delivery.clone()).collect();
    };
    let mut attempts = JoinSet::new();
    for request in requests {
        attempts.spawn(send_once(client.clone(), url.to_owned(), request));
    }
    let mut deliveries = Vec::new();
    while let Some(done) = attempts.join_next().await {
        deliveries.push(done.unwrap_or_else(|e| failed(format!("delivery task failed: {e}"))));
    }
    deliveries
}

fn failed(error: String) -> Delivery {
    Delivery {
        at: now(),
        status: None,
        acknowledged: false,
        body: String::new(),
        error: Some(error),
        serial: None,
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn send_once(client: reqwest::Client, url: String, request: Outgoing) -> Delivery {
    let delivery = send_request(client, url, &request).await;
    Delivery {
        serial: request
            .headers
            .iter()
            .find(|(name, _)| name == "wechatpay-serial")
            .map(|(_, value)| value.clone()),
        ..delivery
    }
}

async fn send_request(client: reqwest::Client, url: String, request: &Outgoing) -> Delivery {
    let at = now();
    let mut post = client
        .post(&url)
        .header("Content-Type", request.content_type);
    for (name, value) in &request.headers {
        post = post.header(name.as_str(), value.as_str());
    }
    let sent = post.body(request.body.clone()).send().await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            return Delivery {
                at,
                ..failed(describe(&e))
            };
        }
    };
    let status = response.status().as_u16();
    let body = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Delivery {
                at,
                status: Some(status),
                acknowledged: false,
                body: String::new(),
                error: Some(describe(&e)),
                serial: None,
            };
        }
    };
    let acknowledged = if request.v3 {
        (200..300).contains(&status)
    } else {
        status == 200 && is_success_ack(&body)
    };
    let mut text = String::from_utf8_lossy(&body).into_owned();
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
        acknowledged,
        body: text,
        error: None,
        serial: None,
    }
}

/// WeChat's rule: only well-formed XML with `return_code` SUCCESS acknowledges.
fn is_success_ack(body: &[u8]) -> bool {
    xml::parse(body).is_ok_and(|fields| {
        fields
            .get("return_code")
            .is_some_and(|code| code == "SUCCESS")
    })
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
        .map_err(|e| tracing::warn!("wechat sandbox: no HTTP client for notifications: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_success_xml_acknowledges() {
        assert!(is_success_ack(
            b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg>OK</return_msg></xml>"
        ));
        assert!(!is_success_ack(
            b"<xml><return_code>FAIL</return_code></xml>"
        ));
        assert!(!is_success_ack(b"SUCCESS"));
        assert!(!is_success_ack(b"<xml><return_code>SUCCESS</return_code>"));
    }
}
