//! Orders, and where an order changes.
//!
//! [`change_order`] is the only code that writes an order's `status`: payments, closes, failures
//! and refund totals all go through it. It applies core's transition table and compare-and-sets
//! the status it read (the whole viewed row, for a row read before the transaction: [`Guard`]),
//! so a change made meanwhile by someone else is never overwritten. It returns the change; the
//! use cases turn that into the merchant's webhook events.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::order::{OrderEvent, OrderFlag, OrderStatus, Transition, TransitionError};
use paybridge_core::provider::PaymentEvent;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryTrait, Statement,
};

use super::StoreError;
use super::events::{NewProviderEvent, provider_event_exists, record_provider_event};
use crate::db::entities::{order, order_fee};

/// Why an event could not be applied. Every variant but `Store` is raised before anything was
/// written, so the caller's transaction can go on (e.g. to record the refused notification).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// No such order (or refund) for this tenant and provider.
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
    /// A refund report names another provider refund number than the one recorded.
    #[error("refund number {reported} does not match the recorded {known}")]
    RefundNoMismatch {
        /// The recorded `provider_refund_no`.
        known: String,
        /// The reported one.
        reported: String,
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

/// An order's change of state, as written.
#[derive(Debug, Clone)]
pub struct OrderChange {
    /// The status before.
    pub from: OrderStatus,
    /// The status after (the same as `from` when only the refunded total moved).
    pub to: OrderStatus,
    /// The flag this change added, if any.
    pub flag: Option<OrderFlag>,
    /// The order after the change.
    pub order: order::Model,
}

impl OrderChange {
    /// Whether the status itself changed.
    pub fn status_changed(&self) -> bool {
        self.from != self.to
    }
}

/// What applying an event did.
#[derive(Debug)]
pub enum Applied {
    /// The order changed.
    Changed(OrderChange),
    /// The event was new but the order was already there (e.g. a query confirming a payment).
    Unchanged(order::Model),
    /// The same provider event was applied before; nothing changed.
    Duplicate(order::Model),
}

impl Applied {
    /// The order after the event.
    pub fn order(&self) -> &order::Model {
        match self {
            Applied::Changed(c) => &c.order,
            Applied::Unchanged(o) | Applied::Duplicate(o) => o,
        }
    }
}

/// An order-level event to apply, with what the provider said.
#[derive(Debug, Clone)]
pub struct EventToApply {
    /// The provider's identity of the event, for deduplication.
    pub event_id: String,
    /// `payment`, `closed`, `failed`.
    pub kind: &'static str,
    /// What the state machine sees.
    pub event: OrderEvent,
    /// For payments: the verified payment.
    pub payment: Option<PaymentEvent>,
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

impl NewOrder {
    /// "The same request" compares provider, amount, currency, description, payer and attach.
    pub fn same_as(&self, o: &order::Model) -> bool {
        o.provider == self.provider
            && o.amount == self.amount.get()
            && o.currency == self.currency
            && o.description == self.description
            && o.payer_openid == self.payer_openid
            && o.attach == self.attach
    }
}

/// What the provider issued for an order: the client's payment params and its own data.
#[derive(Debug, Clone)]
pub struct ClientPayment {
    /// What the client app needs to pay.
    pub client_payment: serde_json::Value,
    /// What the provider keeps with the order.
    pub provider_data: serde_json::Value,
}

/// The outcome of inserting an order.
#[derive(Debug)]
pub enum Inserted {
    /// A new row.
    Created(order::Model),
    /// The tenant already has an order with this number (as it is now).
    Existing(order::Model),
}

/// Parse a stored status.
pub fn status_of(o: &order::Model) -> Result<OrderStatus, StoreError> {
    o.status.parse().map_err(StoreError::Corrupt)
}

/// Parse stored flags.
pub fn flags_of(o: &order::Model) -> Vec<String> {
    serde_json::from_str(&o.flags).unwrap_or_default()
}

/// The query of a tenant's order by number.
pub fn find_by_number(tenant_id: &str, out_trade_no: &str) -> sea_orm::Select<order::Entity> {
    order::Entity::find()
        .filter(order::Column::TenantId.eq(tenant_id))
        .filter(order::Column::OutTradeNo.eq(out_trade_no))
}

/// A tenant's order by number. The hottest read (every notification, every call about an
/// order): its SQL is [`find_by_number`]'s, built once per backend instead of on every call,
/// and read as a raw statement (`Entity::find()` would build the whole select of every column
/// first, only to have it replaced: 20 000 instructions a call, 3 % of a notification's).
pub async fn find_order<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    out_trade_no: &str,
) -> Result<Option<order::Model>, StoreError> {
    let backend = db.get_database_backend();
    let by_number = Statement::from_sql_and_values(
        backend,
        by_number_sql(backend),
        [tenant_id.into(), out_trade_no.into()],
    );
    Ok(order::Model::find_by_statement(by_number).one(db).await?)
}

/// [`find_order`] on SQLite, for the read connections' own callers ([`super::Store::find_order`]):
/// the row is decoded where SQLite holds it, by place, instead of through sea-orm's row of
/// named values (a map of the 23 columns built, then searched by name). `bench/callgrind.sh`:
/// 616 000 → 535 000 instructions a notification.
pub(crate) fn find_order_sqlite(
    readers: &crate::db::sqlite::ReadProxy,
    tenant_id: &str,
    out_trade_no: &str,
) -> Result<Option<order::Model>, StoreError> {
    // Every column of `order::Model`, in its fields' order (the order of `order::Column`):
    // `order_at` reads them by place.
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        use sea_orm::{IdenStatic, Iterable};
        let columns: Vec<String> = order::Column::iter()
            .map(|c| format!("\"{}\"", c.as_str()))
            .collect();
        format!(
            "SELECT {} FROM \"orders\" WHERE \"tenant_id\" = ? AND \"out_trade_no\" = ? LIMIT 1",
            columns.join(", ")
        )
    });
    let st = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql.as_str(),
        [tenant_id.into(), out_trade_no.into()],
    );
    let mut found = None;
    readers.for_each_row(&st, |row| {
        found = Some(order_at(&crate::db::sqlite::Cells(row))?);
        Ok(false)
    })?;
    Ok(found)
}

/// An order from the cells of [`find_order_sqlite`]'s select.
fn order_at(c: &crate::db::sqlite::Cells<'_, '_>) -> Result<order::Model, DbErr> {
    Ok(order::Model {
        id: c.text(0)?,
        tenant_id: c.text(1)?,
        out_trade_no: c.text(2)?,
        provider: c.text(3)?,
        amount: c.int(4)?,
        currency: c.text(5)?,
        description: c.text(6)?,
        payer_openid: c.opt_text(7)?,
        client_ip: c.opt_text(8)?,
        attach: c.opt_text(9)?,
        expires_at: c.time(10)?,
        status: c.text(11)?,
        flags: c.text(12)?,
        provider_trade_no: c.opt_text(13)?,
        refunded_amount: c.int(14)?,
        paid_at: c.opt_time(15)?,
        client_payment: c.opt_text(16)?,
        provider_data: c.text(17)?,
        last_notified_at: c.opt_time(18)?,
        created_at: c.time(19)?,
        next_check_at: c.opt_time(20)?,
        updated_at: c.time(21)?,
    })
}

/// An order's fee (fen), once its statement is reconciled (`order_fees`, beside the order's row).
pub async fn order_fee<C: ConnectionTrait>(
    db: &C,
    order_id: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(order_fee::Entity::find_by_id(order_id.to_owned())
        .one(db)
        .await?
        .map(|f| f.fee))
}

/// The fees of these orders that have one, by order id.
pub async fn order_fees<C: ConnectionTrait>(
    db: &C,
    order_ids: impl IntoIterator<Item = String>,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    Ok(order_fee::Entity::find()
        .filter(order_fee::Column::OrderId.is_in(order_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|f| (f.order_id, f.fee))
        .collect())
}

/// [`find_by_number`]'s SQL on `backend`, its two values bound in the same order.
fn by_number_sql(backend: DbBackend) -> String {
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<String> = OnceLock::new();
    let build = || find_by_number("", "").build(backend).sql;
    match backend {
        DbBackend::Sqlite => SQLITE.get_or_init(build).clone(),
        DbBackend::Postgres => POSTGRES.get_or_init(build).clone(),
        _ => build(),
    }
}

/// Insert an order unless the tenant already has one with this number. With `issued`, the order
/// is stored with the provider's client params in the same write; an existing order of the same
/// request that has none yet gets these.
pub async fn insert_order(
    txn: &DatabaseTransaction,
    new: &NewOrder,
    issued: Option<&ClientPayment>,
    now: DateTime<Utc>,
) -> Result<Inserted, StoreError> {
    let model = order::Model {
        id: super::new_id(),
        tenant_id: new.tenant_id.clone(),
        out_trade_no: new.out_trade_no.clone(),
        provider: new.provider.clone(),
        amount: new.amount.get(),
        currency: new.currency.clone(),
        description: new.description.clone(),
        payer_openid: new.payer_openid.clone(),
        client_ip: new.client_ip.clone(),
        attach: new.attach.clone(),
        expires_at: new.expires_at,
        status: OrderStatus::Pending.as_str().to_owned(),
        flags: "[]".to_owned(),
        provider_trade_no: None,
        refunded_amount: 0,
        paid_at: None,
        client_payment: issued.map(|i| i.client_payment.to_string()),
        provider_data: issued.map_or_else(|| "{}".to_owned(), |i| i.provider_data.to_string()),
        last_notified_at: None,
        // Due at once; the reconciler's scans filter on age, and move it on when they look.
        next_check_at: Some(now),
        created_at: now,
        updated_at: now,
    };
    static INSERT: super::cached::CachedInsert = super::cached::CachedInsert::new();
    let inserted = INSERT
        .exec(
            txn,
            order::ActiveModel::from(model.clone()),
            &[order::Column::TenantId, order::Column::OutTradeNo],
        )
        .await?;
    // ON CONFLICT DO NOTHING reports a skipped row as zero rows inserted.
    if inserted > 0 {
        return Ok(Inserted::Created(model));
    }
    let existing = find_order(txn, &new.tenant_id, &new.out_trade_no)
        .await?
        .ok_or_else(|| StoreError::Corrupt("order vanished after insert".to_owned()))?;
    match issued {
        Some(issued)
            if existing.client_payment.is_none()
                && new.same_as(&existing)
                && existing.status == OrderStatus::Pending.as_str() =>
        {
            Ok(Inserted::Existing(
                set_client_payment(txn, &existing, issued, now).await?,
            ))
        }
        _ => Ok(Inserted::Existing(existing)),
    }
}

/// Store the client's payment params and the provider's data after a successful create, and
/// return the row as it is now (a payment may have arrived since `current` was read).
pub async fn set_client_payment(
    txn: &DatabaseTransaction,
    current: &order::Model,
    issued: &ClientPayment,
    now: DateTime<Utc>,
) -> Result<order::Model, StoreError> {
    order::Entity::update_many()
        .col_expr(
            order::Column::ClientPayment,
            Expr::value(issued.client_payment.to_string()),
        )
        .col_expr(
            order::Column::ProviderData,
            Expr::value(issued.provider_data.to_string()),
        )
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.eq(current.id.clone()))
        .exec(txn)
        .await?;
    super::unique(order::Entity::find_by_id(current.id.clone()), txn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("order vanished in its own transaction".to_owned()))
}

/// Pending orders due for a reconciler check at `now`, most overdue first. With `quiet_since`,
/// only those created by then that never had a notification and have not expired (to query);
/// without, those that expired by `now` (to close).
pub fn pending_due(
    now: DateTime<Utc>,
    quiet_since: Option<DateTime<Utc>>,
    limit: u64,
) -> sea_orm::Select<order::Entity> {
    use sea_orm::{QueryOrder, QuerySelect};
    let q = order::Entity::find()
        .filter(super::status_is(
            order::Column::Status,
            OrderStatus::Pending.as_str(),
        ))
        .filter(order::Column::NextCheckAt.lte(now));
    let q = match quiet_since {
        Some(since) => q
            .filter(order::Column::CreatedAt.lte(since))
            .filter(order::Column::LastNotifiedAt.is_null())
            .filter(order::Column::ExpiresAt.gt(now)),
        None => q.filter(order::Column::ExpiresAt.lte(now)),
    };
    q.order_by_asc(order::Column::NextCheckAt).limit(limit)
}

/// When the reconciler may look at this order again. Not a change of the order (its
/// `updated_at` stays).
pub async fn defer_order<C: ConnectionTrait>(
    db: &C,
    order_id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    order::Entity::update_many()
        .col_expr(order::Column::NextCheckAt, Expr::value(at))
        .filter(order::Column::Id.eq(order_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Apply one provider event to a tenant's order: deduplicate it by the provider's identity, then
/// change the order. Doing it twice, or many times concurrently, changes the order once.
///
/// `read_before` is the order as the caller read it before the transaction (a notification's
/// verification reads it on a read connection). It spares the transaction its own read only when
/// it leads to a write whose compare-and-set proves it still current ([`Guard::Row`]); any
/// other outcome (a refusal, a duplicate, no change, a lost compare-and-set) is decided again
/// from a read in the transaction, so a stale row never decides anything.
pub async fn apply_order_event(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    provider: &str,
    out_trade_no: &str,
    ev: &EventToApply,
    read_before: Option<&order::Model>,
) -> Result<Applied, ApplyError> {
    let mut read_before = read_before.filter(|o| {
        o.tenant_id == tenant_id && o.out_trade_no == out_trade_no && o.provider == provider
    });
    // A compare-and-set that loses a race (PostgreSQL: another transaction committed in between)
    // retries from a fresh read; the loser then sees the winner's event or status.
    for _ in 0..8 {
        if let Some(before) = read_before.take()
            && let Some(applied) = apply_on_earlier_read(txn, before, ev).await?
        {
            return Ok(applied);
        }
        let current = match find_order(txn, tenant_id, out_trade_no).await? {
            Some(o) if o.provider == provider => o,
            _ => return Err(ApplyError::UnknownOrder),
        };
        same_amount(ev, &current)?;
        let from = status_of(&current)?;
        // The table is asked before anything is written, so a refusal leaves the transaction
        // clean. A refused event that was applied before is a duplicate, not an error.
        let transition = match from.apply(ev.event) {
            Ok(t) => t,
            Err(e) => {
                if provider_event_exists(txn, tenant_id, provider, &ev.event_id).await? {
                    return Ok(Applied::Duplicate(current));
                }
                return Err(e.into());
            }
        };
        let Some(change) = record_and_change(txn, &current, transition, ev, Guard::Status).await?
        else {
            return Ok(Applied::Duplicate(current));
        };
        match change {
            Change::Changed(change) => return Ok(Applied::Changed(*change)),
            Change::Unchanged => return Ok(Applied::Unchanged(current)),
            Change::Lost => {
                // Forget this attempt's event row with it: the retry records it again.
                super::events::forget_provider_event(txn, tenant_id, provider, &ev.event_id)
                    .await?;
            }
        }
    }
    Err(ApplyError::Store(StoreError::Corrupt(
        "order kept changing under a compare-and-set".to_owned(),
    )))
}

/// The fast path of [`apply_order_event`]: apply `ev` to a row read before the transaction.
/// `Some` only when it wrote a change whose compare-and-set covered the whole row as read;
/// `None` when nothing was decided (the caller reads the order again and starts over), with
/// the provider event it recorded forgotten.
async fn apply_on_earlier_read(
    txn: &DatabaseTransaction,
    before: &order::Model,
    ev: &EventToApply,
) -> Result<Option<Applied>, ApplyError> {
    // The amount never changes, so a mismatch is one on any read; everything else is decided
    // again on a fresh read unless the write below goes through.
    same_amount(ev, before)?;
    let Ok(transition) = status_of(before)?.apply(ev.event) else {
        return Ok(None);
    };
    match record_and_change(txn, before, transition, ev, Guard::Row).await? {
        None => Ok(None),
        Some(Change::Changed(change)) => Ok(Some(Applied::Changed(*change))),
        Some(Change::Unchanged | Change::Lost) => {
            super::events::forget_provider_event(
                txn,
                &before.tenant_id,
                &before.provider,
                &ev.event_id,
            )
            .await?;
            Ok(None)
        }
    }
}

/// A payment must be of the order's amount.
fn same_amount(ev: &EventToApply, order: &order::Model) -> Result<(), ApplyError> {
    match &ev.payment {
        Some(p) if p.amount.get() != order.amount => Err(ApplyError::AmountMismatch {
            expected: order.amount,
            got: p.amount.get(),
        }),
        _ => Ok(()),
    }
}

/// Record `ev` as applied to `current` and make the change `transition` says, compare-and-set
/// by `guard`. `None`: the same provider event was recorded before, and nothing was written.
async fn record_and_change(
    txn: &DatabaseTransaction,
    current: &order::Model,
    transition: Transition,
    ev: &EventToApply,
    guard: Guard,
) -> Result<Option<Change>, StoreError> {
    let now = super::now();
    let recorded = record_provider_event(
        txn,
        NewProviderEvent {
            tenant_id: &current.tenant_id,
            provider: &current.provider,
            event_id: &ev.event_id,
            order_id: &current.id,
            kind: ev.kind,
            payload: &ev.payload,
        },
        now,
    )
    .await?;
    if !recorded {
        return Ok(None);
    }
    let facts = Facts {
        payment: ev.payment.as_ref(),
        notified: ev.from_notification,
    };
    Ok(Some(
        change_order(txn, current, transition, ev.event, &facts, guard, now).await?,
    ))
}

/// The compare-and-set of [`change_order`]: the columns that change from `current` to `after`,
/// where the row is still `current` (its status; with `row_guard`, all the guarded columns).
/// The SQL is sea-query's, built once for each of the 32 shapes (which columns, which guard) and
/// backend: building it costs sea-query 25 000 instructions a call.
struct OrderUpdate<'a> {
    current: &'a order::Model,
    after: &'a order::Model,
    flags: bool,
    refunded: bool,
    paid: bool,
    notified: bool,
    row_guard: bool,
}

impl OrderUpdate<'_> {
    /// Which of the 32 shapes this is.
    fn shape(&self) -> usize {
        [
            self.flags,
            self.refunded,
            self.paid,
            self.notified,
            self.row_guard,
        ]
        .iter()
        .enumerate()
        .map(|(i, on)| usize::from(*on) << i)
        .sum()
    }

    /// The update as sea-query has it.
    fn query(&self) -> sea_orm::UpdateMany<order::Entity> {
        use order::Column as C;
        let (current, after) = (self.current, self.after);
        let mut update = order::Entity::update_many()
            .col_expr(C::Status, Expr::value(after.status.clone()))
            .col_expr(C::UpdatedAt, Expr::value(after.updated_at));
        if self.flags {
            update = update.col_expr(C::Flags, Expr::value(after.flags.clone()));
        }
        if self.refunded {
            update = update.col_expr(C::RefundedAmount, Expr::value(after.refunded_amount));
        }
        if self.paid {
            update = update
                .col_expr(
                    C::ProviderTradeNo,
                    Expr::value(after.provider_trade_no.clone()),
                )
                .col_expr(C::PaidAt, Expr::value(after.paid_at));
        }
        if self.notified {
            update = update.col_expr(C::LastNotifiedAt, Expr::value(after.last_notified_at));
        }
        update = update
            .filter(C::Id.eq(current.id.clone()))
            .filter(C::Status.eq(current.status.clone()));
        if self.row_guard {
            update = update
                .filter(C::Flags.eq(current.flags.clone()))
                .filter(C::RefundedAmount.eq(current.refunded_amount))
                .filter(C::UpdatedAt.eq(current.updated_at));
        }
        update
    }

    /// [`OrderUpdate::query`]'s values, in the order of its placeholders.
    fn values(&self) -> Vec<sea_orm::Value> {
        let (current, after) = (self.current, self.after);
        let mut values: Vec<sea_orm::Value> =
            vec![after.status.clone().into(), after.updated_at.into()];
        if self.flags {
            values.push(after.flags.clone().into());
        }
        if self.refunded {
            values.push(after.refunded_amount.into());
        }
        if self.paid {
            values.push(after.provider_trade_no.clone().into());
            values.push(after.paid_at.into());
        }
        if self.notified {
            values.push(after.last_notified_at.into());
        }
        values.push(current.id.clone().into());
        values.push(current.status.clone().into());
        if self.row_guard {
            values.push(current.flags.clone().into());
            values.push(current.refunded_amount.into());
            values.push(current.updated_at.into());
        }
        values
    }

    fn statement(&self, backend: DbBackend) -> Statement {
        static SQLITE: [OnceLock<String>; 32] = [const { OnceLock::new() }; 32];
        static POSTGRES: [OnceLock<String>; 32] = [const { OnceLock::new() }; 32];
        let build = || self.query().build(backend).sql;
        let sql = match backend {
            DbBackend::Sqlite => SQLITE[self.shape()].get_or_init(build).clone(),
            DbBackend::Postgres => POSTGRES[self.shape()].get_or_init(build).clone(),
            _ => build(),
        };
        Statement::from_sql_and_values(backend, sql, self.values())
    }
}

/// What [`change_order`]'s compare-and-set compares with the row as `current` has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The status: `current` was read in this transaction, and the status is what the
    /// transition was decided on.
    Status,
    /// Everything the change and the order's view are made of (status, flags, refunded total
    /// and `updated_at`, which every other change of a viewed field moves; the fee is read with
    /// the view, in the same transaction): `current` was
    /// read before the transaction, and the written row must be exactly the one read.
    Row,
}

/// What comes with an event besides the state machine's view of it.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    /// The verified payment (trade number and time).
    pub payment: Option<&'a PaymentEvent>,
    /// It came from a provider notification.
    pub notified: bool,
}

/// The outcome of [`change_order`].
#[derive(Debug)]
pub enum Change {
    /// Written.
    Changed(Box<OrderChange>),
    /// Nothing to write.
    Unchanged,
    /// The order's status was no longer the one read: read again and retry.
    Lost,
}

/// The one writer of an order's state. `transition` is what core's table said for `event` from
/// `current`'s status; `current` is the row as read in this transaction. The refund total of a
/// `RefundTotal` event is written with it, even when the status stays.
pub async fn change_order(
    txn: &DatabaseTransaction,
    current: &order::Model,
    transition: Transition,
    event: OrderEvent,
    facts: &Facts<'_>,
    guard: Guard,
    now: DateTime<Utc>,
) -> Result<Change, StoreError> {
    let from = status_of(current)?;
    let refunded_total = match event {
        OrderEvent::RefundTotal { refunded_total, .. }
            if refunded_total.get() != current.refunded_amount =>
        {
            Some(refunded_total.get())
        }
        _ => None,
    };
    let (to, flag) = match transition {
        Transition::To { to, flag } => (to, flag),
        Transition::Unchanged if refunded_total.is_some() => (from, None),
        Transition::Unchanged => return Ok(Change::Unchanged),
    };
    // A flag the order already has, on a status it already has, is no change.
    let flag = flag.filter(|f| !flags_of(current).iter().any(|x| x == f.as_str()));
    if to == from && flag.is_none() && refunded_total.is_none() && facts.payment.is_none() {
        return Ok(Change::Unchanged);
    }
    let mut after = current.clone();
    after.status = to.as_str().to_owned();
    after.updated_at = now;
    if let Some(f) = flag {
        let mut flags = flags_of(current);
        if !flags.iter().any(|x| x == f.as_str()) {
            flags.push(f.as_str().to_owned());
        }
        after.flags = serde_json::json!(flags).to_string();
    }
    if let Some(total) = refunded_total {
        after.refunded_amount = total;
    }
    if let Some(p) = facts.payment {
        after.provider_trade_no = Some(p.provider_trade_no.clone());
        after.paid_at = Some(p.paid_at);
    }
    if facts.notified {
        after.last_notified_at = Some(now);
    }
    let update = OrderUpdate {
        current,
        after: &after,
        flags: flag.is_some(),
        refunded: refunded_total.is_some(),
        paid: facts.payment.is_some(),
        notified: facts.notified,
        row_guard: guard == Guard::Row,
    };
    let done = txn
        .execute_raw(update.statement(txn.get_database_backend()))
        .await?;
    if done.rows_affected() != 1 {
        return Ok(Change::Lost);
    }
    tracing::info!(
        tenant = %current.tenant_id,
        out_trade_no = %current.out_trade_no,
        from = from.as_str(),
        to = to.as_str(),
        flag = flag.map(OrderFlag::as_str),
        "order transition"
    );
    Ok(Change::Changed(Box::new(OrderChange {
        from,
        to,
        flag,
        order: after,
    })))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn order(n: i64) -> order::Model {
        let at = |s: i64| Utc.timestamp_opt(1_796_000_000 + s + 100 * n, 0).unwrap();
        order::Model {
            id: format!("id-{n}"),
            tenant_id: "t".into(),
            out_trade_no: format!("no-{n}"),
            provider: "wechat_miniprogram".into(),
            amount: 100 + n,
            currency: "CNY".into(),
            description: "d".into(),
            payer_openid: None,
            client_ip: None,
            attach: None,
            expires_at: at(1),
            status: "pending".into(),
            flags: format!(r#"["f{n}"]"#),
            provider_trade_no: None,
            refunded_amount: 10 + n,
            paid_at: None,
            client_payment: None,
            provider_data: "{}".into(),
            last_notified_at: None,
            created_at: at(2),
            next_check_at: None,
            updated_at: at(3),
        }
    }

    /// Every shape on both backends, twice with other values (the second SQL comes from the
    /// cache): exactly the statement sea-query builds, SQL and values.
    #[test]
    fn an_order_update_is_the_statement_sea_query_builds() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            for shape in 0..32_usize {
                for n in [1, 2] {
                    let on = |bit: usize| shape & (1 << bit) != 0;
                    let current = order(n);
                    let mut after = current.clone();
                    after.status = "paid".into();
                    after.updated_at = current.updated_at + chrono::Duration::seconds(n);
                    after.flags = format!(r#"["g{n}"]"#);
                    after.refunded_amount = 20 + n;
                    after.provider_trade_no = Some(format!("42{n}"));
                    after.paid_at = Some(current.created_at + chrono::Duration::seconds(5));
                    after.last_notified_at =
                        Some(current.created_at + chrono::Duration::seconds(6));
                    let update = OrderUpdate {
                        current: &current,
                        after: &after,
                        flags: on(0),
                        refunded: on(1),
                        paid: on(2),
                        notified: on(3),
                        row_guard: on(4),
                    };
                    assert_eq!(update.shape(), shape);
                    assert_eq!(
                        update.statement(backend),
                        update.query().build(backend),
                        "{backend:?}, shape {shape:05b}, call {n}"
                    );
                }
            }
        }
    }
}
