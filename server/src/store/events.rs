//! Provider events (each applied once, keyed by the provider's own identity of it) and the
//! merchant outbox (each event written in the transaction of the change it describes).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder,
};

use super::StoreError;
use super::cached::CachedInsert;
use crate::db::entities::{outbox_event, provider_event};

/// A provider event to record under its own identity.
pub struct NewProviderEvent<'a> {
    /// Tenant id.
    pub tenant_id: &'a str,
    /// Provider kind.
    pub provider: &'a str,
    /// The provider's identity of the event.
    pub event_id: &'a str,
    /// The order it is about.
    pub order_id: &'a str,
    /// `payment`, `closed`, `refund`…
    pub kind: &'a str,
    /// The raw facts.
    pub payload: &'a serde_json::Value,
}

/// Record a provider event in `txn` unless the same (tenant, provider, event id) was recorded
/// before. Returns whether it is new; a duplicate must change nothing.
pub async fn record_provider_event(
    txn: &DatabaseTransaction,
    ev: NewProviderEvent<'_>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    static INSERT: CachedInsert = CachedInsert::new();
    use provider_event::Column as C;
    let am = provider_event::ActiveModel {
        id: Set(super::new_id()),
        tenant_id: Set(ev.tenant_id.to_owned()),
        provider: Set(ev.provider.to_owned()),
        event_id: Set(ev.event_id.to_owned()),
        order_id: Set(ev.order_id.to_owned()),
        kind: Set(ev.kind.to_owned()),
        payload: Set(ev.payload.to_string()),
        received_at: Set(now),
    };
    let inserted = INSERT
        .exec(txn, am, &[C::TenantId, C::Provider, C::EventId])
        .await?;
    // ON CONFLICT DO NOTHING reports a skipped row as zero rows inserted.
    Ok(inserted > 0)
}

/// Whether this provider event was recorded.
pub async fn provider_event_exists<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    provider: &str,
    event_id: &str,
) -> Result<bool, StoreError> {
    Ok(provider_event::Entity::find()
        .filter(provider_event::Column::TenantId.eq(tenant_id))
        .filter(provider_event::Column::Provider.eq(provider))
        .filter(provider_event::Column::EventId.eq(event_id))
        .count(db)
        .await?
        > 0)
}

/// Remove an event recorded earlier in this transaction (its change lost a race and is retried).
pub async fn forget_provider_event(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    provider: &str,
    event_id: &str,
) -> Result<(), StoreError> {
    provider_event::Entity::delete_many()
        .filter(provider_event::Column::TenantId.eq(tenant_id))
        .filter(provider_event::Column::Provider.eq(provider))
        .filter(provider_event::Column::EventId.eq(event_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Write a merchant webhook event (`data` is its JSON) and schedule its delivery, in the caller's
/// transaction (the event exists exactly when the change it describes does).
pub async fn write_outbox(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    order_id: &str,
    event_type: &str,
    data: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    insert_event(txn, tenant_id, Some(order_id), event_type, data, now).await
}

/// Insert an event and schedule its delivery.
async fn insert_event(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    order_id: Option<&str>,
    event_type: &str,
    data: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    static INSERT: CachedInsert = CachedInsert::new();
    let event_id = super::new_id();
    let am = outbox_event::ActiveModel {
        id: Set(event_id.clone()),
        tenant_id: Set(tenant_id.to_owned()),
        event_type: Set(event_type.to_owned()),
        order_id: Set(order_id.map(str::to_owned)),
        data: Set(data.to_owned()),
        created_at: Set(now),
    };
    INSERT.exec(txn, am, &[]).await?;
    super::deliveries::schedule_event(txn, &event_id, tenant_id, now).await?;
    Ok(())
}

/// Write a merchant event about no order (e.g. `statement.reconciled`) and schedule it.
pub async fn write_tenant_event(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    event_type: &str,
    data: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    insert_event(txn, tenant_id, None, event_type, data, now).await
}

/// Provider events recorded for a tenant (each applied once).
pub async fn provider_events<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
) -> Result<Vec<provider_event::Model>, StoreError> {
    Ok(provider_event::Entity::find()
        .filter(provider_event::Column::TenantId.eq(tenant_id))
        .all(db)
        .await?)
}

/// Outbox events of a tenant, oldest first.
pub async fn outbox<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
) -> Result<Vec<outbox_event::Model>, StoreError> {
    Ok(outbox_event::Entity::find()
        .filter(outbox_event::Column::TenantId.eq(tenant_id))
        .order_by_asc(outbox_event::Column::CreatedAt)
        .all(db)
        .await?)
}
