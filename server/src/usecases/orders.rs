//! The order use cases: create, sync with the provider, close, and applying verified provider
//! events. Handlers and the reconciler call these.

use std::sync::Arc;

use chrono::Duration as ChronoDuration;
use paybridge_core::ids;
use paybridge_core::money::{Currency, Fen};
use paybridge_core::order::{OrderEvent, OrderStatus};
use paybridge_core::provider::{
    CloseOutcome, CreatePayment, OrderRef, PaymentEvent, PaymentProvider, PaymentState,
    ProviderError,
};
use paybridge_core::tenant::Tenant;
use sea_orm::DatabaseTransaction;

use super::activity::{self, About};
use super::resources::{CreateOrderRequest, OrderView};
use super::{Failure, FailureKind, provider_failure};
use crate::db::entities::order;
use crate::state::AppState;
use crate::store::orders::{self as order_store, ClientPayment};
use crate::store::{
    Applied, ApplyError, EventToApply, Inserted, NewOrder, OrderChange, StoreError,
};

const DEFAULT_EXPIRES_IN: i64 = 7200;

/// The notify URL a provider is told for a tenant's payments.
pub fn notify_url(state: &AppState, tenant_id: &str, kind: &str) -> String {
    format!(
        "{}/notify/{tenant_id}/{kind}",
        state.config.server.public_base_url.trim_end_matches('/')
    )
}

/// What the provider needs to find an order.
pub fn order_ref(o: &order::Model) -> OrderRef {
    OrderRef {
        out_trade_no: o.out_trade_no.clone(),
        provider_trade_no: o.provider_trade_no.clone(),
        amount: Fen::new(o.amount),
        provider_data: serde_json::from_str(&o.provider_data).unwrap_or(serde_json::Value::Null),
    }
}

/// The tenant's provider of this kind if it is enabled, else `provider_not_enabled`.
pub fn enabled_provider(tenant: &Tenant, kind: &str) -> Result<Arc<dyn PaymentProvider>, Failure> {
    tenant.enabled_provider(kind).cloned().ok_or_else(|| {
        Failure::new(
            FailureKind::Unprocessable,
            "provider_not_enabled",
            format!("provider {kind:?} is not enabled for this tenant"),
        )
        .field("provider")
    })
}

/// The provider an existing order was made with (enabled or not: its money may already move).
pub fn order_provider(
    tenant: &Tenant,
    o: &order::Model,
) -> Result<Arc<dyn PaymentProvider>, Failure> {
    tenant.any_provider(&o.provider).cloned().ok_or_else(|| {
        Failure::new(
            FailureKind::Unprocessable,
            "provider_not_enabled",
            format!(
                "provider {:?} is no longer configured for this tenant",
                o.provider
            ),
        )
    })
}

fn validate(tenant: &Tenant, req: &CreateOrderRequest) -> Result<NewOrder, Failure> {
    ids::check_out_trade_no(&req.out_trade_no)?;
    ids::check_description(&req.description)?;
    if let Some(a) = &req.attach {
        ids::check_attach(a)?;
    }
    let amount =
        Fen::positive(req.amount).map_err(|e| Failure::invalid("amount", e.to_string()))?;
    let currency = match req.currency.as_deref() {
        None => Currency::Cny,
        Some(c) => Currency::parse(c).ok_or_else(|| {
            Failure::invalid("currency", format!("unsupported currency {c:?}; only CNY"))
        })?,
    };
    let expires_in = req.expires_in_seconds.unwrap_or(DEFAULT_EXPIRES_IN);
    ids::check_expires_in(expires_in)?;
    if let Some(ip) = &req.client_ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(Failure::invalid(
            "client_ip",
            "must be an IPv4 or IPv6 address",
        ));
    }
    if let Some(p) = &req.payer
        && (p.openid.is_empty() || p.openid.len() > 128)
    {
        return Err(Failure::invalid("payer.openid", "must be 1-128 characters"));
    }
    Ok(NewOrder {
        tenant_id: tenant.id.clone(),
        provider: req.provider.clone(),
        out_trade_no: req.out_trade_no.clone(),
        amount,
        currency: currency.code().to_owned(),
        description: req.description.clone(),
        payer_openid: req.payer.as_ref().map(|p| p.openid.clone()),
        client_ip: req.client_ip.clone(),
        attach: req.attach.clone(),
        expires_at: crate::store::now() + ChronoDuration::seconds(expires_in),
    })
}

fn conflicting_order() -> Failure {
    Failure::conflict(
        "out_trade_no_conflict",
        "an order with this out_trade_no exists with different content; use a new out_trade_no",
    )
    .field("out_trade_no")
}

/// Insert an order (with what the provider issued, if anything) in one write.
async fn insert(
    state: &AppState,
    new: &NewOrder,
    issued: Option<ClientPayment>,
    created_at: chrono::DateTime<chrono::Utc>,
) -> Result<Inserted, Failure> {
    let new = new.clone();
    state
        .store
        .write(move |txn| {
            Box::pin(async move {
                order_store::insert_order(txn, &new, issued.as_ref(), created_at).await
            })
        })
        .await
        .map_err(Failure::from)
}

/// Create an order, or replay it. Returns whether something new was made (201) or not (200).
///
/// The provider is asked first and the order is written once, with its client params: a create
/// costs one commit. A create the provider could not serve (down, timed out) still stores the
/// order, `pending` without client params, and repeating the request asks the provider again.
#[tracing::instrument(level = "error", name = "create_order", skip_all, fields(tenant = %tenant.id, out_trade_no = %req.out_trade_no, provider = %req.provider))]
pub async fn create_order(
    state: &AppState,
    tenant: &Tenant,
    req: &CreateOrderRequest,
) -> Result<(bool, order::Model), Failure> {
    // An order is created when its request came, before the provider is asked.
    let received = crate::store::now();
    let provider = enabled_provider(tenant, &req.provider)?;
    let new = validate(tenant, req)?;
    let existing =
        order_store::find_order(state.store.reader(), &new.tenant_id, &new.out_trade_no).await?;
    if let Some(row) = &existing {
        if !new.same_as(row) {
            return Err(conflicting_order());
        }
        // A replay of a pending order whose create failed earlier retries the provider; anything
        // else is answered from the database.
        if row.client_payment.is_some() || order_store::status_of(row)? != OrderStatus::Pending {
            return Ok((false, row.clone()));
        }
    }
    let call = CreatePayment {
        out_trade_no: new.out_trade_no.clone(),
        amount: new.amount,
        description: new.description.clone(),
        payer_openid: new.payer_openid.clone(),
        client_ip: new.client_ip.clone(),
        expires_at: existing.as_ref().map_or(new.expires_at, |o| o.expires_at),
        attach: new.attach.clone(),
        notify_url: notify_url(state, &tenant.id, &new.provider),
        previous_provider_data: existing
            .as_ref()
            .and_then(|o| serde_json::from_str(&o.provider_data).ok()),
    };
    let about = About {
        tenant_id: &tenant.id,
        out_trade_no: &new.out_trade_no,
    };
    let outcome = activity::call_if(
        state,
        provider.as_ref(),
        "create",
        Some(about),
        provider.create_payment(&call),
        |created| created.remote,
    )
    .await;
    let created_payment = match outcome {
        Ok(p) => p,
        // Refused before any network call: nothing exists at the provider, so nothing is
        // stored and the merchant can send a corrected request.
        Err(e @ (ProviderError::InvalidRequest { .. } | ProviderError::Misconfigured { .. })) => {
            return Err(provider_failure(&new.provider, e));
        }
        Err(e) => {
            let row = match existing {
                Some(row) => row,
                None => match insert(state, &new, None, received).await? {
                    Inserted::Created(row) => row,
                    Inserted::Existing(row) if new.same_as(&row) => row,
                    Inserted::Existing(_) => return Err(conflicting_order()),
                },
            };
            match e {
                ProviderError::AlreadyPaid => {
                    sync_order(state, tenant, &row).await?;
                }
                ProviderError::AlreadyClosed => {
                    apply_close(state, tenant, &row, "provider-closed").await?;
                }
                _ => {}
            }
            return Err(provider_failure(&row.provider, e));
        }
    };
    let issued = ClientPayment {
        client_payment: created_payment.client_payment,
        provider_data: created_payment.provider_data,
    };
    let (created, row) = match existing {
        Some(row) => {
            let row = state
                .store
                .write(move |txn| {
                    Box::pin(async move {
                        order_store::set_client_payment(txn, &row, &issued, crate::store::now())
                            .await
                    })
                })
                .await?;
            (false, row)
        }
        None => match insert(state, &new, Some(issued), received).await? {
            Inserted::Created(row) => (true, row),
            // Another request made it meanwhile: the same request is a replay.
            Inserted::Existing(row) if new.same_as(&row) => (false, row),
            Inserted::Existing(_) => return Err(conflicting_order()),
        },
    };
    if created {
        state.metrics.order_created(provider.kind());
    }
    Ok((created, row))
}

/// The order a provider call is about, for its timeline.
pub fn about(o: &order::Model) -> About<'_> {
    About {
        tenant_id: &o.tenant_id,
        out_trade_no: &o.out_trade_no,
    }
}

/// Write the merchant's events for an order's change, in the transaction that made it.
pub(crate) async fn publish_order_change(
    txn: &DatabaseTransaction,
    change: &OrderChange,
) -> Result<(), StoreError> {
    if !change.status_changed() && change.flag.is_none() {
        return Ok(());
    }
    // The fee as the transaction sees it (a statement run may have recorded one since the order
    // was read). A pending order has none: a run records fees only for orders it found paid or
    // later (matched, or healed once paid), and no transition leads back to pending. So a
    // payment's change, the hot path, reads nothing more.
    let fee = if change.from == OrderStatus::Pending {
        None
    } else {
        order_store::order_fee(txn, &change.order.id).await?
    };
    let view = serde_json::to_string(&OrderView::from_model(&change.order, fee)?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut types = Vec::new();
    if change.status_changed() {
        types.push(format!("order.{}", change.to.as_str()));
    }
    if change.flag.is_some() {
        types.push("order.flagged".to_owned());
    }
    for event_type in types {
        crate::store::events::write_outbox(
            txn,
            &change.order.tenant_id,
            &change.order.id,
            &event_type,
            &view,
            change.order.updated_at,
        )
        .await?;
    }
    Ok(())
}

/// Apply an order event and write the merchant's events for its change, in `txn`. `read_before`:
/// the order as read before the transaction, if it was (see [`order_store::apply_order_event`]).
pub(crate) async fn apply_in(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    provider: &str,
    out_trade_no: &str,
    ev: &EventToApply,
    read_before: Option<&order::Model>,
) -> Result<Applied, ApplyError> {
    let applied =
        order_store::apply_order_event(txn, tenant_id, provider, out_trade_no, ev, read_before)
            .await?;
    if let Applied::Changed(change) = &applied {
        publish_order_change(txn, change).await?;
    }
    Ok(applied)
}

/// Apply an order event in a write of its own.
async fn apply(
    state: &AppState,
    tenant_id: &str,
    provider: &str,
    out_trade_no: &str,
    ev: EventToApply,
) -> Result<Applied, ApplyError> {
    let (tenant_id, provider, out_trade_no) = (
        tenant_id.to_owned(),
        provider.to_owned(),
        out_trade_no.to_owned(),
    );
    state
        .store
        .write(move |txn| {
            Box::pin(
                async move { apply_in(txn, &tenant_id, &provider, &out_trade_no, &ev, None).await },
            )
        })
        .await
}

/// The event of a verified payment.
pub fn payment_event(payment: &PaymentEvent, from_notification: bool) -> EventToApply {
    EventToApply {
        event_id: format!("payment:{}", payment.event_id),
        kind: "payment",
        event: OrderEvent::Paid,
        payment: Some(payment.clone()),
        from_notification,
        payload: serde_json::to_value(payment).unwrap_or_default(),
    }
}

/// The event of a refund the provider reports that paybridge did not make.
pub fn refunded_outside_event(event_id: &str, out_refund_no: Option<&str>) -> EventToApply {
    EventToApply {
        event_id: format!("refunded_outside:{event_id}"),
        kind: "refunded_outside",
        event: OrderEvent::RefundedOutside,
        payment: None,
        from_notification: true,
        payload: serde_json::json!({ "event_id": event_id, "out_refund_no": out_refund_no }),
    }
}

/// The event of a close reported by the provider's notification.
pub fn closed_notification_event(event_id: &str) -> EventToApply {
    EventToApply {
        event_id: format!("closed:{event_id}"),
        kind: "closed",
        event: OrderEvent::Closed,
        payment: None,
        from_notification: true,
        payload: serde_json::json!({ "event_id": event_id }),
    }
}

async fn apply_payment(
    state: &AppState,
    tenant_id: &str,
    kind: &str,
    payment: &PaymentEvent,
) -> Result<Applied, ApplyError> {
    apply(
        state,
        tenant_id,
        kind,
        &payment.out_trade_no,
        payment_event(payment, false),
    )
    .await
}

async fn apply_close(
    state: &AppState,
    tenant: &Tenant,
    o: &order::Model,
    source: &str,
) -> Result<Applied, ApplyError> {
    let ev = EventToApply {
        event_id: format!("closed:{}:{source}", o.id),
        kind: "closed",
        event: OrderEvent::Closed,
        payment: None,
        from_notification: false,
        payload: serde_json::json!({ "source": source }),
    };
    apply(state, &tenant.id, &o.provider, &o.out_trade_no, ev).await
}

/// Ask the provider for the order's state and apply what it says. The order is unchanged when
/// the provider fails.
#[tracing::instrument(level = "error", name = "sync_order", skip_all, fields(tenant = %tenant.id, out_trade_no = %o.out_trade_no))]
pub async fn sync_order(
    state: &AppState,
    tenant: &Tenant,
    o: &order::Model,
) -> Result<order::Model, Failure> {
    let provider = order_provider(tenant, o)?;
    let answer = activity::call(
        state,
        provider.as_ref(),
        "query",
        Some(about(o)),
        provider.query_payment(&order_ref(o)),
    )
    .await;
    let applied = match answer.map_err(|e| provider_failure(&o.provider, e))? {
        PaymentState::NotPaid => return Ok(o.clone()),
        // A paid order reported closed is a fully refunded trade (Alipay): refunds tell that story.
        PaymentState::Closed | PaymentState::Failed if order_store::status_of(o)?.is_paid() => {
            return Ok(o.clone());
        }
        PaymentState::Paid(p) => apply_payment(state, &tenant.id, &o.provider, &p).await?,
        PaymentState::Closed => apply_close(state, tenant, o, "provider-query").await?,
        PaymentState::Failed => {
            let ev = EventToApply {
                event_id: format!("failed:{}", o.id),
                kind: "failed",
                event: OrderEvent::Failed,
                payment: None,
                from_notification: false,
                payload: serde_json::json!({ "source": "provider-query" }),
            };
            apply(state, &tenant.id, &o.provider, &o.out_trade_no, ev).await?
        }
    };
    Ok(applied.order().clone())
}

/// Close an order: at the provider first, then here. If the provider reports it paid, it becomes
/// paid and the answer is a 409 `order_paid`.
#[tracing::instrument(level = "error", name = "close_order", skip_all, fields(tenant = %tenant.id, out_trade_no = %o.out_trade_no))]
pub async fn close_order(
    state: &AppState,
    tenant: &Tenant,
    o: &order::Model,
) -> Result<order::Model, Failure> {
    match order_store::status_of(o)? {
        OrderStatus::Closed => return Ok(o.clone()),
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
            return Err(provider_failure(&o.provider, ProviderError::AlreadyPaid));
        }
        OrderStatus::Pending | OrderStatus::Failed => {}
    }
    let provider = order_provider(tenant, o)?;
    let answer = activity::call(
        state,
        provider.as_ref(),
        "close",
        Some(about(o)),
        provider.close_payment(&order_ref(o)),
    )
    .await;
    match answer.map_err(|e| provider_failure(&o.provider, e))? {
        CloseOutcome::Closed => Ok(apply_close(state, tenant, o, "merchant")
            .await?
            .order()
            .clone()),
        CloseOutcome::AlreadyPaid(p) => {
            apply_payment(state, &tenant.id, &o.provider, &p).await?;
            Err(provider_failure(&o.provider, ProviderError::AlreadyPaid))
        }
    }
}

/// An order as the merchant sees it: its row and its fee, once its statement is reconciled.
pub async fn order_view(state: &AppState, o: &order::Model) -> Result<OrderView, Failure> {
    let fee = order_store::order_fee(state.store.reader(), &o.id).await?;
    Ok(OrderView::from_model(o, fee)?)
}

/// Orders as the merchant sees them, their fees read in one query.
pub async fn order_views(
    state: &AppState,
    orders: &[order::Model],
) -> Result<Vec<OrderView>, Failure> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let fees =
        order_store::order_fees(state.store.reader(), orders.iter().map(|o| o.id.clone())).await?;
    Ok(orders
        .iter()
        .map(|o| OrderView::from_model(o, fees.get(&o.id).copied()))
        .collect::<Result<_, _>>()?)
}

/// A tenant's order, or `not_found`.
pub async fn find_order(
    state: &AppState,
    tenant: &Tenant,
    out_trade_no: &str,
) -> Result<order::Model, Failure> {
    state
        .store
        .find_order(&tenant.id, out_trade_no)
        .await?
        .ok_or_else(|| Failure::not_found("order"))
}
