//! Tests through `handle`, with requests signed, encoded and checked by code written here —
//! independently of both the simulator's and the merchant client's.

mod cashier;
mod control;
mod gateway;
mod refunds;
mod vectors;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use paybridge_core::provider::{SimRequest, SimResponse, Simulator};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::AlipaySimulator;

/// The app of the Node SDK vectors (`fixtures/vectors/sdk-vectors.json`).
pub(super) const APP_ID: &str = "2021001100600001";
pub(super) const SELLER_ID: &str = "2088102147948060";
pub(super) const APP_KEY_PKCS1: &str =
    include_str!("../../../../../fixtures/vectors/app_private_pkcs1.pem");
const APP_KEY_PKCS8: &str = include_str!("../../../../../fixtures/vectors/app_private_pkcs8.pem");
const PLATFORM_PUBLIC: &str = include_str!("../../../sandbox-keys/alipay_sandbox_public.pem");
/// Another app key: requests signed with it must fail.
const OTHER_KEY: &str = include_str!("../../../sandbox-keys/alipay_sandbox_private.pem");
pub(super) const NOTIFY_URL: &str = "http://127.0.0.1:9/notify/demo/alipay_app";

pub(super) type Params = BTreeMap<String, String>;

/// A simulator that knows the vectors' app (configured as bare PKCS#8 base64, as Alipay's key
/// tool hands it out).
pub(super) fn simulator() -> AlipaySimulator {
    simulator_with_timeout(Duration::from_millis(1500))
}

pub(super) fn simulator_with_timeout(timeout: Duration) -> AlipaySimulator {
    let sim = AlipaySimulator::new(timeout);
    let bare: String = APP_KEY_PKCS8
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut table = toml::Table::new();
    table.insert("enabled".into(), true.into());
    table.insert("app_id".into(), APP_ID.into());
    table.insert("seller_id".into(), SELLER_ID.into());
    table.insert("private_key".into(), bare.into());
    table.insert("alipay_public_key".into(), PLATFORM_PUBLIC.into());
    sim.register_merchant(&table, std::path::Path::new("."));
    sim
}

pub(super) fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The test's own RSA2 request signer: all but `sign`, empties dropped, sorted, raw values.
pub(super) fn test_sign(params: &Params, key_pem: &str) -> String {
    let content = params
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let key = SigningKey::<Sha256>::new(RsaPrivateKey::from_pkcs1_pem(key_pem).unwrap());
    STANDARD.encode(key.sign(content.as_bytes()).to_bytes())
}

fn platform_key() -> VerifyingKey<Sha256> {
    VerifyingKey::new(RsaPublicKey::from_public_key_pem(PLATFORM_PUBLIC).unwrap())
}

fn rsa2_verifies(key: &VerifyingKey<Sha256>, content: &str, sign: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(sign) else {
        return false;
    };
    let signature = Signature::try_from(bytes.as_slice()).unwrap();
    key.verify(content.as_bytes(), &signature).is_ok()
}

/// rsaCheckV1 with a given key: decode once (with `form_urlencoded`, not the simulator's
/// decoder), drop `sign` and `sign_type` and empties, sort, join, verify.
pub(super) fn check_v1(key: &VerifyingKey<Sha256>, fields: &Params) -> bool {
    let content = fields
        .iter()
        .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    rsa2_verifies(key, &content, &fields["sign"])
}

/// Decodes a notification body.
pub(super) fn notification_fields(body: &str) -> Params {
    form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether a notification body verifies (rsaCheckV1) with `alipay_sandbox_public.pem`.
pub(super) fn notification_verifies(body: &str) -> bool {
    check_v1(&platform_key(), &notification_fields(body))
}

/// Percent-encodes everything but unreserved characters; a space becomes `+` or `%20`.
pub(super) fn encode_value(value: &str, plus_spaces: bool) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte))
            }
            b' ' if plus_spaces => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

pub(super) fn encode_params(params: &Params, plus_spaces: bool) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_value(v, plus_spaces)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Now in Beijing time, as Alipay's `timestamp`.
pub(super) fn beijing_timestamp(offset_minutes: i64) -> String {
    (chrono::Utc::now().naive_utc() + chrono::TimeDelta::minutes(8 * 60 + offset_minutes))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The unsigned params of an app-pay orderString.
pub(super) fn app_pay_params(biz: &Value, notify_url: &str) -> Params {
    params(&[
        ("app_id", APP_ID),
        ("method", "alipay.trade.app.pay"),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("version", "1.0"),
        ("timestamp", &beijing_timestamp(0)),
        ("notify_url", notify_url),
        ("biz_content", &biz.to_string()),
    ])
}

/// Signs and encodes params as an orderString.
pub(super) fn sign_encode(mut params: Params, plus_spaces: bool) -> String {
    let sign = test_sign(&params, APP_KEY_PKCS1);
    params.insert("sign".into(), sign);
    encode_params(&params, plus_spaces)
}

/// A valid orderString for `out_trade_no` of `total_amount`.
pub(super) fn order_string(out_trade_no: &str, total_amount: &str, notify_url: &str) -> String {
    let biz = json!({
        "out_trade_no": out_trade_no,
        "total_amount": total_amount,
        "subject": "咖啡 拿铁 {大杯}",
        "product_code": "QUICK_MSECURITY_PAY",
        "timeout_express": "30m",
        "passback_params": "table%3D7",
    });
    sign_encode(app_pay_params(&biz, notify_url), true)
}

pub(super) async fn call(
    sim: &AlipaySimulator,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> SimResponse {
    let request = SimRequest {
        method: method.into(),
        path: path.into(),
        base: "http://sandbox.test".into(),
        query: query.into(),
        headers: Vec::new(),
        body: bytes::Bytes::copy_from_slice(body),
        tls: None,
    };
    sim.handle(request).await
}

pub(super) fn json_of(response: &SimResponse) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&response.body)))
}

pub(super) async fn control(sim: &AlipaySimulator, path: &str, body: Value) -> (u16, Value) {
    let response = call(sim, "POST", path, "", body.to_string().as_bytes()).await;
    (response.status, json_of(&response))
}

/// Opens (and by default pays) an orderString in the cashier; asserts it was accepted.
pub(super) async fn cashier(sim: &AlipaySimulator, order_string: &str, extra: Value) -> Value {
    let mut command = json!({ "order_string": order_string });
    if let (Some(command), Value::Object(extra)) = (command.as_object_mut(), extra) {
        command.extend(extra);
    }
    let (status, answer) = control(sim, "/control/cashier", command).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Common gateway params for `method` with `biz_content`, timestamped now.
pub(super) fn gateway_params(method: &str, biz: &Value) -> Params {
    params(&[
        ("app_id", APP_ID),
        ("method", method),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("version", "1.0"),
        ("timestamp", &beijing_timestamp(0)),
        ("biz_content", &biz.to_string()),
    ])
}

/// A gateway answer: the raw body, its inner response object, and whether its `sign` verifies
/// over the exact inner text.
pub(super) struct Answer {
    pub(super) raw: String,
    pub(super) inner: Value,
    pub(super) sign_verifies: bool,
}

impl Answer {
    pub(super) fn code(&self) -> &str {
        self.inner["code"].as_str().unwrap()
    }

    pub(super) fn sub_code(&self) -> &str {
        self.inner["sub_code"].as_str().unwrap_or_default()
    }

    pub(super) fn field(&self, name: &str) -> &str {
        self.inner[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {}", self.raw))
    }
}

/// Posts already-signed params (all in the form body).
pub(super) async fn post_gateway(sim: &AlipaySimulator, query: &str, body: &str) -> Answer {
    let response = call(sim, "POST", "/gateway.do", query, body.as_bytes()).await;
    assert_eq!(response.status, 200);
    read_answer(&String::from_utf8(response.body).unwrap())
}

/// Signs and posts a gateway call.
pub(super) async fn gateway(sim: &AlipaySimulator, method: &str, biz: Value) -> Answer {
    post_gateway(sim, "", &sign_encode(gateway_params(method, &biz), true)).await
}

/// Finds the response object the Java SDK way: the text from the first `{` after
/// `"<key>"` to its matching `}`, tracking strings and escapes.
pub(super) fn read_answer(raw: &str) -> Answer {
    let parsed: Value = serde_json::from_str(raw).unwrap();
    let key = parsed
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.ends_with("_response"))
        .unwrap()
        .clone();
    let start = raw.find(&format!("\"{key}\"")).unwrap() + key.len() + 2;
    let open = start + raw[start..].find('{').unwrap();
    let (mut depth, mut in_string, mut escaped, mut end) = (0, false, false, None);
    for (i, c) in raw[open..].char_indices() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => in_string = true,
            (false, _, '{') => depth += 1,
            (false, _, '}') => {
                depth -= 1;
                if depth == 0 {
                    end = Some(open + i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let content = &raw[open..end.unwrap()];
    let sign = parsed["sign"].as_str().unwrap_or_default();
    Answer {
        raw: raw.to_owned(),
        inner: parsed[&key].clone(),
        sign_verifies: rsa2_verifies(&platform_key(), content, sign),
    }
}

/// A merchant notify endpoint on 127.0.0.1 (tokio): records every body and answers `status`
/// with `reply`.
pub(super) struct FakeMerchant {
    pub(super) url: String,
    pub(super) received: Arc<Mutex<Vec<String>>>,
}

impl FakeMerchant {
    pub(super) fn bodies(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `count` bodies arrived (background deliveries), at most 5 s.
    pub(super) async fn wait_for(&self, count: usize) -> Vec<String> {
        for _ in 0..100 {
            let bodies = self.bodies();
            if bodies.len() >= count {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} notifications, got {:?}", self.bodies());
    }
}

pub(super) async fn fake_merchant(status: u16, reply: &'static str) -> FakeMerchant {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/notify/demo/alipay_app",
        listener.local_addr().unwrap()
    );
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let body = read_http_body(&mut stream).await;
                sink.lock().unwrap().push(body);
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    FakeMerchant { url, received }
}

async fn read_http_body(stream: &mut tokio::net::TcpStream) -> String {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            return String::new();
        }
        data.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            assert!(
                head.contains("content-type: application/x-www-form-urlencoded; charset=utf-8"),
                "{head}"
            );
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return String::from_utf8(data[end + 4..end + 4 + length].to_vec()).unwrap();
            }
        }
    }
}
