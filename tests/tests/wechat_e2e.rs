//! End to end through the HTTP API and the WeChat sandbox, on SQLite and (with `DATABASE_URL`)
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use paybridge_tests::wechat::{
    self, SUCCESS_ACK, create_order, login, notify, parse_xml, pay, resign, sign, to_xml,
};
use paybridge_tests::{Gateway, TestTenant, backends, wechat_api_key};

fn tenant_a() -> TestTenant {
    TestTenant::wechat("shop_a", 1, "HMAC-SHA256")
}

fn tenant_b() -> TestTenant {
    TestTenant::wechat("shop_b", 2, "MD5")
}

async fn order_status(gw: &Gateway, tenant: &str, no: &str) -> serde_json::Value {
    let (status, body) = gw.get(tenant, &format!("/v1/orders/{no}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_order_pay_gives_a_paid_order() {
    for backend in backends() {
        for tenant in [tenant_a(), tenant_b()] {
            let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
            let openid = login(&gw, &tenant.id).await;
            let no = wechat::trade_no();
            let (status, body) = gw
                .post(
                    &tenant.id,
                    "/v1/orders",
                    &serde_json::json!({
                        "provider": "wechat_miniprogram", "out_trade_no": no, "amount": 1990,
                        "description": "拿铁 Latte ×2", "payer": {"openid": openid}, "attach": "table=7",
                    }),
                )
                .await;
            assert_eq!(status, 201, "{}: {body}", backend.name());
            assert_eq!(body["order"]["status"], "pending");
            assert_eq!(body["order"]["amount"], 1990);
            assert_eq!(body["order"]["flags"], serde_json::json!([]));

            // The five wx.requestPayment params, checked by the test's own signer.
            let cp = &body["client_payment"]["wechat_miniprogram"];
            let params: BTreeMap<String, String> = [
                ("appId", tenant.appid.as_str()),
                ("timeStamp", cp["timeStamp"].as_str().unwrap()),
                ("nonceStr", cp["nonceStr"].as_str().unwrap()),
                ("package", cp["package"].as_str().unwrap()),
                ("signType", cp["signType"].as_str().unwrap()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            assert_eq!(cp["signType"], tenant.sign_type.as_str());
            assert!(cp["package"].as_str().unwrap().starts_with("prepay_id=wx"));
            assert_eq!(cp["timeStamp"].as_str().unwrap().len(), 10);
            let expected = sign(&params, &wechat_api_key(&tenant.id), &tenant.sign_type);
            assert_eq!(
                cp["paySign"].as_str().unwrap(),
                expected,
                "paySign does not verify"
            );

            let paid = pay(&gw, &tenant, &no, "deliver").await;
            assert_eq!(paid["deliveries"][0]["acknowledged"], true, "{paid}");
            let order = order_status(&gw, &tenant.id, &no).await;
            assert_eq!(order["status"], "paid", "{}: {order}", backend.name());
            assert_eq!(order["provider_trade_no"], paid["transaction_id"]);
            assert!(
                order["paid_at"]
                    .as_str()
                    .is_some_and(|s| s.ends_with('Z') || s.contains('+')),
                "{order}"
            );
            let outbox = gw.state.store.outbox(&tenant.id).await.unwrap();
            assert_eq!(
                outbox
                    .iter()
                    .filter(|e| e.event_type == "order.paid")
                    .count(),
                1
            );
            gw.finish().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_copies_change_the_order_once() {
    for backend in backends() {
        let tenant = tenant_a();
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let (no, _) = create_order(&gw, &tenant.id, 500).await;
        let paid = pay(&gw, &tenant, &no, "return").await;
        let xml = paid["notification"].as_str().unwrap().to_owned();
        assert!(
            !parse_xml(&xml).contains_key("sign_type"),
            "the sandbox should omit sign_type"
        );
        let copies = (0..200).map(|_| notify(&gw, &tenant.id, &xml));
        let answers = futures::future::join_all(copies).await;
        for (status, body) in &answers {
            assert_eq!(*status, 200);
            assert_eq!(body, SUCCESS_ACK);
        }
        let order = order_status(&gw, &tenant.id, &no).await;
        assert_eq!(order["status"], "paid");
        let outbox = gw.state.store.outbox(&tenant.id).await.unwrap();
        assert_eq!(
            outbox.len(),
            1,
            "{}: one transition, one webhook event",
            backend.name()
        );
        let updated_at = order["updated_at"].clone();
        let (status, body) = notify(&gw, &tenant.id, &xml).await;
        assert_eq!((status, body.as_str()), (200, SUCCESS_ACK));
        assert_eq!(
            order_status(&gw, &tenant.id, &no).await["updated_at"],
            updated_at,
            "a duplicate changes nothing"
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_mismatched_notifications_are_refused_and_recorded() {
    for backend in backends() {
        let (a, b) = (tenant_a(), tenant_b());
        let gw = Gateway::start(&backend, &[a.clone(), b.clone()]).await;
        let (no, _) = create_order(&gw, &a.id, 300).await;
        let good = parse_xml(
            pay(&gw, &a, &no, "return").await["notification"]
                .as_str()
                .unwrap(),
        );

        let mut cases: Vec<(&str, String, &str)> = Vec::new();
        let mut tampered = good.clone();
        tampered.insert("total_fee".into(), "1".into()); // changed without re-signing
        cases.push(("tampered signature", to_xml(&tampered), &a.id));
        let mut wrong_fee = good.clone();
        wrong_fee.insert("total_fee".into(), "299".into());
        resign(&mut wrong_fee, &a);
        cases.push(("wrong total_fee", to_xml(&wrong_fee), &a.id));
        let mut wrong_appid = good.clone();
        wrong_appid.insert("appid".into(), "wx99999999999999".into());
        resign(&mut wrong_appid, &a);
        cases.push(("wrong appid", to_xml(&wrong_appid), &a.id));
        let mut wrong_mch = good.clone();
        wrong_mch.insert("mch_id".into(), "1999999999".into());
        resign(&mut wrong_mch, &a);
        cases.push(("wrong mch_id", to_xml(&wrong_mch), &a.id));
        let mut unknown = good.clone();
        unknown.insert("out_trade_no".into(), "NOSUCHORDER1".into());
        resign(&mut unknown, &a);
        cases.push(("unknown out_trade_no", to_xml(&unknown), &a.id));
        cases.push(("another tenant's URL", to_xml(&good), &b.id));

        for (name, xml, tenant_url) in &cases {
            let (status, body) = notify(&gw, tenant_url, xml).await;
            assert_eq!(status, 200, "{name}");
            let ack = parse_xml(&body);
            assert_eq!(
                ack.get("return_code").map(String::as_str),
                Some("FAIL"),
                "{}: {name}: {body}",
                backend.name()
            );
            assert!(!ack.get("return_msg").unwrap().is_empty());
            assert!(
                !body.contains("Error") && !body.contains("sqlx"),
                "no internals: {body}"
            );
        }
        let order = order_status(&gw, &a.id, &no).await;
        assert_eq!(
            order["status"],
            "pending",
            "{}: nothing changed",
            backend.name()
        );
        let attempts_a = gw.state.store.attempts(&a.id).await.unwrap();
        let attempts_b = gw.state.store.attempts(&b.id).await.unwrap();
        assert_eq!(attempts_a.len(), 5, "every refused attempt is recorded");
        assert_eq!(attempts_b.len(), 1);
        assert!(
            attempts_a
                .iter()
                .chain(&attempts_b)
                .all(|a| a.outcome == "rejected")
        );

        // The genuine notification still works afterwards.
        let (status, body) = notify(&gw, &a.id, &to_xml(&good)).await;
        assert_eq!((status, body.as_str()), (200, SUCCESS_ACK));
        assert_eq!(order_status(&gw, &a.id, &no).await["status"], "paid");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bombs_and_huge_bodies_get_a_4xx() {
    let backend = &backends()[0];
    let tenant = tenant_a();
    let gw = Gateway::start(backend, std::slice::from_ref(&tenant)).await;
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><xml><return_code>&lol3;</return_code></xml>"#;
    for (name, body) in [
        ("malformed", b"<xml><return_code>SUCCESS</xml".to_vec()),
        ("not xml", b"hello".to_vec()),
        ("entity bomb", bomb.as_bytes().to_vec()),
        ("10 MB", vec![b'a'; 10 * 1024 * 1024]),
    ] {
        let res = gw
            .http
            .post(format!(
                "{}/notify/{}/wechat_miniprogram",
                gw.base, tenant.id
            ))
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await;
        match res {
            Ok(r) => assert!(r.status().is_client_error(), "{name}: {}", r.status()),
            // A server may close the connection while a 10 MB upload is still being sent.
            Err(e) => assert_eq!(name, "10 MB", "{name}: {e}"),
        }
    }
    let (status, _) = gw.get(&tenant.id, "/healthz").await;
    assert_eq!(status, 200, "still serving");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_return_the_same_order_and_changes_conflict() {
    for backend in backends() {
        let tenant = tenant_a();
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let openid = login(&gw, &tenant.id).await;
        let no = wechat::trade_no();
        let req = serde_json::json!({
            "provider": "wechat_miniprogram", "out_trade_no": no, "amount": 100,
            "description": "Espresso", "payer": {"openid": openid},
        });
        let (s1, first) = gw.post(&tenant.id, "/v1/orders", &req).await;
        let (s2, second) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!((s1, s2), (201, 200), "{}", backend.name());
        assert_eq!(first, second, "an exact replay returns the same resource");
        let mut changed = req.clone();
        changed["amount"] = serde_json::json!(101);
        let (s3, err) = gw.post(&tenant.id, "/v1/orders", &changed).await;
        assert_eq!(s3, 409);
        assert_eq!(err["error"]["code"], "out_trade_no_conflict");
        assert_eq!(err["error"]["field"], "out_trade_no");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_key_cannot_see_an_order() {
    for backend in backends() {
        let (a, b) = (tenant_a(), tenant_b());
        let gw = Gateway::start(&backend, &[a.clone(), b.clone()]).await;
        let (no, _) = create_order(&gw, &a.id, 100).await;
        let (status, body) = gw.get(&b.id, &format!("/v1/orders/{no}")).await;
        assert_eq!(status, 404, "{body}");
        let (status, _) = gw
            .post(
                &b.id,
                &format!("/v1/orders/{no}/close"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 404);
        let (status, _) = gw.get("nobody", &format!("/v1/orders/{no}")).await;
        assert_eq!(status, 401);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_before_pay_then_money_arrives_flags_the_order() {
    for backend in backends() {
        let tenant = tenant_a();
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let (no, _) = create_order(&gw, &tenant.id, 800).await;
        let (status, closed) = gw
            .post(
                &tenant.id,
                &format!("/v1/orders/{no}/close"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 200, "{closed}");
        assert_eq!(closed["status"], "closed");
        let (status, again) = gw
            .post(
                &tenant.id,
                &format!("/v1/orders/{no}/close"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(
            (status, again["status"].as_str()),
            (200, Some("closed")),
            "closing twice is idempotent"
        );

        // Money arrives anyway (e.g. the payer paid just before the close reached WeChat).
        let (status, paid) = gw
            .sandbox(
                "/control/pay",
                &serde_json::json!({"out_trade_no": no, "mch_id": tenant.mch_id, "notify": "deliver", "force": true}),
            )
            .await;
        assert_eq!(status, 200, "{paid}");
        assert_eq!(
            paid["deliveries"][0]["acknowledged"], true,
            "accepted, not dropped: {paid}"
        );
        let order = order_status(&gw, &tenant.id, &no).await;
        assert_eq!(order["status"], "paid", "{}", backend.name());
        assert_eq!(order["flags"], serde_json::json!(["paid_after_close"]));
        let types: Vec<_> = gw
            .state
            .store
            .outbox(&tenant.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert!(types.contains(&"order.flagged".to_owned()), "{types:?}");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_recovered_by_sync() {
    for backend in backends() {
        let tenant = tenant_b();
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let (no, _) = create_order(&gw, &tenant.id, 1200).await;
        let paid = pay(&gw, &tenant, &no, "drop").await;
        assert_eq!(
            order_status(&gw, &tenant.id, &no).await["status"],
            "pending"
        );
        let (status, order) = gw
            .get(&tenant.id, &format!("/v1/orders/{no}?sync=true"))
            .await;
        assert_eq!(status, 200, "{order}");
        assert_eq!(order["status"], "paid", "{}", backend.name());
        assert_eq!(order["provider_trade_no"], paid["transaction_id"]);
        // The late notification is then a duplicate and still acknowledged.
        let (status, body) = gw
            .sandbox(
                "/control/notify",
                &serde_json::json!({"out_trade_no": no, "mch_id": tenant.mch_id}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["deliveries"][0]["acknowledged"], true, "{body}");
        assert_eq!(gw.state.store.outbox(&tenant.id).await.unwrap().len(), 1);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_keep_the_order_pending_and_a_replay_retries() {
    for backend in backends() {
        let tenant = tenant_a();
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let openid = login(&gw, &tenant.id).await;
        let no = wechat::trade_no();
        let req = serde_json::json!({
            "provider": "wechat_miniprogram", "out_trade_no": no, "amount": 100,
            "description": "Mocha", "payer": {"openid": openid},
        });
        let (s, _) = gw
            .sandbox(
                "/control/fail",
                &serde_json::json!({"api": "unifiedorder", "mode": "SYSTEMERROR", "times": 1}),
            )
            .await;
        assert_eq!(s, 200);
        let (status, err) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!(status, 502, "{}: {err}", backend.name());
        assert_eq!(err["error"]["code"], "provider_unavailable");
        let order = order_status(&gw, &tenant.id, &no).await;
        assert_eq!(order["status"], "pending");
        let (status, body) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["client_payment"]["wechat_miniprogram"]["paySign"].is_string(),
            "{body}"
        );

        // sync=true with the provider down is a 502 and changes nothing.
        let before = order_status(&gw, &tenant.id, &no).await;
        gw.sandbox(
            "/control/fail",
            &serde_json::json!({"api": "orderquery", "mode": "http500", "times": 1}),
        )
        .await;
        let (status, err) = gw
            .get(&tenant.id, &format!("/v1/orders/{no}?sync=true"))
            .await;
        assert_eq!(status, 502, "{err}");
        assert_eq!(order_status(&gw, &tenant.id, &no).await, before);

        // A response with a bad signature is not trusted either.
        gw.sandbox(
            "/control/fail",
            &serde_json::json!({"api": "orderquery", "mode": "bad_sign", "times": 1}),
        )
        .await;
        let (status, _) = gw
            .get(&tenant.id, &format!("/v1/orders/{no}?sync=true"))
            .await;
        assert_eq!(status, 502);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_timeout_is_a_504_and_a_replay_recovers() {
    for backend in backends() {
        let tenant = tenant_a();
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&tenant), |c| {
            c.http.outbound_timeout_seconds = 1;
        })
        .await;
        let openid = login(&gw, &tenant.id).await;
        let no = wechat::trade_no();
        let req = serde_json::json!({
            "provider": "wechat_miniprogram", "out_trade_no": no, "amount": 100,
            "description": "Slow tea", "payer": {"openid": openid},
        });
        gw.sandbox(
            "/control/fail",
            &serde_json::json!({"api": "unifiedorder", "mode": "timeout", "times": 1}),
        )
        .await;
        let started = std::time::Instant::now();
        let (status, err) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (504, Some("provider_timeout")),
            "{err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "the outbound timeout bounds the call"
        );
        assert_eq!(
            order_status(&gw, &tenant.id, &no).await["status"],
            "pending"
        );
        // The simulator did create the prepay (the outcome of a timeout is unknown); the replay
        // sends identical parameters and gets it.
        let (status, body) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!(status, 200, "{}: {body}", backend.name());
        assert!(body["client_payment"]["wechat_miniprogram"]["paySign"].is_string());
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_any_provider_call() {
    let backend = &backends()[0];
    let tenant = tenant_a();
    let gw = Gateway::start(backend, std::slice::from_ref(&tenant)).await;
    let base = serde_json::json!({
        "provider": "wechat_miniprogram", "out_trade_no": "GOOD_0001", "amount": 100,
        "description": "Tea", "payer": {"openid": "oX"},
    });
    let cases = [
        ("out_trade_no", serde_json::json!("short")),
        ("out_trade_no", serde_json::json!("has space 123")),
        ("amount", serde_json::json!(0)),
        ("amount", serde_json::json!(-5)),
        ("currency", serde_json::json!("USD")),
        ("description", serde_json::json!("")),
        ("description", serde_json::json!("咖".repeat(43))),
        ("expires_in_seconds", serde_json::json!(60)),
    ];
    for (field, value) in cases {
        let mut req = base.clone();
        req[field] = value.clone();
        let (status, err) = gw.post(&tenant.id, "/v1/orders", &req).await;
        assert_eq!(status, 400, "{field}={value}: {err}");
        assert_eq!(err["error"]["field"], field);
    }
    let mut float = base.clone();
    float["amount"] = serde_json::json!(1.5);
    let (status, err) = gw.post(&tenant.id, "/v1/orders", &float).await;
    assert_eq!(status, 400, "a float amount is refused: {err}");
    let mut other = base.clone();
    other["provider"] = serde_json::json!("stripe");
    let (status, err) = gw.post(&tenant.id, "/v1/orders", &other).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("provider_not_enabled"))
    );
    let mut no_payer = base.clone();
    no_payer.as_object_mut().unwrap().remove("payer");
    let (status, err) = gw.post(&tenant.id, "/v1/orders", &no_payer).await;
    assert_eq!(status, 422, "JSAPI needs an openid: {err}");
    // ...and the refused order did not stick: the corrected request creates it.
    let openid = login(&gw, &tenant.id).await;
    let mut fixed = no_payer.clone();
    fixed["payer"] = serde_json::json!({ "openid": openid });
    let (status, body) = gw.post(&tenant.id, "/v1/orders", &fixed).await;
    assert_eq!(status, 201, "{body}");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_are_clear_and_the_session_key_never_leaves() {
    let backend = &backends()[0];
    let tenant = tenant_a();
    let gw = Gateway::start(backend, std::slice::from_ref(&tenant)).await;
    let path = "/v1/wechat_miniprogram/sessions";
    let (status, ok) = gw
        .post(&tenant.id, path, &serde_json::json!({"code": "union-abc"}))
        .await;
    assert_eq!(status, 200, "{ok}");
    assert!(ok.get("session_key").is_none());
    assert!(ok["unionid"].is_string(), "{ok}");
    let (status, used) = gw
        .post(&tenant.id, path, &serde_json::json!({"code": "union-abc"}))
        .await;
    assert_eq!(
        (status, used["error"]["code"].as_str()),
        (422, Some("code_used")),
        "{used}"
    );
    let (status, bad) = gw
        .post(&tenant.id, path, &serde_json::json!({"code": "invalid-1"}))
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (422, Some("invalid_code")),
        "{bad}"
    );
    let (status, _) = gw
        .post(&tenant.id, path, &serde_json::json!({"code": "ratelimit"}))
        .await;
    assert_eq!(status, 429);
    let (status, _) = gw
        .post(&tenant.id, path, &serde_json::json!({"code": "busy"}))
        .await;
    assert_eq!(status, 502);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenant_in_a_notify_url_is_a_404_and_refusals_are_counted() {
    let backend = &backends()[0];
    let tenant = tenant_a();
    let gw = Gateway::start(backend, std::slice::from_ref(&tenant)).await;
    let (status, _) = notify(&gw, "nobody", "<xml></xml>").await;
    assert_eq!(status, 404);
    let (status, _) = notify(
        &gw,
        &tenant.id,
        "<xml><return_code>SUCCESS</return_code></xml>",
    )
    .await;
    assert_eq!(status, 200);
    let r = gw
        .http
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let metrics = r.text().await.unwrap();
    assert!(
        metrics.contains(
            "paybridge_notifications_total{provider=\"wechat_miniprogram\",channel=\"payment\",verdict=\"refused\"} 1"
        ),
        "{metrics}"
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notification_limit_applies_even_below_the_api_limit() {
    let tenant = tenant_a();
    let gw = Gateway::start_with(&backends()[0], std::slice::from_ref(&tenant), |c| {
        c.http.max_body_bytes = 65_536;
        c.http.max_notification_bytes = 1_024;
    })
    .await;
    let (status, _) = notify(
        &gw,
        &tenant.id,
        &format!("<xml><a>{}</a></xml>", "x".repeat(2_000)),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = notify(
        &gw,
        &tenant.id,
        "<xml><return_code>SUCCESS</return_code></xml>",
    )
    .await;
    assert_eq!(status, 200);
    gw.finish().await;
}

/// The order row as stored now.
async fn stored(
    gw: &Gateway,
    tenant: &str,
    no: &str,
) -> paybridge_server::db::entities::order::Model {
    gw.state
        .store
        .find_order(tenant, no)
        .await
        .unwrap()
        .unwrap()
}

/// Apply a payment of `no` through the writer, with `read_before` as the row read before the
/// write (as a notification's verification reads it).
async fn apply_payment(
    gw: &Gateway,
    tenant: &str,
    no: &str,
    event_id: &str,
    read_before: Option<paybridge_server::db::entities::order::Model>,
) -> paybridge_server::store::Applied {
    use paybridge_core::money::Fen;
    use paybridge_core::provider::PaymentEvent;
    let ev = paybridge_server::usecases::orders::payment_event(
        &PaymentEvent {
            out_trade_no: no.to_owned(),
            provider_trade_no: format!("4200{event_id}"),
            amount: Fen::new(600),
            paid_at: chrono::Utc::now(),
            event_id: event_id.to_owned(),
        },
        true,
    );
    let (tenant, no) = (tenant.to_owned(), no.to_owned());
    gw.state
        .store
        .write(move |txn| {
            Box::pin(async move {
                paybridge_server::store::orders::apply_order_event(
                    txn,
                    &tenant,
                    "wechat_miniprogram",
                    &no,
                    &ev,
                    read_before.as_ref(),
                )
                .await
            })
        })
        .await
        .unwrap()
}

/// A notification's write uses the order row its verification read, and reads it again only
/// when that row changed in between: a stale row never decides, and never reaches the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_writes_from_its_earlier_read_only_while_that_row_is_current() {
    use paybridge_server::store::Applied;
    use sea_orm::ConnectionTrait;
    for backend in backends() {
        let tenant = tenant_a();
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let read = |no: String| {
            let gw = &gw;
            let tenant = tenant.id.clone();
            async move {
                let mut o = stored(gw, &tenant, &no).await;
                // A mark that only a write from this very read can carry (the description is
                // never written after the insert, and the write does not compare it).
                o.description = "as read before".to_owned();
                o
            }
        };

        // Current: the write goes through on the earlier read, without a read of its own.
        let (no, _) = create_order(&gw, &tenant.id, 600).await;
        let applied = apply_payment(&gw, &tenant.id, &no, "e1", Some(read(no.clone()).await)).await;
        let Applied::Changed(change) = &applied else {
            panic!("{}: {applied:?}", backend.name());
        };
        assert_eq!(change.order.status, "paid");
        assert_eq!(
            change.order.description,
            "as read before",
            "{}",
            backend.name()
        );

        // Stale in each thing the change or the webhook's view is made of: decided on a fresh read.
        let stale = [
            ("flags", "flags = '[\"paid_after_close\"]'"),
            ("updated_at", "updated_at = '2030-01-01T00:00:00+00:00'"),
        ];
        for (what, set) in stale {
            let (no, _) = create_order(&gw, &tenant.id, 600).await;
            let before = read(no.clone()).await;
            gw.state
                .store
                .db()
                .execute_unprepared(&format!(
                    "UPDATE orders SET {set} WHERE out_trade_no = '{no}'"
                ))
                .await
                .unwrap();
            let event_id = format!("stale_{what}");
            let applied = apply_payment(&gw, &tenant.id, &no, &event_id, Some(before)).await;
            let Applied::Changed(change) = &applied else {
                panic!("{} {what}: {applied:?}", backend.name());
            };
            assert_ne!(
                change.order.description,
                "as read before",
                "{} {what}",
                backend.name()
            );
            let now = stored(&gw, &tenant.id, &no).await;
            assert_eq!(change.order.flags, now.flags, "{} {what}", backend.name());
            assert_eq!(now.status, "paid");
        }

        // Paid by another event since the read: the second payment changes nothing, and the
        // first one's trade number stays.
        let (no, _) = create_order(&gw, &tenant.id, 600).await;
        let before = read(no.clone()).await;
        apply_payment(&gw, &tenant.id, &no, "first", None).await;
        let applied = apply_payment(&gw, &tenant.id, &no, "second", Some(before)).await;
        assert!(
            matches!(applied, Applied::Unchanged(_)),
            "{}: {applied:?}",
            backend.name()
        );
        let now = stored(&gw, &tenant.id, &no).await;
        assert_eq!(now.provider_trade_no.as_deref(), Some("4200first"));
        let events = gw.state.store.provider_events(&tenant.id).await.unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.event_id == "payment:second" && e.order_id == now.id)
                .count(),
            1,
            "{}: recorded once, as a confirmation",
            backend.name()
        );
        gw.finish().await;
    }
}
