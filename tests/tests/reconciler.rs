//! The reconciler: lost notifications, expiry, a payment racing the close, refunds left
//! processing, and its lease. Passes are run directly with a chosen clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, Utc};
use paybridge_server::reconciler::{acquire_lease, run_once};
use paybridge_tests::{Gateway, TestTenant, alipay, backends, wechat};

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
async fn lost_notifications_are_recovered_and_expired_orders_closed() {
    for backend in backends() {
        let t = tenant("rec_a", 50);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        // Paid, notifications lost, on both providers.
        let (wx_paid, _) = wechat::create_order(&gw, &t.id, 100).await;
        wechat::pay(&gw, &t, &wx_paid, "drop").await;
        let (ali_paid, created) = alipay::create_order(&gw, &t.id, 100).await;
        alipay::cashier(&gw, &alipay::order_string(&created), "drop").await;
        // Never paid.
        let (wx_unpaid, _) = wechat::create_order(&gw, &t.id, 100).await;

        // Too early: nothing is queried before query_pending_after_seconds (120 s).
        let report = run_once(&gw.state, "a", Utc::now()).await.unwrap();
        assert!(report.held_lease);
        assert_eq!(report.queried, 0);
        assert_eq!(status(&gw, &t.id, &wx_paid).await, "pending");

        let report = run_once(&gw.state, "a", Utc::now() + Duration::seconds(180))
            .await
            .unwrap();
        assert_eq!(report.errors, 0, "{}: {report:?}", backend.name());
        assert_eq!(
            status(&gw, &t.id, &wx_paid).await,
            "paid",
            "{}",
            backend.name()
        );
        assert_eq!(
            status(&gw, &t.id, &ali_paid).await,
            "paid",
            "{}",
            backend.name()
        );
        assert_eq!(status(&gw, &t.id, &wx_unpaid).await, "pending");

        // Past the expiry (default 2 h): closed at the provider, then here.
        let report = run_once(&gw.state, "a", Utc::now() + Duration::hours(3))
            .await
            .unwrap();
        assert_eq!(report.errors, 0, "{report:?}");
        assert_eq!(
            status(&gw, &t.id, &wx_unpaid).await,
            "closed",
            "{}",
            backend.name()
        );
        let (_, sim) = {
            let r = gw
                .http
                .get(format!(
                    "{}/sandbox/wechat_miniprogram/control/orders/{wx_unpaid}",
                    gw.base
                ))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        };
        assert_eq!(
            sim["trade_state"], "CLOSED",
            "closed at WeChat first: {sim}"
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_order_that_never_reached_the_provider_is_closed() {
    for backend in backends() {
        let t = tenant("rec_e", 54);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let openid = wechat::login(&gw, &t.id).await;
        let no = wechat::trade_no();
        gw.sandbox(
            "/control/fail",
            &serde_json::json!({"api": "unifiedorder", "mode": "SYSTEMERROR", "times": 1}),
        )
        .await;
        let req = serde_json::json!({
            "provider": "wechat_miniprogram", "out_trade_no": no, "amount": 100,
            "description": "Never sent", "payer": {"openid": openid},
        });
        let (s, _) = gw.post(&t.id, "/v1/orders", &req).await;
        assert_eq!(s, 502);
        let report = run_once(&gw.state, "a", Utc::now() + Duration::hours(3))
            .await
            .unwrap();
        assert_eq!(
            (report.expired, report.errors),
            (1, 0),
            "{}: {report:?}",
            backend.name()
        );
        assert_eq!(status(&gw, &t.id, &no).await, "closed");
        // A replay of the create now answers from the database: closed, no new prepay.
        let (s, body) = gw.post(&t.id, "/v1/orders", &req).await;
        assert_eq!(
            (s, body["order"]["status"].as_str()),
            (200, Some("closed")),
            "{body}"
        );
        assert!(body["client_payment"].is_null());
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_paid_just_before_its_close_shows_as_paid() {
    for backend in backends() {
        let t = tenant("rec_b", 51);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (wx, _) = wechat::create_order(&gw, &t.id, 100).await;
        let (ali, created) = alipay::create_order(&gw, &t.id, 100).await;
        // Paid at the provider, the notification not (yet) here, and the order is past expiry.
        wechat::pay(&gw, &t, &wx, "drop").await;
        alipay::cashier(&gw, &alipay::order_string(&created), "drop").await;
        let report = run_once(&gw.state, "a", Utc::now() + Duration::hours(3))
            .await
            .unwrap();
        assert_eq!(report.expired, 2, "{report:?}");
        assert_eq!(
            status(&gw, &t.id, &wx).await,
            "paid",
            "{}: WeChat said ORDERPAID",
            backend.name()
        );
        assert_eq!(
            status(&gw, &t.id, &ali).await,
            "paid",
            "{}: Alipay said the trade is paid",
            backend.name()
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_refunds_are_queried_until_final() {
    for backend in backends() {
        let t = tenant("rec_c", 52);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, _) = wechat::create_order(&gw, &t.id, 500).await;
        wechat::pay(&gw, &t, &no, "deliver").await;
        let (s, r) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &serde_json::json!({"out_refund_no": "RQ1", "amount": 200}),
            )
            .await;
        assert_eq!((s, r["status"].as_str()), (201, Some("processing")), "{r}");
        // WeChat completes it, but the refund notification is lost.
        let (s, body) = gw
            .sandbox("/control/refund", &serde_json::json!({"out_refund_no": "RQ1", "mch_id": t.mch_id, "status": "SUCCESS", "notify": "drop"}))
            .await;
        assert_eq!(s, 200, "{body}");
        let report = run_once(&gw.state, "a", Utc::now()).await.unwrap();
        assert_eq!(report.refunds, 1, "{report:?}");
        let (_, refund) = gw.get(&t.id, &format!("/v1/orders/{no}/refunds/RQ1")).await;
        assert_eq!(
            refund["status"],
            "succeeded",
            "{}: {refund}",
            backend.name()
        );
        let (_, order) = gw.get(&t.id, &format!("/v1/orders/{no}")).await;
        assert_eq!(
            (order["status"].as_str(), order["refunded_amount"].as_i64()),
            (Some("partially_refunded"), Some(200))
        );
        let report = run_once(&gw.state, "a", Utc::now()).await.unwrap();
        assert_eq!(report.refunds, 0, "final refunds are not queried again");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_reconcile_at_once() {
    for backend in backends() {
        let gw = Gateway::start(&backend, &[tenant("rec_d", 53)]).await;
        let now = Utc::now();
        assert!(
            acquire_lease(
                &gw.state,
                "instance-1",
                now,
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
        );
        assert!(
            !acquire_lease(
                &gw.state,
                "instance-2",
                now,
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
        );
        let report = run_once(&gw.state, "instance-2", now).await.unwrap();
        assert!(
            !report.held_lease,
            "{}: the second instance waits",
            backend.name()
        );
        // The holder renews; after expiry the other may take over.
        assert!(
            acquire_lease(
                &gw.state,
                "instance-1",
                now,
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
        );
        let later = now + Duration::seconds(61);
        assert!(
            acquire_lease(
                &gw.state,
                "instance-2",
                later,
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
        );
        assert!(
            !acquire_lease(
                &gw.state,
                "instance-1",
                later,
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_provider_never_received_is_sent_again() {
    for backend in backends() {
        let t = tenant("rec_f", 55);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        // WeChat: the refund call fails with HTTP 500; Alipay: the same.
        let (wx, _) = wechat::create_order(&gw, &t.id, 500).await;
        wechat::pay(&gw, &t, &wx, "deliver").await;
        let (ali, created) = alipay::create_order(&gw, &t.id, 500).await;
        alipay::cashier(&gw, &alipay::order_string(&created), "deliver").await;
        gw.sandbox(
            "/control/fail",
            &serde_json::json!({"api": "refund", "mode": "http500", "times": 1}),
        )
        .await;
        gw.sandbox_of(
            "alipay_app",
            "/control/fail",
            &serde_json::json!({"method": "alipay.trade.refund", "mode": "http500", "times": 1}),
        )
        .await;
        for no in [&wx, &ali] {
            let (s, err) = gw
                .post(
                    &t.id,
                    &format!("/v1/orders/{no}/refunds"),
                    &serde_json::json!({"out_refund_no": "LOST1", "amount": 200}),
                )
                .await;
            assert_eq!(s, 502, "{}: {err}", backend.name());
            let (_, r) = gw
                .get(&t.id, &format!("/v1/orders/{no}/refunds/LOST1"))
                .await;
            assert_eq!(
                r["status"], "processing",
                "kept, counting against the limit"
            );
        }
        // The reconciler finds that neither provider has it and sends it again under the same number.
        let report = run_once(&gw.state, "a", Utc::now()).await.unwrap();
        assert_eq!(
            (report.refunds, report.errors),
            (2, 0),
            "{}: {report:?}",
            backend.name()
        );
        let (_, r) = gw
            .get(&t.id, &format!("/v1/orders/{ali}/refunds/LOST1"))
            .await;
        assert_eq!(
            r["status"],
            "succeeded",
            "{}: Alipay settles at once: {r}",
            backend.name()
        );
        let (_, r) = gw
            .get(&t.id, &format!("/v1/orders/{wx}/refunds/LOST1"))
            .await;
        assert_eq!(
            r["status"], "processing",
            "WeChat accepted it; its result comes later: {r}"
        );
        assert!(
            r["provider_refund_no"].is_string(),
            "now known to WeChat: {r}"
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_order_waits_its_turn_so_others_are_reached() {
    for backend in backends() {
        let t = tenant("rec_g", 56);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (first, _) = wechat::create_order(&gw, &t.id, 100).await;
        let at = Utc::now() + Duration::seconds(180);
        let report = run_once(&gw.state, "a", at).await.unwrap();
        assert_eq!(report.queried, 1, "{report:?}");
        // Checked a second later: the unpaid order is not due again yet, so it would not take a
        // place in the batch from a newer one.
        let report = run_once(&gw.state, "a", at + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(report.queried, 0, "{}: {report:?}", backend.name());
        let report = run_once(&gw.state, "a", at + Duration::seconds(31))
            .await
            .unwrap();
        assert_eq!(
            report.queried, 1,
            "due again after one interval: {report:?}"
        );
        assert_eq!(status(&gw, &t.id, &first).await, "pending");
        gw.finish().await;
    }
}
