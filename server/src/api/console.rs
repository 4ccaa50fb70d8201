//! The operators' console API under `/admin/api/` (the `/admin/` page uses it; so can scripts):
//! order search across tenants, an order's timeline, the actions on it, and the dashboard's
//! series. Read-only admin tokens may read; actions need a full admin token and are audited.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use paybridge_admin::api::{AdminAuth, AdminState, AdminWrite};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::ApiError;
use crate::api::views::{ErrorBody, EventView, OrderView, RefundView};
use crate::db::entities::order;
use crate::state::AppState;
use crate::usecases::Failure;
use crate::usecases::console::{self, OrderAction, SearchParams};
use crate::usecases::orders;

/// An order in the console.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleOrder {
    /// The tenant.
    pub tenant: String,
    /// The order.
    #[serde(flatten)]
    pub order: OrderView,
}

/// A page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    /// The orders.
    pub orders: Vec<ConsoleOrder>,
    /// The cursor of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// An order with everything that happened to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderTimeline {
    /// The order.
    pub order: ConsoleOrder,
    /// Its refunds.
    pub refunds: Vec<RefundView>,
    /// Its webhook events with their deliveries (redeliver them by id).
    pub events: Vec<EventView>,
    /// In time order: `{at, kind, …}` with `kind` one of `created`, `provider_call`
    /// (`endpoint`, `outcome`, `latency_ms`), `notification` (`verdict`, `reason`),
    /// `transition` (`from`, `to`), `refund` (`out_refund_no`, `status`, `amount`),
    /// `webhook_attempt` (`event_id`, `type`, `http_status`, `ok`), `reconciler` (`action`).
    #[schema(value_type = Vec<Object>)]
    pub timeline: Vec<serde_json::Value>,
}

/// The dashboard's range.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StatsQuery {
    /// From (RFC 3339, inclusive); default 24 h before `to`.
    pub from: Option<String>,
    /// To (RFC 3339, exclusive); default now. At most 31 days after `from`.
    pub to: Option<String>,
    /// Only `hour`.
    pub bucket: Option<String>,
}

fn console_order(o: &order::Model, order: OrderView) -> ConsoleOrder {
    ConsoleOrder {
        tenant: o.tenant_id.clone(),
        order,
    }
}

/// Search orders across tenants, newest first.
#[utoipa::path(
    tag = "admin",
    params(SearchParams),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "An invalid filter or cursor", body = ErrorBody),
        (status = 401, description = "Missing or unknown admin token", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/orders")]
pub async fn search_orders(
    state: web::Data<AppState>,
    _auth: AdminAuth,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let params = query.into_inner();
    let (rows, next_cursor) = console::search(&state, &params).await?;
    let views = orders::order_views(&state, &rows).await?;
    let orders = rows
        .iter()
        .zip(views)
        .map(|(o, order)| console_order(o, order))
        .collect();
    Ok(HttpResponse::Ok().json(OrderPage {
        orders,
        next_cursor,
    }))
}

/// One order with its refunds, its events and its timeline.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "The order's timeline", body = OrderTimeline),
        (status = 401, description = "Missing or unknown admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/orders/{tenant}/{out_trade_no}")]
pub async fn order_timeline(
    state: web::Data<AppState>,
    _auth: AdminAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, out_trade_no) = path.into_inner();
    let t = console::timeline(&state, &tenant, &out_trade_no).await?;
    let events = t
        .events
        .into_iter()
        .map(crate::api::events::view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(OrderTimeline {
        order: console_order(&t.order, orders::order_view(&state, &t.order).await?),
        refunds: t
            .records
            .refunds
            .iter()
            .map(RefundView::from_model)
            .collect(),
        events,
        timeline: t.entries,
    }))
}

/// Audit an operator's action with what came of it (a failure to audit is logged).
pub(crate) async fn audit(
    admin: &AdminState,
    actor: &str,
    action: &str,
    tenant: &str,
    target: &str,
    result: serde_json::Value,
) {
    if let Err(e) = admin
        .store
        .record_action(actor, action, tenant, target, result)
        .await
    {
        tracing::error!(error = %e, action, tenant, target, "cannot audit an operator's action");
    }
}

fn outcome<T>(
    r: &Result<T, Failure>,
    ok: impl FnOnce(&T) -> serde_json::Value,
) -> serde_json::Value {
    match r {
        Ok(v) => ok(v),
        Err(f) => serde_json::json!({ "error": f.code }),
    }
}

async fn order_action(
    state: &AppState,
    admin: &AdminState,
    who: &AdminWrite,
    action: OrderAction,
    tenant: &str,
    out_trade_no: &str,
) -> Result<HttpResponse, ApiError> {
    let done = console::act(state, tenant, out_trade_no, action).await;
    let result = outcome(&done, |o| serde_json::json!({ "status": o.status }));
    audit(
        admin,
        &who.actor,
        action.name(),
        tenant,
        &format!("orders.{out_trade_no}"),
        result,
    )
    .await;
    let done = done?;
    let view = orders::order_view(state, &done).await?;
    Ok(HttpResponse::Ok().json(console_order(&done, view)))
}

/// Ask the provider for the order's state and apply it (a full admin token; audited).
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "The order after the sync", body = ConsoleOrder),
        (status = 403, description = "A read-only admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 502, description = "The provider failed; the order is unchanged", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/orders/{tenant}/{out_trade_no}/sync")]
pub async fn sync_order(
    state: web::Data<AppState>,
    admin: web::Data<AdminState>,
    who: AdminWrite,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, no) = path.into_inner();
    order_action(&state, &admin, &who, OrderAction::Sync, &tenant, &no).await
}

/// Close the order at the provider and here (a full admin token; audited).
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "The order after the close", body = ConsoleOrder),
        (status = 403, description = "A read-only admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is paid", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/orders/{tenant}/{out_trade_no}/close")]
pub async fn close_order(
    state: web::Data<AppState>,
    admin: web::Data<AdminState>,
    who: AdminWrite,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, no) = path.into_inner();
    order_action(&state, &admin, &who, OrderAction::Close, &tenant, &no).await
}

/// Deliver a webhook event again, now (a full admin token; audited).
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 202, description = "Scheduled for delivery", body = EventView),
        (status = 403, description = "A read-only admin token", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
        (status = 422, description = "The tenant has no webhook_url or webhook_secret", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/events/{id}/redeliver")]
pub async fn redeliver_event(
    state: web::Data<AppState>,
    admin: web::Data<AdminState>,
    who: AdminWrite,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let done = console::redeliver(&state, &id).await;
    if let Ok(record) = &done {
        let result = serde_json::json!({ "scheduled": true });
        audit(
            &admin,
            &who.actor,
            "redeliver_event",
            &record.event.tenant_id,
            &format!("events.{id}"),
            result,
        )
        .await;
    }
    let view = crate::api::events::view(done?)?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED).json(view))
}

/// The dashboard's hourly series (UTC): payments (count and amount) per provider and tenant,
/// the create success rate, provider calls, refused notifications by reason, webhook attempts,
/// the webhook backlog now, and the reconciler's actions.
#[utoipa::path(
    tag = "admin",
    params(StatsQuery),
    responses(
        (status = 200, description = "`{bucket, from, to, series: {name: [{t, …}]}}`", body = Object),
        (status = 400, description = "An invalid range or bucket", body = ErrorBody),
        (status = 401, description = "Missing or unknown admin token", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/stats")]
pub async fn stats(
    state: web::Data<AppState>,
    _auth: AdminAuth,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.bucket.as_deref().is_some_and(|b| b != "hour") {
        return Err(Failure::invalid("bucket", "only `hour` is supported").into());
    }
    let (from, to) = console::range(query.from.as_deref(), query.to.as_deref())?;
    Ok(HttpResponse::Ok().json(console::stats(&state, from, to).await?))
}
