//! Tenant isolation: for every merchant endpoint, tenant B's key against tenant A's resources is a
//! 404 (or B's own, separate resource), never A's data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::{Gateway, TestTenant, alipay, backends, wechat};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_b_never_reaches_tenant_a() {
    for backend in backends() {
        let a = TestTenant::wechat("iso_a", 61, "MD5");
        let b = TestTenant::wechat("iso_b", 62, "HMAC-SHA256");
        let gw = Gateway::start(&backend, &[a.clone(), b.clone()]).await;

        // A has a paid WeChat order with a refund, a pending Alipay order, and events.
        let (wx, _) = wechat::create_order(&gw, &a.id, 500).await;
        wechat::pay(&gw, &a, &wx, "deliver").await;
        let (s, _) = gw
            .post(
                &a.id,
                &format!("/v1/orders/{wx}/refunds"),
                &serde_json::json!({"out_refund_no": "R1", "amount": 100}),
            )
            .await;
        assert_eq!(s, 201);
        let (ali, _) = alipay::create_order(&gw, &a.id, 300).await;
        let (s, events) = gw.get(&a.id, "/v1/events").await;
        assert_eq!(s, 200);
        let event_id = events["events"][0]["id"]
            .as_str()
            .expect("A has an event")
            .to_owned();

        let json = serde_json::json!({});
        let gets = [
            format!("/v1/orders/{wx}"),
            format!("/v1/orders/{wx}?sync=true"),
            format!("/v1/orders/{ali}"),
            format!("/v1/orders/{wx}/refunds/R1"),
            format!("/v1/orders/{wx}/refunds/R1?sync=true"),
        ];
        for path in &gets {
            let (status, body) = gw.get(&b.id, path).await;
            assert_eq!(status, 404, "{}: GET {path}: {body}", backend.name());
            assert!(
                !body.to_string().contains(&wx),
                "no data of A leaks: {body}"
            );
        }
        let posts = [
            (format!("/v1/orders/{wx}/close"), json.clone()),
            (format!("/v1/orders/{ali}/close"), json.clone()),
            (
                format!("/v1/orders/{wx}/refunds"),
                serde_json::json!({"out_refund_no": "R2", "amount": 1}),
            ),
            (format!("/v1/events/{event_id}/redeliver"), json.clone()),
        ];
        for (path, body) in &posts {
            let (status, answer) = gw.post(&b.id, path, body).await;
            assert_eq!(status, 404, "{}: POST {path}: {answer}", backend.name());
        }
        let (s, b_events) = gw.get(&b.id, "/v1/events").await;
        assert_eq!(s, 200);
        assert!(
            !b_events.to_string().contains(&event_id),
            "B's event list never shows A's events"
        );

        // The same out_trade_no under B is B's own, separate order.
        let openid = wechat::login(&gw, &b.id).await;
        let (s, own) = gw
            .post(
                &b.id,
                "/v1/orders",
                &serde_json::json!({"provider": "wechat_miniprogram", "out_trade_no": wx, "amount": 7,
                    "description": "B's own", "payer": {"openid": openid}}),
            )
            .await;
        assert_eq!(
            (s, own["order"]["amount"].as_i64()),
            (201, Some(7)),
            "{own}"
        );
        let (_, a_order) = gw.get(&a.id, &format!("/v1/orders/{wx}")).await;
        assert_eq!(
            (a_order["amount"].as_i64(), a_order["status"].as_str()),
            (Some(500), Some("paid"))
        );

        // Nothing of A changed.
        let (_, refund) = gw.get(&a.id, &format!("/v1/orders/{wx}/refunds/R1")).await;
        assert_eq!(refund["amount"], 100);
        let (_, still) = gw.get(&a.id, &format!("/v1/orders/{ali}")).await;
        assert_eq!(still["status"], "pending");
        gw.finish().await;
    }
}
