//! The order use cases, independent of HTTP: create, sync with the provider, close, and applying
//! verified provider events. Handlers and the reconciler call these.

use std::sync::Arc;

use actix_web::http::StatusCode;
use chrono::{Duration as ChronoDuration, Utc};
use paybridge_core::ids;
use paybridge_core::money::{Currency, Fen};
use paybridge_core::order::{OrderEvent, OrderStatus};
use paybridge_core::provider::{
    CloseOutcome, CreatePayment, OrderRef, PaymentEvent, PaymentProvider, PaymentState,
    ProviderError, ProviderEvent,
};
use paybridge_core::tenant::Tenant;

use crate::db::entities::order;
use crate::error::{ApiError, provider_error};
use crate::state::AppState;
use crate::store::{Applied, ApplyError, EventToApply, Inserted, NewOrder, status_of};
use crate::views::{CreateOrderRequest, CreateOrderResponse, OrderView};

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

/// The tenant's provider of this kind if it is enabled, else `422 provider_not_enabled`.
pub fn enabled_provider(tenant: &Tenant, kind: &str) -> Result<Arc<dyn PaymentProvider>, ApiError> {
    tenant.enabled_provider(kind).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
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
) -> Result<Arc<dyn PaymentProvider>, ApiError> {
    tenant.any_provider(&o.provider).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "provider_not_enabled",
            format!(
                "provider {:?} is no longer configured for this tenant",
                o.provider
            ),
        )
    })
}

/// The checked fields of a create request.
struct ValidOrder {
    new: NewOrder,
}

fn validate(tenant: &Tenant, req: &CreateOrderRequest) -> Result<ValidOrder, ApiError> {
    ids::check_out_trade_no(&req.out_trade_no)?;
    ids::check_description(&req.description)?;
    if let Some(a) = &req.attach {
        ids::check_attach(a)?;
    }
    let amount =
        Fen::positive(req.amount).map_err(|e| ApiError::invalid("amount", e.to_string()))?;
    let currency = match req.currency.as_deref() {
        None => Currency::Cny,
        Some(c) => Currency::parse(c).ok_or_else(|| {
            ApiError::invalid("currency", format!("unsupported currency {c:?}; only CNY"))
        })?,
    };
    let expires_in = req.expires_in_seconds.unwrap_or(DEFAULT_EXPIRES_IN);
    ids::check_expires_in(expires_in)?;
    if let Some(ip) = &req.client_ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(ApiError::invalid(
            "client_ip",
            "must be an IPv4 or IPv6 address",
        ));
    }
    if let Some(p) = &req.payer
        && (p.openid.is_empty() || p.openid.len() > 128)
    {
        return Err(ApiError::invalid(
            "payer.openid",
            "must be 1-128 characters",
        ));
    }
    Ok(ValidOrder {
        new: NewOrder {
            tenant_id: tenant.id.clone(),
            provider: req.provider.clone(),
            out_trade_no: req.out_trade_no.clone(),
            amount,
            currency: currency.code().to_owned(),
            description: req.description.clone(),
            payer_openid: req.payer.as_ref().map(|p| p.openid.clone()),
            client_ip: req.client_ip.clone(),
            attach: req.attach.clone(),
            expires_at: Utc::now() + ChronoDuration::seconds(expires_in),
        },
    })
}

/// "The same request" compares provider, amount, currency, description, payer and attach.
fn same_request(o: &order::Model, n: &NewOrder) -> bool {
    o.provider == n.provider
        && o.amount == n.amount.get()
        && o.currency == n.currency
        && o.description == n.description
        && o.payer_openid == n.payer_openid
        && o.attach == n.attach
}

fn client_payment_of(o: &order::Model) -> Option<serde_json::Value> {
    let params: serde_json::Value = serde_json::from_str(o.client_payment.as_deref()?).ok()?;
    Some(serde_json::json!({ o.provider.clone(): params }))
}

/// Create an order, or replay it. Returns whether something new was made (201) or not (200).
pub async fn create_order(
    state: &AppState,
    tenant: &Tenant,
    req: &CreateOrderRequest,
) -> Result<(bool, CreateOrderResponse), ApiError> {
    let provider = enabled_provider(tenant, &req.provider)?;
    let valid = validate(tenant, req)?;
    let (created, row) = match state.store.insert_order(&valid.new).await? {
        Inserted::Created(row) => (true, row),
        Inserted::Existing(row) => {
            if !same_request(&row, &valid.new) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "out_trade_no_conflict",
                    "an order with this out_trade_no exists with different content; use a new out_trade_no",
                )
                .field("out_trade_no"));
            }
            (false, row)
        }
    };
    let respond = |row: &order::Model| -> Result<CreateOrderResponse, ApiError> {
        Ok(CreateOrderResponse {
            order: OrderView::from_model(row)?,
            client_payment: client_payment_of(row),
        })
    };
    // A replay of a pending order whose create failed earlier retries the provider; anything else
    // is answered from the database.
    if !created && (row.client_payment.is_some() || status_of(&row)? != OrderStatus::Pending) {
        return Ok((false, respond(&row)?));
    }
    let call = CreatePayment {
        out_trade_no: row.out_trade_no.clone(),
        amount: Fen::new(row.amount),
        description: row.description.clone(),
        payer_openid: row.payer_openid.clone(),
        client_ip: row.client_ip.clone(),
        expires_at: row.expires_at,
        attach: row.attach.clone(),
        notify_url: notify_url(state, &tenant.id, &row.provider),
        previous_provider_data: serde_json::from_str(&row.provider_data).ok(),
    };
    let outcome = provider.create_payment(&call).await;
    state.metrics.inc(
        "paybridge_provider_calls_total",
        &[
            ("provider", provider.kind()),
            ("call", "create"),
            ("outcome", outcome_label(&outcome)),
        ],
    );
    match outcome {
        Ok(created_payment) => {
            let row = state
                .store
                .set_client_payment(
                    &row.id,
                    &created_payment.client_payment,
                    &created_payment.provider_data,
                )
                .await?;
            if created {
                state.metrics.inc(
                    "paybridge_orders_created_total",
                    &[("provider", provider.kind())],
                );
            }
            Ok((created, respond(&row)?))
        }
        Err(e @ (ProviderError::InvalidRequest { .. } | ProviderError::Misconfigured { .. })) => {
            // Refused before any network call: nothing exists at the provider, so forget the
            // order and let the merchant send a corrected request.
            if created {
                state.store.delete_unsent_order(&row.id).await?;
            }
            Err(provider_error(&row.provider, e))
        }
        Err(ProviderError::AlreadyPaid) => {
            sync_order(state, tenant, &row).await?;
            Err(provider_error(&row.provider, ProviderError::AlreadyPaid))
        }
        Err(ProviderError::AlreadyClosed) => {
            apply_close(state, tenant, &row, "provider-closed").await?;
            Err(provider_error(&row.provider, ProviderError::AlreadyClosed))
        }
        Err(e) => Err(provider_error(&row.provider, e)),
    }
}

/// The `outcome` label of a provider call for `/metrics`.
pub fn outcome_label<T>(r: &Result<T, ProviderError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(ProviderError::Timeout) => "timeout",
        Err(ProviderError::Unavailable(_)) => "unavailable",
        Err(_) => "refused",
    }
}

/// Apply a verified payment.
pub async fn apply_payment(
    state: &AppState,
    tenant_id: &str,
    kind: &str,
    payment: &PaymentEvent,
    from_notification: bool,
) -> Result<Applied, crate::store::ApplyError> {
    let ev = EventToApply {
        event_id: format!("payment:{}", payment.event_id),
        kind: "payment",
        event: OrderEvent::Paid,
        payment: Some(payment),
        from_notification,
        payload: serde_json::to_value(payment).unwrap_or_default(),
    };
    state
        .store
        .apply_event(tenant_id, kind, &payment.out_trade_no, &ev)
        .await
}

async fn apply_close(
    state: &AppState,
    tenant: &Tenant,
    o: &order::Model,
    source: &str,
) -> Result<Applied, crate::store::ApplyError> {
    let ev = EventToApply {
        event_id: format!("closed:{}:{source}", o.id),
        kind: "closed",
        event: OrderEvent::Closed,
        payment: None,
        from_notification: false,
        payload: serde_json::json!({ "source": source }),
    };
    state
        .store
        .apply_event(&tenant.id, &o.provider, &o.out_trade_no, &ev)
        .await
}

/// Apply a verified provider event from a notification.
pub async fn apply_provider_event(
    state: &AppState,
    tenant_id: &str,
    kind: &str,
    event: &ProviderEvent,
) -> Result<Applied, crate::store::ApplyError> {
    match event {
        ProviderEvent::Payment(p) => apply_payment(state, tenant_id, kind, p, true).await,
        ProviderEvent::Closed {
            out_trade_no,
            event_id,
        } => {
            let ev = EventToApply {
                event_id: format!("closed:{event_id}"),
                kind: "closed",
                event: OrderEvent::Closed,
                payment: None,
                from_notification: true,
                payload: serde_json::json!({ "event_id": event_id }),
            };
            state
                .store
                .apply_event(tenant_id, kind, out_trade_no, &ev)
                .await
        }
        ProviderEvent::Refund(r) => {
            crate::refunds::apply_refund_event(state, tenant_id, kind, r).await?;
            let order = state
                .store
                .find_order(tenant_id, &r.out_trade_no)
                .await?
                .ok_or(ApplyError::UnknownOrder)?;
            Ok(Applied::Unchanged(order))
        }
    }
}

/// Ask the provider for the order's state and apply what it says. The order is unchanged when
/// the provider fails.
pub async fn sync_order(
    state: &AppState,
    tenant: &Tenant,
    o: &order::Model,
) -> Result<order::Model, ApiError> {
    let provider = order_provider(tenant, o)?;
    let answer = provider.query_payment(&order_ref(o)).await;
    state.metrics.inc(
        "paybridge_provider_calls_total",
        &[
            ("provider", provider.kind()),
            ("call", "query"),
            ("outcome", outcome_label(&answer)),
        ],
    );
    let applied = match answer.map_err(|e| provider_error(&o.provider, e))? {
        PaymentState::NotPaid => return Ok(o.clone()),
        // A paid order reported closed is a fully refunded trade (Alipay): refunds tell that story.
        PaymentState::Closed | PaymentState::Failed if status_of(o)?.is_paid() => {
            return Ok(o.clone());
        }
        PaymentState::Paid(p) => apply_payment(state, &tenant.id, &o.provider, &p, false).await?,
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
            state
                .store
                .apply_event(&tenant.id, &o.provider, &o.out_trade_no, &ev)
                .await?
        }
    };
    Ok(applied.order().clone())
}

/// Close an order: at the provider first, then here. If the provider reports it paid, it becomes
/// paid and the answer is a 409 `order_paid`.
pub async fn close_order(
    state: &AppState,
    tenant: &Tenant,
    o: &order::Model,
) -> Result<order::Model, ApiError> {
    match status_of(o)? {
        OrderStatus::Closed => return Ok(o.clone()),
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
            return Err(provider_error(&o.provider, ProviderError::AlreadyPaid));
        }
        OrderStatus::Pending | OrderStatus::Failed => {}
    }
    let provider = order_provider(tenant, o)?;
    let answer = provider.close_payment(&order_ref(o)).await;
    state.metrics.inc(
        "paybridge_provider_calls_total",
        &[
            ("provider", provider.kind()),
            ("call", "close"),
            ("outcome", outcome_label(&answer)),
        ],
    );
    match answer.map_err(|e| provider_error(&o.provider, e))? {
        CloseOutcome::Closed => Ok(apply_close(state, tenant, o, "merchant")
            .await?
            .order()
            .clone()),
        CloseOutcome::AlreadyPaid(p) => {
            apply_payment(state, &tenant.id, &o.provider, &p, false).await?;
            Err(provider_error(&o.provider, ProviderError::AlreadyPaid))
        }
    }
}
