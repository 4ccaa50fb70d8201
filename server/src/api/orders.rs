//! Merchant API: orders.

use actix_web::{HttpResponse, get, post, web};

use crate::api::auth::AuthTenant;
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::views::{CreateOrderRequest, CreateOrderResponse, ErrorBody, OrderView, SyncQuery};
use crate::db::entities::order;
use crate::state::AppState;
use crate::usecases::orders;

/// Create an order and get the client's payment params.
///
/// Repeating the same request returns the same order with 200. The same `out_trade_no` with
/// different content is a 409. If the provider fails, the order stays `pending` without client
/// params and repeating the request retries the provider.
#[utoipa::path(
    tag = "orders",
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional, 1-255 printable ASCII characters: a retry with the same key and request gets the first answer (status and body) with `Idempotent-Replayed: true`; the key with another request is 422 `idempotency_key_reused`, while its first request runs 409 `idempotency_key_in_use`. Kept 24 h ([idempotency] ttl_seconds).")),
    request_body = CreateOrderRequest,
    responses(
        (status = 201, description = "Order created", body = CreateOrderResponse),
        (status = 200, description = "Exact replay of an earlier request", body = CreateOrderResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 409, description = "out_trade_no reused with different content, or the provider reports it paid/closed", body = ErrorBody),
        (status = 422, description = "Provider not enabled or misconfigured", body = ErrorBody),
        (status = 502, description = "Provider failed", body = ErrorBody),
        (status = 504, description = "Provider timed out", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/v1/orders")]
pub async fn create_order(
    state: web::Data<AppState>,
    auth: AuthTenant,
    body: JsonBody<CreateOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let (created, row) = orders::create_order(&state, &auth.0, &body).await?;
    let order = if created {
        // A new order has no fee.
        OrderView::from_model(&row, None)?
    } else {
        orders::order_view(&state, &row).await?
    };
    let response = CreateOrderResponse {
        order,
        client_payment: client_payment_of(&row),
    };
    Ok(if created {
        HttpResponse::Created().json(response)
    } else {
        HttpResponse::Ok().json(response)
    })
}

/// Get an order; with `?sync=true` ask the provider first.
#[utoipa::path(
    tag = "orders",
    params(("out_trade_no" = String, Path, description = "The merchant's order number"), SyncQuery),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order for this tenant", body = ErrorBody),
        (status = 502, description = "sync=true and the provider failed; the order is unchanged", body = ErrorBody),
        (status = 504, description = "sync=true and the provider timed out", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/v1/orders/{out_trade_no}")]
pub async fn get_order(
    state: web::Data<AppState>,
    auth: AuthTenant,
    path: web::Path<String>,
    query: web::Query<SyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let order = orders::find_order(&state, &auth.0, &path).await?;
    let order = if query.sync {
        orders::sync_order(&state, &auth.0, &order).await?
    } else {
        order
    };
    Ok(HttpResponse::Ok().json(orders::order_view(&state, &order).await?))
}

/// Close an unpaid order, at the provider first.
#[utoipa::path(
    tag = "orders",
    params(("out_trade_no" = String, Path, description = "The merchant's order number"), ("Idempotency-Key" = Option<String>, Header, description = "Optional, 1-255 printable ASCII characters: a retry with the same key and request gets the first answer (status and body) with `Idempotent-Replayed: true`; the key with another request is 422 `idempotency_key_reused`, while its first request runs 409 `idempotency_key_in_use`. Kept 24 h ([idempotency] ttl_seconds).")),
    responses(
        (status = 200, description = "The closed order", body = OrderView),
        (status = 404, description = "No such order for this tenant", body = ErrorBody),
        (status = 409, description = "The provider reports the order paid (`order_paid`); it is now `paid`", body = ErrorBody),
        (status = 502, description = "Provider failed", body = ErrorBody),
        (status = 504, description = "Provider timed out", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/v1/orders/{out_trade_no}/close")]
pub async fn close_order(
    state: web::Data<AppState>,
    auth: AuthTenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order = orders::find_order(&state, &auth.0, &path).await?;
    let order = orders::close_order(&state, &auth.0, &order).await?;
    Ok(HttpResponse::Ok().json(orders::order_view(&state, &order).await?))
}

/// The client's payment params as issued, keyed by provider kind.
fn client_payment_of(o: &order::Model) -> Option<serde_json::Value> {
    let params: serde_json::Value = serde_json::from_str(o.client_payment.as_deref()?).ok()?;
    Some(serde_json::json!({ o.provider.clone(): params }))
}
