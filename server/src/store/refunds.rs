//! Refunds: creation under the order's refund limit, and refund status reports. A report that
//! succeeds a refund moves the order's refunded total through [`super::orders::change_order`],
//! in the same transaction.

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::order::OrderEvent;
use paybridge_core::refund::{RefundStatus, RefundTransition};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, TryInsertResult,
};

use super::StoreError;
use super::events::{NewProviderEvent, provider_event_exists, record_provider_event};
use super::orders::{ApplyError, Change, Facts, Guard, OrderChange, change_order, status_of};
use crate::db::entities::{order, refund};

/// The outcome of asking to create a refund.
#[derive(Debug)]
pub enum RefundInsert {
    /// A new refund row, `processing`, not yet sent.
    Created(refund::Model),
    /// The same `out_refund_no` exists for this order.
    Existing(refund::Model),
    /// Refunds that have not failed would exceed the order amount.
    ExceedsOrder {
        /// What is still refundable.
        refundable: i64,
    },
    /// The order has not been paid.
    OrderNotPaid(String),
}

/// A refund status report to apply.
#[derive(Debug, Clone)]
pub struct RefundUpdate {
    /// For deduplication.
    pub event_id: String,
    /// The reported status.
    pub status: RefundStatus,
    /// The provider's refund number, if reported.
    pub provider_refund_no: Option<String>,
    /// When it succeeded, if reported.
    pub succeeded_at: Option<DateTime<Utc>>,
    /// Whether the provider accepted the refund request (it was sent).
    pub sent: bool,
    /// The refund's amount as the provider reported it, if it did: it must be the recorded one.
    pub amount: Option<i64>,
    /// Raw facts for the event log.
    pub payload: serde_json::Value,
}

/// What applying a refund report did.
#[derive(Debug)]
pub struct RefundApplied {
    /// The refund after the report.
    pub refund: refund::Model,
    /// The refund's new status, when it changed.
    pub to: Option<RefundStatus>,
    /// The order's change (refunded total and status), when the refund succeeded.
    pub order_change: Option<OrderChange>,
}

/// The sum of some refunds' amounts, checked (an overflow is corrupt data, never a wrap).
fn total_of(refunds: &[refund::Model]) -> Result<Fen, StoreError> {
    refunds.iter().try_fold(Fen::ZERO, |sum, r| {
        sum.checked_add(Fen::new(r.amount))
            .ok_or_else(|| StoreError::Corrupt("refund amounts overflow".to_owned()))
    })
}

async fn lock_order(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    out_trade_no: &str,
) -> Result<Option<order::Model>, StoreError> {
    let mut q = order::Entity::find()
        .filter(order::Column::TenantId.eq(tenant_id))
        .filter(order::Column::OutTradeNo.eq(out_trade_no));
    // PostgreSQL: a row lock serialises refunds of one order. SQLite: the single writer already
    // serialises every write transaction.
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    Ok(super::unique(q, txn).await?)
}

/// A refund of a tenant's order.
pub async fn find_refund<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    out_trade_no: &str,
    out_refund_no: &str,
) -> Result<Option<refund::Model>, StoreError> {
    Ok(super::unique(
        refund::Entity::find()
            .filter(refund::Column::TenantId.eq(tenant_id))
            .filter(refund::Column::OutTradeNo.eq(out_trade_no))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no)),
        db,
    )
    .await?)
}

/// Refunds still `processing` (sent or not) that are due for a check at `now`, most overdue
/// first.
pub async fn open_refunds<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<refund::Model>, StoreError> {
    Ok(open_due(now, limit).all(db).await?)
}

/// The query of [`open_refunds`]: `processing` refunds due at `now`, most overdue first.
pub fn open_due(now: DateTime<Utc>, limit: u64) -> sea_orm::Select<refund::Entity> {
    use sea_orm::QueryOrder;
    refund::Entity::find()
        .filter(refund::Column::Status.eq(RefundStatus::Processing.as_str()))
        .filter(refund::Column::NextCheckAt.lte(now))
        .order_by_asc(refund::Column::NextCheckAt)
        .limit(limit)
}

/// When the reconciler may look at this refund again.
pub async fn defer_refund<C: ConnectionTrait>(
    db: &C,
    refund_id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    refund::Entity::update_many()
        .col_expr(refund::Column::NextCheckAt, Expr::value(at))
        .filter(refund::Column::Id.eq(refund_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Create a refund unless it exists, checking the order's limit in the same transaction: the
/// sum of refunds that have not failed never exceeds the order amount.
pub async fn insert_refund(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    out_trade_no: &str,
    out_refund_no: &str,
    amount: Fen,
    reason: Option<&str>,
) -> Result<RefundInsert, StoreError> {
    let Some(order) = lock_order(txn, tenant_id, out_trade_no).await? else {
        return Err(StoreError::Corrupt("refund of a vanished order".to_owned()));
    };
    let existing = super::unique(
        refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no)),
        txn,
    )
    .await?;
    if let Some(r) = existing {
        return Ok(RefundInsert::Existing(r));
    }
    let status = status_of(&order)?;
    if !status.is_paid() {
        return Ok(RefundInsert::OrderNotPaid(status.as_str().to_owned()));
    }
    let committed = total_of(
        &refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::Status.ne(RefundStatus::Failed.as_str()))
            .all(txn)
            .await?,
    )?
    .get();
    let refundable = order.amount - committed;
    if amount.get() > refundable {
        return Ok(RefundInsert::ExceedsOrder { refundable });
    }
    let now = super::now();
    let model = refund::Model {
        id: super::new_id(),
        tenant_id: tenant_id.to_owned(),
        order_id: order.id.clone(),
        out_trade_no: out_trade_no.to_owned(),
        out_refund_no: out_refund_no.to_owned(),
        amount: amount.get(),
        reason: reason.map(str::to_owned),
        status: RefundStatus::Processing.as_str().to_owned(),
        provider_refund_no: None,
        sent_at: None,
        next_check_at: Some(now),
        fee_returned: None,
        succeeded_at: None,
        created_at: now,
        updated_at: now,
    };
    let inserted = refund::Entity::insert(refund::ActiveModel::from(model.clone()))
        .on_conflict_do_nothing_on([refund::Column::OrderId, refund::Column::OutRefundNo])
        .exec_without_returning(txn)
        .await?;
    if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        return Ok(RefundInsert::Created(model));
    }
    let row = super::unique(
        refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no)),
        txn,
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("refund vanished after insert".to_owned()))?;
    Ok(RefundInsert::Existing(row))
}

/// Forget a refund the provider never received (refused before any network call).
pub async fn delete_unsent_refund(
    txn: &DatabaseTransaction,
    refund_id: &str,
) -> Result<(), StoreError> {
    refund::Entity::delete_many()
        .filter(refund::Column::Id.eq(refund_id))
        .filter(refund::Column::SentAt.is_null())
        .filter(refund::Column::Status.eq(RefundStatus::Processing.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Apply a refund status report: the refund through its table, and on success the order's
/// refunded total and status through [`change_order`], in the caller's transaction. Duplicates
/// change nothing. Every error but `Store` is raised before anything is written.
pub async fn apply_refund_update(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    provider: &str,
    out_trade_no: &str,
    out_refund_no: &str,
    update: &RefundUpdate,
) -> Result<RefundApplied, ApplyError> {
    let order = lock_order(txn, tenant_id, out_trade_no)
        .await?
        .ok_or(ApplyError::UnknownOrder)?;
    if order.provider != provider {
        return Err(ApplyError::UnknownOrder);
    }
    let current = super::unique(
        refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no)),
        txn,
    )
    .await?
    .ok_or(ApplyError::UnknownOrder)?;
    let unchanged = |refund: refund::Model| RefundApplied {
        refund,
        to: None,
        order_change: None,
    };
    // A report about this refund must agree with it: the amount, and the provider's refund
    // number once one is known. Anything else is another refund, or a lie; nothing changes.
    if let Some(got) = update.amount
        && got != current.amount
    {
        return Err(ApplyError::AmountMismatch {
            expected: current.amount,
            got,
        });
    }
    if let (Some(known), Some(reported)) = (
        current.provider_refund_no.as_deref(),
        update.provider_refund_no.as_deref(),
    ) && known != reported
    {
        return Err(ApplyError::RefundNoMismatch {
            known: known.to_owned(),
            reported: reported.to_owned(),
        });
    }
    let from: RefundStatus = current.status.parse().map_err(StoreError::Corrupt)?;
    let transition = match from.apply(update.status) {
        Ok(t) => t,
        Err(e) => {
            if provider_event_exists(txn, tenant_id, provider, &update.event_id).await? {
                return Ok(unchanged(current));
            }
            return Err(e.into());
        }
    };
    let now = super::now();
    let recorded = record_provider_event(
        txn,
        NewProviderEvent {
            tenant_id,
            provider,
            event_id: &update.event_id,
            order_id: &order.id,
            kind: "refund",
            payload: &update.payload,
        },
        now,
    )
    .await?;
    if !recorded {
        return Ok(unchanged(current));
    }
    let newly_sent = update.sent && current.sent_at.is_none();
    let new_refund_no = update
        .provider_refund_no
        .as_ref()
        .filter(|no| current.provider_refund_no.as_deref() != Some(no.as_str()));
    if transition == RefundTransition::Unchanged && !newly_sent && new_refund_no.is_none() {
        // A new report of what is already known: recorded, and nothing else changes, not even
        // `updated_at`.
        return Ok(unchanged(current));
    }
    let mut after = current.clone();
    after.updated_at = now;
    let mut changes =
        refund::Entity::update_many().col_expr(refund::Column::UpdatedAt, Expr::value(now));
    if newly_sent {
        after.sent_at = Some(now);
        changes = changes.col_expr(refund::Column::SentAt, Expr::value(now));
    }
    if let Some(no) = new_refund_no {
        after.provider_refund_no = Some(no.clone());
        changes = changes.col_expr(refund::Column::ProviderRefundNo, Expr::value(no.clone()));
    }
    let to = match transition {
        RefundTransition::Unchanged => None,
        RefundTransition::To(to) => {
            after.status = to.as_str().to_owned();
            changes = changes.col_expr(refund::Column::Status, Expr::value(to.as_str()));
            if to == RefundStatus::Succeeded {
                let at = update.succeeded_at.unwrap_or(now);
                after.succeeded_at = Some(at);
                changes = changes.col_expr(refund::Column::SucceededAt, Expr::value(at));
            }
            Some(to)
        }
    };
    let done = changes
        .filter(refund::Column::Id.eq(current.id.clone()))
        .filter(refund::Column::Status.eq(current.status.clone()))
        .exec(txn)
        .await?;
    if done.rows_affected != 1 {
        return Err(ApplyError::Store(StoreError::Corrupt(
            "refund changed under its row lock".to_owned(),
        )));
    }
    let order_change = if to == Some(RefundStatus::Succeeded) {
        add_refund_to_order(txn, &order, now).await?
    } else {
        None
    };
    Ok(RefundApplied {
        refund: after,
        to,
        order_change,
    })
}

/// Move the order's refunded total (and status) to the sum of its succeeded refunds.
async fn add_refund_to_order(
    txn: &DatabaseTransaction,
    order: &order::Model,
    now: DateTime<Utc>,
) -> Result<Option<OrderChange>, ApplyError> {
    let total = total_of(
        &refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::Status.eq(RefundStatus::Succeeded.as_str()))
            .all(txn)
            .await?,
    )?;
    let event = OrderEvent::RefundTotal {
        refunded_total: total,
        amount: Fen::new(order.amount),
    };
    // The refund limit keeps the total within the amount; a refusal here is corrupt data, and an
    // error of the whole write (the refund's own change above must not stand without it).
    let transition = status_of(order)?
        .apply(event)
        .map_err(|e| StoreError::Corrupt(format!("refunded total refused: {e}")))?;
    match change_order(
        txn,
        order,
        transition,
        event,
        &Facts::default(),
        Guard::Status,
        now,
    )
    .await?
    {
        Change::Changed(change) => Ok(Some(*change)),
        Change::Unchanged => Ok(None),
        Change::Lost => Err(ApplyError::Store(StoreError::Corrupt(
            "order changed under its row lock".to_owned(),
        ))),
    }
}
