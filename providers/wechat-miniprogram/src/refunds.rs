//! Refunds (PROTOCOLS.md §B.7, §B.8): `/secapi/pay/refund` over mutual TLS with the merchant API
//! certificate, `/pay/refundquery`, and how their answers map onto core's refund types. An
//! accepted refund is `processing`; its outcome comes from the query or the refund notification.

use std::collections::BTreeMap;

use paybridge_core::provider::{OrderRef, ProviderError, RefundRequest, RefundState};
use paybridge_core::refund::RefundStatus;

use crate::client::{ApiClient, Reply};
use crate::orders::{order_sign_type, parse_fen};
use paybridge_core::beijing;

/// `refund_desc` is String(80): longer reasons are cut at a character boundary.
pub const MAX_REFUND_DESC_CHARS: usize = 80;

/// The refund API's path.
pub const REFUND_PATH: &str = "/secapi/pay/refund";
/// The refund query API's path.
pub const REFUND_QUERY_PATH: &str = "/pay/refundquery";

fn param(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// The business params of `/secapi/pay/refund` (everything but appid, mch_id, nonce_str,
/// sign_type, sign). The order is named by `out_trade_no`.
pub fn refund_params(req: &RefundRequest) -> Result<BTreeMap<String, String>, ProviderError> {
    let invalid = |field: &str, message: String| ProviderError::InvalidRequest {
        field: Some(field.to_owned()),
        message,
    };
    if req.amount.get() <= 0 {
        return Err(invalid(
            "amount",
            format!(
                "refund_fee must be a positive number of fen, got {}",
                req.amount.get()
            ),
        ));
    }
    if req.amount.get() > req.order.amount.get() {
        return Err(invalid(
            "amount",
            format!(
                "refund of {} fen exceeds the order amount of {} fen",
                req.amount.get(),
                req.order.amount.get()
            ),
        ));
    }
    if req.out_refund_no.is_empty() {
        return Err(invalid("out_refund_no", "must not be empty".to_owned()));
    }
    let mut params: BTreeMap<String, String> = [
        param("out_trade_no", req.order.out_trade_no.clone()),
        param("out_refund_no", req.out_refund_no.clone()),
        param("total_fee", req.order.amount.get().to_string()),
        param("refund_fee", req.amount.get().to_string()),
        param("refund_fee_type", "CNY"),
    ]
    .into_iter()
    .collect();
    if let Some(reason) = req.reason.as_deref().filter(|r| !r.is_empty()) {
        params.insert(
            "refund_desc".to_owned(),
            reason.chars().take(MAX_REFUND_DESC_CHARS).collect(),
        );
    }
    if !req.notify_url.is_empty() {
        params.insert("notify_url".to_owned(), req.notify_url.clone());
    }
    Ok(params)
}

/// The refund API's `err_code` as a provider error (PROTOCOLS.md §B.12).
pub fn refund_error(err_code: &str, err_code_des: &str) -> ProviderError {
    let message = format!("{err_code}: {err_code_des}");
    match err_code {
        // Retry with the same out_refund_no (NOTENOUGH: once the merchant's balance is topped
        // up). The refund stays `processing`, and the reconciler sends it again.
        "SYSTEMERROR" | "BIZERR_NEED_RETRY" | "NOTENOUGH" => ProviderError::Unavailable(message),
        "TRADE_OVERDUE" | "USER_ACCOUNT_ABNORMAL" => ProviderError::Rejected {
            code: "refund_not_allowed",
            message,
        },
        "FREQUENCY_LIMITED" | "INVALID_REQ_TOO_MUCH" => ProviderError::RateLimited(message),
        _ => ProviderError::Rejected {
            code: "provider_rejected",
            message,
        },
    }
}

/// Send the refund. Without a client certificate this fails before any network call.
pub async fn refund(client: &ApiClient, req: &RefundRequest) -> Result<RefundState, ProviderError> {
    client.config().client_identity()?;
    let params = refund_params(req)?;
    let sign_type = order_sign_type(Some(&req.order.provider_data), client.config().sign_type);
    tracing::info!(
        out_trade_no = %req.order.out_trade_no,
        out_refund_no = %req.out_refund_no,
        refund_fee = req.amount.get(),
        "refund"
    );
    let fields = match client.call(REFUND_PATH, params, sign_type).await? {
        Reply::Success(fields) => fields,
        Reply::BusinessError {
            err_code,
            err_code_des,
        } => return Err(refund_error(&err_code, &err_code_des)),
    };
    accepted_refund(&fields, req)
}

/// A `result_code=SUCCESS` refund answer: accepted, with the provider's `refund_id`. It must be
/// about this refund and this amount.
pub fn accepted_refund(
    fields: &BTreeMap<String, String>,
    req: &RefundRequest,
) -> Result<RefundState, ProviderError> {
    let get = |k: &str| fields.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if let Some(no) = get("out_refund_no")
        && no != req.out_refund_no
    {
        return Err(ProviderError::Unavailable(
            "refund answered about another out_refund_no".to_owned(),
        ));
    }
    if let Some(no) = get("out_trade_no")
        && no != req.order.out_trade_no
    {
        return Err(ProviderError::Unavailable(
            "refund answered about another out_trade_no".to_owned(),
        ));
    }
    if let Some(fee) = get("refund_fee")
        && parse_fen(fee) != Some(req.amount)
    {
        return Err(ProviderError::Unavailable(format!(
            "refund accepted with refund_fee {fee}, but {} was requested",
            req.amount.get()
        )));
    }
    let refund_id = get("refund_id").ok_or_else(|| {
        ProviderError::Unavailable("refund succeeded without a refund_id".to_owned())
    })?;
    Ok(RefundState {
        status: RefundStatus::Processing,
        provider_refund_no: Some(refund_id.to_owned()),
        succeeded_at: None,
        amount: get("refund_fee").and_then(parse_fen),
    })
}

/// `refund_status` / `refund_status_$n` on the wire → core's status.
pub fn refund_status(text: &str) -> Option<RefundStatus> {
    match text {
        "SUCCESS" => Some(RefundStatus::Succeeded),
        "PROCESSING" => Some(RefundStatus::Processing),
        "REFUNDCLOSE" => Some(RefundStatus::Failed),
        "CHANGE" => Some(RefundStatus::Abnormal),
        _ => None,
    }
}

/// The refund query API's `err_code` as a provider error.
pub fn refund_query_error(err_code: &str, err_code_des: &str) -> ProviderError {
    let message = format!("{err_code}: {err_code_des}");
    match err_code {
        "REFUNDNOTEXIST" => ProviderError::Rejected {
            code: "refund_not_found",
            message,
        },
        "SYSTEMERROR" => ProviderError::Unavailable(message),
        _ => ProviderError::Rejected {
            code: "provider_rejected",
            message,
        },
    }
}

/// Find `out_refund_no` among the `_$n` refunds of a refundquery answer and read its state.
pub fn refund_in_query(
    fields: &BTreeMap<String, String>,
    out_trade_no: &str,
    out_refund_no: &str,
) -> Result<RefundState, ProviderError> {
    if fields
        .get("out_trade_no")
        .is_some_and(|o| !o.is_empty() && o != out_trade_no)
    {
        return Err(ProviderError::Unavailable(
            "refundquery answered about another out_trade_no".to_owned(),
        ));
    }
    let index = fields.iter().find_map(|(name, value)| {
        let n = name.strip_prefix("out_refund_no_")?;
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && value == out_refund_no)
            .then(|| n.to_owned())
    });
    let Some(n) = index else {
        return Err(ProviderError::Unavailable(format!(
            "refundquery answer does not list out_refund_no {out_refund_no}"
        )));
    };
    let get = |name: &str| {
        fields
            .get(&format!("{name}_{n}"))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let status_text = get("refund_status").unwrap_or_default();
    let status = refund_status(status_text).unwrap_or_else(|| {
        // An unknown status is not a failure (PROTOCOLS §F.8): keep it processing, ask again later.
        tracing::warn!(
            out_refund_no,
            refund_status = status_text,
            "unknown refund_status"
        );
        RefundStatus::Processing
    });
    let succeeded_at = match status {
        RefundStatus::Succeeded => {
            let time = get("refund_success_time").and_then(beijing::parse_dashed);
            if time.is_none() {
                tracing::warn!(
                    out_refund_no,
                    "refund SUCCESS without a readable refund_success_time"
                );
            }
            time
        }
        _ => None,
    };
    Ok(RefundState {
        status,
        provider_refund_no: get("refund_id").map(str::to_owned),
        succeeded_at,
        amount: get("refund_fee").and_then(parse_fen),
    })
}

/// refundquery by `out_refund_no`.
pub async fn query_refund(
    client: &ApiClient,
    order: &OrderRef,
    out_refund_no: &str,
) -> Result<RefundState, ProviderError> {
    let sign_type = order_sign_type(Some(&order.provider_data), client.config().sign_type);
    let params: BTreeMap<String, String> = [param("out_refund_no", out_refund_no)]
        .into_iter()
        .collect();
    match client.call(REFUND_QUERY_PATH, params, sign_type).await? {
        Reply::Success(fields) => refund_in_query(&fields, &order.out_trade_no, out_refund_no),
        Reply::BusinessError {
            err_code,
            err_code_des,
        } => Err(refund_query_error(&err_code, &err_code_des)),
    }
}
