//! The tests' own WeChat v2 signing and XML code, written apart from the provider crate and the
//! simulator, so that a bug shared by both cannot make a test pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::{Gateway, TestTenant, wechat_api_key};

/// `k=v&…&key=<key>` over non-empty params except `sign`, then MD5 or HMAC-SHA256, upper hex.
pub fn sign(params: &BTreeMap<String, String>, key: &str, sign_type: &str) -> String {
    let mut s = String::new();
    for (k, v) in params {
        if k == "sign" || v.is_empty() {
            continue;
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('&');
    }
    s.push_str("key=");
    s.push_str(key);
    match sign_type {
        "MD5" => hex::encode_upper(Md5::digest(s.as_bytes())),
        "HMAC-SHA256" => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(s.as_bytes());
            hex::encode_upper(mac.finalize().into_bytes())
        }
        other => panic!("unknown sign type {other}"),
    }
}

/// Parse a flat `<xml>` document.
pub fn parse_xml(xml: &str) -> BTreeMap<String, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut value = String::new();
    loop {
        match reader.read_event().expect("xml") {
            Event::Start(e) => {
                let name = e.name().as_ref().to_owned();
                if name != "xml" {
                    current = Some(name);
                    value.clear();
                }
            }
            Event::Text(t) => value.push_str(&t),
            Event::CData(c) => value.push_str(&c),
            Event::GeneralRef(r) => {
                let resolved = match &*r {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unexpected entity {other:?}"),
                };
                value.push_str(resolved);
            }
            Event::End(_) => {
                if let Some(k) = current.take() {
                    out.insert(k, std::mem::take(&mut value));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Build a flat `<xml>` document with CDATA values.
pub fn to_xml(params: &BTreeMap<String, String>) -> String {
    let mut s = String::from("<xml>");
    for (k, v) in params {
        s.push_str(&format!(
            "<{k}><![CDATA[{}]]></{k}>",
            v.replace("]]>", "]]]]><![CDATA[>")
        ));
    }
    s.push_str("</xml>");
    s
}

/// Re-sign a notification after changing fields, with the tenant's key and sign type.
pub fn resign(params: &mut BTreeMap<String, String>, tenant: &TestTenant) {
    let st = params
        .get("sign_type")
        .cloned()
        .unwrap_or_else(|| tenant.sign_type.clone());
    let s = sign(params, &wechat_api_key(&tenant.id), &st);
    params.insert("sign".to_owned(), s);
}

/// The exact success acknowledgement.
pub const SUCCESS_ACK: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// Log in through the gateway with a fresh code; returns the openid.
pub async fn login(gw: &Gateway, tenant: &str) -> String {
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = gw
        .post(
            tenant,
            "/v1/wechat_miniprogram/sessions",
            &serde_json::json!({ "code": code }),
        )
        .await;
    assert_eq!(status, 200, "login: {body}");
    body["openid"].as_str().expect("openid").to_owned()
}

/// A fresh out_trade_no.
pub fn trade_no() -> String {
    format!("T{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}

/// Create an order of `amount` fen for a freshly logged-in payer; returns (out_trade_no, response).
pub async fn create_order(gw: &Gateway, tenant: &str, amount: i64) -> (String, serde_json::Value) {
    let openid = login(gw, tenant).await;
    let no = trade_no();
    let (status, body) = gw
        .post(
            tenant,
            "/v1/orders",
            &serde_json::json!({
                "provider": "wechat_miniprogram",
                "out_trade_no": no,
                "amount": amount,
                "description": "Flat white",
                "payer": { "openid": openid },
            }),
        )
        .await;
    assert_eq!(status, 201, "create: {body}");
    (no, body)
}

/// Ask the sandbox to pay an order; `notify` is deliver, drop, duplicate or return.
pub async fn pay(
    gw: &Gateway,
    tenant: &TestTenant,
    out_trade_no: &str,
    notify: &str,
) -> serde_json::Value {
    let (status, body) = gw
        .sandbox(
            "/control/pay",
            &serde_json::json!({ "out_trade_no": out_trade_no, "mch_id": tenant.mch_id, "notify": notify }),
        )
        .await;
    assert_eq!(status, 200, "sandbox pay: {body}");
    body
}

/// POST a notification body to a tenant's WeChat notify URL.
pub async fn notify(gw: &Gateway, tenant_id: &str, xml: &str) -> (u16, String) {
    gw.post_raw(
        &format!("/notify/{tenant_id}/wechat_miniprogram"),
        "text/xml",
        xml.as_bytes().to_vec(),
    )
    .await
}

/// `req_info` of a refund notification: `base64(AES-256-ECB(hex(MD5(api_key)), PKCS#7(xml)))`,
/// the tests' own code (PROTOCOLS §B.10), for notifications the tests change.
pub fn encrypt_req_info(plaintext: &str, api_key: &str) -> String {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    use base64::Engine;
    use md5::{Digest, Md5};
    let key = hex::encode(Md5::digest(api_key.as_bytes()));
    let cipher = aes::Aes256::new_from_slice(key.as_bytes()).expect("a 32-byte key");
    let mut data = plaintext.as_bytes().to_vec();
    let pad = 16 - data.len() % 16;
    data.extend(std::iter::repeat_n(u8::try_from(pad).expect("pad"), pad));
    for chunk in data.chunks_exact_mut(16) {
        let block = <&mut aes::Block>::try_from(chunk).expect("a block");
        cipher.encrypt_block(block);
    }
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_signer_matches_the_published_example() {
        let params: BTreeMap<String, String> = [
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            sign(&params, "192006250b4c09247ec02edce69f6a2d", "MD5"),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(&params, "192006250b4c09247ec02edce69f6a2d", "HMAC-SHA256"),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn xml_round_trips_with_cdata_terminators() {
        let params: BTreeMap<String, String> = [
            ("a".to_owned(), "x]]>y".to_owned()),
            ("b".to_owned(), "1 & 2".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(parse_xml(&to_xml(&params)), params);
    }
}
