//! Logs never carry a key, a secret or a full openid. This binary installs a subscriber that
//! captures every log line at TRACE level, drives a whole payment, then greps the capture.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_payment_logs_no_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let tenant = TestTenant::wechat("logs", 5, "HMAC-SHA256");
    let gw = Gateway::start(&backends()[0], std::slice::from_ref(&tenant)).await;
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
    gw.finish().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("order transition"),
        "the capture works: {} bytes",
        logs.len()
    );
    for secret in [
        wechat_api_key(&tenant.id),
        format!("secret-{}", tenant.id),
        api_key(&tenant.id),
        openid,
    ] {
        assert!(!logs.contains(&secret), "{secret:?} appears in the logs");
    }
    assert!(
        !logs.contains("session_key"),
        "session keys stay out of logs"
    );
}
