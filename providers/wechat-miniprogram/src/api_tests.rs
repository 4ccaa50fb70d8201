//! The provider against a local fake WeChat: the pipeline's checks and the error mapping.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    BuildContext, CloseOutcome, CreatePayment, OrderRef, PaymentProvider, PaymentState,
    ProviderError,
};
use secrecy::SecretString;

use crate::WechatMiniprogram;
use crate::sign::{self, SignType};
use crate::test_server::{Answer, Seen, TestServer};
use crate::xml;

pub(crate) const KEY: &str = "192006250b4c09247ec02edce69f6a2d";
pub(crate) const APPID: &str = "wxd678efh567hg6787";
pub(crate) const MCH: &str = "1900000109";

pub(crate) fn provider(base: &str, sign_type: &str, timeout: Duration) -> WechatMiniprogram {
    let table: toml::Table = format!(
        "appid = \"{APPID}\"\nmch_id = \"{MCH}\"\napi_key = \"{KEY}\"\nsign_type = \"{sign_type}\"\n\
         app_secret = \"the-app-secret\"\napi_base = \"{base}\"\nlogin_base = \"{base}\"\n"
    )
    .parse()
    .expect("toml");
    let ctx = BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: timeout,
    };
    WechatMiniprogram::new(&table, &ctx).expect("valid config")
}

pub(crate) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A response as WeChat would sign it.
pub(crate) fn signed(pairs: &[(&str, &str)], sign_type: SignType) -> String {
    let mut fields = map(&[
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", APPID),
        ("mch_id", MCH),
    ]);
    fields.insert("nonce_str".into(), "respnonce".into());
    fields.extend(map(pairs));
    let s = sign::sign(&fields, sign_type, &SecretString::from(KEY));
    fields.insert("sign".into(), s);
    xml::encode("xml", &fields).expect("encode")
}

pub(crate) fn ok(body: String) -> Answer {
    Answer::Respond(200, body)
}

pub(crate) fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

pub(crate) fn create_request() -> CreatePayment {
    CreatePayment {
        out_trade_no: "ORDER0001".into(),
        amount: Fen::new(1990),
        description: "  Coffee & <cake> ]]> ".into(),
        payer_openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
        client_ip: None,
        expires_at: utc("2024-01-01T00:00:00Z"),
        attach: None,
        notify_url: "https://pay.example/notify/demo/wechat_miniprogram".into(),
        previous_provider_data: None,
    }
}

pub(crate) fn order_ref(provider_data: serde_json::Value) -> OrderRef {
    OrderRef {
        out_trade_no: "ORDER0001".into(),
        provider_trade_no: None,
        amount: Fen::new(1990),
        provider_data,
    }
}

pub(crate) fn path_of(seen: &Seen) -> &str {
    seen.target.split('?').next().unwrap_or_default()
}

pub(crate) fn request_fields(seen: &Seen) -> BTreeMap<String, String> {
    xml::decode(seen.body.as_bytes(), "xml").expect("request is our XML")
}

#[tokio::test]
async fn create_payment_sends_jsapi_params_and_returns_signed_client_params() {
    let server = TestServer::start(|_| {
        ok(signed(
            &[
                ("result_code", "SUCCESS"),
                ("trade_type", "JSAPI"),
                ("prepay_id", "wx2014"),
            ],
            SignType::HmacSha256,
        ))
    })
    .await;
    let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
    let created = p.create_payment(&create_request()).await.expect("created");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(path_of(&requests[0]), "/pay/unifiedorder");
    let sent = request_fields(&requests[0]);
    assert!(
        sign::verify(&sent, SignType::HmacSha256, &SecretString::from(KEY)),
        "request signature"
    );
    for (k, v) in [
        ("appid", APPID),
        ("mch_id", MCH),
        ("trade_type", "JSAPI"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ("body", "  Coffee & <cake> ]]> "),
        ("out_trade_no", "ORDER0001"),
        ("total_fee", "1990"),
        ("fee_type", "CNY"),
        ("spbill_create_ip", "127.0.0.1"),
        (
            "notify_url",
            "https://pay.example/notify/demo/wechat_miniprogram",
        ),
        ("time_expire", "20240101080000"),
        ("sign_type", "HMAC-SHA256"),
    ] {
        assert_eq!(sent.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(
        !sent.contains_key("time_start") && !sent.contains_key("attach"),
        "{sent:?}"
    );
    assert_eq!(sent["nonce_str"].len(), 32);

    let cp = &created.client_payment;
    assert_eq!(cp["package"], "prepay_id=wx2014");
    assert_eq!(cp["signType"], "HMAC-SHA256");
    assert_eq!(cp.as_object().map(|o| o.len()), Some(5));
    let ts = cp["timeStamp"].as_str().expect("timeStamp");
    assert!(
        ts.len() == 10 && ts.bytes().all(|b| b.is_ascii_digit()),
        "{ts}"
    );
    let pay_fields = map(&[
        ("appId", APPID),
        ("timeStamp", ts),
        ("nonceStr", cp["nonceStr"].as_str().expect("nonceStr")),
        ("package", "prepay_id=wx2014"),
        ("signType", "HMAC-SHA256"),
        ("paySign", cp["paySign"].as_str().expect("paySign")),
    ]);
    let mut check = pay_fields.clone();
    check.insert("sign".into(), check["paySign"].clone());
    check.remove("paySign");
    assert!(
        sign::verify(&check, SignType::HmacSha256, &SecretString::from(KEY)),
        "{pay_fields:?}"
    );
    assert_eq!(
        created.provider_data,
        serde_json::json!({"sign_type": "HMAC-SHA256", "prepay_id": "wx2014"})
    );
}

#[tokio::test]
async fn retry_uses_the_sign_type_the_order_was_created_with() {
    let server = TestServer::start(|_| {
        ok(signed(
            &[("result_code", "SUCCESS"), ("prepay_id", "wx2")],
            SignType::Md5,
        ))
    })
    .await;
    let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
    let mut req = create_request();
    req.previous_provider_data = Some(serde_json::json!({"sign_type": "MD5", "prepay_id": "wx1"}));
    req.client_ip = Some("10.1.2.3".into());
    req.attach = Some("a=1&b=2".into());
    let created = p.create_payment(&req).await.expect("created");
    let sent = request_fields(&server.requests()[0]);
    assert_eq!(sent["sign_type"], "MD5");
    assert!(sign::verify(&sent, SignType::Md5, &SecretString::from(KEY)));
    assert_eq!(
        (sent["spbill_create_ip"].as_str(), sent["attach"].as_str()),
        ("10.1.2.3", "a=1&b=2")
    );
    assert_eq!(created.client_payment["signType"], "MD5");
    assert_eq!(
        created.client_payment["paySign"].as_str().map(str::len),
        Some(32)
    );
    assert_eq!(created.provider_data["sign_type"], "MD5");
}

#[tokio::test]
async fn missing_openid_is_refused_before_any_call() {
    let server = TestServer::start(|_| ok(String::new())).await;
    let p = provider(&server.base, "MD5", Duration::from_secs(5));
    let mut req = create_request();
    req.payer_openid = None;
    let err = p.create_payment(&req).await.expect_err("refused");
    assert!(
        matches!(err, ProviderError::InvalidRequest { field: Some(ref f), .. } if f == "payer.openid"),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn unifiedorder_business_errors_map_to_core_errors() {
    type Check = fn(&ProviderError) -> bool;
    let cases: [(&str, Check); 6] = [
        ("SYSTEMERROR", |e| {
            matches!(e, ProviderError::Unavailable(_))
        }),
        ("ORDERPAID", |e| *e == ProviderError::AlreadyPaid),
        ("ORDERCLOSED", |e| *e == ProviderError::AlreadyClosed),
        ("OUT_TRADE_NO_USED", |e| *e == ProviderError::OutTradeNoUsed),
        ("INVALID_REQUEST", |e| *e == ProviderError::OutTradeNoUsed),
        (
            "NOAUTH",
            |e| matches!(e, ProviderError::Rejected { code: "provider_rejected", message } if message == "NOAUTH: no auth"),
        ),
    ];
    for (code, expected) in cases {
        let server = TestServer::start(move |_| {
            let des = if code == "NOAUTH" { "no auth" } else { "x" };
            ok(signed(
                &[
                    ("result_code", "FAIL"),
                    ("err_code", code),
                    ("err_code_des", des),
                ],
                SignType::Md5,
            ))
        })
        .await;
        let p = provider(&server.base, "MD5", Duration::from_secs(5));
        let err = p.create_payment(&create_request()).await.expect_err(code);
        assert!(expected(&err), "{code}: {err:?}");
    }
}

fn paid_query(sign_type: SignType) -> String {
    signed(
        &[
            ("result_code", "SUCCESS"),
            ("trade_state", "SUCCESS"),
            ("out_trade_no", "ORDER0001"),
            ("transaction_id", "4200000001"),
            ("total_fee", "1990"),
            ("cash_fee", "1000"),
            ("time_end", "20240101080102"),
        ],
        sign_type,
    )
}

#[tokio::test]
async fn close_of_a_paid_order_queries_and_reports_the_payment() {
    let server = TestServer::start(|seen| match path_of(seen) {
        "/pay/closeorder" => ok(signed(
            &[
                ("result_code", "FAIL"),
                ("err_code", "ORDERPAID"),
                ("err_code_des", "paid"),
            ],
            SignType::Md5,
        )),
        "/pay/orderquery" => ok(paid_query(SignType::Md5)),
        _ => Answer::Respond(404, String::new()),
    })
    .await;
    // Configured HMAC, but the order was created with MD5: both calls must use MD5.
    let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
    let outcome = p
        .close_payment(&order_ref(serde_json::json!({"sign_type": "MD5"})))
        .await
        .expect("outcome");
    let CloseOutcome::AlreadyPaid(event) = outcome else {
        panic!("not AlreadyPaid: {outcome:?}")
    };
    assert_eq!(event.provider_trade_no, "4200000001");
    assert_eq!(event.event_id, "4200000001");
    assert_eq!(event.amount, Fen::new(1990));
    assert_eq!(event.paid_at, utc("2024-01-01T00:01:02Z"));
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|s| path_of(s).to_owned())
        .collect();
    assert_eq!(paths, ["/pay/closeorder", "/pay/orderquery"]);
}

#[tokio::test]
async fn close_outcomes() {
    let cases: [(&str, &str, Result<CloseOutcome, ()>); 4] = [
        ("SUCCESS", "", Ok(CloseOutcome::Closed)),
        ("FAIL", "ORDERCLOSED", Ok(CloseOutcome::Closed)),
        ("FAIL", "SYSTEMERROR", Err(())),
        ("FAIL", "ORDERPAID", Err(())), // orderquery below says NOTPAY: contradictory, so unavailable
    ];
    for (result_code, err_code, expected) in cases {
        let server = TestServer::start(move |seen| {
            if path_of(seen) == "/pay/orderquery" {
                return ok(signed(
                    &[("result_code", "SUCCESS"), ("trade_state", "NOTPAY")],
                    SignType::Md5,
                ));
            }
            ok(signed(
                &[("result_code", result_code), ("err_code", err_code)],
                SignType::Md5,
            ))
        })
        .await;
        let p = provider(&server.base, "MD5", Duration::from_secs(5));
        let got = p.close_payment(&order_ref(serde_json::Value::Null)).await;
        match expected {
            Ok(outcome) => assert_eq!(got, Ok(outcome), "{err_code}"),
            Err(()) => assert!(
                matches!(got, Err(ProviderError::Unavailable(_))),
                "{err_code}: {got:?}"
            ),
        }
    }
}

fn query_with_state(state: &str) -> String {
    signed(
        &[
            ("result_code", "SUCCESS"),
            ("trade_state", state),
            ("out_trade_no", "ORDER0001"),
            ("transaction_id", "4200000001"),
            ("total_fee", "1990"),
            ("time_end", "20240101080102"),
        ],
        SignType::HmacSha256,
    )
}

#[tokio::test]
async fn query_maps_trade_states() {
    let cases = [
        ("NOTPAY", Some(PaymentState::NotPaid)),
        ("USERPAYING", Some(PaymentState::NotPaid)),
        ("CLOSED", Some(PaymentState::Closed)),
        ("REVOKED", Some(PaymentState::Closed)),
        ("PAYERROR", Some(PaymentState::Failed)),
        ("REFUND", None),
        ("SUCCESS", None),
    ];
    for (state, expected) in cases {
        let server = TestServer::start(move |_| ok(query_with_state(state))).await;
        let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
        let got = p
            .query_payment(&order_ref(serde_json::Value::Null))
            .await
            .expect(state);
        match expected {
            Some(s) => assert_eq!(got, s, "{state}"),
            None => assert!(
                matches!(got, PaymentState::Paid(ref e) if e.amount == Fen::new(1990)),
                "{state}: {got:?}"
            ),
        }
    }
}

#[tokio::test]
async fn a_paid_query_about_another_order_is_unavailable() {
    let server = TestServer::start(|_| {
        ok(signed(
            &[
                ("result_code", "SUCCESS"),
                ("trade_state", "SUCCESS"),
                ("out_trade_no", "ORDER0002"),
                ("transaction_id", "4200000001"),
                ("total_fee", "1990"),
                ("time_end", "20240101080102"),
            ],
            SignType::HmacSha256,
        ))
    })
    .await;
    let p = provider(&server.base, "HMAC-SHA256", Duration::from_secs(5));
    let got = p.query_payment(&order_ref(serde_json::Value::Null)).await;
    assert!(matches!(got, Err(ProviderError::Unavailable(_))), "{got:?}");
}

#[tokio::test]
async fn query_errors() {
    for (err_code, want_ok) in [("ORDERNOTEXIST", true), ("SYSTEMERROR", false)] {
        let server = TestServer::start(move |_| {
            ok(signed(
                &[("result_code", "FAIL"), ("err_code", err_code)],
                SignType::Md5,
            ))
        })
        .await;
        let p = provider(&server.base, "MD5", Duration::from_secs(5));
        let got = p.query_payment(&order_ref(serde_json::Value::Null)).await;
        if want_ok {
            assert_eq!(got, Ok(PaymentState::NotPaid));
        } else {
            assert!(matches!(got, Err(ProviderError::Unavailable(_))), "{got:?}");
        }
    }
}

#[tokio::test]
async fn login_exchanges_the_code_and_drops_the_session_key() {
    let server =
        TestServer::start(|_| ok(r#"{"openid":"oX1","session_key":"SK","unionid":"uY"}"#.into()))
            .await;
    let p = provider(&server.base, "MD5", Duration::from_secs(5));
    let session = p.login("code-123").await.expect("session");
    assert_eq!(
        (session.openid.as_str(), session.unionid.as_deref()),
        ("oX1", Some("uY"))
    );
    let seen = &server.requests()[0];
    assert_eq!(path_of(seen), "/sns/jscode2session");
    for part in [
        "appid=wxd678efh567hg6787",
        "secret=the-app-secret",
        "js_code=code-123",
        "grant_type=authorization_code",
    ] {
        assert!(seen.target.contains(part), "{} lacks {part}", seen.target);
    }
}

#[test]
fn the_factory_is_registered() {
    let factory = paybridge_core::provider::factory("wechat_miniprogram").expect("registered");
    assert_eq!(
        factory.display_name,
        "WeChat Pay (mini-program, API v2 and v3)"
    );
    assert_eq!(factory.fields.len(), crate::FIELDS.len());
    assert!(factory.simulator.is_some());
    let table: toml::Table = "appid = 1".parse().expect("toml");
    let ctx = BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: Duration::from_secs(1),
    };
    let errors = (factory.build)(&table, &ctx)
        .err()
        .expect("invalid table refused");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["appid", "mch_id", "api_key"]);
}

#[test]
fn empty_client_ip_falls_back_and_non_positive_amounts_are_refused() {
    let p = provider("http://127.0.0.1:9", "MD5", Duration::from_secs(1));
    let mut req = create_request();
    req.client_ip = Some(String::new());
    let params = crate::orders::unified_order_params(p.config(), &req).expect("params");
    assert_eq!(params["spbill_create_ip"], "127.0.0.1");
    req.amount = Fen::new(0);
    let err = crate::orders::unified_order_params(p.config(), &req).expect_err("zero amount");
    assert!(
        matches!(err, ProviderError::InvalidRequest { field: Some(ref f), .. } if f == "amount"),
        "{err:?}"
    );
}
