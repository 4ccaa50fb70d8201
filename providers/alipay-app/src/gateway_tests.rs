//! The call pipeline against a local HTTP server: request shape, response signature, codes,
//! transport failures.

use std::time::Duration;

use super::*;
use crate::keys::AlipayPublicKey;
use crate::sign::request_sign_content;
use crate::test_server::{Answer, TestServer};
use crate::test_support::{alipay_signer, fixture, provider_with};

const METHOD: &str = "alipay.trade.query";

pub(crate) fn signed_answer(method: &str, inner: &str) -> Answer {
    let sign = alipay_signer().sign_rsa2(inner.as_bytes()).expect("sign");
    Answer::Respond(
        200,
        format!(
            "{{\"{}\":{inner},\"sign\":\"{sign}\"}}",
            response::response_key(method)
        ),
    )
}

fn gateway_for(url: &str, timeout: Duration) -> Gateway {
    provider_with(&[("gateway_url", url)], timeout).gateway
}

async fn call_with(
    answer: impl Fn() -> Answer + Send + Sync + 'static,
) -> Result<Reply, ProviderError> {
    let server = TestServer::start(move |_| answer()).await;
    gateway_for(&server.url, Duration::from_secs(2))
        .call(METHOD, r#"{"out_trade_no":"PB1"}"#.to_owned())
        .await
}

#[tokio::test]
async fn requests_are_signed_form_posts_with_the_common_params() {
    let server = TestServer::start(|_| {
        signed_answer(
            METHOD,
            r#"{"code":"10000","msg":"Success","trade_status":"WAIT_BUYER_PAY"}"#,
        )
    })
    .await;
    let reply = gateway_for(&server.url, Duration::from_secs(2))
        .call(METHOD, r#"{"out_trade_no":"PB 1+2"}"#.to_owned())
        .await
        .expect("ok");
    assert!(matches!(reply, Reply::Success(f) if f["trade_status"] == "WAIT_BUYER_PAY"));
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/gateway.do");
    assert_eq!(
        request.content_type,
        "application/x-www-form-urlencoded;charset=utf-8"
    );
    let form = request.form();
    let keys: Vec<&str> = form.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "app_id",
            "biz_content",
            "charset",
            "format",
            "method",
            "sign",
            "sign_type",
            "timestamp",
            "version"
        ]
    );
    assert_eq!(form["method"], METHOD);
    assert_eq!(form["charset"], "utf-8");
    assert_eq!(form["format"], "JSON");
    assert_eq!(form["sign_type"], "RSA2");
    assert_eq!(form["version"], "1.0");
    assert_eq!(form["timestamp"], "2024-01-01 12:00:00");
    assert_eq!(form["biz_content"], r#"{"out_trade_no":"PB 1+2"}"#);
    let app_public = AlipayPublicKey::parse(&fixture("vectors/app_public.pem")).expect("key");
    let content = request_sign_content(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(app_public.verify_rsa2(content.as_bytes(), &form["sign"]));
}

#[tokio::test]
async fn code_10000_and_40004_reach_the_caller() {
    let reply = call_with(|| signed_answer(METHOD, r#"{"code":"10000","msg":"Success"}"#)).await;
    assert!(matches!(reply, Ok(Reply::Success(_))));
    let reply = call_with(|| {
        signed_answer(METHOD, r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在"}"#)
    })
    .await;
    assert_eq!(
        reply,
        Ok(Reply::BusinessFailed(BusinessFailure {
            sub_code: "ACQ.TRADE_NOT_EXIST".to_owned(),
            sub_msg: "交易不存在".to_owned(),
        }))
    );
}

#[tokio::test]
async fn code_20000_is_unavailable_outcome_unknown() {
    let reply = call_with(|| {
        signed_answer(METHOD, r#"{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}"#)
    })
    .await;
    assert!(
        matches!(reply, Err(ProviderError::Unavailable(m)) if m.contains("20000") && m.contains("outcome unknown"))
    );
}

#[tokio::test]
async fn config_problems_are_rejected_with_code_and_sub_code() {
    for code in ["40001", "40002", "40006", "20001"] {
        let inner = format!(
            r#"{{"code":"{code}","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}}"#
        );
        let reply = call_with(move || signed_answer(METHOD, &inner)).await;
        match reply {
            Err(ProviderError::Rejected {
                code: "provider_rejected",
                message,
            }) => {
                assert!(
                    message.contains(code)
                        && message.contains("isv.invalid-app-id")
                        && message.contains("无效的AppID参数"),
                    "{message}"
                );
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    // The same from error_response, the gateway-level shape.
    let reply = call_with(|| {
        let inner = r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}"#;
        let sign = alipay_signer().sign_rsa2(inner.as_bytes()).expect("sign");
        Answer::Respond(200, format!("{{\"error_response\":{inner},\"sign\":\"{sign}\"}}"))
    })
    .await;
    assert!(matches!(
        reply,
        Err(ProviderError::Rejected {
            code: "provider_rejected",
            ..
        })
    ));
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_unavailable() {
    let reply = call_with(|| {
        let inner = r#"{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS"}"#;
        let sign = alipay_signer().sign_rsa2(b"something else").expect("sign");
        Answer::Respond(
            200,
            format!("{{\"alipay_trade_query_response\":{inner},\"sign\":\"{sign}\"}}"),
        )
    })
    .await;
    assert_eq!(
        reply,
        Err(ProviderError::Unavailable(
            "response signature did not verify".to_owned()
        ))
    );
    let reply = call_with(|| {
        Answer::Respond(
            200,
            r#"{"alipay_trade_query_response":{"code":"10000","msg":"Success"}}"#.to_owned(),
        )
    })
    .await;
    assert!(
        matches!(reply, Err(ProviderError::Unavailable(m)) if m.starts_with("response signature did not verify"))
    );
}

#[tokio::test]
async fn transport_failures_are_timeout_or_unavailable() {
    let server = TestServer::start(|_| Answer::Hang).await;
    let reply = gateway_for(&server.url, Duration::from_millis(300))
        .call(METHOD, "{}".to_owned())
        .await;
    assert_eq!(reply, Err(ProviderError::Timeout));

    let reply = call_with(|| Answer::Respond(502, "<html>Bad Gateway</html>".to_owned())).await;
    assert!(matches!(reply, Err(ProviderError::Unavailable(m)) if m.contains("502")));
    let reply = call_with(|| {
        Answer::WithHeaders(
            302,
            "Location: https://evil.example/\r\n".to_owned(),
            String::new(),
        )
    })
    .await;
    assert!(matches!(reply, Err(ProviderError::Unavailable(m)) if m.contains("302")));
    let reply = call_with(|| Answer::Respond(200, "<html>maintenance</html>".to_owned())).await;
    assert!(matches!(reply, Err(ProviderError::Unavailable(m)) if m.contains("unreadable")));
    let reply = call_with(|| Answer::Respond(200, "x".repeat(MAX_RESPONSE_BYTES + 1))).await;
    assert!(matches!(reply, Err(ProviderError::Unavailable(m)) if m.contains("larger than")));

    // Nothing listens on this port any more.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/gateway.do", listener.local_addr().expect("addr"))
    };
    let reply = gateway_for(&closed, Duration::from_secs(2))
        .call(METHOD, "{}".to_owned())
        .await;
    assert!(
        matches!(reply, Err(ProviderError::Unavailable(_))),
        "{reply:?}"
    );
}

#[test]
fn a_quoted_app_auth_token_is_redacted_from_messages() {
    let mut fields = serde_json::Map::new();
    fields.insert("code".into(), "40002".into());
    fields.insert("msg".into(), "Invalid Arguments".into());
    fields.insert("sub_code".into(), "isv.invalid-signature".into());
    fields.insert(
        "sub_msg".into(),
        "验签出错，网关生成的验签字符串为：app_auth_token=202612BBsecret&app_id=2021&charset=utf-8"
            .into(),
    );
    let error = crate::gateway::classify(crate::response::ResponseKind::Method, fields)
        .expect_err("40002 is an error");
    let shown = format!("{error:?} {error}");
    assert!(!shown.contains("202612BBsecret"), "{shown}");
    assert!(
        shown.contains("app_auth_token=[REDACTED]&app_id=2021"),
        "{shown}"
    );
}
