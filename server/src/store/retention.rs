//! Pruning of old attempt records: notification attempts and webhook delivery attempts. Each call
//! deletes at most one batch, oldest first, through the index on the row's time.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, DeleteMany, EntityTrait, QueryFilter};

use super::StoreError;
use crate::db::entities::{notification_attempt, order_activity, webhook_attempt};

/// One batch of notification attempts received before `before`, oldest first.
pub fn notification_attempts_batch(
    before: DateTime<Utc>,
    limit: u64,
) -> DeleteMany<notification_attempt::Entity> {
    use notification_attempt::Column as C;
    let batch = Query::select()
        .column(C::Id)
        .from(notification_attempt::Entity)
        .and_where(C::ReceivedAt.lt(before))
        .order_by(C::ReceivedAt, sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    notification_attempt::Entity::delete_many().filter(C::Id.in_subquery(batch))
}

/// Delete up to `limit` notification attempts received before `before`; returns how many.
pub async fn prune_notification_attempts<C: ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, StoreError> {
    let done = notification_attempts_batch(before, limit).exec(db).await?;
    Ok(done.rows_affected)
}

/// One batch of webhook delivery attempts made before `before`, oldest first.
pub fn webhook_attempts_batch(
    before: DateTime<Utc>,
    limit: u64,
) -> DeleteMany<webhook_attempt::Entity> {
    use webhook_attempt::Column as C;
    let batch = Query::select()
        .column(C::Id)
        .from(webhook_attempt::Entity)
        .and_where(C::At.lt(before))
        .order_by(C::At, sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    webhook_attempt::Entity::delete_many().filter(C::Id.in_subquery(batch))
}

/// Delete up to `limit` webhook delivery attempts made before `before`; returns how many. The
/// delivery rows themselves (one per event, with its final status) stay.
pub async fn prune_webhook_attempts<C: ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, StoreError> {
    let done = webhook_attempts_batch(before, limit).exec(db).await?;
    Ok(done.rows_affected)
}

/// One batch of order activity entries from before `before`, oldest first.
pub fn order_activity_batch(
    before: DateTime<Utc>,
    limit: u64,
) -> DeleteMany<order_activity::Entity> {
    use order_activity::Column as C;
    let batch = Query::select()
        .column(C::Id)
        .from(order_activity::Entity)
        .and_where(C::At.lt(before))
        .order_by(C::At, sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    order_activity::Entity::delete_many().filter(C::Id.in_subquery(batch))
}

/// Delete up to `limit` order activity entries from before `before`; returns how many.
pub async fn prune_order_activity<C: ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, StoreError> {
    let done = order_activity_batch(before, limit).exec(db).await?;
    Ok(done.rows_affected)
}
