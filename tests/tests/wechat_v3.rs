//! WeChat Pay API v3 end to end, through the HTTP API and the sandbox's v3 simulator, on SQLite
//! and (with `DATABASE_URL`) PostgreSQL: the mini-program flow, forged notifications, the switch
//! from platform certificates to the public key, and a tenant moving from v2 to v3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, Utc};
use paybridge_server::reconciler::run_once;
use paybridge_tests::wechat_v3::{self, Forged, Key, PLATFORM_SERIAL};
use paybridge_tests::{Gateway, TestTenant, backends, wechat};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-for-v3-tests";

fn with_admin(c: &mut paybridge_server::config::Config) {
    c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(ADMIN_TOKEN)];
}

async fn order(gw: &Gateway, t: &str, no: &str) -> Value {
    let (status, body) = gw.get(t, &format!("/v1/orders/{no}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Changes the tenant's `[providers.wechat_miniprogram]` through the admin API (GET, edit,
/// PUT; secrets come back as `{"set": true}` and are kept).
async fn edit_wechat(
    gw: &Gateway,
    tenant: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) {
    let url = format!("{}/admin/api/tenants/{tenant}", gw.base);
    let res = gw
        .http
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut doc: Value = res.json().await.unwrap();
    let doc = if doc.get("document").is_some() {
        doc["document"].take()
    } else {
        doc
    };
    let mut doc = doc;
    edit(
        doc["providers"]["wechat_miniprogram"]
            .as_object_mut()
            .unwrap(),
    );
    let res = gw
        .http
        .put(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&doc)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(status, 200, "{}", res.text().await.unwrap());
}

/// Public-key mode: the sandbox's WeChat Pay public key and this merchant's id for it.
fn add_public_key(w: &mut serde_json::Map<String, Value>, mch_id: &str) {
    let key = format!("{}/wechatpay_sandbox_pub_key.pem", wechat_v3::SANDBOX_KEYS);
    w.insert("wechatpay_public_key".into(), json!(key));
    w.insert(
        "wechatpay_public_key_id".into(),
        json!(wechat_v3::public_key_id(mch_id)),
    );
}

async fn sim_order(gw: &Gateway, no: &str) -> Value {
    gw.http
        .get(format!(
            "{}/sandbox/wechat_miniprogram/control/orders/{no}",
            gw.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_tenant_walks_the_mini_program_flow() {
    for backend in backends() {
        let t = wechat_v3::tenant("v3_flow", 61, &wechat_v3::public_key_settings("1900000161"));
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let name = backend.name();

        // Login, create: the client gets RSA paySign params.
        let (no, created) = wechat::create_order(&gw, &t.id, 150).await;
        let cp = &created["client_payment"]["wechat_miniprogram"];
        assert!(
            cp["package"].as_str().unwrap().starts_with("prepay_id=wx"),
            "{cp}"
        );
        assert!(wechat_v3::pay_sign_verifies(&t.appid, cp), "{cp}");
        assert_eq!(sim_order(&gw, &no).await["api_version"], "v3");

        // Paid: the sealed notification is acknowledged (2xx) and the order is paid.
        let paid = wechat::pay(&gw, &t, &no, "deliver").await;
        assert_eq!(
            paid["deliveries"][0]["acknowledged"], true,
            "{name}: {paid}"
        );
        let o = order(&gw, &t.id, &no).await;
        assert_eq!(o["status"], "paid", "{name}: {o}");
        assert_eq!(o["provider_trade_no"], paid["transaction_id"]);

        // Query: a lost notification is found by a sync.
        let (lost, _) = wechat::create_order(&gw, &t.id, 200).await;
        wechat::pay(&gw, &t, &lost, "drop").await;
        let (_, synced) = gw.get(&t.id, &format!("/v1/orders/{lost}?sync=true")).await;
        assert_eq!(synced["status"], "paid", "{name}: {synced}");

        // Close.
        let (unpaid, _) = wechat::create_order(&gw, &t.id, 300).await;
        let (status, closed) = gw
            .post(&t.id, &format!("/v1/orders/{unpaid}/close"), &json!({}))
            .await;
        assert_eq!(
            (status, closed["status"].as_str()),
            (200, Some("closed")),
            "{closed}"
        );
        assert_eq!(sim_order(&gw, &unpaid).await["trade_state"], "CLOSED");

        // Refund, settled by a v3 refund notification.
        let (status, refund) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &json!({"out_refund_no": "R3-1", "amount": 100}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {refund}");
        assert_eq!(refund["status"], "processing", "{refund}");
        let (status, settled) = gw
            .sandbox(
                "/control/refund",
                &json!({"out_refund_no": "R3-1", "mch_id": t.mch_id, "status": "SUCCESS"}),
            )
            .await;
        assert_eq!(status, 200, "{settled}");
        assert_eq!(
            settled["deliveries"][0]["acknowledged"], true,
            "{name}: {settled}"
        );
        let (_, refund) = gw
            .get(&t.id, &format!("/v1/orders/{no}/refunds/R3-1"))
            .await;
        assert_eq!(refund["status"], "succeeded", "{name}: {refund}");
        assert_eq!(order(&gw, &t.id, &no).await["status"], "partially_refunded");

        // The reconciler: a payment and a refund whose notifications were lost.
        let (quiet, _) = wechat::create_order(&gw, &t.id, 400).await;
        wechat::pay(&gw, &t, &quiet, "drop").await;
        let (status, _) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &json!({"out_refund_no": "R3-2", "amount": 50}),
            )
            .await;
        assert_eq!(status, 201);
        gw.sandbox("/control/refund", &json!({"out_refund_no": "R3-2", "mch_id": t.mch_id, "status": "SUCCESS", "notify": "drop"}))
            .await;
        let report = run_once(&gw.state, "a", Utc::now() + Duration::seconds(180))
            .await
            .unwrap();
        assert_eq!(report.errors, 0, "{name}: {report:?}");
        assert_eq!(order(&gw, &t.id, &quiet).await["status"], "paid", "{name}");
        let (_, refund) = gw
            .get(&t.id, &format!("/v1/orders/{no}/refunds/R3-2"))
            .await;
        assert_eq!(refund["status"], "succeeded", "{name}: {refund}");
        assert_eq!(order(&gw, &t.id, &no).await["status"], "refunded");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_v3_notifications_are_refused_and_the_genuine_one_pays() {
    for backend in backends() {
        let t = wechat_v3::tenant(
            "v3_forged",
            62,
            &wechat_v3::public_key_settings("1900000162"),
        );
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, _) = wechat::create_order(&gw, &t.id, 150).await;
        let genuine = Forged::payment(&t, &no, 150, "4200000000202612060000000062");
        let mut cases: Vec<(&str, Forged)> = Vec::new();
        let mut f = genuine.clone();
        f.key = Key::Platform; // signed by another key than the serial names
        cases.push(("tampered signature", f));
        let mut f = genuine.clone();
        f.serial = "PUB_KEY_ID_0114999999999900000000000001".to_owned();
        cases.push(("wrong serial", f));
        let mut f = genuine.clone();
        f.serial = PLATFORM_SERIAL.to_owned();
        f.key = Key::Platform;
        cases.push(("certificate the tenant does not trust", f));
        let mut f = genuine.clone();
        f.timestamp -= 301;
        cases.push(("stale timestamp", f));
        let mut f = genuine.clone();
        f.sealed_aad = "refund".to_owned();
        cases.push(("wrong AAD", f));
        let mut f = genuine.clone();
        f.resource["amount"]["total"] = json!(1);
        cases.push(("wrong amount", f));
        let mut f = genuine.clone();
        f.resource["mchid"] = json!("1999999999");
        cases.push(("foreign mchid", f));
        let mut f = genuine.clone();
        f.apiv3_key = wechat_v3::apiv3_key("someone_else");
        cases.push(("another merchant's APIv3 key", f));
        for (what, forged) in cases {
            let (body, headers) = forged.seal_and_sign();
            let (status, answer) = wechat_v3::notify(&gw, &t.id, &body, &headers).await;
            assert!(
                status >= 400,
                "{}: {what} answered {status} {answer}",
                backend.name()
            );
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["code"], "FAIL", "{what}");
            assert_eq!(order(&gw, &t.id, &no).await["status"], "pending", "{what}");
        }
        // A body changed after signing.
        let (body, headers) = genuine.seal_and_sign();
        let (status, _) =
            wechat_v3::notify(&gw, &t.id, &body.replace("EV-test", "EV-tesT"), &headers).await;
        assert!(status >= 400, "changed body answered {status}");
        // WeChat's own probe, through the simulator, is refused too.
        wechat::pay(&gw, &t, &no, "drop").await;
        let (_, probe) = gw
            .sandbox(
                "/control/notify",
                &json!({"out_trade_no": no, "mch_id": t.mch_id, "probe": true}),
            )
            .await;
        assert_eq!(probe["deliveries"][0]["acknowledged"], false, "{probe}");
        assert_eq!(order(&gw, &t.id, &no).await["status"], "pending");
        // The genuine one pays.
        let (status, answer) = wechat_v3::notify(&gw, &t.id, &body, &headers).await;
        assert!((200..300).contains(&status), "{status} {answer}");
        let o = order(&gw, &t.id, &no).await;
        assert_eq!(o["status"], "paid", "{}: {o}", backend.name());
        assert_eq!(o["provider_trade_no"], "4200000000202612060000000062");
        gw.finish().await;
    }
}

/// Pays `count` new orders one after another; returns how many deliveries were not
/// acknowledged and the order numbers.
async fn pay_stream(gw: &Gateway, t: &TestTenant, count: usize) -> (usize, Vec<String>) {
    let mut refused = 0;
    let mut numbers = Vec::new();
    for _ in 0..count {
        let (no, _) = wechat::create_order(gw, &t.id, 120).await;
        let paid = wechat::pay(gw, t, &no, "deliver").await;
        refused += paid["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["acknowledged"] != true)
            .count();
        numbers.push(no);
    }
    (refused, numbers)
}

async fn set_mode(gw: &Gateway, t: &TestTenant, body: Value) {
    let mut body = body;
    body["mch_id"] = json!(t.mch_id);
    let (status, answer) = gw.sandbox("/control/v3/keys", &body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_from_certificates_to_the_public_key_refuses_no_genuine_notification() {
    for backend in backends() {
        let t = wechat_v3::tenant("v3_switch", 63, "platform_certificates = true\n");
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), with_admin).await;
        let (_, keys) = gw
            .sandbox("/control/v3/keys", &json!({"mch_id": t.mch_id}))
            .await;
        assert_eq!(keys["mode"], "certificate", "{keys}");

        // Notifications keep arriving during every step of the switch.
        let stream = pay_stream(&gw, &t, 24);
        let steps = async {
            let pause = || tokio::time::sleep(std::time::Duration::from_millis(150));
            pause().await;
            // 1. The merchant configures the public key beside the certificates.
            edit_wechat(&gw, &t.id, |w| add_public_key(w, &t.mch_id)).await;
            pause().await;
            // 2. WeChat moves notifications over gradually, 3. then entirely.
            set_mode(
                &gw,
                &t,
                json!({"mode": "switching", "public_key_percent": 50}),
            )
            .await;
            pause().await;
            set_mode(&gw, &t, json!({"mode": "public_key"})).await;
            pause().await;
            // 4. The merchant drops certificate mode.
            edit_wechat(&gw, &t.id, |w| {
                w.remove("platform_certificates");
            })
            .await;
        };
        let ((refused, numbers), ()) = tokio::join!(stream, steps);
        assert_eq!(
            refused,
            0,
            "{}: refused genuine notifications",
            backend.name()
        );
        // Every order is paid, and both kinds of signature were sent and accepted.
        let (after, more) = pay_stream(&gw, &t, 2).await;
        assert_eq!(after, 0);
        let mut serials = std::collections::BTreeSet::new();
        for no in numbers.iter().chain(&more) {
            assert_eq!(order(&gw, &t.id, no).await["status"], "paid", "{no}");
            for d in sim_order(&gw, no).await["deliveries"].as_array().unwrap() {
                assert_eq!(d["acknowledged"], true, "{d}");
                serials.insert(d["serial"].as_str().unwrap().to_owned());
            }
        }
        assert!(serials.contains(PLATFORM_SERIAL), "{serials:?}");
        assert!(
            serials.contains(&wechat_v3::public_key_id(&t.mch_id)),
            "{serials:?}"
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moving_from_v2_to_v3_still_settles_its_v2_orders() {
    for backend in backends() {
        let t = TestTenant::wechat("v2_to_v3", 64, "HMAC-SHA256");
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), with_admin).await;
        let name = backend.name();
        let (v2_pending, _) = wechat::create_order(&gw, &t.id, 100).await;
        let (v2_quiet, _) = wechat::create_order(&gw, &t.id, 100).await;
        let (v2_paid, _) = wechat::create_order(&gw, &t.id, 100).await;
        wechat::pay(&gw, &t, &v2_paid, "deliver").await;

        edit_wechat(&gw, &t.id, |w| {
            w.insert("api_version".into(), json!("v3"));
            w.insert("apiv3_key".into(), json!(wechat_v3::apiv3_key(&t.id)));
            add_public_key(w, &t.mch_id);
        })
        .await;

        // The APIv3 key is a secret like the others: masked when read, encrypted at rest.
        let res = gw
            .http
            .get(format!("{}/admin/api/tenants/{}", gw.base, t.id))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let shown = res.text().await.unwrap();
        assert!(!shown.contains(&wechat_v3::apiv3_key(&t.id)), "{shown}");
        assert!(shown.contains(r#""apiv3_key":{"set":true}"#), "{shown}");
        let db = gw.state.store.db();
        for (table, column) in [
            ("admin_tenants", "document"),
            ("admin_tenant_versions", "document"),
            ("admin_audit", "diff"),
        ] {
            let rows = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT {column} FROM {table}"),
                ))
                .await
                .unwrap();
            assert!(!rows.is_empty(), "{table}");
            for row in rows {
                let text: String = row.try_get("", column).unwrap();
                assert!(
                    !text.contains(&wechat_v3::apiv3_key(&t.id)),
                    "{name}: the APIv3 key in plaintext in {table}"
                );
            }
        }

        // New orders are v3.
        let (v3_order, created) = wechat::create_order(&gw, &t.id, 100).await;
        assert_eq!(
            created["client_payment"]["wechat_miniprogram"]["signType"],
            "RSA"
        );
        assert_eq!(sim_order(&gw, &v3_order).await["api_version"], "v3");
        // The pending v2 order is paid by a v2 notification.
        let paid = wechat::pay(&gw, &t, &v2_pending, "deliver").await;
        assert_eq!(
            paid["deliveries"][0]["acknowledged"], true,
            "{name}: {paid}"
        );
        assert_eq!(order(&gw, &t.id, &v2_pending).await["status"], "paid");
        // The v2 paid order is refunded through v2, and its v2 refund notification settles it.
        let (status, refund) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{v2_paid}/refunds"),
                &json!({"out_refund_no": "R2-1", "amount": 100}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {refund}");
        let (_, settled) = gw
            .sandbox(
                "/control/refund",
                &json!({"out_refund_no": "R2-1", "mch_id": t.mch_id, "status": "SUCCESS"}),
            )
            .await;
        assert_eq!(settled["deliveries"][0]["acknowledged"], true, "{settled}");
        assert!(
            settled["notification"]
                .as_str()
                .unwrap()
                .starts_with("<xml>"),
            "a v2 notification"
        );
        assert_eq!(order(&gw, &t.id, &v2_paid).await["status"], "refunded");
        // A v2 order whose notification was lost is found by the reconciler with a v2 query.
        wechat::pay(&gw, &t, &v2_quiet, "drop").await;
        let report = run_once(&gw.state, "a", Utc::now() + Duration::seconds(180))
            .await
            .unwrap();
        assert_eq!(report.errors, 0, "{name}: {report:?}");
        assert_eq!(
            order(&gw, &t.id, &v2_quiet).await["status"],
            "paid",
            "{name}"
        );
        // And the v3 order pays through v3.
        let paid = wechat::pay(&gw, &t, &v3_order, "deliver").await;
        assert_eq!(paid["deliveries"][0]["acknowledged"], true, "{paid}");
        assert!(
            paid["notification"].as_str().unwrap().starts_with('{'),
            "a v3 notification"
        );
        assert_eq!(order(&gw, &t.id, &v3_order).await["status"], "paid");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_provider_failures_keep_the_order_pending_and_a_replay_retries() {
    for backend in backends() {
        let t = wechat_v3::tenant("v3_fail", 65, &wechat_v3::public_key_settings("1900000165"));
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let name = backend.name();
        let openid = wechat::login(&gw, &t.id).await;
        let no = wechat::trade_no();
        let req = json!({
            "provider": "wechat_miniprogram", "out_trade_no": no, "amount": 100,
            "description": "Mocha", "payer": {"openid": openid},
        });
        let fail = |api: &str, mode: &str| json!({"api": api, "mode": mode, "times": 1});
        gw.sandbox("/control/fail", &fail("v3_jsapi", "SYSTEMERROR"))
            .await;
        let (status, err) = gw.post(&t.id, "/v1/orders", &req).await;
        assert_eq!(status, 502, "{name}: {err}");
        assert_eq!(err["error"]["code"], "provider_unavailable");
        assert_eq!(order(&gw, &t.id, &no).await["status"], "pending");
        let (status, body) = gw.post(&t.id, "/v1/orders", &req).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["client_payment"]["wechat_miniprogram"]["signType"],
            "RSA"
        );

        // An answer whose signature does not verify is not trusted, and changes nothing.
        wechat::pay(&gw, &t, &no, "drop").await;
        gw.sandbox("/control/fail", &fail("v3_query", "bad_sign"))
            .await;
        let (status, err) = gw.get(&t.id, &format!("/v1/orders/{no}?sync=true")).await;
        assert_eq!(status, 502, "{name}: {err}");
        assert_eq!(order(&gw, &t.id, &no).await["status"], "pending");
        gw.sandbox("/control/fail", &fail("v3_query", "http500"))
            .await;
        let (status, _) = gw.get(&t.id, &format!("/v1/orders/{no}?sync=true")).await;
        assert_eq!(status, 502);
        // Then the provider is back.
        let (status, synced) = gw.get(&t.id, &format!("/v1/orders/{no}?sync=true")).await;
        assert_eq!(
            (status, synced["status"].as_str()),
            (200, Some("paid")),
            "{synced}"
        );
        gw.finish().await;
    }
}
