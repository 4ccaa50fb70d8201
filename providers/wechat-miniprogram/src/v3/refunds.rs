//! v3 refunds: `POST /v3/refund/domestic/refunds` and its query. No client certificate: v3
//! authenticates by the request signature.

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::provider::{OrderRef, ProviderError, RefundRequest, RefundState};
use paybridge_core::refund::RefundStatus;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::{V3Client, V3Reply};

#[derive(Deserialize)]
struct Refund {
    out_refund_no: String,
    out_trade_no: Option<String>,
    refund_id: String,
    status: String,
    success_time: Option<String>,
    amount: RefundAmount,
}

#[derive(Deserialize)]
struct RefundAmount {
    refund: i64,
}

fn error(status: u16, code: &str, message: &str) -> ProviderError {
    let text = format!("{code}: {message}");
    match (status, code) {
        // Retry with the same out_refund_no (NOT_ENOUGH: once the merchant's balance is topped
        // up): the refund stays `processing` and the reconciler sends it again.
        (500.., _) | (_, "SYSTEM_ERROR" | "NOT_ENOUGH") => ProviderError::Unavailable(text),
        (401, _) | (_, "SIGN_ERROR") => ProviderError::Misconfigured {
            field: "client_key".to_owned(),
            message: format!("WeChat Pay refused the request signature ({text})"),
        },
        (429, _) | (_, "FREQUENCY_LIMITED") => ProviderError::RateLimited(text),
        (_, "USER_ACCOUNT_ABNORMAL") => ProviderError::Rejected {
            code: "refund_not_allowed",
            message: text,
        },
        (_, "RESOURCE_NOT_EXISTS") => ProviderError::Rejected {
            code: "refund_not_found",
            message: text,
        },
        _ => ProviderError::Rejected {
            code: "provider_rejected",
            message: text,
        },
    }
}

/// A refund answer (create or query) about `out_refund_no` of `out_trade_no`.
fn state_of(
    answer: &[u8],
    out_trade_no: &str,
    out_refund_no: &str,
) -> Result<RefundState, ProviderError> {
    let r: Refund = serde_json::from_slice(answer)
        .map_err(|e| ProviderError::Unavailable(format!("unreadable refund: {e}")))?;
    if r.out_refund_no != out_refund_no
        || r.out_trade_no.as_deref().is_some_and(|o| o != out_trade_no)
    {
        return Err(ProviderError::Unavailable(
            "the refund answer is about another refund".to_owned(),
        ));
    }
    let status = match r.status.as_str() {
        "SUCCESS" => RefundStatus::Succeeded,
        "CLOSED" => RefundStatus::Failed,
        "ABNORMAL" => RefundStatus::Abnormal,
        "PROCESSING" => RefundStatus::Processing,
        other => {
            // Unknown is not final: keep it processing and ask again later.
            tracing::warn!(%out_refund_no, status = other, "unknown v3 refund status");
            RefundStatus::Processing
        }
    };
    let succeeded_at = match status {
        RefundStatus::Succeeded => r
            .success_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    };
    Ok(RefundState {
        status,
        provider_refund_no: Some(r.refund_id),
        succeeded_at,
        amount: Some(Fen::new(r.amount.refund)),
    })
}

/// Send the refund of `req.amount` against the order's total; a service provider names the
/// sub-merchant (`sub_mchid`).
pub async fn refund(
    client: &V3Client,
    sub_mchid: Option<&str>,
    req: &RefundRequest,
) -> Result<RefundState, ProviderError> {
    let mut body = json!({
        "out_trade_no": req.order.out_trade_no,
        "out_refund_no": req.out_refund_no,
        "notify_url": req.notify_url,
        "amount": {
            "refund": req.amount.get(),
            "total": req.order.amount.get(),
            "currency": "CNY",
        },
    });
    if let Some(reason) = req.reason.as_deref().filter(|r| !r.is_empty()) {
        body["reason"] = json!(reason);
    }
    if let Some(sub_mchid) = sub_mchid {
        body["sub_mchid"] = json!(sub_mchid);
    }
    match client
        .call(
            Method::POST,
            "/v3/refund/domestic/refunds",
            Some(&body.to_string()),
        )
        .await?
    {
        V3Reply::Success { body, .. } => {
            state_of(&body, &req.order.out_trade_no, &req.out_refund_no)
        }
        V3Reply::Error {
            status,
            code,
            message,
        } => Err(error(status, &code, &message)),
    }
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
pub async fn query_refund(
    client: &V3Client,
    sub_mchid: Option<&str>,
    order: &OrderRef,
    out_refund_no: &str,
) -> Result<RefundState, ProviderError> {
    let mut path = format!(
        "/v3/refund/domestic/refunds/{}",
        url::form_urlencoded::byte_serialize(out_refund_no.as_bytes()).collect::<String>()
    );
    if let Some(sub_mchid) = sub_mchid {
        path.push_str("?sub_mchid=");
        path.push_str(sub_mchid);
    }
    match client.call(Method::GET, &path, None).await? {
        V3Reply::Success { body, .. } => state_of(&body, &order.out_trade_no, out_refund_no),
        V3Reply::Error {
            status,
            code,
            message,
        } => Err(error(status, &code, &message)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use paybridge_core::money::Fen;
    use serde_json::{Value, json};

    use super::*;
    use crate::test_server::{Answer, TestServer};
    use crate::v3::test_support::*;

    fn order() -> OrderRef {
        OrderRef {
            out_trade_no: "PB1".to_owned(),
            provider_trade_no: Some("4200000000202612060000000001".to_owned()),
            amount: Fen::new(150),
            provider_data: json!({"api_version": "v3"}),
        }
    }

    fn refund_answer(no: &str, status: &str) -> String {
        json!({
            "refund_id": "50000000382019052709732678859", "out_refund_no": no,
            "transaction_id": "4200000000202612060000000001", "out_trade_no": "PB1",
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱", "status": status,
            "success_time": "2026-12-06T16:10:00+08:00", "create_time": "2026-12-06T16:09:58+08:00",
            "amount": {"total": 150, "refund": 50, "payer_total": 150, "payer_refund": 50, "currency": "CNY"},
        })
        .to_string()
    }

    #[tokio::test]
    async fn a_refund_sends_its_amount_against_the_order_total_and_reads_the_state() {
        let server = TestServer::start(|_| {
            answer(200, &refund_answer("RF1", "PROCESSING"), Signing::PublicKey)
        })
        .await;
        let c = client(&server.base, true, false, Duration::from_secs(5));
        let req = RefundRequest {
            order: order(),
            out_refund_no: "RF1".to_owned(),
            amount: Fen::new(50),
            reason: Some("退货".to_owned()),
            notify_url: "https://gw.example/notify/demo/wechat_miniprogram/refund".to_owned(),
        };
        let state = refund(&c, None, &req).await.unwrap();
        assert_eq!(state.status, RefundStatus::Processing);
        assert_eq!(state.amount, Some(Fen::new(50)));
        assert_eq!(
            state.provider_refund_no.as_deref(),
            Some("50000000382019052709732678859")
        );
        let sent: Value = serde_json::from_str(&server.requests()[0].body).unwrap();
        assert_eq!(
            sent,
            json!({
                "out_trade_no": "PB1", "out_refund_no": "RF1", "reason": "退货",
                "notify_url": "https://gw.example/notify/demo/wechat_miniprogram/refund",
                "amount": {"refund": 50, "total": 150, "currency": "CNY"},
            })
        );
    }

    #[tokio::test]
    async fn a_query_maps_statuses_and_refuses_an_answer_about_another_refund() {
        for (status, expected) in [
            ("SUCCESS", RefundStatus::Succeeded),
            ("CLOSED", RefundStatus::Failed),
            ("ABNORMAL", RefundStatus::Abnormal),
            ("PROCESSING", RefundStatus::Processing),
        ] {
            let server = TestServer::start(move |_| {
                answer(200, &refund_answer("RF1", status), Signing::PublicKey)
            })
            .await;
            let c = client(&server.base, true, false, Duration::from_secs(5));
            let state = query_refund(&c, None, &order(), "RF1").await.unwrap();
            assert_eq!(state.status, expected, "{status}");
            assert_eq!(state.succeeded_at.is_some(), status == "SUCCESS");
            assert_eq!(
                server.requests()[0].target,
                "/v3/refund/domestic/refunds/RF1"
            );
        }
        let server = TestServer::start(|_| {
            answer(200, &refund_answer("RF2", "SUCCESS"), Signing::PublicKey)
        })
        .await;
        let c = client(&server.base, true, false, Duration::from_secs(5));
        assert!(matches!(
            query_refund(&c, None, &order(), "RF1").await,
            Err(ProviderError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn refund_errors_say_whether_to_retry() {
        for (status, code, retry) in [
            (403, "NOT_ENOUGH", true),
            (500, "SYSTEM_ERROR", true),
            (404, "RESOURCE_NOT_EXISTS", false),
            (403, "USER_ACCOUNT_ABNORMAL", false),
            (400, "INVALID_REQUEST", false),
        ] {
            let server = TestServer::start(move |_| {
                Answer::Respond(status, format!(r#"{{"code":"{code}","message":"x"}}"#))
            })
            .await;
            let c = client(&server.base, true, false, Duration::from_secs(5));
            let e = query_refund(&c, None, &order(), "RF1").await.unwrap_err();
            assert_eq!(
                matches!(e, ProviderError::Unavailable(_)),
                retry,
                "{code}: {e:?}"
            );
        }
    }
}
