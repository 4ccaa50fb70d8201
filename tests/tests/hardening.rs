//! Hardening (issue 8): wrong input gets errors that name the field; a close that meets a payment
//! reports the payment. On SQLite and (with `DATABASE_URL`) PostgreSQL where storage is involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, Utc};
use paybridge_server::reconciler::run_once;
use paybridge_tests::{Backend, Gateway, TestTenant, alipay, backends, wechat};

fn tenant(id: &str, n: u32) -> TestTenant {
    TestTenant::wechat(id, n, "MD5")
}

async fn status(gw: &Gateway, t: &str, no: &str) -> String {
    gw.get(t, &format!("/v1/orders/{no}")).await.1["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_types_name_the_field_and_what_to_send() {
    let t = tenant("hard_json", 81);
    let gw = Gateway::start(&Backend::Sqlite, std::slice::from_ref(&t)).await;
    let order = |amount: serde_json::Value, payer: serde_json::Value| {
        serde_json::json!({
            "provider": "wechat_miniprogram",
            "out_trade_no": wechat::trade_no(),
            "amount": amount,
            "description": "x",
            "payer": payer,
        })
    };
    let openid = serde_json::json!({"openid": "o-1"});
    for amount in [serde_json::json!(1.5), serde_json::json!("1.00")] {
        let (s, body) = gw
            .post(&t.id, "/v1/orders", &order(amount.clone(), openid.clone()))
            .await;
        assert_eq!(s, 400, "{amount}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert_eq!(body["error"]["field"], "amount", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("an integer number of fen, e.g. 150 for 1.50 CNY"),
            "{message}"
        );
    }
    let (s, body) = gw
        .post(
            &t.id,
            "/v1/orders",
            &order(serde_json::json!(100), serde_json::json!({"openid": null})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(body["error"]["field"], "payer.openid", "{body}");

    // Refunds: the same rule for their amount.
    let (no, _) = wechat::create_order(&gw, &t.id, 500).await;
    for amount in [serde_json::json!(0.5), serde_json::json!("0.50")] {
        let (s, body) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &serde_json::json!({"out_refund_no": "R1", "amount": amount}),
            )
            .await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(body["error"]["field"], "amount", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("integer number of fen"),
            "{body}"
        );
    }
    // Sessions: a null code names `code`.
    let (s, body) = gw
        .post(
            &t.id,
            "/v1/wechat_miniprogram/sessions",
            &serde_json::json!({"code": null}),
        )
        .await;
    assert_eq!(
        (s, &body["error"]["field"]),
        (400, &serde_json::json!("code"))
    );

    // A body that is not JSON at all stays `invalid_json`, with no field.
    let res = gw
        .http
        .post(format!("{}/v1/orders", gw.base))
        .bearer_auth(paybridge_tests::api_key(&t.id))
        .header("content-type", "application/json")
        .body("{\"amount\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");
    assert!(body["error"].get("field").is_none(), "{body}");
    // Without a JSON content type: 415, as before.
    let res = gw
        .http
        .post(format!("{}/v1/orders", gw.base))
        .bearer_auth(paybridge_tests::api_key(&t.id))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_an_alipay_order_that_alipay_reports_paid_is_409_and_paid() {
    for backend in backends() {
        let t = tenant("hard_close", 82);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;

        // Paid at Alipay; the notification is lost. The merchant closes it.
        let (no, created) = alipay::create_order(&gw, &t.id, 1200).await;
        alipay::cashier(&gw, &alipay::order_string(&created), "drop").await;
        assert_eq!(status(&gw, &t.id, &no).await, "pending");
        let (s, body) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/close"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(s, 409, "{}: {body}", backend.name());
        assert_eq!(body["error"]["code"], "order_paid", "{body}");
        let (_, order) = gw.get(&t.id, &format!("/v1/orders/{no}")).await;
        assert_eq!(order["status"], "paid", "{}: {order}", backend.name());
        assert!(order["provider_trade_no"].is_string(), "{order}");

        // The reconciler's close of an expired order takes the same path.
        let (expired, created) = alipay::create_order(&gw, &t.id, 700).await;
        alipay::cashier(&gw, &alipay::order_string(&created), "drop").await;
        let report = run_once(&gw.state, "a", Utc::now() + Duration::hours(3))
            .await
            .unwrap();
        assert_eq!(report.errors, 0, "{}: {report:?}", backend.name());
        assert_eq!(report.expired, 1, "{report:?}");
        assert_eq!(
            status(&gw, &t.id, &expired).await,
            "paid",
            "{}",
            backend.name()
        );
        gw.finish().await;
    }
}
