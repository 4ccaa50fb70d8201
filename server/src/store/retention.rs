//! Pruning of old attempt records: notification attempts and webhook delivery attempts. Each call
//! deletes at most one batch, oldest first, through the index on the row's time.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::StoreError;
use crate::db::entities::{notification_attempt, webhook_attempt};

/// Delete up to `limit` notification attempts received before `before`; returns how many.
pub async fn prune_notification_attempts<C: ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, StoreError> {
    use notification_attempt::Column as C;
    let batch = Query::select()
        .column(C::Id)
        .from(notification_attempt::Entity)
        .and_where(C::ReceivedAt.lt(before))
        .order_by(C::ReceivedAt, sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    let done = notification_attempt::Entity::delete_many()
        .filter(C::Id.in_subquery(batch))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// Delete up to `limit` webhook delivery attempts made before `before`; returns how many. The
/// delivery rows themselves (one per event, with its final status) stay.
pub async fn prune_webhook_attempts<C: ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, StoreError> {
    use webhook_attempt::Column as C;
    let batch = Query::select()
        .column(C::Id)
        .from(webhook_attempt::Entity)
        .and_where(C::At.lt(before))
        .order_by(C::At, sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    let done = webhook_attempt::Entity::delete_many()
        .filter(C::Id.in_subquery(batch))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}
