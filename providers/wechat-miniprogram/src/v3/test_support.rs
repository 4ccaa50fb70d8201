//! Test helpers shared by the v3 tests: a local server playing WeChat Pay with the fixtures'
//! keys, and a client for it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::test_server::Answer;
use crate::v3::certificates::PlatformCertificates;
use crate::v3::client::{V3Client, V3Setup};
use crate::v3::crypto::{MerchantKey, VerifyingKey, response_message};

pub const VECTORS: &str = include_str!("../../../../fixtures/wechatpay-v3/vectors.json");
pub const MERCHANT_KEY: &str = include_str!("../../../../fixtures/wechatpay-v3/merchant_key.pem");
pub const PUBLIC_KEY: &str =
    include_str!("../../../../fixtures/wechatpay-v3/wechatpay_public_key.pem");
pub const PUBLIC_KEY_SIGNER: &str =
    include_str!("../../../../fixtures/wechatpay-v3/wechatpay_public_key_private.pem");
pub const PLATFORM_SIGNER: &str =
    include_str!("../../../../fixtures/wechatpay-v3/platform_key.pem");
pub const PLATFORM_CERT: &str = include_str!("../../../../fixtures/wechatpay-v3/platform_cert.pem");

pub fn v() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

pub fn str_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap().to_owned()
}

/// How the server signs its answers.
#[derive(Clone, Copy, PartialEq)]
pub enum Signing {
    /// With the WeChat Pay public key.
    PublicKey,
    /// With the platform certificate's key.
    Certificate,
    /// Signed, then a byte added to the body.
    Tampered,
    /// No `Wechatpay-*` headers.
    Unsigned,
}

/// A signed answer, as WeChat Pay sends it.
pub fn answer(status: u16, body: &str, signing: Signing) -> Answer {
    let fixtures = v();
    let (signer, serial) = match signing {
        Signing::Certificate => (PLATFORM_SIGNER, str_of(&fixtures, "platform_serial_no")),
        _ => (PUBLIC_KEY_SIGNER, str_of(&fixtures, "public_key_id")),
    };
    let signer = MerchantKey::from_pem(signer, "test").unwrap();
    let ts = Utc::now().timestamp().to_string();
    let nonce = "a7f3c2e1b4d5968708192a3b4c5d6e7f";
    let signature = signer
        .sign(&response_message(&ts, nonce, body.as_bytes()))
        .unwrap();
    let sent = if signing == Signing::Tampered {
        format!("{body} ")
    } else {
        body.to_owned()
    };
    let mut headers = vec![
        ("Wechatpay-Serial".to_owned(), serial),
        ("Wechatpay-Signature".to_owned(), signature),
        ("Wechatpay-Timestamp".to_owned(), ts),
        ("Wechatpay-Nonce".to_owned(), nonce.to_owned()),
        (
            "Wechatpay-Signature-Type".to_owned(),
            "WECHATPAY2-SHA256-RSA2048".to_owned(),
        ),
    ];
    if signing == Signing::Unsigned {
        headers.clear();
    }
    Answer::RespondWith(status, headers, sent)
}

/// The certificate listing the fixtures' sealed certificate makes.
pub fn listing() -> String {
    let fixtures = v();
    let r = fixtures["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["associated_data"] == "certificate")
        .unwrap()
        .clone();
    json!({"data": [{
        "serial_no": fixtures["platform_serial_no"],
        "effective_time": "2026-01-01T08:00:00+08:00",
        "expire_time": "2036-01-01T08:00:00+08:00",
        "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": r["nonce"],
            "associated_data": "certificate", "ciphertext": r["ciphertext"]},
    }]})
    .to_string()
}

pub fn client(base: &str, public_key: bool, certificates: bool, timeout: Duration) -> V3Client {
    let fixtures = v();
    V3Client::new(V3Setup {
        http: reqwest::Client::builder().timeout(timeout).build().unwrap(),
        base: base.to_owned(),
        mchid: str_of(&fixtures, "mchid"),
        serial_no: str_of(&fixtures, "merchant_serial_no"),
        key: Arc::new(MerchantKey::from_pem(MERCHANT_KEY, "client_key").unwrap()),
        public_key: public_key.then(|| {
            (
                str_of(&fixtures, "public_key_id"),
                VerifyingKey::from_public_key_pem(PUBLIC_KEY, "wechatpay_public_key").unwrap(),
            )
        }),
        certificates: certificates.then(|| {
            Arc::new(PlatformCertificates::new(
                fixtures["apiv3_key"].as_str().unwrap().as_bytes(),
                Vec::new(),
            ))
        }),
    })
}

/// A minimal create request: `out_trade_no` for `amount` fen, paid by openid `o`.
pub fn create_request(out_trade_no: &str, amount: i64) -> paybridge_core::provider::CreatePayment {
    paybridge_core::provider::CreatePayment {
        out_trade_no: out_trade_no.to_owned(),
        amount: paybridge_core::money::Fen::new(amount),
        description: "d".to_owned(),
        payer_openid: Some("o".to_owned()),
        client_ip: None,
        expires_at: Utc::now(),
        attach: None,
        notify_url: "https://gw.example/n".to_owned(),
        previous_provider_data: None,
    }
}
