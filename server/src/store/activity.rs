//! Order activity that no other table keeps: the provider calls made about an order and what the
//! reconciler did with it. Written in batches (see `usecases::activity`); read by the console.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::StoreError;
use crate::db::entities::order_activity;

/// One entry to write.
#[derive(Debug, Clone)]
pub struct NewActivity {
    /// The order's tenant.
    pub tenant_id: String,
    /// The order.
    pub out_trade_no: String,
    /// `provider_call` or `reconciler`.
    pub kind: &'static str,
    /// The provider call's endpoint or the reconciler's action.
    pub name: &'static str,
    /// A provider call's outcome: `ok`, `error` or `timeout`.
    pub outcome: Option<&'static str>,
    /// A provider call's duration.
    pub latency_ms: Option<i64>,
    /// A failed provider call's error code.
    pub error: Option<&'static str>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// At most this many entries wait for the next batch.
const MAX_PENDING: usize = 10_000;
/// The buffer of entries not yet written (the use cases fill it, a worker writes it in batches).
#[derive(Default)]
pub struct ActivityLog {
    pending: Mutex<Vec<NewActivity>>,
}

impl ActivityLog {
    /// Keep an entry for the next batch; `false` if the buffer is full (it is dropped).
    pub fn push(&self, entry: NewActivity) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        if pending.len() >= MAX_PENDING {
            return false;
        }
        pending.push(entry);
        true
    }

    pub fn take(&self) -> Vec<NewActivity> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// Write a batch of entries in `txn`, one `INSERT` each: one statement text, prepared once and
/// reused from the connection's cache (a multi-row `INSERT` of each batch's size would be a new
/// statement every time, and the cache would keep the large ones).
pub async fn insert_all(
    txn: &DatabaseTransaction,
    rows: Vec<NewActivity>,
) -> Result<(), StoreError> {
    for a in rows {
        order_activity::Entity::insert(order_activity::ActiveModel {
            id: Set(super::new_id()),
            tenant_id: Set(a.tenant_id),
            out_trade_no: Set(a.out_trade_no),
            kind: Set(a.kind.to_owned()),
            name: Set(a.name.to_owned()),
            outcome: Set(a.outcome.map(str::to_owned)),
            latency_ms: Set(a.latency_ms),
            error: Set(a.error.map(str::to_owned)),
            at: Set(a.at),
        })
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// An order's entries, oldest first (at most `limit`).
pub async fn for_order<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    out_trade_no: &str,
    limit: u64,
) -> Result<Vec<order_activity::Model>, StoreError> {
    Ok(order_activity::Entity::find()
        .filter(order_activity::Column::TenantId.eq(tenant_id))
        .filter(order_activity::Column::OutTradeNo.eq(out_trade_no))
        .order_by_asc(order_activity::Column::At)
        .limit(limit)
        .all(db)
        .await?)
}
