//! The operators' console API (DESIGN.md, "Operators and integrators"): search across tenants by
//! every number, paged newest first; an order's timeline in time order; the actions, refused to
//! a read-only token and audited; the dashboard's series. On SQLite and (with `DATABASE_URL`)
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Utc;
use paybridge_server::webhooks::deliver_due;
use paybridge_tests::wechat::{create_order, pay};
use paybridge_tests::{Gateway, TestTenant, WebhookReceiver, backends, set_webhook};
use serde_json::{Value, json};

const ADMIN: &str = "console-admin-token";
const READER: &str = "console-reader-token";

async fn call(gw: &Gateway, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
    let res = gw
        .http
        .request(method, format!("{}/admin/api{path}", gw.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(gw: &Gateway, path: &str) -> Value {
    let (status, body) = call(gw, reqwest::Method::GET, path, READER).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn numbers(page: &Value) -> Vec<String> {
    page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["out_trade_no"].as_str().unwrap().to_owned())
        .collect()
}

fn kinds(timeline: &Value) -> Vec<String> {
    timeline["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_an_order_by_any_number_see_its_timeline_and_act_on_it() {
    for backend in backends() {
        let name = backend.name();
        let shop = TestTenant::wechat("console_shop", 81, "HMAC-SHA256");
        let other = TestTenant::wechat("console_other", 82, "MD5");
        let receiver = WebhookReceiver::start().await;
        let gw = Gateway::start_with(&backend, &[shop.clone(), other.clone()], |c| {
            c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(ADMIN)];
            c.admin.read_only_tokens = vec![paybridge_core::tenant::hash_api_key(READER)];
            set_webhook(c, &shop.id, &receiver.url, "whsec_console_shop");
        })
        .await;

        // Three orders of one tenant and one of another, the first one paid and refunded.
        let (paid, _) = create_order(&gw, &shop.id, 500).await;
        let sim = pay(&gw, &shop, &paid, "deliver").await;
        let (status, body) = gw
            .post(
                &shop.id,
                &format!("/v1/orders/{paid}/refunds"),
                &json!({"out_refund_no": "CR-1", "amount": 200}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        let (second, _) = create_order(&gw, &shop.id, 100).await;
        let (third, _) = create_order(&gw, &shop.id, 100).await;
        let (foreign, _) = create_order(&gw, &other.id, 100).await;
        deliver_due(&gw.state, Utc::now()).await.unwrap();

        // By out_trade_no, by the provider's number, by a refund number: the same order.
        let provider_no =
            gw.get(&shop.id, &format!("/v1/orders/{paid}")).await.1["provider_trade_no"]
                .as_str()
                .expect("paid orders have a provider_trade_no")
                .to_owned();
        for q in [paid.as_str(), provider_no.as_str(), "CR-1"] {
            let page = get(&gw, &format!("/orders?q={q}")).await;
            assert_eq!(
                numbers(&page),
                std::slice::from_ref(&paid),
                "{name}: q={q}: {page}"
            );
            assert_eq!(page["orders"][0]["tenant"], shop.id.as_str());
            assert_eq!(page["orders"][0]["status"], "paid");
            assert_eq!(page["next_cursor"], Value::Null);
        }
        assert!(
            numbers(&get(&gw, "/orders?q=NO-SUCH-NUMBER").await).is_empty(),
            "{name}"
        );

        // Newest first, across tenants, paged by cursor; filtered by tenant, status and time.
        let all = numbers(&get(&gw, "/orders?limit=200").await);
        assert_eq!(
            all,
            [&foreign, &third, &second, &paid].map(|s| s.clone()),
            "{name}"
        );
        let first = get(&gw, &format!("/orders?tenant={}&limit=2", shop.id)).await;
        assert_eq!(numbers(&first), [third.clone(), second.clone()], "{name}");
        let cursor = first["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_owned();
        let next = get(
            &gw,
            &format!("/orders?tenant={}&limit=2&cursor={cursor}", shop.id),
        )
        .await;
        assert_eq!(
            numbers(&next),
            std::slice::from_ref(&paid),
            "{name}: {next}"
        );
        assert_eq!(next["next_cursor"], Value::Null);
        let pending = get(&gw, &format!("/orders?tenant={}&status=pending", shop.id)).await;
        assert_eq!(numbers(&pending), [third.clone(), second.clone()], "{name}");
        let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let later = get(&gw, &format!("/orders?from={}", urlencode(&future))).await;
        assert!(numbers(&later).is_empty(), "{name}: {later}");
        let (status, bad) = call(&gw, reqwest::Method::GET, "/orders?status=lost", READER).await;
        assert_eq!(
            (status, bad["error"]["field"].as_str()),
            (400, Some("status"))
        );

        // The timeline: created, the provider's create call, the accepted notification, the
        // transition, the refund and its call, the webhook event and its delivery.
        let t = get(&gw, &format!("/orders/{}/{paid}", shop.id)).await;
        let k = kinds(&t);
        for kind in [
            "created",
            "provider_call",
            "notification",
            "transition",
            "refund",
            "webhook_attempt",
        ] {
            assert!(k.contains(&kind.to_owned()), "{name}: no {kind} in {t}");
        }
        assert_eq!(k[0], "created", "{name}: {t}");
        let entries = t["timeline"].as_array().unwrap();
        let ats: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
        assert!(
            ats.windows(2).all(|w| w[0] <= w[1]),
            "{name}: in time order: {ats:?}"
        );
        let create_call = entries
            .iter()
            .find(|e| e["kind"] == "provider_call" && e["endpoint"] == "create")
            .expect("the create call");
        assert_eq!(create_call["outcome"], "ok");
        assert!(create_call["latency_ms"].is_i64(), "{create_call}");
        assert!(
            entries
                .iter()
                .any(|e| e["kind"] == "provider_call" && e["endpoint"] == "refund"),
            "{name}: {t}"
        );
        let notification = entries
            .iter()
            .find(|e| e["kind"] == "notification")
            .unwrap();
        assert_eq!(notification["verdict"], "accepted", "{name}: {sim}");
        let transition = entries.iter().find(|e| e["kind"] == "transition").unwrap();
        assert_eq!(
            (&transition["from"], &transition["to"]),
            (&json!("pending"), &json!("paid"))
        );
        let attempt = entries
            .iter()
            .find(|e| e["kind"] == "webhook_attempt")
            .unwrap();
        assert_eq!(
            (&attempt["ok"], &attempt["http_status"]),
            (&json!(true), &json!(200))
        );
        assert_eq!(t["refunds"][0]["out_refund_no"], "CR-1");
        let event_id = t["events"][0]["id"].as_str().expect("an event").to_owned();
        // No secret and no payer data in a timeline.
        let text = t.to_string();
        assert!(
            !text.contains(&paybridge_tests::api_key(&shop.id)) && !text.contains("whsec_"),
            "{name}"
        );

        // A read-only token reads but cannot act.
        for path in [
            format!("/orders/{}/{second}/sync", shop.id),
            format!("/orders/{}/{second}/close", shop.id),
            format!("/events/{event_id}/redeliver"),
        ] {
            let (status, body) = call(&gw, reqwest::Method::POST, &path, READER).await;
            assert_eq!(status, 403, "{name}: {path}: {body}");
        }
        // A full token syncs, closes and redelivers; each action is audited with its actor.
        let (status, synced) = call(
            &gw,
            reqwest::Method::POST,
            &format!("/orders/{}/{second}/sync", shop.id),
            ADMIN,
        )
        .await;
        assert_eq!(
            (status, synced["status"].as_str()),
            (200, Some("pending")),
            "{name}: {synced}"
        );
        let (status, closed) = call(
            &gw,
            reqwest::Method::POST,
            &format!("/orders/{}/{third}/close", shop.id),
            ADMIN,
        )
        .await;
        assert_eq!(
            (status, closed["status"].as_str()),
            (200, Some("closed")),
            "{name}: {closed}"
        );
        deliver_due(&gw.state, Utc::now()).await.unwrap();
        let before = receiver.received().len();
        let (status, event) = call(
            &gw,
            reqwest::Method::POST,
            &format!("/events/{event_id}/redeliver"),
            ADMIN,
        )
        .await;
        assert_eq!(
            (status, event["id"].as_str()),
            (202, Some(event_id.as_str())),
            "{name}: {event}"
        );
        deliver_due(&gw.state, Utc::now()).await.unwrap();
        assert_eq!(
            receiver.received().len(),
            before + 1,
            "{name}: delivered again"
        );
        let (status, missing) = call(
            &gw,
            reqwest::Method::POST,
            &format!("/orders/{}/NO-SUCH/sync", shop.id),
            ADMIN,
        )
        .await;
        assert_eq!(status, 404, "{name}: {missing}");
        let audit = get(&gw, "/audit?action=close_order").await;
        let entry = &audit["entries"][0];
        assert_eq!(entry["tenant_id"], shop.id.as_str(), "{name}: {audit}");
        assert!(
            entry["actor"].as_str().unwrap().starts_with("admin:"),
            "{audit}"
        );
        assert_eq!(entry["diff"][0]["path"], format!("orders.{third}"));
        let actor = entry["actor"].as_str().unwrap().to_owned();
        let by_actor = get(&gw, &format!("/audit?actor={actor}")).await;
        let actions: Vec<&str> = by_actor["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["sync_order", "redeliver_event", "close_order", "sync_order"],
            "{name}: newest first"
        );
        // The closed order's timeline shows the close call and its transition.
        let t = get(&gw, &format!("/orders/{}/{third}", shop.id)).await;
        assert!(
            t["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "transition" && e["to"] == "closed"),
            "{name}: {t}"
        );

        // The dashboard: one payment of 500 fen this hour, creates that all succeeded.
        let stats = get(&gw, "/stats").await;
        assert_eq!(stats["bucket"], "hour");
        let payments = stats["series"]["payments"].as_array().unwrap();
        assert_eq!(payments.len(), 1, "{name}: {stats}");
        assert_eq!(
            (
                &payments[0]["count"],
                &payments[0]["amount"],
                &payments[0]["tenant"]
            ),
            (&json!(1), &json!(500), &json!(shop.id)),
            "{name}: {stats}"
        );
        assert!(
            payments[0]["t"].as_str().unwrap().ends_with(":00:00Z"),
            "{stats}"
        );
        let creates = stats["series"]["creates"].as_array().unwrap();
        assert_eq!(creates[0]["ok"], 4, "{name}: {stats}");
        assert_eq!(creates[0]["success_permille"], 1000, "{name}: {stats}");
        let (status, _) = call(&gw, reqwest::Method::GET, "/stats?bucket=day", READER).await;
        assert_eq!(status, 400);
        gw.finish().await;
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// A full buffer of order activity (10 000 entries, more parameters than one SQLite statement
/// takes) is written in one flush, and a timeline shows an order's share of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_activity_buffer_is_written_in_one_flush() {
    use paybridge_server::usecases::activity;
    for backend in backends() {
        let name = backend.name();
        let shop = TestTenant::wechat("console_busy", 83, "MD5");
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&shop), |c| {
            c.admin.read_only_tokens = vec![paybridge_core::tenant::hash_api_key(READER)];
        })
        .await;
        let (no, _) = create_order(&gw, &shop.id, 100).await;
        for i in 0..9_999 {
            let order = if i % 1000 == 0 { no.as_str() } else { "OTHER" };
            activity::reconciled(&gw.state, &shop.id, order, "query");
        }
        activity::flush(&gw.state).await.unwrap();
        let t = get(&gw, &format!("/orders/{}/{no}", shop.id)).await;
        let queries = t["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "reconciler" && e["action"] == "query")
            .count();
        assert_eq!(queries, 10, "{name}: {t}");
        gw.finish().await;
    }
}

/// The payments per hour count every tenant's payments in the range, each tenant's alone (they
/// are read one tenant at a time, the tenants found by a skip over the index of payments): the
/// tenants with payments in and out of the range, one with none paid, one no longer configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payments_series_counts_every_tenant_in_its_range() {
    use std::collections::BTreeMap;

    use chrono::{Duration, TimeZone};
    use paybridge_server::db::entities::order;
    use paybridge_server::store::console::Series;
    use sea_orm::{ActiveModelTrait, IntoActiveModel};

    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("series_shop", 72, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let db = gw.state.store.db();
        let from = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        let to = from + Duration::hours(3);
        let mut expected: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
        let tenants = ["a_shop", "m_shop", "series_shop", "gone_shop", "z_shop"];
        for n in 0..60i64 {
            let tenant = tenants[usize::try_from(n).unwrap() % tenants.len()];
            let provider = if n % 3 == 0 {
                "alipay_app"
            } else {
                "wechat_miniprogram"
            };
            // Paid from an hour before the range to an hour after it; every seventh pending.
            let paid_at =
                (n % 7 != 0).then(|| from - Duration::hours(1) + Duration::minutes(n * 5));
            let amount = 100 + n;
            if let Some(at) = paid_at
                && at >= from
                && at < to
                && tenant != "z_shop"
            {
                let hour = at.format("%Y-%m-%dT%H:00:00Z").to_string();
                let e = expected
                    .entry((hour, provider.to_owned(), tenant.to_owned()))
                    .or_default();
                e.0 += 1;
                e.1 += amount;
            }
            // `z_shop` has orders, none of them paid.
            let paid_at = if tenant == "z_shop" { None } else { paid_at };
            order::Model {
                id: format!("0193a7c0-0000-7000-8000-{n:012}"),
                tenant_id: tenant.into(),
                out_trade_no: format!("SERIES-{n}"),
                provider: provider.into(),
                amount,
                currency: "CNY".into(),
                description: "series".into(),
                payer_openid: None,
                client_ip: None,
                attach: None,
                expires_at: from + Duration::hours(6),
                status: if paid_at.is_some() { "paid" } else { "pending" }.into(),
                flags: "[]".into(),
                provider_trade_no: paid_at.map(|_| format!("42000{n}")),
                refunded_amount: 0,
                paid_at,
                client_payment: None,
                provider_data: "{}".into(),
                last_notified_at: None,
                created_at: from - Duration::hours(2),
                next_check_at: None,
                updated_at: from,
            }
            .into_active_model()
            .reset_all()
            .insert(db)
            .await
            .unwrap();
        }
        let rows = Series::Payments.rows(db, from, to).await.unwrap();
        let got: BTreeMap<(String, String, String), (i64, i64)> = rows
            .into_iter()
            .map(|r| {
                (
                    (r.hour, r.keys[0].clone(), r.keys[1].clone()),
                    (r.numbers[0], r.numbers[1]),
                )
            })
            .collect();
        // Four tenants paid in the range, each in three hours.
        let paying: std::collections::BTreeSet<&str> =
            expected.keys().map(|(_, _, t)| t.as_str()).collect();
        assert_eq!(paying.len(), 4, "{name}: {expected:?}");
        assert_eq!(got, expected, "{name}");
        gw.finish().await;
    }
}
