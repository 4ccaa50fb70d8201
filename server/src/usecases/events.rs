//! The merchant's webhook events: listing them with their deliveries, and redelivering one.

use chrono::Utc;
use paybridge_core::tenant::Tenant;

use super::{Failure, FailureKind};
use crate::state::AppState;
use crate::store::deliveries::{self, EventRecord};

/// At most this many events a page.
pub const MAX_LIMIT: u64 = 200;

/// A page of the tenant's events, newest first, after the `after` event, of one type if given;
/// and whether more follow.
pub async fn list_events(
    state: &AppState,
    tenant: &Tenant,
    limit: u64,
    after: Option<&str>,
    event_type: Option<&str>,
) -> Result<(Vec<EventRecord>, bool), Failure> {
    let db = state.store.reader();
    let after = match after {
        Some(id) => Some(
            deliveries::find_event(db, &tenant.id, id)
                .await?
                .ok_or_else(|| Failure::invalid("after", "no such event for this tenant"))?,
        ),
        None => None,
    };
    let mut records =
        deliveries::list_events(db, &tenant.id, limit + 1, after.as_ref(), event_type).await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_more = records.len() > limit;
    records.truncate(limit);
    Ok((records, has_more))
}

/// Schedule one of the tenant's events for immediate delivery again.
#[tracing::instrument(level = "error", name = "redeliver", skip_all, fields(tenant = %tenant.id, event_id = %event_id))]
pub async fn redeliver(
    state: &AppState,
    tenant: &Tenant,
    event_id: &str,
) -> Result<EventRecord, Failure> {
    let db = state.store.db();
    if deliveries::find_event(db, &tenant.id, event_id)
        .await?
        .is_none()
    {
        return Err(Failure::not_found("event"));
    }
    let missing = if tenant.webhook_url.is_none() {
        Some("webhook_url")
    } else if tenant.webhook_secret_bytes().is_none_or(<[u8]>::is_empty) {
        Some("webhook_secret")
    } else {
        None
    };
    if let Some(field) = missing {
        return Err(Failure::new(
            FailureKind::Unprocessable,
            "webhook_not_configured",
            format!("the tenant has no {field}; set it in the tenant config, then redeliver"),
        )
        .field(field));
    }
    let (tenant_id, event_id) = (tenant.id.clone(), event_id.to_owned());
    state
        .store
        .write(move |txn| {
            Box::pin(
                async move { deliveries::redeliver(txn, &tenant_id, &event_id, Utc::now()).await },
            )
        })
        .await?
        .ok_or_else(|| Failure::not_found("event"))
}
