//! The orderString: D.4 through the whole builder, encoding, timeout and amount rules.

use std::time::Duration;

use chrono::TimeDelta;
use paybridge_core::provider::PaymentProvider;

use super::*;
use crate::AlipayApp;
use crate::keys::AlipayPublicKey;
use crate::notify::decode_form;
use crate::sign::request_sign_content;
use crate::test_support::{ctx, fixed_clock, fixture, provider, table, utc};

fn request(amount: i64, description: &str, attach: Option<&str>) -> CreatePayment {
    CreatePayment {
        out_trade_no: "20240101000001".to_owned(),
        amount: Fen::new(amount),
        description: description.to_owned(),
        payer_openid: None,
        client_ip: None,
        expires_at: utc("2024-01-01T04:30:00Z"),
        attach: attach.map(str::to_owned),
        notify_url: "https://example.com/notify/alipay".to_owned(),
        previous_provider_data: None,
    }
}

fn d4_config() -> AlipayConfig {
    crate::config::parse(
        &table(&[
            ("app_id", "2021000122671080"),
            (
                "private_key",
                &fixture("alipay-sdk/d4_app_private_pkcs8.pem"),
            ),
        ]),
        &ctx(Duration::from_secs(1)),
    )
    .expect("config")
}

fn biz(params: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::from_str(&params["biz_content"]).expect("biz_content JSON")
}

#[test]
fn d4_vector_comes_out_of_the_builder_exactly() {
    let now = utc("2024-01-01T04:00:00Z");
    let params =
        app_pay_params(&d4_config(), &request(1, "Test Order 1", None), now).expect("params");
    let content = request_sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(
        content,
        "app_id=2021000122671080&biz_content={\"out_trade_no\":\"20240101000001\",\"total_amount\":\"0.01\",\"subject\":\"Test Order 1\",\"product_code\":\"QUICK_MSECURITY_PAY\",\"timeout_express\":\"30m\"}&charset=utf-8&format=JSON&method=alipay.trade.app.pay&notify_url=https://example.com/notify/alipay&sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"
    );
    assert_eq!(params["sign"], crate::sign::tests::D4_SIGN);
    let order_string = encode_params(&params);
    assert!(
        order_string.contains("&timestamp=2024-01-01%2012%3A00%3A00&"),
        "{order_string}"
    );
    assert!(order_string.contains("notify_url=https%3A%2F%2Fexample.com%2Fnotify%2Falipay"));
    assert!(order_string.contains("%22subject%22%3A%22Test%20Order%201%22"));
    assert!(!order_string.contains('+') && !order_string.contains(' '));
}

#[test]
fn percent_encoding_keeps_only_unreserved_characters() {
    assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
    assert_eq!(percent_encode("a b+c&d=e%f"), "a%20b%2Bc%26d%3De%25f");
    assert_eq!(
        percent_encode("!*'()/:?#[]@$,;\"\\"),
        "%21%2A%27%28%29%2F%3A%3F%23%5B%5D%40%24%2C%3B%22%5C"
    );
    assert_eq!(percent_encode("语😀"), "%E8%AF%AD%F0%9F%98%80");
}

#[test]
fn timeout_express_is_whole_minutes_within_alipays_bounds() {
    let now = utc("2024-01-01T00:00:00Z");
    let at = |secs: i64| now + TimeDelta::seconds(secs);
    let minutes = |secs| timeout_express(now, at(secs));
    assert_eq!(minutes(7200).as_deref(), Some("120m"));
    assert_eq!(minutes(5459).as_deref(), Some("90m"));
    assert_eq!(minutes(300).as_deref(), Some("5m"));
    assert_eq!(minutes(60).as_deref(), Some("1m"));
    // Less than a minute left: no timeout would end with the order, so there is none.
    assert_eq!(minutes(59), None);
    assert_eq!(minutes(0), None);
    assert_eq!(minutes(-3600), None);
    assert_eq!(minutes(15 * 86400).as_deref(), Some("21600m"));
    assert_eq!(minutes(20 * 86400).as_deref(), Some("21600m"));
}

#[test]
fn amounts_are_exact_two_decimal_yuan_strings() {
    let now = utc("2024-01-01T04:00:00Z");
    for (fen, yuan) in [
        (1, "0.01"),
        (10, "0.10"),
        (100, "1.00"),
        (980, "9.80"),
        (1990, "19.90"),
        (10_000_000_000, "100000000.00"),
    ] {
        let params = app_pay_params(&d4_config(), &request(fen, "x", None), now).expect("params");
        assert_eq!(biz(&params)["total_amount"], yuan, "{fen}");
        assert_eq!(Fen::from_yuan(yuan), Ok(Fen::new(fen)));
    }
    for bad in [0, -1, 10_000_000_001] {
        let err = app_pay_params(&d4_config(), &request(bad, "x", None), now).expect_err("refused");
        assert!(
            matches!(&err, ProviderError::InvalidRequest { field: Some(f), .. } if f == "amount"),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn passback_params_is_the_url_encoded_attach_and_decodes_back_once() {
    let attach = "user=42&note=a+b 100% 好";
    let now = utc("2024-01-01T04:00:00Z");
    let params =
        app_pay_params(&d4_config(), &request(1990, "Latte", Some(attach)), now).expect("params");
    let passback = biz(&params)["passback_params"]
        .as_str()
        .expect("passback")
        .to_owned();
    assert_eq!(passback, "user%3D42%26note%3Da%2Bb%20100%25%20%E5%A5%BD");
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(&passback).collect();
    assert_eq!(String::from_utf8(decoded).expect("utf8"), attach);
    let without = app_pay_params(&d4_config(), &request(1990, "Latte", None), now).expect("params");
    assert!(biz(&without).get("passback_params").is_none());
}

#[test]
fn the_order_string_decodes_once_to_the_signed_params_and_verifies() {
    let subject = "全部 %20 +&= 😀 \"引号\" \\ /slash";
    let now = utc("2024-01-01T04:00:00Z");
    let config = d4_config();
    let req = request(1, subject, Some("a+b"));
    let order_string = build_order_string(&config, &req, now).expect("order string");
    let decoded = decode_form(order_string.as_bytes()).expect("decodes");
    assert_eq!(decoded, app_pay_params(&config, &req, now).expect("params"));
    assert_eq!(biz(&decoded)["subject"], subject);
    let public = AlipayPublicKey::parse(&fixture("alipay-sdk/d4_app_public.pem")).expect("public");
    let content = request_sign_content(decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(public.verify_rsa2(content.as_bytes(), &decoded["sign"]));
}

#[test]
fn bad_requests_are_refused_before_signing() {
    let now = utc("2024-01-01T04:00:00Z");
    let mut req = request(1, "", None);
    let err = app_pay_params(&d4_config(), &req, now).expect_err("empty subject");
    assert!(
        matches!(err, ProviderError::InvalidRequest { field: Some(f), .. } if f == "description")
    );
    req.description = "ok".to_owned();
    req.notify_url = "ftp://x".to_owned();
    let err = app_pay_params(&d4_config(), &req, now).expect_err("notify_url");
    assert!(
        matches!(err, ProviderError::InvalidRequest { field: Some(f), .. } if f == "notify_url")
    );
}

#[tokio::test]
async fn create_payment_returns_the_order_string_stamped_by_the_clock() {
    let app = provider();
    let created = app
        .create_payment(&request(1990, "Flat white", None))
        .await
        .expect("created");
    let order_string = created.client_payment["order_string"]
        .as_str()
        .expect("string");
    let decoded = decode_form(order_string.as_bytes()).expect("decodes");
    assert_eq!(decoded["timestamp"], "2024-01-01 12:00:00");
    assert_eq!(decoded["method"], "alipay.trade.app.pay");
    assert_eq!(decoded["app_id"], "2021001100600001");
    assert_eq!(biz(&decoded)["timeout_express"], "30m");
    assert_eq!(created.client_payment.as_object().map(|o| o.len()), Some(1));
    assert_eq!(created.provider_data, serde_json::json!({}));

    let later = AlipayApp::with_clock(
        &table(&[]),
        &ctx(Duration::from_secs(1)),
        fixed_clock("2024-01-01T04:20:30Z"),
    )
    .expect("valid");
    let created = later
        .create_payment(&request(1990, "Flat white", None))
        .await
        .expect("created");
    let decoded = decode_form(
        created.client_payment["order_string"]
            .as_str()
            .expect("s")
            .as_bytes(),
    )
    .expect("decodes");
    assert_eq!(decoded["timestamp"], "2024-01-01 12:20:30");
    assert_eq!(biz(&decoded)["timeout_express"], "9m");
}
