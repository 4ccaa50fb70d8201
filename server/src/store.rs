//! Order persistence and the one place provider events are applied: a single transaction that
//! deduplicates the event, compare-and-sets the order's status through core's transition table,
//! and writes the merchant webhook event.

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::order::{OrderEvent, OrderFlag, OrderStatus, Transition, TransitionError};
use paybridge_core::provider::PaymentEvent;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use crate::db::entities::{notification_attempt, order, outbox_event, provider_event};
use crate::views::OrderView;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// Stored data is not what the code wrote (a bug or manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// No such order for this tenant and provider.
    #[error("unknown order")]
    UnknownOrder,
    /// The event's amount differs from the order's.
    #[error("amount {got} does not match the order amount {expected}")]
    AmountMismatch {
        /// The order amount.
        expected: i64,
        /// The event amount.
        got: i64,
    },
    /// The transition table refuses the event.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The refund transition table refuses the reported status.
    #[error(transparent)]
    RefundTransition(#[from] paybridge_core::refund::RefundTransitionError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbErr> for ApplyError {
    fn from(e: DbErr) -> Self {
        ApplyError::Store(StoreError::Db(e))
    }
}

/// What applying an event did.
#[derive(Debug)]
pub enum Applied {
    /// The order changed.
    Changed(order::Model),
    /// The event was new but the order was already there (e.g. a query confirming a payment).
    Unchanged(order::Model),
    /// The same provider event was applied before; nothing changed.
    Duplicate(order::Model),
}

impl Applied {
    /// The order after the event.
    pub fn order(&self) -> &order::Model {
        match self {
            Applied::Changed(o) | Applied::Unchanged(o) | Applied::Duplicate(o) => o,
        }
    }
}

/// An order-level event to apply, with what the provider said.
#[derive(Debug, Clone)]
pub struct EventToApply<'a> {
    /// The provider's identity of the event, for deduplication.
    pub event_id: String,
    /// `payment`, `closed`, `failed`.
    pub kind: &'static str,
    /// What the state machine sees.
    pub event: OrderEvent,
    /// For payments: the verified payment.
    pub payment: Option<&'a PaymentEvent>,
    /// Whether it came from a provider notification (as opposed to a query or a merchant call).
    pub from_notification: bool,
    /// The raw facts, stored with the event.
    pub payload: serde_json::Value,
}

/// The fields of a new order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Tenant id.
    pub tenant_id: String,
    /// Provider kind.
    pub provider: String,
    /// Merchant order number.
    pub out_trade_no: String,
    /// Amount.
    pub amount: Fen,
    /// ISO currency code.
    pub currency: String,
    /// Description.
    pub description: String,
    /// Payer's openid.
    pub payer_openid: Option<String>,
    /// Client IP.
    pub client_ip: Option<String>,
    /// Attach.
    pub attach: Option<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// The outcome of inserting an order.
#[derive(Debug)]
pub enum Inserted {
    /// A new row.
    Created(order::Model),
    /// The tenant already has an order with this number.
    Existing(order::Model),
}

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
    txn: &sea_orm::DatabaseTransaction,
    ev: NewProviderEvent<'_>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let inserted = provider_event::Entity::insert(provider_event::ActiveModel {
        id: Set(Uuid::new_v4().to_string()),
        tenant_id: Set(ev.tenant_id.to_owned()),
        provider: Set(ev.provider.to_owned()),
        event_id: Set(ev.event_id.to_owned()),
        order_id: Set(ev.order_id.to_owned()),
        kind: Set(ev.kind.to_owned()),
        payload: Set(ev.payload.to_string()),
        received_at: Set(now),
    })
    .on_conflict_do_nothing_on([
        provider_event::Column::TenantId,
        provider_event::Column::Provider,
        provider_event::Column::EventId,
    ])
    .exec_without_returning(txn)
    .await?;
    // ON CONFLICT DO NOTHING reports a skipped row as zero rows inserted.
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
}

/// Write a merchant webhook event and schedule its delivery, in the caller's transaction (the
/// event exists exactly when the change it describes does).
pub(crate) async fn write_outbox(
    txn: &sea_orm::DatabaseTransaction,
    tenant_id: &str,
    order_id: &str,
    event_type: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let event_id = Uuid::new_v4().to_string();
    outbox_event::Entity::insert(outbox_event::ActiveModel {
        id: Set(event_id.clone()),
        tenant_id: Set(tenant_id.to_owned()),
        event_type: Set(event_type.to_owned()),
        order_id: Set(Some(order_id.to_owned())),
        data: Set(data.to_string()),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    crate::webhooks::deliveries::schedule_event(txn, &event_id, tenant_id, now).await?;
    Ok(())
}

/// Access to orders and events.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// Parse a stored status.
pub fn status_of(o: &order::Model) -> Result<OrderStatus, StoreError> {
    o.status.parse().map_err(StoreError::Corrupt)
}

/// Parse stored flags.
pub fn flags_of(o: &order::Model) -> Vec<String> {
    serde_json::from_str(&o.flags).unwrap_or_default()
}

impl Store {
    /// Wrap a connection.
    pub fn new(db: DatabaseConnection) -> Self {
        Store { db }
    }

    /// The connection, for health checks.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Find a tenant's order by number.
    pub async fn find_order(
        &self,
        tenant_id: &str,
        out_trade_no: &str,
    ) -> Result<Option<order::Model>, StoreError> {
        Ok(order::Entity::find()
            .filter(order::Column::TenantId.eq(tenant_id))
            .filter(order::Column::OutTradeNo.eq(out_trade_no))
            .one(&self.db)
            .await?)
    }

    /// Insert a pending order unless the tenant already has one with this number.
    pub async fn insert_order(&self, new: &NewOrder) -> Result<Inserted, StoreError> {
        let now = Utc::now();
        let model = order::ActiveModel {
            id: Set(Uuid::new_v4().to_string()),
            tenant_id: Set(new.tenant_id.clone()),
            out_trade_no: Set(new.out_trade_no.clone()),
            provider: Set(new.provider.clone()),
            amount: Set(new.amount.get()),
            currency: Set(new.currency.clone()),
            description: Set(new.description.clone()),
            payer_openid: Set(new.payer_openid.clone()),
            client_ip: Set(new.client_ip.clone()),
            attach: Set(new.attach.clone()),
            expires_at: Set(new.expires_at),
            status: Set(OrderStatus::Pending.as_str().to_owned()),
            flags: Set("[]".to_owned()),
            provider_trade_no: Set(None),
            refunded_amount: Set(0),
            paid_at: Set(None),
            client_payment: Set(None),
            provider_data: Set("{}".to_owned()),
            last_notified_at: Set(None),
            next_check_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let result = order::Entity::insert(model)
            .on_conflict_do_nothing_on([order::Column::TenantId, order::Column::OutTradeNo])
            .exec_without_returning(&self.db)
            .await?;
        let row = self
            .find_order(&new.tenant_id, &new.out_trade_no)
            .await?
            .ok_or_else(|| StoreError::Corrupt("order vanished after insert".to_owned()))?;
        // ON CONFLICT DO NOTHING reports a skipped row as zero rows inserted.
        Ok(match result {
            TryInsertResult::Inserted(n) if n > 0 => Inserted::Created(row),
            _ => Inserted::Existing(row),
        })
    }

    /// Store the client's payment params and the provider's data after a successful create.
    pub async fn set_client_payment(
        &self,
        order_id: &str,
        client_payment: &serde_json::Value,
        provider_data: &serde_json::Value,
    ) -> Result<order::Model, StoreError> {
        order::Entity::update_many()
            .col_expr(
                order::Column::ClientPayment,
                Expr::value(client_payment.to_string()),
            )
            .col_expr(
                order::Column::ProviderData,
                Expr::value(provider_data.to_string()),
            )
            .col_expr(order::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(order::Column::Id.eq(order_id))
            .exec(&self.db)
            .await?;
        order::Entity::find_by_id(order_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt("order vanished".to_owned()))
    }

    /// Delete an order that never reached the provider (its create was refused before any network
    /// call), so the merchant can fix the request and send it again.
    pub async fn delete_unsent_order(&self, order_id: &str) -> Result<(), StoreError> {
        order::Entity::delete_many()
            .filter(order::Column::Id.eq(order_id))
            .filter(order::Column::ClientPayment.is_null())
            .filter(order::Column::Status.eq(OrderStatus::Pending.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Apply one event to a tenant's order in one transaction. Doing it twice, or many times
    /// concurrently, changes the order once.
    pub async fn apply_event(
        &self,
        tenant_id: &str,
        provider: &str,
        out_trade_no: &str,
        ev: &EventToApply<'_>,
    ) -> Result<Applied, ApplyError> {
        // A compare-and-set that loses a race retries from a fresh read; the loser then sees the
        // winner's event or status.
        for _ in 0..8 {
            let txn = self.db.begin().await?;
            let Some(current) = order::Entity::find()
                .filter(order::Column::TenantId.eq(tenant_id))
                .filter(order::Column::OutTradeNo.eq(out_trade_no))
                .filter(order::Column::Provider.eq(provider))
                .one(&txn)
                .await?
            else {
                return Err(ApplyError::UnknownOrder);
            };
            if let Some(p) = ev.payment
                && p.amount.get() != current.amount
            {
                return Err(ApplyError::AmountMismatch {
                    expected: current.amount,
                    got: p.amount.get(),
                });
            }
            let now = Utc::now();
            let recorded = record_provider_event(
                &txn,
                NewProviderEvent {
                    tenant_id,
                    provider,
                    event_id: &ev.event_id,
                    order_id: &current.id,
                    kind: ev.kind,
                    payload: &ev.payload,
                },
                now,
            )
            .await?;
            if !recorded {
                txn.rollback().await?;
                return Ok(Applied::Duplicate(current));
            }
            let from = status_of(&current)?;
            let (to, flag) = match from.apply(ev.event)? {
                Transition::Unchanged => {
                    txn.commit().await?;
                    return Ok(Applied::Unchanged(current));
                }
                Transition::To { to, flag } => (to, flag),
            };
            let mut flags = flags_of(&current);
            if let Some(f) = flag
                && !flags.iter().any(|x| x == f.as_str())
            {
                flags.push(f.as_str().to_owned());
            }
            let mut update = order::Entity::update_many()
                .col_expr(order::Column::Status, Expr::value(to.as_str()))
                .col_expr(
                    order::Column::Flags,
                    Expr::value(serde_json::json!(flags).to_string()),
                )
                .col_expr(order::Column::UpdatedAt, Expr::value(now));
            if let Some(p) = ev.payment {
                update = update
                    .col_expr(
                        order::Column::ProviderTradeNo,
                        Expr::value(p.provider_trade_no.clone()),
                    )
                    .col_expr(order::Column::PaidAt, Expr::value(p.paid_at));
            }
            if ev.from_notification {
                update = update.col_expr(order::Column::LastNotifiedAt, Expr::value(now));
            }
            let done = update
                .filter(order::Column::Id.eq(current.id.clone()))
                .filter(order::Column::Status.eq(current.status.clone()))
                .exec(&txn)
                .await?;
            if done.rows_affected != 1 {
                txn.rollback().await?;
                continue;
            }
            let updated = order::Entity::find_by_id(current.id.clone())
                .one(&txn)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt("order vanished in its own transaction".to_owned())
                })?;
            let view = serde_json::to_value(OrderView::from_model(&updated)?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut types = vec![format!("order.{}", to.as_str())];
            if flag.is_some() {
                types.push("order.flagged".to_owned());
            }
            for event_type in types {
                write_outbox(&txn, tenant_id, &updated.id, &event_type, &view, now).await?;
            }
            txn.commit().await?;
            tracing::info!(
                tenant = tenant_id,
                out_trade_no,
                from = from.as_str(),
                to = to.as_str(),
                flag = flag.map(OrderFlag::as_str),
                "order transition"
            );
            return Ok(Applied::Changed(updated));
        }
        Err(ApplyError::Store(StoreError::Corrupt(
            "order kept changing under a compare-and-set".to_owned(),
        )))
    }

    /// When the reconciler may look at this order again. Not a change of the order (its
    /// `updated_at` stays).
    pub async fn defer_order(&self, order_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        order::Entity::update_many()
            .col_expr(order::Column::NextCheckAt, Expr::value(at))
            .filter(order::Column::Id.eq(order_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Record one received notification and what was decided.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_attempt(
        &self,
        tenant_id: &str,
        provider: &str,
        channel: &str,
        out_trade_no: Option<&str>,
        outcome: &str,
        reason: Option<&str>,
        body_sha256: &str,
    ) -> Result<(), StoreError> {
        notification_attempt::Entity::insert(notification_attempt::ActiveModel {
            id: Set(Uuid::new_v4().to_string()),
            tenant_id: Set(tenant_id.to_owned()),
            provider: Set(provider.to_owned()),
            channel: Set(channel.to_owned()),
            out_trade_no: Set(out_trade_no.map(str::to_owned)),
            outcome: Set(outcome.to_owned()),
            reason: Set(reason.map(str::to_owned)),
            body_sha256: Set(body_sha256.to_owned()),
            received_at: Set(Utc::now()),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Notification attempts of a tenant, newest last (for tests and operators).
    pub async fn attempts(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<notification_attempt::Model>, StoreError> {
        use sea_orm::QueryOrder;
        Ok(notification_attempt::Entity::find()
            .filter(notification_attempt::Column::TenantId.eq(tenant_id))
            .order_by_asc(notification_attempt::Column::ReceivedAt)
            .all(&self.db)
            .await?)
    }

    /// Provider events recorded for a tenant (each applied once).
    pub async fn provider_events(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<provider_event::Model>, StoreError> {
        Ok(provider_event::Entity::find()
            .filter(provider_event::Column::TenantId.eq(tenant_id))
            .all(&self.db)
            .await?)
    }

    /// Outbox events of a tenant, oldest first.
    pub async fn outbox(&self, tenant_id: &str) -> Result<Vec<outbox_event::Model>, StoreError> {
        use sea_orm::QueryOrder;
        Ok(outbox_event::Entity::find()
            .filter(outbox_event::Column::TenantId.eq(tenant_id))
            .order_by_asc(outbox_event::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }
}
