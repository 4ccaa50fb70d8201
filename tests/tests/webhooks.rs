//! Merchant webhooks: signed delivery, retries on a schedule, redelivery, tenant isolation, no
//! double sends across instances, and the event types of order and refund changes. Passes are
//! driven with a chosen clock, on SQLite and (with `DATABASE_URL`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use paybridge_server::webhooks::deliver_due;
use paybridge_tests::{
    Backend, Gateway, ReceivedWebhook, TestTenant, WebhookReceiver, alipay, backends, set_webhook,
    wechat,
};
use sea_orm::EntityTrait;
use sha2::Sha256;

fn tenant(id: &str, n: u32) -> TestTenant {
    TestTenant::wechat(id, n, "HMAC-SHA256")
}

fn secret(tenant: &str) -> String {
    format!("whsec_{tenant}_7f3a9c2e41d8")
}

/// A gateway whose tenants in `hooks` send webhooks to the receiver.
async fn start(
    backend: &Backend,
    tenants: &[TestTenant],
    hooks: &[&str],
    receiver: &WebhookReceiver,
) -> Gateway {
    Gateway::start_with(backend, tenants, |config| {
        for id in hooks {
            set_webhook(config, id, &receiver.url, &secret(id));
        }
    })
    .await
}

/// Check `Paybridge-Signature` the way a merchant would, with its own HMAC code.
fn assert_signed(hook: &ReceivedWebhook, secret: &str) {
    let header = hook.header("paybridge-signature");
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t=…"), v1.expect("v1=…"));
    assert!(t.parse::<i64>().is_ok(), "{header}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&hook.body);
    mac.verify_slice(&hex::decode(v1).unwrap())
        .unwrap_or_else(|_| panic!("signature does not verify: {header}"));
    let mut other = Hmac::<Sha256>::new_from_slice(b"another secret").unwrap();
    other.update(t.as_bytes());
    other.update(b".");
    other.update(&hook.body);
    assert!(other.verify_slice(&hex::decode(v1).unwrap()).is_err());
}

async fn events(gw: &Gateway, tenant: &str, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = gw.get(tenant, &format!("/v1/events{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

async fn paid_wechat_order(gw: &Gateway, t: &TestTenant) -> String {
    let (no, _) = wechat::create_order(gw, &t.id, 100).await;
    wechat::pay(gw, t, &no, "deliver").await;
    no
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_sends_a_signed_order_paid_webhook() {
    for backend in backends() {
        let receiver = WebhookReceiver::start().await;
        let t = tenant("wh_paid", 61);
        let gw = start(&backend, std::slice::from_ref(&t), &[&t.id], &receiver).await;
        let no = paid_wechat_order(&gw, &t).await;

        let report = deliver_due(&gw.state, Utc::now()).await.unwrap();
        assert_eq!((report.claimed, report.delivered), (1, 1), "{report:?}");
        let got = receiver.received();
        assert_eq!(got.len(), 1, "{}", backend.name());
        let hook = &got[0];
        assert_signed(hook, &secret(&t.id));
        assert_eq!(hook.header("content-type"), "application/json");
        let body = hook.json();
        assert_eq!(hook.header("paybridge-event-id"), body["id"]);
        assert_eq!(body["type"], "order.paid");
        let (_, order) = gw.get(&t.id, &format!("/v1/orders/{no}")).await;
        assert_eq!(body["data"], order, "the data is the order JSON");
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["created_at", "data", "id", "type"]
        );

        let listed = events(&gw, &t.id, "").await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], body["id"]);
        assert_eq!(listed[0]["data"], order);
        assert_eq!(listed[0]["created_at"], body["created_at"]);
        assert_eq!(listed[0]["delivery"]["status"], "delivered");
        assert_eq!(listed[0]["delivery"]["attempts"], 1);
        assert!(listed[0]["delivery"]["delivered_at"].is_string());
        assert_eq!(listed[0]["attempts"][0]["status_code"], 200);
        assert!(listed[0]["attempts"][0]["error"].is_null());

        // Delivered is final: later passes send nothing.
        let later = deliver_due(&gw.state, Utc::now() + Duration::days(2))
            .await
            .unwrap();
        assert_eq!(later.claimed, 0);
        assert_eq!(receiver.received().len(), 1);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_with_backoff_until_it_answers() {
    for backend in backends() {
        let receiver = WebhookReceiver::start().await;
        receiver.fail_next(3);
        let t = tenant("wh_retry", 62);
        let gw = start(&backend, std::slice::from_ref(&t), &[&t.id], &receiver).await;
        paid_wechat_order(&gw, &t).await;

        let mut clock = Utc::now();
        let mut waits = Vec::new();
        for attempt in 1..=3 {
            let report = deliver_due(&gw.state, clock).await.unwrap();
            assert_eq!(
                (report.claimed, report.failed),
                (1, 1),
                "attempt {attempt}: {report:?}"
            );
            let listed = events(&gw, &t.id, "").await;
            assert_eq!(listed[0]["delivery"]["status"], "pending");
            let next = time(&listed[0]["delivery"]["next_attempt_at"]);
            waits.push(next - clock);
            // Not before it is due.
            let early = deliver_due(&gw.state, next - Duration::seconds(1))
                .await
                .unwrap();
            assert_eq!(early.claimed, 0, "attempt {attempt} retried too early");
            clock = next;
        }
        assert!(
            waits[0] <= Duration::seconds(30),
            "first retry within 30 s: {waits:?}"
        );
        assert!(
            waits[0] < waits[1] && waits[1] < waits[2],
            "backoff grows: {waits:?}"
        );

        let report = deliver_due(&gw.state, clock).await.unwrap();
        assert_eq!(report.delivered, 1, "{report:?}");
        let got = receiver.received();
        assert_eq!(got.len(), 4, "{}", backend.name());
        assert_eq!(
            got.iter().map(|h| h.answered).collect::<Vec<_>>(),
            [500, 500, 500, 200]
        );
        let id = got[0].header("paybridge-event-id").to_owned();
        assert!(got.iter().all(|h| h.header("paybridge-event-id") == id));
        for hook in &got {
            assert_signed(hook, &secret(&t.id));
        }

        let listed = events(&gw, &t.id, "").await;
        let event = &listed[0];
        assert_eq!(event["delivery"]["status"], "delivered");
        assert_eq!(event["delivery"]["attempts"], 4);
        let attempts = event["attempts"].as_array().unwrap();
        assert_eq!(
            attempts
                .iter()
                .map(|a| a["status_code"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            [500, 500, 500, 200]
        );
        assert!(
            attempts[0]["error"]
                .as_str()
                .unwrap()
                .starts_with("HTTP 500"),
            "{}",
            attempts[0]
        );
        assert!(attempts[0]["error"].as_str().unwrap().contains("not yet"));
        assert!(attempts[3]["error"].is_null());
        let later = deliver_due(&gw.state, clock + Duration::days(2))
            .await
            .unwrap();
        assert_eq!(later.claimed, 0);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_is_given_up_after_about_a_day() {
    let backend = &backends()[0];
    let receiver = WebhookReceiver::start().await;
    receiver.fail_next(usize::MAX);
    let t = tenant("wh_giveup", 63);
    let gw = start(backend, std::slice::from_ref(&t), &[&t.id], &receiver).await;
    paid_wechat_order(&gw, &t).await;
    let first = Utc::now();
    let mut clock = first;
    let mut passes = 0;
    loop {
        let report = deliver_due(&gw.state, clock).await.unwrap();
        assert_eq!(report.claimed, 1, "{report:?}");
        passes += 1;
        let event = events(&gw, &t.id, "").await.remove(0);
        if report.gave_up == 1 {
            assert_eq!(event["delivery"]["status"], "failed");
            assert!(event["delivery"]["next_attempt_at"].is_null());
            assert!(
                event["delivery"]["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("HTTP 500")
            );
            break;
        }
        assert!(passes < 20, "never gave up");
        clock = time(&event["delivery"]["next_attempt_at"]);
    }
    let span = clock - first;
    assert!(
        span > Duration::hours(20) && span < Duration::hours(26),
        "{span}"
    );
    assert_eq!(receiver.received().len(), passes);
    let later = deliver_due(&gw.state, clock + Duration::days(10))
        .await
        .unwrap();
    assert_eq!(later.claimed, 0, "a failed delivery is not retried");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_is_a_failed_attempt() {
    let backend = &backends()[0];
    let receiver = WebhookReceiver::start().await;
    receiver.delay_next(1, std::time::Duration::from_secs(4));
    let t = tenant("wh_slow", 64);
    let gw = Gateway::start_with(backend, std::slice::from_ref(&t), |config| {
        set_webhook(config, &t.id, &receiver.url, &secret(&t.id));
        config.webhooks.timeout_seconds = 1;
    })
    .await;
    paid_wechat_order(&gw, &t).await;
    let started = std::time::Instant::now();
    let report = deliver_due(&gw.state, Utc::now()).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(report.failed, 1, "{report:?}");
    let event = events(&gw, &t.id, "").await.remove(0);
    assert!(event["attempts"][0]["status_code"].is_null());
    assert_eq!(event["attempts"][0]["error"], "timed out after 1 s");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_sends_the_event_again() {
    for backend in backends() {
        let receiver = WebhookReceiver::start().await;
        let t = tenant("wh_again", 65);
        let gw = start(&backend, std::slice::from_ref(&t), &[&t.id], &receiver).await;
        paid_wechat_order(&gw, &t).await;
        deliver_due(&gw.state, Utc::now()).await.unwrap();
        let id = events(&gw, &t.id, "").await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();

        let (status, event) = gw
            .post(
                &t.id,
                &format!("/v1/events/{id}/redeliver"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 202, "{event}");
        assert_eq!(event["id"], id);
        assert_eq!(event["delivery"]["status"], "pending");
        assert_eq!(event["attempts"].as_array().unwrap().len(), 1);

        let report = deliver_due(&gw.state, Utc::now()).await.unwrap();
        assert_eq!(report.delivered, 1, "{}: {report:?}", backend.name());
        let got = receiver.received();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].header("paybridge-event-id"), id);
        assert_eq!(got[0].json(), got[1].json(), "the same event");
        assert_signed(&got[1], &secret(&t.id));
        let event = events(&gw, &t.id, "").await.remove(0);
        assert_eq!(event["delivery"]["status"], "delivered");
        assert_eq!(event["delivery"]["attempts"], 2);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_and_redeliver_only_their_own_events() {
    for backend in backends() {
        let receiver = WebhookReceiver::start().await;
        let a = tenant("wh_iso_a", 66);
        let b = tenant("wh_iso_b", 67);
        let gw = start(&backend, &[a.clone(), b.clone()], &[&a.id], &receiver).await;
        paid_wechat_order(&gw, &a).await;
        paid_wechat_order(&gw, &b).await;

        let a_events = events(&gw, &a.id, "").await;
        let b_events = events(&gw, &b.id, "").await;
        assert_eq!((a_events.len(), b_events.len()), (1, 1));
        let a_id = a_events[0]["id"].as_str().unwrap();
        assert_ne!(b_events[0]["id"], a_id);
        let (status, body) = gw
            .post(
                &b.id,
                &format!("/v1/events/{a_id}/redeliver"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
        let (status, _) = gw.get(&b.id, &format!("/v1/events?after={a_id}")).await;
        assert_eq!(status, 400, "another tenant's event is no cursor");
        let (status, _) = gw.get("nobody", "/v1/events").await;
        assert_eq!(status, 401);

        // B has no webhook_url: its event is recorded and listed, never sent.
        let report = deliver_due(&gw.state, Utc::now()).await.unwrap();
        assert_eq!(
            (report.delivered, report.not_configured),
            (1, 1),
            "{report:?}"
        );
        let got = receiver.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("paybridge-event-id"), a_id);
        let b_event = events(&gw, &b.id, "").await.remove(0);
        assert_eq!(b_event["delivery"]["status"], "not_configured");
        assert_eq!(b_event["delivery"]["attempts"], 0);
        assert_eq!(
            b_event["delivery"]["last_error"], "the tenant has no webhook_url",
            "{b_event}"
        );
        assert_eq!(
            b_event["delivery"]["next_attempt_at"],
            serde_json::Value::Null
        );
        // Settled by the claim itself, never leased (one write, not a lease and a settlement).
        let version = paybridge_server::db::entities::webhook_delivery::Entity::find_by_id(
            b_event["id"].as_str().unwrap(),
        )
        .one(gw.state.store.db())
        .await
        .unwrap()
        .unwrap()
        .version;
        assert_eq!(version, 1, "B's delivery was written {version} times");
        let (status, body) = gw
            .post(
                &b.id,
                &format!("/v1/events/{}/redeliver", b_event["id"].as_str().unwrap()),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "webhook_not_configured");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_passes_of_two_instances_send_each_attempt_once() {
    const ORDERS: usize = 10;
    for backend in backends() {
        let receiver = WebhookReceiver::start().await;
        let t = tenant("wh_race", 68);
        let gw = start(&backend, std::slice::from_ref(&t), &[&t.id], &receiver).await;
        for _ in 0..ORDERS {
            paid_wechat_order(&gw, &t).await;
        }
        // A second instance on the same database.
        let other = paybridge_server::app::build_state(gw.state.config.clone())
            .await
            .unwrap();

        // Round 1: every attempt fails (slowly, so the passes overlap); round 2: all succeed.
        receiver.fail_next(ORDERS);
        receiver.delay_next(ORDERS, std::time::Duration::from_millis(200));
        let now = Utc::now();
        let (r1, r2, r3) = tokio::join!(
            deliver_due(&gw.state, now),
            deliver_due(&other, now),
            deliver_due(&gw.state, now),
        );
        let claimed = r1.unwrap().claimed + r2.unwrap().claimed + r3.unwrap().claimed;
        assert_eq!(claimed, ORDERS, "{}", backend.name());
        assert_eq!(receiver.received().len(), ORDERS);

        let later = now + Duration::minutes(1);
        let (r1, r2, r3) = tokio::join!(
            deliver_due(&other, later),
            deliver_due(&gw.state, later),
            deliver_due(&other, later),
        );
        let delivered = r1.unwrap().delivered + r2.unwrap().delivered + r3.unwrap().delivered;
        assert_eq!(delivered, ORDERS, "{}", backend.name());

        let got = receiver.received();
        assert_eq!(got.len(), 2 * ORDERS, "{}", backend.name());
        let mut per_event = std::collections::BTreeMap::<String, Vec<u16>>::new();
        for hook in &got {
            per_event
                .entry(hook.header("paybridge-event-id").to_owned())
                .or_default()
                .push(hook.answered);
        }
        assert_eq!(per_event.len(), ORDERS);
        for (id, answers) in &per_event {
            assert_eq!(answers, &[500, 200], "event {id}");
        }
        for event in events(&gw, &t.id, "").await {
            assert_eq!(event["delivery"]["attempts"], 2, "{event}");
            assert_eq!(event["attempts"].as_array().unwrap().len(), 2);
        }
        other.store.db().clone().close().await.ok();
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_and_refund_changes_give_their_event_types() {
    for backend in backends() {
        let receiver = WebhookReceiver::start().await;
        let t = tenant("wh_types", 69);
        let gw = start(&backend, std::slice::from_ref(&t), &[&t.id], &receiver).await;

        // Closed, then money arrives anyway: order.closed, then order.paid and order.flagged.
        let (late, _) = wechat::create_order(&gw, &t.id, 300).await;
        let (status, _) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{late}/close"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 200);
        let (status, paid) = gw
            .sandbox(
                "/control/pay",
                &serde_json::json!({"out_trade_no": late, "mch_id": t.mch_id, "notify": "deliver", "force": true}),
            )
            .await;
        assert_eq!(status, 200, "{paid}");

        // Paid on Alipay, then partly refunded (Alipay settles the refund at once).
        let (no, created) = alipay::create_order(&gw, &t.id, 500).await;
        alipay::cashier(&gw, &alipay::order_string(&created), "deliver").await;
        let (status, refund) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &serde_json::json!({"out_refund_no": "R-wh-1", "amount": 200}),
            )
            .await;
        assert_eq!(status, 201, "{refund}");

        deliver_due(&gw.state, Utc::now()).await.unwrap();
        let got = receiver.received();
        let mut sent: Vec<(String, String)> = got
            .iter()
            .map(|h| {
                let b = h.json();
                (
                    b["type"].as_str().unwrap().to_owned(),
                    b["data"]["out_trade_no"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        sent.sort();
        let mut expected = vec![
            ("order.closed".to_owned(), late.clone()),
            ("order.paid".to_owned(), late.clone()),
            ("order.flagged".to_owned(), late.clone()),
            ("order.paid".to_owned(), no.clone()),
            ("refund.succeeded".to_owned(), no.clone()),
            ("order.partially_refunded".to_owned(), no.clone()),
        ];
        expected.sort();
        assert_eq!(sent, expected, "{}", backend.name());
        for hook in &got {
            assert_signed(hook, &secret(&t.id));
        }
        let refund_hook = got
            .iter()
            .map(ReceivedWebhook::json)
            .find(|b| b["type"] == "refund.succeeded")
            .unwrap();
        assert_eq!(refund_hook["data"]["out_refund_no"], "R-wh-1");
        assert_eq!(refund_hook["data"]["status"], "succeeded");
        assert_eq!(refund_hook["data"]["amount"], 200);
        let flagged = got
            .iter()
            .map(ReceivedWebhook::json)
            .find(|b| b["type"] == "order.flagged")
            .unwrap();
        assert_eq!(
            flagged["data"]["flags"],
            serde_json::json!(["paid_after_close"])
        );

        // The list: newest first, filtered by type, paged with `after`.
        let all = events(&gw, &t.id, "").await;
        assert_eq!(all.len(), 6);
        let times: Vec<_> = all.iter().map(|e| time(&e["created_at"])).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert_eq!(all[5]["type"], "order.closed");
        let paid = events(&gw, &t.id, "?type=order.paid").await;
        assert_eq!(paid.len(), 2);
        assert!(paid.iter().all(|e| e["type"] == "order.paid"));
        let mut paged = Vec::new();
        let mut query = "?limit=4".to_owned();
        loop {
            let (status, page) = gw.get(&t.id, &format!("/v1/events{query}")).await;
            assert_eq!(status, 200, "{page}");
            let list = page["events"].as_array().unwrap();
            paged.extend(list.iter().map(|e| e["id"].clone()));
            if page["has_more"] != true {
                break;
            }
            query = format!(
                "?limit=4&after={}",
                list.last().unwrap()["id"].as_str().unwrap()
            );
        }
        assert_eq!(
            paged,
            all.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
        );
        let (status, _) = gw.get(&t.id, "/v1/events?limit=0").await;
        assert_eq!(status, 400);
        let (status, _) = gw.get(&t.id, "/v1/events?limit=201").await;
        assert_eq!(status, 400);
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_worker_delivers_without_being_asked() {
    let backend = &backends()[0];
    let receiver = WebhookReceiver::start().await;
    let t = tenant("wh_worker", 70);
    let gw = Gateway::start_with(backend, std::slice::from_ref(&t), |config| {
        set_webhook(config, &t.id, &receiver.url, &secret(&t.id));
        config.webhooks.interval_milliseconds = 100;
    })
    .await;
    let worker = paybridge_server::webhooks::spawn(gw.state.clone());
    paid_wechat_order(&gw, &t).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while receiver.received().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    worker.abort();
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "order.paid");
    gw.finish().await;
}
