//! Logs never carry a key, a secret or a full openid, and no response shows a stored secret. This
//! binary installs a subscriber that captures every log line at TRACE level, plants known
//! secrets, drives a payment, a refund and every admin endpoint, then greps the capture and every
//! response body.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use paybridge_tests::wechat::{create_order, login, pay};
use paybridge_tests::{Gateway, TestTenant, api_key, backends, wechat_api_key};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const ADMIN_TOKEN: &str = "admin-token-logs-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_payment_and_every_admin_endpoint_log_and_show_no_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let tenant = TestTenant::wechat("logs", 5, "HMAC-SHA256");
    let gw = Gateway::start_with(&backends()[0], std::slice::from_ref(&tenant), |c| {
        c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(ADMIN_TOKEN)];
    })
    .await;
    // Every response body of the run, grepped at the end with the log.
    let mut bodies = String::new();
    let openid = login(&gw, &tenant.id).await;
    let (no, _) = create_order(&gw, &tenant.id, 100).await;
    pay(&gw, &tenant, &no, "deliver").await;
    let (status, _) = gw
        .get(&tenant.id, &format!("/v1/orders/{no}?sync=true"))
        .await;
    assert_eq!(status, 200);
    gw.sandbox(
        "/control/fail",
        &serde_json::json!({"api": "jscode2session", "mode": "http500", "times": 1}),
    )
    .await;
    let (status, _) = gw
        .post(
            &tenant.id,
            "/v1/wechat_miniprogram/sessions",
            &serde_json::json!({"code": "c-500"}),
        )
        .await;
    assert_eq!(status, 502);

    // A refund, the events list, and every admin endpoint, including refusals that could echo
    // what was sent.
    let (_, refund) = gw
        .post(
            &tenant.id,
            &format!("/v1/orders/{no}/refunds"),
            &serde_json::json!({"out_refund_no": "L1", "amount": 1}),
        )
        .await;
    bodies.push_str(&refund.to_string());
    bodies.push_str(&gw.get(&tenant.id, "/v1/events").await.1.to_string());
    let stored = gw
        .state
        .tenant_store
        .get(&tenant.id)
        .await
        .unwrap()
        .unwrap();
    let full_doc = serde_json::to_value(&stored.document).unwrap();
    let mut bad_doc = full_doc.clone();
    bad_doc["providers"]["wechat_miniprogram"]["sign_type"] = serde_json::json!("SHA1");
    bad_doc["providers"]["alipay_app"]["private_key"] =
        serde_json::json!(format!("{}-broken", wechat_api_key(&tenant.id)));
    use reqwest::Method as M;
    let calls = [
        (M::GET, "/admin/api/tenants".to_owned(), None),
        (M::GET, format!("/admin/api/tenants/{}", tenant.id), None),
        (
            M::PUT,
            format!("/admin/api/tenants/{}", tenant.id),
            Some(full_doc.clone()),
        ),
        (
            M::PUT,
            format!("/admin/api/tenants/{}", tenant.id),
            Some(bad_doc.clone()),
        ),
        (
            M::POST,
            "/admin/api/validate".to_owned(),
            Some(bad_doc.clone()),
        ),
        (
            M::POST,
            "/admin/api/validate".to_owned(),
            Some(full_doc.clone()),
        ),
        (
            M::POST,
            format!(
                "/admin/api/tenants/{}/providers/alipay_app/disable",
                tenant.id
            ),
            None,
        ),
        (
            M::POST,
            format!(
                "/admin/api/tenants/{}/providers/alipay_app/enable",
                tenant.id
            ),
            None,
        ),
        (M::GET, "/admin/api/provider-kinds".to_owned(), None),
        (M::GET, "/admin/api/audit".to_owned(), None),
        (M::GET, "/admin/".to_owned(), None),
    ];
    for (method, path, body) in calls {
        let mut req = gw
            .http
            .request(method.clone(), format!("{}{path}", gw.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        assert!(
            res.status().as_u16() < 500,
            "{method} {path}: {}",
            res.status()
        );
        bodies.push_str(&res.text().await.unwrap());
    }
    let (_, toml_doc) = {
        let res = gw
            .http
            .get(format!("{}/admin/api/tenants/{}", gw.base, tenant.id))
            .bearer_auth(ADMIN_TOKEN)
            .header("accept", "application/toml")
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    };
    assert!(toml_doc.contains("set = true"), "{toml_doc}");
    bodies.push_str(&toml_doc);
    gw.finish().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("order transition"),
        "the capture works: {} bytes",
        logs.len()
    );
    let private_key_line = include_str!("../../fixtures/vectors/app_private_pkcs8.pem")
        .lines()
        .nth(1)
        .unwrap();
    for secret in [
        wechat_api_key(&tenant.id),
        format!("secret-{}", tenant.id),
        private_key_line.to_owned(),
    ] {
        assert!(
            !bodies.contains(&secret),
            "{secret:?} appears in an API response"
        );
    }
    for secret in [
        wechat_api_key(&tenant.id),
        format!("secret-{}", tenant.id),
        api_key(&tenant.id),
        private_key_line.to_owned(),
        ADMIN_TOKEN.to_owned(),
        openid,
    ] {
        assert!(!logs.contains(&secret), "{secret:?} appears in the logs");
    }
    assert!(
        !logs.contains("session_key"),
        "session keys stay out of logs"
    );
}
