//! Refund and refund query against a local fake WeChat: parameters, certificate rule, error mapping
//! and the `_$n` parsing.

use std::path::Path;
use std::time::Duration;

use paybridge_core::money::Fen;
use paybridge_core::provider::{
    BuildContext, PaymentProvider, ProviderError, RefundRequest, RefundState,
};
use paybridge_core::refund::RefundStatus;
use secrecy::SecretString;

use crate::WechatMiniprogram;
use crate::api_tests::{
    APPID, KEY, MCH, map, ok, order_ref, path_of, provider, request_fields, signed, utc,
};
use crate::sign::{self, SignType};
use crate::test_server::{Answer, TestServer};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/certs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A provider with the fixture PEM pair (the fake server speaks plain HTTP: the certificate
/// only matters to HTTPS servers).
fn provider_with_cert(base: &str, sign_type: &str) -> WechatMiniprogram {
    let table: toml::Table = format!(
        "appid = \"{APPID}\"\nmch_id = \"{MCH}\"\napi_key = \"{KEY}\"\nsign_type = \"{sign_type}\"\n\
         api_base = \"{base}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        fixture("client_cert.pem"),
        fixture("client_key.pem"),
    )
    .parse()
    .expect("toml");
    let ctx = BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: Duration::from_secs(5),
    };
    WechatMiniprogram::new(&table, &ctx).expect("valid config")
}

/// What an error must look like.
type Expect = fn(&ProviderError) -> bool;

fn refund_request(provider_data: serde_json::Value) -> RefundRequest {
    RefundRequest {
        order: order_ref(provider_data),
        out_refund_no: "R-0001@a".into(),
        amount: Fen::new(990),
        reason: Some("咖啡洒了".repeat(25)),
        notify_url: "https://pay.example/notify/demo/wechat_miniprogram/refund".into(),
    }
}

fn accepted(sign_type: SignType) -> String {
    signed(
        &[
            ("result_code", "SUCCESS"),
            ("transaction_id", "4200000001"),
            ("out_trade_no", "ORDER0001"),
            ("out_refund_no", "R-0001@a"),
            ("refund_id", "50300001"),
            ("refund_fee", "990"),
            ("total_fee", "1990"),
            ("cash_fee", "1990"),
        ],
        sign_type,
    )
}

#[tokio::test]
async fn refund_without_a_certificate_is_misconfigured_before_any_call() {
    let server = TestServer::start(|_| ok(accepted(SignType::HmacSha256))).await;
    let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
    let err = p
        .refund(&refund_request(serde_json::json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Misconfigured {
            field: "client_cert".into(),
            message: "refunds need the merchant API certificate: set client_cert + client_key, or client_p12".into(),
        }
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn refund_sends_the_documented_params_with_the_orders_sign_type() {
    let server = TestServer::start(|_| ok(accepted(SignType::Md5))).await;
    let p = provider_with_cert(&server.base, "HMAC-SHA256");
    let state = p
        .refund(&refund_request(serde_json::json!({"sign_type": "MD5"})))
        .await
        .expect("accepted");
    assert_eq!(
        state,
        RefundState {
            status: RefundStatus::Processing,
            provider_refund_no: Some("50300001".into()),
            succeeded_at: None,
            amount: Some(Fen::new(990)),
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(path_of(&requests[0]), "/secapi/pay/refund");
    let sent = request_fields(&requests[0]);
    assert!(sign::verify(&sent, SignType::Md5, &SecretString::from(KEY)));
    let reason: String = "咖啡洒了".repeat(20);
    for (k, v) in [
        ("appid", APPID),
        ("mch_id", MCH),
        ("sign_type", "MD5"),
        ("out_trade_no", "ORDER0001"),
        ("out_refund_no", "R-0001@a"),
        ("total_fee", "1990"),
        ("refund_fee", "990"),
        ("refund_fee_type", "CNY"),
        ("refund_desc", reason.as_str()),
        (
            "notify_url",
            "https://pay.example/notify/demo/wechat_miniprogram/refund",
        ),
    ] {
        assert_eq!(sent.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(sent["refund_desc"].chars().count(), 80);
    assert!(!sent.contains_key("transaction_id"), "{sent:?}");
}

#[tokio::test]
async fn refund_business_errors_map_to_core_errors() {
    let cases: [(&str, Expect); 13] = [
        (
            "SYSTEMERROR",
            |e| matches!(e, ProviderError::Unavailable(m) if m.contains("SYSTEMERROR")),
        ),
        ("BIZERR_NEED_RETRY", |e| {
            matches!(e, ProviderError::Unavailable(_))
        }),
        // Retried under the same out_refund_no once the balance allows (B.12).
        (
            "NOTENOUGH",
            |e| matches!(e, ProviderError::Unavailable(m) if m.contains("NOTENOUGH")),
        ),
        ("TRADE_OVERDUE", |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "refund_not_allowed",
                    ..
                }
            )
        }),
        ("USER_ACCOUNT_ABNORMAL", |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "refund_not_allowed",
                    ..
                }
            )
        }),
        ("FREQUENCY_LIMITED", |e| {
            matches!(e, ProviderError::RateLimited(_))
        }),
        ("INVALID_REQ_TOO_MUCH", |e| {
            matches!(e, ProviderError::RateLimited(_))
        }),
        ("ORDERNOTEXIST", |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "provider_rejected",
                    ..
                }
            )
        }),
        ("INVALID_TRANSACTIONID", |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "provider_rejected",
                    ..
                }
            )
        }),
        ("PARAM_ERROR", |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "provider_rejected",
                    ..
                }
            )
        }),
        (
            "ERROR",
            |e| matches!(e, ProviderError::Rejected { code: "provider_rejected", message } if message.contains("退款金额大于支付金额")),
        ),
        ("SIGNERROR", |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "provider_rejected",
                    ..
                }
            )
        }),
        ("SOMETHING_NEW", |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "provider_rejected",
                    ..
                }
            )
        }),
    ];
    for (code, expected) in cases {
        let body = signed(
            &[
                ("result_code", "FAIL"),
                ("err_code", code),
                ("err_code_des", "退款金额大于支付金额"),
            ],
            SignType::HmacSha256,
        );
        let server = TestServer::start(move |_| ok(body.clone())).await;
        let p = provider_with_cert(&server.base, "HMAC-SHA256");
        let err = p
            .refund(&refund_request(serde_json::json!({})))
            .await
            .unwrap_err();
        assert!(expected(&err), "{code}: {err:?}");
    }
}

#[tokio::test]
async fn refund_transport_and_protocol_failures() {
    let server = TestServer::start(|_| Answer::Hang).await;
    let table: toml::Table = format!(
        "appid = \"{APPID}\"\nmch_id = \"{MCH}\"\napi_key = \"{KEY}\"\napi_base = \"{}\"\n\
         client_p12 = \"{}\"\n",
        server.base,
        fixture("client_legacy.p12"),
    )
    .parse()
    .expect("toml");
    let ctx = BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: Duration::from_millis(300),
    };
    let p = WechatMiniprogram::new(&table, &ctx).expect("valid p12 config");
    let err = p
        .refund(&refund_request(serde_json::json!({})))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::Timeout);

    let fail = "<xml><return_code>FAIL</return_code><return_msg>证书错误</return_msg></xml>";
    let server = TestServer::start(move |_| ok(fail.to_owned())).await;
    let p = provider_with_cert(&server.base, "HMAC-SHA256");
    let err = p
        .refund(&refund_request(serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unavailable(m) if m.contains("证书错误")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_accepted_refund_of_another_amount_or_number_is_unavailable() {
    for (field, value) in [
        ("refund_fee", "991"),
        ("out_refund_no", "R-0002"),
        ("refund_id", ""),
    ] {
        let mut fields = map(&[
            ("result_code", "SUCCESS"),
            ("out_trade_no", "ORDER0001"),
            ("out_refund_no", "R-0001@a"),
            ("refund_id", "50300001"),
            ("refund_fee", "990"),
        ]);
        fields.insert(field.into(), value.into());
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = signed(&pairs, SignType::HmacSha256);
        let server = TestServer::start(move |_| ok(body.clone())).await;
        let p = provider_with_cert(&server.base, "HMAC-SHA256");
        let err = p
            .refund(&refund_request(serde_json::json!({})))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Unavailable(_)),
            "{field}: {err:?}"
        );
    }
}

#[tokio::test]
async fn refunds_larger_than_the_order_or_not_positive_are_refused_locally() {
    let server = TestServer::start(|_| ok(accepted(SignType::HmacSha256))).await;
    let p = provider_with_cert(&server.base, "HMAC-SHA256");
    for amount in [0, -1, 1991] {
        let mut req = refund_request(serde_json::json!({}));
        req.amount = Fen::new(amount);
        let err = p.refund(&req).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::InvalidRequest { field: Some(f), .. } if f == "amount"),
            "{amount}: {err:?}"
        );
    }
    let mut req = refund_request(serde_json::json!({}));
    req.reason = None;
    req.amount = Fen::new(1990);
    p.refund(&req).await.unwrap_err(); // the canned answer says 990
    let sent = request_fields(&server.requests()[0]);
    assert!(!sent.contains_key("refund_desc"), "{sent:?}");
    assert_eq!(sent["refund_fee"], "1990");
}

/// A refundquery answer listing several refunds of ORDER0001.
fn query_answer(ours: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("result_code", "SUCCESS"),
        ("out_trade_no", "ORDER0001"),
        ("transaction_id", "4200000001"),
        ("total_fee", "1990"),
        ("refund_count", "3"),
        ("out_refund_no_0", "R-other"),
        ("refund_id_0", "50300000"),
        ("refund_status_0", "SUCCESS"),
        ("refund_fee_0", "100"),
        ("refund_success_time_0", "2019-01-01 00:00:00"),
        ("out_refund_no_2", "R-third"),
        ("refund_id_2", "50300002"),
        ("refund_status_2", "REFUNDCLOSE"),
        ("refund_fee_2", "5"),
    ];
    pairs.extend_from_slice(ours);
    signed(&pairs, SignType::HmacSha256)
}

#[tokio::test]
async fn refundquery_picks_the_refund_by_number_among_several() {
    let cases = [
        (
            "SUCCESS",
            Some("2024-01-01 08:00:00"),
            RefundStatus::Succeeded,
            Some(utc("2024-01-01T00:00:00Z")),
        ),
        ("PROCESSING", None, RefundStatus::Processing, None),
        ("REFUNDCLOSE", None, RefundStatus::Failed, None),
        ("CHANGE", None, RefundStatus::Abnormal, None),
        ("SOMETHING_NEW", None, RefundStatus::Processing, None),
    ];
    for (wire, time, status, succeeded_at) in cases {
        let mut ours = vec![
            ("out_refund_no_1", "R-0001@a"),
            ("refund_id_1", "50300001"),
            ("refund_status_1", wire),
            ("refund_fee_1", "990"),
        ];
        if let Some(time) = time {
            ours.push(("refund_success_time_1", time));
        }
        let body = query_answer(&ours);
        let server = TestServer::start(move |_| ok(body.clone())).await;
        let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
        let state = p
            .query_refund(&order_ref(serde_json::json!({})), "R-0001@a")
            .await
            .expect("state");
        assert_eq!(
            state,
            RefundState {
                status,
                provider_refund_no: Some("50300001".into()),
                succeeded_at,
                amount: Some(Fen::new(990)),
            },
            "{wire}"
        );
        let requests = server.requests();
        assert_eq!(path_of(&requests[0]), "/pay/refundquery");
        let sent = request_fields(&requests[0]);
        assert_eq!(sent["out_refund_no"], "R-0001@a");
    }
}

#[tokio::test]
async fn refundquery_errors() {
    let not_listed = query_answer(&[]);
    let other_order = signed(
        &[
            ("result_code", "SUCCESS"),
            ("out_trade_no", "ORDER0002"),
            ("refund_count", "1"),
            ("out_refund_no_0", "R-0001@a"),
            ("refund_id_0", "1"),
            ("refund_status_0", "SUCCESS"),
        ],
        SignType::HmacSha256,
    );
    let failure = |code: &str| {
        signed(
            &[
                ("result_code", "FAIL"),
                ("err_code", code),
                ("err_code_des", "x"),
            ],
            SignType::HmacSha256,
        )
    };
    let cases: [(String, Expect); 5] = [
        (failure("REFUNDNOTEXIST"), |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "refund_not_found",
                    ..
                }
            )
        }),
        (failure("SYSTEMERROR"), |e| {
            matches!(e, ProviderError::Unavailable(_))
        }),
        (failure("PARAM_ERROR"), |e| {
            matches!(
                e,
                ProviderError::Rejected {
                    code: "provider_rejected",
                    ..
                }
            )
        }),
        (
            not_listed,
            |e| matches!(e, ProviderError::Unavailable(m) if m.contains("does not list")),
        ),
        (
            other_order,
            |e| matches!(e, ProviderError::Unavailable(m) if m.contains("another out_trade_no")),
        ),
    ];
    for (body, expected) in cases {
        let server = TestServer::start(move |_| ok(body.clone())).await;
        let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
        let err = p
            .query_refund(&order_ref(serde_json::json!({})), "R-0001@a")
            .await
            .unwrap_err();
        assert!(expected(&err), "{err:?}");
    }
}
