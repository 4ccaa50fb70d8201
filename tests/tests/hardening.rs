//! Hardening (issue 8): wrong input gets errors that name the field; a close that meets a payment
//! reports the payment. On SQLite and (with `DATABASE_URL`) PostgreSQL where storage is involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, Utc};
use paybridge_server::reconciler::run_once;
use paybridge_tests::{Backend, Gateway, TestTenant, alipay, backends, wechat};

fn tenant(id: &str, n: u32) -> TestTenant {
    TestTenant::wechat(id, n, "MD5")
}

async fn order_status(gw: &Gateway, t: &str, no: &str) -> String {
    gw.get(t, &format!("/v1/orders/{no}")).await.1["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_types_name_the_field_and_what_to_send() {
    let t = tenant("hard_json", 81);
    let gw = Gateway::start(&Backend::Sqlite, std::slice::from_ref(&t)).await;
    let order = |amount: serde_json::Value, payer: serde_json::Value| {
        serde_json::json!({
            "provider": "wechat_miniprogram",
            "out_trade_no": wechat::trade_no(),
            "amount": amount,
            "description": "x",
            "payer": payer,
        })
    };
    let openid = serde_json::json!({"openid": "o-1"});
    for amount in [serde_json::json!(1.5), serde_json::json!("1.00")] {
        let (s, body) = gw
            .post(&t.id, "/v1/orders", &order(amount.clone(), openid.clone()))
            .await;
        assert_eq!(s, 400, "{amount}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert_eq!(body["error"]["field"], "amount", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("an integer number of fen, e.g. 150 for 1.50 CNY"),
            "{message}"
        );
    }
    let (s, body) = gw
        .post(
            &t.id,
            "/v1/orders",
            &order(serde_json::json!(100), serde_json::json!({"openid": null})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(body["error"]["field"], "payer.openid", "{body}");

    // Refunds: the same rule for their amount.
    let (no, _) = wechat::create_order(&gw, &t.id, 500).await;
    for amount in [serde_json::json!(0.5), serde_json::json!("0.50")] {
        let (s, body) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &serde_json::json!({"out_refund_no": "R1", "amount": amount}),
            )
            .await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(body["error"]["field"], "amount", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("integer number of fen"),
            "{body}"
        );
    }
    // Sessions: a null code names `code`.
    let (s, body) = gw
        .post(
            &t.id,
            "/v1/wechat_miniprogram/sessions",
            &serde_json::json!({"code": null}),
        )
        .await;
    assert_eq!(
        (s, &body["error"]["field"]),
        (400, &serde_json::json!("code"))
    );

    // A body that is not JSON at all stays `invalid_json`, with no field.
    let res = gw
        .http
        .post(format!("{}/v1/orders", gw.base))
        .bearer_auth(paybridge_tests::api_key(&t.id))
        .header("content-type", "application/json")
        .body("{\"amount\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");
    assert!(body["error"].get("field").is_none(), "{body}");
    // Without a JSON content type: 415, as before.
    let res = gw
        .http
        .post(format!("{}/v1/orders", gw.base))
        .bearer_auth(paybridge_tests::api_key(&t.id))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_an_alipay_order_that_alipay_reports_paid_is_409_and_paid() {
    for backend in backends() {
        let t = tenant("hard_close", 82);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;

        // Paid at Alipay; the notification is lost. The merchant closes it.
        let (no, created) = alipay::create_order(&gw, &t.id, 1200).await;
        alipay::cashier(&gw, &alipay::order_string(&created), "drop").await;
        assert_eq!(order_status(&gw, &t.id, &no).await, "pending");
        let (s, body) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/close"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(s, 409, "{}: {body}", backend.name());
        assert_eq!(body["error"]["code"], "order_paid", "{body}");
        let (_, order) = gw.get(&t.id, &format!("/v1/orders/{no}")).await;
        assert_eq!(order["status"], "paid", "{}: {order}", backend.name());
        assert!(order["provider_trade_no"].is_string(), "{order}");

        // The reconciler's close of an expired order takes the same path.
        let (expired, created) = alipay::create_order(&gw, &t.id, 700).await;
        alipay::cashier(&gw, &alipay::order_string(&created), "drop").await;
        let report = run_once(&gw.state, "a", Utc::now() + Duration::hours(3))
            .await
            .unwrap();
        assert_eq!(report.errors, 0, "{}: {report:?}", backend.name());
        assert_eq!(report.expired, 1, "{report:?}");
        assert_eq!(
            order_status(&gw, &t.id, &expired).await,
            "paid",
            "{}",
            backend.name()
        );
        gw.finish().await;
    }
}

const FLOOD_ADMIN: &str = "flood-admin-token";

fn limited(c: &mut paybridge_server::config::Config, notify_per_tenant: u32, recorded: u32) {
    c.limits.notify_per_tenant_per_second = notify_per_tenant;
    c.limits.api_per_tenant_per_second = 5;
    c.limits.admin_per_token_per_second = 5;
    c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(FLOOD_ADMIN)];
    c.limits.burst_seconds = 1;
    c.limits.unverified_attempts_recorded_per_minute = recorded;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_notifications_is_limited_and_writes_a_bounded_sample() {
    for backend in backends() {
        let t = tenant("hard_flood", 83);
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), |c| {
            limited(c, 10, 3);
        })
        .await;
        let (no, _) = wechat::create_order(&gw, &t.id, 300).await;
        let good = wechat::parse_xml(
            wechat::pay(&gw, &t, &no, "return").await["notification"]
                .as_str()
                .unwrap(),
        );
        let mut forged = good.clone();
        forged.insert("total_fee".into(), "1".into()); // not re-signed
        let forged = wechat::to_xml(&forged);

        let answers =
            futures::future::join_all((0..100).map(|_| wechat::notify(&gw, &t.id, &forged))).await;
        let refused = answers.iter().filter(|(s, _)| *s == 429).count();
        for (_, body) in &answers {
            assert_eq!(
                wechat::parse_xml(body)
                    .get("return_code")
                    .map(String::as_str),
                Some("FAIL"),
                "every answer is WeChat's failure body: {body}"
            );
        }
        // 10 tokens, plus what refills while the flood runs.
        assert!(
            refused >= 80,
            "{}: {refused} of 100 limited",
            backend.name()
        );
        let attempts = gw.state.store.attempts(&t.id).await.unwrap();
        assert_eq!(
            attempts.len(),
            3,
            "{}: a bounded sample of forgeries is recorded",
            backend.name()
        );
        let metrics = gw.state.metrics.render();
        assert!(metrics.contains("reason=\"rate_limited\""), "{metrics}");
        assert!(
            metrics.contains("paybridge_notifications_unrecorded_total"),
            "{metrics}"
        );
        println!(
            "{}: flood of 100 forged notifications: {refused} refused by the rate limiter, {} recorded",
            backend.name(),
            attempts.len()
        );

        // The provider's retry a moment later gets through.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (status, body) = wechat::notify(&gw, &t.id, &wechat::to_xml(&good)).await;
        assert_eq!((status, body.as_str()), (200, wechat::SUCCESS_ACK));

        // The merchant API: 429 `rate_limited` past the tenant's rate.
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let (s, body) = gw.get(&t.id, &format!("/v1/orders/{no}")).await;
            if s == 429 {
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            }
            statuses.push(s);
        }
        let limited_api = statuses.iter().filter(|s| **s == 429).count();
        assert!(limited_api >= 10, "{statuses:?}");

        // The admin API: 429 `rate_limited` past the token's rate.
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let res = gw
                .http
                .get(format!("{}/admin/api/tenants", gw.base))
                .bearer_auth(FLOOD_ADMIN)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            if status == 429 {
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            }
            statuses.push(status);
        }
        let limited_admin = statuses.iter().filter(|s| **s == 429).count();
        assert!(limited_admin >= 10, "{statuses:?}");
        println!(
            "{}: 20 quick requests each: {limited_api} merchant API and {limited_admin} admin API requests limited",
            backend.name()
        );
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_during_a_notification_is_not_an_unknown_order() {
    for backend in backends() {
        let t = tenant("hard_dberr", 84);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, _) = wechat::create_order(&gw, &t.id, 300).await;
        let good = pay_notification(&gw, &t, &no).await;
        let db = gw.state.store.db().clone();
        use sea_orm::ConnectionTrait;
        db.execute_unprepared("ALTER TABLE orders RENAME TO orders_away")
            .await
            .unwrap();
        let (status, body) = wechat::notify(&gw, &t.id, &good).await;
        db.execute_unprepared("ALTER TABLE orders_away RENAME TO orders")
            .await
            .unwrap();
        assert_eq!(status, 500, "{}: {body}", backend.name());
        assert_eq!(
            wechat::parse_xml(&body)
                .get("return_code")
                .map(String::as_str),
            Some("FAIL"),
            "{body}"
        );
        let attempts = gw.state.store.attempts(&t.id).await.unwrap();
        assert!(
            attempts.is_empty(),
            "{}: nothing recorded as refused: {attempts:?}",
            backend.name()
        );
        let metrics = gw.state.metrics.render();
        assert!(
            metrics.contains("reason=\"storage_unavailable\""),
            "{metrics}"
        );
        assert!(!metrics.contains("reason=\"unknown\""), "{metrics}");

        // The provider's next delivery, with the database back, is applied.
        let (status, body) = wechat::notify(&gw, &t.id, &good).await;
        assert_eq!((status, body.as_str()), (200, wechat::SUCCESS_ACK));
        assert_eq!(order_status(&gw, &t.id, &no).await, "paid");
        gw.finish().await;
    }
}

async fn pay_notification(gw: &Gateway, t: &TestTenant, no: &str) -> String {
    wechat::pay(gw, t, no, "return").await["notification"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The database goes away under a running gateway and comes back (PostgreSQL, behind a proxy
/// that is cut and restored). Without `DATABASE_URL` there is nothing to stop: SQLite is a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_failure_bodies_and_recovers_without_a_restart() {
    use paybridge_tests::outage::CutProxy;
    let Some(Backend::Postgres(admin)) = backends().into_iter().nth(1) else {
        println!("no DATABASE_URL: the outage test runs on PostgreSQL only");
        return;
    };
    let target: std::net::SocketAddr = {
        let url = url::Url::parse(&admin).unwrap();
        let host = url
            .host_str()
            .unwrap_or("127.0.0.1")
            .replace("localhost", "127.0.0.1");
        format!("{host}:{}", url.port().unwrap_or(5432))
            .parse()
            .unwrap()
    };
    let proxy = CutProxy::start(target).await;
    let t = tenant("hard_outage", 85);
    let proxied = proxy.addr;
    let gw = Gateway::start_with(
        &Backend::Postgres(admin.clone()),
        std::slice::from_ref(&t),
        move |c| {
            let mut url = url::Url::parse(&c.database.url).unwrap();
            url.set_host(Some("127.0.0.1")).unwrap();
            url.set_port(Some(proxied.port())).unwrap();
            c.database.url = url.to_string();
        },
    )
    .await;
    let (no, _) = wechat::create_order(&gw, &t.id, 300).await;
    let paid = pay_notification(&gw, &t, &no).await;
    let get = |path: &'static str| {
        let (http, base) = (gw.http.clone(), gw.base.clone());
        async move {
            let res = http.get(format!("{base}{path}")).send().await.unwrap();
            res.status().as_u16()
        }
    };
    assert_eq!(get("/readyz").await, 200);

    proxy.cut();
    let started = std::time::Instant::now();
    let ready = get("/readyz").await;
    assert_eq!(ready, 503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get("/livez").await, 200);

    let (status, body) = wechat::notify(&gw, &t.id, &paid).await;
    assert_eq!(
        wechat::parse_xml(&body)
            .get("return_code")
            .map(String::as_str),
        Some("FAIL"),
        "the provider is told to send it again: {status} {body}"
    );
    assert_eq!(status, 500);
    let (status, body) = gw.get(&t.id, &format!("/v1/orders/{no}")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    let (status, body) = gw
        .post(
            &t.id,
            "/v1/orders",
            &serde_json::json!({
                "provider": "wechat_miniprogram",
                "out_trade_no": wechat::trade_no(),
                "amount": 100,
                "description": "during the outage",
                "payer": {"openid": "o-1"},
            }),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");

    proxy.restore();
    let back = std::time::Instant::now();
    let mut recovered = None;
    for _ in 0..60 {
        if get("/readyz").await == 200 {
            recovered = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let recovered = recovered.expect("ready again within 15 s of the database's return");
    // The provider's redelivery is applied; the merchant API answers again.
    let (status, body) = wechat::notify(&gw, &t.id, &paid).await;
    assert_eq!((status, body.as_str()), (200, wechat::SUCCESS_ACK));
    assert_eq!(order_status(&gw, &t.id, &no).await, "paid");
    println!("postgres outage: ready again {recovered:?} after the database came back");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_targets_inside_the_platform_are_refused_when_saved_and_when_sent() {
    use paybridge_tests::{WebhookReceiver, set_webhook};
    const ADMIN: &str = "hardening-admin-token";
    for backend in backends() {
        // The first instance allows private targets (as the test harness does), so that a
        // tenant with a loopback webhook_url exists; the second, on the same database, does not.
        let receiver = WebhookReceiver::start().await;
        let t = tenant("hard_ssrf", 86);
        let url = receiver.url.clone();
        let id = t.id.clone();
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), move |c| {
            set_webhook(c, &id, &url, "whsec-hardening");
        })
        .await;
        let strict = gw
            .second_instance(std::slice::from_ref(&t), |c| {
                c.webhooks.allow_private_targets = false;
                c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(ADMIN)];
            })
            .await;

        // Saved: refused with the field and the setting named; a public URL is accepted.
        let save = |webhook_url: &'static str, id: &'static str| {
            let (http, base) = (strict.http.clone(), strict.base.clone());
            async move {
                let res = http
                    .post(format!("{base}/admin/api/tenants"))
                    .bearer_auth(ADMIN)
                    .json(&serde_json::json!({
                        "id": id, "api_keys": [],
                        "webhook_url": webhook_url, "webhook_secret": "whsec-x",
                    }))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<serde_json::Value>().await.unwrap())
            }
        };
        for target in [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.7/hook",
            "http://127.0.0.1:9/hook",
            "http://[::1]/hook",
            "http://localhost/hook",
        ] {
            let (status, body) = save(target, "ssrf_x").await;
            assert_eq!(status, 422, "{target}: {body}");
            let text = body.to_string();
            assert!(
                text.contains("webhook_url") && text.contains("allow_private_targets"),
                "{target}: {body}"
            );
        }
        let (status, body) = save("https://merchant.example.com/hooks", "ssrf_ok").await;
        assert_eq!(status, 201, "{body}");

        // Sent: the event to the loopback receiver is not sent by the strict instance; the
        // attempt says why.
        let (no, _) = wechat::create_order(&gw, &t.id, 100).await;
        wechat::pay(&gw, &t, &no, "deliver").await;
        let report = paybridge_server::webhooks::deliver_due(&strict.state, Utc::now())
            .await
            .unwrap();
        assert_eq!(report.claimed, 1, "{report:?}");
        assert_eq!(report.delivered, 0, "{report:?}");
        assert!(receiver.received().is_empty(), "{}", backend.name());
        let (_, events) = gw.get(&t.id, "/v1/events").await;
        let error = events["events"][0]["attempts"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains("not sent") && error.contains("loopback"),
            "{}: {events}",
            backend.name()
        );
        strict.finish().await;
        gw.finish().await;
    }
}

/// A refund made in Alipay's merchant console (a number paybridge never issued) is acknowledged,
/// not refused for 25 hours, and flags the order for an operator, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alipay_refund_made_outside_paybridge_is_acknowledged_and_flagged() {
    for backend in backends() {
        let t = tenant("hard_console", 87);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, created) = alipay::create_order(&gw, &t.id, 1000).await;
        let paid = alipay::cashier(&gw, &alipay::order_string(&created), "return").await;
        let paid = paid["notification"].as_str().unwrap().to_owned();
        let (_, ack) = alipay::notify(&gw, &t.id, &paid).await;
        assert_eq!(ack, "success");

        // Two console refunds, the first delivered twice.
        let console = |notify_id: &str, out_biz_no: &str| {
            let mut n = alipay::parse_form(&paid);
            n.insert("notify_id".into(), notify_id.into());
            n.insert("refund_fee".into(), "3.00".into());
            n.insert("gmt_refund".into(), "2026-12-06 10:00:00".into());
            n.insert("out_biz_no".into(), out_biz_no.into());
            alipay::resign_notification(&mut n);
            alipay::to_form(&n)
        };
        for body in [
            console("console-refund-0001", "CONSOLE0001"),
            console("console-refund-0001", "CONSOLE0001"),
            console("console-refund-0002", "CONSOLE0002"),
        ] {
            let (status, ack) = alipay::notify(&gw, &t.id, &body).await;
            assert_eq!(
                (status, ack.as_str()),
                (200, "success"),
                "{}",
                backend.name()
            );
        }
        let (_, order) = gw.get(&t.id, &format!("/v1/orders/{no}")).await;
        assert_eq!(order["status"], "paid", "{order}");
        assert_eq!(order["refunded_amount"], 0, "{order}");
        assert_eq!(
            order["flags"],
            serde_json::json!(["refunded_outside"]),
            "{order}"
        );
        let outbox = gw.state.store.outbox(&t.id).await.unwrap();
        let types: Vec<&str> = outbox.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["order.paid", "order.flagged"], "{}", backend.name());
        gw.finish().await;
    }
}

/// A paid order of 500 fen with a refund `R1` of 200 sent to WeChat: (order number, refund_id).
async fn paid_order_with_refund(gw: &Gateway, t: &TestTenant) -> (String, String) {
    let (no, _) = wechat::create_order(gw, &t.id, 500).await;
    wechat::pay(gw, t, &no, "deliver").await;
    let (s, refund) = gw
        .post(
            &t.id,
            &format!("/v1/orders/{no}/refunds"),
            &serde_json::json!({"out_refund_no": "R1", "amount": 200}),
        )
        .await;
    assert_eq!(s, 201, "{refund}");
    let refund_id = refund["provider_refund_no"].as_str().unwrap().to_owned();
    (no, refund_id)
}

/// A WeChat refund notification must name the refund WeChat numbered when it accepted it, and its
/// amount: one that names another `refund_id` or `refund_fee` is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_notification_with_another_refund_id_or_amount_is_refused() {
    for backend in backends() {
        let t = tenant("hard_refund_id", 88);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, refund_id) = paid_order_with_refund(&gw, &t).await;
        let (s, settled) = gw
            .sandbox(
                "/control/refund",
                &serde_json::json!({"out_refund_no": "R1", "mch_id": t.mch_id, "status": "SUCCESS", "notify": "return"}),
            )
            .await;
        assert_eq!(s, 200, "{settled}");
        let genuine = settled["notification"].as_str().unwrap().to_owned();
        let outer = wechat::parse_xml(&genuine);
        let key = paybridge_tests::wechat_api_key(&t.id);
        let plain = paybridge_wechat::refund_notify::decrypt_req_info(
            &outer["req_info"],
            &secrecy::SecretString::from(key.clone()),
        )
        .unwrap();
        let with = |field: &str, value: &str| {
            let open = format!("<{field}>");
            let close = format!("</{field}>");
            let start = plain.find(&open).expect("field") + open.len();
            let end = plain[start..].find(&close).expect("end") + start;
            let changed = format!("{}{value}{}", &plain[..start], &plain[end..]);
            let mut o = outer.clone();
            o.insert("req_info".into(), wechat::encrypt_req_info(&changed, &key));
            wechat::to_xml(&o)
        };
        assert!(plain.contains(&refund_id), "{plain}");
        for (field, value) in [("refund_id", "50300099999999"), ("refund_fee", "199")] {
            let (status, body) = gw
                .post_raw(
                    &format!("/notify/{}/wechat_miniprogram/refund", t.id),
                    "text/xml",
                    with(field, value).into_bytes(),
                )
                .await;
            assert_eq!(
                wechat::parse_xml(&body)
                    .get("return_code")
                    .map(String::as_str),
                Some("FAIL"),
                "{}: {field}: {status} {body}",
                backend.name()
            );
            let (_, r) = gw.get(&t.id, &format!("/v1/orders/{no}/refunds/R1")).await;
            assert_eq!(r["status"], "processing", "{field}: {r}");
            assert_eq!(r["provider_refund_no"], refund_id.as_str());
        }
        // The genuine one is applied.
        let (status, body) = gw
            .post_raw(
                &format!("/notify/{}/wechat_miniprogram/refund", t.id),
                "text/xml",
                genuine.into_bytes(),
            )
            .await;
        assert_eq!(
            (status, body.as_str()),
            (200, wechat::SUCCESS_ACK),
            "{}",
            backend.name()
        );
        let (_, r) = gw.get(&t.id, &format!("/v1/orders/{no}/refunds/R1")).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        gw.finish().await;
    }
}

/// Attempt records older than the retention are pruned in bounded batches; newer ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_attempt_records_are_pruned_in_bounded_batches() {
    use paybridge_server::db::entities::{notification_attempt, webhook_attempt};
    use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};
    for backend in backends() {
        let t = tenant("hard_retention", 89);
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), |c| {
            c.retention.attempts_days = 30;
            c.retention.batch_size = 1000;
            c.retention.max_batches = 2;
        })
        .await;
        let db = gw.state.store.db();
        let now = Utc::now();
        let old = now - Duration::days(31);
        let recent = now - Duration::days(29);
        let n_attempt = |i: usize| notification_attempt::ActiveModel {
            id: Set(format!("na-{i:06}")),
            tenant_id: Set(t.id.clone()),
            provider: Set("wechat_miniprogram".into()),
            channel: Set("payment".into()),
            out_trade_no: Set(None),
            outcome: Set("rejected".into()),
            reason: Set(Some("signature mismatch".into())),
            reason_code: Set(Some("bad_signature".into())),
            body_sha256: Set("0".repeat(64)),
            received_at: Set(if i < 2500 { old } else { recent }),
        };
        let w_attempt = |i: usize, at| webhook_attempt::ActiveModel {
            id: Set(format!("wa-{i:06}")),
            event_id: Set(format!("ev-{i}")),
            tenant_id: Set(t.id.clone()),
            at: Set(at),
            status_code: Set(Some(500)),
            error: Set(Some("HTTP 500".into())),
            duration_ms: Set(3),
        };
        let rows: Vec<_> = (0..2505).map(n_attempt).collect();
        for chunk in rows.chunks(500) {
            notification_attempt::Entity::insert_many(chunk.to_vec())
                .exec(db)
                .await
                .unwrap();
        }
        let rows: Vec<_> = (0..1203)
            .map(|i| w_attempt(i, if i < 1200 { old } else { recent }))
            .collect();
        for chunk in rows.chunks(500) {
            webhook_attempt::Entity::insert_many(chunk.to_vec())
                .exec(db)
                .await
                .unwrap();
        }

        // At most two batches of 1000 per table in a pass: 2 500 old notification attempts
        // take two passes, 1 200 old webhook attempts one.
        let first = paybridge_server::retention::run_once(&gw.state, now)
            .await
            .unwrap();
        assert_eq!(
            (
                first.notification_attempts,
                first.webhook_attempts,
                first.batches
            ),
            (2000, 1200, 4),
            "{}: {first:?}",
            backend.name()
        );
        let second = paybridge_server::retention::run_once(&gw.state, now)
            .await
            .unwrap();
        assert_eq!(
            (second.notification_attempts, second.webhook_attempts),
            (500, 0),
            "{second:?}"
        );
        let left_n = notification_attempt::Entity::find()
            .count(db)
            .await
            .unwrap();
        let left_w = webhook_attempt::Entity::find().count(db).await.unwrap();
        assert_eq!(
            (left_n, left_w),
            (5, 3),
            "{}: the recent ones stay",
            backend.name()
        );
        gw.finish().await;
    }
}

/// Two instances on one database each get a copy of every notification at the same time, and
/// both run the webhook worker: each payment is applied once, and each event delivered. The
/// duplicate deliveries are counted and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_apply_each_payment_once_and_deliver_each_event() {
    use paybridge_tests::{WebhookReceiver, set_webhook};
    const ORDERS: usize = 40;
    for backend in backends() {
        let receiver = WebhookReceiver::start().await;
        let t = tenant("hard_twins", 90);
        let (id, url) = (t.id.clone(), receiver.url.clone());
        // Small batches: many claims, so that the two instances' claims overlap in time.
        let a = Gateway::start_with(&backend, std::slice::from_ref(&t), move |c| {
            set_webhook(c, &id, &url, "whsec-twins");
            c.webhooks.batch_size = 2;
        })
        .await;
        let b = a.second_instance(std::slice::from_ref(&t), |_| {}).await;

        let mut notifications = Vec::new();
        for _ in 0..ORDERS {
            let (no, _) = wechat::create_order(&a, &t.id, 100).await;
            notifications.push((no.clone(), pay_notification(&a, &t, &no).await));
        }
        // Every notification to both instances at once, twice each.
        let sends = notifications
            .iter()
            .flat_map(|(_, xml)| [&a, &b, &a, &b].map(|gw| wechat::notify(gw, &t.id, xml)));
        let answers = futures::future::join_all(sends).await;
        for (status, body) in &answers {
            assert_eq!(
                (*status, body.as_str()),
                (200, wechat::SUCCESS_ACK),
                "{}",
                backend.name()
            );
        }
        for (no, _) in &notifications {
            assert_eq!(order_status(&a, &t.id, no).await, "paid");
        }
        let events = a.state.store.provider_events(&t.id).await.unwrap();
        assert_eq!(
            events.len(),
            ORDERS,
            "{}: each payment recorded once",
            backend.name()
        );
        let outbox = a.state.store.outbox(&t.id).await.unwrap();
        assert_eq!(
            outbox.len(),
            ORDERS,
            "{}: each change published once",
            backend.name()
        );

        // Both instances deliver, each on its own task, until nothing is due for a while.
        let deliverers = [a.state.clone(), b.state.clone()].map(|state| {
            tokio::spawn(async move {
                let mut idle = 0;
                for _ in 0..400 {
                    let r = paybridge_server::webhooks::deliver_due(&state, Utc::now())
                        .await
                        .unwrap();
                    if r.claimed > 0 {
                        idle = 0;
                        continue;
                    }
                    idle += 1;
                    if idle == 3 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            })
        });
        for d in deliverers {
            d.await.unwrap();
        }
        let received = receiver.received();
        let mut ids: Vec<String> = received
            .iter()
            .map(|h| h.header("paybridge-event-id").to_owned())
            .collect();
        let total = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            ORDERS,
            "{}: every event delivered",
            backend.name()
        );
        let duplicates = total - ids.len();
        assert_eq!(duplicates, 0, "{}: duplicate deliveries", backend.name());
        println!(
            "{}: two instances, {ORDERS} payments x 4 concurrent copies: {} applied, {} events, {total} deliveries, {duplicates} duplicates",
            backend.name(),
            events.len(),
            outbox.len()
        );
        b.finish().await;
        a.finish().await;
    }
}

/// Any refund report (a query's answer, a notification, a call's answer) goes through one storage
/// function: one with another amount, or another provider refund number, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_refuses_a_refund_report_with_another_amount_or_number() {
    use paybridge_core::refund::RefundStatus;
    use paybridge_server::store::ApplyError;
    use paybridge_server::store::refunds::{RefundUpdate, apply_refund_update};
    for backend in backends() {
        let t = tenant("hard_refund_amount", 91);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let (no, known) = paid_order_with_refund(&gw, &t).await;
        let report = |amount: Option<i64>, number: &str| RefundUpdate {
            event_id: format!("query:{amount:?}:{number}"),
            status: RefundStatus::Succeeded,
            provider_refund_no: Some(number.to_owned()),
            succeeded_at: None,
            sent: true,
            amount,
            payload: serde_json::json!({}),
        };
        for (update, what) in [
            (report(Some(199), &known), "amount"),
            (report(Some(200), "50300000000000000"), "number"),
        ] {
            let (id, no1) = (t.id.clone(), no.clone());
            let outcome = gw
                .state
                .store
                .write(move |txn| {
                    Box::pin(async move {
                        Ok::<_, sea_orm::DbErr>(
                            apply_refund_update(
                                txn,
                                &id,
                                "wechat_miniprogram",
                                &no1,
                                "R1",
                                &update,
                            )
                            .await
                            .map(|_| ()),
                        )
                    })
                })
                .await
                .unwrap();
            match (what, outcome) {
                (
                    "amount",
                    Err(ApplyError::AmountMismatch {
                        expected: 200,
                        got: 199,
                    }),
                ) => {}
                ("number", Err(ApplyError::RefundNoMismatch { .. })) => {}
                (what, other) => panic!("{}: {what}: {other:?}", backend.name()),
            }
            let (_, r) = gw.get(&t.id, &format!("/v1/orders/{no}/refunds/R1")).await;
            assert_eq!(r["status"], "processing", "{what}: {r}");
        }
        // The recorded amount and number: applied.
        let (id, no2) = (t.id.clone(), no.clone());
        let update = report(Some(200), &known);
        gw.state
            .store
            .write(move |txn| {
                Box::pin(async move {
                    Ok::<_, sea_orm::DbErr>(
                        apply_refund_update(txn, &id, "wechat_miniprogram", &no2, "R1", &update)
                            .await
                            .map(|_| ()),
                    )
                })
            })
            .await
            .unwrap()
            .unwrap();
        let (_, r) = gw.get(&t.id, &format!("/v1/orders/{no}/refunds/R1")).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        gw.finish().await;
    }
}

/// Behind a trusted proxy the per-IP limit counts the address the proxy forwards, so one noisy
/// client does not use up the bucket of everyone behind the same proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let t = tenant("hard_proxy", 92);
    let gw = Gateway::start_with(&Backend::Sqlite, std::slice::from_ref(&t), |c| {
        c.limits.trusted_proxies = vec!["127.0.0.1".into()];
        c.limits.notify_per_ip_per_second = 5;
        c.limits.notify_per_tenant_per_second = 0;
        c.limits.burst_seconds = 1;
    })
    .await;
    let send = |client: &'static str| {
        let (http, url) = (
            gw.http.clone(),
            format!("{}/notify/{}/wechat_miniprogram", gw.base, t.id),
        );
        async move {
            http.post(url)
                .header("content-type", "text/xml")
                .header("x-forwarded-for", client)
                .body("<xml><return_code>SUCCESS</return_code></xml>")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let mut noisy = Vec::new();
    for _ in 0..10 {
        noisy.push(send("203.0.113.7").await);
    }
    let limited = noisy.iter().filter(|s| **s == 429).count();
    assert!(limited >= 4, "{noisy:?}");
    // Another client behind the same proxy is not limited by the first one's flood.
    assert_ne!(send("203.0.113.8").await, 429);
    gw.finish().await;
}

/// SQLite locked by another process past the busy timeout: merchant calls answer 503, the
/// notification gets WeChat's failure body, readiness holds (readers are not blocked in WAL mode),
/// and all is well again once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_answers_503_and_failure_bodies_then_recovers() {
    use sea_orm::sqlx::{Connection, Executor, SqliteConnection};
    let t = tenant("hard_locked", 93);
    let gw = Gateway::start_with(&Backend::Sqlite, std::slice::from_ref(&t), |c| {
        c.database.busy_timeout_seconds = 1;
    })
    .await;
    let (no, _) = wechat::create_order(&gw, &t.id, 300).await;
    let paid = pay_notification(&gw, &t, &no).await;

    // Another process's transaction holds the write lock.
    let mut other = SqliteConnection::connect(&gw.state.config.database.url)
        .await
        .unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    other
        .execute("UPDATE leases SET holder = holder WHERE 1 = 0")
        .await
        .unwrap();

    let (status, body) = gw
        .post(
            &t.id,
            "/v1/orders",
            &serde_json::json!({
                "provider": "alipay_app", "out_trade_no": wechat::trade_no(), "amount": 100,
                "description": "while locked",
            }),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    let (status, body) = wechat::notify(&gw, &t.id, &paid).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        wechat::parse_xml(&body)
            .get("return_code")
            .map(String::as_str),
        Some("FAIL"),
        "{body}"
    );
    let ready = gw
        .http
        .get(format!("{}/readyz", gw.base))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(ready, 200, "reads still work under a write lock");

    other.execute("ROLLBACK").await.unwrap();
    let (status, body) = wechat::notify(&gw, &t.id, &paid).await;
    assert_eq!((status, body.as_str()), (200, wechat::SUCCESS_ACK));
    assert_eq!(order_status(&gw, &t.id, &no).await, "paid");
    gw.finish().await;
}
