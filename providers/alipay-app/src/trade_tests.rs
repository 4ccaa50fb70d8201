//! query / close / refund / refund query against a local server answering signed canned JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use paybridge_core::money::Fen;
use paybridge_core::provider::{
    CloseOutcome, OrderRef, PaymentEvent, PaymentProvider, PaymentState, ProviderError,
    RefundRequest, RefundState,
};
use paybridge_core::refund::RefundStatus;

use crate::AlipayApp;
use crate::gateway::tests::signed_answer;
use crate::test_server::{Answer, Seen, TestServer};
use crate::test_support::{provider_with, utc};

const ORDER: &str = "PB20240101001";
const TRADE_NO: &str = "2024010122001400000000000001";

fn order() -> OrderRef {
    OrderRef {
        out_trade_no: ORDER.to_owned(),
        provider_trade_no: None,
        amount: Fen::new(1990),
        provider_data: serde_json::json!({}),
    }
}

fn refund_request(amount: i64, reason: Option<&str>) -> RefundRequest {
    RefundRequest {
        order: order(),
        out_refund_no: "RF001".to_owned(),
        amount: Fen::new(amount),
        reason: reason.map(str::to_owned),
        notify_url: "https://ignored.example/notify".to_owned(),
    }
}

fn ok(fields: &str) -> String {
    format!(r#"{{"code":"10000","msg":"Success"{fields}}}"#)
}

fn failed(sub_code: &str) -> String {
    format!(
        r#"{{"code":"40004","msg":"Business Failed","sub_code":"{sub_code}","sub_msg":"说明"}}"#
    )
}

const PAID: &str = r#","trade_no":"2024010122001400000000000001","out_trade_no":"PB20240101001","trade_status":"TRADE_SUCCESS","total_amount":"19.90","send_pay_date":"2024-01-01 12:00:00""#;

/// A server answering each method with the inner JSON `answers` gives for it.
async fn app_answering(
    answers: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (AlipayApp, TestServer) {
    let server = TestServer::start(move |seen: &Seen| {
        let method = seen.form().get("method").cloned().unwrap_or_default();
        signed_answer(&method, &answers(&method))
    })
    .await;
    let app = provider_with(&[("gateway_url", &server.url)], Duration::from_secs(2));
    (app, server)
}

fn paid_event() -> PaymentEvent {
    PaymentEvent {
        out_trade_no: ORDER.to_owned(),
        provider_trade_no: TRADE_NO.to_owned(),
        amount: Fen::new(1990),
        paid_at: utc("2024-01-01T04:00:00Z"),
        event_id: TRADE_NO.to_owned(),
    }
}

#[tokio::test]
async fn query_maps_trade_status() {
    for (inner, expected) in [
        (ok(PAID), PaymentState::Paid(paid_event())),
        (
            ok(&PAID.replace("TRADE_SUCCESS", "TRADE_FINISHED")),
            PaymentState::Paid(paid_event()),
        ),
        (
            ok(
                r#","out_trade_no":"PB20240101001","trade_status":"WAIT_BUYER_PAY","total_amount":"19.90""#,
            ),
            PaymentState::NotPaid,
        ),
        (
            ok(r#","trade_status":"TRADE_CLOSED","total_amount":"19.90""#),
            PaymentState::Closed,
        ),
        (failed("ACQ.TRADE_NOT_EXIST"), PaymentState::NotPaid),
    ] {
        let (app, server) = app_answering(move |_| inner.clone()).await;
        assert_eq!(app.query_payment(&order()).await, Ok(expected));
        let form = server.requests()[0].form();
        assert_eq!(form["method"], "alipay.trade.query");
        assert_eq!(form["biz_content"], r#"{"out_trade_no":"PB20240101001"}"#);
    }
}

#[tokio::test]
async fn query_failures_are_errors_not_guesses() {
    let (app, _s) = app_answering(|_| failed("ACQ.SYSTEM_ERROR")).await;
    assert!(
        matches!(app.query_payment(&order()).await, Err(ProviderError::Unavailable(m)) if m.contains("ACQ.SYSTEM_ERROR"))
    );
    let (app, _s) = app_answering(|_| failed("ACQ.INVALID_PARAMETER")).await;
    assert!(matches!(
        app.query_payment(&order()).await,
        Err(ProviderError::Rejected {
            code: "provider_rejected",
            ..
        })
    ));
    let (app, _s) = app_answering(|_| ok(&PAID.replace("PB20240101001", "OTHER0001"))).await;
    assert!(
        matches!(app.query_payment(&order()).await, Err(ProviderError::Unavailable(m)) if m.contains("another out_trade_no"))
    );
    let (app, _s) = app_answering(|_| ok(&PAID.replace("19.90", "19.9x"))).await;
    assert!(matches!(
        app.query_payment(&order()).await,
        Err(ProviderError::Unavailable(_))
    ));
    let (app, _s) =
        app_answering(|_| ok(&PAID.replace(r#","send_pay_date":"2024-01-01 12:00:00""#, ""))).await;
    assert!(matches!(
        app.query_payment(&order()).await,
        Err(ProviderError::Unavailable(_))
    ));
}

#[tokio::test]
async fn close_maps_sub_codes() {
    let (app, _s) =
        app_answering(|_| ok(r#","out_trade_no":"PB20240101001","trade_no":"1""#)).await;
    assert_eq!(app.close_payment(&order()).await, Ok(CloseOutcome::Closed));
    let (app, _s) = app_answering(|_| failed("ACQ.TRADE_NOT_EXIST")).await;
    assert_eq!(app.close_payment(&order()).await, Ok(CloseOutcome::Closed));
    let (app, _s) = app_answering(|_| failed("ACQ.SYSTEM_ERROR")).await;
    assert!(matches!(
        app.close_payment(&order()).await,
        Err(ProviderError::Unavailable(_))
    ));
}

#[tokio::test]
async fn close_of_a_paid_trade_reports_the_payment() {
    for sub_code in [
        "ACQ.TRADE_STATUS_ERROR",
        "ACQ.REASON_TRADE_STATUS_INVALID",
        "ACQ.REASON_ILLEGAL_STATUS",
    ] {
        let (app, server) = app_answering(move |method| match method {
            "alipay.trade.close" => failed(sub_code),
            _ => ok(PAID),
        })
        .await;
        assert_eq!(
            app.close_payment(&order()).await,
            Ok(CloseOutcome::AlreadyPaid(paid_event())),
            "{sub_code}"
        );
        let methods: Vec<String> = server
            .requests()
            .iter()
            .map(|s| s.form()["method"].clone())
            .collect();
        assert_eq!(methods, ["alipay.trade.close", "alipay.trade.query"]);
    }

    let (app, _s) = app_answering(|method| match method {
        "alipay.trade.close" => failed("ACQ.TRADE_STATUS_ERROR"),
        _ => ok(r#","trade_status":"TRADE_CLOSED""#),
    })
    .await;
    assert_eq!(app.close_payment(&order()).await, Ok(CloseOutcome::Closed));
    let (app, _s) = app_answering(|method| match method {
        "alipay.trade.close" => failed("ACQ.TRADE_STATUS_ERROR"),
        _ => ok(r#","trade_status":"WAIT_BUYER_PAY""#),
    })
    .await;
    assert!(matches!(
        app.close_payment(&order()).await,
        Err(ProviderError::Unavailable(_))
    ));
}

const REFUNDED: &str = r#","trade_no":"2024010122001400000000000001","out_trade_no":"PB20240101001","fund_change":"Y","refund_fee":"0.50","gmt_refund_pay":"2024-01-02 09:30:00""#;

#[tokio::test]
async fn refund_with_fund_change_succeeds_at_gmt_refund_pay() {
    let (app, server) = app_answering(|_| ok(REFUNDED)).await;
    assert_eq!(
        app.refund(&refund_request(50, Some("破损 & 退货"))).await,
        Ok(RefundState {
            status: RefundStatus::Succeeded,
            provider_refund_no: None,
            succeeded_at: Some(utc("2024-01-02T01:30:00Z")),
            amount: None,
        })
    );
    let form = server.requests()[0].form();
    assert_eq!(form["method"], "alipay.trade.refund");
    assert!(!form.contains_key("notify_url"));
    let biz: serde_json::Value = serde_json::from_str(&form["biz_content"]).expect("json");
    assert_eq!(
        biz,
        serde_json::json!({
            "out_trade_no": ORDER,
            "refund_amount": "0.50",
            "out_request_no": "RF001",
            "refund_reason": "破损 & 退货",
        })
    );
}

#[tokio::test]
async fn a_replayed_refund_is_confirmed_by_a_refund_query() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let (app, server) = app_answering(move |method| {
        counter.fetch_add(1, Ordering::SeqCst);
        match method {
            "alipay.trade.refund" => ok(&REFUNDED.replace(r#""fund_change":"Y""#, r#""fund_change":"N""#)),
            _ => ok(r#","out_trade_no":"PB20240101001","out_request_no":"RF001","refund_amount":"0.50","refund_status":"REFUND_SUCCESS","gmt_refund_pay":"2024-01-02 09:30:00.456""#),
        }
    })
    .await;
    let state = app.refund(&refund_request(50, None)).await.expect("ok");
    assert_eq!(state.status, RefundStatus::Succeeded);
    assert_eq!(state.succeeded_at, Some(utc("2024-01-02T01:30:00.456Z")));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let query = server.requests()[1].form();
    assert_eq!(query["method"], "alipay.trade.fastpay.refund.query");
    let biz: serde_json::Value = serde_json::from_str(&query["biz_content"]).expect("json");
    assert_eq!(
        biz,
        serde_json::json!({"out_trade_no": ORDER, "out_request_no": "RF001"})
    );
}

#[tokio::test]
async fn refund_sub_codes_map_to_stable_codes() {
    for (sub_code, code) in [
        ("ACQ.TRADE_HAS_FINISHED", "refund_not_allowed"),
        ("ACQ.TRADE_NOT_ALLOW_REFUND", "refund_not_allowed"),
        ("ACQ.TRADE_STATUS_ERROR", "refund_not_allowed"),
        ("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "refund_amount_invalid"),
        ("ACQ.REASON_TRADE_REFUND_FEE_ERR", "refund_amount_invalid"),
        ("ACQ.TRADE_NOT_EXIST", "refund_not_allowed"),
        ("ACQ.REASON_TRADE_BEEN_FREEZEN", "refund_not_allowed"),
        ("ACQ.INVALID_PARAMETER", "provider_rejected"),
    ] {
        let (app, _s) = app_answering(move |_| failed(sub_code)).await;
        match app.refund(&refund_request(50, None)).await {
            Err(ProviderError::Rejected { code: got, message }) => {
                assert_eq!(got, code, "{sub_code}");
                assert!(message.contains(sub_code), "{message}");
            }
            other => panic!("{sub_code}: {other:?}"),
        }
    }
    // Outcomes that may have moved money are not refusals: the refund stays processing.
    for sub_code in [
        "ACQ.SYSTEM_ERROR",
        "ACQ.DISCORDANT_REPEAT_REQUEST",
        "ACQ.SOMETHING_NEW",
    ] {
        let (app, _s) = app_answering(move |_| failed(sub_code)).await;
        assert!(
            matches!(
                app.refund(&refund_request(50, None)).await,
                Err(ProviderError::Unavailable(_))
            ),
            "{sub_code}"
        );
    }
    let (app, server) = app_answering(|_| ok(REFUNDED)).await;
    assert!(matches!(
        app.refund(&refund_request(0, None)).await,
        Err(ProviderError::InvalidRequest { .. })
    ));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn refund_query_tells_received_from_not_received() {
    let succeeded = |at: Option<&str>| RefundState {
        status: RefundStatus::Succeeded,
        provider_refund_no: None,
        succeeded_at: at.map(utc),
        amount: Some(Fen::new(50)),
    };
    let processing = RefundState {
        status: RefundStatus::Processing,
        provider_refund_no: None,
        succeeded_at: None,
        amount: Some(Fen::new(50)),
    };
    for (inner, expected) in [
        (
            ok(
                r#","out_request_no":"RF001","refund_amount":"0.50","refund_status":"REFUND_SUCCESS","gmt_refund_pay":"2024-01-02 09:30:00""#,
            ),
            succeeded(Some("2024-01-02T01:30:00Z")),
        ),
        (
            ok(
                r#","out_trade_no":"PB20240101001","out_request_no":"RF001","refund_amount":"0.50""#,
            ),
            succeeded(None),
        ),
        (
            ok(
                r#","out_request_no":"RF001","refund_amount":"0.50","refund_status":"REFUND_PROCESSING""#,
            ),
            processing.clone(),
        ),
    ] {
        let (app, _s) = app_answering(move |_| inner.clone()).await;
        assert_eq!(app.query_refund(&order(), "RF001").await, Ok(expected));
    }
    // No business fields: Alipay never received it, so it may be sent again.
    for inner in [ok(r#","out_trade_no":"PB20240101001""#), ok("")] {
        let shown = inner.clone();
        let (app, _s) = app_answering(move |_| inner.clone()).await;
        assert!(
            matches!(
                app.query_refund(&order(), "RF001").await,
                Err(ProviderError::Rejected {
                    code: "refund_not_found",
                    ..
                })
            ),
            "{shown}"
        );
    }
    let (app, _s) = app_answering(|_| failed("ACQ.SYSTEM_ERROR")).await;
    assert!(matches!(
        app.query_refund(&order(), "RF001").await,
        Err(ProviderError::Unavailable(_))
    ));
    let (app, _s) =
        app_answering(|_| ok(r#","out_request_no":"RF002","refund_amount":"0.50""#)).await;
    assert!(matches!(
        app.query_refund(&order(), "RF001").await,
        Err(ProviderError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_timeout_is_a_timeout_for_every_call() {
    let server = TestServer::start(|_| Answer::Hang).await;
    let app = provider_with(&[("gateway_url", &server.url)], Duration::from_millis(300));
    assert_eq!(
        app.query_payment(&order()).await,
        Err(ProviderError::Timeout)
    );
    assert_eq!(
        app.close_payment(&order()).await,
        Err(ProviderError::Timeout)
    );
    assert_eq!(
        app.refund(&refund_request(50, None)).await,
        Err(ProviderError::Timeout)
    );
    assert_eq!(
        app.query_refund(&order(), "RF001").await,
        Err(ProviderError::Timeout)
    );
}
