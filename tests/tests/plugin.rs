//! A provider added without touching core, the HTTP layer or storage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::{Gateway, TestTenant, backends, fake_provider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_only_provider_takes_a_payment_end_to_end() {
    assert_eq!(fake_provider::linked(), "test_fake");
    for backend in backends() {
        let mut tenant = TestTenant::wechat("plug", 7, "MD5");
        tenant.extra = "[providers.test_fake]\nsecret = \"s3cret\"\n".to_owned();
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let req = serde_json::json!({
            "provider": "test_fake", "out_trade_no": "PLUG0001", "amount": 42, "description": "Plugin",
        });
        let (status, body) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body["client_payment"]["test_fake"]["token"],
            "fake-PLUG0001"
        );

        let forged = serde_json::json!({"out_trade_no": "PLUG0001", "amount": 42, "trade_no": "X1", "secret": "nope"});
        let (status, ack) = gw
            .post_raw(
                "/notify/plug/test_fake",
                "application/json",
                forged.to_string().into_bytes(),
            )
            .await;
        assert_eq!((status, ack.as_str()), (200, "no"));
        // The secret in a header: the provider sees the request's headers.
        let unsigned =
            serde_json::json!({"out_trade_no": "PLUG0001", "amount": 42, "trade_no": "X1"});
        let (status, ack) = gw
            .post_raw_with(
                "/notify/plug/test_fake",
                "application/json",
                &[("X-Fake-Secret", "wrong")],
                unsigned.to_string().into_bytes(),
            )
            .await;
        assert_eq!((status, ack.as_str()), (200, "no"));
        let good = serde_json::json!({"out_trade_no": "PLUG0001", "amount": 42, "trade_no": "X1", "secret": "s3cret"});
        let (status, ack) = gw
            .post_raw(
                "/notify/plug/test_fake",
                "application/json",
                good.to_string().into_bytes(),
            )
            .await;
        assert_eq!((status, ack.as_str()), (200, "ok"));
        let (_, order) = gw.get(&tenant.id, "/v1/orders/PLUG0001").await;
        assert_eq!(order["status"], "paid", "{}", backend.name());
        assert_eq!(order["provider_trade_no"], "X1");
        // A second order, paid by a notification signed only in a header.
        let req = serde_json::json!({
            "provider": "test_fake", "out_trade_no": "PLUG0002", "amount": 7, "description": "Plugin",
        });
        let (status, body) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!(status, 201, "{body}");
        let by_header =
            serde_json::json!({"out_trade_no": "PLUG0002", "amount": 7, "trade_no": "X2"});
        let (status, ack) = gw
            .post_raw_with(
                "/notify/plug/test_fake",
                "application/json",
                &[("X-Fake-Secret", "s3cret")],
                by_header.to_string().into_bytes(),
            )
            .await;
        assert_eq!((status, ack.as_str()), (200, "ok"));
        let (_, order) = gw.get(&tenant.id, "/v1/orders/PLUG0002").await;
        assert_eq!(order["status"], "paid", "{}", backend.name());

        // A capability the provider does not implement is a clear 422, from the trait's default.
        let (status, err) = gw
            .post(
                &tenant.id,
                "/v1/orders/PLUG0001/close",
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 409, "paid orders cannot be closed: {err}");
        let (status, err) = gw.get(&tenant.id, "/v1/orders/PLUG0001?sync=true").await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (422, Some("not_supported")),
            "{err}"
        );
        gw.finish().await;
    }
}
