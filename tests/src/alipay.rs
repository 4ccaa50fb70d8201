//! The tests' own Alipay helpers: form handling and RSA2 with the `rsa` crate, apart from the
//! provider crate (aws-lc-rs) and the simulator's code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::Engine;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use sha2::Sha256;

use crate::{Gateway, TestTenant};

/// The sandbox's stand-in for Alipay's platform key (signs notifications).
const ALIPAY_PRIVATE: &str =
    include_str!("../../providers/alipay-app/sandbox-keys/alipay_sandbox_private.pem");
/// The test app key's public half.
const APP_PUBLIC: &str = include_str!("../../fixtures/vectors/app_public.pem");

/// Decode a form body exactly once.
pub fn parse_form(body: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// Encode a form body.
pub fn to_form(params: &BTreeMap<String, String>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn content(params: &BTreeMap<String, String>, drop: &[&str]) -> String {
    params
        .iter()
        .filter(|(k, v)| !drop.contains(&k.as_str()) && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Re-sign a notification (rsaCheckV1 content) with the sandbox Alipay key, after changing fields.
pub fn resign_notification(params: &mut BTreeMap<String, String>) {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(ALIPAY_PRIVATE)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(ALIPAY_PRIVATE))
        .unwrap();
    let signer = SigningKey::<Sha256>::new(key);
    let sig = signer.sign(content(params, &["sign", "sign_type"]).as_bytes());
    params.insert(
        "sign".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    );
}

/// Verify an orderString's signature with the app public key, independently.
pub fn order_string_verifies(order_string: &str) -> bool {
    let params = parse_form(order_string);
    let Some(sign) = params.get("sign") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(sign) else {
        return false;
    };
    let key =
        VerifyingKey::<Sha256>::new(rsa::RsaPublicKey::from_public_key_pem(APP_PUBLIC).unwrap());
    let Ok(sig) = Signature::try_from(raw.as_slice()) else {
        return false;
    };
    key.verify(content(&params, &["sign"]).as_bytes(), &sig)
        .is_ok()
}

/// Create an Alipay order; returns (out_trade_no, response).
pub async fn create_order(gw: &Gateway, tenant: &str, amount: i64) -> (String, serde_json::Value) {
    let no = crate::wechat::trade_no();
    let (status, body) = gw
        .post(
            tenant,
            "/v1/orders",
            &serde_json::json!({
                "provider": "alipay_app", "out_trade_no": no, "amount": amount, "description": "咖啡 Coffee + cake & tea",
            }),
        )
        .await;
    assert_eq!(status, 201, "create: {body}");
    (no, body)
}

/// The orderString of a create response.
pub fn order_string(created: &serde_json::Value) -> String {
    created["client_payment"]["alipay_app"]["order_string"]
        .as_str()
        .expect("order_string")
        .to_owned()
}

/// Hand the orderString to the sandbox cashier (as the Alipay app would) and pay.
pub async fn cashier(gw: &Gateway, order_string: &str, notify: &str) -> serde_json::Value {
    let (status, body) = gw
        .sandbox_of(
            "alipay_app",
            "/control/cashier",
            &serde_json::json!({ "order_string": order_string, "pay": true, "notify": notify }),
        )
        .await;
    assert_eq!(status, 200, "cashier: {body}");
    body
}

/// POST a notification body to a tenant's Alipay notify URL.
pub async fn notify(gw: &Gateway, tenant_id: &str, body: &str) -> (u16, String) {
    gw.post_raw(
        &format!("/notify/{tenant_id}/alipay_app"),
        "application/x-www-form-urlencoded; charset=utf-8",
        body.as_bytes().to_vec(),
    )
    .await
}

/// The tenant's Alipay identity, for assertions.
pub fn ids(t: &TestTenant) -> (String, String) {
    (t.alipay_app_id(), t.seller_id())
}
