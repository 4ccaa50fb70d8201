//! `X-Request-Id` and JSON logs (DESIGN.md, "Operators and integrators"): an incoming id is
//! echoed and an invalid one replaced, and every line the gateway logs while serving a request
//! carries its id as a top-level `request_id` of the JSON line (and, inside a use case, its
//! `tenant` and `out_trade_no`). The gateway runs as a process of
//! its own, with `[log] format = "json"`, and its log file is read back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::process::ProcessGateway;
use paybridge_tests::{Backend, TestTenant, api_key, wechat};
use serde_json::{Value, json};

async fn post(
    gw: &ProcessGateway,
    tenant: &str,
    path: &str,
    body: &Value,
    request_id: &str,
) -> (u16, Option<String>, Value) {
    let res = gw
        .http
        .post(format!("{}{path}", gw.base))
        .bearer_auth(api_key(tenant))
        .header("X-Request-Id", request_id)
        .json(body)
        .send()
        .await
        .unwrap();
    let echoed = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        res.status().as_u16(),
        echoed,
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_echoed_and_on_every_log_line_of_its_request() {
    let binary = env!("CARGO_BIN_EXE_paybridge-gateway");
    let t = TestTenant::wechat("rid", 62, "MD5");
    let gw = ProcessGateway::start_logged(
        binary,
        &Backend::Sqlite,
        std::slice::from_ref(&t),
        "[reconciler]\nenabled = false\n[log]\nformat = \"json\"\n",
        "info,sqlx=warn,sea_orm=warn",
    )
    .await;

    let (status, echoed, session) = post(
        &gw,
        &t.id,
        "/v1/wechat_miniprogram/sessions",
        &json!({"code": "rid-code-1"}),
        "rid-login-0001",
    )
    .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(echoed.as_deref(), Some("rid-login-0001"));
    let no = wechat::trade_no();
    let (status, echoed, created) = post(
        &gw,
        &t.id,
        "/v1/orders",
        &json!({"provider": "wechat_miniprogram", "out_trade_no": no, "amount": 100,
                "description": "tea", "payer": {"openid": session["openid"]}}),
        "rid-order-0002",
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(echoed.as_deref(), Some("rid-order-0002"));

    // An invalid id (129 characters) is replaced, not refused.
    let long = "x".repeat(129);
    let (status, echoed, _) = post(
        &gw,
        &t.id,
        "/v1/wechat_miniprogram/sessions",
        &json!({"code": "rid-code-2"}),
        &long,
    )
    .await;
    assert_eq!(status, 200);
    let replaced = echoed.unwrap();
    assert_ne!(replaced, long);
    assert!(
        replaced.len() == 32 && replaced.bytes().all(|b| b.is_ascii_hexdigit()),
        "{replaced}"
    );

    // Every line is JSON; the order's lines (the provider call and the request line) carry its
    // id, and no line of another request does.
    let log = gw.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["request_id"].as_str() == Some(id))
            .collect()
    };
    let order_lines = of("rid-order-0002");
    // The provider call is logged inside the use case's span: its tenant and order are on the
    // line too.
    assert!(
        order_lines.iter().any(|l| l["message"] == "unifiedorder"
            && l["out_trade_no"] == no.as_str()
            && l["tenant"] == t.id.as_str()),
        "no provider-call line with the request id, tenant and order:\n{log}"
    );
    assert!(
        order_lines
            .iter()
            .any(|l| l["message"] == "request" && l["path"] == "/v1/orders" && l["status"] == 201),
        "no request line with the request id:\n{log}"
    );
    assert!(
        order_lines
            .iter()
            .all(|l| l["path"] != "/v1/wechat_miniprogram/sessions"),
        "{log}"
    );
    assert!(!of("rid-login-0001").is_empty(), "{log}");
    assert!(!of(&replaced).is_empty(), "{log}");
    gw.finish().await;
}
