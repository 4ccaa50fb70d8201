//! The refund use cases: create (under the order's limit), send to the provider, and sync.

use actix_web::http::StatusCode;
use paybridge_core::ids;
use paybridge_core::money::Fen;
use paybridge_core::provider::{ProviderError, RefundEvent, RefundRequest, RefundState};
use paybridge_core::refund::RefundStatus;
use paybridge_core::tenant::Tenant;

use crate::db::entities::{order, refund};
use crate::error::{ApiError, provider_error};
use crate::refund_store::{RefundInsert, RefundUpdate};
use crate::service::{notify_url, order_provider, order_ref, outcome_label};
use crate::state::AppState;
use crate::store::ApplyError;
use crate::views::{CreateRefundRequest, RefundView};

fn validate(req: &CreateRefundRequest) -> Result<Fen, ApiError> {
    ids::check_out_refund_no(&req.out_refund_no)?;
    if let Some(r) = &req.reason
        && (r.len() > 256 || r.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "reason",
            "must be at most 256 UTF-8 bytes without control characters",
        ));
    }
    Fen::positive(req.amount).map_err(|e| ApiError::invalid("amount", e.to_string()))
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// Create a refund, or replay it. Returns whether it is new (201) or a replay (200).
pub async fn create_refund(
    state: &AppState,
    tenant: &Tenant,
    order: &order::Model,
    req: &CreateRefundRequest,
) -> Result<(bool, RefundView), ApiError> {
    let amount = validate(req)?;
    let provider = order_provider(tenant, order)?;
    let (created, row) = match state
        .store
        .insert_refund(
            &tenant.id,
            &order.out_trade_no,
            &req.out_refund_no,
            amount,
            req.reason.as_deref(),
        )
        .await?
    {
        RefundInsert::Created(r) => (true, r),
        RefundInsert::Existing(r) => {
            if r.amount != amount.get() || r.reason != req.reason {
                return Err(conflict(
                    "out_refund_no_conflict",
                    "a refund with this out_refund_no exists with different content; use a new out_refund_no",
                )
                .field("out_refund_no"));
            }
            (false, r)
        }
        RefundInsert::ExceedsOrder { refundable } => {
            return Err(conflict(
                "refund_exceeds_order",
                format!(
                    "refunds would exceed the order amount; {refundable} fen is still refundable"
                ),
            )
            .field("amount"));
        }
        RefundInsert::OrderNotPaid(status) => {
            return Err(conflict(
                "order_not_paid",
                format!("the order is {status}; only paid orders can be refunded"),
            ));
        }
    };
    // A replay of a refund still `processing` that the provider never acknowledged sends it
    // again (same number: idempotent at the provider); anything else, a `failed` refund
    // included, is answered from the database.
    let unsent = row.sent_at.is_none() && row.status == RefundStatus::Processing.as_str();
    if !created && !unsent {
        return Ok((false, RefundView::from_model(&row)));
    }
    let request = RefundRequest {
        order: order_ref(order),
        out_refund_no: row.out_refund_no.clone(),
        amount: Fen::new(row.amount),
        reason: row.reason.clone(),
        notify_url: format!("{}/refund", notify_url(state, &tenant.id, &order.provider)),
    };
    let answer = provider.refund(&request).await;
    state.metrics.inc(
        "paybridge_provider_calls_total",
        &[
            ("provider", provider.kind()),
            ("call", "refund"),
            ("outcome", outcome_label(&answer)),
        ],
    );
    match answer {
        Ok(accepted) => {
            let update = update_from_state(&row, &accepted, "accepted", true);
            let row = apply(state, tenant, order, &row.out_refund_no, &update).await?;
            Ok((created, RefundView::from_model(&row)))
        }
        Err(
            e @ (ProviderError::InvalidRequest { .. }
            | ProviderError::Misconfigured { .. }
            | ProviderError::NotSupported { .. }),
        ) => {
            // Refused before any network call. A refund this request created reached no
            // provider, so it is forgotten; an older one may have reached it before (e.g. a send
            // that timed out) and stays `processing` for the reconciler.
            if created {
                state.store.delete_unsent_refund(&row.id).await?;
            }
            Err(provider_error(&order.provider, e))
        }
        Err(e @ ProviderError::Rejected { .. }) if created => {
            // A definite refusal of the first send: the refund failed and frees its amount. (A
            // resend refused after an earlier send timed out proves nothing about that earlier
            // send; the refund then stays `processing` and the reconciler queries it.)
            let update = RefundUpdate {
                event_id: format!("rejected:{}", row.id),
                status: RefundStatus::Failed,
                provider_refund_no: None,
                succeeded_at: None,
                sent: false,
                payload: serde_json::json!({ "rejected": e.to_string() }),
            };
            apply(state, tenant, order, &row.out_refund_no, &update).await?;
            Err(provider_error(&order.provider, e))
        }
        Err(e) => Err(provider_error(&order.provider, e)),
    }
}

fn update_from_state(
    row: &refund::Model,
    s: &RefundState,
    source: &str,
    sent: bool,
) -> RefundUpdate {
    RefundUpdate {
        event_id: format!("{source}:{}:{}", row.id, s.status.as_str()),
        status: s.status,
        provider_refund_no: s.provider_refund_no.clone(),
        succeeded_at: s.succeeded_at,
        sent,
        payload: serde_json::json!({
            "source": source,
            "status": s.status.as_str(),
            "provider_refund_no": s.provider_refund_no,
        }),
    }
}

async fn apply(
    state: &AppState,
    tenant: &Tenant,
    order: &order::Model,
    out_refund_no: &str,
    update: &RefundUpdate,
) -> Result<refund::Model, ApiError> {
    state
        .store
        .apply_refund_update(
            &tenant.id,
            &order.provider,
            &order.out_trade_no,
            out_refund_no,
            update,
        )
        .await
        .map_err(ApiError::from)
}

/// Apply a verified refund event from a notification.
pub async fn apply_refund_event(
    state: &AppState,
    tenant_id: &str,
    kind: &str,
    event: &RefundEvent,
) -> Result<refund::Model, ApplyError> {
    let stored = state
        .store
        .find_refund(tenant_id, &event.out_trade_no, &event.out_refund_no)
        .await?
        .ok_or(ApplyError::UnknownOrder)?;
    if stored.amount != event.amount.get() {
        return Err(ApplyError::AmountMismatch {
            expected: stored.amount,
            got: event.amount.get(),
        });
    }
    let update = RefundUpdate {
        event_id: format!("refund:{}", event.event_id),
        status: event.status,
        provider_refund_no: event.provider_refund_no.clone(),
        succeeded_at: event.succeeded_at,
        sent: true,
        payload: serde_json::to_value(event).unwrap_or_default(),
    };
    state
        .store
        .apply_refund_update(
            tenant_id,
            kind,
            &event.out_trade_no,
            &event.out_refund_no,
            &update,
        )
        .await
}

/// Ask the provider for a refund's state and apply it. A refund the provider never received
/// (its send failed or timed out and the provider does not know it) is sent again.
pub async fn sync_refund(
    state: &AppState,
    tenant: &Tenant,
    order: &order::Model,
    row: &refund::Model,
) -> Result<refund::Model, ApiError> {
    let provider = order_provider(tenant, order)?;
    let answer = provider
        .query_refund(&order_ref(order), &row.out_refund_no)
        .await;
    state.metrics.inc(
        "paybridge_provider_calls_total",
        &[
            ("provider", provider.kind()),
            ("call", "refund_query"),
            ("outcome", outcome_label(&answer)),
        ],
    );
    match answer {
        Ok(s) => {
            apply(
                state,
                tenant,
                order,
                &row.out_refund_no,
                &update_from_state(row, &s, "query", true),
            )
            .await
        }
        Err(ProviderError::Rejected {
            code: "refund_not_found",
            ..
        }) if row.sent_at.is_none() => {
            let req = CreateRefundRequest {
                out_refund_no: row.out_refund_no.clone(),
                amount: row.amount,
                reason: row.reason.clone(),
            };
            create_refund(state, tenant, order, &req).await?;
            Ok(state
                .store
                .find_refund(&tenant.id, &order.out_trade_no, &row.out_refund_no)
                .await?
                .unwrap_or_else(|| row.clone()))
        }
        Err(e) => Err(provider_error(&order.provider, e)),
    }
}
