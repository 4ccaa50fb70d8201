//! `/metrics` (DESIGN.md, "Operators and integrators"): real Prometheus histograms of HTTP
//! requests by route pattern, of provider calls by endpoint and outcome, and of database commits;
//! notification verdicts; the webhook backlog; and the `process_*` metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::wechat::{create_order, pay};
use paybridge_tests::{Gateway, TestTenant, backends};

/// The value of the first sample line that starts with `prefix` and contains every `part`.
fn sample(metrics: &str, prefix: &str, parts: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_histograms_by_route_endpoint_and_verdict() {
    for backend in backends() {
        let tenant = TestTenant::wechat("metered", 71, "HMAC-SHA256");
        let gw = Gateway::start(&backend, std::slice::from_ref(&tenant)).await;
        let (no, _) = create_order(&gw, &tenant.id, 300).await;
        pay(&gw, &tenant, &no, "deliver").await;
        let (status, order) = gw.get(&tenant.id, &format!("/v1/orders/{no}")).await;
        assert_eq!((status, order["status"].as_str()), (200, Some("paid")));

        let r = gw
            .http
            .get(format!("{}/metrics", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let m = r.text().await.unwrap();
        let name = backend.name();
        for family in [
            "# TYPE paybridge_http_request_duration_seconds histogram",
            "# TYPE paybridge_provider_call_duration_seconds histogram",
            "# TYPE paybridge_db_commit_duration_seconds histogram",
            "# TYPE paybridge_notifications_total counter",
            "# TYPE paybridge_webhook_backlog gauge",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
        ] {
            assert!(m.contains(family), "{name}: no {family:?} in\n{m}");
        }
        // The route is the pattern, never the path with an order number in it.
        let route = "route=\"/v1/orders/{out_trade_no}\"";
        assert_eq!(
            sample(
                &m,
                "paybridge_http_request_duration_seconds_count{",
                &["method=\"GET\"", route, "status=\"200\""]
            ),
            Some(1.0),
            "{name}: {m}"
        );
        assert!(!m.contains(&no), "{name}: an order number is a label: {m}");
        assert_eq!(
            sample(
                &m,
                "paybridge_http_request_duration_seconds_bucket{",
                &[
                    "method=\"POST\"",
                    "route=\"/v1/orders\"",
                    "status=\"201\"",
                    "le=\"+Inf\""
                ]
            ),
            Some(1.0),
            "{name}: {m}"
        );
        for endpoint in ["login", "create"] {
            assert_eq!(
                sample(
                    &m,
                    "paybridge_provider_call_duration_seconds_count{",
                    &[
                        "provider=\"wechat_miniprogram\"",
                        &format!("endpoint=\"{endpoint}\""),
                        "outcome=\"ok\""
                    ]
                ),
                Some(1.0),
                "{name}: {endpoint}: {m}"
            );
        }
        assert_eq!(
            sample(
                &m,
                "paybridge_notifications_total{",
                &["provider=\"wechat_miniprogram\"", "verdict=\"accepted\""]
            ),
            Some(1.0),
            "{name}: {m}"
        );
        // The order and the notification were each committed.
        let commits = sample(&m, "paybridge_db_commit_duration_seconds_count", &[]).unwrap();
        assert!(commits >= 2.0, "{name}: {commits} commits: {m}");
        gw.finish().await;
    }
}
