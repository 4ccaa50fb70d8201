//! Graceful shutdown: SIGTERM while notifications are in flight and the reconciler is in the
//! middle of a pass (its query to a provider that never answers hangs). The process exits 0 within its shutdown timeout,
//! every acknowledged notification is `paid`, and the reconciler's lease is released. On SQLite
//! and (with `DATABASE_URL`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paybridge_tests::process::ProcessGateway;
use paybridge_tests::wechat::SUCCESS_ACK;
use paybridge_tests::{TestTenant, api_key, backends};
use sea_orm::{ConnectionTrait, Database, Statement};

const ORDERS: usize = 300;
const CONCURRENCY: usize = 16;
/// `[server] shutdown_timeout_seconds` of the process harness.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);

const SECTIONS: &str = "[reconciler]\nenabled = true\ninterval_seconds = 1\nquery_pending_after_seconds = 0\n[limits]\nnotify_per_ip_per_second = 0\nnotify_per_tenant_per_second = 0\napi_per_tenant_per_second = 0\n";

/// A local server that accepts connections and never answers; `http://…` and the task that
/// holds them.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (base, held)
}

async fn lease_holders(url: &str) -> usize {
    let db = Database::connect(url).await.expect("connect");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT holder FROM leases",
        ))
        .await
        .expect("leases");
    db.close().await.ok();
    rows.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_stops_workers_releases_the_lease_and_exits_0() {
    let binary = env!("CARGO_BIN_EXE_paybridge-gateway");
    for backend in backends() {
        let tenant = TestTenant::wechat("shutdown", 42, "HMAC-SHA256");
        // A second tenant whose providers never answer: its pending Alipay order (made without a
        // provider call) keeps each reconciler pass, and its lease, waiting.
        let (silent, _held) = silent_server().await;
        let stuck = TestTenant {
            provider_base: Some(silent),
            ..TestTenant::wechat("stuck", 43, "MD5")
        };
        let mut gw = ProcessGateway::start_with(
            binary,
            &backend,
            &[tenant.clone(), stuck.clone()],
            SECTIONS,
        )
        .await;
        let (status, body) = gw
            .post_json(
                "/v1/orders",
                Some(&api_key(&stuck.id)),
                &serde_json::json!({
                    "provider": "alipay_app", "out_trade_no": "STUCK0001", "amount": 100,
                    "description": "its query hangs",
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let key = api_key(&tenant.id);
        let (status, login) = gw
            .post_json(
                "/v1/wechat_miniprogram/sessions",
                Some(&key),
                &serde_json::json!({"code": "shutdown-code"}),
            )
            .await;
        assert_eq!(status, 200, "login: {login}");
        let openid = login["openid"].as_str().unwrap().to_owned();

        let mut prepared = Vec::with_capacity(ORDERS);
        for chunk in (0..ORDERS).collect::<Vec<_>>().chunks(16) {
            let batch = chunk.iter().map(|i| {
                let no = format!("TERM{i:08}");
                let gw = &gw;
                let (tenant, openid) = (&tenant, &openid);
                async move {
                    let xml = gw
                        .order_with_notification(tenant, openid, &no, 100 + i)
                        .await;
                    (no, xml)
                }
            });
            prepared.extend(futures::future::join_all(batch).await);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while lease_holders(&gw.database_url).await == 0 {
            assert!(
                Instant::now() < deadline,
                "the reconciler never took its lease"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let acked = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(prepared));
        let url = format!("{}/notify/{}/wechat_miniprogram", gw.base, tenant.id);
        let mut senders = Vec::new();
        for _ in 0..CONCURRENCY {
            let (queue, acked, http, url) =
                (queue.clone(), acked.clone(), gw.http.clone(), url.clone());
            senders.push(tokio::spawn(async move {
                let mut failed = 0usize;
                loop {
                    let Some((no, xml)) = queue.lock().unwrap().pop() else {
                        return failed;
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
                    } else {
                        failed += 1;
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < ORDERS / 10 {
            assert!(Instant::now() < deadline, "no progress: {}", gw.log_text());
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let holders_before = lease_holders(&gw.database_url).await;
        let (status, took) = gw
            .terminate(SHUTDOWN_TIMEOUT + Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("still running after SIGTERM: {}", gw.log_text()));
        let mut unanswered = 0;
        for s in senders {
            unanswered += s.await.unwrap();
        }
        assert!(
            status.success(),
            "{}: exit {status}: {}",
            backend.name(),
            gw.log_text()
        );
        assert!(
            took <= SHUTDOWN_TIMEOUT + Duration::from_millis(300),
            "{}: {took:?}",
            backend.name()
        );
        assert_eq!(holders_before, 1, "the pass held its lease at SIGTERM");
        assert_eq!(
            lease_holders(&gw.database_url).await,
            0,
            "{}: the lease was released: {}",
            backend.name(),
            gw.log_text()
        );
        let acked = acked.lock().unwrap().clone();

        gw.launch(binary).await;
        for no in &acked {
            let res = gw
                .http
                .get(format!("{}/v1/orders/{no}", gw.base))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            let order: serde_json::Value = res.json().await.unwrap();
            assert_eq!(order["status"], "paid", "{}: {no}", backend.name());
        }
        eprintln!(
            "{}: SIGTERM with a reconciler pass and notifications in flight: exit {status} after {took:?}, {} acknowledged (all paid), {unanswered} refused or unanswered, lease released",
            backend.name(),
            acked.len()
        );
        gw.finish().await;
    }
}
