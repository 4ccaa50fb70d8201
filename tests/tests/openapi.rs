//! The OpenAPI document is generated from the real handlers; the committed copy must match it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::{Gateway, TestTenant, backends};

fn committed() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json exists");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

#[test]
fn committed_openapi_matches_the_handlers() {
    let generated = serde_json::to_value(paybridge_server::app::openapi()).unwrap();
    assert!(
        generated == committed(),
        "docs/openapi.json is stale: run `cargo run -q -p paybridge-server -- openapi > docs/openapi.json`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_same_document_and_an_offline_docs_page() {
    let gw = Gateway::start(&backends()[0], &[TestTenant::wechat("doc", 9, "MD5")]).await;
    let served: serde_json::Value = gw
        .http
        .get(format!("{}/openapi.json", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, committed());
    assert!(served["paths"]["/v1/orders"]["post"].is_object());
    assert!(served["paths"]["/v1/orders/{out_trade_no}"]["get"].is_object());
    assert!(served["paths"]["/v1/orders/{out_trade_no}/close"]["post"].is_object());
    assert!(served["paths"]["/v1/{provider}/sessions"]["post"].is_object());
    assert!(served["paths"]["/notify/{tenant}/{provider}"]["post"].is_object());
    let page = gw
        .http
        .get(format!("{}/docs/", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "docs page: {html:.200}");
    assert!(
        !html.contains("https://"),
        "the docs page must not load anything from the internet"
    );
    gw.finish().await;
}
