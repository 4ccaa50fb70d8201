//! Alipay app pay end to end through the HTTP API and the Alipay sandbox, on SQLite and (with
//! `DATABASE_URL`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::alipay::{
    self, cashier, create_order, notify, order_string, parse_form, resign_notification, to_form,
};
use paybridge_tests::{Gateway, TestTenant, backends};

fn tenant(id: &str, n: u32) -> TestTenant {
    TestTenant::wechat(id, n, "MD5")
}

async fn status_of(gw: &Gateway, tenant: &str, no: &str) -> serde_json::Value {
    let (status, body) = gw.get(tenant, &format!("/v1/orders/{no}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_string_to_cashier_to_paid() {
    for backend in backends() {
        let t = tenant("ali_a", 11);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, created) = create_order(&gw, &t.id, 1990).await;
        let os = order_string(&created);
        assert!(
            alipay::order_string_verifies(&os),
            "the orderString's signature verifies independently"
        );
        let params = parse_form(&os);
        assert_eq!(params["method"], "alipay.trade.app.pay");
        assert_eq!(params["app_id"], t.alipay_app_id());
        assert_eq!(
            params["notify_url"],
            format!("{}/notify/{}/alipay_app", gw.base, t.id)
        );
        let biz: serde_json::Value = serde_json::from_str(&params["biz_content"]).unwrap();
        assert_eq!(biz["total_amount"], "19.90");
        assert_eq!(biz["product_code"], "QUICK_MSECURITY_PAY");
        assert_eq!(biz["out_trade_no"], no.as_str());

        let paid = cashier(&gw, &os, "deliver").await;
        assert_eq!(paid["deliveries"][0]["acknowledged"], true, "{paid}");
        let order = status_of(&gw, &t.id, &no).await;
        assert_eq!(order["status"], "paid", "{}: {order}", backend.name());
        assert_eq!(order["provider_trade_no"], paid["trade_no"]);
        assert!(order["paid_at"].is_string());
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_duplicates_change_the_order_once() {
    for backend in backends() {
        let t = tenant("ali_b", 12);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, created) = create_order(&gw, &t.id, 500).await;
        let paid = cashier(&gw, &order_string(&created), "return").await;
        let body = paid["notification"].as_str().unwrap().to_owned();
        let answers = futures::future::join_all((0..200).map(|_| notify(&gw, &t.id, &body))).await;
        for (status, ack) in &answers {
            assert_eq!((*status, ack.as_str()), (200, "success"));
        }
        assert_eq!(status_of(&gw, &t.id, &no).await["status"], "paid");
        let outbox = gw.state.store.outbox(&t.id).await.unwrap();
        assert_eq!(outbox.len(), 1, "{}: changed once", backend.name());
        assert_eq!(
            gw.state.store.provider_events(&t.id).await.unwrap().len(),
            1
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_mismatched_notifications_get_fail() {
    for backend in backends() {
        let t = tenant("ali_c", 13);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, created) = create_order(&gw, &t.id, 300).await;
        let paid = cashier(&gw, &order_string(&created), "return").await;
        let good = parse_form(paid["notification"].as_str().unwrap());
        assert_eq!(good["seller_id"], t.seller_id());

        let mut cases = Vec::new();
        let mut tampered = good.clone();
        tampered.insert("total_amount".into(), "0.01".into());
        cases.push(("tampered sign", to_form(&tampered)));
        let resigned = |field: &str, value: &str| {
            let mut p = good.clone();
            p.insert(field.to_owned(), value.to_owned());
            resign_notification(&mut p);
            to_form(&p)
        };
        cases.push(("wrong total_amount", resigned("total_amount", "2.99")));
        cases.push(("wrong app_id", resigned("app_id", "2021999999999999")));
        cases.push(("wrong seller_id", resigned("seller_id", "2088999999999999")));
        cases.push(("unknown order", resigned("out_trade_no", "NOSUCHORDER9")));
        cases.push(("gbk charset", resigned("charset", "gbk")));
        for (name, body) in &cases {
            let (status, ack) = notify(&gw, &t.id, body).await;
            assert!(ack == "fail", "{}: {name}: {status} {ack}", backend.name());
        }
        assert_eq!(status_of(&gw, &t.id, &no).await["status"], "pending");
        let attempts = gw.state.store.attempts(&t.id).await.unwrap();
        assert_eq!(
            attempts.len(),
            cases.len(),
            "each refused attempt is recorded"
        );
        let (_, ack) = notify(&gw, &t.id, &to_form(&good)).await;
        assert_eq!(ack, "success");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_closed_closes_the_order() {
    for backend in backends() {
        let t = tenant("ali_d", 14);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, created) = create_order(&gw, &t.id, 300).await;
        let (status, opened) = gw
            .sandbox_of(
                "alipay_app",
                "/control/cashier",
                &serde_json::json!({"order_string": order_string(&created), "pay": false}),
            )
            .await;
        assert_eq!(status, 200, "{opened}");
        let (status, sent) = gw
            .sandbox_of(
                "alipay_app",
                "/control/notify",
                &serde_json::json!({"out_trade_no": no, "trade_status": "TRADE_CLOSED"}),
            )
            .await;
        assert_eq!(status, 200, "{sent}");
        assert_eq!(sent["deliveries"][0]["acknowledged"], true, "{sent}");
        assert_eq!(
            status_of(&gw, &t.id, &no).await["status"],
            "closed",
            "{}",
            backend.name()
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_refund_notification_does_not_pay_twice() {
    for backend in backends() {
        let t = tenant("ali_e", 15);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, created) = create_order(&gw, &t.id, 500).await;
        cashier(&gw, &order_string(&created), "deliver").await;
        let (status, refund) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &serde_json::json!({"out_refund_no": "R1", "amount": 100}),
            )
            .await;
        assert_eq!(status, 201, "{refund}");
        assert_eq!(
            refund["status"], "succeeded",
            "Alipay settles a refund at once"
        );
        // The simulator sent a TRADE_SUCCESS notification carrying refund_fee and out_biz_no.
        let (_, trade) = {
            let r = gw
                .http
                .get(format!(
                    "{}/sandbox/alipay_app/control/trades/{no}",
                    gw.base
                ))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        };
        let deliveries = trade["deliveries"].as_array().cloned().unwrap_or_default();
        assert!(
            deliveries.len() >= 2,
            "payment and refund notifications were sent: {trade}"
        );
        assert!(
            deliveries.iter().all(|d| d["acknowledged"] == true),
            "{trade}"
        );
        let order = status_of(&gw, &t.id, &no).await;
        assert_eq!(
            order["status"],
            "partially_refunded",
            "{}: {order}",
            backend.name()
        );
        assert_eq!(order["refunded_amount"], 100);
        let types: Vec<_> = gw
            .state
            .store
            .outbox(&t.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types.iter().filter(|t| *t == "order.paid").count(),
            1,
            "{types:?}"
        );
        gw.finish().await;
    }
}
