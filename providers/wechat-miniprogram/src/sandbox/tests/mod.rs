//! Tests through `handle`, with requests signed by a signer written here, independently of both
//! the simulator's and the client's.

mod control;
mod faults;
mod login;
mod pay_api;
mod refunds;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use paybridge_core::provider::{SimRequest, SimResponse, Simulator};

use super::WechatSimulator;

pub(super) const APPID: &str = "wxd930ea5d5a258f4f";
pub(super) const MCH_ID: &str = "10000100";
pub(super) const API_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
pub(super) const APP_SECRET: &str = "app-secret-1";

/// A simulator that knows the documentation example's merchant.
pub(super) fn simulator() -> WechatSimulator {
    let sim = WechatSimulator::new(Duration::from_millis(300));
    let table = format!(
        "enabled = true\nappid = \"{APPID}\"\nmch_id = \"{MCH_ID}\"\napi_key = \"{API_KEY}\"\napp_secret = \"{APP_SECRET}\"\nsign_type = \"MD5\""
    );
    sim.register_merchant(&table.parse().unwrap(), std::path::Path::new("."));
    sim
}

/// The test's own signer: sort, drop `sign` and empties, join, append the key, hash.
pub(super) fn test_sign(params: &BTreeMap<String, String>, key: &str, hmac: bool) -> String {
    let mut pairs: Vec<(&String, &String)> = params
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let message = format!("{}&key={key}", joined.join("&"));
    if hmac {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        hex::encode_upper(mac.finalize().into_bytes())
    } else {
        hex::encode_upper(Md5::digest(message.as_bytes()))
    }
}

pub(super) fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A signed request body; `sign_type` is sent as given (None: absent, so MD5).
pub(super) fn signed_body(
    mut fields: BTreeMap<String, String>,
    key: &str,
    sign_type: Option<&str>,
) -> Vec<u8> {
    if let Some(sign_type) = sign_type {
        fields.insert("sign_type".into(), sign_type.into());
    }
    let sign = test_sign(&fields, key, sign_type == Some("HMAC-SHA256"));
    fields.insert("sign".into(), sign);
    let mut xml = String::from("<xml>\n");
    for (k, v) in &fields {
        xml.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>\n"));
    }
    xml.push_str("</xml>");
    xml.into_bytes()
}

pub(super) async fn call(
    sim: &WechatSimulator,
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

pub(super) fn xml_of(response: &SimResponse) -> BTreeMap<String, String> {
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    super::xml::parse(&response.body).unwrap()
}

pub(super) fn json_of(response: &SimResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap()
}

/// Asserts the answer's `sign` verifies with the test signer.
pub(super) fn assert_signed(fields: &BTreeMap<String, String>, hmac: bool) {
    assert_eq!(
        fields["sign"],
        test_sign(fields, API_KEY, hmac),
        "{fields:?}"
    );
}

/// Logs a user in and returns the openid.
pub(super) async fn login(sim: &WechatSimulator, code: &str) -> String {
    let query =
        format!("appid={APPID}&secret={APP_SECRET}&js_code={code}&grant_type=authorization_code");
    let answer = json_of(&call(sim, "GET", "/sns/jscode2session", &query, b"").await);
    answer["openid"].as_str().unwrap().to_owned()
}

/// A complete JSAPI unifiedorder request for `openid`.
pub(super) fn order_fields(out_trade_no: &str, openid: &str) -> BTreeMap<String, String> {
    params(&[
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ("body", "咖啡-拿铁"),
        ("out_trade_no", out_trade_no),
        ("total_fee", "1990"),
        ("spbill_create_ip", "127.0.0.1"),
        (
            "notify_url",
            "https://merchant.example/notify/demo/wechat_miniprogram",
        ),
        ("trade_type", "JSAPI"),
        ("openid", openid),
        ("attach", "table=7"),
    ])
}

pub(super) async fn post(
    sim: &WechatSimulator,
    path: &str,
    body: Vec<u8>,
) -> BTreeMap<String, String> {
    xml_of(&call(sim, "POST", path, "", &body).await)
}

pub(super) async fn control(
    sim: &WechatSimulator,
    path: &str,
    body: serde_json::Value,
) -> SimResponse {
    call(sim, "POST", path, "", body.to_string().as_bytes()).await
}

/// A merchant notify endpoint on 127.0.0.1 (plain std threads): records every body it gets and
/// answers `status` with `reply`.
pub(super) struct FakeMerchant {
    pub(super) url: String,
    pub(super) received: Arc<Mutex<Vec<String>>>,
    /// The request heads (request line and headers), in the same order as `received`.
    pub(super) heads: Arc<Mutex<Vec<String>>>,
}

pub(super) fn fake_merchant(status: u16, reply: &'static str) -> FakeMerchant {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/notify/demo/wechat_miniprogram",
        listener.local_addr().unwrap()
    );
    let received = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let head_sink = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let sink = sink.clone();
            let head_sink = head_sink.clone();
            std::thread::spawn(move || {
                let (head, body) = read_http_request(&mut stream);
                // Both under one lock order: heads first, then bodies.
                let mut heads = head_sink.lock().unwrap();
                sink.lock().unwrap().push(body);
                heads.push(head);
                drop(heads);
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    FakeMerchant {
        url,
        received,
        heads,
    }
}

fn read_http_request(stream: &mut std::net::TcpStream) -> (String, String) {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let body = String::from_utf8(data[end + 4..end + 4 + length].to_vec()).unwrap();
                return (text[..end].to_owned(), body);
            }
        }
    }
    (String::new(), String::new())
}

pub(super) const ACK_SUCCESS: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

#[test]
fn the_test_signer_matches_the_published_vector() {
    let fields = params(&[
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("device_info", "1000"),
        ("body", "test"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
    ]);
    assert_eq!(
        test_sign(&fields, API_KEY, false),
        "9A0A8659F005D6984697E2CA0A9CF3B7"
    );
    assert_eq!(
        test_sign(&fields, API_KEY, true),
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    );
}
