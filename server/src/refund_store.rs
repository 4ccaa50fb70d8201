//! Refund persistence: creation under the order's refund limit, and applying refund status reports
//! (with the order's refunded total) in one transaction.

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::order::{OrderEvent, Transition};
use paybridge_core::refund::{RefundStatus, RefundTransition};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QuerySelect, TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use crate::db::entities::{order, refund};
use crate::store::{
    ApplyError, NewProviderEvent, Store, StoreError, record_provider_event, status_of, write_outbox,
};
use crate::views::{OrderView, RefundView};

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
    /// Raw facts for the event log.
    pub payload: serde_json::Value,
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
    // PostgreSQL: a row lock serialises refunds of one order. SQLite: the single connection
    // already serialises every transaction.
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    Ok(q.one(txn).await?)
}

impl Store {
    /// Find a refund of a tenant's order.
    pub async fn find_refund(
        &self,
        tenant_id: &str,
        out_trade_no: &str,
        out_refund_no: &str,
    ) -> Result<Option<refund::Model>, StoreError> {
        Ok(refund::Entity::find()
            .filter(refund::Column::TenantId.eq(tenant_id))
            .filter(refund::Column::OutTradeNo.eq(out_trade_no))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no))
            .one(self.db())
            .await?)
    }

    /// Refunds still `processing` (sent or not) that are due for a check at `now`, oldest first.
    pub async fn open_refunds(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<refund::Model>, StoreError> {
        use sea_orm::{Condition, QueryOrder};
        Ok(refund::Entity::find()
            .filter(refund::Column::Status.eq(RefundStatus::Processing.as_str()))
            .filter(
                Condition::any()
                    .add(refund::Column::NextCheckAt.is_null())
                    .add(refund::Column::NextCheckAt.lte(now)),
            )
            .order_by_asc(refund::Column::CreatedAt)
            .limit(limit)
            .all(self.db())
            .await?)
    }

    /// When the reconciler may look at this refund again.
    pub async fn defer_refund(&self, refund_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        refund::Entity::update_many()
            .col_expr(refund::Column::NextCheckAt, Expr::value(at))
            .filter(refund::Column::Id.eq(refund_id))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Create a refund unless it exists, checking the order's limit in the same transaction: the
    /// sum of refunds that have not failed never exceeds the order amount.
    pub async fn insert_refund(
        &self,
        tenant_id: &str,
        out_trade_no: &str,
        out_refund_no: &str,
        amount: Fen,
        reason: Option<&str>,
    ) -> Result<RefundInsert, StoreError> {
        let txn = self.db().begin().await?;
        let Some(order) = lock_order(&txn, tenant_id, out_trade_no).await? else {
            return Err(StoreError::Corrupt("refund of a vanished order".to_owned()));
        };
        let existing = refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no))
            .one(&txn)
            .await?;
        if let Some(r) = existing {
            txn.commit().await?;
            return Ok(RefundInsert::Existing(r));
        }
        let status = status_of(&order)?;
        if !status.is_paid() {
            txn.commit().await?;
            return Ok(RefundInsert::OrderNotPaid(status.as_str().to_owned()));
        }
        let committed = total_of(
            &refund::Entity::find()
                .filter(refund::Column::OrderId.eq(order.id.clone()))
                .filter(refund::Column::Status.ne(RefundStatus::Failed.as_str()))
                .all(&txn)
                .await?,
        )?
        .get();
        let refundable = order.amount - committed;
        if amount.get() > refundable {
            txn.commit().await?;
            return Ok(RefundInsert::ExceedsOrder { refundable });
        }
        let now = Utc::now();
        let model = refund::ActiveModel {
            id: Set(Uuid::new_v4().to_string()),
            tenant_id: Set(tenant_id.to_owned()),
            order_id: Set(order.id.clone()),
            out_trade_no: Set(out_trade_no.to_owned()),
            out_refund_no: Set(out_refund_no.to_owned()),
            amount: Set(amount.get()),
            reason: Set(reason.map(str::to_owned)),
            status: Set(RefundStatus::Processing.as_str().to_owned()),
            provider_refund_no: Set(None),
            sent_at: Set(None),
            next_check_at: Set(None),
            succeeded_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = refund::Entity::insert(model)
            .on_conflict_do_nothing_on([refund::Column::OrderId, refund::Column::OutRefundNo])
            .exec_without_returning(&txn)
            .await?;
        let row = refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no))
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("refund vanished after insert".to_owned()))?;
        txn.commit().await?;
        Ok(match inserted {
            TryInsertResult::Inserted(n) if n > 0 => RefundInsert::Created(row),
            _ => RefundInsert::Existing(row),
        })
    }

    /// Forget a refund the provider never received (refused before any network call).
    pub async fn delete_unsent_refund(&self, refund_id: &str) -> Result<(), StoreError> {
        refund::Entity::delete_many()
            .filter(refund::Column::Id.eq(refund_id))
            .filter(refund::Column::SentAt.is_null())
            .filter(refund::Column::Status.eq(RefundStatus::Processing.as_str()))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Apply a refund status report: the refund through its table, and on success the order's
    /// refunded total and status through the order table, with webhook events, in one
    /// transaction. Duplicates change nothing.
    pub async fn apply_refund_update(
        &self,
        tenant_id: &str,
        provider: &str,
        out_trade_no: &str,
        out_refund_no: &str,
        update: &RefundUpdate,
    ) -> Result<refund::Model, ApplyError> {
        let txn = self.db().begin().await?;
        let order = lock_order(&txn, tenant_id, out_trade_no)
            .await?
            .ok_or(ApplyError::UnknownOrder)?;
        if order.provider != provider {
            return Err(ApplyError::UnknownOrder);
        }
        let current = refund::Entity::find()
            .filter(refund::Column::OrderId.eq(order.id.clone()))
            .filter(refund::Column::OutRefundNo.eq(out_refund_no))
            .one(&txn)
            .await?
            .ok_or(ApplyError::UnknownOrder)?;
        let now = Utc::now();
        let recorded = record_provider_event(
            &txn,
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
            txn.rollback().await?;
            return Ok(current);
        }
        let from: RefundStatus = current.status.parse().map_err(StoreError::Corrupt)?;
        let transition = from.apply(update.status)?;
        let newly_sent = update.sent && current.sent_at.is_none();
        let new_refund_no = update
            .provider_refund_no
            .as_ref()
            .filter(|no| current.provider_refund_no.as_deref() != Some(no.as_str()));
        if transition == RefundTransition::Unchanged && !newly_sent && new_refund_no.is_none() {
            // A new report of what is already known: recorded, and nothing else changes, not
            // even `updated_at`.
            txn.commit().await?;
            return Ok(current);
        }
        let mut changes =
            refund::Entity::update_many().col_expr(refund::Column::UpdatedAt, Expr::value(now));
        if newly_sent {
            changes = changes.col_expr(refund::Column::SentAt, Expr::value(now));
        }
        if let Some(no) = new_refund_no {
            changes = changes.col_expr(refund::Column::ProviderRefundNo, Expr::value(no.clone()));
        }
        let to = match transition {
            RefundTransition::Unchanged => None,
            RefundTransition::To(to) => {
                changes = changes.col_expr(refund::Column::Status, Expr::value(to.as_str()));
                if to == RefundStatus::Succeeded {
                    changes = changes.col_expr(
                        refund::Column::SucceededAt,
                        Expr::value(update.succeeded_at.unwrap_or(now)),
                    );
                }
                Some(to)
            }
        };
        let done = changes
            .filter(refund::Column::Id.eq(current.id.clone()))
            .filter(refund::Column::Status.eq(current.status.clone()))
            .exec(&txn)
            .await?;
        if done.rows_affected != 1 {
            txn.rollback().await?;
            return Err(ApplyError::Store(StoreError::Corrupt(
                "refund changed under its row lock".to_owned(),
            )));
        }
        let updated = refund::Entity::find_by_id(current.id.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("refund vanished".to_owned()))?;
        if let Some(to) = to {
            let refund_view =
                serde_json::to_value(RefundView::from_model(&updated)).unwrap_or_default();
            write_outbox(
                &txn,
                tenant_id,
                &order.id,
                &format!("refund.{}", to.as_str()),
                &refund_view,
                now,
            )
            .await?;
            if to == RefundStatus::Succeeded {
                self.add_refund_to_order(&txn, tenant_id, &order, now)
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(updated)
    }

    async fn add_refund_to_order(
        &self,
        txn: &DatabaseTransaction,
        tenant_id: &str,
        order: &order::Model,
        now: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let total = total_of(
            &refund::Entity::find()
                .filter(refund::Column::OrderId.eq(order.id.clone()))
                .filter(refund::Column::Status.eq(RefundStatus::Succeeded.as_str()))
                .all(txn)
                .await?,
        )?
        .get();
        let from = status_of(order)?;
        let event = OrderEvent::RefundTotal {
            refunded_total: Fen::new(total),
            amount: Fen::new(order.amount),
        };
        let mut update = order::Entity::update_many()
            .col_expr(order::Column::RefundedAmount, Expr::value(total))
            .col_expr(order::Column::UpdatedAt, Expr::value(now));
        let new_status = match from.apply(event)? {
            Transition::Unchanged => None,
            Transition::To { to, .. } => {
                update = update.col_expr(order::Column::Status, Expr::value(to.as_str()));
                Some(to)
            }
        };
        let done = update
            .filter(order::Column::Id.eq(order.id.clone()))
            .filter(order::Column::Status.eq(order.status.clone()))
            .exec(txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(ApplyError::Store(StoreError::Corrupt(
                "order changed under its row lock".to_owned(),
            )));
        }
        if let Some(to) = new_status {
            let updated = order::Entity::find_by_id(order.id.clone())
                .one(txn)
                .await?
                .ok_or_else(|| StoreError::Corrupt("order vanished".to_owned()))?;
            let view = serde_json::to_value(OrderView::from_model(&updated)?).unwrap_or_default();
            write_outbox(
                txn,
                tenant_id,
                &order.id,
                &format!("order.{}", to.as_str()),
                &view,
                now,
            )
            .await?;
        }
        Ok(())
    }
}
