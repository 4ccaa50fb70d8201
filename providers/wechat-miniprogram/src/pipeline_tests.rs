//! The call pipeline's failure modes against a local fake WeChat: protocol failures, bad signatures,
//! transport errors and timeouts.

use std::time::Duration;

use paybridge_core::provider::{BuildContext, PaymentProvider, ProviderError};

use crate::WechatMiniprogram;
use crate::api_tests::{APPID, KEY, MCH, create_request, ok, order_ref, provider, signed};
use crate::sign::SignType;
use crate::test_server::{Answer, TestServer};

#[tokio::test]
async fn return_code_fail_is_unavailable_with_return_msg() {
    let server = TestServer::start(|_| {
        ok("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名错误]]></return_msg></xml>".into())
    })
    .await;
    let p = provider(&server.base, "MD5", Duration::from_secs(5));
    match p.create_payment(&create_request()).await {
        Err(ProviderError::Unavailable(m)) => assert!(m.contains("签名错误"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_response_with_a_bad_or_foreign_signature_is_unavailable() {
    for (body, what) in [
        (signed(&[("result_code", "SUCCESS"), ("prepay_id", "wx1")], SignType::HmacSha256), "other sign type"),
        (
            signed(&[("result_code", "SUCCESS"), ("prepay_id", "wx1")], SignType::Md5).replace("wx1", "wx2"),
            "tampered",
        ),
        (
            "<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code><prepay_id>wx1</prepay_id></xml>"
                .to_owned(),
            "unsigned",
        ),
    ] {
        let server = TestServer::start(move |_| ok(body.clone())).await;
        let p = provider(&server.base, "MD5", Duration::from_secs(5));
        assert_eq!(
            p.create_payment(&create_request()).await.err(),
            Some(ProviderError::Unavailable("response signature did not verify".into())),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_silent_server_is_a_timeout() {
    let server = TestServer::start(|_| Answer::Hang).await;
    let p = provider(&server.base, "MD5", Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert_eq!(
        p.query_payment(&order_ref(serde_json::Value::Null)).await,
        Err(ProviderError::Timeout)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn http_errors_and_oversized_bodies_are_unavailable() {
    for answer in [
        || Answer::Respond(502, "bad gateway".into()),
        || Answer::Respond(200, "x".repeat(1024 * 1024 + 1)),
    ] {
        let server = TestServer::start(move |_| answer()).await;
        let p = provider(&server.base, "MD5", Duration::from_secs(5));
        let got = p.query_payment(&order_ref(serde_json::Value::Null)).await;
        assert!(matches!(got, Err(ProviderError::Unavailable(_))), "{got:?}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let p = provider(&base, "MD5", Duration::from_secs(5));
    let got = p.query_payment(&order_ref(serde_json::Value::Null)).await;
    assert!(matches!(got, Err(ProviderError::Unavailable(_))), "{got:?}");
}

#[tokio::test]
async fn login_errors_never_show_the_app_secret() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let p = provider(&base, "MD5", Duration::from_secs(5));
    let err = p.login("code").await.expect_err("refused connection");
    assert!(
        !format!("{err:?} {err}").contains("the-app-secret"),
        "{err:?}"
    );
}

const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIURZM0l+H0IJgiVzRHpyqnPvn4yvYwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRcGF5YnJpZGdlIHRlc3QgQ0EwIBcNMjYxMTI3MTMxNzMxWhgP
MjEyNjExMDMxMzE3MzFaMBwxGjAYBgNVBAMMEXBheWJyaWRnZSB0ZXN0IENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEn4hZhMBgkkbhP6mytRHGGIR40nJ+KfzD
qvU6iE+5gkMNyl/O2jNx5BQxmPlH7ua/hdSP2DLy1XBb8e+dk+Hw0qNTMFEwHQYD
VR0OBBYEFMzAcvcPwQbFLVk8x3sAd+/cyH3nMB8GA1UdIwQYMBaAFMzAcvcPwQbF
LVk8x3sAd+/cyH3nMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg
FFd2xouJrYti91Q0P/dRq4Y+8X9EsZvR3LIGDpbbDlsCIHOCB5+300a9/hdgKEji
24c4ZLiqY121jpVkHbXq+Pk9
-----END CERTIFICATE-----
";

#[test]
fn an_extra_ca_file_is_trusted_by_the_https_client() {
    let dir = std::env::temp_dir().join(format!("paybridge-wechat-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("ca.pem"), TEST_CA).expect("write");
    let table: toml::Table = format!(
        "appid = \"{APPID}\"\nmch_id = \"{MCH}\"\napi_key = \"{KEY}\"\nca_file = \"ca.pem\"\n"
    )
    .parse()
    .expect("toml");
    let ctx = BuildContext {
        base_dir: dir.clone(),
        http_timeout: Duration::from_secs(1),
    };
    let p = WechatMiniprogram::new(&table, &ctx).expect("client with an extra root builds");
    assert_eq!(p.config().ca_certs.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
