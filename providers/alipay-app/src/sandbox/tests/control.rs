//! Notification modes, `/control/notify`, injected failures and the trade view.

use std::time::Instant;

use serde_json::json;

use super::*;

#[tokio::test]
async fn duplicate_sends_the_same_notification_concurrently() {
    let sim = simulator();
    let merchant = fake_merchant(200, "success").await;
    let answer = cashier(
        &sim,
        &order_string("N-DUP-1", "1.00", &merchant.url),
        json!({ "notify": "duplicate", "copies": 3 }),
    )
    .await;
    let deliveries = answer["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries.iter().all(|d| d["acknowledged"] == true));
    let bodies = merchant.bodies();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(
        notification_fields(&bodies[0])["notify_id"],
        answer["notify_id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn a_tampered_notification_does_not_verify() {
    let sim = simulator();
    let merchant = fake_merchant(200, "fail").await;
    let answer = cashier(
        &sim,
        &order_string("N-TAM-1", "1.00", &merchant.url),
        json!({ "notify": "tamper" }),
    )
    .await;
    let body = &merchant.bodies()[0];
    assert_eq!(notification_fields(body)["total_amount"], "2.00");
    assert!(!notification_verifies(body));
    let delivery = &answer["deliveries"][0];
    assert_eq!(
        (
            delivery["tampered"].as_bool(),
            delivery["acknowledged"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(delivery["body"], "fail");
}

#[tokio::test]
async fn only_a_bare_success_with_http_200_acknowledges() {
    let sim = simulator();
    for (i, (status, reply)) in [(200, "success\n"), (201, "success"), (200, "SUCCESS")]
        .into_iter()
        .enumerate()
    {
        let merchant = fake_merchant(status, reply).await;
        let answer = cashier(
            &sim,
            &order_string(&format!("N-ACK-{i}"), "1.00", &merchant.url),
            json!({}),
        )
        .await;
        assert_eq!(
            answer["deliveries"][0]["acknowledged"], false,
            "{status} {reply:?}"
        );
        assert_eq!(answer["deliveries"][0]["status"], status);
    }
    let answer = cashier(
        &sim,
        &order_string("N-ACK-X", "1.00", "http://127.0.0.1:9/unreachable"),
        json!({}),
    )
    .await;
    assert_eq!(answer["deliveries"][0]["acknowledged"], false);
    assert!(answer["deliveries"][0]["error"].is_string());
}

#[tokio::test]
async fn a_dropped_notification_is_redelivered_with_the_same_notify_id() {
    let sim = simulator();
    let merchant = fake_merchant(200, "success").await;
    let returned = cashier(
        &sim,
        &order_string("N-DROP-1", "1.00", &merchant.url),
        json!({ "notify": "return" }),
    )
    .await;
    assert!(returned["deliveries"].as_array().unwrap().is_empty());
    assert!(merchant.bodies().is_empty());
    let notification = returned["notification"].as_str().unwrap();
    assert!(notification_verifies(notification));

    let (status, resent) = control(
        &sim,
        "/control/notify",
        json!({ "out_trade_no": "N-DROP-1", "copies": 2 }),
    )
    .await;
    assert_eq!(status, 200, "{resent}");
    assert_eq!(resent["notify_id"], returned["notify_id"]);
    assert_eq!(merchant.bodies(), vec![notification.to_owned(); 2]);

    // An explicit status builds a new notification.
    let (_, fresh) = control(
        &sim,
        "/control/notify",
        json!({ "out_trade_no": "N-DROP-1", "trade_status": "TRADE_SUCCESS" }),
    )
    .await;
    assert_ne!(fresh["notify_id"], returned["notify_id"]);
    assert!(notification_verifies(
        fresh["notification"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn notify_closes_an_unpaid_trade_and_finishes_a_paid_one() {
    let sim = simulator();
    let merchant = fake_merchant(200, "success").await;
    cashier(
        &sim,
        &order_string("N-CL-1", "1.00", &merchant.url),
        json!({ "pay": false }),
    )
    .await;
    let (status, _) = control(&sim, "/control/notify", json!({ "out_trade_no": "N-CL-1" })).await;
    assert_eq!(status, 409);
    let (status, closed) = control(
        &sim,
        "/control/notify",
        json!({ "out_trade_no": "N-CL-1", "trade_status": "TRADE_CLOSED" }),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    let fields = notification_fields(closed["notification"].as_str().unwrap());
    assert_eq!(fields["trade_status"], "TRADE_CLOSED");
    assert!(fields.contains_key("gmt_close"));
    assert!(!fields.contains_key("gmt_payment") && !fields.contains_key("refund_fee"));
    let query = gateway(
        &sim,
        "alipay.trade.query",
        json!({ "out_trade_no": "N-CL-1" }),
    )
    .await;
    assert_eq!(query.field("trade_status"), "TRADE_CLOSED");

    cashier(
        &sim,
        &order_string("N-FIN-1", "1.00", &merchant.url),
        json!({ "notify": "drop" }),
    )
    .await;
    let (status, _) = control(
        &sim,
        "/control/notify",
        json!({ "out_trade_no": "N-FIN-1", "trade_status": "TRADE_CLOSED" }),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = control(
        &sim,
        "/control/notify",
        json!({ "out_trade_no": "N-FIN-1", "trade_status": "TRADE_FINISHED" }),
    )
    .await;
    assert_eq!(status, 200);
    let refund = gateway(
        &sim,
        "alipay.trade.refund",
        json!({ "out_trade_no": "N-FIN-1", "refund_amount": "1.00", "out_request_no": "x" }),
    )
    .await;
    assert_eq!(refund.sub_code(), "ACQ.TRADE_HAS_FINISHED");
    let (status, _) = control(&sim, "/control/notify", json!({ "out_trade_no": "nope" })).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_injected_20000_does_nothing_and_is_signed() {
    let sim = simulator();
    cashier(
        &sim,
        &order_string("F-1", "10.00", NOTIFY_URL),
        json!({ "notify": "drop" }),
    )
    .await;
    let (status, armed) = control(
        &sim,
        "/control/fail",
        json!({ "method": "alipay.trade.refund", "mode": "20000", "times": 1 }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(armed["pending"][0]["remaining"], 1);
    let refund_biz =
        json!({ "out_trade_no": "F-1", "refund_amount": "1.00", "out_request_no": "F-1-a" });
    // Other methods are not affected.
    let query = gateway(&sim, "alipay.trade.query", json!({ "out_trade_no": "F-1" })).await;
    assert_eq!(query.code(), "10000");
    let failed = gateway(&sim, "alipay.trade.refund", refund_biz.clone()).await;
    assert_eq!(
        (
            failed.code(),
            failed.sub_code(),
            failed.inner["msg"].as_str()
        ),
        (
            "20000",
            "isp.unknow-error",
            Some("Service Currently Unavailable")
        )
    );
    assert!(failed.sign_verifies);
    let retried = gateway(&sim, "alipay.trade.refund", refund_biz).await;
    assert_eq!(retried.field("fund_change"), "Y");
}

#[tokio::test]
async fn http500_and_bad_sign_and_wildcards() {
    let sim = simulator();
    cashier(
        &sim,
        &order_string("F-2", "10.00", NOTIFY_URL),
        json!({ "notify": "drop" }),
    )
    .await;
    control(
        &sim,
        "/control/fail",
        json!({ "method": "*", "mode": "http500", "times": 2 }),
    )
    .await;
    let body = sign_encode(
        gateway_params("alipay.trade.close", &json!({ "out_trade_no": "F-2" })),
        true,
    );
    for _ in 0..2 {
        let response = call(&sim, "POST", "/gateway.do", "", body.as_bytes()).await;
        assert_eq!(response.status, 500);
    }
    control(
        &sim,
        "/control/fail",
        json!({ "method": "alipay.trade.refund", "mode": "bad_sign" }),
    )
    .await;
    let refund_biz =
        json!({ "out_trade_no": "F-2", "refund_amount": "1.00", "out_request_no": "F-2-a" });
    let bad = gateway(&sim, "alipay.trade.refund", refund_biz.clone()).await;
    assert!(!bad.sign_verifies);
    assert_eq!(bad.field("fund_change"), "Y");
    let repeat = gateway(&sim, "alipay.trade.refund", refund_biz).await;
    assert!(repeat.sign_verifies);
    assert_eq!(repeat.field("fund_change"), "N");

    control(
        &sim,
        "/control/fail",
        json!({ "method": "*", "mode": "http500", "times": 5 }),
    )
    .await;
    let (_, disarmed) = control(
        &sim,
        "/control/fail",
        json!({ "method": "*", "mode": "http500", "times": 0 }),
    )
    .await;
    assert_eq!(disarmed["pending"], json!([]));
    let (status, _) = control(
        &sim,
        "/control/fail",
        json!({ "method": "alipay.trade.pay", "mode": "http500" }),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_timeout_answers_after_the_simulators_timeout_with_the_call_done() {
    let sim = simulator_with_timeout(Duration::from_millis(100));
    cashier(
        &sim,
        &order_string("F-3", "10.00", NOTIFY_URL),
        json!({ "pay": false }),
    )
    .await;
    control(
        &sim,
        "/control/fail",
        json!({ "method": "alipay.trade.close", "mode": "timeout" }),
    )
    .await;
    let started = Instant::now();
    let late = gateway(&sim, "alipay.trade.close", json!({ "out_trade_no": "F-3" })).await;
    assert!(started.elapsed() >= Duration::from_millis(1100));
    assert_eq!(late.code(), "10000");
    let view = json_of(&call(&sim, "GET", "/control/trades/F-3", "", b"").await);
    assert_eq!(view["trade_status"], "TRADE_CLOSED");
}

#[tokio::test]
async fn control_bodies_are_checked() {
    let sim = simulator();
    for (path, body) in [
        (
            "/control/cashier",
            json!({ "order_string": "x", "extra": 1 }),
        ),
        (
            "/control/cashier",
            json!({ "order_string": "x", "notify": "later" }),
        ),
        (
            "/control/cashier",
            json!({ "order_string": "x", "copies": 51 }),
        ),
        (
            "/control/notify",
            json!({ "out_trade_no": "x", "trade_status": "PAID" }),
        ),
        (
            "/control/fail",
            json!({ "method": "*", "mode": "SYSTEMERROR" }),
        ),
    ] {
        let (status, answer) = control(&sim, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body} → {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
    }
}
