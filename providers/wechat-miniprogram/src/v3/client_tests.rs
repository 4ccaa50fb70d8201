//! The v3 call against a local server that plays WeChat Pay with the fixtures' keys: the request
//! is signed so that the merchant's key verifies it, and only a verified 2xx answer is trusted.

use std::time::Duration;

use paybridge_core::provider::ProviderError;
use reqwest::Method;

use super::*;
use crate::test_server::{Answer, Seen, TestServer};
use crate::v3::crypto::{PlatformCertificate, normalize_serial};
use crate::v3::test_support::*;

/// The merchant's signature on a request, checked as WeChat Pay checks it.
fn verify_request(seen: &Seen) -> Result<(), String> {
    let header = seen
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone())
        .ok_or("no Authorization")?;
    let params = header
        .strip_prefix("WECHATPAY2-SHA256-RSA2048 ")
        .ok_or("wrong scheme")?;
    let param = |name: &str| {
        params.split(',').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_owned())
        })
    };
    let (ts, nonce, signature) = (
        param("timestamp").ok_or("timestamp")?,
        param("nonce_str").ok_or("nonce_str")?,
        param("signature").ok_or("signature")?,
    );
    if param("mchid").as_deref() != Some("1900000109")
        || param("serial_no").as_deref() != Some("3775B6A45ACD588826D15E583A95F5DD26A9A5F1")
    {
        return Err("mchid or serial_no".to_owned());
    }
    let message = request_message(
        &seen.method,
        &seen.target,
        ts.parse().map_err(|_| "timestamp")?,
        &nonce,
        seen.body.as_bytes(),
    );
    MerchantKey::from_pem(MERCHANT_KEY, "k")
        .unwrap()
        .verifying_key()
        .unwrap()
        .verify(&message, &signature)
        .map_err(|e| e.to_string())
}

const ORDER: &str = r#"{"prepay_id":"wx06160000000000000000000000000000"}"#;

#[tokio::test]
async fn a_signed_request_gets_a_verified_answer_in_public_key_mode() {
    let server = TestServer::start(|seen| match verify_request(seen) {
        Ok(()) => answer(200, ORDER, Signing::PublicKey),
        Err(e) => Answer::Respond(401, format!(r#"{{"code":"SIGN_ERROR","message":"{e}"}}"#)),
    })
    .await;
    let c = client(&server.base, true, false, Duration::from_secs(5));
    let body = r#"{"appid":"wxd930ea5d5a258f4f","description":"咖啡"}"#;
    let reply = c
        .call(Method::POST, "/v3/pay/transactions/jsapi", Some(body))
        .await
        .unwrap();
    assert_eq!(
        reply,
        V3Reply::Success {
            status: 200,
            body: ORDER.as_bytes().to_vec()
        }
    );
    let seen = &server.requests()[0];
    assert_eq!(seen.body, body);
    let sent_serial = seen.headers.iter().find(|(n, _)| n == "wechatpay-serial");
    assert_eq!(
        sent_serial.map(|(_, v)| v.as_str()),
        Some(str_of(&v(), "public_key_id").as_str()),
        "the serial the tenant can verify"
    );
}

#[tokio::test]
async fn a_tampered_or_unsigned_answer_is_not_trusted() {
    for signing in [Signing::Tampered, Signing::Unsigned, Signing::Certificate] {
        let server = TestServer::start(move |_| answer(200, ORDER, signing)).await;
        // Public-key mode only: a certificate-signed answer names a serial it cannot verify.
        let c = client(&server.base, true, false, Duration::from_secs(5));
        let reply = c
            .call(
                Method::GET,
                "/v3/pay/transactions/id/1?mchid=1900000109",
                None,
            )
            .await;
        assert!(
            matches!(&reply, Err(ProviderError::Unavailable(m)) if m.contains("not trusted")),
            "{reply:?}"
        );
    }
}

#[tokio::test]
async fn certificate_mode_downloads_the_certificate_once_and_then_verifies() {
    let listing = listing();
    let server = TestServer::start(move |seen| {
        if seen.target == "/v3/certificates" {
            Answer::Respond(200, listing.clone())
        } else {
            answer(204, "", Signing::Certificate)
        }
    })
    .await;
    let c = client(&server.base, false, true, Duration::from_secs(5));
    for _ in 0..3 {
        let reply = c
            .call(
                Method::POST,
                "/v3/pay/transactions/out-trade-no/PB1/close",
                Some(r#"{"mchid":"1900000109"}"#),
            )
            .await
            .unwrap();
        assert_eq!(
            reply,
            V3Reply::Success {
                status: 204,
                body: Vec::new()
            }
        );
    }
    let downloads = server
        .requests()
        .iter()
        .filter(|s| s.target == "/v3/certificates")
        .count();
    assert_eq!(downloads, 1);
    let cert = PlatformCertificate::from_pem(PLATFORM_CERT, "t").unwrap();
    assert_eq!(
        cert.serial,
        normalize_serial(&str_of(&v(), "platform_serial_no"))
    );
}

#[tokio::test]
async fn an_error_answer_is_passed_on_with_its_code_and_a_timeout_is_a_timeout() {
    let server = TestServer::start(|_| {
        Answer::Respond(
            404,
            r#"{"code":"ORDER_NOT_EXIST","message":"订单不存在"}"#.to_owned(),
        )
    })
    .await;
    let c = client(&server.base, true, false, Duration::from_secs(5));
    let reply = c
        .call(
            Method::GET,
            "/v3/pay/transactions/out-trade-no/X?mchid=1900000109",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        reply,
        V3Reply::Error {
            status: 404,
            code: "ORDER_NOT_EXIST".to_owned(),
            message: "订单不存在".to_owned()
        }
    );
    let hang = TestServer::start(|_| Answer::Hang).await;
    let c = client(&hang.base, true, false, Duration::from_millis(300));
    let reply = c.call(Method::GET, "/v3/x", None).await;
    assert!(matches!(reply, Err(ProviderError::Timeout)), "{reply:?}");
}
