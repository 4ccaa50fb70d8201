//! Injected failures of the Pay APIs, and their transport rules.

use super::pay_api::{assert_business_error, close, query, unifiedorder};
use super::*;
use serde_json::json;

#[tokio::test]
async fn injected_systemerror_and_bad_sign() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    let armed = json_of(
        &control(
            &sim,
            "/control/fail",
            json!({"api": "unifiedorder", "mode": "SYSTEMERROR"}),
        )
        .await,
    );
    assert_eq!(armed["pending"][0]["remaining"], 1);
    let failed = unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    assert_business_error(&failed, "SYSTEMERROR", "");
    assert_signed(&failed, false);
    // Nothing was created.
    assert_business_error(
        &query(&sim, ("out_trade_no", "order-0001")).await,
        "ORDERNOTEXIST",
        "",
    );

    control(
        &sim,
        "/control/fail",
        json!({"api": "*", "mode": "bad_sign", "times": 1}),
    )
    .await;
    let forged = unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    assert_eq!(forged["result_code"], "SUCCESS");
    assert_ne!(forged["sign"], test_sign(&forged, API_KEY, false));
    // The call was done: a retry re-enters the same order.
    let retry = unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    assert_eq!(retry["prepay_id"], forged["prepay_id"]);
    assert_signed(&retry, false);
}

#[tokio::test]
async fn injected_http500_and_timeout() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    control(
        &sim,
        "/control/fail",
        json!({"api": "orderquery", "mode": "http500", "times": 2}),
    )
    .await;
    let body = signed_body(
        params(&[
            ("appid", APPID),
            ("mch_id", MCH_ID),
            ("nonce_str", "n"),
            ("out_trade_no", "x-000001"),
        ]),
        API_KEY,
        None,
    );
    assert_eq!(
        call(&sim, "POST", "/pay/orderquery", "", &body)
            .await
            .status,
        500
    );
    assert_eq!(
        call(&sim, "POST", "/pay/orderquery", "", &body)
            .await
            .status,
        500
    );
    assert_eq!(
        call(&sim, "POST", "/pay/orderquery", "", &body)
            .await
            .status,
        200
    );

    control(
        &sim,
        "/control/fail",
        json!({"api": "closeorder", "mode": "timeout"}),
    )
    .await;
    unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    let started = std::time::Instant::now();
    let closed = close(&sim, "order-0001").await;
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(closed["result_code"], "SUCCESS");
}

#[tokio::test]
async fn pay_apis_take_post_only() {
    let sim = simulator();
    for path in ["/pay/unifiedorder", "/pay/orderquery", "/pay/closeorder"] {
        assert_eq!(call(&sim, "GET", path, "", b"").await.status, 405);
    }
}

#[tokio::test]
async fn bad_sign_cannot_be_armed_for_login() {
    let sim = simulator();
    let refused = control(
        &sim,
        "/control/fail",
        json!({"api": "jscode2session", "mode": "bad_sign"}),
    )
    .await;
    assert_eq!(refused.status, 400);
}
