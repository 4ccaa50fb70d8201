//! Storage of webhook deliveries: scheduling an event inside the transaction that wrote it,
//! claiming due deliveries without double-sending, recording attempts, and the merchant's view of
//! its events.
//!
//! Every change of a delivery row is a compare-and-set: a claim on `version`, a result on the
//! claim's `lease_token`. A redelivery clears the token, so the result of an attempt still in
//! flight is logged but no longer decides the row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::db::entities::{outbox_event, webhook_attempt, webhook_delivery};
use crate::store::StoreError;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Due at `next_attempt_at` (or in flight until then).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every scheduled attempt failed; only a redelivery sends it again.
    Failed,
    /// The tenant has no `webhook_url` (or no `webhook_secret`): recorded, not sent.
    NotConfigured,
}

impl DeliveryStatus {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::NotConfigured => "not_configured",
        }
    }
}

/// Schedule a new outbox event for immediate delivery. Called in the transaction that writes the
/// event, so an event never exists without its delivery.
pub async fn schedule_event<C: ConnectionTrait>(
    db: &C,
    event_id: &str,
    tenant_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    static INSERT: super::cached::CachedInsert = super::cached::CachedInsert::new();
    let am = webhook_delivery::ActiveModel {
        event_id: Set(event_id.to_owned()),
        tenant_id: Set(tenant_id.to_owned()),
        status: Set(DeliveryStatus::Pending.as_str().to_owned()),
        attempts: Set(0),
        backoff_step: Set(0),
        next_attempt_at: Set(Some(now)),
        lease_token: Set(None),
        version: Set(0),
        delivered_at: Set(None),
        last_error: Set(None),
        updated_at: Set(now),
    };
    INSERT.exec(db, am, &[]).await?;
    Ok(())
}

/// A delivery this worker pass owns until its lease ends.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The delivery row as claimed.
    pub delivery: webhook_delivery::Model,
    /// The event to send.
    pub event: outbox_event::Model,
}

/// The deliveries due at `now`, most overdue first: their event ids and tenants (the claim's
/// query; most passes settle what they find `not_configured`, and read only the rows they lease
/// whole).
pub fn due(now: DateTime<Utc>, limit: u64) -> sea_orm::Select<webhook_delivery::Entity> {
    webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::EventId)
        .column(webhook_delivery::Column::TenantId)
        .filter(super::status_is(
            webhook_delivery::Column::Status,
            DeliveryStatus::Pending.as_str(),
        ))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(limit)
}

/// Settle deliveries as `not_configured` with `reason` (the caller adds which rows).
fn not_configured(
    reason: &str,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<webhook_delivery::Entity> {
    use webhook_delivery::Column as C;
    let none_time: Option<DateTime<Utc>> = None;
    webhook_delivery::Entity::update_many()
        .col_expr(C::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(C::Version, Expr::col(C::Version).add(1))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .col_expr(
            C::Status,
            Expr::value(DeliveryStatus::NotConfigured.as_str()),
        )
        .col_expr(C::NextAttemptAt, Expr::value(none_time))
        .col_expr(C::LastError, Expr::value(reason))
}

fn take_lease(
    token: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<webhook_delivery::Entity> {
    webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::LeaseToken, Expr::value(token))
        .col_expr(
            webhook_delivery::Column::NextAttemptAt,
            Expr::value(lease_until),
        )
        .col_expr(
            webhook_delivery::Column::Version,
            Expr::col(webhook_delivery::Column::Version).add(1),
        )
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
}

/// What a claim took.
#[derive(Debug, Default)]
pub struct ClaimPass {
    /// Deliveries leased to this pass, to send.
    pub claims: Vec<Claim>,
    /// Due deliveries of tenants that cannot receive webhooks, settled `not_configured` by the
    /// claim itself: nothing to lease or send.
    pub not_configured: usize,
}

/// Why a tenant cannot be sent webhooks (no endpoint, no secret, no longer exists), or `None`.
pub type CannotReceive = dyn Fn(&str) -> Option<&'static str> + Send + Sync;

/// Claim up to `limit` due deliveries for `token` until `lease_until`, with their events, in
/// the caller's transaction (a writer job: one commit for the whole claim). The due deliveries
/// of a tenant for which `cannot_receive` gives a reason are settled `not_configured` with it
/// instead, in one statement per reason: one write per such event instead of a lease and a
/// settlement (a tenant without an endpoint is the common case of it).
///
/// PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED`, so concurrent instances take disjoint rows
/// without waiting. SQLite: the writer's transaction is `BEGIN IMMEDIATE`, so it holds the write
/// lock from its first statement: no other process can claim between the select and the update.
pub async fn claim_due(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
    token: &str,
    cannot_receive: &CannotReceive,
) -> Result<ClaimPass, StoreError> {
    use webhook_delivery::Column as C;
    let mut due = due(now, limit);
    if txn.get_database_backend() == DbBackend::Postgres {
        due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut claimed: Vec<String> = Vec::new();
    let mut unsendable: HashMap<&'static str, Vec<String>> = HashMap::new();
    for (event_id, tenant_id) in due.into_tuple::<(String, String)>().all(txn).await? {
        match cannot_receive(&tenant_id) {
            Some(reason) => unsendable.entry(reason).or_default().push(event_id),
            None => claimed.push(event_id),
        }
    }
    let mut pass = ClaimPass::default();
    for (reason, ids) in unsendable {
        let settled = not_configured(reason, now)
            .filter(C::EventId.is_in(ids))
            .filter(super::status_is(
                C::Status,
                DeliveryStatus::Pending.as_str(),
            ))
            .exec(txn)
            .await?;
        pass.not_configured += usize::try_from(settled.rows_affected).unwrap_or(usize::MAX);
    }
    if claimed.is_empty() {
        return Ok(pass);
    }
    take_lease(token, lease_until, now)
        .filter(C::EventId.is_in(claimed.iter().cloned()))
        .filter(super::status_is(
            C::Status,
            DeliveryStatus::Pending.as_str(),
        ))
        .exec(txn)
        .await?;
    // The rows as leased (token, version, next attempt), in the order they fell due.
    let mut leased: HashMap<String, webhook_delivery::Model> = webhook_delivery::Entity::find()
        .filter(C::EventId.is_in(claimed.iter().cloned()))
        .filter(C::LeaseToken.eq(token))
        .all(txn)
        .await?
        .into_iter()
        .map(|d| (d.event_id.clone(), d))
        .collect();
    let mut events: HashMap<String, outbox_event::Model> = outbox_event::Entity::find()
        .filter(outbox_event::Column::Id.is_in(claimed.iter().cloned()))
        .all(txn)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    let mut claims = Vec::with_capacity(claimed.len());
    for delivery in claimed.iter().filter_map(|id| leased.remove(id)) {
        match events.remove(&delivery.event_id) {
            Some(event) => claims.push(Claim { delivery, event }),
            None => {
                tracing::error!(event_id = %delivery.event_id, "webhook delivery without its outbox event");
                settle(
                    txn,
                    &delivery,
                    Settle::Failed("the event is missing from the outbox".to_owned()),
                    now,
                    Attempted::No,
                )
                .await?;
            }
        }
    }
    pass.claims = claims;
    Ok(pass)
}

/// One attempt's outcome, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// The endpoint's status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// What becomes of a claimed delivery.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Delivered at this time.
    Delivered(DateTime<Utc>),
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// Stop: every scheduled attempt failed, or it cannot be sent at all.
    Failed(String),
    /// The tenant has no webhook endpoint; the reason says what is missing.
    NotConfigured(String),
}

/// Whether a settlement also counts an attempt in `attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempted {
    Yes,
    No,
}

async fn settle<C: ConnectionTrait>(
    db: &C,
    claimed: &webhook_delivery::Model,
    outcome: Settle,
    now: DateTime<Utc>,
    attempted: Attempted,
) -> Result<bool, DbErr> {
    use webhook_delivery::Column as C;
    let none_time: Option<DateTime<Utc>> = None;
    let mut update = webhook_delivery::Entity::update_many()
        .col_expr(C::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(C::Version, Expr::col(C::Version).add(1))
        .col_expr(C::UpdatedAt, Expr::value(now));
    if attempted == Attempted::Yes {
        update = update.col_expr(C::Attempts, Expr::col(C::Attempts).add(1));
    }
    update = match outcome {
        Settle::Delivered(at) => update
            .col_expr(C::Status, Expr::value(DeliveryStatus::Delivered.as_str()))
            .col_expr(C::DeliveredAt, Expr::value(at))
            .col_expr(C::NextAttemptAt, Expr::value(none_time))
            .col_expr(C::BackoffStep, Expr::value(0))
            .col_expr(C::LastError, Expr::value(Option::<String>::None)),
        Settle::RetryAt(at) => update
            .col_expr(C::NextAttemptAt, Expr::value(at))
            .col_expr(C::BackoffStep, Expr::value(claimed.backoff_step + 1)),
        Settle::Failed(reason) => update
            .col_expr(C::Status, Expr::value(DeliveryStatus::Failed.as_str()))
            .col_expr(C::NextAttemptAt, Expr::value(none_time))
            .col_expr(C::BackoffStep, Expr::value(claimed.backoff_step + 1))
            .col_expr(C::LastError, Expr::value(reason)),
        Settle::NotConfigured(reason) => update
            .col_expr(
                C::Status,
                Expr::value(DeliveryStatus::NotConfigured.as_str()),
            )
            .col_expr(C::NextAttemptAt, Expr::value(none_time))
            .col_expr(C::LastError, Expr::value(reason)),
    };
    let done = update
        .filter(C::EventId.eq(claimed.event_id.clone()))
        .filter(C::LeaseToken.eq(claimed.lease_token.clone()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Settle claims without an attempt (e.g. the tenant has no endpoint), in the caller's
/// transaction. A claim that was lost meanwhile (a redelivery took the row back) is left alone.
pub async fn settle_without_attempt(
    txn: &DatabaseTransaction,
    settled: &[(Claim, Settle)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    use webhook_delivery::Column as C;
    // Every claim of a pass that is not sent for the same reason is settled by one statement
    // (a tenant without an endpoint can have a whole batch of them).
    let mut unsent: HashMap<(&str, Option<&str>), Vec<String>> = HashMap::new();
    for (claim, outcome) in settled {
        match outcome {
            Settle::NotConfigured(reason) => unsent
                .entry((reason.as_str(), claim.delivery.lease_token.as_deref()))
                .or_default()
                .push(claim.event.id.clone()),
            other => {
                settle(txn, &claim.delivery, other.clone(), now, Attempted::No).await?;
            }
        }
    }
    for ((reason, token), ids) in unsent {
        not_configured(reason, now)
            .filter(C::EventId.is_in(ids))
            .filter(C::LeaseToken.eq(token))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Record an attempt and settle its claim, in the caller's transaction. The attempt is recorded
/// even when the claim was lost; the return value says whether the claim still decided the row.
pub async fn record_attempt(
    txn: &DatabaseTransaction,
    claim: &Claim,
    attempt: &AttemptRecord,
    outcome: Settle,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    webhook_attempt::Entity::insert(webhook_attempt::ActiveModel {
        id: Set(super::new_id()),
        event_id: Set(claim.event.id.clone()),
        tenant_id: Set(claim.event.tenant_id.clone()),
        at: Set(attempt.at),
        status_code: Set(attempt.status_code.map(i32::from)),
        error: Set(attempt.error.clone()),
        duration_ms: Set(attempt.duration_ms),
    })
    .exec_without_returning(txn)
    .await?;
    // The attempt is counted with the settlement: one statement while the claim still holds.
    let kept = settle(txn, &claim.delivery, outcome, now, Attempted::Yes).await?;
    if !kept {
        webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::Attempts,
                Expr::col(webhook_delivery::Column::Attempts).add(1),
            )
            .filter(webhook_delivery::Column::EventId.eq(claim.event.id.clone()))
            .exec(txn)
            .await?;
    }
    Ok(kept)
}

/// An event with its delivery state and attempts, oldest attempt first.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The outbox event.
    pub event: outbox_event::Model,
    /// Its delivery (always present for events written by this version).
    pub delivery: Option<webhook_delivery::Model>,
    /// Every attempt.
    pub attempts: Vec<webhook_attempt::Model>,
}

/// An event by id, whichever tenant's (for operators).
pub async fn event_by_id<C: ConnectionTrait>(
    db: &C,
    event_id: &str,
) -> Result<Option<outbox_event::Model>, StoreError> {
    Ok(outbox_event::Entity::find_by_id(event_id.to_owned())
        .one(db)
        .await?)
}

/// A tenant's event by id.
pub async fn find_event<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    event_id: &str,
) -> Result<Option<outbox_event::Model>, StoreError> {
    Ok(outbox_event::Entity::find_by_id(event_id.to_owned())
        .filter(outbox_event::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?)
}

/// A page of a tenant's events, newest first, after the `after` event (in that order), of one
/// type if given. Returns one more than `limit` when there is more.
pub async fn list_events(
    db: &DatabaseConnection,
    tenant_id: &str,
    limit: u64,
    after: Option<&outbox_event::Model>,
    event_type: Option<&str>,
) -> Result<Vec<EventRecord>, StoreError> {
    use outbox_event::Column as C;
    let mut q = outbox_event::Entity::find().filter(C::TenantId.eq(tenant_id));
    if let Some(t) = event_type {
        q = q.filter(C::EventType.eq(t));
    }
    if let Some(cursor) = after {
        q = q.filter(
            Condition::any()
                .add(C::CreatedAt.lt(cursor.created_at))
                .add(
                    Condition::all()
                        .add(C::CreatedAt.eq(cursor.created_at))
                        .add(C::Id.lt(cursor.id.clone())),
                ),
        );
    }
    let events = q
        .order_by_desc(C::CreatedAt)
        .order_by_desc(C::Id)
        .limit(limit)
        .all(db)
        .await?;
    with_deliveries(db, events).await
}

/// The delivery state and attempts of these events.
pub async fn with_deliveries<C: ConnectionTrait>(
    db: &C,
    events: Vec<outbox_event::Model>,
) -> Result<Vec<EventRecord>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let mut deliveries: HashMap<String, webhook_delivery::Model> = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::EventId.is_in(ids.clone()))
        .all(db)
        .await?
        .into_iter()
        .map(|d| (d.event_id.clone(), d))
        .collect();
    let mut attempts: HashMap<String, Vec<webhook_attempt::Model>> = HashMap::new();
    for a in webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::EventId.is_in(ids))
        .order_by_asc(webhook_attempt::Column::At)
        .order_by_asc(webhook_attempt::Column::Id)
        .all(db)
        .await?
    {
        attempts.entry(a.event_id.clone()).or_default().push(a);
    }
    Ok(events
        .into_iter()
        .map(|event| EventRecord {
            delivery: deliveries.remove(&event.id),
            attempts: attempts.remove(&event.id).unwrap_or_default(),
            event,
        })
        .collect())
}

/// Schedule a tenant's event for immediate delivery again, whatever its state; an attempt in
/// flight is no longer waited for. None when the tenant has no such event.
pub async fn redeliver<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<EventRecord>, StoreError> {
    use webhook_delivery::Column as C;
    let Some(event) = find_event(db, tenant_id, event_id).await? else {
        return Ok(None);
    };
    let done = webhook_delivery::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Pending.as_str()))
        .col_expr(C::NextAttemptAt, Expr::value(now))
        .col_expr(C::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(C::BackoffStep, Expr::value(0))
        .col_expr(C::Version, Expr::col(C::Version).add(1))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::EventId.eq(event.id.clone()))
        .exec(db)
        .await?;
    if done.rows_affected == 0 {
        schedule_event(db, &event.id, &event.tenant_id, now).await?;
    }
    Ok(with_deliveries(db, vec![event]).await?.pop())
}

/// The deliveries in `status` (pending or failed: each has a partial index of its own).
pub fn in_status(status: DeliveryStatus) -> sea_orm::Select<webhook_delivery::Entity> {
    webhook_delivery::Entity::find().filter(super::status_is(
        webhook_delivery::Column::Status,
        status.as_str(),
    ))
}

/// How many events are not yet delivered (pending, in flight or waiting for a retry).
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<u64, StoreError> {
    use sea_orm::PaginatorTrait;
    Ok(in_status(DeliveryStatus::Pending).count(db).await?)
}
