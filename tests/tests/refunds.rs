//! Refunds on both providers through the HTTP API and the sandboxes, on SQLite and (with
//! `DATABASE_URL`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::{Gateway, TestTenant, alipay, backends, wechat};

#[derive(Clone, Copy, Debug)]
enum Provider {
    Wechat,
    Alipay,
}

fn tenant(id: &str, n: u32) -> TestTenant {
    TestTenant::wechat(id, n, "HMAC-SHA256")
}

/// A paid order of `amount` fen on `p`.
async fn paid_order(gw: &Gateway, t: &TestTenant, p: Provider, amount: i64) -> String {
    match p {
        Provider::Wechat => {
            let (no, _) = wechat::create_order(gw, &t.id, amount).await;
            wechat::pay(gw, t, &no, "deliver").await;
            no
        }
        Provider::Alipay => {
            let (no, created) = alipay::create_order(gw, &t.id, amount).await;
            alipay::cashier(gw, &alipay::order_string(&created), "deliver").await;
            no
        }
    }
}

async fn refund(
    gw: &Gateway,
    t: &str,
    no: &str,
    out_refund_no: &str,
    amount: i64,
) -> (u16, serde_json::Value) {
    gw.post(
        t,
        &format!("/v1/orders/{no}/refunds"),
        &serde_json::json!({"out_refund_no": out_refund_no, "amount": amount}),
    )
    .await
}

/// Drive a refund to its final state the way the provider would: WeChat reports it later in a
/// refund notification; Alipay settles it in the refund call itself.
async fn settle(
    gw: &Gateway,
    t: &TestTenant,
    p: Provider,
    no: &str,
    out_refund_no: &str,
) -> serde_json::Value {
    if let Provider::Wechat = p {
        let (status, body) = gw
            .sandbox(
                "/control/refund",
                &serde_json::json!({"out_refund_no": out_refund_no, "mch_id": t.mch_id, "status": "SUCCESS", "notify": "deliver"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["deliveries"][0]["acknowledged"], true,
            "refund notification acknowledged: {body}"
        );
    }
    let (status, body) = gw
        .get(&t.id, &format!("/v1/orders/{no}/refunds/{out_refund_no}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn order(gw: &Gateway, t: &str, no: &str) -> serde_json::Value {
    gw.get(t, &format!("/v1/orders/{no}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_partial_replayed_and_excess_refunds() {
    for backend in backends() {
        for (i, p) in [Provider::Wechat, Provider::Alipay].into_iter().enumerate() {
            let t = tenant(&format!("ref_{i}"), 20 + u32::try_from(i).unwrap());
            let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
            let ctx = format!("{} {p:?}", backend.name());

            // Full refund.
            let full = paid_order(&gw, &t, p, 300).await;
            let (status, r) = refund(&gw, &t.id, &full, "FULL-1", 300).await;
            assert_eq!(status, 201, "{ctx}: {r}");
            assert_eq!(r["out_trade_no"], full.as_str());
            let settled = settle(&gw, &t, p, &full, "FULL-1").await;
            assert_eq!(settled["status"], "succeeded", "{ctx}: {settled}");
            assert!(settled["succeeded_at"].is_string());
            let o = order(&gw, &t.id, &full).await;
            assert_eq!(
                (o["status"].as_str(), o["refunded_amount"].as_i64()),
                (Some("refunded"), Some(300)),
                "{ctx}"
            );
            // Asking the provider afterwards (Alipay reports a fully refunded trade as TRADE_CLOSED)
            // leaves a refunded order refunded.
            let (status, synced) = gw.get(&t.id, &format!("/v1/orders/{full}?sync=true")).await;
            assert_eq!(
                (status, synced["status"].as_str()),
                (200, Some("refunded")),
                "{ctx}: {synced}"
            );
            let path = format!("/v1/orders/{full}/refunds/FULL-1?sync=true");
            let (status, synced) = gw.get(&t.id, &path).await;
            assert_eq!(
                (status, synced["status"].as_str()),
                (200, Some("succeeded")),
                "{ctx}: {synced}"
            );

            // Three partial refunds.
            let part = paid_order(&gw, &t, p, 1000).await;
            for (k, amount) in [(1, 100), (2, 200), (3, 300)] {
                let no = format!("PART-{k}");
                let (status, r) = refund(&gw, &t.id, &part, &no, amount).await;
                assert_eq!(status, 201, "{ctx}: {r}");
                assert_eq!(
                    settle(&gw, &t, p, &part, &no).await["status"],
                    "succeeded",
                    "{ctx}"
                );
            }
            let o = order(&gw, &t.id, &part).await;
            assert_eq!(o["status"], "partially_refunded", "{ctx}");
            assert_eq!(o["refunded_amount"], 600);

            // The same out_refund_no again: the same refund, nothing new.
            let (status, again) = refund(&gw, &t.id, &part, "PART-1", 100).await;
            assert_eq!(status, 200, "{ctx}: {again}");
            assert_eq!(again["status"], "succeeded");
            let (status, err) = refund(&gw, &t.id, &part, "PART-1", 101).await;
            assert_eq!(
                (status, err["error"]["code"].as_str()),
                (409, Some("out_refund_no_conflict")),
                "{ctx}"
            );
            assert_eq!(order(&gw, &t.id, &part).await["refunded_amount"], 600);

            // Over-refund refused: 400 left.
            let (status, err) = refund(&gw, &t.id, &part, "PART-4", 401).await;
            assert_eq!(
                (status, err["error"]["code"].as_str()),
                (409, Some("refund_exceeds_order")),
                "{ctx}: {err}"
            );
            let (status, r) = refund(&gw, &t.id, &part, "PART-5", 400).await;
            assert_eq!(status, 201, "{ctx}: {r}");
            assert_eq!(
                settle(&gw, &t, p, &part, "PART-5").await["status"],
                "succeeded"
            );
            assert_eq!(order(&gw, &t.id, &part).await["status"], "refunded");

            // A refund of an unpaid order.
            let unpaid = match p {
                Provider::Wechat => wechat::create_order(&gw, &t.id, 100).await.0,
                Provider::Alipay => alipay::create_order(&gw, &t.id, 100).await.0,
            };
            let (status, err) = refund(&gw, &t.id, &unpaid, "X1", 1).await;
            assert_eq!(
                (status, err["error"]["code"].as_str()),
                (409, Some("order_not_paid")),
                "{ctx}"
            );
            gw.finish().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_one_fen_refunds_of_a_ten_fen_order() {
    for backend in backends() {
        for (i, p) in [Provider::Wechat, Provider::Alipay].into_iter().enumerate() {
            let t = tenant(&format!("conc_{i}"), 30 + u32::try_from(i).unwrap());
            let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
            let no = paid_order(&gw, &t, p, 10).await;
            let numbers: Vec<String> = (0..50).map(|k| format!("C{k}")).collect();
            let calls = numbers.iter().map(|n| refund(&gw, &t.id, &no, n, 1));
            let answers = futures::future::join_all(calls).await;
            let accepted = answers.iter().filter(|(s, _)| *s == 201).count();
            let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 409).collect();
            assert_eq!(accepted, 10, "{} {p:?}: {answers:?}", backend.name());
            assert_eq!(refused.len(), 40);
            assert!(
                refused
                    .iter()
                    .all(|(_, e)| e["error"]["code"] == "refund_exceeds_order")
            );
            gw.finish().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechat_refund_without_certificate_is_a_config_error_before_any_call() {
    let backend = &backends()[0];
    let t = tenant("nocert", 40);
    let gw = Gateway::start(backend, std::slice::from_ref(&t)).await;
    // Drop the certificate from the stored config; the change is live on the next request.
    let store = &gw.state.tenant_store;
    let stored = store.get(&t.id).await.unwrap().unwrap();
    let mut doc = stored.document.clone();
    let wx = doc["providers"]["wechat_miniprogram"]
        .as_table()
        .unwrap()
        .clone();
    let mut wx = wx;
    wx.remove("client_cert");
    wx.remove("client_key");
    doc["providers"]
        .as_table_mut()
        .unwrap()
        .insert("wechat_miniprogram".into(), toml::Value::Table(wx));
    store.put(&t.id, &doc, None, "test", None).await.unwrap();
    paybridge_server::live::reload(&gw.state).await.unwrap();

    let no = paid_order(&gw, &t, Provider::Wechat, 100).await;
    let (status, err) = refund(&gw, &t.id, &no, "NC1", 100).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "provider_misconfigured");
    assert_eq!(
        err["error"]["field"],
        "providers.wechat_miniprogram.client_cert"
    );
    let (status, _) = gw.get(&t.id, &format!("/v1/orders/{no}/refunds/NC1")).await;
    assert_eq!(status, 404, "nothing was kept");
    let (_, sim) = {
        let r = gw
            .http
            .get(format!(
                "{}/sandbox/wechat_miniprogram/control/orders/{no}",
                gw.base
            ))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<serde_json::Value>().await.unwrap())
    };
    assert!(
        sim.get("refunds")
            .is_none_or(|r| r.as_array().is_none_or(Vec::is_empty)),
        "no refund reached WeChat: {sim}"
    );
    gw.finish().await;
}

fn refund_calls(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("paybridge_provider_call_duration_seconds_count{")
                && l.contains("endpoint=\"refund\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refund_is_failed_and_its_replay_is_not_sent_again() {
    for backend in backends() {
        let t = tenant("ref_fail", 41);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let no = paid_order(&gw, &t, Provider::Alipay, 300).await;
        // The refund window closed at Alipay: a refund is refused (ACQ.TRADE_HAS_FINISHED).
        let (s, body) = gw
            .sandbox_of(
                "alipay_app",
                "/control/notify",
                &serde_json::json!({"out_trade_no": no, "trade_status": "TRADE_FINISHED"}),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        let (s, err) = refund(&gw, &t.id, &no, "RF-1", 100).await;
        assert_eq!(
            (s, err["error"]["code"].as_str()),
            (422, Some("refund_not_allowed")),
            "{err}"
        );
        let metrics = || async {
            gw.http
                .get(format!("{}/metrics", gw.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        let calls = refund_calls(&metrics().await);
        let (s, replay) = refund(&gw, &t.id, &no, "RF-1", 100).await;
        assert_eq!(
            (s, replay["status"].as_str()),
            (200, Some("failed")),
            "{}: {replay}",
            backend.name()
        );
        assert_eq!(
            refund_calls(&metrics().await),
            calls,
            "a failed refund's replay is answered from the database"
        );
        // Its amount is free again.
        let o = order(&gw, &t.id, &no).await;
        assert_eq!(o["refunded_amount"], 0);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_refund_report_changes_nothing_not_even_updated_at() {
    for backend in backends() {
        let t = tenant("ref_dup", 42);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let no = paid_order(&gw, &t, Provider::Wechat, 300).await;
        let (s, r) = refund(&gw, &t.id, &no, "RD-1", 100).await;
        assert_eq!((s, r["status"].as_str()), (201, Some("processing")), "{r}");
        let path = format!("/v1/orders/{no}/refunds/RD-1");
        let before = gw.get(&t.id, &path).await.1;
        // WeChat still says PROCESSING: nothing new.
        let (s, synced) = gw.get(&t.id, &format!("{path}?sync=true")).await;
        assert_eq!(s, 200, "{synced}");
        assert_eq!(
            synced,
            before,
            "{}: a repeated status changes nothing",
            backend.name()
        );
        gw.finish().await;
    }
}

/// An order's fee, recorded by its statement beside the order's row, is in the order's JSON and in
/// the events of its later changes: the webhook's view reads it in the transaction that writes the
/// change.
#[tokio::test]
async fn a_refund_event_carries_the_orders_fee() {
    use sea_orm::ConnectionTrait;
    for backend in backends() {
        let t = tenant("ref_fee", 43);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let no = paid_order(&gw, &t, Provider::Alipay, 300).await;
        gw.state
            .store
            .db()
            .execute_unprepared(&format!(
                "INSERT INTO order_fees (order_id, fee) SELECT id, 7 FROM orders \
                 WHERE out_trade_no = '{no}'"
            ))
            .await
            .unwrap();
        let (status, r) = refund(&gw, &t.id, &no, "FEE-1", 100).await;
        assert_eq!(status, 201, "{}: {r}", backend.name());
        settle(&gw, &t, Provider::Alipay, &no, "FEE-1").await;
        let events = gw.state.store.outbox(&t.id).await.unwrap();
        let refunded = events
            .iter()
            .find(|e| e.event_type == "order.partially_refunded")
            .unwrap();
        let data: serde_json::Value = serde_json::from_str(&refunded.data).unwrap();
        assert_eq!(
            (&data["status"], &data["fee"]),
            (
                &serde_json::json!("partially_refunded"),
                &serde_json::json!(7)
            ),
            "{}: {data}",
            backend.name()
        );
        assert_eq!(order(&gw, &t.id, &no).await["fee"], 7, "{}", backend.name());
        gw.finish().await;
    }
}
