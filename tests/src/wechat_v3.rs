//! The tests' own WeChat Pay v3 code (RSA with the `rsa` crate, AES-GCM with aws-lc-rs), written
//! apart from the provider crate and the simulator: v3 tenants, the `paySign` check, and forged
//! notifications signed with the sandbox's WeChat keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

use crate::{Gateway, TestTenant};

/// The sandbox's WeChat keys and the merchant certificate, as files.
pub const SANDBOX_KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../providers/wechat-miniprogram/sandbox-keys"
);
const MERCHANT_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/tenants/certs/apiclient_key.pem"
);

/// The APIv3 key of a test tenant (32 characters).
pub fn apiv3_key(tenant: &str) -> String {
    format!("{:0<32}", format!("v3{tenant}"))
        .chars()
        .take(32)
        .collect()
}

/// The id the sandbox gives a merchant's WeChat Pay public key.
pub fn public_key_id(mch_id: &str) -> String {
    format!("PUB_KEY_ID_0114{mch_id}00000000000001")
}

/// The `[providers.wechat_miniprogram]` keys of v3 in public-key mode.
pub fn public_key_settings(mch_id: &str) -> String {
    format!(
        "wechatpay_public_key = \"{SANDBOX_KEYS}/wechatpay_sandbox_pub_key.pem\"\nwechatpay_public_key_id = \"{}\"\n",
        public_key_id(mch_id)
    )
}

/// A WeChat tenant whose new orders use API v3; `settings` picks the key mode (see
/// [`public_key_settings`], or `platform_certificates = true`).
pub fn tenant(id: &str, n: u32, settings: &str) -> TestTenant {
    let mut t = TestTenant::wechat(id, n, "HMAC-SHA256");
    t.wechat_extra = format!(
        "api_version = \"v3\"\napiv3_key = \"{}\"\n{settings}",
        apiv3_key(id)
    );
    t
}

/// Whether `paySign` verifies over `appId\ntimeStamp\nnonceStr\npackage\n` with the merchant
/// key, and `signType` is RSA.
pub fn pay_sign_verifies(appid: &str, params: &serde_json::Value) -> bool {
    pay_sign_verifies_with(MERCHANT_KEY, appid, params)
}

/// [`pay_sign_verifies`] with the merchant key in this PEM file (PKCS#8).
pub fn pay_sign_verifies_with(key_file: &str, appid: &str, params: &serde_json::Value) -> bool {
    let key = RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(key_file).unwrap()).unwrap();
    let verifying = VerifyingKey::<Sha256>::new(RsaPublicKey::from(&key));
    let text = |k: &str| params[k].as_str().unwrap_or_default().to_owned();
    let message = format!(
        "{appid}\n{}\n{}\n{}\n",
        text("timeStamp"),
        text("nonceStr"),
        text("package")
    );
    let Ok(bytes) = STANDARD.decode(text("paySign")) else {
        return false;
    };
    let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
        return false;
    };
    params["signType"] == "RSA" && verifying.verify(message.as_bytes(), &signature).is_ok()
}

/// Which of the sandbox's WeChat keys signs a forged notification.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// The public key's private half (serial `PUB_KEY_ID_…`).
    PublicKey,
    /// The platform certificate's key.
    Platform,
}

/// The sandbox platform certificate's serial.
pub const PLATFORM_SERIAL: &str = "6B3F0A5D2C7E41A98F1B2C3D4E5F60718293A4B5";

/// A v3 notification as a test builds it: change any part before [`Forged::seal_and_sign`].
#[derive(Debug, Clone)]
pub struct Forged {
    /// The resource's plaintext.
    pub resource: serde_json::Value,
    /// `associated_data` as declared in the envelope.
    pub declared_aad: String,
    /// The AAD it is really sealed with.
    pub sealed_aad: String,
    /// `event_type`.
    pub event_type: String,
    /// The APIv3 key it is sealed with.
    pub apiv3_key: String,
    /// The signing key.
    pub key: Key,
    /// `Wechatpay-Serial`.
    pub serial: String,
    /// `Wechatpay-Timestamp` (seconds).
    pub timestamp: i64,
}

impl Forged {
    /// A genuine `TRANSACTION.SUCCESS` for an order of `t`, signed with the public key.
    pub fn payment(t: &TestTenant, out_trade_no: &str, amount: i64, transaction_id: &str) -> Self {
        Forged {
            resource: serde_json::json!({
                "mchid": t.mch_id, "appid": t.appid, "out_trade_no": out_trade_no,
                "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": "SUCCESS",
                "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                "success_time": "2026-12-06T16:00:05+08:00",
                "payer": {"openid": "o-test"},
                "amount": {"total": amount, "payer_total": amount, "currency": "CNY", "payer_currency": "CNY"},
            }),
            declared_aad: "transaction".to_owned(),
            sealed_aad: "transaction".to_owned(),
            event_type: "TRANSACTION.SUCCESS".to_owned(),
            apiv3_key: apiv3_key(&t.id),
            key: Key::PublicKey,
            serial: public_key_id(&t.mch_id),
            timestamp: chrono::Utc::now().timestamp(),
        }
    }

    /// The body and the `Wechatpay-*` headers.
    pub fn seal_and_sign(&self) -> (String, Vec<(String, String)>) {
        let nonce = "r4nd0mN0nce1";
        let key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.apiv3_key.as_bytes()).unwrap());
        let mut sealed = self.resource.to_string().into_bytes();
        key.seal_in_place_append_tag(
            Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
            Aad::from(self.sealed_aad.as_bytes()),
            &mut sealed,
        )
        .unwrap();
        let body = serde_json::json!({
            "id": "EV-test", "create_time": "2026-12-06T16:00:06+08:00",
            "resource_type": "encrypt-resource", "event_type": self.event_type, "summary": "支付成功",
            "resource": {
                "original_type": self.declared_aad, "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": STANDARD.encode(&sealed), "associated_data": self.declared_aad,
                "nonce": nonce,
            },
        })
        .to_string();
        let header_nonce = "HEADERNONCE0123456789ABCDEF01234";
        let message = format!("{}\n{header_nonce}\n{body}\n", self.timestamp);
        let file = match self.key {
            Key::PublicKey => "wechatpay_sandbox_pub_key_private.pem",
            Key::Platform => "wechatpay_sandbox_platform_key.pem",
        };
        let private = RsaPrivateKey::from_pkcs8_pem(
            &std::fs::read_to_string(format!("{SANDBOX_KEYS}/{file}")).unwrap(),
        )
        .unwrap();
        let signature = SigningKey::<Sha256>::new(private).sign(message.as_bytes());
        let headers = vec![
            ("Wechatpay-Serial".to_owned(), self.serial.clone()),
            (
                "Wechatpay-Signature".to_owned(),
                STANDARD.encode(signature.to_bytes()),
            ),
            ("Wechatpay-Timestamp".to_owned(), self.timestamp.to_string()),
            ("Wechatpay-Nonce".to_owned(), header_nonce.to_owned()),
            (
                "Wechatpay-Signature-Type".to_owned(),
                "WECHATPAY2-SHA256-RSA2048".to_owned(),
            ),
        ];
        (body, headers)
    }
}

/// POST a v3 notification to a tenant's WeChat notify URL.
pub async fn notify(
    gw: &Gateway,
    tenant_id: &str,
    body: &str,
    headers: &[(String, String)],
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    gw.post_raw_with(
        &format!("/notify/{tenant_id}/wechat_miniprogram"),
        "application/json",
        &headers,
        body.as_bytes().to_vec(),
    )
    .await
}
