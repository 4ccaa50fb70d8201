//! Durability: the gateway is killed with SIGKILL while notifications are in flight and started
//! again on the same database. Every notification that had received WeChat's SUCCESS ack before
//! the kill must have left its order `paid`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paybridge_tests::process::ProcessGateway;
use paybridge_tests::wechat::SUCCESS_ACK;
use paybridge_tests::{TestTenant, api_key, backends};

const ORDERS: usize = 1500;
const CONCURRENCY: usize = 32;

/// Create an order through the API and have the sandbox sign its payment notification without
/// sending it.
async fn order_with_notification(
    gw: &ProcessGateway,
    tenant: &TestTenant,
    openid: &str,
    i: usize,
) -> (String, String) {
    let no = format!("CRASH{i:08}");
    let xml = gw
        .order_with_notification(tenant, openid, &no, 100 + i)
        .await;
    (no, xml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_payment_survives_a_sigkill() {
    let binary = env!("CARGO_BIN_EXE_paybridge-gateway");
    for backend in backends() {
        let tenant = TestTenant::wechat("crash", 41, "HMAC-SHA256");
        let mut gw = ProcessGateway::start(binary, &backend, std::slice::from_ref(&tenant)).await;
        let (status, login) = gw
            .post_json(
                "/v1/wechat_miniprogram/sessions",
                Some(&api_key(&tenant.id)),
                &serde_json::json!({"code": "crash-code"}),
            )
            .await;
        assert_eq!(status, 200, "login: {login}");
        let openid = login["openid"].as_str().unwrap().to_owned();

        let mut prepared = Vec::with_capacity(ORDERS);
        for chunk in (0..ORDERS).collect::<Vec<_>>().chunks(16) {
            let batch = chunk
                .iter()
                .map(|i| order_with_notification(&gw, &tenant, &openid, *i));
            prepared.extend(futures::future::join_all(batch).await);
        }

        // Send every notification, CONCURRENCY at a time, and kill the gateway once a tenth of
        // them has been acknowledged: the rest are in flight or not yet sent.
        let acked = Arc::new(Mutex::new(Vec::new()));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let unanswered = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(Mutex::new(prepared));
        let url = format!("{}/notify/{}/wechat_miniprogram", gw.base, tenant.id);
        let mut senders = Vec::new();
        for _ in 0..CONCURRENCY {
            let (queue, acked, acked_count, unanswered, http, url) = (
                queue.clone(),
                acked.clone(),
                acked_count.clone(),
                unanswered.clone(),
                gw.http.clone(),
                url.clone(),
            );
            senders.push(tokio::spawn(async move {
                loop {
                    let Some((no, xml)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let answer = http
                        .post(&url)
                        .header("content-type", "text/xml")
                        .body(xml)
                        .send()
                        .await;
                    let body = match answer {
                        Ok(r) if r.status() == 200 => r.text().await.ok(),
                        _ => None,
                    };
                    if body.as_deref() == Some(SUCCESS_ACK) {
                        acked.lock().unwrap().push(no);
                        acked_count.fetch_add(1, Ordering::SeqCst);
                    } else {
                        unanswered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_count.load(Ordering::SeqCst) < ORDERS / 10 {
            assert!(Instant::now() < deadline, "no progress: {}", gw.log_text());
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        gw.kill();
        for s in senders {
            s.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        let unanswered = unanswered.load(Ordering::SeqCst);
        assert!(
            acked.len() >= ORDERS / 10,
            "{}: {} acknowledged",
            backend.name(),
            acked.len()
        );
        assert!(
            unanswered > 0,
            "{}: the kill came after every notification was answered; the test proved nothing",
            backend.name()
        );

        gw.launch(binary).await;
        let key = api_key(&tenant.id);
        for no in &acked {
            let res = gw
                .http
                .get(format!("{}/v1/orders/{no}", gw.base))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            let order: serde_json::Value = res.json().await.unwrap();
            assert_eq!(
                order["status"],
                "paid",
                "{}: {no} was acknowledged before the kill",
                backend.name()
            );
        }
        eprintln!(
            "{}: {} acknowledged before SIGKILL, all paid after restart; {unanswered} unanswered",
            backend.name(),
            acked.len()
        );
        gw.finish().await;
    }
}
