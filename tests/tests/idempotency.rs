//! `Idempotency-Key` on the merchant API (DESIGN.md, "Operators and integrators"), on SQLite and
//! (with `DATABASE_URL`) PostgreSQL, concurrently and across two instances: a replay gets the
//! stored answer, another request with the key is refused, a running one blocks its key, a 5xx
//! lets it go, keys are per tenant, and they expire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use paybridge_tests::{Gateway, TestTenant, api_key, backends, wechat};
use serde_json::{Value, json};

struct Answer {
    status: u16,
    replayed: bool,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

async fn post(gw: &Gateway, tenant: &str, path: &str, body: &Value, key: Option<&str>) -> Answer {
    let mut req = gw
        .http
        .post(format!("{}{path}", gw.base))
        .bearer_auth(api_key(tenant))
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.unwrap();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    Answer {
        status: res.status().as_u16(),
        replayed,
        text: res.text().await.unwrap(),
    }
}

fn order(no: &str, amount: i64, openid: &str) -> Value {
    json!({"provider": "wechat_miniprogram", "out_trade_no": no, "amount": amount,
           "description": "tea", "payer": {"openid": openid}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_refuse_block_and_expire() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("idem_a", 63, "MD5");
        let u = TestTenant::wechat("idem_b", 64, "MD5");
        let gw = Gateway::start_with(&backend, &[t.clone(), u.clone()], |c| {
            c.idempotency.ttl_seconds = 3;
        })
        .await;
        let openid = wechat::login(&gw, &t.id).await;

        // A replay: the same status (201 stays 201) and body, marked as replayed.
        let no = wechat::trade_no();
        let first = post(
            &gw,
            &t.id,
            "/v1/orders",
            &order(&no, 100, &openid),
            Some("k-1"),
        )
        .await;
        assert_eq!(
            (first.status, first.replayed),
            (201, false),
            "{name}: {}",
            first.text
        );
        // Key order and spacing of the body do not matter.
        let same = json!({"payer": {"openid": openid}, "description": "tea", "amount": 100,
                          "out_trade_no": no, "provider": "wechat_miniprogram"});
        let again = post(&gw, &t.id, "/v1/orders", &same, Some("k-1")).await;
        assert_eq!((again.status, again.replayed), (201, true), "{name}");
        assert_eq!(again.text, first.text, "{name}");
        // Without a key the order rules answer as before (200: the same order).
        assert_eq!(
            post(&gw, &t.id, "/v1/orders", &same, None).await.status,
            200
        );

        // A second instance on the same database replays what the first stored.
        let b = gw.second_instance(&[t.clone(), u.clone()], |_| {}).await;
        let there = post(&b, &t.id, "/v1/orders", &same, Some("k-1")).await;
        assert_eq!((there.status, there.replayed), (201, true), "{name}");
        assert_eq!(there.text, first.text);
        b.finish().await;

        // The key with another request.
        let other = post(
            &gw,
            &t.id,
            "/v1/orders",
            &order(&no, 101, &openid),
            Some("k-1"),
        )
        .await;
        assert_eq!(other.status, 422, "{name}: {}", other.text);
        assert_eq!(other.json()["error"]["code"], "idempotency_key_reused");
        // Keys belong to a tenant: another tenant's k-1 is its own.
        let theirs = post(
            &gw,
            &u.id,
            "/v1/orders",
            &order(&wechat::trade_no(), 100, &wechat::login(&gw, &u.id).await),
            Some("k-1"),
        )
        .await;
        assert_eq!(
            (theirs.status, theirs.replayed),
            (201, false),
            "{name}: {}",
            theirs.text
        );
        // A body refused before it was read (415: no JSON content type) is not kept: the
        // corrected retry, which has the same fingerprint, runs.
        let no_415 = wechat::trade_no();
        let raw = order(&no_415, 100, &openid).to_string();
        let res = gw
            .http
            .post(format!("{}/v1/orders", gw.base))
            .bearer_auth(api_key(&t.id))
            .header("Idempotency-Key", "k-415")
            .header("Content-Type", "text/plain")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 415, "{name}");
        let fixed = post(
            &gw,
            &t.id,
            "/v1/orders",
            &order(&no_415, 100, &openid),
            Some("k-415"),
        )
        .await;
        assert_eq!(
            (fixed.status, fixed.replayed),
            (201, false),
            "{name}: {}",
            fixed.text
        );
        // A malformed key.
        let long = "k".repeat(256);
        let bad = post(
            &gw,
            &t.id,
            "/v1/orders",
            &order(&no, 100, &openid),
            Some(&long),
        )
        .await;
        assert_eq!(bad.status, 400, "{name}");
        assert_eq!(bad.json()["error"]["field"], "Idempotency-Key");

        // A 4xx after validation is kept too: closing twice a paid order… here, a refund of an
        // unpaid order.
        let refused = post(
            &gw,
            &t.id,
            &format!("/v1/orders/{no}/refunds"),
            &json!({"out_refund_no": "R-1", "amount": 50}),
            Some("k-refund"),
        )
        .await;
        assert!(
            (400..500).contains(&refused.status) && refused.status != 400,
            "{name}: {}",
            refused.text
        );
        let replayed = post(
            &gw,
            &t.id,
            &format!("/v1/orders/{no}/refunds"),
            &json!({"out_refund_no": "R-1", "amount": 50}),
            Some("k-refund"),
        )
        .await;
        assert_eq!(
            (replayed.status, replayed.replayed),
            (refused.status, true),
            "{name}"
        );

        // While the first request runs (WeChat does not answer), the key is in use, whatever the
        // body; its 504 is not kept, so the retry runs again: the order the first one recorded,
        // now with WeChat's answer (200 by the order rules, not a replay).
        gw.sandbox(
            "/control/fail",
            &json!({"api": "unifiedorder", "mode": "timeout", "times": 1}),
        )
        .await;
        let slow_no = wechat::trade_no();
        let slow = {
            let (http, base, key) = (gw.http.clone(), gw.base.clone(), api_key(&t.id));
            let body = order(&slow_no, 300, &openid);
            tokio::spawn(async move {
                let res = http
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(key)
                    .header("Idempotency-Key", "k-slow")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                res.status().as_u16()
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        for body in [order(&slow_no, 300, &openid), order(&slow_no, 999, &openid)] {
            let busy = post(&gw, &t.id, "/v1/orders", &body, Some("k-slow")).await;
            assert_eq!(busy.status, 409, "{name}: {}", busy.text);
            assert_eq!(busy.json()["error"]["code"], "idempotency_key_in_use");
        }
        let first_status = slow.await.unwrap();
        assert!(
            first_status >= 500,
            "{name}: the slow create answered {first_status}"
        );
        let retried = post(
            &gw,
            &t.id,
            "/v1/orders",
            &order(&slow_no, 300, &openid),
            Some("k-slow"),
        )
        .await;
        assert_eq!(
            (retried.status, retried.replayed),
            (200, false),
            "{name}: {}",
            retried.text
        );
        assert!(retried.json()["client_payment"]["wechat_miniprogram"]["paySign"].is_string());

        // After the TTL the key is new, and the retention pass deletes the expired keys.
        tokio::time::sleep(Duration::from_millis(3_200)).await;
        let pruned = paybridge_server::retention::run_once(&gw.state, chrono::Utc::now())
            .await
            .unwrap();
        assert!(pruned.idempotency_keys >= 3, "{name}: {pruned:?}");
        let fresh = post(
            &gw,
            &t.id,
            "/v1/orders",
            &order(&wechat::trade_no(), 200, &openid),
            Some("k-1"),
        )
        .await;
        assert_eq!(
            (fresh.status, fresh.replayed),
            (201, false),
            "{name}: {}",
            fresh.text
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_run_once() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("idem_c", 65, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let openid = wechat::login(&gw, &t.id).await;
        let no = wechat::trade_no();
        let body = order(&no, 100, &openid);
        let sends = (0..8).map(|_| post(&gw, &t.id, "/v1/orders", &body, Some("k-race")));
        let answers = futures::future::join_all(sends).await;
        let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
        // One ran; the others were either told it is running (409) or got its answer replayed.
        assert!(!created.is_empty(), "{name}");
        assert_eq!(created.iter().filter(|a| !a.replayed).count(), 1, "{name}");
        for a in &answers {
            assert!(
                a.status == 409 || (a.status == 201 && a.text == created[0].text),
                "{name}: {} {}",
                a.status,
                a.text
            );
        }
        gw.finish().await;
    }
}
