//! Every notification received, accepted or not, and what was decided.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder,
};

use super::StoreError;
use crate::db::entities::notification_attempt;

/// One received notification.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// Tenant id of the notify URL.
    pub tenant_id: String,
    /// Provider kind of the notify URL.
    pub provider: String,
    /// `payment` or `refund`.
    pub channel: &'static str,
    /// The order it named, once verified.
    pub out_trade_no: Option<String>,
    /// `accepted`, `duplicate` (the same event was applied before) or `rejected`.
    pub outcome: &'static str,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The fixed code of why it was refused (`bad_signature`, `mismatch`, …).
    pub reason_code: Option<&'static str>,
    /// SHA-256 of the body, hex.
    pub body_sha256: String,
}

/// Record one received notification, in the transaction of what it changed.
pub async fn record_attempt(
    txn: &DatabaseTransaction,
    attempt: NewAttempt,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    static INSERT: super::cached::CachedInsert = super::cached::CachedInsert::new();
    let am = notification_attempt::ActiveModel {
        id: Set(super::new_id()),
        tenant_id: Set(attempt.tenant_id),
        provider: Set(attempt.provider),
        channel: Set(attempt.channel.to_owned()),
        out_trade_no: Set(attempt.out_trade_no),
        outcome: Set(attempt.outcome.to_owned()),
        reason: Set(attempt.reason),
        reason_code: Set(attempt.reason_code.map(str::to_owned)),
        body_sha256: Set(attempt.body_sha256),
        received_at: Set(now),
    };
    INSERT.exec(txn, am, &[]).await?;
    Ok(())
}

/// Notification attempts of a tenant, oldest first (for tests and operators).
pub async fn attempts<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
) -> Result<Vec<notification_attempt::Model>, StoreError> {
    Ok(notification_attempt::Entity::find()
        .filter(notification_attempt::Column::TenantId.eq(tenant_id))
        .order_by_asc(notification_attempt::Column::ReceivedAt)
        .all(db)
        .await?)
}
