//! v3 orders against a local server playing WeChat Pay (answers signed with the fixtures' keys).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    CloseOutcome, CreatePayment, OrderRef, PaymentState, ProviderError,
};
use serde_json::{Value, json};

use super::*;
use crate::test_server::{Answer, TestServer};
use crate::v3::crypto::{MerchantKey, pay_sign_message};
use crate::v3::test_support::*;

const MERCHANT: Merchant<'static> = Merchant {
    appid: "wxd930ea5d5a258f4f",
    mchid: "1900000109",
    sub: None,
};

fn order(no: &str) -> OrderRef {
    OrderRef {
        out_trade_no: no.to_owned(),
        provider_trade_no: None,
        amount: Fen::new(150),
        provider_data: json!({"api_version": "v3"}),
    }
}

fn transaction(no: &str, state: &str) -> String {
    json!({
        "mchid": "1900000109", "appid": "wxd930ea5d5a258f4f", "out_trade_no": no,
        "transaction_id": "4200000000202612060000000001", "trade_state": state,
        "success_time": "2026-12-06T16:00:05+08:00", "amount": {"total": 150, "currency": "CNY"},
    })
    .to_string()
}

#[tokio::test]
async fn a_create_sends_the_jsapi_body_and_returns_a_pay_sign_the_merchant_key_verifies() {
    let server = TestServer::start(|_| {
        answer(
            200,
            r#"{"prepay_id":"wx06160000000000000000000000000000"}"#,
            Signing::PublicKey,
        )
    })
    .await;
    let c = client(&server.base, true, false, Duration::from_secs(5));
    let key = MerchantKey::from_pem(MERCHANT_KEY, "client_key").unwrap();
    let req = CreatePayment {
        out_trade_no: "PB2026120600001".to_owned(),
        amount: Fen::new(150),
        description: "咖啡".to_owned(),
        payer_openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".to_owned()),
        client_ip: Some("203.0.113.7".to_owned()),
        expires_at: Utc
            .with_ymd_and_hms(2026, 12, 6, 10, 0, 0)
            .single()
            .unwrap(),
        attach: None,
        notify_url: "https://gw.example/notify/demo/wechat_miniprogram".to_owned(),
        previous_provider_data: None,
    };
    let created = create_payment(&c, MERCHANT, &key, &req).await.unwrap();
    let sent: Value = serde_json::from_str(&server.requests()[0].body).unwrap();
    assert_eq!(
        sent,
        json!({
            "appid": "wxd930ea5d5a258f4f", "mchid": "1900000109", "description": "咖啡",
            "out_trade_no": "PB2026120600001", "time_expire": "2026-12-06T18:00:00+08:00",
            "notify_url": "https://gw.example/notify/demo/wechat_miniprogram",
            "amount": {"total": 150, "currency": "CNY"},
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "scene_info": {"payer_client_ip": "203.0.113.7"},
        })
    );
    assert_eq!(server.requests()[0].target, "/v3/pay/transactions/jsapi");
    let p = &created.client_payment;
    assert_eq!(p["signType"], "RSA");
    assert_eq!(p["package"], "prepay_id=wx06160000000000000000000000000000");
    let message = pay_sign_message(
        MERCHANT.appid,
        p["timeStamp"].as_str().unwrap(),
        p["nonceStr"].as_str().unwrap(),
        p["package"].as_str().unwrap(),
    );
    key.verifying_key()
        .unwrap()
        .verify(message.as_bytes(), p["paySign"].as_str().unwrap())
        .unwrap();
    assert_eq!(created.provider_data["api_version"], "v3");
}

#[tokio::test]
async fn create_errors_map_to_what_the_merchant_can_act_on() {
    let key = MerchantKey::from_pem(MERCHANT_KEY, "client_key").unwrap();
    for (status, code, expected) in [
        (400, "ORDERPAID", "AlreadyPaid"),
        (400, "ORDER_CLOSED", "AlreadyClosed"),
        (403, "OUT_TRADE_NO_USED", "OutTradeNoUsed"),
        (401, "SIGN_ERROR", "Misconfigured"),
        (429, "FREQUENCY_LIMITED", "RateLimited"),
        (500, "SYSTEM_ERROR", "Unavailable"),
        (400, "PARAM_ERROR", "Rejected"),
    ] {
        let server = TestServer::start(move |_| {
            Answer::Respond(status, format!(r#"{{"code":"{code}","message":"x"}}"#))
        })
        .await;
        let c = client(&server.base, true, false, Duration::from_secs(5));
        let req = create_request("PB1", 1);
        let e = create_payment(&c, MERCHANT, &key, &req).await.unwrap_err();
        assert!(format!("{e:?}").starts_with(expected), "{code}: {e:?}");
    }
}

#[tokio::test]
async fn a_query_maps_trade_states_and_checks_the_answer_is_about_this_order() {
    for (state, expected) in [
        ("SUCCESS", "Paid"),
        ("REFUND", "Paid"),
        ("NOTPAY", "NotPaid"),
        ("CLOSED", "Closed"),
        ("PAYERROR", "Failed"),
    ] {
        let server =
            TestServer::start(move |_| answer(200, &transaction("PB1", state), Signing::PublicKey))
                .await;
        let c = client(&server.base, true, false, Duration::from_secs(5));
        let found = query_payment(&c, MERCHANT, &order("PB1")).await.unwrap();
        assert!(
            format!("{found:?}").starts_with(expected),
            "{state}: {found:?}"
        );
        assert_eq!(
            server.requests()[0].target,
            "/v3/pay/transactions/out-trade-no/PB1?mchid=1900000109"
        );
    }
    // A signed answer about another order is not this order's state.
    let server =
        TestServer::start(|_| answer(200, &transaction("PB2", "SUCCESS"), Signing::PublicKey))
            .await;
    let c = client(&server.base, true, false, Duration::from_secs(5));
    assert!(matches!(
        query_payment(&c, MERCHANT, &order("PB1")).await,
        Err(ProviderError::Unavailable(_))
    ));
    // Unknown to WeChat Pay: not paid.
    let server = TestServer::start(|_| {
        Answer::Respond(
            404,
            r#"{"code":"ORDER_NOT_EXIST","message":"x"}"#.to_owned(),
        )
    })
    .await;
    let c = client(&server.base, true, false, Duration::from_secs(5));
    assert_eq!(
        query_payment(&c, MERCHANT, &order("PB1")).await.unwrap(),
        PaymentState::NotPaid
    );
}

#[tokio::test]
async fn a_close_that_wechat_refuses_asks_the_query_and_a_paid_order_is_reported_paid() {
    let server = TestServer::start(|seen| {
        if seen.target.ends_with("/close") {
            Answer::Respond(400, r#"{"code":"ORDERPAID","message":"x"}"#.to_owned())
        } else {
            answer(200, &transaction("PB1", "SUCCESS"), Signing::PublicKey)
        }
    })
    .await;
    let c = client(&server.base, true, false, Duration::from_secs(5));
    let outcome = close_payment(&c, MERCHANT, &order("PB1")).await.unwrap();
    let CloseOutcome::AlreadyPaid(event) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(event.provider_trade_no, "4200000000202612060000000001");
    let seen = server.requests();
    assert_eq!(seen[0].body, r#"{"mchid":"1900000109"}"#);

    let server = TestServer::start(|_| answer(204, "", Signing::PublicKey)).await;
    let c = client(&server.base, true, false, Duration::from_secs(5));
    assert_eq!(
        close_payment(&c, MERCHANT, &order("PB1")).await.unwrap(),
        CloseOutcome::Closed
    );
}
