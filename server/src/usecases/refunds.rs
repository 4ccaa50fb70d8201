//! The refund use cases: create (under the order's limit), send to the provider, and sync.

use paybridge_core::ids;
use paybridge_core::money::Fen;
use paybridge_core::provider::{ProviderError, RefundEvent, RefundRequest, RefundState};
use paybridge_core::refund::RefundStatus;
use paybridge_core::tenant::Tenant;
use sea_orm::DatabaseTransaction;

use super::activity;
use super::orders::{about, notify_url, order_provider, order_ref, publish_order_change};
use super::resources::{CreateRefundRequest, RefundView};
use super::{Failure, provider_failure};
use crate::db::entities::{order, refund};
use crate::state::AppState;
use crate::store::refunds::{self as refund_store, RefundApplied, RefundInsert, RefundUpdate};
use crate::store::{ApplyError, StoreError};

fn validate(req: &CreateRefundRequest) -> Result<Fen, Failure> {
    ids::check_out_refund_no(&req.out_refund_no)?;
    if let Some(r) = &req.reason
        && (r.len() > 256 || r.chars().any(char::is_control))
    {
        return Err(Failure::invalid(
            "reason",
            "must be at most 256 UTF-8 bytes without control characters",
        ));
    }
    Fen::positive(req.amount).map_err(|e| Failure::invalid("amount", e.to_string()))
}

/// Create a refund, or replay it. Returns whether it is new (201) or a replay (200).
#[tracing::instrument(level = "error", name = "create_refund", skip_all, fields(tenant = %tenant.id, out_trade_no = %order.out_trade_no, out_refund_no = %req.out_refund_no))]
pub async fn create_refund(
    state: &AppState,
    tenant: &Tenant,
    order: &order::Model,
    req: &CreateRefundRequest,
) -> Result<(bool, refund::Model), Failure> {
    let amount = validate(req)?;
    let provider = order_provider(tenant, order)?;
    let (tenant_id, out_trade_no, out_refund_no, reason) = (
        tenant.id.clone(),
        order.out_trade_no.clone(),
        req.out_refund_no.clone(),
        req.reason.clone(),
    );
    let inserted = state
        .store
        .write(move |txn| {
            Box::pin(async move {
                refund_store::insert_refund(
                    txn,
                    &tenant_id,
                    &out_trade_no,
                    &out_refund_no,
                    amount,
                    reason.as_deref(),
                )
                .await
            })
        })
        .await?;
    let (created, row) = match inserted {
        RefundInsert::Created(r) => (true, r),
        RefundInsert::Existing(r) => {
            if r.amount != amount.get() || r.reason != req.reason {
                return Err(Failure::conflict(
                    "out_refund_no_conflict",
                    "a refund with this out_refund_no exists with different content; use a new out_refund_no",
                )
                .field("out_refund_no"));
            }
            (false, r)
        }
        RefundInsert::ExceedsOrder { refundable } => {
            return Err(Failure::conflict(
                "refund_exceeds_order",
                format!(
                    "refunds would exceed the order amount; {refundable} fen is still refundable"
                ),
            )
            .field("amount"));
        }
        RefundInsert::OrderNotPaid(status) => {
            return Err(Failure::conflict(
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
        return Ok((false, row));
    }
    let request = RefundRequest {
        order: order_ref(order),
        out_refund_no: row.out_refund_no.clone(),
        amount: Fen::new(row.amount),
        reason: row.reason.clone(),
        notify_url: format!("{}/refund", notify_url(state, &tenant.id, &order.provider)),
    };
    let answer = activity::call(
        state,
        provider.as_ref(),
        "refund",
        Some(about(order)),
        provider.refund(&request),
    )
    .await;
    match answer {
        Ok(accepted) => {
            let update = update_from_state(&row, &accepted, "accepted", true);
            let row = apply(state, tenant, order, &row.out_refund_no, &update).await?;
            Ok((created, row))
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
                let id = row.id.clone();
                state
                    .store
                    .write(move |txn| {
                        Box::pin(async move { refund_store::delete_unsent_refund(txn, &id).await })
                    })
                    .await?;
            }
            Err(provider_failure(&order.provider, e))
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
                amount: None,
                payload: serde_json::json!({ "rejected": e.to_string() }),
            };
            apply(state, tenant, order, &row.out_refund_no, &update).await?;
            Err(provider_failure(&order.provider, e))
        }
        Err(e) => Err(provider_failure(&order.provider, e)),
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
        amount: s.amount.map(Fen::get),
        payload: serde_json::json!({
            "source": source,
            "status": s.status.as_str(),
            "provider_refund_no": s.provider_refund_no,
            "amount": s.amount.map(Fen::get),
        }),
    }
}

/// Write the merchant's events for a refund report's changes, in the transaction that made them.
async fn publish_refund_change(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    applied: &RefundApplied,
) -> Result<(), StoreError> {
    if let Some(to) = applied.to {
        let view = serde_json::to_string(&RefundView::from_model(&applied.refund))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        crate::store::events::write_outbox(
            txn,
            tenant_id,
            &applied.refund.order_id,
            &format!("refund.{}", to.as_str()),
            &view,
            applied.refund.updated_at,
        )
        .await?;
    }
    if let Some(change) = &applied.order_change {
        publish_order_change(txn, change).await?;
    }
    Ok(())
}

/// Apply a refund report and write the merchant's events for it, in `txn`.
async fn apply_in(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    provider: &str,
    out_trade_no: &str,
    out_refund_no: &str,
    update: &RefundUpdate,
) -> Result<refund::Model, ApplyError> {
    let applied = refund_store::apply_refund_update(
        txn,
        tenant_id,
        provider,
        out_trade_no,
        out_refund_no,
        update,
    )
    .await?;
    publish_refund_change(txn, tenant_id, &applied).await?;
    Ok(applied.refund)
}

async fn apply(
    state: &AppState,
    tenant: &Tenant,
    order: &order::Model,
    out_refund_no: &str,
    update: &RefundUpdate,
) -> Result<refund::Model, Failure> {
    let (tenant_id, provider, out_trade_no, out_refund_no, update) = (
        tenant.id.clone(),
        order.provider.clone(),
        order.out_trade_no.clone(),
        out_refund_no.to_owned(),
        update.clone(),
    );
    state
        .store
        .write(move |txn| {
            Box::pin(async move {
                apply_in(
                    txn,
                    &tenant_id,
                    &provider,
                    &out_trade_no,
                    &out_refund_no,
                    &update,
                )
                .await
            })
        })
        .await
        .map_err(Failure::from)
}

/// Apply a verified refund event from a notification, in `txn`: the refund must exist, with the
/// reported amount and provider refund number (storage checks both).
pub(crate) async fn apply_refund_event_in(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    kind: &str,
    event: &RefundEvent,
) -> Result<refund::Model, ApplyError> {
    let update = RefundUpdate {
        event_id: format!("refund:{}", event.event_id),
        status: event.status,
        provider_refund_no: event.provider_refund_no.clone(),
        succeeded_at: event.succeeded_at,
        sent: true,
        amount: Some(event.amount.get()),
        payload: serde_json::to_value(event).unwrap_or_default(),
    };
    apply_in(
        txn,
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
#[tracing::instrument(level = "error", name = "sync_refund", skip_all, fields(tenant = %tenant.id, out_trade_no = %order.out_trade_no, out_refund_no = %row.out_refund_no))]
pub async fn sync_refund(
    state: &AppState,
    tenant: &Tenant,
    order: &order::Model,
    row: &refund::Model,
) -> Result<refund::Model, Failure> {
    let provider = order_provider(tenant, order)?;
    let answer = activity::call(
        state,
        provider.as_ref(),
        "refund_query",
        Some(about(order)),
        provider.query_refund(&order_ref(order), &row.out_refund_no),
    )
    .await;
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
        Err(e) => Err(provider_failure(&order.provider, e)),
    }
}

/// A tenant's refund with its order, or `not_found`.
pub async fn find_refund(
    state: &AppState,
    tenant: &Tenant,
    out_trade_no: &str,
    out_refund_no: &str,
) -> Result<(order::Model, refund::Model), Failure> {
    let not_found = || Failure::not_found("refund");
    let order = state
        .store
        .find_order(&tenant.id, out_trade_no)
        .await?
        .ok_or_else(not_found)?;
    let refund = state
        .store
        .find_refund(&tenant.id, out_trade_no, out_refund_no)
        .await?
        .ok_or_else(not_found)?;
    Ok((order, refund))
}
