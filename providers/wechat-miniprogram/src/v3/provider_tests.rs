//! The `wechat_miniprogram` provider with v3 credentials: new orders go to v3, each order keeps
//! its protocol, and a notification signed in `Wechatpay-*` headers is verified as v3.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    BuildContext, IncomingNotification, NotificationRejection, NotifyChannel, OrderLookup,
    OrderRef, OrderSnapshot, PaymentProvider, ProviderEvent,
};
use serde_json::{Value, json};

use crate::WechatMiniprogram;
use crate::test_server::{Answer, TestServer};
use crate::v3::crypto::{MerchantKey, response_message};
use crate::v3::test_support::*;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/wechatpay-v3")
}

fn table(base: &str, extra: &str) -> toml::Table {
    let fixtures = v();
    format!(
        "appid = \"wxd930ea5d5a258f4f\"\nmch_id = \"1900000109\"\n\
         api_key = \"192006250b4c09247ec02edce69f6a2d\"\napi_base = \"{base}\"\n\
         api_version = \"v3\"\napiv3_key = \"{apiv3}\"\nclient_key = \"merchant_key.pem\"\n\
         merchant_serial_no = \"{serial}\"\n{extra}",
        apiv3 = str_of(&fixtures, "apiv3_key"),
        serial = str_of(&fixtures, "merchant_serial_no"),
    )
    .parse()
    .unwrap()
}

const PUBLIC_KEY_MODE: &str = "wechatpay_public_key = \"wechatpay_public_key.pem\"\nwechatpay_public_key_id = \"PUB_KEY_ID_0119000001092025120600000000000001\"\n";

fn build(table: &toml::Table) -> Result<WechatMiniprogram, Vec<String>> {
    let ctx = BuildContext {
        base_dir: fixtures_dir(),
        http_timeout: Duration::from_secs(5),
    };
    WechatMiniprogram::new(table, &ctx).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    })
}

fn order(no: &str, provider_data: Value) -> OrderRef {
    OrderRef {
        out_trade_no: no.to_owned(),
        provider_trade_no: None,
        amount: Fen::new(150),
        provider_data,
    }
}

#[tokio::test]
async fn new_orders_go_to_v3_and_each_order_keeps_its_protocol() {
    let server = TestServer::start(|seen| {
        if seen.target == "/v3/pay/transactions/jsapi" {
            answer(200, r#"{"prepay_id":"wx0616"}"#, Signing::PublicKey)
        } else if seen.target.starts_with("/v3/") {
            Answer::Respond(
                404,
                r#"{"code":"ORDER_NOT_EXIST","message":"x"}"#.to_owned(),
            )
        } else {
            Answer::Respond(500, "v2 here".to_owned())
        }
    })
    .await;
    let p = build(&table(&server.base, PUBLIC_KEY_MODE)).unwrap();
    let created = p.create_payment(&create_request("PB1", 150)).await.unwrap();
    assert_eq!(created.client_payment["signType"], "RSA");
    assert_eq!(created.provider_data["api_version"], "v3");

    // A v3 order asks v3; an order made in v2 before the switch still asks v2.
    p.query_payment(&order("PB1", created.provider_data.clone()))
        .await
        .unwrap();
    let _ = p
        .query_payment(&order("OLD1", json!({"sign_type": "MD5"})))
        .await;
    let targets: Vec<String> = server.requests().iter().map(|s| s.target.clone()).collect();
    assert_eq!(
        targets,
        vec![
            "/v3/pay/transactions/jsapi".to_owned(),
            "/v3/pay/transactions/out-trade-no/PB1?mchid=1900000109".to_owned(),
            "/pay/orderquery".to_owned(),
        ]
    );
}

struct Orders;

#[async_trait]
impl OrderLookup for Orders {
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        (out_trade_no == "PB2026120600001").then(|| OrderSnapshot {
            amount: Fen::new(150),
            provider_data: json!({"api_version": "v3"}),
        })
    }
    async fn find_refund(&self, _: &str, _: &str) -> Option<Fen> {
        None
    }
}

/// The fixtures' payment notification, signed now with the WeChat Pay public key.
fn fresh_notification() -> (Vec<(String, String)>, String) {
    let fixtures = v();
    let original = fixtures["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["mode"] == "public_key" && n["body"].as_str().unwrap().contains("TRANSACTION"))
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let ts = Utc::now().timestamp().to_string();
    let nonce = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let signer = MerchantKey::from_pem(PUBLIC_KEY_SIGNER, "t").unwrap();
    let signature = signer
        .sign(&response_message(&ts, nonce, original.as_bytes()))
        .unwrap();
    let headers = vec![
        (
            "wechatpay-serial".to_owned(),
            str_of(&fixtures, "public_key_id"),
        ),
        ("wechatpay-signature".to_owned(), signature),
        ("wechatpay-timestamp".to_owned(), ts),
        ("wechatpay-nonce".to_owned(), nonce.to_owned()),
        (
            "wechatpay-signature-type".to_owned(),
            "WECHATPAY2-SHA256-RSA2048".to_owned(),
        ),
    ];
    (headers, original)
}

#[tokio::test]
async fn a_notification_signed_in_headers_is_verified_as_v3() {
    let p = build(&table("http://127.0.0.1:9", PUBLIC_KEY_MODE)).unwrap();
    let (headers, body) = fresh_notification();
    let n = IncomingNotification {
        channel: NotifyChannel::Payment,
        content_type: Some("application/json"),
        body: body.as_bytes(),
        headers: &headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    };
    let event = p.verify_notification(&n, &Orders).await.unwrap();
    assert!(
        matches!(event, ProviderEvent::Payment(ref e) if e.provider_trade_no == "4200000000202612060000000001")
    );

    // The same notification to a tenant without v3 keys is refused, not read as v2 XML.
    let v2_only: toml::Table = "appid = \"wxd930ea5d5a258f4f\"\nmch_id = \"1900000109\"\napi_key = \"192006250b4c09247ec02edce69f6a2d\"\n".parse().unwrap();
    let p2 = build(&v2_only).unwrap();
    assert!(matches!(
        p2.verify_notification(&n, &Orders).await,
        Err(NotificationRejection::Unsupported(_))
    ));
}

#[test]
fn v3_settings_are_checked_by_name() {
    let cases: [(&str, &str); 5] = [
        ("api_version", "api_version: must be \"v2\" or \"v3\""),
        ("", "wechatpay_public_key: API v3 needs a key"),
        (
            "wechatpay_public_key = \"wechatpay_public_key.pem\"\n",
            "wechatpay_public_key_id: required together",
        ),
        (
            "wechatpay_public_key = \"wechatpay_public_key.pem\"\nwechatpay_public_key_id = \"KEY1\"\n",
            "wechatpay_public_key_id: must start with PUB_KEY_ID_",
        ),
        (
            "platform_certificates = \"yes\"\n",
            "platform_certificates: must be true or false",
        ),
    ];
    for (extra, expected) in cases {
        let mut t = table(
            "http://127.0.0.1:9",
            if extra == "api_version" { "" } else { extra },
        );
        if extra == "api_version" {
            t.insert(
                "api_version".to_owned(),
                toml::Value::String("v4".to_owned()),
            );
        }
        let errors = build(&t).err().unwrap_or_default();
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{extra:?}: {errors:?}"
        );
    }
    // api_version = "v3" without the APIv3 key.
    let mut t = table("http://127.0.0.1:9", PUBLIC_KEY_MODE);
    t.remove("apiv3_key");
    let errors = build(&t).err().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.starts_with("apiv3_key: required")),
        "{errors:?}"
    );
    // Certificate mode alone is enough.
    build(&table(
        "http://127.0.0.1:9",
        "platform_certificates = true\n",
    ))
    .unwrap();
}

/// A v3 tenant may go without the v2 key; its v2 work is then refused by name before anything
/// is signed, while a v2 tenant still needs the key.
#[tokio::test]
async fn a_v3_tenant_without_api_key_refuses_only_v2_work() {
    let server = TestServer::start(|seen| {
        if seen.target.starts_with("/v3/") {
            Answer::Respond(
                404,
                r#"{"code":"ORDER_NOT_EXIST","message":"x"}"#.to_owned(),
            )
        } else {
            Answer::Respond(500, "no v2 call may be made".to_owned())
        }
    })
    .await;
    let mut t = table(&server.base, PUBLIC_KEY_MODE);
    t.remove("api_key");
    let p = build(&t).unwrap();
    let v2_order = order("PB2", json!({"sign_type": "MD5", "prepay_id": "wx1"}));
    match p.query_payment(&v2_order).await {
        Err(paybridge_core::provider::ProviderError::Misconfigured { field, .. }) => {
            assert_eq!(field, "api_key");
        }
        other => panic!("expected api_key misconfigured, got {other:?}"),
    }
    let v3_order = order("PB3", json!({"api_version": "v3", "prepay_id": "wx3"}));
    assert!(p.query_payment(&v3_order).await.is_ok());
    let rejection = p
        .verify_notification(
            &IncomingNotification {
                channel: NotifyChannel::Payment,
                content_type: Some("text/xml"),
                body: b"<xml><return_code>SUCCESS</return_code></xml>",
                headers: &[],
            },
            &Orders,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(rejection, NotificationRejection::Unsupported(ref m) if m.contains("api_key")),
        "{rejection:?}"
    );

    let mut v2 = table(&server.base, PUBLIC_KEY_MODE);
    v2.remove("api_key");
    v2.insert(
        "api_version".to_owned(),
        toml::Value::String("v2".to_owned()),
    );
    let errors = build(&v2).err().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.starts_with("api_key: required")),
        "{errors:?}"
    );
}
