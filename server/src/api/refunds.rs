//! Merchant API: refunds.

use actix_web::{HttpResponse, get, post, web};

use crate::api::auth::AuthTenant;
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::views::{CreateRefundRequest, ErrorBody, RefundView, SyncQuery};
use crate::state::AppState;
use crate::usecases::{orders, refunds};

/// Refund (part of) a paid order.
///
/// The same `out_refund_no` again returns the same refund (200); with other content it is a 409.
/// Refunds that have not failed never exceed the order amount (`refund_exceeds_order`).
#[utoipa::path(
    tag = "refunds",
    params(("out_trade_no" = String, Path, description = "The merchant's order number"), ("Idempotency-Key" = Option<String>, Header, description = "Optional, 1-255 printable ASCII characters: a retry with the same key and request gets the first answer (status and body) with `Idempotent-Replayed: true`; the key with another request is 422 `idempotency_key_reused`, while its first request runs 409 `idempotency_key_in_use`. Kept 24 h ([idempotency] ttl_seconds).")),
    request_body = CreateRefundRequest,
    responses(
        (status = 201, description = "Refund accepted by the provider (`processing`, or `succeeded` when the provider settles at once)", body = RefundView),
        (status = 200, description = "Exact replay of an earlier request", body = RefundView),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "No such order for this tenant", body = ErrorBody),
        (status = 409, description = "`refund_exceeds_order`, `out_refund_no_conflict` or `order_not_paid`", body = ErrorBody),
        (status = 422, description = "`provider_misconfigured` (e.g. no client certificate; `field` names the key) or a provider refusal", body = ErrorBody),
        (status = 502, description = "Provider failed; the refund stays `processing` and a replay sends it again", body = ErrorBody),
        (status = 504, description = "Provider timed out; outcome unknown", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/v1/orders/{out_trade_no}/refunds")]
pub async fn create_refund(
    state: web::Data<AppState>,
    auth: AuthTenant,
    path: web::Path<String>,
    body: JsonBody<CreateRefundRequest>,
) -> Result<HttpResponse, ApiError> {
    let order = orders::find_order(&state, &auth.0, &path).await?;
    let (created, refund) = refunds::create_refund(&state, &auth.0, &order, &body).await?;
    let refund = RefundView::from_model(&refund);
    Ok(if created {
        HttpResponse::Created().json(refund)
    } else {
        HttpResponse::Ok().json(refund)
    })
}

/// Get a refund; with `?sync=true` ask the provider first.
#[utoipa::path(
    tag = "refunds",
    params(
        ("out_trade_no" = String, Path, description = "The merchant's order number"),
        ("out_refund_no" = String, Path, description = "The merchant's refund number"),
        SyncQuery,
    ),
    responses(
        (status = 200, description = "The refund", body = RefundView),
        (status = 404, description = "No such refund for this tenant", body = ErrorBody),
        (status = 502, description = "sync=true and the provider failed; the refund is unchanged", body = ErrorBody),
        (status = 504, description = "sync=true and the provider timed out", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/v1/orders/{out_trade_no}/refunds/{out_refund_no}")]
pub async fn get_refund(
    state: web::Data<AppState>,
    auth: AuthTenant,
    path: web::Path<(String, String)>,
    query: web::Query<SyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let (out_trade_no, out_refund_no) = path.into_inner();
    let (order, refund) =
        refunds::find_refund(&state, &auth.0, &out_trade_no, &out_refund_no).await?;
    let refund = if query.sync {
        refunds::sync_refund(&state, &auth.0, &order, &refund).await?
    } else {
        refund
    };
    Ok(HttpResponse::Ok().json(RefundView::from_model(&refund)))
}
