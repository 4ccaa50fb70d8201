//! Merchant API: webhook events and their deliveries.

use actix_web::{HttpResponse, get, post, web};

use crate::api::auth::AuthTenant;
use crate::api::error::ApiError;
use crate::api::views::{
    DeliveryAttemptView, DeliveryView, ErrorBody, EventListResponse, EventView, EventsQuery,
};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::deliveries::EventRecord;
use crate::usecases::Failure;
use crate::usecases::events::{self, MAX_LIMIT};

const DEFAULT_LIMIT: u64 = 50;

/// The API view of an event with its delivery.
pub(crate) fn view(record: EventRecord) -> Result<EventView, StoreError> {
    let data = serde_json::from_str(&record.event.data).map_err(|e| {
        StoreError::Corrupt(format!("event {} data is not JSON: {e}", record.event.id))
    })?;
    let delivery = match record.delivery {
        Some(d) => DeliveryView {
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            last_error: d.last_error,
        },
        // Only for a row written around the schema (a bug or a manual edit): say so plainly.
        None => DeliveryView {
            status: "not_scheduled".to_owned(),
            attempts: 0,
            next_attempt_at: None,
            delivered_at: None,
            last_error: Some("no delivery was scheduled; redeliver to send it".to_owned()),
        },
    };
    Ok(EventView {
        id: record.event.id,
        event_type: record.event.event_type,
        created_at: record.event.created_at,
        data,
        delivery,
        attempts: record
            .attempts
            .into_iter()
            .map(|a| DeliveryAttemptView {
                at: a.at,
                status_code: a.status_code,
                error: a.error,
                duration_ms: a.duration_ms,
            })
            .collect(),
    })
}

/// List the tenant's webhook events, newest first, with their delivery state and attempts.
///
/// Events are recorded for every order and refund change, also when the tenant has no
/// `webhook_url` (their delivery is then `not_configured`).
#[utoipa::path(
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Events, newest first", body = EventListResponse),
        (status = 400, description = "Invalid `limit` or unknown `after` event", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/v1/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    auth: AuthTenant,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Failure::invalid(
            "limit",
            format!("must be 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})"),
        )
        .into());
    }
    let (records, has_more) = events::list_events(
        &state,
        &auth.0,
        limit,
        query.after.as_deref(),
        query.event_type.as_deref(),
    )
    .await?;
    let events = records
        .into_iter()
        .map(view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(EventListResponse { events, has_more }))
}

/// Send an event again, now, whatever its delivery state (also after `delivered` or `failed`).
///
/// The retry schedule starts over. Receivers get the same event id again and deduplicate by it.
#[utoipa::path(
    tag = "events",
    params(("id" = String, Path, description = "The event id"), ("Idempotency-Key" = Option<String>, Header, description = "Optional, 1-255 printable ASCII characters: a retry with the same key and request gets the first answer (status and body) with `Idempotent-Replayed: true`; the key with another request is 422 `idempotency_key_reused`, while its first request runs 409 `idempotency_key_in_use`. Kept 24 h ([idempotency] ttl_seconds).")),
    responses(
        (status = 202, description = "Scheduled for immediate delivery", body = EventView),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "No such event for this tenant", body = ErrorBody),
        (status = 422, description = "The tenant has no `webhook_url` or `webhook_secret` (`webhook_not_configured`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/v1/events/{id}/redeliver")]
pub async fn redeliver_event(
    state: web::Data<AppState>,
    auth: AuthTenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let record = events::redeliver(&state, &auth.0, &path).await?;
    Ok(HttpResponse::Accepted().json(view(record)?))
}
